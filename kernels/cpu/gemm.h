// CPU GEMM through OpenBLAS (cblas), row-major. Reference for its CUDA twin
// (kernels/cuda/gemm.cuh, cuBLAS).
#pragma once

#include <cstdint>

#include "ember/kernels/context.h"
#include "ember/kernels/op_kinds.h"

namespace ember::kernels::cpu {

// Row-major C[m, n] = alpha * op(A) op(B) + beta * C, op(A) is [m, k], op(B) is [k, n].
// lda/ldb/ldc are row strides of A, B, C as stored (A stored [m, k] or, when trans_a,
// [k, m]). batch > 1: matrices at A + i*stride_a etc. (stride 0 broadcasts).
// T: float, double, Half, BFloat16 (widened to float, sgemm, rounded once). k == 0 gives
// C = beta * C.
template <typename T>
void gemm(Context ctx, bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, T alpha,
          const T* a, int64_t lda, int64_t stride_a, const T* b, int64_t ldb,
          int64_t stride_b, T beta, T* c, int64_t ldc, int64_t stride_c, int64_t batch);

// A linear layer's forward in one GEMM (Note [Fused linear] in core/ops/linalg.cpp):
// row-major C[m, n] = act(op(A) op(B) + bias), bias[n] one value per column of C; `pre`
// (null, or [m, n] with row stride ldc) receives op(A) op(B) + bias before the activation.
// 16-bit T: the sum and the activation in float, each output rounded once. Returns true
// (the CUDA twin returns false when cuBLASLt has no fused kernel for the case, having
// written nothing: the caller then composes the op).
template <typename T>
bool gemm_bias_act(Context ctx, bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k,
                   const T* a, int64_t lda, const T* b, int64_t ldb, const T* bias,
                   GemmActivation act, T* c, int64_t ldc, T* pre);

// A linear layer's weight gradient and bias gradient in one GEMM: row-major C[m, n] =
// op(A) op(B) and bias_grad[m] = the sum of op(A) over k (with A = dY^T, the bias
// gradient). Returns true; the CUDA twin as gemm_bias_act.
template <typename T>
bool gemm_bias_grad(Context ctx, bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k,
                    const T* a, int64_t lda, const T* b, int64_t ldb, T* c, int64_t ldc,
                    T* bias_grad);

}  // namespace ember::kernels::cpu
