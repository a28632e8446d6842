// CUDA reductions over the middle axis of [outer, n, inner], the max/min index backward
// and softmax / log-softmax. A contiguous axis (inner == 1) gets one block per row with
// CUB block reductions; a strided one gets one thread per output column.
#include "ember/kernels/cuda/reduce.cuh"

#include <cub/block/block_reduce.cuh>

#include <cmath>
#include <type_traits>

#include "ember/core/base/error.h"
#include "ember/kernels/acc_type.h"
#include "ember/kernels/cuda/launch.cuh"

namespace ember::kernels::cuda {
namespace {

constexpr int kRowBlock = 256;

// A row shorter than this would leave most of a 256-thread block idle (argmax over 10
// classes, say); the thread-per-column kernels, which also serve inner == 1, take it.
constexpr int64_t kMinBlockRow = 128;

// Float sums accumulate in double, as on the CPU: the reduction stays memory-bound even
// at a 1:64 double rate, and large sums keep their digits.
template <typename T>
struct Accumulator {
  using type = double;
};
template <>
struct Accumulator<int64_t> {
  using type = int64_t;
};

template <typename T>
__device__ bool is_nan_value(T v) {
  if constexpr (std::is_floating_point_v<T> || is_reduced_float_v<T>) {
    return isnan(static_cast<float>(v));
  } else {
    return false;
  }
}

// index < 0 marks an empty pair (a thread that saw no element of the row).
template <typename T>
struct ValueIndex {
  T value;
  int64_t index;
};

// Picks, in order of preference: a non-empty pair, a NaN, the larger (kMax) or smaller
// value, the lower index. That is a selection by a total order, hence associative and
// commutative, so any reduction tree returns the CPU's answer: the first NaN if there is
// one, else the first occurrence of the extreme.
template <typename T, bool kMax>
struct ExtremeOp {
  __device__ ValueIndex<T> operator()(const ValueIndex<T>& a, const ValueIndex<T>& b) const {
    if (a.index < 0) return b;
    if (b.index < 0) return a;
    const bool a_nan = is_nan_value(a.value);
    const bool b_nan = is_nan_value(b.value);
    if (a_nan != b_nan) return a_nan ? a : b;
    // 16-bit values compare as float (exact: every float16/bfloat16 is a float).
    const acc_t<T> av = static_cast<acc_t<T>>(a.value), bv = static_cast<acc_t<T>>(b.value);
    if (a_nan || av == bv) return a.index < b.index ? a : b;
    return (kMax ? av > bv : av < bv) ? a : b;
  }
};

struct MaxOp {
  __device__ float operator()(float a, float b) const { return fmaxf(a, b); }
};

// ---- kernels ----------------------------------------------------------------------------

// x: [rows, n] -> out: [rows]
template <typename T, typename Acc>
__global__ void sum_rows_kernel(const T* x, T* out, int64_t rows, int64_t n, bool mean) {
  using BlockReduce = cub::BlockReduce<Acc, kRowBlock>;
  __shared__ typename BlockReduce::TempStorage temp;
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const T* row = x + r * n;
    Acc acc = 0;
    for (int64_t k = threadIdx.x; k < n; k += blockDim.x) acc += static_cast<Acc>(row[k]);
    const Acc total = BlockReduce(temp).Sum(acc);
    if (threadIdx.x == 0) out[r] = static_cast<T>(mean ? total / static_cast<Acc>(n) : total);
    __syncthreads();  // temp is reused by the next row
  }
}

// x: [outer, n, inner] -> out: [outer, inner]; neighbouring threads read neighbouring i.
template <typename T, typename Acc>
__global__ void sum_columns_kernel(const T* x, T* out, int64_t outer, int64_t n, int64_t inner,
                                   bool mean) {
  for (int64_t j : grid_stride(outer * inner)) {
    const int64_t o = j / inner;
    const T* col = x + o * n * inner + (j - o * inner);
    Acc acc = 0;
    for (int64_t k = 0; k < n; ++k) acc += static_cast<Acc>(col[k * inner]);
    out[j] = static_cast<T>(mean ? acc / static_cast<Acc>(n) : acc);
  }
}

template <typename T, bool kMax>
__global__ void extreme_rows_kernel(const T* x, T* out, int64_t* indices, int64_t rows, int64_t n) {
  using Pair = ValueIndex<T>;
  using BlockReduce = cub::BlockReduce<Pair, kRowBlock>;
  __shared__ typename BlockReduce::TempStorage temp;
  const ExtremeOp<T, kMax> op;
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const T* row = x + r * n;
    Pair best{T(0.0f), -1};
    for (int64_t k = threadIdx.x; k < n; k += blockDim.x) best = op(best, Pair{row[k], k});
    const Pair result = BlockReduce(temp).Reduce(best, op);
    if (threadIdx.x == 0) {
      out[r] = result.value;
      if (indices != nullptr) indices[r] = result.index;
    }
    __syncthreads();
  }
}

