// CUDA normalization (float), the twins of kernels/cpu/norm.h with the same contracts:
// batch norm through cuDNN (kernels/cudnn/norm.h; implemented in kernels/cudnn/norm.cpp,
// with stand-ins from `scratch` for the null weight, bias and gradients cuDNN cannot
// take), layer norm hand-written (kernels/cuda/norm.cu).
#pragma once

#include <cstdint>

#include "ember/kernels/context.h"
#include "ember/kernels/scratch.h"

namespace ember::kernels::cuda {

// ---- batch norm (cuDNN; ctx.cudnn must be set) ----------------------------------------
// eps below cuDNN's minimum (CUDNN_BN_MIN_EPSILON) is raised to it.

void batch_norm_forward_training(Context ctx, const float* x, const float* weight,
                                 const float* bias, float* y, float* save_mean,
                                 float* save_invstd, float* running_mean, float* running_var,
                                 int64_t n, int64_t c, int64_t s, double momentum, double eps,
                                 const Scratch& scratch);

void batch_norm_forward_inference(Context ctx, const float* x, const float* weight,
                                  const float* bias, const float* running_mean,
                                  const float* running_var, float* y, int64_t n, int64_t c,
                                  int64_t s, double eps, const Scratch& scratch);

// cuDNN computes all three gradients; the ones passed as null go to scratch.
void batch_norm_backward(Context ctx, const float* x, const float* grad_y, const float* weight,
                         const float* save_mean, const float* save_invstd, float* grad_x,
                         float* grad_weight, float* grad_bias, int64_t n, int64_t c, int64_t s,
                         double eps, const Scratch& scratch);

// ---- layer norm (hand-written) -----------------------------------------------------------

// x, y: [rows, cols]; mean, rstd: [rows]. One block per row, CUB block reductions, two
// passes over the row (mean, then squared deviations).
void layer_norm_forward(Context ctx, const float* x, const float* weight, const float* bias,
                        float* y, float* mean, float* rstd, int64_t rows, int64_t cols,
                        double eps);

// grad_x: one block per row; grad_weight / grad_bias: one block per 32 columns, its
// threads striding over the rows and reducing in shared memory. Any output may be null.
void layer_norm_backward(Context ctx, const float* x, const float* grad_y, const float* weight,
                         const float* mean, const float* rstd, float* grad_x, float* grad_weight,
                         float* grad_bias, int64_t rows, int64_t cols);

}  // namespace ember::kernels::cuda
