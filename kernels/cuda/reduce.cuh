// CUDA twins of kernels/cpu/reduce.h with the same contracts and arguments (float, float16 and
// bfloat16 computing in float, and int64 for Sum/Max/Min), built on CUB block reductions inside
// reduce.cu. No CUDA header here: the context carries the stream (kernels/context.h).
#pragma once

#include <cstdint>

#include "ember/kernels/context.h"
#include "ember/kernels/op_kinds.h"

namespace ember::kernels::cuda {

// A contiguous axis (inner == 1) of at least 128 elements: one block per row; otherwise
// one thread per output column. T: float, int64_t, Half, BFloat16 (sums accumulate in
// double for every floating type).
template <typename T>
void reduce(Context ctx, ReduceOp op, const T* x, T* out, int64_t* indices, int64_t outer,
            int64_t n, int64_t inner);

// One thread per element of grad_x (every element written). T: float, Half, BFloat16.
template <typename T>
void reduce_index_backward(Context ctx, const int64_t* indices, const T* grad_y, T* grad_x,
                           int64_t outer, int64_t n, int64_t inner);

// Sums of exponentials accumulate in float (the CPU uses double; the parity tests state
// the tolerance). T: float, Half, BFloat16 (loaded into float, rounded on store).
template <typename T>
void softmax_forward(Context ctx, const T* x, T* y, int64_t outer, int64_t n, int64_t inner,
                     bool log);
template <typename T>
void softmax_backward(Context ctx, const T* y, const T* grad_y, T* grad_x, int64_t outer,
                      int64_t n, int64_t inner, bool log);

}  // namespace ember::kernels::cuda