template <typename T, bool kMax>
__global__ void extreme_columns_kernel(const T* x, T* out, int64_t* indices, int64_t outer,
                                       int64_t n, int64_t inner) {
  using Pair = ValueIndex<T>;
  const ExtremeOp<T, kMax> op;
  for (int64_t j : grid_stride(outer * inner)) {
    const int64_t o = j / inner;
    const T* col = x + o * n * inner + (j - o * inner);
    Pair best{col[0], 0};
    for (int64_t k = 1; k < n; ++k) best = op(best, Pair{col[k * inner], k});
    out[j] = best.value;
    if (indices != nullptr) indices[j] = best.index;
  }
}

// grad_x: [outer, n, inner], every element written.
template <typename T>
__global__ void index_backward_kernel(const int64_t* indices, const T* grad_y, T* grad_x,
                                      int64_t n, int64_t inner, int64_t total) {
  for (int64_t j : grid_stride(total)) {
    const int64_t i = j % inner;
    const int64_t ok = j / inner;
    const int64_t k = ok % n;
    const int64_t out_j = (ok / n) * inner + i;
    grad_x[j] = indices[out_j] == k ? grad_y[out_j] : T(0.0f);
  }
}

// x, y: [rows, n]; three passes over the row: max, sum of exp, write.
template <typename T>
__global__ void softmax_rows_kernel(const T* x, T* y, int64_t rows, int64_t n, bool log) {
  using BlockReduce = cub::BlockReduce<float, kRowBlock>;
  __shared__ typename BlockReduce::TempStorage temp;
  __shared__ float row_max, row_sum;
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const T* xr = x + r * n;
    T* yr = y + r * n;
    float m = -INFINITY;
    for (int64_t k = threadIdx.x; k < n; k += blockDim.x) m = fmaxf(m, static_cast<float>(xr[k]));
    m = BlockReduce(temp).Reduce(m, MaxOp{});
    if (threadIdx.x == 0) row_max = m;
    __syncthreads();
    m = row_max;
    float s = 0.0f;
    for (int64_t k = threadIdx.x; k < n; k += blockDim.x) s += expf(static_cast<float>(xr[k]) - m);
    s = BlockReduce(temp).Sum(s);
    if (threadIdx.x == 0) row_sum = s;
    __syncthreads();
    s = row_sum;
    const float log_s = logf(s);
    for (int64_t k = threadIdx.x; k < n; k += blockDim.x) {
      const float shifted = static_cast<float>(xr[k]) - m;
      yr[k] = log ? shifted - log_s : expf(shifted) / s;
    }
    __syncthreads();  // row_max, row_sum and temp are rewritten by the next row
  }
}

