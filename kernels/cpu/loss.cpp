// CPU loss kernels (cross-entropy, NLL, pointwise losses) and the dropout mask, built on
// the shared math of kernels/loss_math.h and kernels/philox.h.
#include "ember/kernels/cpu/loss.h"

#include <algorithm>
#include <cmath>

#include "ember/core/base/error.h"
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
int64_t cross_entropy_forward(const T* logits, const int64_t* target, T* loss, T* lse, int64_t N,
                              int64_t C, int64_t ignore_index, double label_smoothing) {
  int64_t bad = 0;
  for (int64_t r = 0; r < N; ++r) {
    const T* x = logits + r * C;
    // The row's max is subtracted before exp so large logits cannot overflow.
    double max_x = -INFINITY;
    for (int64_t c = 0; c < C; ++c) max_x = std::max(max_x, static_cast<double>(x[c]));
    double sum_exp = 0.0, sum_x = 0.0;
    for (int64_t c = 0; c < C; ++c) {
      sum_exp += std::exp(static_cast<double>(x[c]) - max_x);
      sum_x += static_cast<double>(x[c]);
    }
    const double row_lse = max_x + std::log(sum_exp);
    lse[r] = static_cast<T>(row_lse);
    switch (classify_target(target[r], C, ignore_index)) {
      case TargetClass::Ignored:
        loss[r] = T(0);
        break;
      case TargetClass::OutOfRange:
        loss[r] = invalid_target_value<T>();
        ++bad;
        break;
      case TargetClass::Valid:
        loss[r] = static_cast<T>(
            cross_entropy_row_loss<double>(row_lse, static_cast<double>(x[target[r]]), sum_x,
                                           static_cast<double>(C), label_smoothing));
        break;
    }
  }
  return bad;
}

template <typename T>
void cross_entropy_backward(const T* logits, const int64_t* target, const T* lse,
                            const T* grad_loss, int64_t grad_stride, T* grad_logits, int64_t N,
                            int64_t C, int64_t ignore_index, double label_smoothing) {
  // The smoothing constants are rounded to T once, as the CUDA launcher does for float.
  const T s = static_cast<T>(label_smoothing);
  const T s_over_c = C > 0 ? static_cast<T>(label_smoothing / static_cast<double>(C)) : T(0);
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
    for (int64_t c = 0; c < C; ++c) {
      gx[c] = g * cross_entropy_logit_grad<T>(x[c], lse[r], c == t, s, s_over_c);
    }
  }
}

template <typename T>
int64_t nll_forward(const T* logp, const int64_t* target, T* loss, int64_t N, int64_t C,
                    int64_t ignore_index) {
  int64_t bad = 0;
  for (int64_t r = 0; r < N; ++r) {
    switch (classify_target(target[r], C, ignore_index)) {
      case TargetClass::Ignored:
        loss[r] = T(0);
        break;
      case TargetClass::OutOfRange:
        loss[r] = invalid_target_value<T>();
        ++bad;
        break;
      case TargetClass::Valid:
        loss[r] = nll_row_loss(logp[r * C + target[r]]);
        break;
    }
  }
  return bad;
}

template <typename T>
void nll_backward(const int64_t* target, const T* grad_loss, int64_t grad_stride, T* grad_logp,
                  int64_t N, int64_t C, int64_t ignore_index) {
  for (int64_t r = 0; r < N; ++r) {
    T* g = grad_logp + r * C;
    const int64_t t = target[r];
    const TargetClass kind = classify_target(t, C, ignore_index);
    std::fill(g, g + C, kind == TargetClass::OutOfRange ? invalid_target_value<T>() : T(0));
    if (kind == TargetClass::Valid) g[t] = -grad_loss[r * grad_stride];
  }
}

template <typename T>
void pointwise_loss_forward(PointwiseLoss op, const T* input, const T* target, T* out, int64_t n) {
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

template <typename T>
void pointwise_loss_backward(PointwiseLoss op, const T* input, const T* target, const T* grad_out,
                             int64_t grad_stride, T* grad_input, int64_t n) {
  switch (op) {
    case PointwiseLoss::Mse:
      return pointwise_backward_loop<MseLoss>(input, target, grad_out, grad_stride, grad_input, n);
    case PointwiseLoss::L1:
      return pointwise_backward_loop<L1Loss>(input, target, grad_out, grad_stride, grad_input, n);
    case PointwiseLoss::BinaryCrossEntropy:
      return pointwise_backward_loop<BinaryCrossEntropyLoss>(input, target, grad_out, grad_stride,
                                                             grad_input, n);
    case PointwiseLoss::BinaryCrossEntropyWithLogits:
      return pointwise_backward_loop<BinaryCrossEntropyWithLogitsLoss>(input, target, grad_out,
                                                                       grad_stride, grad_input, n);
  }
  EMBER_INTERNAL_ASSERT(false, "pointwise_loss_backward: unknown PointwiseLoss ",
                        static_cast<int>(op));
}

// See Note [Dropout random stream] in kernels/philox.h: element i takes word i % 4 of
// block i / 4, which makes this mask identical to the CUDA one for the same arguments.
template <typename T>
void dropout_mask(T* mask, int64_t n, double p, uint64_t seed, uint64_t offset) {
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

template int64_t cross_entropy_forward<float>(const float*, const int64_t*, float*, float*, int64_t,
                                              int64_t, int64_t, double);
template int64_t cross_entropy_forward<double>(const double*, const int64_t*, double*, double*,
                                               int64_t, int64_t, int64_t, double);
template void cross_entropy_backward<float>(const float*, const int64_t*, const float*,
                                            const float*, int64_t, float*, int64_t, int64_t,
                                            int64_t, double);
template void cross_entropy_backward<double>(const double*, const int64_t*, const double*,
                                             const double*, int64_t, double*, int64_t, int64_t,
                                             int64_t, double);
template int64_t nll_forward<float>(const float*, const int64_t*, float*, int64_t, int64_t,
                                    int64_t);
template int64_t nll_forward<double>(const double*, const int64_t*, double*, int64_t, int64_t,
                                     int64_t);
template void nll_backward<float>(const int64_t*, const float*, int64_t, float*, int64_t, int64_t,
                                  int64_t);
template void nll_backward<double>(const int64_t*, const double*, int64_t, double*, int64_t,
                                   int64_t, int64_t);
template void pointwise_loss_forward<float>(PointwiseLoss, const float*, const float*, float*,
                                            int64_t);
template void pointwise_loss_forward<double>(PointwiseLoss, const double*, const double*, double*,
                                             int64_t);
template void pointwise_loss_backward<float>(PointwiseLoss, const float*, const float*,
                                             const float*, int64_t, float*, int64_t);
template void pointwise_loss_backward<double>(PointwiseLoss, const double*, const double*,
                                              const double*, int64_t, double*, int64_t);
template void dropout_mask<float>(float*, int64_t, double, uint64_t, uint64_t);
template void dropout_mask<double>(double*, int64_t, double, uint64_t, uint64_t);

}  // namespace ember::kernels::cpu
