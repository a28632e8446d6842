// kernels/cpu/gemm (OpenBLAS) against a naive triple loop in double: transposes, padded
// leading dimensions, broadcast batches and the empty-size edge cases.
#include "ember/kernels/cpu/gemm.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "ember/core/base/error.h"

namespace {

using ember::kernels::cpu::gemm;

// Relative tolerance against the double reference, stated once per dtype.
template <typename T> constexpr double kTol = 0;
template <> constexpr double kTol<float> = 2.5e-7;  // about 2 ulp per accumulated term
template <> constexpr double kTol<double> = 5e-16;

struct Case {
  bool ta = false, tb = false;
  int64_t m = 0, n = 0, k = 0;
  int64_t lda_pad = 0, ldb_pad = 0, ldc_pad = 0;  // extra columns past the row length
  int64_t batch = 1;
  bool broadcast_a = false, broadcast_b = false;  // stride 0
  double alpha = 1, beta = 0;
};

// Runs `gemm` on random data and compares every element of C (padding included: the
// padding must be left untouched) with a double-precision triple loop.
template <typename T>
void check_case(const Case& cs, uint32_t seed = 1) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<double> dist(-1.0, 1.0);
  const int64_t a_rows = cs.ta ? cs.k : cs.m, a_cols = cs.ta ? cs.m : cs.k;
  const int64_t b_rows = cs.tb ? cs.n : cs.k, b_cols = cs.tb ? cs.k : cs.n;
  const int64_t lda = a_cols + cs.lda_pad, ldb = b_cols + cs.ldb_pad, ldc = cs.n + cs.ldc_pad;
  const int64_t a_size = a_rows * lda, b_size = b_rows * ldb, c_size = cs.m * ldc;
  const int64_t stride_a = cs.broadcast_a ? 0 : a_size;
  const int64_t stride_b = cs.broadcast_b ? 0 : b_size;
  const int64_t stride_c = c_size;
  std::vector<T> a(std::max<int64_t>(1, cs.broadcast_a ? a_size : a_size * cs.batch));
  std::vector<T> b(std::max<int64_t>(1, cs.broadcast_b ? b_size : b_size * cs.batch));
  std::vector<T> c(std::max<int64_t>(1, c_size * cs.batch));
  for (auto& v : a) v = static_cast<T>(dist(rng));
  for (auto& v : b) v = static_cast<T>(dist(rng));
  for (auto& v : c) v = static_cast<T>(dist(rng));
  const std::vector<T> c0 = c;

  gemm<T>({}, cs.ta, cs.tb, cs.m, cs.n, cs.k, static_cast<T>(cs.alpha), a.data(), lda, stride_a,
          b.data(), ldb, stride_b, static_cast<T>(cs.beta), c.data(), ldc, stride_c,
          cs.batch);

  for (int64_t p = 0; p < cs.batch; ++p) {
    const T* ap = a.data() + p * stride_a;
    const T* bp = b.data() + p * stride_b;
    for (int64_t i = 0; i < cs.m; ++i) {
      for (int64_t j = 0; j < ldc; ++j) {
        const int64_t idx = p * stride_c + i * ldc + j;
        if (j >= cs.n) {
          ASSERT_EQ(c[idx], c0[idx]) << "padding of C was written at batch " << p << " row "
                                     << i << " col " << j;
          continue;
        }
        double acc = 0, mag = 0;
        for (int64_t l = 0; l < cs.k; ++l) {
          const double av = cs.ta ? ap[l * lda + i] : ap[i * lda + l];
          const double bv = cs.tb ? bp[j * ldb + l] : bp[l * ldb + j];
          acc += av * bv;
          mag += std::abs(av * bv);
        }
        const double want = cs.alpha * acc + (cs.beta == 0 ? 0.0 : cs.beta * c0[idx]);
        const double scale = std::abs(cs.alpha) * mag + std::abs(cs.beta * c0[idx]) + 1;
        ASSERT_NEAR(c[idx], want, kTol<T> * scale * (cs.k + 1))
            << "batch " << p << " C[" << i << ", " << j << "] m=" << cs.m << " n=" << cs.n
            << " k=" << cs.k << " ta=" << cs.ta << " tb=" << cs.tb;
      }
    }
  }
}

template <typename T>
class GemmCpu : public ::testing::Test {};
using GemmTypes = ::testing::Types<float, double>;
TYPED_TEST_SUITE(GemmCpu, GemmTypes);

TYPED_TEST(GemmCpu, AllTransposeCombinationsMatchReference) {
  for (bool ta : {false, true}) {
    for (bool tb : {false, true}) {
      Case cs;
      cs.ta = ta;
      cs.tb = tb;
      cs.m = 7;
      cs.n = 5;
      cs.k = 11;
      check_case<TypeParam>(cs);
    }
  }
}

TYPED_TEST(GemmCpu, NonSquareWithAlphaAndBeta) {
  Case cs;
  cs.m = 33;
  cs.n = 1;
  cs.k = 65;
  cs.alpha = -0.5;
  cs.beta = 2.0;
  check_case<TypeParam>(cs);
  cs.m = 1;
  cs.n = 40;
  cs.k = 3;
  cs.ta = true;
  check_case<TypeParam>(cs);
}

TYPED_TEST(GemmCpu, LeadingDimensionsLargerThanRowLength) {
  for (bool ta : {false, true}) {
    for (bool tb : {false, true}) {
      Case cs;
      cs.ta = ta;
      cs.tb = tb;
      cs.m = 6;
      cs.n = 9;
      cs.k = 4;
      cs.lda_pad = 3;
      cs.ldb_pad = 5;
      cs.ldc_pad = 2;
      cs.beta = 0.5;
      check_case<TypeParam>(cs);
    }
  }
}

