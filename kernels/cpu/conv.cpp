// CPU 2-D convolution: im2col / col2im per image and group around kernels::cpu::gemm.
// A 1x1 kernel with stride 1 and no padding needs no im2col: the image is the column matrix.
#include "ember/kernels/cpu/conv.h"

#include <algorithm>
#include <vector>

#include "ember/core/base/error.h"
#include "ember/kernels/cpu/gemm.h"
#include "ember/kernels/cpu/widen.h"

namespace ember::kernels::cpu {

namespace {

// Per-group sizes and the column matrix geometry: col is [k_rows, spatial] with one row
// per (input channel of the group, ki, kj) and one column per output position.
struct GroupGeometry {
  int64_t cg = 0, og = 0;        // input / output channels per group
  int64_t k_rows = 0;            // cg * kh * kw
  int64_t spatial = 0;           // out_h * out_w
  int64_t in_plane = 0;          // h * w
  bool direct = false;           // col == the input itself (1x1, stride 1, no padding)
};

GroupGeometry geometry(const ConvShape& s) {
  EMBER_INTERNAL_ASSERT(!s.channels_last, "conv2d: the CPU kernels read NCHW; channels-last ",
                        "tensors are converted before they are called");
  EMBER_INTERNAL_ASSERT(s.groups >= 1 && s.c % s.groups == 0 && s.o % s.groups == 0,
                        "conv2d: channels must divide into groups");
  GroupGeometry g;
  g.cg = s.c / s.groups;
  g.og = s.o / s.groups;
  g.k_rows = g.cg * s.kh * s.kw;
  g.spatial = s.out_h * s.out_w;
  g.in_plane = s.h * s.w;
  g.direct = s.kh == 1 && s.kw == 1 && s.stride_h == 1 && s.stride_w == 1 && s.pad_h == 0 &&
             s.pad_w == 0;
  return g;
}

// [lo, hi): the output positions o whose input position o * stride + off lies in [0, in).
void valid_range(int64_t off, int64_t stride, int64_t in, int64_t out, int64_t* lo,
                 int64_t* hi) {
  const int64_t l = off >= 0 ? 0 : (-off + stride - 1) / stride;
  const int64_t h = in - off <= 0 ? 0 : (in - off - 1) / stride + 1;
  *lo = std::min(l, out);
  *hi = std::max(*lo, std::min(h, out));
}

// col [cg * kh * kw, out_h * out_w] from one group of one image, x [cg, h, w].
template <typename T>
void im2col(const ConvShape& s, int64_t cg, const T* x, T* col) {
  const int64_t spatial = s.out_h * s.out_w;
  for (int64_t ci = 0; ci < cg; ++ci) {
    const T* plane = x + ci * s.h * s.w;
    for (int64_t ki = 0; ki < s.kh; ++ki) {
      const int64_t off_y = ki * s.dil_h - s.pad_h;
      int64_t y_lo, y_hi;
      valid_range(off_y, s.stride_h, s.h, s.out_h, &y_lo, &y_hi);
      for (int64_t kj = 0; kj < s.kw; ++kj) {
        const int64_t off_x = kj * s.dil_w - s.pad_w;
        int64_t x_lo, x_hi;
        valid_range(off_x, s.stride_w, s.w, s.out_w, &x_lo, &x_hi);
        T* row = col + ((ci * s.kh + ki) * s.kw + kj) * spatial;
        for (int64_t oy = 0; oy < s.out_h; ++oy) {
          T* out = row + oy * s.out_w;
          if (oy < y_lo || oy >= y_hi) {
            std::fill(out, out + s.out_w, T(0));
            continue;
          }
          const T* in = plane + (oy * s.stride_h + off_y) * s.w;
          std::fill(out, out + x_lo, T(0));
          if (s.stride_w == 1) {
            std::copy(in + x_lo + off_x, in + x_hi + off_x, out + x_lo);
          } else {
            for (int64_t ox = x_lo; ox < x_hi; ++ox) out[ox] = in[ox * s.stride_w + off_x];
          }
          std::fill(out + x_hi, out + s.out_w, T(0));
        }
      }
    }
  }
}

// The adjoint of im2col: dx [cg, h, w] += every column entry at the pixel it came from.
template <typename T>
void col2im(const ConvShape& s, int64_t cg, const T* col, T* dx) {
  const int64_t spatial = s.out_h * s.out_w;
  for (int64_t ci = 0; ci < cg; ++ci) {
    T* plane = dx + ci * s.h * s.w;
    for (int64_t ki = 0; ki < s.kh; ++ki) {
      const int64_t off_y = ki * s.dil_h - s.pad_h;
      int64_t y_lo, y_hi;
      valid_range(off_y, s.stride_h, s.h, s.out_h, &y_lo, &y_hi);
      for (int64_t kj = 0; kj < s.kw; ++kj) {
        const int64_t off_x = kj * s.dil_w - s.pad_w;
        int64_t x_lo, x_hi;
        valid_range(off_x, s.stride_w, s.w, s.out_w, &x_lo, &x_hi);
        const T* row = col + ((ci * s.kh + ki) * s.kw + kj) * spatial;
        for (int64_t oy = y_lo; oy < y_hi; ++oy) {
          const T* in = row + oy * s.out_w;
          T* out = plane + (oy * s.stride_h + off_y) * s.w;
          for (int64_t ox = x_lo; ox < x_hi; ++ox) out[ox * s.stride_w + off_x] += in[ox];
        }
      }
    }
  }
}

}  // namespace

template <typename T>
void conv2d_forward(Context ctx, const ConvShape& s, const T* x, const T* w, const T* bias, T* y,
                    const Scratch& scratch) {
  if constexpr (is_reduced_float_v<T>) {
    // 16-bit: converted to float, convolved, rounded once (kernels/cpu/widen.h).
    const int64_t x_n = s.x_numel(), w_n = s.w_numel(), y_n = s.y_numel();
    FloatCopy xf = widen(x, x_n), wf = widen(w, w_n), bf = widen(bias, s.o);
    FloatCopy yf = float_output(y, y_n);
    conv2d_forward<float>(ctx, s, xf.get(), wf.get(), bf.get(), yf.get(), scratch);
    narrow(yf, y, y_n);
  } else {
    const GroupGeometry g = geometry(s);
    if (s.n == 0 || s.o == 0 || g.spatial == 0) return;
    std::vector<T> col(g.direct ? 0 : static_cast<size_t>(g.k_rows * g.spatial));
    for (int64_t n = 0; n < s.n; ++n) {
      T* y_n = y + n * s.o * g.spatial;
      // The bias is written first and the GEMM accumulates onto it (beta = 1).
      if (bias != nullptr) {
        for (int64_t oc = 0; oc < s.o; ++oc) {
          std::fill(y_n + oc * g.spatial, y_n + (oc + 1) * g.spatial, bias[oc]);
        }
      }
      for (int64_t grp = 0; grp < s.groups; ++grp) {
        const T* x_g = x + (n * s.c + grp * g.cg) * g.in_plane;
        const T* cols = x_g;
        if (!g.direct) {
          im2col(s, g.cg, x_g, col.data());
          cols = col.data();
        }
        // y_g [og, spatial] = w_g [og, k_rows] @ col [k_rows, spatial]
        gemm<T>(ctx, false, false, g.og, g.spatial, g.k_rows, T(1), w + grp * g.og * g.k_rows,
                g.k_rows, 0, cols, g.spatial, 0, bias != nullptr ? T(1) : T(0),
                y_n + grp * g.og * g.spatial, g.spatial, 0, 1);
      }
    }
  }
}

template <typename T>
void conv2d_backward_data(Context ctx, const ConvShape& s, const T* w, const T* dy, T* dx,
                          const Scratch& scratch) {
  if constexpr (is_reduced_float_v<T>) {
    const int64_t x_n = s.x_numel(), w_n = s.w_numel(), y_n = s.y_numel();
    FloatCopy wf = widen(w, w_n), dyf = widen(dy, y_n), dxf = float_output(dx, x_n);
    conv2d_backward_data<float>(ctx, s, wf.get(), dyf.get(), dxf.get(), scratch);
    narrow(dxf, dx, x_n);
  } else {
    const GroupGeometry g = geometry(s);
    const int64_t total = s.n * s.c * g.in_plane;
    if (total == 0) return;
    if (g.direct) {
      // dx_g [cg, h*w] = w_g^T [cg, og] @ dy_g [og, h*w]
      for (int64_t n = 0; n < s.n; ++n) {
        for (int64_t grp = 0; grp < s.groups; ++grp) {
          gemm<T>(ctx, true, false, g.cg, g.spatial, g.og, T(1), w + grp * g.og * g.k_rows,
                  g.k_rows, 0, dy + (n * s.o + grp * g.og) * g.spatial, g.spatial, 0, T(0),
                  dx + (n * s.c + grp * g.cg) * g.in_plane, g.in_plane, 0, 1);
        }
      }
      return;
    }
    std::fill(dx, dx + total, T(0));
    if (g.spatial == 0) return;
    std::vector<T> col(static_cast<size_t>(g.k_rows * g.spatial));
    for (int64_t n = 0; n < s.n; ++n) {
      for (int64_t grp = 0; grp < s.groups; ++grp) {
        // col [k_rows, spatial] = w_g^T [k_rows, og] @ dy_g [og, spatial]
        gemm<T>(ctx, true, false, g.k_rows, g.spatial, g.og, T(1), w + grp * g.og * g.k_rows,
                g.k_rows, 0, dy + (n * s.o + grp * g.og) * g.spatial, g.spatial, 0, T(0),
                col.data(), g.spatial, 0, 1);
        col2im(s, g.cg, col.data(), dx + (n * s.c + grp * g.cg) * g.in_plane);
      }
    }
  }
}

template <typename T>
void conv2d_backward_filter(Context ctx, const ConvShape& s, const T* x, const T* dy, T* dw,
                            const Scratch& scratch) {
  if constexpr (is_reduced_float_v<T>) {
    // The batch's contributions are summed in float before dw is rounded.
    const int64_t x_n = s.x_numel(), w_n = s.w_numel(), y_n = s.y_numel();
    FloatCopy xf = widen(x, x_n), dyf = widen(dy, y_n), dwf = float_output(dw, w_n);
    conv2d_backward_filter<float>(ctx, s, xf.get(), dyf.get(), dwf.get(), scratch);
    narrow(dwf, dw, w_n);
  } else {
    const GroupGeometry g = geometry(s);
    std::fill(dw, dw + s.o * g.k_rows, T(0));
    if (s.n == 0 || g.spatial == 0 || g.k_rows == 0) return;
    std::vector<T> col(g.direct ? 0 : static_cast<size_t>(g.k_rows * g.spatial));
    for (int64_t n = 0; n < s.n; ++n) {
      for (int64_t grp = 0; grp < s.groups; ++grp) {
        const T* x_g = x + (n * s.c + grp * g.cg) * g.in_plane;
        const T* cols = x_g;
        if (!g.direct) {
          im2col(s, g.cg, x_g, col.data());
          cols = col.data();
        }
        // dw_g [og, k_rows] += dy_g [og, spatial] @ col^T [spatial, k_rows]
        gemm<T>(ctx, false, true, g.og, g.k_rows, g.spatial, T(1),
                dy + (n * s.o + grp * g.og) * g.spatial, g.spatial, 0, cols, g.spatial, 0, T(1),
                dw + grp * g.og * g.k_rows, g.k_rows, 0, 1);
      }
    }
  }
}

template void conv2d_forward<float>(Context, const ConvShape&, const float*, const float*,
                                    const float*, float*, const Scratch&);
template void conv2d_forward<double>(Context, const ConvShape&, const double*, const double*,
                                     const double*, double*, const Scratch&);
template void conv2d_backward_data<float>(Context, const ConvShape&, const float*, const float*,
                                          float*, const Scratch&);
template void conv2d_backward_data<double>(Context, const ConvShape&, const double*,
                                           const double*, double*, const Scratch&);
template void conv2d_backward_filter<float>(Context, const ConvShape&, const float*,
                                            const float*, float*, const Scratch&);
template void conv2d_backward_filter<double>(Context, const ConvShape&, const double*,
                                             const double*, double*, const Scratch&);

// float16 and bfloat16 (computed in float).
template void conv2d_forward<Half>(Context, const ConvShape&, const Half*, const Half*, const Half*,
                                   Half*, const Scratch&);
template void conv2d_backward_data<Half>(Context, const ConvShape&, const Half*, const Half*, Half*,
                                         const Scratch&);
template void conv2d_backward_filter<Half>(Context, const ConvShape&, const Half*, const Half*,
                                           Half*, const Scratch&);
template void conv2d_forward<BFloat16>(Context, const ConvShape&, const BFloat16*, const BFloat16*,
                                       const BFloat16*, BFloat16*, const Scratch&);
template void conv2d_backward_data<BFloat16>(Context, const ConvShape&, const BFloat16*,
                                             const BFloat16*, BFloat16*, const Scratch&);
template void conv2d_backward_filter<BFloat16>(Context, const ConvShape&, const BFloat16*,
                                               const BFloat16*, BFloat16*, const Scratch&);

}  // namespace ember::kernels::cpu
