// Multi-layer, optionally bidirectional RNN (ReLU/tanh), LSTM and GRU through cuDNN's v8
// RNN API (float32): forward (training or inference), backward data and backward weights,
// over padded variable-length batches in sequence- or batch-major layout.
//
// Note [cuDNN RNN plans]
// One plan per (device, RnnConfig), made on first use and kept behind one mutex (the most
// recently used kPlanCacheCapacity: Note [Bounded plan caches] in plan_cache.h): the RNN descriptor (CUDNN_RNN_ALGO_STANDARD, double bias or none, linear input,
// no projection, CUDNN_RNN_PADDED_IO_ENABLED, FMA math unless TF32 is allowed, then
// default math), its dropout descriptor (with dropout: states in memory the caller
// provides for the process's lifetime, seeded once; without: no states), the weight
// space size, and where every matrix and bias lies in the weight space
// (cudnnGetRNNWeightParams, as offsets from its start). Data descriptors are cached in
// the plan per (seq_len, batch, layout), up to 64 of them: x and y as padded RNN data (sequence lengths
// given as a host int32 array; padded outputs filled with zeros), h and c as
// [layers * directions, batch, hidden]; they are re-set only when the lengths change. Each
// call below takes the mutex, brings the descriptors to its batch's lengths and enqueues
// its cuDNN call (asynchronous, so the lock is held briefly). cuDNN also needs the
// lengths on the device (`dev_lengths`, int32 [batch]), read by its kernels after the
// call returns: the caller keeps that buffer alive until the stream has run them.
#pragma once

#include <cudnn.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <vector>

namespace ember::kernels::cudnn {

enum class RnnCell { kRelu, kTanh, kLstm, kGru };

// What the RNN descriptor holds (the plan cache's key, with the device).
struct RnnConfig {
  RnnCell cell = RnnCell::kLstm;
  int64_t input_size = 0;
  int64_t hidden_size = 0;
  int64_t num_layers = 1;
  bool bidirectional = false;
  bool bias = true;
  float dropout = 0.0f;  // between layers, applied by training-mode forwards only
  bool allow_tf32 = false;
  // float16 data, weights and states (float32 math on the tensor cores); else float32.
  // cuDNN's RNNs take no bfloat16 (Note [RNN backends] in core/ops/rnn.cpp).
  bool half = false;
  bool operator==(const RnnConfig& o) const {
    return cell == o.cell && input_size == o.input_size && hidden_size == o.hidden_size &&
           num_layers == o.num_layers && bidirectional == o.bidirectional && bias == o.bias &&
           dropout == o.dropout && allow_tf32 == o.allow_tf32 && half == o.half;
  }
};

// One batch: x [seq_len, batch, input] (or [batch, seq_len, input] when batch_first),
// y [.., directions * hidden]. `lengths`: host, `batch` values in [1, seq_len].
struct RnnBatch {
  int64_t seq_len = 0;
  int64_t batch = 0;
  bool batch_first = false;
  const int32_t* lengths = nullptr;
};

// A matrix or bias inside the weight space, in elements (of the config's type) from its
// start.
struct RnnRegion {
  int64_t offset = 0;
  int64_t numel = 0;  // 0: absent (no bias)
};

struct RnnWeightLayout {
  size_t bytes = 0;  // the weight space
  // [pseudo_layer][lin_id] with pseudo_layer = layer * directions + direction, and lin_id
  // as cuDNN numbers the gates: input matrices first, then recurrent ones (LSTM: 0-3 are
  // i, f, g, o applied to x, 4-7 to h; GRU: 0-2 are r, z, n on x, 3-5 on h; RNN: 0, 1).
  std::vector<std::vector<RnnRegion>> matrices, biases;
};

// Device memory for the plan: `persistent` for the dropout states (kept for the process),
// `scratch` for a buffer needed only during the call (the layout query's weight space).
struct RnnMemory {
  std::function<void*(size_t bytes)> persistent;
  std::function<void*(size_t bytes)> scratch;
  std::function<uint64_t()> dropout_seed;  // asked once, when the plan drops out
};

// Makes the plan on first use (see the Note) and returns a copy of its weight layout (the
// cache may drop the plan later: Note [Bounded plan caches] in plan_cache.h).
RnnWeightLayout rnn_plan(cudnnHandle_t handle, const RnnConfig& config,
                         const RnnMemory& memory);

struct RnnSpaceSizes {
  size_t workspace = 0;
  size_t reserve = 0;  // training forwards only; kept from the forward to the backward
};
// Call rnn_plan first. `training`: a forward whose backward will run (or that drops out).
RnnSpaceSizes rnn_space_sizes(cudnnHandle_t handle, const RnnConfig& config,
                              const RnnBatch& batch, bool training);

// All buffers of the config's type (float16 when `half`, else float32) on the handle's
// device, contiguous in the batch's layout; hx, cx may be null (zero initial state); cx, cy
// are for an LSTM only (null otherwise); hy, cy may be null. w: the weight space (layout from rnn_plan).
void rnn_forward(cudnnHandle_t handle, const RnnConfig& config, const RnnBatch& batch,
                 bool training, const int32_t* dev_lengths, const void* x, const void* hx,
                 const void* cx, void* y, void* hy, void* cy, const void* w,
                 size_t w_bytes, void* workspace, size_t workspace_bytes, void* reserve,
                 size_t reserve_bytes);

// After a training forward with the same reserve space: dx (always written), dhx and dcx
// (skipped when null) from dy, dhy, dcy (null: zero). Must run before rnn_backward_weights.
void rnn_backward_data(cudnnHandle_t handle, const RnnConfig& config, const RnnBatch& batch,
                       const int32_t* dev_lengths, const void* y, const void* dy, void* dx,
                       const void* hx, const void* dhy, void* dhx, const void* cx,
                       const void* dcy, void* dcx, const void* w, size_t w_bytes,
                       void* workspace, size_t workspace_bytes, void* reserve,
                       size_t reserve_bytes);

// Adds the weight gradients into dw (the caller zeroes it: cuDNN supports only the
// accumulating mode).
void rnn_backward_weights(cudnnHandle_t handle, const RnnConfig& config, const RnnBatch& batch,
                          const int32_t* dev_lengths, const void* x, const void* hx,
                          const void* y, void* dw, size_t w_bytes, void* workspace,
                          size_t workspace_bytes, void* reserve, size_t reserve_bytes);

// The descriptor settings the plans use, for a benchmark that replays ember's calls with
// its own descriptors.
cudnnRNNMode_t rnn_cell_mode(RnnCell cell);
cudnnMathType_t rnn_math_type(const RnnConfig& config);

}  // namespace ember::kernels::cudnn
