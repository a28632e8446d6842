// CUDA elementwise kernels (float, float16, bfloat16 computing in float), the twins of
// kernels/cpu/elementwise.cpp: the arithmetic is the shared kernels/elementwise_math.h; this file
// adds only indexing and launches.
#include "ember/kernels/cuda/elementwise.cuh"

#include <cuda_runtime_api.h>

#include <cstdint>
#include <type_traits>

#include "ember/core/base/cuda_check.h"
#include "ember/core/base/error.h"
#include "ember/kernels/acc_type.h"
#include "ember/kernels/cuda/launch.cuh"
#include "ember/kernels/elementwise_math.h"
#include "ember/kernels/index_math.h"

namespace ember::kernels::cuda {

namespace {

// ---------------------------------------------------------------------------------
// Kernels

template <typename F, typename T>
__global__ void unary_forward_kernel(F f, const T* x, T* y, int64_t n) {
  for (int64_t i : grid_stride(n)) y[i] = f.forward(static_cast<acc_t<T>>(x[i]));
}

// 16 bytes of T, loaded and stored as one vector (4 floats or 8 float16/bfloat16).
template <typename T>
struct alignas(16) Vec16 {
  static constexpr int kLanes = 16 / static_cast<int>(sizeof(T));
  T lane[kLanes];
};

// x and y 16-byte aligned: one 16-byte load and store per thread and step, each lane
// computed in acc_t<T> and rounded on store; the last n % kLanes elements go to the first
// threads of the grid. Launched for n / kLanes items.
template <typename F, typename T>
__global__ void unary_forward_vec_kernel(F f, const T* x, T* y, int64_t n) {
  constexpr int kLanes = Vec16<T>::kLanes;
  const int64_t nv = n / kLanes;
  const auto* xv = reinterpret_cast<const Vec16<T>*>(x);
  auto* yv = reinterpret_cast<Vec16<T>*>(y);
  for (int64_t i : grid_stride(nv)) {
    Vec16<T> v = xv[i];
#pragma unroll
    for (int l = 0; l < kLanes; ++l) v.lane[l] = f.forward(static_cast<acc_t<T>>(v.lane[l]));
    yv[i] = v;
  }
  const int64_t t = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (t < n - kLanes * nv) {
    y[kLanes * nv + t] = f.forward(static_cast<acc_t<T>>(x[kLanes * nv + t]));
  }
}

template <typename F, typename T>
__global__ void unary_backward_kernel(F f, const T* x, const T* y, const T* grad_y, T* grad_x,
                                      int64_t n) {
  using A = acc_t<T>;
  for (int64_t i : grid_stride(n)) {
    grad_x[i] = static_cast<A>(grad_y[i]) *
                f.derivative(static_cast<A>(x[i]), static_cast<A>(y[i]));
  }
}

// Rank 0 or 1 (contiguous, broadcast scalar, or one strided dimension): offsets without
// the unravel's 64-bit divisions.
template <typename T, typename R, typename F>
__global__ void broadcast_1d_kernel(F f, const T* a, int64_t stride_a, const T* b,
                                    int64_t stride_b, R* out, int64_t n) {
  using A = acc_t<T>;
  for (int64_t i : grid_stride(n)) {
    out[i] = f(static_cast<A>(a[i * stride_a]), static_cast<A>(b[i * stride_b]));
  }
}

template <typename T, typename R, typename F>
__global__ void broadcast_kernel(F f, const T* a, const T* b, R* out, BroadcastIndex idx,
                                 int64_t n) {
  for (int64_t i : grid_stride(n)) {
    const BroadcastOffsets off = broadcast_offsets(idx, i);
    out[i] = f(static_cast<acc_t<T>>(a[off.a]), static_cast<acc_t<T>>(b[off.b]));
  }
}

template <typename S, typename D>
__global__ void cast_kernel(const S* x, D* y, int64_t n) {
  for (int64_t i : grid_stride(n)) y[i] = math::convert<D>(x[i]);
}

template <typename T>
__global__ void fill_kernel(T* y, int64_t n, T value) {
  for (int64_t i : grid_stride(n)) y[i] = value;
}

// Gather (Scatter == false): y[i] = x[offset(i)]; scatter: y[offset(i)] = x[i].
template <typename U, bool Scatter>
__global__ void strided_copy_kernel(const U* x, StridedIndex idx, U* y, int64_t n) {
  for (int64_t i : grid_stride(n)) {
    if constexpr (Scatter) {
      y[strided_offset(idx, i)] = x[i];
    } else {
      y[i] = x[strided_offset(idx, i)];
    }
  }
}

// ---------------------------------------------------------------------------------
// Launchers

inline bool aligned_16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

template <typename T, typename R, typename F>
void launch_broadcast(cudaStream_t stream, F f, const T* a, const T* b, R* out,
                      const BroadcastIndex& idx, int64_t n) {
  if (idx.ndim <= 1) {
    const int64_t sa = idx.ndim == 0 ? 0 : idx.stride_a[0];
    const int64_t sb = idx.ndim == 0 ? 0 : idx.stride_b[0];
    launch_1d(broadcast_1d_kernel<T, R, F>, n, stream, f, a, sa, b, sb, out, n);
  } else {
    launch_1d(broadcast_kernel<T, R, F>, n, stream, f, a, b, out, idx, n);
  }
}

template <typename U, bool Scatter>
void launch_strided_copy(cudaStream_t stream, const void* x, const StridedIndex& idx,
                         void* y, int64_t n) {
  launch_1d(strided_copy_kernel<U, Scatter>, n, stream, static_cast<const U*>(x), idx,
            static_cast<U*>(y), n);
}

// Float64 has no CUDA kernels in ember (gradient checks run on the CPU).
void check_cuda_dtype(const char* op, int dtype) {
  EMBER_CHECK_T(DTypeError, dtype != 1, op,
                ": float64 is not supported on CUDA (dtype code 1); use the CPU backend");
}

}  // namespace

// ---------------------------------------------------------------------------------
// Entry points

template <typename T>
void unary_forward(Context ctx, UnaryOp op, const T* x, T* y, int64_t n, UnaryParams p) {
  if (n <= 0) return;
  math::visit_unary<acc_t<T>>(op, p, [&](auto f) {
    using F = decltype(f);
    if (n >= Vec16<T>::kLanes && aligned_16(x) && aligned_16(y)) {
      launch_1d(unary_forward_vec_kernel<F, T>, n / Vec16<T>::kLanes, ctx.stream, f, x, y, n);
    } else {
      launch_1d(unary_forward_kernel<F, T>, n, ctx.stream, f, x, y, n);
    }
  });
}

template <typename T>
void unary_backward(Context ctx, UnaryOp op, const T* x, const T* y, const T* grad_y,
                    T* grad_x, int64_t n, UnaryParams p) {
  if (n <= 0) return;
  math::visit_unary<acc_t<T>>(op, p, [&](auto f) {
    launch_1d(unary_backward_kernel<decltype(f), T>, n, ctx.stream, f, x, y, grad_y, grad_x,
              n);
  });
}

template <typename T>
void binary(Context ctx, BinaryOp op, const T* a, const T* b, T* out,
            const BroadcastIndex& idx, int64_t n) {
  if (n <= 0) return;
  math::visit_binary<acc_t<T>>(op, [&](auto f) {
    launch_broadcast(ctx.stream, f, a, b, out, idx, n);
  });
}

template <typename T>
void compare(Context ctx, CompareOp op, const T* a, const T* b, bool* out,
             const BroadcastIndex& idx, int64_t n) {
  if (n <= 0) return;
  math::visit_compare<acc_t<T>>(op, [&](auto f) {
    launch_broadcast(ctx.stream, f, a, b, out, idx, n);
  });
}

void cast(Context ctx, int src_dtype, const void* x, int dst_dtype, void* y, int64_t n) {
  check_cuda_dtype("cast", src_dtype);
  check_cuda_dtype("cast", dst_dtype);
  math::visit_dtype("cast", src_dtype, [&](auto src_tag) {
    using S = typename decltype(src_tag)::type;
    math::visit_dtype("cast", dst_dtype, [&](auto dst_tag) {
      using D = typename decltype(dst_tag)::type;
      if (n <= 0) return;
      // The f64 branches are never taken (checked above) but must still compile.
      if constexpr (std::is_same_v<S, D>) {
        EMBER_CUDA_CHECK(cudaMemcpyAsync(y, x, static_cast<size_t>(n) * sizeof(S),
                                         cudaMemcpyDeviceToDevice, ctx.stream));
      } else if constexpr (!std::is_same_v<S, double> && !std::is_same_v<D, double>) {
        launch_1d(cast_kernel<S, D>, n, ctx.stream, static_cast<const S*>(x),
                  static_cast<D*>(y), n);
      }
    });
  });
}

void fill(Context ctx, int dtype, void* y, int64_t n, double value) {
  math::visit_dtype("fill", dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    launch_1d(fill_kernel<T>, n, ctx.stream, static_cast<T*>(y), n,
              math::convert<T>(value));
  });
}

