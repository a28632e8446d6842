// CPU pooling loops (max, average, adaptive average; forward and backward): one plane of
// [n * c] at a time, the window arithmetic from kernels/cpu/pool.h.
#include "ember/kernels/cpu/pool.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "ember/core/base/error.h"
#include "ember/kernels/cpu/widen.h"

namespace ember::kernels::cpu {
namespace {

template <typename T>
T window_max(const Pool2dGeometry& g, const T* plane, const PoolWindow& win) {
  T best = -std::numeric_limits<T>::infinity();
  for (int64_t ih = win.h0; ih < win.h1; ++ih) {
    for (int64_t iw = win.w0; iw < win.w1; ++iw) {
      const T v = plane[ih * g.w + iw];
      if (v > best || std::isnan(v)) {
        best = v;
        if (std::isnan(v)) return best;
      }
    }
  }
  return best;
}

// Sums in double: the CPU is the reference the GPU paths are measured against.
template <typename T>
T window_mean(const Pool2dGeometry& g, const T* plane, const PoolWindow& win) {
  double sum = 0.0;
  for (int64_t ih = win.h0; ih < win.h1; ++ih) {
    for (int64_t iw = win.w0; iw < win.w1; ++iw) sum += static_cast<double>(plane[ih * g.w + iw]);
  }
  return static_cast<T>(sum / static_cast<double>(win.divisor));
}

// Where the forward's max came from: the first element equal to y, or the first NaN.
// Every window holds at least one input element (the op checks padding <= kernel / 2),
// so the search always succeeds for a y the forward produced.
template <typename T>
int64_t window_argmax(const Pool2dGeometry& g, const T* plane, const PoolWindow& win, T y) {
  const bool y_nan = std::isnan(y);
  for (int64_t ih = win.h0; ih < win.h1; ++ih) {
    for (int64_t iw = win.w0; iw < win.w1; ++iw) {
      const T v = plane[ih * g.w + iw];
      if (y_nan ? std::isnan(v) : v == y) return ih * g.w + iw;
    }
  }
  return win.h0 * g.w + win.w0;
}

// Note [2x2 max pooling]
// MaxPool2d(2) (2x2 windows, stride 2, no padding) is most of the pooling models do, and
// the general loop spends more on window bookkeeping than on the four comparisons. Its
// windows tile the input, so each output reads rows 2 oh and 2 oh + 1 directly and the
// backward writes each grad_x element once. The results are the general loop's: the
// first maximum in row-major window order, NaN propagating.
bool is_max_2x2(const Pool2dGeometry& g, PoolMode mode) {
  return mode == PoolMode::Max && g.kernel_h == 2 && g.kernel_w == 2 && g.stride_h == 2 &&
         g.stride_w == 2 && g.pad_h == 0 && g.pad_w == 0 && 2 * g.out_h <= g.h &&
         2 * g.out_w <= g.w;
}

// b replaces a when larger or NaN; a NaN a stays (b > NaN is false).
template <typename T>
T max_nan(T a, T b) {
  return (b > a || b != b) ? b : a;
}

template <typename T>
void max_2x2_forward(const Pool2dGeometry& g, const T* x, T* y) {
#pragma omp parallel for if (g.output_numel() > 32768)
  for (int64_t p = 0; p < g.planes(); ++p) {
    const T* xp = x + p * g.h * g.w;
    T* yp = y + p * g.out_h * g.out_w;
    for (int64_t oh = 0; oh < g.out_h; ++oh) {
      const T* r0 = xp + 2 * oh * g.w;
      const T* r1 = r0 + g.w;
      T* out = yp + oh * g.out_w;
      for (int64_t ow = 0; ow < g.out_w; ++ow) {
        out[ow] = max_nan(max_nan(max_nan(r0[2 * ow], r0[2 * ow + 1]), r1[2 * ow]), r1[2 * ow + 1]);
      }
    }
  }
}

template <typename T>
void max_2x2_backward(const Pool2dGeometry& g, const T* x, const T* grad_y, T* grad_x) {
#pragma omp parallel for if (g.input_numel() > 32768)
  for (int64_t p = 0; p < g.planes(); ++p) {
    const T* xp = x + p * g.h * g.w;
    T* gx = grad_x + p * g.h * g.w;
    std::fill(gx, gx + g.h * g.w, T(0));
    const T* gy = grad_y + p * g.out_h * g.out_w;
    for (int64_t oh = 0; oh < g.out_h; ++oh) {
      for (int64_t ow = 0; ow < g.out_w; ++ow) {
        const int64_t i0 = 2 * oh * g.w + 2 * ow;
        const int64_t cand[4] = {i0, i0 + 1, i0 + g.w, i0 + g.w + 1};
        int64_t best = i0;
        for (int k = 1; k < 4 && xp[best] == xp[best]; ++k) {
          if (xp[cand[k]] > xp[best] || xp[cand[k]] != xp[cand[k]]) best = cand[k];
        }
        gx[best] = gy[oh * g.out_w + ow];
      }
    }
  }
}

}  // namespace

template <typename T>
void pool2d_forward(Context ctx, const Pool2dGeometry& g, PoolMode mode, const T* x, T* y) {
  if constexpr (is_reduced_float_v<T>) {
    // 16-bit: computed in float, rounded once on store (kernels/cpu/widen.h).
    FloatCopy xf = widen(x, g.input_numel()), yf = float_output(y, g.output_numel());
    pool2d_forward<float>(ctx, g, mode, xf.get(), yf.get());
    narrow(yf, y, g.output_numel());
  } else {
    if (is_max_2x2(g, mode)) return max_2x2_forward(g, x, y);
    const int64_t in_plane = g.h * g.w;
    const int64_t out_plane = g.out_h * g.out_w;
#pragma omp parallel for if (g.output_numel() > 32768)
    for (int64_t p = 0; p < g.planes(); ++p) {
      const T* xp = x + p * in_plane;
      T* yp = y + p * out_plane;
      for (int64_t oh = 0; oh < g.out_h; ++oh) {
        for (int64_t ow = 0; ow < g.out_w; ++ow) {
          const PoolWindow win = pool_window(g, oh, ow);
          yp[oh * g.out_w + ow] =
              mode == PoolMode::Max ? window_max(g, xp, win) : window_mean(g, xp, win);
        }
      }
    }
  }
}

template <typename T>
void pool2d_backward(Context ctx, const Pool2dGeometry& g, PoolMode mode, const T* x, const T* y,
                     const T* grad_y, T* grad_x) {
  if constexpr (is_reduced_float_v<T>) {
    FloatCopy xf = widen(x, g.input_numel()), yf = widen(y, g.output_numel());
    FloatCopy gyf = widen(grad_y, g.output_numel()), gxf = float_output(grad_x, g.input_numel());
    pool2d_backward<float>(ctx, g, mode, xf.get(), yf.get(), gyf.get(), gxf.get());
    narrow(gxf, grad_x, g.input_numel());
  } else {
    EMBER_INTERNAL_ASSERT(mode == PoolMode::Avg || (x != nullptr && y != nullptr),
                          "max pooling backward needs x and y");
    if (is_max_2x2(g, mode)) return max_2x2_backward(g, x, grad_y, grad_x);
    const int64_t in_plane = g.h * g.w;
    const int64_t out_plane = g.out_h * g.out_w;
    // Planes are independent, so threads never write the same grad_x element.
#pragma omp parallel for if (g.input_numel() > 32768)
    for (int64_t p = 0; p < g.planes(); ++p) {
      T* gx = grad_x + p * in_plane;
      std::fill(gx, gx + in_plane, T(0));
      const T* gy = grad_y + p * out_plane;
      for (int64_t oh = 0; oh < g.out_h; ++oh) {
        for (int64_t ow = 0; ow < g.out_w; ++ow) {
          const PoolWindow win = pool_window(g, oh, ow);
          const int64_t o = oh * g.out_w + ow;
          if (mode == PoolMode::Max) {
            gx[window_argmax(g, x + p * in_plane, win, y[p * out_plane + o])] += gy[o];
          } else {
            const T share = gy[o] / static_cast<T>(win.divisor);
            for (int64_t ih = win.h0; ih < win.h1; ++ih) {
              for (int64_t iw = win.w0; iw < win.w1; ++iw) gx[ih * g.w + iw] += share;
            }
          }
        }
      }
    }
  }
}

template <typename T>
void adaptive_avg_pool2d_forward(Context ctx, const T* x, T* y, int64_t planes, int64_t h,
                                 int64_t w, int64_t out_h, int64_t out_w) {
  if constexpr (is_reduced_float_v<T>) {
    FloatCopy xf = widen(x, planes * h * w), yf = float_output(y, planes * out_h * out_w);
    adaptive_avg_pool2d_forward<float>(ctx, xf.get(), yf.get(), planes, h, w, out_h, out_w);
    narrow(yf, y, planes * out_h * out_w);
  } else {
#pragma omp parallel for if (planes * h * w > 32768)
    for (int64_t p = 0; p < planes; ++p) {
      const T* xp = x + p * h * w;
      T* yp = y + p * out_h * out_w;
      for (int64_t oh = 0; oh < out_h; ++oh) {
        const int64_t h0 = adaptive_bin_start(oh, h, out_h), h1 = adaptive_bin_end(oh, h, out_h);
        for (int64_t ow = 0; ow < out_w; ++ow) {
          const int64_t w0 = adaptive_bin_start(ow, w, out_w), w1 = adaptive_bin_end(ow, w, out_w);
          double sum = 0.0;
          for (int64_t ih = h0; ih < h1; ++ih) {
            for (int64_t iw = w0; iw < w1; ++iw) sum += static_cast<double>(xp[ih * w + iw]);
          }
          yp[oh * out_w + ow] = static_cast<T>(sum / static_cast<double>((h1 - h0) * (w1 - w0)));
        }
      }
    }
  }
}

template <typename T>
void adaptive_avg_pool2d_backward(Context ctx, const T* grad_y, T* grad_x, int64_t planes,
                                  int64_t h, int64_t w, int64_t out_h, int64_t out_w) {
  if constexpr (is_reduced_float_v<T>) {
    FloatCopy gyf = widen(grad_y, planes * out_h * out_w);
    FloatCopy gxf = float_output(grad_x, planes * h * w);
    adaptive_avg_pool2d_backward<float>(ctx, gyf.get(), gxf.get(), planes, h, w, out_h, out_w);
    narrow(gxf, grad_x, planes * h * w);
  } else {
#pragma omp parallel for if (planes * h * w > 32768)
    for (int64_t p = 0; p < planes; ++p) {
      T* gx = grad_x + p * h * w;
      std::fill(gx, gx + h * w, T(0));
      const T* gy = grad_y + p * out_h * out_w;
      for (int64_t oh = 0; oh < out_h; ++oh) {
        const int64_t h0 = adaptive_bin_start(oh, h, out_h), h1 = adaptive_bin_end(oh, h, out_h);
        for (int64_t ow = 0; ow < out_w; ++ow) {
          const int64_t w0 = adaptive_bin_start(ow, w, out_w), w1 = adaptive_bin_end(ow, w, out_w);
          const T share = gy[oh * out_w + ow] / static_cast<T>((h1 - h0) * (w1 - w0));
          for (int64_t ih = h0; ih < h1; ++ih) {
            for (int64_t iw = w0; iw < w1; ++iw) gx[ih * w + iw] += share;
          }
        }
      }
    }
  }
}

template void pool2d_forward<float>(Context, const Pool2dGeometry&, PoolMode, const float*, float*);
template void pool2d_forward<double>(Context, const Pool2dGeometry&, PoolMode, const double*, double*);
template void pool2d_backward<float>(Context, const Pool2dGeometry&, PoolMode, const float*,
                                     const float*, const float*, float*);
template void pool2d_backward<double>(Context, const Pool2dGeometry&, PoolMode, const double*,
                                      const double*, const double*, double*);
template void adaptive_avg_pool2d_forward<float>(Context, const float*, float*, int64_t, int64_t,
                                                 int64_t, int64_t, int64_t);
template void adaptive_avg_pool2d_forward<double>(Context, const double*, double*, int64_t, int64_t,
                                                  int64_t, int64_t, int64_t);
template void adaptive_avg_pool2d_backward<float>(Context, const float*, float*, int64_t, int64_t,
                                                  int64_t, int64_t, int64_t);
template void adaptive_avg_pool2d_backward<double>(Context, const double*, double*, int64_t, int64_t,
                                                   int64_t, int64_t, int64_t);

// float16 and bfloat16 (computed in float).
template void pool2d_forward<Half>(Context, const Pool2dGeometry&, PoolMode, const Half*, Half*);
template void pool2d_backward<Half>(Context, const Pool2dGeometry&, PoolMode, const Half*,
                                    const Half*, const Half*, Half*);
template void adaptive_avg_pool2d_forward<Half>(Context, const Half*, Half*, int64_t, int64_t,
                                                int64_t, int64_t, int64_t);
template void adaptive_avg_pool2d_backward<Half>(Context, const Half*, Half*, int64_t, int64_t,
                                                 int64_t, int64_t, int64_t);
template void pool2d_forward<BFloat16>(Context, const Pool2dGeometry&, PoolMode, const BFloat16*,
                                       BFloat16*);
template void pool2d_backward<BFloat16>(Context, const Pool2dGeometry&, PoolMode, const BFloat16*,
                                        const BFloat16*, const BFloat16*, BFloat16*);
template void adaptive_avg_pool2d_forward<BFloat16>(Context, const BFloat16*, BFloat16*, int64_t,
                                                    int64_t, int64_t, int64_t, int64_t);
template void adaptive_avg_pool2d_backward<BFloat16>(Context, const BFloat16*, BFloat16*, int64_t,
                                                     int64_t, int64_t, int64_t, int64_t);

}  // namespace ember::kernels::cpu
