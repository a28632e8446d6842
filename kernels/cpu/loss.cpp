// CPU loss kernels (cross-entropy and NLL with optional class weights, pointwise losses,
// binary cross-entropy on logits with pos_weight) and the dropout mask, built on the
// shared math of kernels/loss_math.h and kernels/philox.h.
#include "ember/kernels/cpu/loss.h"

#include <algorithm>
#include <cmath>

#include "ember/core/base/error.h"
#include "ember/kernels/cpu/widen.h"
#include "ember/kernels/loss_math.h"
#include "ember/kernels/philox.h"

namespace ember::kernels::cpu {
namespace {

template <typename Loss, typename T>
void pointwise_forward_loop(const T* input, const T* target, T* out, int64_t n) {
  for (int64_t i = 0; i < n; ++i) out[i] = Loss::forward(input[i], target[i]);
}

template <typename Loss, typename T>
void pointwise_backward_loop(const T* input, const T* target, const T* grad_out,
                             int64_t grad_stride, T* grad_input, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    grad_input[i] = grad_out[i * grad_stride] * Loss::derivative(input[i], target[i]);
  }
}

}  // namespace

template <typename T>
void cross_entropy_forward(Context ctx, const T* logits, const int64_t* target,
                           const T* class_weight, T* loss, T* lse, int64_t N, int64_t C,
                           int64_t ignore_index, double label_smoothing, int64_t* bad_count) {
  if constexpr (is_reduced_float_v<T>) {
    // 16-bit: the float kernel on float copies, each output rounded once (kernels/cpu/widen.h);
    // so are the other losses.
    FloatCopy xf = widen(logits, N * C), wf = widen(class_weight, C);
    FloatCopy lossf = float_output(loss, N), lsef = float_output(lse, N);
    cross_entropy_forward<float>(ctx, xf.get(), target, wf.get(), lossf.get(), lsef.get(), N, C,
                                 ignore_index, label_smoothing, bad_count);
    narrow(lossf, loss, N);
    narrow(lsef, lse, N);
  } else {
    double weight_sum = 0.0;
    if (class_weight != nullptr) {
      for (int64_t c = 0; c < C; ++c) weight_sum += static_cast<double>(class_weight[c]);
    }
    int64_t bad = 0;
    for (int64_t r = 0; r < N; ++r) {
      const T* x = logits + r * C;
      // The row's max is subtracted before exp so large logits cannot overflow.
      double max_x = -INFINITY;
      for (int64_t c = 0; c < C; ++c) max_x = std::max(max_x, static_cast<double>(x[c]));
      // sum_x is the smoothing term's sum: of the logits, or of the weighted logits.
      double sum_exp = 0.0, sum_x = 0.0;
      for (int64_t c = 0; c < C; ++c) {
        sum_exp += std::exp(static_cast<double>(x[c]) - max_x);
        sum_x += class_weight != nullptr
                     ? static_cast<double>(class_weight[c]) * static_cast<double>(x[c])
                     : static_cast<double>(x[c]);
      }
      const double row_lse = max_x + std::log(sum_exp);
      lse[r] = static_cast<T>(row_lse);
      const int64_t t = target[r];
      switch (classify_target(t, C, ignore_index)) {
        case TargetClass::Ignored:
          loss[r] = T(0);
          break;
        case TargetClass::OutOfRange:
          loss[r] = invalid_target_value<T>();
          ++bad;
          break;
        case TargetClass::Valid:
          loss[r] = static_cast<T>(
              class_weight == nullptr
                  ? cross_entropy_row_loss<double>(row_lse, static_cast<double>(x[t]), sum_x,
                                                   static_cast<double>(C), label_smoothing)
                  : weighted_cross_entropy_row_loss<double>(
                        row_lse, static_cast<double>(x[t]), static_cast<double>(class_weight[t]),
                        weight_sum, sum_x, static_cast<double>(C), label_smoothing));
          break;
      }
    }
    *bad_count += bad;
  }
}

