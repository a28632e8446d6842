// CUDA GEMM (float, float16, bfloat16), the twin of kernels/cpu/gemm.h with the same row-major
// contract: cuBLAS on the context's handle (kernels/cublas/gemm.h does the mapping to
// column-major).
#pragma once

#include <cstdint>

#include "ember/kernels/context.h"

namespace ember::kernels::cuda {

// As kernels::cpu::gemm, on ctx.cublas (bound to ctx.stream; its math mode, TF32 or not,
// is the caller's). Throws ember::CudaError on a cuBLAS failure.
// T: float (cublasSgemm; cuBLASLt with TF32 when ctx.allow_tf32), Half, BFloat16 (cuBLASLt,
// float accumulation; kernels/cublas/gemm_lt.h).
template <typename T>
void gemm(Context ctx, bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, T alpha,
          const T* a, int64_t lda, int64_t stride_a, const T* b, int64_t ldb, int64_t stride_b,
          T beta, T* c, int64_t ldc, int64_t stride_c, int64_t batch);

}  // namespace ember::kernels::cuda
