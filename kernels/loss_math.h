// The per-element math of the losses (each PointwiseLoss and its derivative, the
// cross-entropy / NLL row terms with and without class weights) and the dropout keep
// test, shared by kernels/cpu and kernels/cuda so the CPU tests check the arithmetic the
// GPU runs.
#pragma once

#include <cmath>
#include <cstdint>

#include "ember/kernels/hd.h"
#include "ember/kernels/op_kinds.h"

namespace ember::kernels {

// ---- pointwise losses: forward(x, t) and derivative(x, t) = d forward / d x ----------

struct MseLoss {
  template <typename T>
  EMBER_HD static T forward(T x, T t) {
    const T d = x - t;
    return d * d;
  }
  template <typename T>
  EMBER_HD static T derivative(T x, T t) {
    return T(2) * (x - t);
  }
};

struct L1Loss {
  template <typename T>
  EMBER_HD static T forward(T x, T t) {
    return std::fabs(x - t);
  }
  // sign(x - t), 0 at 0 like PyTorch; a NaN difference stays NaN.
  template <typename T>
  EMBER_HD static T derivative(T x, T t) {
    const T d = x - t;
    return d > T(0) ? T(1) : (d < T(0) ? T(-1) : d * T(0));
  }
};

// PyTorch clamps both logs at -100 so that a prediction of exactly 0 or 1 gives a large
// finite loss instead of inf, and t * log(x) at t = 0, x = 0 is 0 rather than NaN.
template <typename T>
EMBER_HD inline T clamped_log_term(T log_value) {
  return log_value < T(-100) ? T(-100) : log_value;  // NaN passes through
}

struct BinaryCrossEntropyLoss {
  template <typename T>
  EMBER_HD static T forward(T x, T t) {
    return -(t * clamped_log_term(std::log(x)) + (T(1) - t) * clamped_log_term(std::log1p(-x)));
  }
  // (x - t) / (x (1 - x)), the denominator floored at 1e-12 as in PyTorch.
  template <typename T>
  EMBER_HD static T derivative(T x, T t) {
    const T denom = (T(1) - x) * x;
    return (x - t) / (denom > T(1e-12) ? denom : T(1e-12));
  }
};

// sigmoid without overflow: exp is only ever taken of a non-positive number.
template <typename T>
EMBER_HD inline T stable_sigmoid(T x) {
  if (x >= T(0)) return T(1) / (T(1) + std::exp(-x));
  const T e = std::exp(x);
  return e / (T(1) + e);
}

struct BinaryCrossEntropyWithLogitsLoss {
  // -(t log s(x) + (1 - t) log(1 - s(x))) rewritten so no exp can overflow.
  template <typename T>
  EMBER_HD static T forward(T x, T t) {
    const T relu_x = x > T(0) ? x : T(0);
    return relu_x - x * t + std::log1p(std::exp(-std::fabs(x)));
  }
  template <typename T>
  EMBER_HD static T derivative(T x, T t) {
    return stable_sigmoid(x) - t;
  }
  // PyTorch's pos_weight p weighs the positive term:
  //   -(p t log s(x) + (1 - t) log(1 - s(x))) = (1 - t) x + (1 + (p - 1) t) softplus(-x),
  // with softplus(-x) = max(-x, 0) + log1p(e^-|x|) so no exp can overflow. p = 1 is the
  // loss above (rounded differently, which is why the unweighted loss keeps its form).
  template <typename T>
  EMBER_HD static T forward(T x, T t, T p) {
    const T softplus_neg_x = (x < T(0) ? -x : T(0)) + std::log1p(std::exp(-std::fabs(x)));
    return (T(1) - t) * x + (T(1) + (p - T(1)) * t) * softplus_neg_x;
  }
  template <typename T>
  EMBER_HD static T derivative(T x, T t, T p) {
    return (T(1) + (p - T(1)) * t) * stable_sigmoid(x) - p * t;
  }
};

// ---- cross-entropy and NLL over class indices -----------------------------------------

enum class TargetClass : int { Valid, Ignored, OutOfRange };

// ignore_index is tested first: it may itself lie outside [0, C) (PyTorch's -100).
EMBER_HD inline TargetClass classify_target(int64_t target, int64_t num_classes,
                                            int64_t ignore_index) {
  if (target == ignore_index) return TargetClass::Ignored;
  if (target < 0 || target >= num_classes) return TargetClass::OutOfRange;
  return TargetClass::Valid;
}

// One row of label-smoothed cross-entropy from its log-sum-exp, the target's logit and
// the sum of the row's logits:
//   (1 - s) (lse - x_t) + s / C * sum_c (lse - x_c)  =  (1 - s)(lse - x_t) + s (lse - sum_x / C)
// sum_x is not read when s == 0 (the caller need not compute it).
template <typename A>
EMBER_HD inline A cross_entropy_row_loss(A lse, A target_logit, A sum_x, A num_classes,
                                         A smoothing) {
  const A nll = lse - target_logit;
  if (smoothing == A(0)) return nll;
  return (A(1) - smoothing) * nll + smoothing * (lse - sum_x / num_classes);
}

// d loss_r / d x_c = softmax(x)_c - (1 - s) [c == t] - s / C.
template <typename A>
EMBER_HD inline A cross_entropy_logit_grad(A x, A lse, bool is_target, A smoothing,
                                           A smoothing_over_c) {
  return std::exp(x - lse) - (is_target ? A(1) - smoothing : A(0)) - smoothing_over_c;
}

// With class weights w (W = sum_c w_c):
//   (1 - s) w_t (lse - x_t) + s / C * sum_c w_c (lse - x_c)
//     = (1 - s) w_t (lse - x_t) + s / C * (W lse - sum_c w_c x_c).
// weight_sum and sum_wx are not read when s == 0.
template <typename A>
EMBER_HD inline A weighted_cross_entropy_row_loss(A lse, A target_logit, A target_weight,
                                                  A weight_sum, A sum_wx, A num_classes,
                                                  A smoothing) {
  const A nll = target_weight * (lse - target_logit);
  if (smoothing == A(0)) return nll;
  return (A(1) - smoothing) * nll + smoothing / num_classes * (weight_sum * lse - sum_wx);
}

// d loss_r / d x_c = softmax(x)_c ((1 - s) w_t + s W / C) - (1 - s) w_t [c == t] - s / C w_c.
template <typename A>
EMBER_HD inline A weighted_cross_entropy_logit_grad(A x, A lse, bool is_target, A class_weight,
                                                    A target_weight, A weight_sum, A smoothing,
                                                    A smoothing_over_c) {
  const A target_part = (A(1) - smoothing) * target_weight;
  return std::exp(x - lse) * (target_part + smoothing_over_c * weight_sum) -
         (is_target ? target_part : A(0)) - smoothing_over_c * class_weight;
}

// Weighted NLL multiplies by the target's weight; times 1 (no weights) is exact.
template <typename A>
EMBER_HD inline A nll_row_loss(A target_logp) {
  return -target_logp;
}

// The NaN a row with an out-of-range target receives (loss and gradient). NAN rather than
// numeric_limits, whose constexpr members nvcc only admits in device code with
// --expt-relaxed-constexpr.
template <typename T>
EMBER_HD inline T invalid_target_value() {
  return static_cast<T>(NAN);
}

// ---- dropout --------------------------------------------------------------------------

// A 32-bit Philox word w stands for u = w * 2^-32, uniform on [0, 1). Since p * 2^32 is
// exact in double, u >= p  <=>  w >= ceil(p * 2^32), an integer test that gives the same
// answer on every device. p = 0 gives threshold 0 (every element kept).
inline uint64_t dropout_threshold(double p) {
  return static_cast<uint64_t>(std::ceil(p * 4294967296.0));
}

EMBER_HD inline bool dropout_keeps(uint32_t word, uint64_t threshold) {
  return static_cast<uint64_t>(word) >= threshold;
}

}  // namespace ember::kernels
