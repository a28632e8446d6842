// CUDA elementwise kernels: the twins of kernels/cpu/elementwise.h, same semantics and
// arguments, on device pointers, launched on ctx.stream. Unary ops in float, float16 and
// bfloat16 (the 16-bit types load, compute in float and round on store: acc_t in
// kernels/acc_type.h); binary and compare also for int32/int64 (and compare for uint8/bool).
#pragma once

#include <cstdint>

#include "ember/kernels/context.h"
#include "ember/kernels/op_kinds.h"

namespace ember::kernels::cuda {

// 16-byte vector loads and stores when x and y are 16-byte aligned. T: float, Half,
// BFloat16.
template <typename T>
void unary_forward(Context ctx, UnaryOp op, const T* x, T* y, int64_t n, UnaryParams p);
template <typename T>
void unary_backward(Context ctx, UnaryOp op, const T* x, const T* y, const T* grad_y,
                    T* grad_x, int64_t n, UnaryParams p);

// T: float, int32_t, int64_t, Half, BFloat16.
template <typename T>
void binary(Context ctx, BinaryOp op, const T* a, const T* b, T* out,
            const BroadcastIndex& idx, int64_t n);

// T: float, int32_t, int64_t, uint8_t, bool, Half, BFloat16.
template <typename T>
void compare(Context ctx, CompareOp op, const T* a, const T* b, bool* out,
             const BroadcastIndex& idx, int64_t n);

// Same dtype codes as the CPU twin; f64 (code 1) is not supported on CUDA (DTypeError).
// Same dtypes are a device-to-device memcpy on ctx.stream.
void cast(Context ctx, int src_dtype, const void* x, int dst_dtype, void* y, int64_t n);
void fill(Context ctx, int dtype, void* y, int64_t n, double value);

void strided_copy(Context ctx, int64_t elem_size, const void* x, const StridedIndex& idx,
                  void* y, int64_t n);
void strided_scatter(Context ctx, int64_t elem_size, const void* x, const StridedIndex& idx,
                     void* y, int64_t n);

}  // namespace ember::kernels::cuda
