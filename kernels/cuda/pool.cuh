// Hand-written CUDA pooling (float): the general max/average pooling that serves the
// shapes cuDNN cannot express (ceil mode that adds a window, sizes past int32), and
// adaptive average pooling. Same contracts as kernels/cpu/pool.h.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "ember/kernels/cpu/pool.h"

namespace ember::kernels::cuda {

// One thread per output; the window from pool_window (kernels/cpu/pool.h).
void pool2d_forward(cudaStream_t stream, const Pool2dGeometry& g, PoolMode mode,
                    const float* x, float* y);

// One thread per input element, gathering from the windows that cover it (no atomics,
// so the result is deterministic). x and y are read only for Max (may be null for Avg).
void pool2d_backward(cudaStream_t stream, const Pool2dGeometry& g, PoolMode mode,
                     const float* x, const float* y, const float* grad_y, float* grad_x);

// x: [planes, h, w] -> y: [planes, out_h, out_w]. Output 1x1 (global average pooling) is
// one block per plane with a CUB reduction; other sizes one thread per output.
void adaptive_avg_pool2d_forward(cudaStream_t stream, const float* x, float* y,
                                 int64_t planes, int64_t h, int64_t w, int64_t out_h,
                                 int64_t out_w);

// One thread per input element, gathering from the bins that contain it.
void adaptive_avg_pool2d_backward(cudaStream_t stream, const float* grad_y, float* grad_x,
                                  int64_t planes, int64_t h, int64_t w, int64_t out_h,
                                  int64_t out_w);

}  // namespace ember::kernels::cuda
