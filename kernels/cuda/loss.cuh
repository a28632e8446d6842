// CUDA twins of kernels/cpu/loss.h (float). The forward kernels that validate targets
// count bad ones into `bad_count` (a device int64, which the kernel adds to; the caller
// zeroes it first and reads it back).
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "ember/kernels/op_kinds.h"

namespace ember::kernels::cuda {

void cross_entropy_forward(cudaStream_t stream, const float* logits,
                           const int64_t* target, float* loss, float* lse, int64_t N,
                           int64_t C, int64_t ignore_index, double label_smoothing,
                           int64_t* bad_count);
void cross_entropy_backward(cudaStream_t stream, const float* logits,
                            const int64_t* target, const float* lse,
                            const float* grad_loss, int64_t grad_stride,
                            float* grad_logits, int64_t N, int64_t C,
                            int64_t ignore_index, double label_smoothing);

void nll_forward(cudaStream_t stream, const float* logp, const int64_t* target,
                 float* loss, int64_t N, int64_t C, int64_t ignore_index,
                 int64_t* bad_count);
void nll_backward(cudaStream_t stream, const int64_t* target, const float* grad_loss,
                  int64_t grad_stride, float* grad_logp, int64_t N, int64_t C,
                  int64_t ignore_index);

void pointwise_loss_forward(cudaStream_t stream, PointwiseLoss op, const float* input,
                            const float* target, float* out, int64_t n);
void pointwise_loss_backward(cudaStream_t stream, PointwiseLoss op, const float* input,
                             const float* target, const float* grad_out,
                             int64_t grad_stride, float* grad_input, int64_t n);

// Philox4x32-10 through cuRAND's device API: curand_init(seed, subsequence = thread,
// offset) — the same (seed, offset) gives the same mask.
void dropout_mask(cudaStream_t stream, float* mask, int64_t n, double p, uint64_t seed,
                  uint64_t offset);

}  // namespace ember::kernels::cuda
