// CPU loss kernels: fused log-softmax + NLL (cross-entropy over class indices), NLL on
// log-probabilities, pointwise losses, and the dropout mask. Reference for kernels/cuda.
#pragma once

#include <cstdint>

#include "ember/kernels/op_kinds.h"

namespace ember::kernels::cpu {

// logits: [N, C] contiguous; target: [N] class indices.
// loss[r] = weight_r * (lse_r - logits[r, t_r]) with label smoothing s:
//   loss[r] = (1 - s) * (lse_r - x[r, t_r]) + s / C * sum_c (lse_r - x[r, c])
// Rows with target == ignore_index get loss 0 and lse still written.
// Returns the number of rows whose target is outside [0, C) and not ignore_index; those
// rows get loss NaN. The caller turns a non-zero count into an error.
// T: float, double.
template <typename T>
int64_t cross_entropy_forward(const T* logits, const int64_t* target, T* loss, T* lse,
                              int64_t N, int64_t C, int64_t ignore_index,
                              double label_smoothing);

// grad_logits[r, c] = grad_loss[r * grad_stride] *
//   (softmax(x)[r, c] - (1 - s) * [c == t_r] - s / C); 0 for ignored rows.
// grad_stride is 0 when one scalar gradient applies to every row (mean/sum reduction,
// with the 1/count already folded in by the caller), 1 for reduction "none".
template <typename T>
void cross_entropy_backward(const T* logits, const int64_t* target, const T* lse,
                            const T* grad_loss, int64_t grad_stride, T* grad_logits,
                            int64_t N, int64_t C, int64_t ignore_index,
                            double label_smoothing);

// logp: [N, C]. loss[r] = -logp[r, t_r]; ignore_index rows get 0. Returns the count of
// out-of-range targets (their loss is NaN), like cross_entropy_forward.
template <typename T>
int64_t nll_forward(const T* logp, const int64_t* target, T* loss, int64_t N, int64_t C,
                    int64_t ignore_index);

// grad_logp[r, c] = -grad_loss[r * grad_stride] if c == t_r (not ignored), else 0.
template <typename T>
void nll_backward(const int64_t* target, const T* grad_loss, int64_t grad_stride,
                  T* grad_logp, int64_t N, int64_t C, int64_t ignore_index);

// out[i] = loss(input[i], target[i]); contiguous, n elements.
template <typename T>
void pointwise_loss_forward(PointwiseLoss op, const T* input, const T* target, T* out,
                            int64_t n);

// grad_input[i] = grad_out[i * grad_stride] * dloss/dinput(input[i], target[i]).
// Derivatives as PyTorch: L1 uses sign(x - t) (0 at 0); BCE is
// (x - t) / max((1 - x) x, 1e-12).
template <typename T>
void pointwise_loss_backward(PointwiseLoss op, const T* input, const T* target,
                             const T* grad_out, int64_t grad_stride, T* grad_input,
                             int64_t n);

// mask[i] = (u_i >= p) ? 1 / (1 - p) : 0 with u_i uniform in [0, 1) from a generator
// seeded by (seed, offset). 0 <= p < 1. T: float, double.
template <typename T>
void dropout_mask(T* mask, int64_t n, double p, uint64_t seed, uint64_t offset);

}  // namespace ember::kernels::cpu
