// Multi-tensor CUDA optimizer updates, the twins of kernels/cpu/optim.cpp: the arithmetic
// is the shared kernels/optim_math.h; this file adds the launch table, indexing and launch.
// core/ops/fused_optim.cpp calls them with one device's float32 (or float16 / bfloat16)
// tensors. The gradient scaler's unscale-and-check (kernels/cuda/amp.cuh) shares the launch
// tables.
//
// Note [Multi-tensor apply]
// An optimizer step touches every parameter tensor once. One launch per tensor would cost
// a launch (several microseconds) for each of a model's tens or hundreds of tensors, most
// of them tiny (biases, norms), so the step would be bound by launch latency instead of
// memory bandwidth. Instead, one kernel updates a whole list of tensors:
//  - The host builds a table of per-tensor entries (param, grad and state pointers, numel
//    and the tensor's own hyper-parameters: groups differ in lr, and bias corrections
//    depend on each tensor's step count) plus a prefix sum of each tensor's chunk count
//    (chunks of kMultiTensorChunk elements).
//  - The table is passed BY VALUE as the kernel's only argument (a __grid_constant__
//    parameter, read in place from the constant bank), as PyTorch's multi_tensor_apply
//    does. Nothing is copied to the device or cached, so nothing goes stale when the
//    parameter set changes, a module moves between devices or the caching allocator hands
//    the gradients new addresses each step; the step stays free of host synchronisation.
//  - A table of up to ~4 KB (kSmallTableBytes: 45 Adam or 62 SGD tensors) is used when
//    it suffices, since a larger argument block costs a little more per launch; otherwise
//    one of up to 32 KB (kLargeTableBytes, the limit CUDA 12.1+ allows on Volta and newer:
//    363 Adam, 399 RMSprop or 499 SGD tensors). Only a longer list is split over further
//    launches, so an optimizer updates all float32 parameters of one device in ONE launch
//    for models of up to several hundred parameter tensors.
//  - Blocks map to (tensor, chunk) pairs: block b takes global chunks b, b + gridDim.x, ...
//    and finds the owning tensor by a binary search over the prefix sums (a handful of
//    reads from the constant bank), so the grid size is independent of the table size.
//    Within a chunk, threads stride over float4 groups when every array of the tensor is
//    16-byte aligned (pool allocations are), else over single floats.
#include "ember/kernels/cuda/optim.cuh"

#include <algorithm>
#include <cstdint>
#include <memory>
#include <type_traits>

#include "ember/core/base/cuda_check.h"
#include "ember/core/base/half.h"
#include "ember/kernels/cuda/amp.cuh"
#include "ember/kernels/cuda/launch.cuh"
#include "ember/kernels/optim_math.h"

