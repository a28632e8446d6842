// CPU GEMM through OpenBLAS (cblas), row-major. Reference for its CUDA twin
// (kernels/cuda/gemm.cuh, cuBLAS).
#pragma once

#include <cstdint>

#include "ember/kernels/context.h"

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

}  // namespace ember::kernels::cpu
