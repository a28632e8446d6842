// CUDA twins of kernels/cpu/loss.h (T: float, Half, BFloat16; the 16-bit types compute in float and
// round on store), with the same arguments and contracts. The forward kernels that validate targets
// count bad ones into `bad_count`, a device int64 that they add to (the caller zeroes it first and
// reads it back).
#pragma once

#include <cstdint>

#include "ember/kernels/context.h"
#include "ember/kernels/op_kinds.h"

namespace ember::kernels::cuda {

// One block per row: max, sum of exp (and, with smoothing, of the logits or the weighted
// logits), then thread 0 writes the row.
template <typename T>
void cross_entropy_forward(Context ctx, const T* logits, const int64_t* target,
                           const T* class_weight, T* loss, T* lse, int64_t N,
                           int64_t C, int64_t ignore_index, double label_smoothing,
                           int64_t* bad_count);
// One thread per logit without class weights; with them, one block per row (the sum of
// the weights that smoothing needs is a block reduction).
template <typename T>
void cross_entropy_backward(Context ctx, const T* logits, const int64_t* target,
                            const T* class_weight, const T* lse,
                            const T* grad_loss, int64_t grad_stride, T* grad_logits,
                            int64_t N, int64_t C, int64_t ignore_index,
                            double label_smoothing);

template <typename T>
void nll_forward(Context ctx, const T* logp, const int64_t* target,
                 const T* class_weight, T* loss, int64_t N, int64_t C,
                 int64_t ignore_index, int64_t* bad_count);
template <typename T>
void nll_backward(Context ctx, const int64_t* target, const T* class_weight,
                  const T* grad_loss, int64_t grad_stride, T* grad_logp, int64_t N,
                  int64_t C, int64_t ignore_index);

template <typename T>
void target_class_weights(Context ctx, const int64_t* target, const T* class_weight,
                          T* out, int64_t N, int64_t C, int64_t ignore_index);

// As kernels::cpu::count_outside, adding to the device counter on ctx.stream.
template <typename T>
void count_outside(Context ctx, const T* x, int64_t n, double lo, double hi, int64_t* count);

template <typename T>
void pointwise_loss_forward(Context ctx, PointwiseLoss op, const T* input,
                            const T* target, T* out, int64_t n);
template <typename T>
void pointwise_loss_backward(Context ctx, PointwiseLoss op, const T* input,
                             const T* target, const T* grad_out, int64_t grad_stride,
                             T* grad_input, int64_t n);

template <typename T>
void bce_with_logits_forward(Context ctx, const T* logits, const T* target,
                             const T* pos_weight, int64_t pos_weight_size, T* out,
                             int64_t n);
template <typename T>
void bce_with_logits_backward(Context ctx, const T* logits, const T* target,
                              const T* pos_weight, int64_t pos_weight_size,
                              const T* grad_out, int64_t grad_stride, T* grad_input,
                              int64_t n);

// Philox4x32-10 through cuRAND's device API: curand_init(seed, subsequence = thread,
// offset) — the same (seed, offset) gives the same mask.
template <typename T>
void dropout_mask(Context ctx, T* mask, int64_t n, double p, uint64_t seed,
                  uint64_t offset);

}  // namespace ember::kernels::cuda