template <typename T>
void cross_entropy_backward(Context ctx, const T* logits, const int64_t* target,
                            const T* class_weight, const T* lse, const T* grad_loss,
                            int64_t grad_stride, T* grad_logits, int64_t N, int64_t C,
                            int64_t ignore_index, double label_smoothing) {
  if constexpr (is_reduced_float_v<T>) {
    FloatCopy xf = widen(logits, N * C), wf = widen(class_weight, C), lsef = widen(lse, N);
    FloatCopy gf = widen(grad_loss, grad_stride == 0 ? 1 : N);
    FloatCopy gxf = float_output(grad_logits, N * C);
    cross_entropy_backward<float>(ctx, xf.get(), target, wf.get(), lsef.get(), gf.get(),
                                  grad_stride, gxf.get(), N, C, ignore_index, label_smoothing);
    narrow(gxf, grad_logits, N * C);
  } else {
    // The smoothing constants are rounded to T once, as the CUDA launcher does for float.
    const T s = static_cast<T>(label_smoothing);
    const T s_over_c = C > 0 ? static_cast<T>(label_smoothing / static_cast<double>(C)) : T(0);
    // Summed in T, as the CUDA kernel does (in another order).
    T weight_sum = T(0);
    if (class_weight != nullptr) {
      for (int64_t c = 0; c < C; ++c) weight_sum += class_weight[c];
    }
    for (int64_t r = 0; r < N; ++r) {
      const T* x = logits + r * C;
      T* gx = grad_logits + r * C;
      const int64_t t = target[r];
      const TargetClass kind = classify_target(t, C, ignore_index);
      // An out-of-range row gets NaN, as its forward loss did, and is never indexed by t.
      if (kind != TargetClass::Valid) {
        const T fill = kind == TargetClass::Ignored ? T(0) : invalid_target_value<T>();
        std::fill(gx, gx + C, fill);
        continue;
      }
      const T g = grad_loss[r * grad_stride];
      if (class_weight == nullptr) {
        for (int64_t c = 0; c < C; ++c) {
          gx[c] = g * cross_entropy_logit_grad<T>(x[c], lse[r], c == t, s, s_over_c);
        }
      } else {
        for (int64_t c = 0; c < C; ++c) {
          gx[c] = g * weighted_cross_entropy_logit_grad<T>(x[c], lse[r], c == t, class_weight[c],
                                                           class_weight[t], weight_sum, s,
                                                           s_over_c);
        }
      }
    }
  }
}

template <typename T>
void nll_forward(Context ctx, const T* logp, const int64_t* target, const T* class_weight,
                 T* loss, int64_t N, int64_t C, int64_t ignore_index, int64_t* bad_count) {
  if constexpr (is_reduced_float_v<T>) {
    FloatCopy xf = widen(logp, N * C), wf = widen(class_weight, C), lossf = float_output(loss, N);
    nll_forward<float>(ctx, xf.get(), target, wf.get(), lossf.get(), N, C, ignore_index, bad_count);
    narrow(lossf, loss, N);
  } else {
    int64_t bad = 0;
    for (int64_t r = 0; r < N; ++r) {
      const int64_t t = target[r];
      switch (classify_target(t, C, ignore_index)) {
        case TargetClass::Ignored:
          loss[r] = T(0);
          break;
        case TargetClass::OutOfRange:
          loss[r] = invalid_target_value<T>();
          ++bad;
          break;
        case TargetClass::Valid:
          loss[r] = (class_weight != nullptr ? class_weight[t] : T(1)) *
                    nll_row_loss(logp[r * C + t]);
          break;
      }
    }
    *bad_count += bad;
  }
}

template <typename T>
void nll_backward(Context ctx, const int64_t* target, const T* class_weight, const T* grad_loss,
                  int64_t grad_stride, T* grad_logp, int64_t N, int64_t C,
                  int64_t ignore_index) {
  if constexpr (is_reduced_float_v<T>) {
    FloatCopy wf = widen(class_weight, C), gf = widen(grad_loss, grad_stride == 0 ? 1 : N);
    FloatCopy gxf = float_output(grad_logp, N * C);
    nll_backward<float>(ctx, target, wf.get(), gf.get(), grad_stride, gxf.get(), N, C,
                        ignore_index);
    narrow(gxf, grad_logp, N * C);
  } else {
    for (int64_t r = 0; r < N; ++r) {
      T* g = grad_logp + r * C;
      const int64_t t = target[r];
      const TargetClass kind = classify_target(t, C, ignore_index);
      std::fill(g, g + C, kind == TargetClass::OutOfRange ? invalid_target_value<T>() : T(0));
      if (kind == TargetClass::Valid) {
        g[t] = -grad_loss[r * grad_stride] * (class_weight != nullptr ? class_weight[t] : T(1));
      }
    }
  }
}

template <typename T>
void target_class_weights(Context, const int64_t* target, const T* class_weight, T* out,
                          int64_t N, int64_t C, int64_t ignore_index) {
  for (int64_t r = 0; r < N; ++r) {
    const int64_t t = target[r];
    out[r] = classify_target(t, C, ignore_index) == TargetClass::Valid ? class_weight[t] : T(0);
  }
}

