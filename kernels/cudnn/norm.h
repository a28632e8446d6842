// Batch normalization through cuDNN (data in float32, float16 or bfloat16), with the [n, c, s]
// contract of kernels/cpu/norm.h. Every input shape ([N, C], [N, C, L], [N, C, H, W], ...) is
// described to cuDNN as [n, c, s, 1] in CUDNN_BATCHNORM_SPATIAL mode: statistics per channel over n
// and s, which is what PyTorch's BatchNorm1d/2d compute (for [N, C] that is per-activation
// normalization over N). Descriptors are cached per (n, c, s). Core calls the CUDA twins of
// kernels/cuda/norm.cuh, which run these.
#pragma once

#include <cudnn.h>

#include <cstdint>

namespace ember::kernels::cudnn {

// cuDNN's lower bound on epsilon; the functions below raise a smaller eps to it.
double batch_norm_min_epsilon();

// As kernels::cpu::batch_norm_forward_training, except that weight and bias must not be
// null (pass ones and zeros). running_mean/running_var: both or neither null; cuDNN
// updates them with factor `momentum` and the unbiased batch variance, as PyTorch does.
// T (x, y and the data gradients): float, Half, BFloat16. The per-channel arrays (weight,
// bias, statistics and their gradients) are float32 for every T: cuDNN derives their
// descriptor from x's as CUDNN_DATA_FLOAT for half and bfloat16 data.
template <typename T>
void batch_norm_forward_training(cudnnHandle_t handle, const T* x, const float* weight,
                                 const float* bias, T* y, float* save_mean,
                                 float* save_invstd, float* running_mean, float* running_var,
                                 int64_t n, int64_t c, int64_t s, double momentum, double eps);

template <typename T>
void batch_norm_forward_inference(cudnnHandle_t handle, const T* x, const float* weight,
                                  const float* bias, const float* running_mean,
                                  const float* running_var, T* y, int64_t n, int64_t c,
                                  int64_t s, double eps);

// Training backward; grad_x, grad_weight and grad_bias are all written (none may be
// null), weight must not be null. eps must be the forward's.
template <typename T>
void batch_norm_backward(cudnnHandle_t handle, const T* x, const T* grad_y,
                         const float* weight, const float* save_mean, const float* save_invstd,
                         T* grad_x, float* grad_weight, float* grad_bias, int64_t n,
                         int64_t c, int64_t s, double eps);

}  // namespace ember::kernels::cudnn
