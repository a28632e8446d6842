// CPU batch norm and layer norm loops. Statistics are accumulated in double and in two
// passes (mean, then the squared deviations), so they are the reference the float GPU
// paths are compared with. float16/bfloat16 elements are read into the same double
// arithmetic and every output is rounded once on store.
#include "ember/kernels/cpu/norm.h"

#include <cmath>
#include <vector>

#include "ember/core/base/half.h"

namespace ember::kernels::cpu {
namespace {

// Element (i, ch, k) of an [n, c, s] tensor is at (i * c + ch) * s + k; these loops visit
// one channel's n slabs of s contiguous elements.
template <typename T, typename F>
void for_channel(const T* base, int64_t ch, int64_t n, int64_t c, int64_t s, F&& f) {
  for (int64_t i = 0; i < n; ++i) {
    const int64_t off = (i * c + ch) * s;
    for (int64_t k = 0; k < s; ++k) f(off + k, base[off + k]);
  }
}

}  // namespace

template <typename T>
void batch_norm_forward_training(Context, const T* x, const T* weight, const T* bias, T* y,
                                 T* save_mean, T* save_invstd, T* running_mean, T* running_var,
                                 int64_t n, int64_t c, int64_t s, double momentum, double eps,
                                 const Scratch&) {
  const int64_t m = n * s;
#pragma omp parallel for if (n * c * s > 32768)
  for (int64_t ch = 0; ch < c; ++ch) {
    double sum = 0.0;
    for_channel(x, ch, n, c, s, [&](int64_t, T v) { sum += static_cast<double>(v); });
    const double mean = sum / static_cast<double>(m);
    double sq = 0.0;
    for_channel(x, ch, n, c, s, [&](int64_t, T v) {
      const double d = static_cast<double>(v) - mean;
      sq += d * d;
    });
    const double var = sq / static_cast<double>(m);
    const double invstd = 1.0 / std::sqrt(var + eps);
    const double w = weight != nullptr ? static_cast<double>(weight[ch]) : 1.0;
    const double b = bias != nullptr ? static_cast<double>(bias[ch]) : 0.0;
    for_channel(x, ch, n, c, s, [&](int64_t idx, T v) {
      y[idx] = static_cast<T>((static_cast<double>(v) - mean) * invstd * w + b);
    });
    save_mean[ch] = static_cast<T>(mean);
    save_invstd[ch] = static_cast<T>(invstd);
    if (running_mean != nullptr) {
      const double unbiased = sq / static_cast<double>(m - 1);
      running_mean[ch] = static_cast<T>((1.0 - momentum) * static_cast<double>(running_mean[ch]) +
                                        momentum * mean);
      running_var[ch] = static_cast<T>((1.0 - momentum) * static_cast<double>(running_var[ch]) +
                                       momentum * unbiased);
    }
  }
}

template <typename T>
void batch_norm_forward_inference(Context, const T* x, const T* weight, const T* bias,
                                  const T* running_mean, const T* running_var, T* y, int64_t n,
                                  int64_t c, int64_t s, double eps, const Scratch&) {
#pragma omp parallel for if (n * c * s > 32768)
  for (int64_t ch = 0; ch < c; ++ch) {
    const double invstd = 1.0 / std::sqrt(static_cast<double>(running_var[ch]) + eps);
    const double scale = (weight != nullptr ? static_cast<double>(weight[ch]) : 1.0) * invstd;
    const double shift = (bias != nullptr ? static_cast<double>(bias[ch]) : 0.0) -
                         static_cast<double>(running_mean[ch]) * scale;
    for_channel(x, ch, n, c, s, [&](int64_t idx, T v) {
      y[idx] = static_cast<T>(static_cast<double>(v) * scale + shift);
    });
  }
}

template <typename T>
void batch_norm_backward(Context, const T* x, const T* grad_y, const T* weight,
                         const T* save_mean, const T* save_invstd, T* grad_x, T* grad_weight,
                         T* grad_bias, int64_t n, int64_t c, int64_t s, double,
                         const Scratch&) {
  const int64_t m = n * s;
#pragma omp parallel for if (n * c * s > 32768)
  for (int64_t ch = 0; ch < c; ++ch) {
    const double mean = static_cast<double>(save_mean[ch]);
    const double invstd = static_cast<double>(save_invstd[ch]);
    double sum_gy = 0.0, sum_gy_xhat = 0.0;
    for_channel(x, ch, n, c, s, [&](int64_t idx, T v) {
      const double gy = static_cast<double>(grad_y[idx]);
      sum_gy += gy;
      sum_gy_xhat += gy * (static_cast<double>(v) - mean) * invstd;
    });
    if (grad_bias != nullptr) grad_bias[ch] = static_cast<T>(sum_gy);
    if (grad_weight != nullptr) grad_weight[ch] = static_cast<T>(sum_gy_xhat);
    if (grad_x != nullptr) {
      const double w = weight != nullptr ? static_cast<double>(weight[ch]) : 1.0;
      const double k = w * invstd / static_cast<double>(m);
      const double md = static_cast<double>(m);
      for_channel(x, ch, n, c, s, [&](int64_t idx, T v) {
        const double xhat = (static_cast<double>(v) - mean) * invstd;
        grad_x[idx] = static_cast<T>(
            k * (md * static_cast<double>(grad_y[idx]) - sum_gy - xhat * sum_gy_xhat));
      });
    }
  }
}

template <typename T>
void layer_norm_forward(Context, const T* x, const T* weight, const T* bias, T* y, T* mean,
                        T* rstd, int64_t rows, int64_t cols, double eps) {
#pragma omp parallel for if (rows * cols > 32768)
  for (int64_t r = 0; r < rows; ++r) {
    const T* xr = x + r * cols;
    T* yr = y + r * cols;
    double sum = 0.0;
    for (int64_t j = 0; j < cols; ++j) sum += static_cast<double>(xr[j]);
    const double mu = sum / static_cast<double>(cols);
    double sq = 0.0;
    for (int64_t j = 0; j < cols; ++j) {
      const double d = static_cast<double>(xr[j]) - mu;
      sq += d * d;
    }
    const double rs = 1.0 / std::sqrt(sq / static_cast<double>(cols) + eps);
    for (int64_t j = 0; j < cols; ++j) {
      double v = (static_cast<double>(xr[j]) - mu) * rs;
      if (weight != nullptr) v *= static_cast<double>(weight[j]);
      if (bias != nullptr) v += static_cast<double>(bias[j]);
      yr[j] = static_cast<T>(v);
    }
    mean[r] = static_cast<T>(mu);
    rstd[r] = static_cast<T>(rs);
  }
}

template <typename T>
void layer_norm_backward(Context, const T* x, const T* grad_y, const T* weight, const T* mean,
                         const T* rstd, T* grad_x, T* grad_weight, T* grad_bias, int64_t rows,
                         int64_t cols) {
  if (grad_x != nullptr) {
#pragma omp parallel for if (rows * cols > 32768)
    for (int64_t r = 0; r < rows; ++r) {
      const T* xr = x + r * cols;
      const T* gr = grad_y + r * cols;
      const double mu = static_cast<double>(mean[r]);
      const double rs = static_cast<double>(rstd[r]);
      double sum_wg = 0.0, sum_wg_xhat = 0.0;
      for (int64_t j = 0; j < cols; ++j) {
        const double wg =
            static_cast<double>(gr[j]) * (weight != nullptr ? static_cast<double>(weight[j]) : 1.0);
        sum_wg += wg;
        sum_wg_xhat += wg * (static_cast<double>(xr[j]) - mu) * rs;
      }
      const double cd = static_cast<double>(cols);
      T* gx = grad_x + r * cols;
      for (int64_t j = 0; j < cols; ++j) {
        const double wg =
            static_cast<double>(gr[j]) * (weight != nullptr ? static_cast<double>(weight[j]) : 1.0);
        const double xhat = (static_cast<double>(xr[j]) - mu) * rs;
        gx[j] = static_cast<T>(rs / cd * (cd * wg - sum_wg - xhat * sum_wg_xhat));
      }
    }
  }
  if (grad_weight == nullptr && grad_bias == nullptr) return;
  // Row by row so the inner loop walks memory contiguously.
  std::vector<double> gw(static_cast<size_t>(cols), 0.0), gb(static_cast<size_t>(cols), 0.0);
  for (int64_t r = 0; r < rows; ++r) {
    const T* xr = x + r * cols;
    const T* gr = grad_y + r * cols;
    const double mu = static_cast<double>(mean[r]);
    const double rs = static_cast<double>(rstd[r]);
    for (int64_t j = 0; j < cols; ++j) {
      const double gy = static_cast<double>(gr[j]);
      gw[j] += gy * (static_cast<double>(xr[j]) - mu) * rs;
      gb[j] += gy;
    }
  }
  for (int64_t j = 0; j < cols; ++j) {
    if (grad_weight != nullptr) grad_weight[j] = static_cast<T>(gw[j]);
    if (grad_bias != nullptr) grad_bias[j] = static_cast<T>(gb[j]);
  }
}

template void batch_norm_forward_training<float>(Context, const float*, const float*, const float*,
                                                 float*, float*, float*, float*, float*, int64_t,
                                                 int64_t, int64_t, double, double, const Scratch&);
template void batch_norm_forward_inference<float>(Context, const float*, const float*, const float*,
                                                  const float*, const float*, float*, int64_t,
                                                  int64_t, int64_t, double, const Scratch&);
template void batch_norm_backward<float>(Context, const float*, const float*, const float*,
                                         const float*, const float*, float*, float*, float*,
                                         int64_t, int64_t, int64_t, double, const Scratch&);
template void layer_norm_forward<float>(Context, const float*, const float*, const float*, float*,
                                        float*, float*, int64_t, int64_t, double);
template void layer_norm_backward<float>(Context, const float*, const float*, const float*,
                                         const float*, const float*, float*, float*, float*,
                                         int64_t, int64_t);
template void batch_norm_forward_training<double>(Context, const double*, const double*,
                                                  const double*, double*, double*, double*, double*,
                                                  double*, int64_t, int64_t, int64_t, double,
                                                  double, const Scratch&);
template void batch_norm_forward_inference<double>(Context, const double*, const double*,
                                                   const double*, const double*, const double*,
                                                   double*, int64_t, int64_t, int64_t, double,
                                                   const Scratch&);
template void batch_norm_backward<double>(Context, const double*, const double*, const double*,
                                          const double*, const double*, double*, double*, double*,
                                          int64_t, int64_t, int64_t, double, const Scratch&);
template void layer_norm_forward<double>(Context, const double*, const double*, const double*,
                                         double*, double*, double*, int64_t, int64_t, double);
template void layer_norm_backward<double>(Context, const double*, const double*, const double*,
                                          const double*, const double*, double*, double*, double*,
                                          int64_t, int64_t);

// float16 and bfloat16.
template void batch_norm_forward_training<Half>(Context, const Half*, const Half*, const Half*,
                                                Half*, Half*, Half*, Half*, Half*, int64_t, int64_t,
                                                int64_t, double, double, const Scratch&);
template void batch_norm_forward_inference<Half>(Context, const Half*, const Half*, const Half*,
                                                 const Half*, const Half*, Half*, int64_t, int64_t,
                                                 int64_t, double, const Scratch&);
template void batch_norm_backward<Half>(Context, const Half*, const Half*, const Half*, const Half*,
                                        const Half*, Half*, Half*, Half*, int64_t, int64_t, int64_t,
                                        double, const Scratch&);
template void layer_norm_forward<Half>(Context, const Half*, const Half*, const Half*, Half*, Half*,
                                       Half*, int64_t, int64_t, double);
template void layer_norm_backward<Half>(Context, const Half*, const Half*, const Half*, const Half*,
                                        const Half*, Half*, Half*, Half*, int64_t, int64_t);
template void batch_norm_forward_training<BFloat16>(Context, const BFloat16*, const BFloat16*,
                                                    const BFloat16*, BFloat16*, BFloat16*,
                                                    BFloat16*, BFloat16*, BFloat16*, int64_t,
                                                    int64_t, int64_t, double, double,
                                                    const Scratch&);
template void batch_norm_forward_inference<BFloat16>(Context, const BFloat16*, const BFloat16*,
                                                     const BFloat16*, const BFloat16*,
                                                     const BFloat16*, BFloat16*, int64_t, int64_t,
                                                     int64_t, double, const Scratch&);
template void batch_norm_backward<BFloat16>(Context, const BFloat16*, const BFloat16*,
                                            const BFloat16*, const BFloat16*, const BFloat16*,
                                            BFloat16*, BFloat16*, BFloat16*, int64_t, int64_t,
                                            int64_t, double, const Scratch&);
template void layer_norm_forward<BFloat16>(Context, const BFloat16*, const BFloat16*,
                                           const BFloat16*, BFloat16*, BFloat16*, BFloat16*,
                                           int64_t, int64_t, double);
template void layer_norm_backward<BFloat16>(Context, const BFloat16*, const BFloat16*,
                                            const BFloat16*, const BFloat16*, const BFloat16*,
                                            BFloat16*, BFloat16*, BFloat16*, int64_t, int64_t);

}  // namespace ember::kernels::cpu
