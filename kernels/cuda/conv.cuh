// CUDA 2-D convolution (T: float, Half, BFloat16; 16-bit with a float compute type), the twins of
// kernels/cpu/conv.h with the same contracts, through cuDNN (kernels/cudnn/conv.h): the algorithm
// is chosen per shape with the context's policy (ctx.cudnn_benchmark, ctx.deterministic,
// ctx.allow_tf32; Note [cuDNN convolution plans]) and its workspace is taken from `scratch`.
#pragma once

#include "ember/kernels/context.h"
#include "ember/kernels/conv_shape.h"
#include "ember/kernels/scratch.h"

namespace ember::kernels::cuda {

// ctx.cudnn must be set (ember::cuda::kernel_context gives a full context). In benchmark
// mode the first call of a shape also borrows the measured search's workspace from
// `scratch`; when that much is not free the search runs without one.
template <typename T>
void conv2d_forward(Context ctx, const ConvShape& s, const T* x, const T* w,
                    const T* bias, T* y, const Scratch& scratch);

template <typename T>
void conv2d_backward_data(Context ctx, const ConvShape& s, const T* w, const T* dy,
                          T* dx, const Scratch& scratch);

template <typename T>
void conv2d_backward_filter(Context ctx, const ConvShape& s, const T* x, const T* dy,
                            T* dw, const Scratch& scratch);

}  // namespace ember::kernels::cuda
