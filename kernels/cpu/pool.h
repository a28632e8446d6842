// CPU max / average / adaptive-average pooling on NCHW, forward and backward, and the
// window arithmetic (PyTorch's) that kernels/cuda/pool.cu shares: the reference for the
// cuDNN and CUDA pooling paths.
#pragma once

#include <cstdint>

#include "ember/kernels/context.h"
#include "ember/kernels/hd.h"

namespace ember::kernels {

enum class PoolMode : int { Max, Avg };

// One pooling problem: input [n, c, h, w] -> output [n, c, out_h, out_w], zero padding
// pad_* on every side (and, in ceil mode, windows that run past the bottom/right).
struct Pool2dGeometry {
  int64_t n = 0, c = 0, h = 0, w = 0;
  int64_t out_h = 0, out_w = 0;
  int64_t kernel_h = 1, kernel_w = 1;
  int64_t stride_h = 1, stride_w = 1;
  int64_t pad_h = 0, pad_w = 0;
  bool count_include_pad = true;  // Avg only

  int64_t planes() const { return n * c; }
  int64_t input_numel() const { return n * c * h * w; }
  int64_t output_numel() const { return n * c * out_h * out_w; }
};

// PyTorch's pooling output size: floor (or ceil) of (in + 2 pad - kernel) / stride, plus
// one; in ceil mode the last window must start inside the input or the left padding.
// Assumes in + 2 pad >= kernel (the op checks).
EMBER_HD inline int64_t pool_output_size(int64_t in, int64_t kernel, int64_t stride,
                                         int64_t pad, bool ceil_mode) {
  const int64_t span = in + 2 * pad - kernel + (ceil_mode ? stride - 1 : 0);
  int64_t out = span / stride + 1;
  if (ceil_mode && (out - 1) * stride >= in + pad) --out;
  return out;
}

// The input rows/columns [h0, h1) x [w0, w1) that output (oh, ow) reads, and its
// divisor for average pooling. As PyTorch: the window is first clipped to the padded
// input (a ceil-mode window past the bottom/right padding does not count that part),
// which gives the count_include_pad divisor; then it is clipped to the input itself.
struct PoolWindow {
  int64_t h0, h1, w0, w1;
  int64_t divisor;
};

EMBER_HD inline PoolWindow pool_window(const Pool2dGeometry& g, int64_t oh, int64_t ow) {
  int64_t h0 = oh * g.stride_h - g.pad_h;
  int64_t w0 = ow * g.stride_w - g.pad_w;
  int64_t h1 = h0 + g.kernel_h < g.h + g.pad_h ? h0 + g.kernel_h : g.h + g.pad_h;
  int64_t w1 = w0 + g.kernel_w < g.w + g.pad_w ? w0 + g.kernel_w : g.w + g.pad_w;
  const int64_t padded_size = (h1 - h0) * (w1 - w0);
  h0 = h0 > 0 ? h0 : 0;
  w0 = w0 > 0 ? w0 : 0;
  h1 = h1 < g.h ? h1 : g.h;
  w1 = w1 < g.w ? w1 : g.w;
  return {h0, h1, w0, w1, g.count_include_pad ? padded_size : (h1 - h0) * (w1 - w0)};
}

// Adaptive pooling bins (PyTorch's): output i of `out` reads [floor(i * in / out),
// ceil((i + 1) * in / out)). Neighbouring bins overlap when out does not divide in.
EMBER_HD inline int64_t adaptive_bin_start(int64_t i, int64_t in, int64_t out) {
  return (i * in) / out;
}
EMBER_HD inline int64_t adaptive_bin_end(int64_t i, int64_t in, int64_t out) {
  return ((i + 1) * in + out - 1) / out;
}

namespace cpu {

// x: [n, c, h, w] -> y: [n, c, out_h, out_w], both contiguous. Max pooling takes the
// first maximum of each window; NaN counts as the maximum (propagates, like PyTorch).
// T: float, double, Half, BFloat16 (16-bit: computed in float, rounded on store).
template <typename T>
void pool2d_forward(Context ctx, const Pool2dGeometry& g, PoolMode mode, const T* x, T* y);

// grad_x (every element written) from grad_y. Max: each window's gradient goes to the
// first element equal to its y (the first NaN when y is NaN), which is the element the
// forward picked. Avg: spread evenly over the window by its divisor. x and y are read
// only for Max (may be null for Avg).
template <typename T>
void pool2d_backward(Context ctx, const Pool2dGeometry& g, PoolMode mode, const T* x, const T* y,
                     const T* grad_y, T* grad_x);

// x: [planes, h, w] -> y: [planes, out_h, out_w], each output the mean of its adaptive
// bin (see adaptive_bin_start).
template <typename T>
void adaptive_avg_pool2d_forward(Context ctx, const T* x, T* y, int64_t planes, int64_t h, int64_t w,
                                 int64_t out_h, int64_t out_w);

// grad_x (every element written): each output's gradient spread evenly over its bin.
template <typename T>
void adaptive_avg_pool2d_backward(Context ctx, const T* grad_y, T* grad_x, int64_t planes, int64_t h,
                                  int64_t w, int64_t out_h, int64_t out_w);

}  // namespace cpu
}  // namespace ember::kernels
