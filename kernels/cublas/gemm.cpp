// Row-major GEMM on cuBLAS (float; float16 / bfloat16 and TF32 through cuBLASLt) (column-major) via
// C^T = op(B)^T op(A)^T; same contract and same edge cases (k == 0, empty sizes) as
// kernels/cpu/gemm.cpp. Also the CUDA twin kernels::cuda::gemm.
#include "ember/kernels/cublas/gemm.h"

#include <cuda_runtime_api.h>

#include <limits>
#include <type_traits>

#include "ember/core/base/cuda_check.h"
#include "ember/core/base/error.h"
#include "ember/core/base/half.h"
#include "ember/kernels/cublas/gemm_lt.h"
#include "ember/kernels/cuda/gemm.cuh"

namespace ember::kernels::cublas {

namespace {

int to_cublas_int(int64_t v, const char* what) {
  EMBER_CHECK(v >= 0 && v <= std::numeric_limits<int>::max(), "gemm (cuBLAS): ", what,
              " = ", v, " does not fit in int (max ", std::numeric_limits<int>::max(), ")");
  return static_cast<int>(v);
}

// alpha and beta arrive by value, so they must be read as host pointers whatever mode
// the caller left the handle in; the caller's mode is restored on the way out.
class HostPointerMode {
 public:
  explicit HostPointerMode(cublasHandle_t handle) : handle_(handle) {
    EMBER_CUBLAS_CHECK(cublasGetPointerMode(handle_, &saved_));
    if (saved_ != CUBLAS_POINTER_MODE_HOST) {
      EMBER_CUBLAS_CHECK(cublasSetPointerMode(handle_, CUBLAS_POINTER_MODE_HOST));
    }
  }
  ~HostPointerMode() {
    if (saved_ != CUBLAS_POINTER_MODE_HOST) cublasSetPointerMode(handle_, saved_);
  }
  HostPointerMode(const HostPointerMode&) = delete;
  HostPointerMode& operator=(const HostPointerMode&) = delete;

 private:
  cublasHandle_t handle_;
  cublasPointerMode_t saved_ = CUBLAS_POINTER_MODE_HOST;
};

// x *= alpha on `count` elements: cublasSscal for float, cublasScalEx computing in float
// for float16 / bfloat16.
template <typename T>
cublasStatus_t scal(cublasHandle_t handle, int count, float alpha, T* x, int inc) {
  if constexpr (std::is_same_v<T, float>) {
    return cublasSscal(handle, count, &alpha, x, inc);
  } else {
    const cudaDataType_t type = std::is_same_v<T, Half> ? CUDA_R_16F : CUDA_R_16BF;
    return cublasScalEx(handle, count, &alpha, CUDA_R_32F, x, type, inc, CUDA_R_32F);
  }
}

// Note [GEMM with k == 0]
// op(A) op(B) is then an [m, n] zero matrix and the result is C = beta * C, with
// beta == 0 meaning "write zeros, never read C" (NaN in an uninitialised output must not
// survive). cuBLAS does not document what it does for k == 0 and some GPU BLAS
// libraries return early, so it is done here: a 2-D memset for beta == 0, cublasSscal
// otherwise (cublasScalEx for 16-bit C), all on the handle's stream.
template <typename T>
void scale_c(cublasHandle_t handle, int64_t m, int64_t n, float beta, T* c, int64_t ldc,
             int64_t stride_c, int64_t batch) {
  if (beta == 1.0f) return;
  cudaStream_t stream = nullptr;
  EMBER_CUBLAS_CHECK(cublasGetStream(handle, &stream));
  if (beta == 0.0f) {
    // One plain memset when the whole batch is one contiguous block.
    if (ldc == n && (batch == 1 || stride_c == m * n)) {
      EMBER_CUDA_CHECK(cudaMemsetAsync(c, 0, m * n * batch * sizeof(T), stream));
      return;
    }
    for (int64_t i = 0; i < batch; ++i) {
      EMBER_CUDA_CHECK(cudaMemset2DAsync(c + i * stride_c, ldc * sizeof(T), 0,
                                         n * sizeof(T), m, stream));
    }
    return;
  }
  // Scale contiguous runs: the whole matrix when rows are packed, else row by row or
  // column by column (strided), whichever takes fewer calls.
  // m, n and ldc were checked to fit in int by the caller.
  const bool one_run = ldc == n && m * n <= std::numeric_limits<int>::max();
  for (int64_t i = 0; i < batch; ++i) {
    T* ci = c + i * stride_c;
    if (one_run) {
      EMBER_CUBLAS_CHECK(scal(handle, static_cast<int>(m * n), beta, ci, 1));
    } else if (m <= n) {
      for (int64_t r = 0; r < m; ++r) {
        EMBER_CUBLAS_CHECK(scal(handle, static_cast<int>(n), beta, ci + r * ldc, 1));
      }
    } else {
      for (int64_t col = 0; col < n; ++col) {
        EMBER_CUBLAS_CHECK(scal(handle, static_cast<int>(m), beta, ci + col,
                                static_cast<int>(ldc)));
      }
    }
  }
}

}  // namespace

// For the CUDA twin's 16-bit k == 0 case (same file).
class HostPointerModeGuard {
 public:
  explicit HostPointerModeGuard(cublasHandle_t handle) : mode_(handle) {}