template <typename T>
__global__ void softmax_columns_kernel(const T* x, T* y, int64_t outer, int64_t n,
                                       int64_t inner, bool log) {
  for (int64_t j : grid_stride(outer * inner)) {
    const int64_t o = j / inner;
    const int64_t start = o * n * inner + (j - o * inner);
    const T* xc = x + start;
    T* yc = y + start;
    float m = -INFINITY;
    for (int64_t k = 0; k < n; ++k) m = fmaxf(m, static_cast<float>(xc[k * inner]));
    float s = 0.0f;
    for (int64_t k = 0; k < n; ++k) s += expf(static_cast<float>(xc[k * inner]) - m);
    const float log_s = logf(s);
    for (int64_t k = 0; k < n; ++k) {
      const float shifted = static_cast<float>(xc[k * inner]) - m;
      yc[k * inner] = log ? shifted - log_s : expf(shifted) / s;
    }
  }
}

// softmax: gx = y (gy - sum(gy y)); log_softmax: gx = gy - exp(y) sum(gy).
__device__ inline float softmax_grad(float y, float gy, float dot, bool log) {
  return log ? gy - expf(y) * dot : y * (gy - dot);
}

template <typename T>
__global__ void softmax_backward_rows_kernel(const T* y, const T* grad_y, T* grad_x,
                                             int64_t rows, int64_t n, bool log) {
  using BlockReduce = cub::BlockReduce<float, kRowBlock>;
  __shared__ typename BlockReduce::TempStorage temp;
  __shared__ float row_dot;
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const int64_t base = r * n;
    float d = 0.0f;
    for (int64_t k = threadIdx.x; k < n; k += blockDim.x) {
      const float gy = grad_y[base + k];
      d += log ? gy : gy * static_cast<float>(y[base + k]);
    }
    d = BlockReduce(temp).Sum(d);
    if (threadIdx.x == 0) row_dot = d;
    __syncthreads();
    d = row_dot;
    for (int64_t k = threadIdx.x; k < n; k += blockDim.x) {
      grad_x[base + k] = softmax_grad(y[base + k], grad_y[base + k], d, log);
    }
    __syncthreads();
  }
}

template <typename T>
__global__ void softmax_backward_columns_kernel(const T* y, const T* grad_y, T* grad_x,
                                                int64_t outer, int64_t n, int64_t inner, bool log) {
  for (int64_t j : grid_stride(outer * inner)) {
    const int64_t o = j / inner;
    const int64_t start = o * n * inner + (j - o * inner);
    float d = 0.0f;
    for (int64_t k = 0; k < n; ++k) {
      const int64_t e = start + k * inner;
      const float gy = grad_y[e];
      d += log ? gy : gy * static_cast<float>(y[e]);
    }
    for (int64_t k = 0; k < n; ++k) {
      const int64_t e = start + k * inner;
      grad_x[e] = softmax_grad(y[e], grad_y[e], d, log);
    }
  }
}

// ---- launchers --------------------------------------------------------------------------

bool use_row_kernel(int64_t n, int64_t inner) { return inner == 1 && n >= kMinBlockRow; }

template <typename T, bool kMax>
void launch_extreme(cudaStream_t stream, const T* x, T* out, int64_t* indices, int64_t outer,
                    int64_t n, int64_t inner) {
  if (use_row_kernel(n, inner)) {
    launch_rows<kRowBlock>(extreme_rows_kernel<T, kMax>, outer, stream, x, out, indices, outer, n);
  } else {
    launch_1d(extreme_columns_kernel<T, kMax>, outer * inner, stream, x, out, indices, outer, n,
              inner);
  }
}

}  // namespace

// ---- entry points -----------------------------------------------------------------------

