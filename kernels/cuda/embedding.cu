// CUDA embedding: a gather for the forward; for the backward a scatter-add with atomics,
// or (deterministic mode) a sort of the indices and an ordered sum per run of equal ones,
// as PyTorch's embedding_dense_backward does.
#include "ember/kernels/cuda/embedding.cuh"

#include <cub/device/device_radix_sort.cuh>

#include <climits>
#include <type_traits>

#include "ember/core/base/half.h"
#include "ember/kernels/cuda/launch.cuh"

namespace ember::kernels::cuda {
namespace {

__device__ inline bool in_table(int64_t r, int64_t rows) { return r >= 0 && r < rows; }

// ---- kernels ----------------------------------------------------------------------------

// weight: [V, dim], indices: [n] -> out: [n, dim]; rows of bad indices are NaN.
template <typename T>
__global__ void embedding_forward_kernel(const T* weight, const int64_t* indices,
                                         T* out, int64_t n, int64_t dim, int64_t rows,
                                         int64_t* bad_count) {
  for (int64_t k : grid_stride(n * dim)) {
    const int64_t i = k / dim, j = k - i * dim;
    const int64_t r = indices[i];
    if (in_table(r, rows)) {
      out[k] = weight[r * dim + j];
    } else {
      out[k] = __int_as_float(0x7fc00000);  // quiet NaN (rounds to a NaN of T)
      if (j == 0) atomicAdd(reinterpret_cast<unsigned long long*>(bad_count), 1ULL);
    }
  }
}

// grad_out: [n, dim] -> grad_weight: [V, dim] (zeroed before), atomically.
template <typename T>
__global__ void embedding_backward_atomic_kernel(const T* grad_out, const int64_t* indices,
                                                 T* grad_weight, int64_t n, int64_t dim,
                                                 int64_t rows, int64_t padding_idx) {
  for (int64_t k : grid_stride(n * dim)) {
    const int64_t i = k / dim, j = k - i * dim;
    const int64_t r = indices[i];
    if (r == padding_idx || !in_table(r, rows)) continue;
    atomicAdd(grad_weight + r * dim + j, grad_out[k]);
  }
}

// The sort's input: key = the row (bad indices and the padding row become `rows`, sorted
// last and skipped), value = the position i.
__global__ void embedding_sort_keys_kernel(const int64_t* indices, int64_t* keys,
                                           int64_t* positions, int64_t n, int64_t rows,
                                           int64_t padding_idx) {
  for (int64_t i : grid_stride(n)) {
    const int64_t r = indices[i];
    keys[i] = (r == padding_idx || !in_table(r, rows)) ? rows : r;
    positions[i] = i;
  }
}

// One thread per (sorted position p, column j) where p starts a run of equal keys: it sums
// the run's rows of grad_out in the order of i (the sort is stable), as the CPU does.
template <typename T>
__global__ void embedding_segment_sum_kernel(const T* grad_out, const int64_t* keys,
                                             const int64_t* positions, T* grad_weight,
                                             int64_t n, int64_t dim, int64_t rows) {
  for (int64_t k : grid_stride(n * dim)) {
    const int64_t p = k / dim, j = k - p * dim;
    const int64_t r = keys[p];
    if (r == rows || (p > 0 && keys[p - 1] == r)) continue;
    float sum = 0.0f;
    for (int64_t q = p; q < n && keys[q] == r; ++q) {
      sum += static_cast<float>(grad_out[positions[q] * dim + j]);
    }
    grad_weight[r * dim + j] = sum;
  }
}

// Bits the sort must look at: keys are in [0, rows].
int key_bits(int64_t rows) {
  int bits = 1;
  while (bits < 63 && (int64_t{1} << bits) <= rows) ++bits;
  return bits;
}

template <typename T>
void backward_sorted(Context ctx, const T* grad_out, const int64_t* indices,
                     T* grad_weight, int64_t n, int64_t dim, int64_t rows,
                     int64_t padding_idx, const Scratch& scratch) {
  EMBER_CHECK(n <= INT32_MAX, "embedding: ", n,
              " indices exceed the deterministic backward's sort (at most 2^31 - 1)");
  const int count = static_cast<int>(n);
  size_t sort_bytes = 0;
  EMBER_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(
      nullptr, sort_bytes, static_cast<const int64_t*>(nullptr), static_cast<int64_t*>(nullptr),
      static_cast<const int64_t*>(nullptr), static_cast<int64_t*>(nullptr), count, 0,
      key_bits(rows), ctx.stream));
  const size_t arrays = 4 * static_cast<size_t>(n) * sizeof(int64_t);
  auto* base = static_cast<unsigned char*>(scratch(arrays + sort_bytes));
  auto* keys_in = reinterpret_cast<int64_t*>(base);
  int64_t* keys = keys_in + n;
  int64_t* positions_in = keys + n;
  int64_t* positions = positions_in + n;
  launch_1d(embedding_sort_keys_kernel, n, ctx.stream, indices, keys_in, positions_in, n, rows,
            padding_idx);
  EMBER_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(base + arrays, sort_bytes, keys_in, keys,
                                                   positions_in, positions, count, 0,
                                                   key_bits(rows), ctx.stream));
  launch_1d(embedding_segment_sum_kernel<T>, n * dim, ctx.stream, grad_out, keys, positions,
            grad_weight, n, dim, rows);
}

}  // namespace

// ---- entry points -------------------------------------------------------------------------

template <typename T>
void embedding_forward(Context ctx, const T* weight, const int64_t* indices, T* out,
                       int64_t n, int64_t dim, int64_t num_embeddings, int64_t* bad_count) {
  launch_1d(embedding_forward_kernel<T>, n * dim, ctx.stream, weight, indices, out, n, dim,
            num_embeddings, bad_count);
}

template <typename T>
void embedding_backward(Context ctx, const T* grad_out, const int64_t* indices,
                        T* grad_weight, int64_t n, int64_t dim, int64_t num_embeddings,
                        int64_t padding_idx, const Scratch& scratch) {
  const size_t bytes = static_cast<size_t>(num_embeddings * dim) * sizeof(T);
  if (bytes > 0) EMBER_CUDA_CHECK(cudaMemsetAsync(grad_weight, 0, bytes, ctx.stream));
  if (n == 0 || dim == 0) return;
  // float16 / bfloat16 always take the sorted path: each row sums in float and rounds once
  // (an atomicAdd per element would round after every addition).
  if (ctx.deterministic || is_reduced_float_v<T>) {
    backward_sorted(ctx, grad_out, indices, grad_weight, n, dim, num_embeddings, padding_idx,
                    scratch);
  } else {
    if constexpr (std::is_same_v<T, float>) {
      launch_1d(embedding_backward_atomic_kernel<T>, n * dim, ctx.stream, grad_out, indices,
                grad_weight, n, dim, num_embeddings, padding_idx);
    }
  }
}

#define EMBER_EMBEDDING_INSTANTIATE(T)                                                       \
  template void embedding_forward<T>(Context, const T*, const int64_t*, T*, int64_t, int64_t, \
                                     int64_t, int64_t*);                                      \
  template void embedding_backward<T>(Context, const T*, const int64_t*, T*, int64_t,         \
                                      int64_t, int64_t, int64_t, const Scratch&);
EMBER_EMBEDDING_INSTANTIATE(float)
EMBER_EMBEDDING_INSTANTIATE(Half)
EMBER_EMBEDDING_INSTANTIATE(BFloat16)
#undef EMBER_EMBEDDING_INSTANTIATE

}  // namespace ember::kernels::cuda