template <typename T>
void count_outside(Context, const T* x, int64_t n, double lo, double hi, int64_t* count) {
  int64_t bad = 0;
  for (int64_t i = 0; i < n; ++i) {
    // Written so that NaN counts: it compares false both ways.
    const double v = is_reduced_float_v<T> ? static_cast<double>(static_cast<float>(x[i]))
                                           : static_cast<double>(x[i]);
    if (!(v >= lo && v <= hi)) ++bad;
  }
  *count += bad;
}

template <typename T>
void pointwise_loss_forward(Context ctx, PointwiseLoss op, const T* input, const T* target, T* out,
                            int64_t n) {
  if constexpr (is_reduced_float_v<T>) {
    FloatCopy xf = widen(input, n), tf = widen(target, n), outf = float_output(out, n);
    pointwise_loss_forward<float>(ctx, op, xf.get(), tf.get(), outf.get(), n);
    narrow(outf, out, n);
  } else {
    switch (op) {
      case PointwiseLoss::Mse:
        return pointwise_forward_loop<MseLoss>(input, target, out, n);
      case PointwiseLoss::L1:
        return pointwise_forward_loop<L1Loss>(input, target, out, n);
      case PointwiseLoss::BinaryCrossEntropy:
        return pointwise_forward_loop<BinaryCrossEntropyLoss>(input, target, out, n);
      case PointwiseLoss::BinaryCrossEntropyWithLogits:
        return pointwise_forward_loop<BinaryCrossEntropyWithLogitsLoss>(input, target, out, n);
    }
    EMBER_INTERNAL_ASSERT(false, "pointwise_loss_forward: unknown PointwiseLoss ",
                          static_cast<int>(op));
  }
}

template <typename T>
void pointwise_loss_backward(Context ctx, PointwiseLoss op, const T* input, const T* target,
                             const T* grad_out, int64_t grad_stride, T* grad_input, int64_t n) {
  if constexpr (is_reduced_float_v<T>) {
    FloatCopy xf = widen(input, n), tf = widen(target, n);
    FloatCopy gf = widen(grad_out, grad_stride == 0 ? 1 : n), gxf = float_output(grad_input, n);
    pointwise_loss_backward<float>(ctx, op, xf.get(), tf.get(), gf.get(), grad_stride, gxf.get(),
                                   n);
    narrow(gxf, grad_input, n);
  } else {
    switch (op) {
      case PointwiseLoss::Mse:
        return pointwise_backward_loop<MseLoss>(input, target, grad_out, grad_stride, grad_input,
                                                n);
      case PointwiseLoss::L1:
        return pointwise_backward_loop<L1Loss>(input, target, grad_out, grad_stride, grad_input, n);
      case PointwiseLoss::BinaryCrossEntropy:
        return pointwise_backward_loop<BinaryCrossEntropyLoss>(input, target, grad_out, grad_stride,
                                                               grad_input, n);
      case PointwiseLoss::BinaryCrossEntropyWithLogits:
        return pointwise_backward_loop<BinaryCrossEntropyWithLogitsLoss>(
            input, target, grad_out, grad_stride, grad_input, n);
    }
    EMBER_INTERNAL_ASSERT(false, "pointwise_loss_backward: unknown PointwiseLoss ",
                          static_cast<int>(op));
  }
}

template <typename T>
void bce_with_logits_forward(Context ctx, const T* logits, const T* target, const T* pos_weight,
                             int64_t pos_weight_size, T* out, int64_t n) {
  if constexpr (is_reduced_float_v<T>) {
    FloatCopy xf = widen(logits, n), tf = widen(target, n);
    FloatCopy pf = widen(pos_weight, pos_weight_size), outf = float_output(out, n);
    bce_with_logits_forward<float>(ctx, xf.get(), tf.get(), pf.get(), pos_weight_size,
                                   outf.get(), n);
    narrow(outf, out, n);
  } else {
    EMBER_INTERNAL_ASSERT(pos_weight != nullptr && (n == 0 || pos_weight_size > 0),
                          "bce_with_logits_forward needs a pos_weight");
    for (int64_t i = 0; i < n; ++i) {
      out[i] = BinaryCrossEntropyWithLogitsLoss::forward(logits[i], target[i],
                                                         pos_weight[i % pos_weight_size]);
    }
  }
}

