// CPU 2-D convolution (im2col + OpenBLAS GEMM per image and group): forward, backward
// data, backward filter. The reference its CUDA twin (kernels/cuda/conv.cuh, cuDNN) is
// tested against.
#pragma once

#include "ember/kernels/context.h"
#include "ember/kernels/conv_shape.h"
#include "ember/kernels/scratch.h"

namespace ember::kernels::cpu {

// All buffers contiguous NCHW / OIHW with the sizes in `s` (out_h/out_w filled in).
// Every function overwrites its whole output. T: float, double, Half, BFloat16
// (16-bit: converted to float, computed, rounded once). `scratch` is for the
// CUDA twin's workspace; the CPU loops keep their column buffer themselves.

// y [n, o, out_h, out_w] = conv(x, w) (+ bias[o] when bias is not null).
template <typename T>
void conv2d_forward(Context ctx, const ConvShape& s, const T* x, const T* w, const T* bias, T* y,
                    const Scratch& scratch);

// dx [n, c, h, w] = d(sum(dy * conv(x, w))) / dx.
template <typename T>
void conv2d_backward_data(Context ctx, const ConvShape& s, const T* w, const T* dy, T* dx,
                          const Scratch& scratch);

// dw [o, c / groups, kh, kw] = d(sum(dy * conv(x, w))) / dw, summed over the batch.
template <typename T>
void conv2d_backward_filter(Context ctx, const ConvShape& s, const T* x, const T* dy, T* dw,
                            const Scratch& scratch);

}  // namespace ember::kernels::cpu