TYPED_TEST(GemmCpu, BatchedWithStrides) {
  Case cs;
  cs.m = 4;
  cs.n = 3;
  cs.k = 5;
  cs.batch = 3;
  cs.tb = true;
  cs.ldc_pad = 1;
  check_case<TypeParam>(cs);
}

TYPED_TEST(GemmCpu, BatchedStrideZeroBroadcasts) {
  Case cs;
  cs.m = 5;
  cs.n = 6;
  cs.k = 7;
  cs.batch = 4;
  cs.broadcast_b = true;  // a weight shared by every batch entry
  check_case<TypeParam>(cs);
  cs.broadcast_b = false;
  cs.broadcast_a = true;
  cs.ta = true;
  check_case<TypeParam>(cs);
}

TYPED_TEST(GemmCpu, KZeroScalesCByBeta) {
  using T = TypeParam;
  std::vector<T> c = {1, 2, 3, 4, 5, 6, 99};  // [2, 3] with ldc 3, then a sentinel
  gemm<T>({}, false, false, 2, 3, 0, T(1), nullptr, 1, 0, nullptr, 3, 0, T(2), c.data(), 3, 6,
          1);
  EXPECT_EQ(c, (std::vector<T>{2, 4, 6, 8, 10, 12, 99}));
  gemm<T>({}, false, false, 2, 3, 0, T(1), nullptr, 1, 0, nullptr, 3, 0, T(1), c.data(), 3, 6,
          1);
  EXPECT_EQ(c, (std::vector<T>{2, 4, 6, 8, 10, 12, 99}));
}

TYPED_TEST(GemmCpu, KZeroWithBetaZeroOverwritesNaN) {
  using T = TypeParam;
  const T nan = std::numeric_limits<T>::quiet_NaN();
  // Two batch entries [2, 2] with ldc 3: the padding column stays NaN.
  std::vector<T> c(12, nan);
  gemm<T>({}, true, true, 2, 2, 0, T(1), nullptr, 2, 0, nullptr, 1, 0, T(0), c.data(), 3, 6, 2);
  for (int64_t p = 0; p < 2; ++p) {
    for (int64_t i = 0; i < 2; ++i) {
      for (int64_t j = 0; j < 3; ++j) {
        const T v = c[p * 6 + i * 3 + j];
        if (j < 2) {
          EXPECT_EQ(v, T(0));
        } else {
          EXPECT_TRUE(std::isnan(v));
        }
      }
    }
  }
}

TYPED_TEST(GemmCpu, BetaZeroIgnoresNaNInC) {
  using T = TypeParam;
  const T nan = std::numeric_limits<T>::quiet_NaN();
  std::vector<T> a = {1, 2, 3, 4, 5, 6};  // [2, 3]
  std::vector<T> b = {1, 0, 0, 1, 1, 1};  // [3, 2]
  std::vector<T> c(4, nan);
  gemm<T>({}, false, false, 2, 2, 3, T(1), a.data(), 3, 0, b.data(), 2, 0, T(0), c.data(), 2,
          0, 1);
  EXPECT_EQ(c, (std::vector<T>{4, 5, 10, 11}));
}

TYPED_TEST(GemmCpu, EmptyMOrNDoesNothing) {
  using T = TypeParam;
  std::vector<T> c = {7, 7, 7};
  gemm<T>({}, false, false, 0, 3, 4, T(1), nullptr, 4, 0, nullptr, 3, 0, T(0), c.data(), 3, 0,
          1);
  gemm<T>({}, false, false, 3, 0, 4, T(1), nullptr, 4, 0, nullptr, 1, 0, T(0), c.data(), 1, 0,
          1);
  gemm<T>({}, false, false, 1, 3, 4, T(1), nullptr, 4, 0, nullptr, 3, 0, T(0), c.data(), 3, 0,
          0);
  EXPECT_EQ(c, (std::vector<T>{7, 7, 7}));
}

TEST(GemmCpuErrors, SizeBeyondBlasIntThrows) {
  std::vector<float> a(1), b(1), c(1);
  const int64_t huge = int64_t{1} << 40;
  try {
    gemm<float>({}, false, false, 1, 1, huge, 1.0f, a.data(), huge, 0, b.data(), 1, 0, 0.0f,
                c.data(), 1, 0, 1);
    FAIL() << "expected ember::Error";
  } catch (const ember::Error& e) {
    EXPECT_NE(std::string(e.what()).find("k = 1099511627776"), std::string::npos) << e.what();
  }
}

TEST(GemmCpuErrors, LeadingDimensionTooSmallThrows) {
  std::vector<float> a(64), b(64), c(64);
  EXPECT_THROW(gemm<float>({}, false, false, 4, 4, 4, 1.0f, a.data(), 3, 0, b.data(), 4, 0,
                           0.0f, c.data(), 4, 0, 1),
               ember::Error);
  EXPECT_THROW(gemm<float>({}, false, true, 4, 4, 5, 1.0f, a.data(), 5, 0, b.data(), 4, 0, 0.0f,
                           c.data(), 4, 0, 1),
               ember::Error);
  EXPECT_THROW(gemm<float>({}, false, false, 4, 4, 4, 1.0f, a.data(), 4, 0, b.data(), 4, 0,
                           0.0f, c.data(), 3, 0, 1),
               ember::Error);
}

TEST(GemmCpuErrors, OverlappingBatchOutputsThrow) {
  std::vector<float> a(16), b(16), c(16);
  EXPECT_THROW(gemm<float>({}, false, false, 2, 2, 2, 1.0f, a.data(), 2, 4, b.data(), 2, 4,
                           0.0f, c.data(), 2, 0, 2),
               ember::Error);
}

}  // namespace
