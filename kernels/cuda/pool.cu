// CUDA pooling kernels: general max/average pooling (forward one thread per output,
// backward one thread per input gathering from its windows) and adaptive average pooling.
// The window arithmetic is kernels/cpu/pool.h's, shared with the CPU loops. The entry
// points send the geometries cuDNN computes exactly to cuDNN (Note [Ceil mode on the GPU]).
//
// Note [Ceil mode on the GPU]
// cuDNN sizes its output with the floor formula and has no ceil mode. When ceil_mode adds
// a last window that runs past the bottom/right padding, padding the input explicitly
// would not reproduce PyTorch's average: that window's divisor counts the padded input
// only up to the padding, never the overhang. Those geometries (and any too large for
// cuDNN's int32 descriptors) run the hand-written kernels below, which use the same window
// arithmetic as the CPU loops; when ceil_mode does not change the output size the windows
// are identical and cuDNN serves it.
#include "ember/kernels/cuda/pool.cuh"

#include <cub/block/block_reduce.cuh>

#include <cmath>

#include "ember/core/base/half.h"
#include "ember/kernels/cuda/launch.cuh"
#include "ember/kernels/cudnn/pool.h"

namespace ember::kernels::cuda {
namespace {

constexpr int kPlaneBlock = 256;

// ---- device helpers ---------------------------------------------------------------------

template <typename T>
__device__ inline float window_max(const Pool2dGeometry& g, const T* plane,
                                   const PoolWindow& win) {
  float best = -INFINITY;
  for (int64_t ih = win.h0; ih < win.h1; ++ih) {
    for (int64_t iw = win.w0; iw < win.w1; ++iw) {
      const float v = plane[ih * g.w + iw];
      if (isnan(v)) return v;
      if (v > best) best = v;
    }
  }
  return best;
}

// The element the forward picked: the first equal to y, or the first NaN (as on the CPU).
template <typename T>
__device__ inline int64_t window_argmax(const Pool2dGeometry& g, const T* plane,
                                        const PoolWindow& win, float y) {
  const bool y_nan = isnan(y);
  for (int64_t ih = win.h0; ih < win.h1; ++ih) {
    for (int64_t iw = win.w0; iw < win.w1; ++iw) {
      const float v = plane[ih * g.w + iw];
      if (y_nan ? isnan(v) : v == y) return ih * g.w + iw;
    }
  }
  return win.h0 * g.w + win.w0;
}

// The outputs along one axis whose (padded, unclipped) window covers input index i:
// o * stride - pad <= i < o * stride - pad + kernel.
__device__ inline void covering_outputs(int64_t i, int64_t kernel, int64_t stride, int64_t pad,
                                        int64_t out, int64_t* lo, int64_t* hi) {
  const int64_t first = i + pad - kernel + 1;  // o * stride >= first
  *lo = first <= 0 ? 0 : (first + stride - 1) / stride;
  const int64_t last = (i + pad) / stride;
  *hi = last < out - 1 ? last : out - 1;  // inclusive
}

// ---- kernels ----------------------------------------------------------------------------

// x: [planes, h, w] -> y: [planes, out_h, out_w]
template <typename T>
__global__ void pool2d_forward_kernel(Pool2dGeometry g, PoolMode mode, const T* x,
                                      T* y, int64_t total) {
  for (int64_t j : grid_stride(total)) {
    const int64_t ow = j % g.out_w;
    const int64_t oh = (j / g.out_w) % g.out_h;
    const int64_t p = j / (g.out_w * g.out_h);
    const PoolWindow win = pool_window(g, oh, ow);
    const T* plane = x + p * g.h * g.w;
    if (mode == PoolMode::Max) {
      y[j] = window_max(g, plane, win);
    } else {
      float sum = 0.0f;
      for (int64_t ih = win.h0; ih < win.h1; ++ih) {
        for (int64_t iw = win.w0; iw < win.w1; ++iw) sum += plane[ih * g.w + iw];
      }
      y[j] = sum / static_cast<float>(win.divisor);
    }
  }
}

// grad_x: [planes, h, w], every element written.
template <typename T>
__global__ void pool2d_backward_kernel(Pool2dGeometry g, PoolMode mode, const T* x,
                                       const T* y, const T* grad_y, T* grad_x,
                                       int64_t total) {
  for (int64_t j : grid_stride(total)) {
    const int64_t iw = j % g.w;
    const int64_t ih = (j / g.w) % g.h;
    const int64_t p = j / (g.w * g.h);
    int64_t oh0, oh1, ow0, ow1;
    covering_outputs(ih, g.kernel_h, g.stride_h, g.pad_h, g.out_h, &oh0, &oh1);
    covering_outputs(iw, g.kernel_w, g.stride_w, g.pad_w, g.out_w, &ow0, &ow1);
    const int64_t out_base = p * g.out_h * g.out_w;
    const T* plane = x == nullptr ? nullptr : x + p * g.h * g.w;
    float acc = 0.0f;
    for (int64_t oh = oh0; oh <= oh1; ++oh) {
      for (int64_t ow = ow0; ow <= ow1; ++ow) {
        const PoolWindow win = pool_window(g, oh, ow);
        const int64_t o = out_base + oh * g.out_w + ow;
        if (mode == PoolMode::Max) {
          if (window_argmax(g, plane, win, static_cast<float>(y[o])) == ih * g.w + iw) {
            acc += static_cast<float>(grad_y[o]);
          }
        } else {
          acc += static_cast<float>(grad_y[o]) / static_cast<float>(win.divisor);
        }
      }
    }
    grad_x[j] = acc;
  }
}

// Global average pooling: x: [planes, hw] -> y: [planes], one block per plane.
template <typename T>
__global__ void global_avg_pool_kernel(const T* x, T* y, int64_t planes, int64_t hw) {
  using BlockReduce = cub::BlockReduce<float, kPlaneBlock>;
  __shared__ typename BlockReduce::TempStorage temp;
  for (int64_t p = blockIdx.x; p < planes; p += gridDim.x) {
    const T* xp = x + p * hw;
    float acc = 0.0f;
    for (int64_t k = threadIdx.x; k < hw; k += blockDim.x) acc += xp[k];
    const float total = BlockReduce(temp).Sum(acc);
    if (threadIdx.x == 0) y[p] = total / static_cast<float>(hw);
    __syncthreads();  // temp is reused by the next plane
  }
}

template <typename T>
__global__ void adaptive_avg_pool_forward_kernel(const T* x, T* y, int64_t h, int64_t w,
                                                 int64_t out_h, int64_t out_w, int64_t total) {
  for (int64_t j : grid_stride(total)) {
    const int64_t ow = j % out_w;
    const int64_t oh = (j / out_w) % out_h;
    const int64_t p = j / (out_w * out_h);
    const int64_t h0 = adaptive_bin_start(oh, h, out_h), h1 = adaptive_bin_end(oh, h, out_h);
    const int64_t w0 = adaptive_bin_start(ow, w, out_w), w1 = adaptive_bin_end(ow, w, out_w);
    const T* plane = x + p * h * w;
    float sum = 0.0f;
    for (int64_t ih = h0; ih < h1; ++ih) {
      for (int64_t iw = w0; iw < w1; ++iw) sum += plane[ih * w + iw];
    }
    y[j] = sum / static_cast<float>((h1 - h0) * (w1 - w0));
  }
}

// The bins containing input index i along one axis. The candidates come from inverting
// the bin formula and are widened by one on each side, then tested exactly, so rounding
// in the inversion can never drop or add a bin.
__device__ inline void covering_bins(int64_t i, int64_t in, int64_t out, int64_t* lo,
                                     int64_t* hi) {
  const int64_t a = adaptive_bin_start(i, out, in) - 1;
  const int64_t b = adaptive_bin_end(i, out, in) + 1;
  *lo = a < 0 ? 0 : a;
  *hi = b > out ? out : b;  // exclusive
}

template <typename T>
__global__ void adaptive_avg_pool_backward_kernel(const T* grad_y, T* grad_x, int64_t h,
                                                  int64_t w, int64_t out_h, int64_t out_w,
                                                  int64_t total) {
  for (int64_t j : grid_stride(total)) {
    const int64_t iw = j % w;
    const int64_t ih = (j / w) % h;
    const int64_t p = j / (w * h);
    int64_t oh0, oh1, ow0, ow1;
    covering_bins(ih, h, out_h, &oh0, &oh1);
    covering_bins(iw, w, out_w, &ow0, &ow1);
    const T* gy = grad_y + p * out_h * out_w;
    float acc = 0.0f;
    for (int64_t oh = oh0; oh < oh1; ++oh) {
      const int64_t h0 = adaptive_bin_start(oh, h, out_h), h1 = adaptive_bin_end(oh, h, out_h);
      if (ih < h0 || ih >= h1) continue;
      for (int64_t ow = ow0; ow < ow1; ++ow) {
        const int64_t w0 = adaptive_bin_start(ow, w, out_w), w1 = adaptive_bin_end(ow, w, out_w);
        if (iw < w0 || iw >= w1) continue;
        acc += gy[oh * out_w + ow] / static_cast<float>((h1 - h0) * (w1 - w0));
      }
    }
    grad_x[j] = acc;
  }
}

}  // namespace

// ---- entry points -------------------------------------------------------------------------

template <typename T>
void pool2d_forward(Context ctx, const Pool2dGeometry& g, PoolMode mode, const T* x,
                    T* y) {
  if (ctx.cudnn != nullptr && cudnn::pool2d_supported(g)) {
    cudnn::pool2d_forward(ctx.cudnn, g, mode, x, y);
    return;
  }
  launch_1d(pool2d_forward_kernel<T>, g.output_numel(), ctx.stream, g, mode, x, y,
            g.output_numel());
}

template <typename T>
void pool2d_backward(Context ctx, const Pool2dGeometry& g, PoolMode mode, const T* x,
                     const T* y, const T* grad_y, T* grad_x) {
  if (ctx.cudnn != nullptr && cudnn::pool2d_supported(g)) {
    cudnn::pool2d_backward(ctx.cudnn, g, mode, ctx.deterministic, x, y, grad_y, grad_x);
    return;
  }
  launch_1d(pool2d_backward_kernel<T>, g.input_numel(), ctx.stream, g, mode, x, y, grad_y,
            grad_x, g.input_numel());
}

template <typename T>
void adaptive_avg_pool2d_forward(Context ctx, const T* x, T* y,
                                 int64_t planes, int64_t h, int64_t w, int64_t out_h,
                                 int64_t out_w) {
  if (out_h == 1 && out_w == 1) {
    launch_rows<kPlaneBlock>(global_avg_pool_kernel<T>, planes, ctx.stream, x, y, planes, h * w);
    return;
  }
  const int64_t total = planes * out_h * out_w;
  launch_1d(adaptive_avg_pool_forward_kernel<T>, total, ctx.stream, x, y, h, w, out_h, out_w,
            total);
}

template <typename T>
void adaptive_avg_pool2d_backward(Context ctx, const T* grad_y, T* grad_x,
                                  int64_t planes, int64_t h, int64_t w, int64_t out_h,
                                  int64_t out_w) {
  const int64_t total = planes * h * w;
  launch_1d(adaptive_avg_pool_backward_kernel<T>, total, ctx.stream, grad_y, grad_x, h, w, out_h,
            out_w, total);
}

#define EMBER_POOL_INSTANTIATE(T)                                                            \
  template void pool2d_forward<T>(Context, const Pool2dGeometry&, PoolMode, const T*, T*);   \
  template void pool2d_backward<T>(Context, const Pool2dGeometry&, PoolMode, const T*,       \
                                   const T*, const T*, T*);                                  \
  template void adaptive_avg_pool2d_forward<T>(Context, const T*, T*, int64_t, int64_t,      \
                                               int64_t, int64_t, int64_t);                   \
  template void adaptive_avg_pool2d_backward<T>(Context, const T*, T*, int64_t, int64_t,     \
                                                int64_t, int64_t, int64_t);
EMBER_POOL_INSTANTIATE(float)
EMBER_POOL_INSTANTIATE(Half)
EMBER_POOL_INSTANTIATE(BFloat16)
#undef EMBER_POOL_INSTANTIATE

}  // namespace ember::kernels::cuda