namespace ember::kernels::cuda {

namespace {

// ---------------------------------------------------------------------------------
// The update of one element, with the state passed as an array (the shape the generic
// kernel works with). Every element type updates in float: float16 / bfloat16 parameters,
// gradients and state load into float, update with the hyper-parameters in float (the
// entries hold them in acc_t<T>, float for every type CUDA computes in) and round once on
// store, as the CPU twin does.

__device__ inline void apply_update(const math::SgdParams<float>& h, float& p, float g,
                                    float* s) {
  math::sgd_update(h, p, g, s[0]);
}
__device__ inline void apply_update(const math::AdamParams<float>& h, float& p, float g,
                                    float* s) {
  math::adam_update(h, p, g, s[0], s[1], s[2]);
}
__device__ inline void apply_update(const math::RmspropParams<float>& h, float& p, float g,
                                    float* s) {
  math::rmsprop_update(h, p, g, s[0], s[1], s[2]);
}

// ---------------------------------------------------------------------------------
// Kernels

// Updates elements [begin, begin + n) of entry `e` with the threads of one block. float
// arrays that are all 16-byte aligned go through float4 loads; other types and alignments
// element by element.
template <typename Entry>
__device__ void update_chunk(const Entry& e, int64_t begin, int64_t n) {
  constexpr int S = Entry::kNumState;
  using T = std::remove_const_t<std::remove_pointer_t<decltype(e.param)>>;
  const auto& h = e.hyper;  // Params<float>: acc_t<T> is float for float16 and bfloat16
  T* p = e.param + begin;
  const T* g = e.grad + begin;
  T* s[S];
  uintptr_t bits = reinterpret_cast<uintptr_t>(p) | reinterpret_cast<uintptr_t>(g);
#pragma unroll
  for (int k = 0; k < S; ++k) {
    s[k] = e.state[k] != nullptr ? e.state[k] + begin : nullptr;
    bits |= reinterpret_cast<uintptr_t>(s[k]);
  }

  int64_t vec_end = 0;  // elements [0, vec_end) go through the float4 path
  if constexpr (std::is_same_v<T, float>) {
    if (bits % 16 == 0) {
      const int64_t n4 = n / 4;
      vec_end = 4 * n4;
      for (int64_t i = threadIdx.x; i < n4; i += blockDim.x) {
        float4 pv = reinterpret_cast<const float4*>(p)[i];
        const float4 gv = reinterpret_cast<const float4*>(g)[i];
        float4 sv[S];
#pragma unroll
        for (int k = 0; k < S; ++k) {
          sv[k] = s[k] != nullptr ? reinterpret_cast<const float4*>(s[k])[i]
                                  : make_float4(0.f, 0.f, 0.f, 0.f);
        }
        float* pl = reinterpret_cast<float*>(&pv);
        const float* gl = reinterpret_cast<const float*>(&gv);
#pragma unroll
        for (int lane = 0; lane < 4; ++lane) {
          float st[S];
#pragma unroll
          for (int k = 0; k < S; ++k) st[k] = reinterpret_cast<float*>(&sv[k])[lane];
          apply_update(h, pl[lane], gl[lane], st);
#pragma unroll
          for (int k = 0; k < S; ++k) reinterpret_cast<float*>(&sv[k])[lane] = st[k];
        }
        reinterpret_cast<float4*>(p)[i] = pv;
#pragma unroll
        for (int k = 0; k < S; ++k) {
          if (s[k] != nullptr) reinterpret_cast<float4*>(s[k])[i] = sv[k];
        }
      }
    }
  }
  for (int64_t i = vec_end + threadIdx.x; i < n; i += blockDim.x) {
    float st[S];
#pragma unroll
    for (int k = 0; k < S; ++k) st[k] = s[k] != nullptr ? static_cast<float>(s[k][i]) : 0.f;
    float pi = p[i];
    apply_update(h, pi, static_cast<float>(g[i]), st);
    p[i] = pi;
#pragma unroll
    for (int k = 0; k < S; ++k) {
      if (s[k] != nullptr) s[k][i] = st[k];
    }
  }
}

// This block's chunks of the table (Note [Multi-tensor apply]): f(entry, begin, n) for
// each, n elements of the entry from `begin`.
template <typename Table, typename F>
__device__ void for_each_chunk(const Table& table, F f) {
  const int64_t total = table.chunk_begin[table.count];
  for (int64_t c = blockIdx.x; c < total; c += gridDim.x) {
    const int32_t t = multi_tensor_chunk_owner(table.chunk_begin, table.count, c);
    const auto& e = table.entries[t];
    const int64_t begin = (c - table.chunk_begin[t]) * kMultiTensorChunk;
    const int64_t n = e.numel - begin < kMultiTensorChunk ? e.numel - begin : kMultiTensorChunk;
    f(e, begin, n);
  }
}

// See Note [Multi-tensor apply].
template <typename Table>
__global__ void __launch_bounds__(kBlockSize)
    multi_tensor_kernel(const __grid_constant__ Table table) {
  for_each_chunk(table, [](const auto& e, int64_t begin, int64_t n) { update_chunk(e, begin, n); });
}

// ---------------------------------------------------------------------------------
// Launchers

// More blocks than this only queue up; the chunk loop covers the rest.
constexpr int64_t kMaxGrid = 65535LL * 8;

// `launch(table, grid)` launches one kernel over a packed table on the caller's stream.
template <typename Table, typename Entry, typename Launch>
void launch_tables(const Entry* entries, int64_t count, Launch launch) {
  static_assert(sizeof(Table) <= kLargeTableBytes, "multi-tensor table exceeds the argument limit");
  // Heap, not stack: the large table is 32 KB. The launch copies it into the argument
  // block, so it may be refilled (or freed) as soon as the launch returns.
  auto table = std::make_unique<Table>();
  int64_t next = 0;
  while (next < count) {
    next = pack_multi_tensor_table(table.get(), entries, count, next);
    const int64_t chunks = table->chunk_begin[table->count];
    if (chunks == 0) continue;
    launch(*table, static_cast<unsigned>(std::min(chunks, kMaxGrid)));
    EMBER_KERNEL_LAUNCH_CHECK();
  }
}

// Runs `launch` (a generic callable taking the table and the grid size) over the entries
// with the smallest table that holds them (Note [Multi-tensor apply]).
template <typename Entry, typename Launch>
void for_each_table(const Entry* entries, int64_t count, Launch launch) {
  using Small = MultiTensorTable<Entry, multi_tensor_capacity<Entry>(kSmallTableBytes)>;
  using Large = MultiTensorTable<Entry, multi_tensor_capacity<Entry>(kLargeTableBytes)>;
  static_assert(sizeof(Small) <= kSmallTableBytes && sizeof(Large) <= kLargeTableBytes,
                "multi-tensor table larger than its budget");
  int64_t nonempty = 0;
  for (int64_t i = 0; i < count; ++i) nonempty += entries[i].numel > 0 ? 1 : 0;
  if (nonempty == 0) return;
  if (nonempty <= Small::kCapacity) {
    launch_tables<Small>(entries, count, launch);
  } else {
    launch_tables<Large>(entries, count, launch);
  }
}

template <typename Entry>
void multi_tensor_apply(cudaStream_t stream, const Entry* entries, int64_t count) {
  for_each_table(entries, count, [stream](const auto& table, unsigned grid) {
    using Table = std::decay_t<decltype(table)>;
    multi_tensor_kernel<Table><<<grid, kBlockSize, 0, stream>>>(table);
  });
}

// The gradient scaler's unscale and inf/NaN check over every gradient of one device and
// dtype in one launch (kernels/cuda/amp.cuh). Every thread that met an inf or a NaN makes
// its block write 1 to found_inf (all writers write the same value).
template <typename Table>
__global__ void __launch_bounds__(kBlockSize)
    unscale_kernel(const __grid_constant__ Table table, const float* inv_scale,
                   float* found_inf) {
  const float s = *inv_scale;
  bool bad = false;
  for_each_chunk(table, [&](const auto& e, int64_t begin, int64_t n) {
    auto* x = e.data + begin;
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
      const float v = static_cast<float>(x[i]);
      bad = bad || !isfinite(v);
      x[i] = v * s;
    }
  });
  if (__syncthreads_or(bad) != 0 && threadIdx.x == 0) *found_inf = 1.0f;
}

}  // namespace