template <typename T>
void bce_with_logits_backward(Context ctx, const T* logits, const T* target, const T* pos_weight,
                              int64_t pos_weight_size, const T* grad_out, int64_t grad_stride,
                              T* grad_input, int64_t n) {
  if constexpr (is_reduced_float_v<T>) {
    FloatCopy xf = widen(logits, n), tf = widen(target, n);
    FloatCopy pf = widen(pos_weight, pos_weight_size);
    FloatCopy gf = widen(grad_out, grad_stride == 0 ? 1 : n);
    FloatCopy gxf = float_output(grad_input, n);
    bce_with_logits_backward<float>(ctx, xf.get(), tf.get(), pf.get(), pos_weight_size, gf.get(),
                                    grad_stride, gxf.get(), n);
    narrow(gxf, grad_input, n);
  } else {
    EMBER_INTERNAL_ASSERT(pos_weight != nullptr && (n == 0 || pos_weight_size > 0),
                          "bce_with_logits_backward needs a pos_weight");
    for (int64_t i = 0; i < n; ++i) {
      grad_input[i] = grad_out[i * grad_stride] *
                      BinaryCrossEntropyWithLogitsLoss::derivative(logits[i], target[i],
                                                                   pos_weight[i % pos_weight_size]);
    }
  }
}

// See Note [Dropout random stream] in kernels/philox.h: element i takes word i % 4 of
// block i / 4, which makes this mask identical to the CUDA one for the same arguments.
template <typename T>
void dropout_mask(Context, T* mask, int64_t n, double p, uint64_t seed, uint64_t offset) {
  EMBER_CHECK(p >= 0.0 && p < 1.0, "dropout_mask: p = ", p, " must lie in [0, 1)");
  EMBER_CHECK(offset < (uint64_t{1} << 62), "dropout_mask: offset ", offset, " must be below 2^62");
  const uint64_t threshold = dropout_threshold(p);
  const T scale = static_cast<T>(1.0 / (1.0 - p));
  for (int64_t group = 0; group * 4 < n; ++group) {
    const PhiloxBlock block = dropout_philox_block(seed, offset, static_cast<uint64_t>(group));
    const int64_t end = std::min<int64_t>(4, n - group * 4);
    for (int64_t j = 0; j < end; ++j) {
      mask[group * 4 + j] = dropout_keeps(block.v[j], threshold) ? scale : T(0);
    }
  }
}

// float and double, each entry point.
template void cross_entropy_forward<float>(Context, const float*, const int64_t*, const float*,
                                           float*, float*, int64_t, int64_t, int64_t, double,
                                           int64_t*);
template void cross_entropy_forward<double>(Context, const double*, const int64_t*,
                                            const double*, double*, double*, int64_t, int64_t,
                                            int64_t, double, int64_t*);
template void cross_entropy_backward<float>(Context, const float*, const int64_t*, const float*,
                                            const float*, const float*, int64_t, float*, int64_t,
                                            int64_t, int64_t, double);
template void cross_entropy_backward<double>(Context, const double*, const int64_t*,
                                             const double*, const double*, const double*,
                                             int64_t, double*, int64_t, int64_t, int64_t, double);
template void nll_forward<float>(Context, const float*, const int64_t*, const float*, float*,
                                 int64_t, int64_t, int64_t, int64_t*);
template void nll_forward<double>(Context, const double*, const int64_t*, const double*,
                                  double*, int64_t, int64_t, int64_t, int64_t*);
template void nll_backward<float>(Context, const int64_t*, const float*, const float*, int64_t,
                                  float*, int64_t, int64_t, int64_t);
template void nll_backward<double>(Context, const int64_t*, const double*, const double*,
                                   int64_t, double*, int64_t, int64_t, int64_t);
template void target_class_weights<float>(Context, const int64_t*, const float*, float*,
                                          int64_t, int64_t, int64_t);
template void target_class_weights<double>(Context, const int64_t*, const double*, double*,
                                           int64_t, int64_t, int64_t);
template void count_outside<float>(Context, const float*, int64_t, double, double, int64_t*);
template void count_outside<double>(Context, const double*, int64_t, double, double, int64_t*);
template void count_outside<Half>(Context, const Half*, int64_t, double, double, int64_t*);
template void count_outside<BFloat16>(Context, const BFloat16*, int64_t, double, double,
                                      int64_t*);
template void pointwise_loss_forward<float>(Context, PointwiseLoss, const float*, const float*,
                                            float*, int64_t);
template void pointwise_loss_forward<double>(Context, PointwiseLoss, const double*,
                                             const double*, double*, int64_t);
