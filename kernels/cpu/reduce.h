// CPU reductions over the middle axis of a contiguous [outer, n, inner] layout, the
// backward of max/min, softmax / log-softmax along that axis. Reference for kernels/cuda,
// whose twins (kernels/cuda/reduce.cuh) take the same arguments after the context.
#pragma once

#include <cstdint>

#include "ember/kernels/context.h"
#include "ember/kernels/op_kinds.h"

namespace ember::kernels::cpu {

// out[o, i] = reduce_{k < n} x[o, k, i]   (out is [outer, inner], contiguous).
// Mean divides by n. For Max/Min, `indices` (may be null) receives the first index k of
// the extreme value; NaN counts as the extreme (propagates, like PyTorch).
// n == 0: Sum -> 0, Mean -> NaN; Max/Min are never called with n == 0 (the op checks).
// T: float, double, int64_t (int64 only for Sum/Max/Min), Half, BFloat16.
template <typename T>
void reduce(Context ctx, ReduceOp op, const T* x, T* out, int64_t* indices, int64_t outer,
            int64_t n, int64_t inner);

// grad_x (pre-zeroed by the caller is NOT assumed: this writes every element of grad_x)
// = grad_y[o, i] at k == indices[o, i], else 0. T: float, double, Half, BFloat16.
template <typename T>
void reduce_index_backward(Context ctx, const int64_t* indices, const T* grad_y, T* grad_x,
                           int64_t outer, int64_t n, int64_t inner);

// y = softmax(x) (or log_softmax when `log`) along the middle axis. Numerically stable
// (max subtracted). T: float, double, Half, BFloat16 (computed in double, rounded on store).
template <typename T>
void softmax_forward(Context ctx, const T* x, T* y, int64_t outer, int64_t n, int64_t inner,
                     bool log);

// From the forward OUTPUT y: softmax: gx = y * (gy - sum(gy * y));
// log_softmax: gx = gy - exp(y) * sum(gy).
template <typename T>
void softmax_backward(Context ctx, const T* y, const T* grad_y, T* grad_x, int64_t outer,
                      int64_t n, int64_t inner, bool log);

}  // namespace ember::kernels::cpu