 private:
  HostPointerMode mode_;
};

template <typename T>
void scale_c_any(cublasHandle_t handle, int64_t m, int64_t n, float beta, T* c, int64_t ldc,
                 int64_t stride_c, int64_t batch) {
  EMBER_CHECK(ldc >= n, "gemm (cuBLAS): ldc = ", ldc, " is smaller than the row length of C [",
              m, ", ", n, "]");
  scale_c(handle, m, n, beta, c, ldc, stride_c, batch);
}

void gemm(cublasHandle_t handle, bool trans_a, bool trans_b, int64_t m, int64_t n,
          int64_t k, float alpha, const float* a, int64_t lda, int64_t stride_a,
          const float* b, int64_t ldb, int64_t stride_b, float beta, float* c,
          int64_t ldc, int64_t stride_c, int64_t batch) {
  EMBER_CHECK(m >= 0 && n >= 0 && k >= 0 && batch >= 0, "gemm (cuBLAS): negative size (m = ",
              m, ", n = ", n, ", k = ", k, ", batch = ", batch, ")");
  if (m == 0 || n == 0 || batch == 0) return;
  EMBER_CHECK(ldc >= n, "gemm (cuBLAS): ldc = ", ldc, " is smaller than the row length of C [",
              m, ", ", n, "]");
  // Overlapping outputs are undefined for strided-batched cuBLAS.
  EMBER_CHECK(batch == 1 || stride_c >= (m - 1) * ldc + n, "gemm (cuBLAS): stride_c = ",
              stride_c, " makes the ", batch, " outputs [", m, ", ", n, "] (ldc = ", ldc,
              ") overlap");
  const int im = to_cublas_int(m, "m");
  const int in = to_cublas_int(n, "n");
  const int ildc = to_cublas_int(ldc, "ldc");
  HostPointerMode host_mode(handle);

  if (k == 0) {  // See Note [GEMM with k == 0].
    scale_c(handle, m, n, beta, c, ldc, stride_c, batch);
    return;
  }

  const int64_t a_cols = trans_a ? m : k;
  const int64_t b_cols = trans_b ? k : n;
  EMBER_CHECK(lda >= a_cols, "gemm (cuBLAS): lda = ", lda, " is smaller than the row length ",
              a_cols, " of A stored as [", trans_a ? k : m, ", ", a_cols, "]");
  EMBER_CHECK(ldb >= b_cols, "gemm (cuBLAS): ldb = ", ldb, " is smaller than the row length ",
              b_cols, " of B stored as [", trans_b ? n : k, ", ", b_cols, "]");
  EMBER_CHECK(stride_a >= 0 && stride_b >= 0,
              "gemm (cuBLAS): negative batch stride (stride_a = ", stride_a,
              ", stride_b = ", stride_b, ")");
  const int ik = to_cublas_int(k, "k");
  const int ilda = to_cublas_int(lda, "lda");
  const int ildb = to_cublas_int(ldb, "ldb");
  const int ibatch = to_cublas_int(batch, "batch");

  // A row-major [r, c] matrix with row stride ld is the column-major [c, r] matrix with
  // leading dimension ld, i.e. its transpose. So the row-major C = op(A) op(B) is the
  // column-major C^T = op(B)^T op(A)^T: B goes first, m and n swap, and each operand keeps
  // its own transpose flag.
  const cublasOperation_t op_a = trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
  const cublasOperation_t op_b = trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
  if (batch == 1) {
    EMBER_CUBLAS_CHECK(cublasSgemm(handle, op_b, op_a, in, im, ik, &alpha, b, ildb, a, ilda,
                                   &beta, c, ildc));
  } else {
    EMBER_CUBLAS_CHECK(cublasSgemmStridedBatched(handle, op_b, op_a, in, im, ik, &alpha, b,
                                                 ildb, stride_b, a, ilda, stride_a, &beta, c,
                                                 ildc, stride_c, ibatch));
  }
}

}  // namespace ember::kernels::cublas

