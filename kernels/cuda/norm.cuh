// CUDA normalization (float, float16, bfloat16), the twins of kernels/cpu/norm.h with the same
// contracts: batch norm through cuDNN (kernels/cudnn/norm.h; implemented in kernels/cudnn/norm.cpp,
// with stand-ins from `scratch` for the null weight, bias and gradients cuDNN cannot take), layer
// norm hand-written (kernels/cuda/norm.cu).
#pragma once

#include <cstdint>

#include "ember/kernels/context.h"
#include "ember/kernels/scratch.h"

namespace ember::kernels::cuda {

// ---- batch norm (cuDNN; ctx.cudnn must be set) ----------------------------------------
// eps below cuDNN's minimum (CUDNN_BN_MIN_EPSILON) is raised to it. For float16 and
// bfloat16, x / y / gradients are cuDNN half / bfloat16 tensors and cuDNN keeps the
// per-channel tensors (weight, bias, statistics, their gradients) in float: they are
// widened into float scratch before the call and rounded back after it.

template <typename T>
void batch_norm_forward_training(Context ctx, const T* x, const T* weight,
                                 const T* bias, T* y, T* save_mean,
                                 T* save_invstd, T* running_mean, T* running_var,
                                 int64_t n, int64_t c, int64_t s, double momentum, double eps,
                                 const Scratch& scratch);

template <typename T>
void batch_norm_forward_inference(Context ctx, const T* x, const T* weight,
                                  const T* bias, const T* running_mean,
                                  const T* running_var, T* y, int64_t n, int64_t c,
                                  int64_t s, double eps, const Scratch& scratch);

// cuDNN computes all three gradients; the ones passed as null go to scratch.
template <typename T>
void batch_norm_backward(Context ctx, const T* x, const T* grad_y, const T* weight,
                         const T* save_mean, const T* save_invstd, T* grad_x,
                         T* grad_weight, T* grad_bias, int64_t n, int64_t c, int64_t s,
                         double eps, const Scratch& scratch);

// ---- layer norm (hand-written) -----------------------------------------------------------

// x, y: [rows, cols]; mean, rstd: [rows]. One block per row, CUB block reductions, two
// passes over the row (mean, then squared deviations).
template <typename T>
void layer_norm_forward(Context ctx, const T* x, const T* weight, const T* bias,
                        T* y, T* mean, T* rstd, int64_t rows, int64_t cols,
                        double eps);

// grad_x: one block per row; grad_weight / grad_bias: one block per 32 columns, its
// threads striding over the rows and reducing in shared memory. Any output may be null.
template <typename T>
void layer_norm_backward(Context ctx, const T* x, const T* grad_y, const T* weight,
                         const T* mean, const T* rstd, T* grad_x, T* grad_weight,
                         T* grad_bias, int64_t rows, int64_t cols);

}  // namespace ember::kernels::cuda
