// The geometry of one 2-D convolution (NCHW input, OIHW weight), shared by the CPU
// kernels and the cuDNN ones. Padding is symmetric; out_h/out_w are filled by the caller.
#pragma once

#include <cstdint>

namespace ember::kernels {

// x [n, c, h, w], weight [o, c / groups, kh, kw], y [n, o, out_h, out_w], all contiguous;
// with channels_last (cuDNN only) all three are laid out channels-last instead: x as
// [n, h, w, c], the weight as [o, kh, kw, c / groups], y as [n, out_h, out_w, o].
struct ConvShape {
  int64_t n = 0, c = 0, h = 0, w = 0;
  int64_t o = 0, kh = 0, kw = 0;
  int64_t pad_h = 0, pad_w = 0;
  int64_t stride_h = 1, stride_w = 1;
  int64_t dil_h = 1, dil_w = 1;
  int64_t groups = 1;
  int64_t out_h = 0, out_w = 0;
  bool channels_last = false;

  // Elements of the input [n, c, h, w], the weight [o, c / groups, kh, kw] and the output
  // [n, o, out_h, out_w].
  int64_t x_numel() const { return n * c * h * w; }
  int64_t w_numel() const { return o * (c / groups) * kh * kw; }
  int64_t y_numel() const { return n * o * out_h * out_w; }

  bool operator==(const ConvShape& s) const {
    return n == s.n && c == s.c && h == s.h && w == s.w && o == s.o && kh == s.kh &&
           kw == s.kw && pad_h == s.pad_h && pad_w == s.pad_w && stride_h == s.stride_h &&
           stride_w == s.stride_w && dil_h == s.dil_h && dil_w == s.dil_w &&
           groups == s.groups && out_h == s.out_h && out_w == s.out_w &&
           channels_last == s.channels_last;
  }
};

// (in + 2 * pad - dil * (k - 1) - 1) / stride + 1, as PyTorch and cuDNN define it.
inline int64_t conv_out_size(int64_t in, int64_t k, int64_t pad, int64_t stride, int64_t dil) {
  return (in + 2 * pad - dil * (k - 1) - 1) / stride + 1;
}

}  // namespace ember::kernels
