// CPU batch normalization (over [n, c, s]: per channel c, statistics over n and the
// flattened spatial extent s) and layer normalization (over the last `cols` elements of
// each row), forward and backward: the reference for the CUDA twins in
// kernels/cuda/norm.cuh (cuDNN batch norm, hand-written layer norm).
#pragma once

#include <cstdint>

#include "ember/kernels/context.h"
#include "ember/kernels/scratch.h"

namespace ember::kernels::cpu {

// Batch norm: `scratch` is for the CUDA twins (cuDNN takes no null weight, bias or
// gradient, so they stand in for those there); the CPU loops do not use it.

// Training forward. x, y: [n, c, s] contiguous; weight, bias: [c] or null (1 and 0).
// Normalizes with the batch mean and biased variance; writes save_mean and save_invstd
// = 1 / sqrt(var + eps) ([c]) for the backward. When running_mean/running_var are not
// null (both or neither) they are updated in place as PyTorch does:
//   running = (1 - momentum) * running + momentum * batch, with the unbiased variance.
// n * s must be at least 2 (the op checks). T: float, double, Half, BFloat16 (statistics in
// double, outputs rounded once).
template <typename T>
void batch_norm_forward_training(Context ctx, const T* x, const T* weight, const T* bias, T* y,
                                 T* save_mean, T* save_invstd, T* running_mean,
                                 T* running_var, int64_t n, int64_t c, int64_t s,
                                 double momentum, double eps, const Scratch& scratch);

// Eval forward: y = (x - running_mean) / sqrt(running_var + eps) * weight + bias.
template <typename T>
void batch_norm_forward_inference(Context ctx, const T* x, const T* weight, const T* bias,
                                  const T* running_mean, const T* running_var, T* y,
                                  int64_t n, int64_t c, int64_t s, double eps,
                                  const Scratch& scratch);

// Training backward from the saved batch statistics. With xhat = (x - mean) * invstd
// and m = n * s: grad_bias = sum(gy), grad_weight = sum(gy * xhat),
// grad_x = weight * invstd / m * (m * gy - grad_bias - xhat * grad_weight).
// Any of grad_x, grad_weight, grad_bias may be null (not computed); weight may be null.
// eps must be the forward's (cuDNN reads it; the CPU loops use save_invstd alone).
template <typename T>
void batch_norm_backward(Context ctx, const T* x, const T* grad_y, const T* weight,
                         const T* save_mean, const T* save_invstd, T* grad_x, T* grad_weight,
                         T* grad_bias, int64_t n, int64_t c, int64_t s, double eps,
                         const Scratch& scratch);

// x, y: [rows, cols]; weight, bias: [cols] or null. Writes mean and rstd
// = 1 / sqrt(biased var + eps) per row ([rows]) for the backward.
template <typename T>
void layer_norm_forward(Context ctx, const T* x, const T* weight, const T* bias, T* y, T* mean,
                        T* rstd, int64_t rows, int64_t cols, double eps);

// With xhat = (x - mean) * rstd and wg = gy * weight per row:
// grad_x = rstd / cols * (cols * wg - sum(wg) - xhat * sum(wg * xhat)),
// grad_weight = sum over rows of gy * xhat, grad_bias = sum over rows of gy.
// Any of grad_x, grad_weight, grad_bias may be null; weight may be null.
template <typename T>
void layer_norm_backward(Context ctx, const T* x, const T* grad_y, const T* weight,
                         const T* mean, const T* rstd, T* grad_x, T* grad_weight, T* grad_bias,
                         int64_t rows, int64_t cols);

}  // namespace ember::kernels::cpu
