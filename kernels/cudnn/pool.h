// Max and average pooling through cuDNN (float32, float16, bfloat16; NCHW), forward and backward,
// with the Pool2dGeometry contract of kernels/cpu/pool.h. Tensor and pooling descriptors are built
// once per geometry and cached for the process behind a mutex.
#pragma once

#include <cudnn.h>

#include "ember/kernels/cpu/pool.h"

namespace ember::kernels::cudnn {

// True when cuDNN computes exactly this geometry: every size fits its int descriptors,
// and the output size is cuDNN's floor formula (ceil mode that adds a last window past
// the bottom/right padding is outside cuDNN's model; kernels/cuda/pool.cuh serves it).
bool pool2d_supported(const Pool2dGeometry& g);

// All buffers contiguous T (float, Half, BFloat16: the descriptors' data type; cuDNN
// computes 16-bit pooling in float) on the handle's device; outputs overwritten. The handle
// is bound to the caller's stream. Max propagates NaN. Avg uses
// CUDNN_POOLING_AVERAGE_COUNT_INCLUDE_PADDING or _EXCLUDE_PADDING per count_include_pad.
template <typename T>
void pool2d_forward(cudnnHandle_t handle, const Pool2dGeometry& g, PoolMode mode, const T* x,
                    T* y);

// cuDNN's backward reads x and y for every mode (max pooling finds each window's maximum
// by comparing them). `deterministic` selects CUDNN_POOLING_MAX_DETERMINISTIC for Max.
template <typename T>
void pool2d_backward(cudnnHandle_t handle, const Pool2dGeometry& g, PoolMode mode,
                     bool deterministic, const T* x, const T* y, const T* grad_y, T* grad_x);

}  // namespace ember::kernels::cudnn
