// CUDA 2-D convolution (float), the twins of kernels/cpu/conv.h with the same contracts,
// through cuDNN (kernels/cudnn/conv.h): the algorithm is chosen per shape with the
// context's policy (ctx.cudnn_benchmark, ctx.deterministic, ctx.allow_tf32; Note [cuDNN
// convolution plans]) and its workspace is taken from `scratch`.
#pragma once

#include "ember/kernels/context.h"
#include "ember/kernels/conv_shape.h"
#include "ember/kernels/scratch.h"

namespace ember::kernels::cuda {

// ctx.cudnn must be set (ember::cuda::kernel_context gives a full context). In benchmark
// mode the first call of a shape also borrows the measured search's workspace from
// `scratch`; when that much is not free the search runs without one.
void conv2d_forward(Context ctx, const ConvShape& s, const float* x, const float* w,
                    const float* bias, float* y, const Scratch& scratch);

void conv2d_backward_data(Context ctx, const ConvShape& s, const float* w, const float* dy,
                          float* dx, const Scratch& scratch);

void conv2d_backward_filter(Context ctx, const ConvShape& s, const float* x, const float* dy,
                            float* dw, const Scratch& scratch);

}  // namespace ember::kernels::cuda
