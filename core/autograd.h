// The autograd tape: nodes recorded by differentiable ops, and backward().
//
// Note [The tape]
// Every differentiable op run while grad mode is on records one Node: its backward
// function (a small lambda beside the forward op in core/ops/), the tensors it saved,
// and one edge per input leading to the node that produced that input (or to the
// input leaf's gradient accumulator). Nodes are numbered in recording order by one
// process-wide counter, so the recording order is the tape. backward() collects only
// the nodes reachable from the loss and runs them in reverse recording order (an
// input's node is always recorded before the node that consumes it, so every node's
// gradient is complete when its turn comes). Other graphs recorded on the same thread
// are not touched. After a node has run it frees what it saved unless retain_graph is
// set; running it again is a clear error. Output tensors own their node through
// grad_fn, so a graph lives exactly as long as some tensor still refers to it.
//
// Note [Saved tensors and versions]
// A backward lambda saves tensors through SavedTensor, which keeps a detached alias
// (same storage, no grad_fn: no reference cycle from an output to its own node) and the
// storage's version at save time. In-place ops bump the version; unpacking a saved
// tensor whose storage changed since is an error naming the op, instead of a silently
// wrong gradient.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "ember/core/base/error.h"
#include "ember/core/base/export.h"
#include "ember/core/tensor.h"

namespace ember {

// Grad mode is per thread, on by default.
EMBER_API bool grad_mode_enabled();
EMBER_API void set_grad_mode(bool enabled);

// Turns gradient recording off for its scope (like torch::NoGradGuard).
class EMBER_API NoGradGuard {
 public:
  NoGradGuard() : prev_(grad_mode_enabled()) { set_grad_mode(false); }
  ~NoGradGuard() { set_grad_mode(prev_); }
  NoGradGuard(const NoGradGuard&) = delete;
  NoGradGuard& operator=(const NoGradGuard&) = delete;

 private:
  bool prev_;
};

namespace autograd {

class Node;

struct Edge {
  std::shared_ptr<Node> node;  // null when that input needs no gradient
  uint32_t input_nr = 0;       // which output of `node` the input was
};

// See Note [Saved tensors and versions].
class EMBER_API SavedTensor {
 public:
  SavedTensor() = default;
  SavedTensor(const Tensor& t, const char* op);
  // Throws when the tensor was modified in place after being saved.
  Tensor unpack() const;
  bool defined() const { return data_.defined(); }
  void reset() { data_ = Tensor(); }

 private:
  Tensor data_;
  uint64_t version_ = 0;
  const char* op_ = "";
};

struct OutputMeta {
  Shape shape;
  DType dtype = kFloat32;
  Device device;
};

class EMBER_API Node {
 public:
  virtual ~Node() = default;
  // grads[i] is the gradient of output i (zeros where none flowed); returns one
  // gradient per input edge (undefined where the input needs none).
  virtual std::vector<Tensor> apply(std::vector<Tensor>& grads) = 0;
  // Frees saved state after a backward pass without retain_graph.
  virtual void release() {}
  virtual bool released() const { return false; }

  const std::string& name() const { return name_; }
  uint64_t sequence_nr() const { return sequence_nr_; }
  const std::vector<Edge>& next_edges() const { return next_edges_; }
  const std::vector<OutputMeta>& outputs() const { return outputs_; }
  // Keeps the gradient of output `nr` in `t`'s .grad (Tensor::retain_grad).
  void retain_output(uint32_t nr, std::weak_ptr<TensorImpl> t) {
    retained_.emplace_back(nr, std::move(t));
  }
  const std::vector<std::pair<uint32_t, std::weak_ptr<TensorImpl>>>& retained() const {
    return retained_;
  }

 protected:
  friend class NodeBuilder;
  friend EMBER_API std::shared_ptr<Node> grad_accumulator(const Tensor& leaf);
  std::string name_;
  uint64_t sequence_nr_ = 0;
  std::vector<Edge> next_edges_;
  std::vector<OutputMeta> outputs_;
  std::vector<std::pair<uint32_t, std::weak_ptr<TensorImpl>>> retained_;
};

using BackwardFn = std::function<std::vector<Tensor>(std::vector<Tensor>& grads)>;

// True when grad mode is on and any of `inputs` requires grad: the op must record.
EMBER_API bool needs_grad(std::initializer_list<const Tensor*> inputs);
EMBER_API bool needs_grad(const std::vector<Tensor>& inputs);

// Records a node for an op: `inputs` in the order `fn` returns their gradients,
// `outputs` get grad_fn set and requires_grad on. `fn` captures SavedTensors for what
// it needs. Call only when needs_grad(inputs).
EMBER_API void record(const char* name, const std::vector<Tensor>& inputs,
                      const std::vector<Tensor>& outputs, BackwardFn fn);

// The gradient-accumulating node of a leaf that requires grad (created on first use).
EMBER_API std::shared_ptr<Node> grad_accumulator(const Tensor& leaf);

// Calls `hook` after backward has added a new gradient into `leaf`'s .grad (once per
// backward pass that reaches it: uses of the leaf are summed first). The hook lives in
// the leaf's accumulator node, which this returns: keep it, or the hook goes with the
// graph. DistributedDataParallel starts its gradient all-reduce from here.
EMBER_API std::shared_ptr<Node> add_grad_ready_hook(
    const Tensor& leaf, std::function<void(const Tensor& leaf)> hook);

// Runs backward from `roots` with their `grads` (see Note [The tape]).
EMBER_API void backward(const std::vector<Tensor>& roots, const std::vector<Tensor>& grads,
                        bool retain_graph);

// Gradients of `outputs` with respect to `inputs`, returned instead of accumulated
// into .grad (like torch::autograd::grad). Undefined where an input is unreachable.
EMBER_API std::vector<Tensor> grad(const std::vector<Tensor>& outputs,
                                   const std::vector<Tensor>& inputs,
                                   const std::vector<Tensor>& grad_outputs = {},
                                   bool retain_graph = false);

// Note [Anomaly mode]
// PyTorch's torch.autograd.detect_anomaly / set_detect_anomaly: while anomaly mode is
// on, the outputs of every op that records onto the tape (an op run in grad mode with an
// input that requires grad) and the gradients every backward node returns are checked
// for NaN and Inf, and the first non-finite one raises AnomalyError naming the op
// (forward) or the node and the forward op that recorded it (backward), which output or
// input it was, its shape and dtype, and the first bad element. The checks sit where
// ops record and where the engine runs a node (core/autograd.cpp), so they cover every
// op, and cost one relaxed atomic load per op and per node when off (the default). On
// a GPU each check reads the tensor back, so the mode is for finding a bad op, not for
// training runs. It is process-wide, as PyTorch's is.
class EMBER_API AnomalyError : public ValueError {
 public:
  using ValueError::ValueError;
};
EMBER_API void detect_anomaly(bool enabled);
EMBER_API bool anomaly_mode_enabled();

// Turns anomaly mode on (or off) for its scope and restores the previous setting.
class EMBER_API AnomalyModeGuard {
 public:
  explicit AnomalyModeGuard(bool enabled = true) : prev_(anomaly_mode_enabled()) {
    detect_anomaly(enabled);
  }
  ~AnomalyModeGuard() { detect_anomaly(prev_); }
  AnomalyModeGuard(const AnomalyModeGuard&) = delete;
  AnomalyModeGuard& operator=(const AnomalyModeGuard&) = delete;

 private:
  bool prev_;
};

}  // namespace autograd
}  // namespace ember