template <bool Scatter>
static void strided_copy_any(cudaStream_t stream, const char* op, int64_t elem_size,
                             const void* x, const StridedIndex& idx, void* y, int64_t n) {
  switch (elem_size) {
    case 1: return launch_strided_copy<uint8_t, Scatter>(stream, x, idx, y, n);
    case 2: return launch_strided_copy<uint16_t, Scatter>(stream, x, idx, y, n);
    case 4: return launch_strided_copy<uint32_t, Scatter>(stream, x, idx, y, n);
    case 8: return launch_strided_copy<uint64_t, Scatter>(stream, x, idx, y, n);
  }
  EMBER_CHECK(false, op, ": element size ", elem_size,
              " bytes is not supported (expected 1, 2, 4 or 8)");
}

void strided_copy(Context ctx, int64_t elem_size, const void* x, const StridedIndex& idx,
                  void* y, int64_t n) {
  strided_copy_any<false>(ctx.stream, "strided_copy", elem_size, x, idx, y, n);
}

void strided_scatter(Context ctx, int64_t elem_size, const void* x, const StridedIndex& idx,
                     void* y, int64_t n) {
  strided_copy_any<true>(ctx.stream, "strided_scatter", elem_size, x, idx, y, n);
}

template void binary<float>(Context, BinaryOp, const float*, const float*, float*,
                            const BroadcastIndex&, int64_t);
