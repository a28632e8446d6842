// GEMM through cuBLASLt with the row-major contract of kernels/cpu/gemm.h: float16 and
// bfloat16 operands accumulating in float (CUBLAS_COMPUTE_32F), and float32 with TF32
// tensor cores (CUBLAS_COMPUTE_32F_FAST_TF32). kernels::cuda::gemm (kernels/cuda/gemm.cuh)
// runs it for those; float32 without TF32 stays on cublasSgemm (kernels/cublas/gemm.h).
#pragma once

#include <cublasLt.h>

#include <cstddef>
#include <cstdint>

namespace ember::kernels::cublas {

// The fused epilogues cuBLASLt applies on the way out (bias: one value per column of the
// row-major C, i.e. per output feature of a linear layer).
enum class LtEpilogue { kNone, kBias, kBiasRelu, kBiasGelu };

// C = alpha op(A) op(B) + beta C (+ epilogue), row-major, as kernels::cpu::gemm; T: float
// (then TF32), Half, BFloat16. alpha and beta are float for every T. The matmul
// descriptors, layouts and the heuristic's algorithm are cached per (device, dtype,
// shape, strides, epilogue) in a bounded LRU cache (Note [Bounded plan caches] in
// kernels/cudnn/plan_cache.h explains the bound). `workspace` (may be null when
// workspace_bytes is 0) limits the algorithms the heuristic may pick. The stream is the
// one `handle` is bound to. Throws ember::CudaError on a cuBLASLt failure.
template <typename T>
void gemm_lt(cublasHandle_t handle, bool trans_a, bool trans_b, int64_t m, int64_t n,
             int64_t k, float alpha, const T* a, int64_t lda, int64_t stride_a, const T* b,
             int64_t ldb, int64_t stride_b, float beta, T* c, int64_t ldc, int64_t stride_c,
             int64_t batch, LtEpilogue epilogue = LtEpilogue::kNone, const T* bias = nullptr,
             void* workspace = nullptr, size_t workspace_bytes = 0);

// Entries currently held by the descriptor cache (tests check its bound).
size_t gemm_lt_cached_plans();

}  // namespace ember::kernels::cublas
