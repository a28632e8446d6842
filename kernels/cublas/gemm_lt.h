// GEMM through cuBLASLt with the row-major contract of kernels/cpu/gemm.h: float16 and
// bfloat16 operands accumulating in float (CUBLAS_COMPUTE_32F), and float32 with TF32
// tensor cores (CUBLAS_COMPUTE_32F_FAST_TF32). kernels::cuda::gemm (kernels/cuda/gemm.cuh)
// runs it for those; float32 without TF32 stays on cublasSgemm (kernels/cublas/gemm.h).
#pragma once

#include <cublasLt.h>

#include <cstddef>
#include <cstdint>

namespace ember::kernels::cublas {

// The fused epilogues cuBLASLt applies on the way out. In the row-major terms of this file:
//  - kBias, kBiasRelu, kBiasGelu: C = act(op(A) op(B) + bias), bias[n] one value per column
//    of C (per output feature of a linear layer); cuBLASLt's GELU is the tanh approximation.
//  - kBiasGeluAux: as kBiasGelu, and `aux` [m, n] (row stride aux_ld, a multiple of 8)
//    receives op(A) op(B) + bias before the GELU (what its backward needs).
//  - kBiasGradA: C = op(A) op(B), and `bias` receives the sum of op(A) over k (length m):
//    with A = dY^T, the bias gradient beside the weight gradient. (cuBLASLt's BGRADB: in the
//    column-major mapping our A is its B.)
enum class LtEpilogue { kNone, kBias, kBiasRelu, kBiasGelu, kBiasGeluAux, kBiasGradA };

// What a call asks of cuBLASLt besides the product: the epilogue and its vectors, the
// math (float32: TF32 tensor cores or full float32; 16-bit types always accumulate in
// float), and the workspace (may be null when workspace_bytes is 0), which limits the
// algorithms the heuristic may pick.
template <typename T>
struct LtOptions {
  LtEpilogue epilogue = LtEpilogue::kNone;
  T* bias = nullptr;  // read by kBias*, written by kBiasGradA
  T* aux = nullptr;   // kBiasGeluAux only
  int64_t aux_ld = 0;
  bool allow_tf32 = true;  // float32 only
  void* workspace = nullptr;
  size_t workspace_bytes = 0;
};

// C = alpha op(A) op(B) + beta C (+ epilogue), row-major, as kernels::cpu::gemm; T: float,
// Half, BFloat16. alpha and beta are float for every T. The matmul descriptors, layouts and
// the heuristic's algorithm are cached per (device, dtype, math, shape, strides, pointer
// alignments, epilogue) in a bounded LRU cache (Note [Bounded plan caches] in
// kernels/cudnn/plan_cache.h explains the bound). The heuristic is told how the operands
// are aligned (a view may start anywhere), as PyTorch does. The stream is the one `handle`
// is bound to. Returns false, having enqueued nothing, when an epilogue other than kNone
// has no algorithm for the case (the caller composes the op instead); throws
// ember::CudaError on a cuBLASLt failure and when kNone has no algorithm.
template <typename T>
bool gemm_lt(cublasHandle_t handle, bool trans_a, bool trans_b, int64_t m, int64_t n,
             int64_t k, float alpha, const T* a, int64_t lda, int64_t stride_a, const T* b,
             int64_t ldb, int64_t stride_b, float beta, T* c, int64_t ldc, int64_t stride_c,
             int64_t batch, const LtOptions<T>& options = {});

// Entries currently held by the descriptor cache (tests check its bound).
size_t gemm_lt_cached_plans();

}  // namespace ember::kernels::cublas
