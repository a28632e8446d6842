// CUDA GEMM (float, float16, bfloat16), the twin of kernels/cpu/gemm.h with the same row-major
// contract: cuBLAS on the context's handle (kernels/cublas/gemm.h does the mapping to
// column-major).
#pragma once

#include <cstdint>

#include "ember/kernels/context.h"
#include "ember/kernels/op_kinds.h"

namespace ember::kernels::cuda {

// As kernels::cpu::gemm, on ctx.cublas (bound to ctx.stream; its math mode, TF32 or not,
// is the caller's). Throws ember::CudaError on a cuBLAS failure.
// T: float (cublasSgemm; cuBLASLt with TF32 when ctx.allow_tf32), Half, BFloat16 (cuBLASLt,
// float accumulation; kernels/cublas/gemm_lt.h).
template <typename T>
void gemm(Context ctx, bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, T alpha,
          const T* a, int64_t lda, int64_t stride_a, const T* b, int64_t ldb, int64_t stride_b,
          T beta, T* c, int64_t ldc, int64_t stride_c, int64_t batch);

// As kernels::cpu::gemm_bias_act / gemm_bias_grad, through cuBLASLt's epilogues (BIAS,
// RELU_BIAS, GELU_BIAS, GELU_AUX_BIAS, BGRADB; kernels/cublas/gemm_lt.h), float32 in TF32
// when ctx.allow_tf32. Return false, having enqueued nothing, where cuBLASLt has no fused
// kernel for the case (and for k == 0, and `pre` other than GELU's with ldc a multiple
// of 8): the caller composes the op.
template <typename T>
bool gemm_bias_act(Context ctx, bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k,
                   const T* a, int64_t lda, const T* b, int64_t ldb, const T* bias,
                   GemmActivation act, T* c, int64_t ldc, T* pre);
template <typename T>
bool gemm_bias_grad(Context ctx, bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k,
                    const T* a, int64_t lda, const T* b, int64_t ldb, T* c, int64_t ldc,
                    T* bias_grad);

}  // namespace ember::kernels::cuda
