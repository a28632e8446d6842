// CUDA pooling (T: float, Half, BFloat16; computing in float), the twins of kernels/cpu/pool.h with
// the same contracts: max and average pooling through cuDNN, or hand-written kernels for the shapes
// cuDNN cannot express (ceil mode that adds a window, sizes past int32; Note [Ceil mode on the GPU]
// in pool.cu), and adaptive average pooling.
#pragma once

#include <cstdint>

#include "ember/kernels/context.h"
#include "ember/kernels/cpu/pool.h"

namespace ember::kernels::cuda {

// cuDNN when ctx.cudnn is set and cuDNN computes this geometry exactly; otherwise one
// thread per output, the window from pool_window (kernels/cpu/pool.h).
template <typename T>
void pool2d_forward(Context ctx, const Pool2dGeometry& g, PoolMode mode, const T* x,
                    T* y);

// cuDNN (which reads x and y for both modes; ctx.deterministic picks its deterministic
// max), or one thread per input element gathering from the windows that cover it (no
// atomics, so deterministic). The hand-written path reads x and y only for Max.
template <typename T>
void pool2d_backward(Context ctx, const Pool2dGeometry& g, PoolMode mode, const T* x,
                     const T* y, const T* grad_y, T* grad_x);

// x: [planes, h, w] -> y: [planes, out_h, out_w]. Output 1x1 (global average pooling) is
// one block per plane with a CUB reduction; other sizes one thread per output.
template <typename T>
void adaptive_avg_pool2d_forward(Context ctx, const T* x, T* y,
                                 int64_t planes, int64_t h, int64_t w, int64_t out_h,
                                 int64_t out_w);

// One thread per input element, gathering from the bins that contain it.
template <typename T>
void adaptive_avg_pool2d_backward(Context ctx, const T* grad_y, T* grad_x,
                                  int64_t planes, int64_t h, int64_t w, int64_t out_h,
                                  int64_t out_w);

}  // namespace ember::kernels::cuda
