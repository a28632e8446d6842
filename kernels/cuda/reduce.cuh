// CUDA twins of kernels/cpu/reduce.h (float, and int64 for Sum/Max/Min), built on CUB
// block reductions.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "ember/kernels/op_kinds.h"

namespace ember::kernels::cuda {

template <typename T>  // float, int64_t
void reduce(cudaStream_t stream, ReduceOp op, const T* x, T* out, int64_t* indices,
            int64_t outer, int64_t n, int64_t inner);

void reduce_index_backward(cudaStream_t stream, const int64_t* indices,
                           const float* grad_y, float* grad_x, int64_t outer, int64_t n,
                           int64_t inner);

void softmax_forward(cudaStream_t stream, const float* x, float* y, int64_t outer,
                     int64_t n, int64_t inner, bool log);
void softmax_backward(cudaStream_t stream, const float* y, const float* grad_y,
                      float* grad_x, int64_t outer, int64_t n, int64_t inner, bool log);

}  // namespace ember::kernels::cuda
