// CPU elementwise kernels: unary (forward and backward), broadcasting binary ops,
// comparisons, casts, fills and strided copies. The reference for kernels/cuda/elementwise.
#pragma once

#include <cstdint>

#include "ember/kernels/context.h"
#include "ember/kernels/op_kinds.h"

namespace ember::kernels::cpu {

// T: float, double, Half, BFloat16 (computed in float, rounded on store).
template <typename T>
void unary_forward(Context ctx, UnaryOp op, const T* x, T* y, int64_t n, UnaryParams p);

// grad_x[i] = grad_y[i] * f'(x[i], y[i]). `y` is the forward output (may be used by
// sigmoid/tanh); both x and y are always passed.
template <typename T>
void unary_backward(Context ctx, UnaryOp op, const T* x, const T* y, const T* grad_y,
                    T* grad_x, int64_t n, UnaryParams p);

// out is contiguous with idx.sizes; n = product of sizes. T: float, double, int32_t, int64_t,
// Half, BFloat16.
// Integer Div truncates toward zero; integer division by zero writes 0 (never traps).
template <typename T>
void binary(Context ctx, BinaryOp op, const T* a, const T* b, T* out,
            const BroadcastIndex& idx, int64_t n);

// out[i] = cmp(a, b) as bool. T: float, double, int32_t, int64_t, uint8_t, bool, Half,
// BFloat16.
template <typename T>
void compare(Context ctx, CompareOp op, const T* a, const T* b, bool* out,
             const BroadcastIndex& idx, int64_t n);

// Contiguous conversion. dtype codes are ember::DType values passed as int
// (0 f32, 1 f64, 2 i32, 3 i64, 4 u8, 5 bool, 6 f16, 7 bf16). Float -> bool is x != 0;
// float -> int truncates toward zero.
void cast(Context ctx, int src_dtype, const void* x, int dst_dtype, void* y, int64_t n);

// y[0..n) = value converted to dtype.
void fill(Context ctx, int dtype, void* y, int64_t n, double value);

// y (contiguous, n elements of elem_size bytes: 1, 2, 4 or 8) gathers from x through idx.
void strided_copy(Context ctx, int64_t elem_size, const void* x, const StridedIndex& idx,
                  void* y, int64_t n);

// The reverse of strided_copy: scatters contiguous x (n elements) into y through idx.
void strided_scatter(Context ctx, int64_t elem_size, const void* x, const StridedIndex& idx,
                     void* y, int64_t n);

}  // namespace ember::kernels::cpu
