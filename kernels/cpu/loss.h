// CPU loss kernels: fused log-softmax + NLL (cross-entropy over class indices), NLL on
// log-probabilities, both with optional class weights, pointwise losses, binary
// cross-entropy on logits with a positive weight, and the dropout mask. Reference for
// kernels/cuda/loss.cuh, whose twins take the same arguments.
#pragma once

#include <cstdint>

#include "ember/kernels/context.h"
#include "ember/kernels/op_kinds.h"

namespace ember::kernels::cpu {

// Class weights (PyTorch's `weight`): `class_weight` is [C] or null (every weight 1). With
// weights w and label smoothing s, row r of cross-entropy is
//   loss[r] = (1 - s) w[t_r] (lse_r - x[r, t_r]) + s / C * sum_c w[c] (lse_r - x[r, c]),
// which without weights is (1 - s) (lse_r - x[r, t_r]) + s (lse_r - mean_c x[r, c]).
// The 'mean' divisor (the count of rows, or the sum of their targets' weights) is the
// caller's: see target_class_weights.
//
// Targets: a row whose target is ignore_index gets loss 0 (its lse is still written); a
// target outside [0, C) that is not ignore_index gets loss NaN and is added to
// *bad_count (host memory here, device memory on CUDA; the caller zeroes it first and
// turns a non-zero count into an error).

// logits: [N, C] contiguous; target: [N] class indices. T: float, double, Half, BFloat16
// (16-bit: computed in float, each output rounded once; so are the other losses).
template <typename T>
void cross_entropy_forward(Context ctx, const T* logits, const int64_t* target,
                           const T* class_weight, T* loss, T* lse, int64_t N, int64_t C,
                           int64_t ignore_index, double label_smoothing, int64_t* bad_count);

// grad_logits[r, c] = grad_loss[r * grad_stride] * d loss[r] / d x[r, c], which is
//   softmax(x)[r, c] - (1 - s) [c == t_r] - s / C                   without weights,
//   softmax(x)[r, c] ((1 - s) w[t_r] + s W / C) - (1 - s) w[t_r] [c == t_r] - s / C w[c]
// with weights (W = sum_c w[c]); 0 for ignored rows, NaN for out-of-range ones.
// grad_stride is 0 when one scalar gradient applies to every row (mean/sum reduction,
// with the 1/divisor already folded in by the caller), 1 for reduction "none".
template <typename T>
void cross_entropy_backward(Context ctx, const T* logits, const int64_t* target,
                            const T* class_weight, const T* lse, const T* grad_loss,
                            int64_t grad_stride, T* grad_logits, int64_t N, int64_t C,
                            int64_t ignore_index, double label_smoothing);

// logp: [N, C]. loss[r] = -w[t_r] logp[r, t_r]; ignored rows get 0, out-of-range rows NaN
// (counted into *bad_count), as in cross_entropy_forward.
template <typename T>
void nll_forward(Context ctx, const T* logp, const int64_t* target, const T* class_weight,
                 T* loss, int64_t N, int64_t C, int64_t ignore_index, int64_t* bad_count);

// grad_logp[r, c] = -grad_loss[r * grad_stride] w[t_r] if c == t_r (not ignored), else 0.
template <typename T>
void nll_backward(Context ctx, const int64_t* target, const T* class_weight,
                  const T* grad_loss, int64_t grad_stride, T* grad_logp, int64_t N, int64_t C,
                  int64_t ignore_index);

// out[r] = class_weight[t_r], 0 where t_r is ignore_index or out of range: the terms of
// PyTorch's divisor for a weighted mean (the sum of the targets' weights).
template <typename T>
void target_class_weights(Context ctx, const int64_t* target, const T* class_weight, T* out,
                          int64_t N, int64_t C, int64_t ignore_index);

// Adds to *count the number of x[i] outside [lo, hi], NaN included: binary_cross_entropy's
// input and target must be probabilities (a deferred check: core/deferred_check.h).
template <typename T>
void count_outside(Context ctx, const T* x, int64_t n, double lo, double hi, int64_t* count);

// out[i] = loss(input[i], target[i]); contiguous, n elements.
template <typename T>
void pointwise_loss_forward(Context ctx, PointwiseLoss op, const T* input, const T* target,
                            T* out, int64_t n);

// grad_input[i] = grad_out[i * grad_stride] * dloss/dinput(input[i], target[i]).
// Derivatives as PyTorch: L1 uses sign(x - t) (0 at 0); BCE is
// (x - t) / max((1 - x) x, 1e-12).
template <typename T>
void pointwise_loss_backward(Context ctx, PointwiseLoss op, const T* input, const T* target,
                             const T* grad_out, int64_t grad_stride, T* grad_input, int64_t n);

// Binary cross-entropy on logits with PyTorch's pos_weight p, which weighs the positive
// term: out[i] = -(p t log sigmoid(x) + (1 - t) log(1 - sigmoid(x))), where element i
// takes p = pos_weight[i % pos_weight_size] (a weight per class of the last dimension, or
// one per element). pos_weight is not null; without it the loss is
// PointwiseLoss::BinaryCrossEntropyWithLogits.
template <typename T>
void bce_with_logits_forward(Context ctx, const T* logits, const T* target,
                             const T* pos_weight, int64_t pos_weight_size, T* out, int64_t n);

// grad_input[i] = grad_out[i * grad_stride] * ((1 + (p - 1) t) sigmoid(x) - p t).
template <typename T>
void bce_with_logits_backward(Context ctx, const T* logits, const T* target,
                              const T* pos_weight, int64_t pos_weight_size, const T* grad_out,
                              int64_t grad_stride, T* grad_input, int64_t n);

// mask[i] = (u_i >= p) ? 1 / (1 - p) : 0 with u_i uniform in [0, 1) from a generator
// seeded by (seed, offset). 0 <= p < 1. T: float, double, Half, BFloat16.
template <typename T>
void dropout_mask(Context ctx, T* mask, int64_t n, double p, uint64_t seed, uint64_t offset);

}  // namespace ember::kernels::cpu
