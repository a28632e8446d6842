// CUDA GEMM (float), the twin of kernels/cpu/gemm.h with the same row-major contract:
// cuBLAS on the context's handle (kernels/cublas/gemm.h does the mapping to column-major).
#pragma once

#include <cstdint>

#include "ember/kernels/context.h"

namespace ember::kernels::cuda {

// As kernels::cpu::gemm, on ctx.cublas (bound to ctx.stream; its math mode, TF32 or not,
// is the caller's). Throws ember::CudaError on a cuBLAS failure.
void gemm(Context ctx, bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k,
          float alpha, const float* a, int64_t lda, int64_t stride_a, const float* b,
          int64_t ldb, int64_t stride_b, float beta, float* c, int64_t ldc, int64_t stride_c,
          int64_t batch);

}  // namespace ember::kernels::cuda
