// Distributed data parallelism's communication: one process group per process, set up by
// init_process_group (torchrun's environment variables), and the collectives on it.
// CPU tensors go through Gloo, CUDA tensors through NCCL; see docs/distributed.md.
//
// Note [Process group]
// Every rank runs the same program. Rank 0 hosts a small TCP key-value store at
// MASTER_ADDR:MASTER_PORT; every rank (rank 0 included) connects to it, says which rank
// it is and what WORLD_SIZE it was given, and waits until all have arrived. The backend
// then rendezvouses through the store (Gloo exchanges its TCP addresses there, NCCL its
// unique id). The store also keeps one connection per rank open for the whole run: when
// a rank's process dies, the store sees the connection drop, so a collective that fails
// afterwards can say which rank is gone instead of only "connection reset".
//
// Collectives are asynchronous: each is queued to the group's worker (Gloo) or stream
// (NCCL) in call order and returns a Work; every rank must call the same collectives in
// the same order. Work::wait() returns when the tensor holds the result (on CUDA: when
// the compute stream is ordered after it) and throws DistributedError if the collective
// failed or ran past the group's timeout.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "ember/core/base/error.h"
#include "ember/core/base/export.h"
#include "ember/core/tensor.h"

namespace ember::dist {

// A failed rendezvous or collective: busy port, nobody listening, ranks that disagree on
// WORLD_SIZE, a rank that died or timed out. The message names the ranks and addresses.
class EMBER_API DistributedError : public Error { using Error::Error; };

enum class ReduceOp { Sum, Avg, Max, Min };
EMBER_API const char* reduce_op_name(ReduceOp op);

struct InitOptions {
  // "gloo" (CPU tensors) or "nccl" (CUDA tensors); empty: "nccl" when this build has it
  // and a GPU is present, else "gloo".
  std::string backend;
  // -1 / empty / 0: read from torchrun's variables RANK, WORLD_SIZE, MASTER_ADDR,
  // MASTER_PORT (defaults when unset: world size 1 and rank 0 only if both are unset,
  // address 127.0.0.1, port 29500).
  int rank = -1;
  int world_size = -1;
  std::string master_addr;
  int master_port = 0;
  // Bounds the rendezvous and every collective (PyTorch's default is 30 minutes too).
  std::chrono::milliseconds timeout = std::chrono::minutes(30);
};

// Whether this build has the distributed backends (Gloo; NCCL in a CUDA build).
EMBER_API bool is_available();
EMBER_API bool is_nccl_available();

// Joins the default group (Note [Process group]). Throws DistributedError.
EMBER_API void init_process_group(const InitOptions& options = {});
// Leaves it: waits for queued collectives, closes connections. Safe to call twice.
EMBER_API void destroy_process_group();
EMBER_API bool is_initialized();
EMBER_API int get_rank();
EMBER_API int get_world_size();
// LOCAL_RANK (the rank on this machine, which picks the GPU); 0 when unset.
EMBER_API int get_local_rank();
EMBER_API std::string get_backend();

// One queued collective.
class EMBER_API Work {
 public:
  struct State;
  Work() = default;
  explicit Work(std::shared_ptr<State> state) : state_(std::move(state)) {}
  // Blocks until done; rethrows the collective's DistributedError. A default-made Work is
  // done.
  void wait() const;
  bool is_completed() const;

 private:
  std::shared_ptr<State> state_;
};

// In place on `t` (contiguous, on the backend's device): every rank ends with the
// reduction of all ranks' values. Avg needs a floating dtype.
EMBER_API Work all_reduce(const Tensor& t, ReduceOp op = ReduceOp::Sum);
// Rank `src`'s values into every rank's `t`.
EMBER_API Work broadcast(const Tensor& t, int src = 0);
// `output` (world_size * input.numel() elements, input's dtype) receives every rank's
// `input` in rank order.
EMBER_API Work all_gather_into_tensor(const Tensor& output, const Tensor& input);
// As PyTorch's all_gather: outputs[r] receives rank r's input.
EMBER_API Work all_gather(const std::vector<Tensor>& outputs, const Tensor& input);
// `input` (world_size * output.numel() elements) is reduced over ranks and rank r keeps
// chunk r in `output`.
EMBER_API Work reduce_scatter_tensor(const Tensor& output, const Tensor& input,
                                     ReduceOp op = ReduceOp::Sum);
// As PyTorch's reduce_scatter: inputs[r] of every rank reduced into rank r's output.
EMBER_API Work reduce_scatter(const Tensor& output, const std::vector<Tensor>& inputs,
                              ReduceOp op = ReduceOp::Sum);
EMBER_API Work barrier();

}  // namespace ember::dist
