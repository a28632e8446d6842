// CUDA elementwise kernels: the twins of kernels/cpu/elementwise.h, same semantics,
// on device pointers, launched on `stream`. float only for unary ops; binary and
// compare also for int32/int64 (and compare for uint8/bool).
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "ember/kernels/op_kinds.h"

namespace ember::kernels::cuda {

void unary_forward(cudaStream_t stream, UnaryOp op, const float* x, float* y, int64_t n,
                   UnaryParams p);
void unary_backward(cudaStream_t stream, UnaryOp op, const float* x, const float* y,
                    const float* grad_y, float* grad_x, int64_t n, UnaryParams p);

// T: float, int32_t, int64_t.
template <typename T>
void binary(cudaStream_t stream, BinaryOp op, const T* a, const T* b, T* out,
            const BroadcastIndex& idx, int64_t n);

// T: float, int32_t, int64_t, uint8_t, bool.
template <typename T>
void compare(cudaStream_t stream, CompareOp op, const T* a, const T* b, bool* out,
             const BroadcastIndex& idx, int64_t n);

// Same dtype codes as the CPU twin; f64 (code 1) is not supported on CUDA (the caller
// never passes it).
void cast(cudaStream_t stream, int src_dtype, const void* x, int dst_dtype, void* y,
          int64_t n);
void fill(cudaStream_t stream, int dtype, void* y, int64_t n, double value);
void strided_copy(cudaStream_t stream, int64_t elem_size, const void* x,
                  const StridedIndex& idx, void* y, int64_t n);

void strided_scatter(cudaStream_t stream, int64_t elem_size, const void* x,
                     const StridedIndex& idx, void* y, int64_t n);

}  // namespace ember::kernels::cuda
