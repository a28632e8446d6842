// CPU GEMM through OpenBLAS (cblas), row-major, batched by a loop. The reference every
// GPU GEMM is tested against.
#include "ember/kernels/cpu/gemm.h"

#include <cblas.h>

#include <algorithm>
#include <limits>
#include <type_traits>
#include <vector>

#include "ember/core/base/error.h"
#include "ember/core/base/half.h"
#include "ember/kernels/elementwise_math.h"

namespace ember::kernels::cpu {

namespace {

// cblas takes blasint (32-bit in the usual OpenBLAS build); a silent truncation would
// multiply the wrong matrices, so anything that does not fit is refused.
blasint to_blas_int(int64_t v, const char* what) {
  EMBER_CHECK(v >= 0 && v <= std::numeric_limits<blasint>::max(), "gemm: ", what, " = ", v,
              " does not fit in the BLAS integer type (max ",
              std::numeric_limits<blasint>::max(), ")");
  return static_cast<blasint>(v);
}

void blas_gemm(CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, blasint m, blasint n, blasint k,
               float alpha, const float* a, blasint lda, const float* b, blasint ldb,
               float beta, float* c, blasint ldc) {
  cblas_sgemm(CblasRowMajor, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

void blas_gemm(CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, blasint m, blasint n, blasint k,
               double alpha, const double* a, blasint lda, const double* b, blasint ldb,
               double beta, double* c, blasint ldc) {
  cblas_dgemm(CblasRowMajor, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

// Half and BFloat16 have no BLAS routine: A, B (and C when beta reads it) are widened to
// float, multiplied by sgemm, and C is rounded once per element -- the same products and
// float sums a GPU's 16-bit GEMM with float accumulation computes. `epilogue(r, row)`, when
// given, sees each float row of C before it is rounded (gemm_bias_act's activation, applied
// in float as cuBLASLt's epilogue does).
struct NoEpilogue {
  void operator()(int64_t, float*) const {}
};

template <typename T, typename Epilogue = NoEpilogue>
void blas_gemm(CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, blasint m, blasint n, blasint k,
               float alpha, const T* a, blasint lda, const T* b, blasint ldb, float beta, T* c,
               blasint ldc, Epilogue epilogue = {}) {
  static_assert(is_reduced_float_v<T>);
  // The stored extent of a row-major matrix of `rows` rows of `cols` used columns.
  const auto widen = [](const T* p, int64_t rows, int64_t cols, int64_t ld) {
    std::vector<float> w(static_cast<size_t>(rows == 0 ? 0 : (rows - 1) * ld + cols));
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t j = 0; j < cols; ++j) w[r * ld + j] = static_cast<float>(p[r * ld + j]);
    }
    return w;
  };
  const std::vector<float> wa = widen(a, ta == CblasTrans ? k : m, ta == CblasTrans ? m : k, lda);
  const std::vector<float> wb = widen(b, tb == CblasTrans ? n : k, tb == CblasTrans ? k : n, ldb);
  std::vector<float> wc = beta != 0.0f ? widen(c, m, n, ldc)
                                       : std::vector<float>(static_cast<size_t>((m - 1) * ldc + n));
  cblas_sgemm(CblasRowMajor, ta, tb, m, n, k, alpha, wa.data(), lda, wb.data(), ldb, beta,
              wc.data(), ldc);
  for (int64_t r = 0; r < m; ++r) {
    epilogue(r, wc.data() + r * ldc);
    for (int64_t j = 0; j < n; ++j) c[r * ldc + j] = T(wc[r * ldc + j]);
  }
}

// k == 0: op(A) op(B) is an [m, n] matrix of zeros. BLAS semantics say C is not read
// when beta == 0, so NaN/garbage in an uninitialised output must not survive.
template <typename T>
void scale_c(int64_t m, int64_t n, T beta, T* c, int64_t ldc) {
  if (beta == T(1)) return;
  for (int64_t i = 0; i < m; ++i) {
    T* row = c + i * ldc;
    if (beta == T(0)) {
      for (int64_t j = 0; j < n; ++j) row[j] = T(0);
    } else {
      for (int64_t j = 0; j < n; ++j) row[j] *= beta;
    }
  }
}

}  // namespace

template <typename T>
void gemm(Context, bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, T alpha,
          const T* a, int64_t lda, int64_t stride_a, const T* b, int64_t ldb,
          int64_t stride_b, T beta, T* c, int64_t ldc, int64_t stride_c, int64_t batch) {
  EMBER_CHECK(m >= 0 && n >= 0 && k >= 0 && batch >= 0, "gemm: negative size (m = ", m,
              ", n = ", n, ", k = ", k, ", batch = ", batch, ")");
  if (m == 0 || n == 0 || batch == 0) return;
  EMBER_CHECK(ldc >= n, "gemm: ldc = ", ldc, " is smaller than the row length of C [", m,
              ", ", n, "]");
  // Overlapping outputs would make the batch order-dependent (and differ from cuBLAS).
  EMBER_CHECK(batch == 1 || stride_c >= (m - 1) * ldc + n, "gemm: stride_c = ", stride_c,
              " makes the ", batch, " outputs [", m, ", ", n, "] (ldc = ", ldc,
              ") overlap");

  if (k == 0) {
    for (int64_t i = 0; i < batch; ++i) scale_c(m, n, beta, c + i * stride_c, ldc);
    return;
  }

  // Stored shapes: A is [m, k] or, transposed, [k, m]; B is [k, n] or [n, k].
  const int64_t a_cols = trans_a ? m : k;
  const int64_t b_cols = trans_b ? k : n;
  EMBER_CHECK(lda >= a_cols, "gemm: lda = ", lda, " is smaller than the row length ",
              a_cols, " of A stored as [", trans_a ? k : m, ", ", a_cols, "]");
  EMBER_CHECK(ldb >= b_cols, "gemm: ldb = ", ldb, " is smaller than the row length ",
              b_cols, " of B stored as [", trans_b ? n : k, ", ", b_cols, "]");
  EMBER_CHECK(stride_a >= 0 && stride_b >= 0, "gemm: negative batch stride (stride_a = ",
              stride_a, ", stride_b = ", stride_b, ")");

  const blasint bm = to_blas_int(m, "m");
  const blasint bn = to_blas_int(n, "n");
  const blasint bk = to_blas_int(k, "k");
  const blasint blda = to_blas_int(lda, "lda");
  const blasint bldb = to_blas_int(ldb, "ldb");
  const blasint bldc = to_blas_int(ldc, "ldc");
  const CBLAS_TRANSPOSE ta = trans_a ? CblasTrans : CblasNoTrans;
  const CBLAS_TRANSPOSE tb = trans_b ? CblasTrans : CblasNoTrans;
  for (int64_t i = 0; i < batch; ++i) {
    if constexpr (is_reduced_float_v<T>) {
      blas_gemm(ta, tb, bm, bn, bk, static_cast<float>(alpha), a + i * stride_a, blda,
                b + i * stride_b, bldb, static_cast<float>(beta), c + i * stride_c, bldc);
    } else {
      blas_gemm(ta, tb, bm, bn, bk, alpha, a + i * stride_a, blda, b + i * stride_b, bldb,
                beta, c + i * stride_c, bldc);
    }
  }
}

template void gemm<float>(Context, bool, bool, int64_t, int64_t, int64_t, float,
                          const float*, int64_t, int64_t, const float*, int64_t, int64_t,
                          float, float*, int64_t, int64_t, int64_t);
template void gemm<double>(Context, bool, bool, int64_t, int64_t, int64_t, double,
                           const double*, int64_t, int64_t, const double*, int64_t, int64_t,
                           double, double*, int64_t, int64_t, int64_t);

template void gemm<Half>(Context, bool, bool, int64_t, int64_t, int64_t, Half, const Half*,
                         int64_t, int64_t, const Half*, int64_t, int64_t, Half, Half*, int64_t,
                         int64_t, int64_t);
template void gemm<BFloat16>(Context, bool, bool, int64_t, int64_t, int64_t, BFloat16,
                             const BFloat16*, int64_t, int64_t, const BFloat16*, int64_t,
                             int64_t, BFloat16, BFloat16*, int64_t, int64_t, int64_t);

namespace {

// The activation of gemm_bias_act on one row of n values in the compute type U (the
// elementwise functors of kernels/elementwise_math.h); `pre` (may be null) receives the
// values before it, rounded to T.
template <typename T, typename U>
void activate_row(GemmActivation act, U* row, int64_t n, T* pre) {
  if (pre != nullptr) {
    for (int64_t j = 0; j < n; ++j) pre[j] = T(row[j]);
  }
  if (act == GemmActivation::kNone) return;
  math::visit_unary<U>(unary_op_of(act), {}, [&](auto f) {
    for (int64_t j = 0; j < n; ++j) row[j] = f.forward(row[j]);
  });
}

}  // namespace

template <typename T>
bool gemm_bias_act(Context ctx, bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k,
                   const T* a, int64_t lda, const T* b, int64_t ldb, const T* bias,
                   GemmActivation act, T* c, int64_t ldc, T* pre) {
  EMBER_CHECK(m >= 0 && n >= 0 && k >= 0, "gemm_bias_act: negative size (m = ", m, ", n = ", n,
              ", k = ", k, ")");
  if (m == 0 || n == 0) return true;
  EMBER_CHECK(ldc >= n, "gemm_bias_act: ldc = ", ldc, " is smaller than the row length ", n);
  // C starts as the bias in every row and the product accumulates onto it (beta = 1), as
  // linear() always did: one rounding of product + bias, as in cuBLASLt's epilogue.
  for (int64_t r = 0; r < m; ++r) std::copy(bias, bias + n, c + r * ldc);
  if constexpr (is_reduced_float_v<T>) {
    if (k > 0) {
      const CBLAS_TRANSPOSE ta = trans_a ? CblasTrans : CblasNoTrans;
      const CBLAS_TRANSPOSE tb = trans_b ? CblasTrans : CblasNoTrans;
      EMBER_CHECK(lda >= (trans_a ? m : k) && ldb >= (trans_b ? k : n),
                  "gemm_bias_act: lda = ", lda, " or ldb = ", ldb, " is too small");
      blas_gemm(ta, tb, to_blas_int(m, "m"), to_blas_int(n, "n"), to_blas_int(k, "k"), 1.0f, a,
                to_blas_int(lda, "lda"), b, to_blas_int(ldb, "ldb"), 1.0f, c,
                to_blas_int(ldc, "ldc"), [&](int64_t r, float* row) {
                  activate_row(act, row, n, pre == nullptr ? nullptr : pre + r * ldc);
                });
      return true;
    }
    // k == 0: C is the bias; the activation is applied in float and rounded once.
    std::vector<float> row(static_cast<size_t>(n));
    for (int64_t r = 0; r < m; ++r) {
      for (int64_t j = 0; j < n; ++j) row[j] = static_cast<float>(c[r * ldc + j]);
      activate_row(act, row.data(), n, pre == nullptr ? nullptr : pre + r * ldc);
      for (int64_t j = 0; j < n; ++j) c[r * ldc + j] = T(row[j]);
    }
  } else {
    gemm(ctx, trans_a, trans_b, m, n, k, T(1), a, lda, 0, b, ldb, 0, T(1), c, ldc, 0, 1);
    for (int64_t r = 0; r < m; ++r) {
      activate_row(act, c + r * ldc, n, pre == nullptr ? nullptr : pre + r * ldc);
    }
  }
  return true;
}

template <typename T>
bool gemm_bias_grad(Context ctx, bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k,
                    const T* a, int64_t lda, const T* b, int64_t ldb, T* c, int64_t ldc,
                    T* bias_grad) {
  gemm(ctx, trans_a, trans_b, m, n, k, T(1), a, lda, 0, b, ldb, 0, T(0), c, ldc, 0, 1);
  // bias_grad[i] = sum over k of op(A)[i, :], accumulated in double and rounded once, as
  // the CPU sum kernels do (kernels/cpu/reduce.cpp: the same result as sum(dY, {0})). A is
  // stored [m, k] or, transposed, [k, m]: the loops walk its rows in memory order.
  using U = double;
  std::vector<U> acc(static_cast<size_t>(m), U(0));
  for (int64_t kk = 0; kk < k; ++kk) {
    for (int64_t i = 0; i < m; ++i) {
      acc[i] += static_cast<U>(trans_a ? a[kk * lda + i] : a[i * lda + kk]);
    }
  }
  for (int64_t i = 0; i < m; ++i) bias_grad[i] = T(acc[i]);
  return true;
}

#define EMBER_CPU_GEMM_EPILOGUE_INSTANTIATE(T)                                                  \
  template bool gemm_bias_act<T>(Context, bool, bool, int64_t, int64_t, int64_t, const T*,     \
                                 int64_t, const T*, int64_t, const T*, GemmActivation, T*,     \
                                 int64_t, T*);                                                 \
  template bool gemm_bias_grad<T>(Context, bool, bool, int64_t, int64_t, int64_t, const T*,    \
                                  int64_t, const T*, int64_t, T*, int64_t, T*);
EMBER_CPU_GEMM_EPILOGUE_INSTANTIATE(float)
EMBER_CPU_GEMM_EPILOGUE_INSTANTIATE(double)
EMBER_CPU_GEMM_EPILOGUE_INSTANTIATE(Half)
EMBER_CPU_GEMM_EPILOGUE_INSTANTIATE(BFloat16)
#undef EMBER_CPU_GEMM_EPILOGUE_INSTANTIATE

}  // namespace ember::kernels::cpu