template <typename T>
void reduce(Context ctx, ReduceOp op, const T* x, T* out, int64_t* indices, int64_t outer,
            int64_t n, int64_t inner) {
  if (outer == 0 || inner == 0) return;
  using Acc = typename Accumulator<T>::type;
  switch (op) {
    case ReduceOp::Sum:
    case ReduceOp::Mean: {
      if constexpr (std::is_integral_v<T>) {
        EMBER_CHECK(op != ReduceOp::Mean, "reduce: mean of an int64 tensor [", outer, ", ", n,
                    ", ", inner, "] is not supported; convert it to a floating dtype first");
      }
      const bool mean = op == ReduceOp::Mean;
      if (use_row_kernel(n, inner)) {
        launch_rows<kRowBlock>(sum_rows_kernel<T, Acc>, outer, ctx.stream, x, out, outer, n,
                               mean);
      } else {
        launch_1d(sum_columns_kernel<T, Acc>, outer * inner, ctx.stream, x, out, outer, n,
                  inner, mean);
      }
      return;
    }
    case ReduceOp::Max:
    case ReduceOp::Min:
      EMBER_INTERNAL_ASSERT(n > 0, "reduce: max/min over an empty axis of [", outer, ", ", n,
                            ", ", inner, "]");
      if (op == ReduceOp::Max) {
        launch_extreme<T, true>(ctx.stream, x, out, indices, outer, n, inner);
      } else {
        launch_extreme<T, false>(ctx.stream, x, out, indices, outer, n, inner);
      }
      return;
  }
  EMBER_INTERNAL_ASSERT(false, "reduce: unknown ReduceOp ", static_cast<int>(op));
}

template <typename T>
void reduce_index_backward(Context ctx, const int64_t* indices, const T* grad_y, T* grad_x,
                           int64_t outer, int64_t n, int64_t inner) {
  const int64_t total = outer * n * inner;
  launch_1d(index_backward_kernel<T>, total, ctx.stream, indices, grad_y, grad_x, n, inner, total);
}

template <typename T>
void softmax_forward(Context ctx, const T* x, T* y, int64_t outer, int64_t n, int64_t inner,
                     bool log) {
  if (outer == 0 || n == 0 || inner == 0) return;
  if (use_row_kernel(n, inner)) {
    launch_rows<kRowBlock>(softmax_rows_kernel<T>, outer, ctx.stream, x, y, outer, n, log);
  } else {
    launch_1d(softmax_columns_kernel<T>, outer * inner, ctx.stream, x, y, outer, n, inner, log);
  }
}

template <typename T>
void softmax_backward(Context ctx, const T* y, const T* grad_y, T* grad_x, int64_t outer,
                      int64_t n, int64_t inner, bool log) {
  if (outer == 0 || n == 0 || inner == 0) return;
  if (use_row_kernel(n, inner)) {
    launch_rows<kRowBlock>(softmax_backward_rows_kernel<T>, outer, ctx.stream, y, grad_y, grad_x,
                           outer, n, log);
  } else {
    launch_1d(softmax_backward_columns_kernel<T>, outer * inner, ctx.stream, y, grad_y, grad_x,
              outer, n, inner, log);
  }
}

template void reduce<float>(Context, ReduceOp, const float*, float*, int64_t*, int64_t, int64_t,
                            int64_t);
template void reduce<int64_t>(Context, ReduceOp, const int64_t*, int64_t*, int64_t*, int64_t,
                              int64_t, int64_t);

template void reduce<Half>(Context, ReduceOp, const Half*, Half*, int64_t*, int64_t, int64_t,
                           int64_t);
template void reduce<BFloat16>(Context, ReduceOp, const BFloat16*, BFloat16*, int64_t*, int64_t,
                               int64_t, int64_t);

#define EMBER_SOFTMAX_INSTANTIATE(T)                                                        \
  template void reduce_index_backward<T>(Context, const int64_t*, const T*, T*, int64_t,   \
                                         int64_t, int64_t);                                \
  template void softmax_forward<T>(Context, const T*, T*, int64_t, int64_t, int64_t, bool); \
  template void softmax_backward<T>(Context, const T*, const T*, T*, int64_t, int64_t,     \
                                    int64_t, bool);
EMBER_SOFTMAX_INSTANTIATE(float)
EMBER_SOFTMAX_INSTANTIATE(Half)
EMBER_SOFTMAX_INSTANTIATE(BFloat16)
#undef EMBER_SOFTMAX_INSTANTIATE

}  // namespace ember::kernels::cuda