// ---------------------------------------------------------------------------------
// Entry points

template <typename T>
void sgd_multi_tensor(Context ctx, const SgdEntry<T>* entries, int64_t count) {
  multi_tensor_apply(ctx.stream, entries, count);
}

template <typename T>
void adam_multi_tensor(Context ctx, const AdamEntry<T>* entries, int64_t count) {
  multi_tensor_apply(ctx.stream, entries, count);
}

template <typename T>
void rmsprop_multi_tensor(Context ctx, const RmspropEntry<T>* entries, int64_t count) {
  multi_tensor_apply(ctx.stream, entries, count);
}

template <typename T>
void unscale_and_check_multi_tensor(Context ctx, const UnscaleEntry<T>* entries, int64_t count,
                                    const float* inv_scale, float* found_inf) {
  for_each_table(entries, count, [&](const auto& table, unsigned grid) {
    using Table = std::decay_t<decltype(table)>;
    unscale_kernel<Table><<<grid, kBlockSize, 0, ctx.stream>>>(table, inv_scale, found_inf);
  });
}

#define EMBER_OPTIM_INSTANTIATE(T)                                                 \
  template void sgd_multi_tensor<T>(Context, const SgdEntry<T>*, int64_t);         \
  template void adam_multi_tensor<T>(Context, const AdamEntry<T>*, int64_t);       \
  template void rmsprop_multi_tensor<T>(Context, const RmspropEntry<T>*, int64_t); \
  template void unscale_and_check_multi_tensor<T>(Context, const UnscaleEntry<T>*, int64_t, \
                                                  const float*, float*);
EMBER_OPTIM_INSTANTIATE(float)
EMBER_OPTIM_INSTANTIATE(Half)
EMBER_OPTIM_INSTANTIATE(BFloat16)
#undef EMBER_OPTIM_INSTANTIATE

}  // namespace ember::kernels::cuda
