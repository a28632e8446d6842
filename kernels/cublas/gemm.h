// GEMM through cuBLAS (float), with the same row-major contract as kernels/cpu/gemm.h.
// Row-major is mapped onto column-major cuBLAS by computing C^T = op(B)^T op(A)^T. Core
// calls the twin kernels::cuda::gemm (kernels/cuda/gemm.cuh), which runs this.
#pragma once

#include <cublas_v2.h>

#include <cstdint>

namespace ember::kernels::cublas {

// batch == 1 -> cublasSgemm; batch > 1 -> cublasSgemmStridedBatched. The handle is
// already bound to the caller's stream. Throws ember::CudaError (via EMBER_CUBLAS_CHECK)
// on failure.
void gemm(cublasHandle_t handle, bool trans_a, bool trans_b, int64_t m, int64_t n,
          int64_t k, float alpha, const float* a, int64_t lda, int64_t stride_a,
          const float* b, int64_t ldb, int64_t stride_b, float beta, float* c,
          int64_t ldc, int64_t stride_c, int64_t batch);

}  // namespace ember::kernels::cublas
