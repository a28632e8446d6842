// CUDA twins of kernels/cpu/loss.h (float), with the same arguments and contracts. The
// forward kernels that validate targets count bad ones into `bad_count`, a device int64
// that they add to (the caller zeroes it first and reads it back).
#pragma once

#include <cstdint>

#include "ember/kernels/context.h"
#include "ember/kernels/op_kinds.h"

namespace ember::kernels::cuda {

// One block per row: max, sum of exp (and, with smoothing, of the logits or the weighted
// logits), then thread 0 writes the row.
void cross_entropy_forward(Context ctx, const float* logits, const int64_t* target,
                           const float* class_weight, float* loss, float* lse, int64_t N,
                           int64_t C, int64_t ignore_index, double label_smoothing,
                           int64_t* bad_count);
// One thread per logit without class weights; with them, one block per row (the sum of
// the weights that smoothing needs is a block reduction).
void cross_entropy_backward(Context ctx, const float* logits, const int64_t* target,
                            const float* class_weight, const float* lse,
                            const float* grad_loss, int64_t grad_stride, float* grad_logits,
                            int64_t N, int64_t C, int64_t ignore_index,
                            double label_smoothing);

void nll_forward(Context ctx, const float* logp, const int64_t* target,
                 const float* class_weight, float* loss, int64_t N, int64_t C,
                 int64_t ignore_index, int64_t* bad_count);
void nll_backward(Context ctx, const int64_t* target, const float* class_weight,
                  const float* grad_loss, int64_t grad_stride, float* grad_logp, int64_t N,
                  int64_t C, int64_t ignore_index);

void target_class_weights(Context ctx, const int64_t* target, const float* class_weight,
                          float* out, int64_t N, int64_t C, int64_t ignore_index);

void pointwise_loss_forward(Context ctx, PointwiseLoss op, const float* input,
                            const float* target, float* out, int64_t n);
void pointwise_loss_backward(Context ctx, PointwiseLoss op, const float* input,
                             const float* target, const float* grad_out, int64_t grad_stride,
                             float* grad_input, int64_t n);

void bce_with_logits_forward(Context ctx, const float* logits, const float* target,
                             const float* pos_weight, int64_t pos_weight_size, float* out,
                             int64_t n);
void bce_with_logits_backward(Context ctx, const float* logits, const float* target,
                              const float* pos_weight, int64_t pos_weight_size,
                              const float* grad_out, int64_t grad_stride, float* grad_input,
                              int64_t n);

// Philox4x32-10 through cuRAND's device API: curand_init(seed, subsequence = thread,
// offset) — the same (seed, offset) gives the same mask.
void dropout_mask(Context ctx, float* mask, int64_t n, double p, uint64_t seed,
                  uint64_t offset);

}  // namespace ember::kernels::cuda