namespace ember::kernels::cuda {

// float32 without TF32: cublasSgemm as before. float32 with ctx.allow_tf32, float16 and
// bfloat16: cuBLASLt (kernels/cublas/gemm_lt.h), computing in float; k == 0 and empty
// products are settled here as in Note [GEMM with k == 0].
template <typename T>
void gemm(Context ctx, bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, T alpha,
          const T* a, int64_t lda, int64_t stride_a, const T* b, int64_t ldb, int64_t stride_b,
          T beta, T* c, int64_t ldc, int64_t stride_c, int64_t batch) {
  EMBER_INTERNAL_ASSERT(ctx.cublas != nullptr, "gemm (CUDA): the context has no cuBLAS handle");
  if constexpr (std::is_same_v<T, float>) {
    if (!ctx.allow_tf32 || m == 0 || n == 0 || k == 0 || batch == 0) {
      cublas::gemm(ctx.cublas, trans_a, trans_b, m, n, k, alpha, a, lda, stride_a, b, ldb,
                   stride_b, beta, c, ldc, stride_c, batch);
      return;
    }
  } else {
    EMBER_CHECK(m >= 0 && n >= 0 && k >= 0 && batch >= 0,
                "gemm (cuBLASLt): negative size (m = ", m, ", n = ", n, ", k = ", k,
                ", batch = ", batch, ")");
    if (m == 0 || n == 0 || batch == 0) return;
    if (k == 0) {  // See Note [GEMM with k == 0].
      cublas::HostPointerModeGuard host_mode(ctx.cublas);
      cublas::scale_c_any(ctx.cublas, m, n, static_cast<float>(beta), c, ldc, stride_c, batch);
      return;
    }
  }
  (void)cublas::gemm_lt<T>(ctx.cublas, trans_a, trans_b, m, n, k, static_cast<float>(alpha), a,
                           lda, stride_a, b, ldb, stride_b, static_cast<float>(beta), c, ldc,
                           stride_c, batch, {.allow_tf32 = ctx.allow_tf32});
}

// Note [Fused linear] in core/ops/linalg.cpp: one cuBLASLt call with the epilogue, float32
// in TF32 or full float32 as ctx.allow_tf32 says. false (nothing enqueued) when cuBLASLt
// has no fused kernel for the case, when k == 0, or when `pre` is asked for other than
// GELU's aux output with a row stride cuBLASLt takes.
template <typename T>
bool gemm_bias_act(Context ctx, bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k,
                   const T* a, int64_t lda, const T* b, int64_t ldb, const T* bias,
                   GemmActivation act, T* c, int64_t ldc, T* pre) {
  EMBER_INTERNAL_ASSERT(ctx.cublas != nullptr, "gemm (CUDA): the context has no cuBLAS handle");
  EMBER_CHECK(m >= 0 && n >= 0 && k >= 0, "gemm_bias_act (CUDA): negative size (m = ", m,
              ", n = ", n, ", k = ", k, ")");
  if (m == 0 || n == 0) return true;
  if (k == 0) return false;
  cublas::LtOptions<T> o;
  o.bias = const_cast<T*>(bias);  // read only: cuBLASLt's bias pointer is not const
  o.allow_tf32 = ctx.allow_tf32;
  switch (act) {
    case GemmActivation::kNone: o.epilogue = cublas::LtEpilogue::kBias; break;
    case GemmActivation::kRelu: o.epilogue = cublas::LtEpilogue::kBiasRelu; break;
    case GemmActivation::kGeluTanh: o.epilogue = cublas::LtEpilogue::kBiasGelu; break;
  }
  if (pre != nullptr) {
    if (act != GemmActivation::kGeluTanh || ldc % 8 != 0) return false;
    o.epilogue = cublas::LtEpilogue::kBiasGeluAux;
    o.aux = pre;
    o.aux_ld = ldc;
  }
  return cublas::gemm_lt<T>(ctx.cublas, trans_a, trans_b, m, n, k, 1.0f, a, lda, 0, b, ldb, 0,
                            0.0f, c, ldc, 0, 1, o);
}

// The weight gradient with the bias gradient in its epilogue (cuBLASLt's BGRADB); false
// when cuBLASLt has none for the case or the product is empty.
template <typename T>
bool gemm_bias_grad(Context ctx, bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k,
                    const T* a, int64_t lda, const T* b, int64_t ldb, T* c, int64_t ldc,
                    T* bias_grad) {
  EMBER_INTERNAL_ASSERT(ctx.cublas != nullptr, "gemm (CUDA): the context has no cuBLAS handle");
  EMBER_CHECK(m >= 0 && n >= 0 && k >= 0, "gemm_bias_grad (CUDA): negative size (m = ", m,
              ", n = ", n, ", k = ", k, ")");
  if (m == 0 || n == 0 || k == 0) return false;
  cublas::LtOptions<T> o;
  o.epilogue = cublas::LtEpilogue::kBiasGradA;
  o.bias = bias_grad;
  o.allow_tf32 = ctx.allow_tf32;
  return cublas::gemm_lt<T>(ctx.cublas, trans_a, trans_b, m, n, k, 1.0f, a, lda, 0, b, ldb, 0,
                            0.0f, c, ldc, 0, 1, o);
}

#define EMBER_CUDA_GEMM_INSTANTIATE(T)                                                        \
  template void gemm<T>(Context, bool, bool, int64_t, int64_t, int64_t, T, const T*, int64_t, \
                        int64_t, const T*, int64_t, int64_t, T, T*, int64_t, int64_t, int64_t); \
  template bool gemm_bias_act<T>(Context, bool, bool, int64_t, int64_t, int64_t, const T*,    \
                                 int64_t, const T*, int64_t, const T*, GemmActivation, T*,    \
                                 int64_t, T*);                                                \
  template bool gemm_bias_grad<T>(Context, bool, bool, int64_t, int64_t, int64_t, const T*,   \
                                  int64_t, const T*, int64_t, T*, int64_t, T*);
EMBER_CUDA_GEMM_INSTANTIATE(float)
EMBER_CUDA_GEMM_INSTANTIATE(Half)
EMBER_CUDA_GEMM_INSTANTIATE(BFloat16)
#undef EMBER_CUDA_GEMM_INSTANTIATE

}  // namespace ember::kernels::cuda