template void binary<int32_t>(Context, BinaryOp, const int32_t*, const int32_t*,
                              int32_t*, const BroadcastIndex&, int64_t);
template void binary<int64_t>(Context, BinaryOp, const int64_t*, const int64_t*,
                              int64_t*, const BroadcastIndex&, int64_t);

template void compare<float>(Context, CompareOp, const float*, const float*, bool*,
                             const BroadcastIndex&, int64_t);
template void compare<int32_t>(Context, CompareOp, const int32_t*, const int32_t*,
                               bool*, const BroadcastIndex&, int64_t);
template void compare<int64_t>(Context, CompareOp, const int64_t*, const int64_t*,
                               bool*, const BroadcastIndex&, int64_t);
template void compare<uint8_t>(Context, CompareOp, const uint8_t*, const uint8_t*,
                               bool*, const BroadcastIndex&, int64_t);
template void compare<bool>(Context, CompareOp, const bool*, const bool*, bool*,
                            const BroadcastIndex&, int64_t);

#define EMBER_UNARY_INSTANTIATE(T)                                                         \
  template void unary_forward<T>(Context, UnaryOp, const T*, T*, int64_t, UnaryParams);   \
  template void unary_backward<T>(Context, UnaryOp, const T*, const T*, const T*, T*,     \
                                  int64_t, UnaryParams);
EMBER_UNARY_INSTANTIATE(float)
EMBER_UNARY_INSTANTIATE(Half)
EMBER_UNARY_INSTANTIATE(BFloat16)
#undef EMBER_UNARY_INSTANTIATE

template void binary<Half>(Context, BinaryOp, const Half*, const Half*, Half*,
                           const BroadcastIndex&, int64_t);
template void binary<BFloat16>(Context, BinaryOp, const BFloat16*, const BFloat16*, BFloat16*,
                               const BroadcastIndex&, int64_t);
template void compare<Half>(Context, CompareOp, const Half*, const Half*, bool*,
                            const BroadcastIndex&, int64_t);
template void compare<BFloat16>(Context, CompareOp, const BFloat16*, const BFloat16*, bool*,
                                const BroadcastIndex&, int64_t);

}  // namespace ember::kernels::cuda