template void pointwise_loss_backward<float>(Context, PointwiseLoss, const float*, const float*,
                                             const float*, int64_t, float*, int64_t);
template void pointwise_loss_backward<double>(Context, PointwiseLoss, const double*,
                                              const double*, const double*, int64_t, double*,
                                              int64_t);
template void bce_with_logits_forward<float>(Context, const float*, const float*, const float*,
                                             int64_t, float*, int64_t);
template void bce_with_logits_forward<double>(Context, const double*, const double*,
                                              const double*, int64_t, double*, int64_t);
template void bce_with_logits_backward<float>(Context, const float*, const float*, const float*,
                                              int64_t, const float*, int64_t, float*, int64_t);
template void bce_with_logits_backward<double>(Context, const double*, const double*,
                                               const double*, int64_t, const double*, int64_t,
                                               double*, int64_t);
template void dropout_mask<float>(Context, float*, int64_t, double, uint64_t, uint64_t);
template void dropout_mask<double>(Context, double*, int64_t, double, uint64_t, uint64_t);

// float16 and bfloat16 (computed in float).
template void cross_entropy_forward<Half>(Context, const Half*, const int64_t*, const Half*, Half*,
                                          Half*, int64_t, int64_t, int64_t, double, int64_t*);
template void cross_entropy_backward<Half>(Context, const Half*, const int64_t*, const Half*,
                                           const Half*, const Half*, int64_t, Half*, int64_t,
                                           int64_t, int64_t, double);
template void nll_forward<Half>(Context, const Half*, const int64_t*, const Half*, Half*, int64_t,
                                int64_t, int64_t, int64_t*);
template void nll_backward<Half>(Context, const int64_t*, const Half*, const Half*, int64_t, Half*,
                                 int64_t, int64_t, int64_t);
template void target_class_weights<Half>(Context, const int64_t*, const Half*, Half*, int64_t,
                                         int64_t, int64_t);
template void pointwise_loss_forward<Half>(Context, PointwiseLoss, const Half*, const Half*, Half*,
                                           int64_t);
template void pointwise_loss_backward<Half>(Context, PointwiseLoss, const Half*, const Half*,
                                            const Half*, int64_t, Half*, int64_t);
template void bce_with_logits_forward<Half>(Context, const Half*, const Half*, const Half*, int64_t,
                                            Half*, int64_t);
template void bce_with_logits_backward<Half>(Context, const Half*, const Half*, const Half*,
                                             int64_t, const Half*, int64_t, Half*, int64_t);
template void dropout_mask<Half>(Context, Half*, int64_t, double, uint64_t, uint64_t);
template void cross_entropy_forward<BFloat16>(Context, const BFloat16*, const int64_t*,
                                              const BFloat16*, BFloat16*, BFloat16*, int64_t,
                                              int64_t, int64_t, double, int64_t*);
template void cross_entropy_backward<BFloat16>(Context, const BFloat16*, const int64_t*,
                                               const BFloat16*, const BFloat16*, const BFloat16*,
                                               int64_t, BFloat16*, int64_t, int64_t, int64_t,
                                               double);
template void nll_forward<BFloat16>(Context, const BFloat16*, const int64_t*, const BFloat16*,
                                    BFloat16*, int64_t, int64_t, int64_t, int64_t*);
template void nll_backward<BFloat16>(Context, const int64_t*, const BFloat16*, const BFloat16*,
                                     int64_t, BFloat16*, int64_t, int64_t, int64_t);
template void target_class_weights<BFloat16>(Context, const int64_t*, const BFloat16*, BFloat16*,
                                             int64_t, int64_t, int64_t);
template void pointwise_loss_forward<BFloat16>(Context, PointwiseLoss, const BFloat16*,
                                               const BFloat16*, BFloat16*, int64_t);
template void pointwise_loss_backward<BFloat16>(Context, PointwiseLoss, const BFloat16*,
                                                const BFloat16*, const BFloat16*, int64_t,
                                                BFloat16*, int64_t);
template void bce_with_logits_forward<BFloat16>(Context, const BFloat16*, const BFloat16*,
                                                const BFloat16*, int64_t, BFloat16*, int64_t);
template void bce_with_logits_backward<BFloat16>(Context, const BFloat16*, const BFloat16*,
                                                 const BFloat16*, int64_t, const BFloat16*, int64_t,
                                                 BFloat16*, int64_t);
template void dropout_mask<BFloat16>(Context, BFloat16*, int64_t, double, uint64_t, uint64_t);

}  // namespace ember::kernels::cpu
