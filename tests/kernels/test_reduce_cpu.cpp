// CPU reductions, arg-max/min and softmax: hand-computed cases, edge sizes, NaN and tie
// rules, and every backward against central finite differences in double.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <random>
#include <vector>

#include "ember/core/base/error.h"
#include "ember/kernels/cpu/reduce.h"
#include "support/finite_difference.h"
#include "support/random.h"

namespace ember::kernels::cpu {
namespace {

using ember::testing::numeric_gradient;
using ember::testing::uniform_values;

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

// A [2, 3, 2] tensor reduced over its middle axis. Column (o, i) holds x[o, :, i]:
//   (0,0): 1 5 3   (0,1): 6 2 6   (1,0): -1 4 2   (1,1): 0 0 -3
// with ties for the max in columns (0,1) and (1,1).
const std::vector<double> kX232 = {1, 6, 5, 2, 3, 6, -1, 0, 4, 0, 2, -3};

template <typename T>
std::vector<T> cast_vector(const std::vector<double>& v) {
  return std::vector<T>(v.begin(), v.end());
}

template <typename T>
class ReduceCpuTyped : public ::testing::Test {};
using ReduceTypes = ::testing::Types<float, double, int64_t>;
TYPED_TEST_SUITE(ReduceCpuTyped, ReduceTypes);

TYPED_TEST(ReduceCpuTyped, SumOverMiddleAxisOf2x3x2) {
  using T = TypeParam;
  const std::vector<T> x = cast_vector<T>(kX232);
  std::vector<T> out(4, T(-7));
  reduce<T>({}, ReduceOp::Sum, x.data(), out.data(), nullptr, 2, 3, 2);
  EXPECT_EQ(out, (std::vector<T>{9, 14, 5, -3}));
}

TYPED_TEST(ReduceCpuTyped, MaxReturnsValueAndFirstIndexOfTheMaximum) {
  using T = TypeParam;
  const std::vector<T> x = cast_vector<T>(kX232);
  std::vector<T> out(4, T(-7));
  std::vector<int64_t> idx(4, -7);
  reduce<T>({}, ReduceOp::Max, x.data(), out.data(), idx.data(), 2, 3, 2);
  EXPECT_EQ(out, (std::vector<T>{5, 6, 4, 0}));
  EXPECT_EQ(idx, (std::vector<int64_t>{1, 0, 1, 0}));
}

TYPED_TEST(ReduceCpuTyped, MinReturnsValueAndFirstIndexOfTheMinimum) {
  using T = TypeParam;
  const std::vector<T> x = cast_vector<T>(kX232);
  std::vector<T> out(4, T(-7));
  std::vector<int64_t> idx(4, -7);
  reduce<T>({}, ReduceOp::Min, x.data(), out.data(), idx.data(), 2, 3, 2);
  EXPECT_EQ(out, (std::vector<T>{1, 2, -1, -3}));
  EXPECT_EQ(idx, (std::vector<int64_t>{0, 1, 0, 2}));
}

TYPED_TEST(ReduceCpuTyped, MaxAcceptsNullIndices) {
  using T = TypeParam;
  const std::vector<T> x = cast_vector<T>(kX232);
  std::vector<T> out(4);
  reduce<T>({}, ReduceOp::Max, x.data(), out.data(), nullptr, 2, 3, 2);
  EXPECT_EQ(out, (std::vector<T>{5, 6, 4, 0}));
}

TYPED_TEST(ReduceCpuTyped, SingleElementAxisCopiesInputWithIndexZero) {
  using T = TypeParam;
  const std::vector<T> x = {T(3), T(-2), T(8)};  // [3, 1, 1]
  for (ReduceOp op : {ReduceOp::Sum, ReduceOp::Max, ReduceOp::Min}) {
    std::vector<T> out(3, T(0));
    std::vector<int64_t> idx(3, -1);
    reduce<T>({}, op, x.data(), out.data(), idx.data(), 3, 1, 1);
    EXPECT_EQ(out, x);
    if (op != ReduceOp::Sum) {
      EXPECT_EQ(idx, (std::vector<int64_t>{0, 0, 0}));
    }
  }
}

TYPED_TEST(ReduceCpuTyped, EmptyOuterWritesNothing) {
  using T = TypeParam;
  const std::vector<T> x = {T(1)};
  std::vector<T> out = {T(42)};
  std::vector<int64_t> idx = {42};
  for (ReduceOp op : {ReduceOp::Sum, ReduceOp::Max, ReduceOp::Min}) {
    reduce<T>({}, op, x.data(), out.data(), idx.data(), 0, 5, 3);
    reduce<T>({}, op, x.data(), out.data(), idx.data(), 4, 5, 0);
  }
  EXPECT_EQ(out[0], T(42));
  EXPECT_EQ(idx[0], 42);
}

TEST(ReduceCpu, MeanOverMiddleAxisOf2x3x2) {
  const std::vector<double> x = kX232;
  std::vector<double> out(4);
  reduce<double>({}, ReduceOp::Mean, x.data(), out.data(), nullptr, 2, 3, 2);
  EXPECT_DOUBLE_EQ(out[0], 3.0);
  EXPECT_DOUBLE_EQ(out[1], 14.0 / 3.0);
  EXPECT_DOUBLE_EQ(out[2], 5.0 / 3.0);
  EXPECT_DOUBLE_EQ(out[3], -1.0);
  const std::vector<float> xf = cast_vector<float>(kX232);
  std::vector<float> outf(4);
  reduce<float>({}, ReduceOp::Mean, xf.data(), outf.data(), nullptr, 2, 3, 2);
  EXPECT_FLOAT_EQ(outf[1], 14.0f / 3.0f);
}

TEST(ReduceCpu, EmptyAxisSumsToZeroAndAveragesToNaN) {
  const float* no_input = nullptr;
  std::vector<float> out(6, 5.0f);
  reduce<float>({}, ReduceOp::Sum, no_input, out.data(), nullptr, 2, 0, 3);
  for (float v : out) EXPECT_EQ(v, 0.0f);
  reduce<float>({}, ReduceOp::Mean, no_input, out.data(), nullptr, 2, 0, 3);
  for (float v : out) EXPECT_TRUE(std::isnan(v));
}

TEST(ReduceCpu, MeanOfInt64IsRejected) {
  const std::vector<int64_t> x = {1, 2, 3};
  std::vector<int64_t> out(1);
  EXPECT_THROW(reduce<int64_t>({}, ReduceOp::Mean, x.data(), out.data(), nullptr, 1, 3, 1),
               ember::Error);
}

TEST(ReduceCpu, MaxAndMinPropagateTheFirstNaN) {
  const std::vector<double> x = {1, kNaN, 3, kNaN, -5};
  for (ReduceOp op : {ReduceOp::Max, ReduceOp::Min}) {
    double out = 0;
    int64_t idx = -1;
    reduce<double>({}, op, x.data(), &out, &idx, 1, 5, 1);
    EXPECT_TRUE(std::isnan(out));
    EXPECT_EQ(idx, 1);
  }
  // Along a strided axis too.
  const std::vector<float> xs = {1, 2, NAN, 0, 7, NAN};  // [1, 3, 2]
  std::vector<float> out(2);
  std::vector<int64_t> idx(2);
  reduce<float>({}, ReduceOp::Max, xs.data(), out.data(), idx.data(), 1, 3, 2);
  EXPECT_TRUE(std::isnan(out[0]));
  EXPECT_EQ(idx[0], 1);
  EXPECT_TRUE(std::isnan(out[1]));
  EXPECT_EQ(idx[1], 2);
}

TEST(ReduceCpu, TiesPickTheFirstIndex) {
  const std::vector<float> x = {2, 5, 5, 1, 5, 1};
  float out = 0;
  int64_t idx = -1;
  reduce<float>({}, ReduceOp::Max, x.data(), &out, &idx, 1, 6, 1);
  EXPECT_EQ(out, 5.0f);
  EXPECT_EQ(idx, 1);
  reduce<float>({}, ReduceOp::Min, x.data(), &out, &idx, 1, 6, 1);
  EXPECT_EQ(out, 1.0f);
  EXPECT_EQ(idx, 3);
}

TEST(ReduceCpu, FloatSumAccumulatesInDouble) {
  // A float running sum of 10^6 copies of 0.1f drifts by about 1%; a double one does not.
  const int64_t n = 1000000;
  const std::vector<float> x(n, 0.1f);
  float out = 0;
  reduce<float>({}, ReduceOp::Sum, x.data(), &out, nullptr, 1, n, 1);
  EXPECT_EQ(out, static_cast<float>(static_cast<double>(0.1f) * n));
}

TEST(ReduceCpu, IndexBackwardScattersGradToTheArgmaxAndZeroesTheRest) {
  const std::vector<double> x = kX232;
  std::vector<double> out(4);
  std::vector<int64_t> idx(4);
  reduce<double>({}, ReduceOp::Max, x.data(), out.data(), idx.data(), 2, 3, 2);
  const std::vector<double> gy = {10, 20, 30, 40};
  std::vector<double> gx(12, kNaN);  // garbage: every element must be written
  reduce_index_backward<double>({}, idx.data(), gy.data(), gx.data(), 2, 3, 2);
  // argmax (k) per column: (0,0)->1, (0,1)->0, (1,0)->1, (1,1)->0
  EXPECT_EQ(gx, (std::vector<double>{0, 20, 10, 0, 0, 0, 0, 40, 30, 0, 0, 0}));
}

double dot(const std::vector<double>& a, const std::vector<double>& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
  return s;
}

TEST(ReduceCpu, MaxAndMinBackwardMatchFiniteDifferences) {
  const int64_t outer = 2, n = 5, inner = 3;
  const std::vector<double> x =
      uniform_values(outer * n * inner, -2.0, 2.0, 11);  // distinct values
  const std::vector<double> gy = uniform_values(outer * inner, -2.0, 2.0, 12);
  for (ReduceOp op : {ReduceOp::Max, ReduceOp::Min}) {
    auto f = [&](const std::vector<double>& xv) {
      std::vector<double> y(outer * inner);
      reduce<double>({}, op, xv.data(), y.data(), nullptr, outer, n, inner);
      return dot(gy, y);
    };
    std::vector<double> y(outer * inner);
    std::vector<int64_t> idx(outer * inner);
    reduce<double>({}, op, x.data(), y.data(), idx.data(), outer, n, inner);
    std::vector<double> gx(x.size());
    reduce_index_backward<double>({}, idx.data(), gy.data(), gx.data(), outer, n, inner);
    const std::vector<double> num = numeric_gradient(f, x);
    for (size_t j = 0; j < x.size(); ++j) EXPECT_NEAR(gx[j], num[j], 1e-7) << "element " << j;
  }
}

// ---- softmax --------------------------------------------------------------------------

TEST(SoftmaxCpu, SoftmaxOf123MatchesHandComputedValues) {
  const std::vector<double> x = {1, 2, 3};
  std::vector<double> y(3);
  softmax_forward<double>({}, x.data(), y.data(), 1, 3, 1, /*log=*/false);
  EXPECT_NEAR(y[0], 0.0900305732, 1e-10);
  EXPECT_NEAR(y[1], 0.2447284711, 1e-10);
  EXPECT_NEAR(y[2], 0.6652409558, 1e-10);
  softmax_forward<double>({}, x.data(), y.data(), 1, 3, 1, /*log=*/true);
  EXPECT_NEAR(y[0], -2.4076059644, 1e-10);
  EXPECT_NEAR(y[1], -1.4076059644, 1e-10);
  EXPECT_NEAR(y[2], -0.4076059644, 1e-10);
}

TEST(SoftmaxCpu, LargeLogitsDoNotOverflow) {
  const std::vector<float> x = {1001, 1002, 1003};
  std::vector<float> y(3);
  softmax_forward<float>({}, x.data(), y.data(), 1, 3, 1, /*log=*/false);
  EXPECT_NEAR(y[0], 0.0900305732f, 1e-6f);
  EXPECT_NEAR(y[2], 0.6652409558f, 1e-6f);
  softmax_forward<float>({}, x.data(), y.data(), 1, 3, 1, /*log=*/true);
  EXPECT_NEAR(y[0], -2.4076059644f, 1e-5f);
}

TEST(SoftmaxCpu, NormalisesAlongTheMiddleAxis) {
  const int64_t outer = 3, n = 4, inner = 5;
  const std::vector<double> x = uniform_values(outer * n * inner, -5, 5, 3);
  std::vector<double> y(x.size());
  softmax_forward<double>({}, x.data(), y.data(), outer, n, inner, false);
  for (int64_t o = 0; o < outer; ++o) {
    for (int64_t i = 0; i < inner; ++i) {
      double s = 0;
      for (int64_t k = 0; k < n; ++k) s += y[(o * n + k) * inner + i];
      EXPECT_NEAR(s, 1.0, 1e-12);
    }
  }
  std::vector<double> logy(x.size());
  softmax_forward<double>({}, x.data(), logy.data(), outer, n, inner, true);
  for (size_t j = 0; j < x.size(); ++j) EXPECT_NEAR(std::exp(logy[j]), y[j], 1e-12);
}

TEST(SoftmaxCpu, SingleElementAxisGivesOneAndLogZero) {
  const std::vector<float> x = {-3, 0, 40};
  std::vector<float> y(3);
  softmax_forward<float>({}, x.data(), y.data(), 3, 1, 1, false);
  EXPECT_EQ(y, (std::vector<float>{1, 1, 1}));
  softmax_forward<float>({}, x.data(), y.data(), 1, 1, 3, true);
  EXPECT_EQ(y, (std::vector<float>{0, 0, 0}));
}

TEST(SoftmaxCpu, EmptyShapesWriteNothing) {
  std::vector<float> y = {9};
  const std::vector<float> x = {1};
  softmax_forward<float>({}, x.data(), y.data(), 0, 3, 2, false);
  softmax_forward<float>({}, x.data(), y.data(), 2, 0, 2, true);
  softmax_backward<float>({}, x.data(), x.data(), y.data(), 2, 3, 0, false);
  EXPECT_EQ(y[0], 9.0f);
}

TEST(SoftmaxCpu, BackwardMatchesFiniteDifferences) {
  const int64_t outer = 2, n = 4, inner = 3;
  const std::vector<double> x = uniform_values(outer * n * inner, -2.0, 2.0, 21);
  const std::vector<double> gy = uniform_values(x.size(), -2.0, 2.0, 22);
  for (bool log : {false, true}) {
    auto f = [&](const std::vector<double>& xv) {
      std::vector<double> y(xv.size());
      softmax_forward<double>({}, xv.data(), y.data(), outer, n, inner, log);
      return dot(gy, y);
    };
    std::vector<double> y(x.size()), gx(x.size(), kNaN);
    softmax_forward<double>({}, x.data(), y.data(), outer, n, inner, log);
    softmax_backward<double>({}, y.data(), gy.data(), gx.data(), outer, n, inner, log);
    const std::vector<double> num = numeric_gradient(f, x);
    for (size_t j = 0; j < x.size(); ++j) {
      EXPECT_NEAR(gx[j], num[j], 1e-7) << (log ? "log_softmax" : "softmax") << " element " << j;
    }
  }
}

TEST(SoftmaxCpu, RowBackwardMatchesFiniteDifferences) {
  const int64_t outer = 3, n = 7, inner = 1;
  const std::vector<double> x = uniform_values(outer * n, -4, 4, 31);
  const std::vector<double> gy = uniform_values(x.size(), -2.0, 2.0, 32);
  for (bool log : {false, true}) {
    auto f = [&](const std::vector<double>& xv) {
      std::vector<double> y(xv.size());
      softmax_forward<double>({}, xv.data(), y.data(), outer, n, inner, log);
      return dot(gy, y);
    };
    std::vector<double> y(x.size()), gx(x.size());
    softmax_forward<double>({}, x.data(), y.data(), outer, n, inner, log);
    softmax_backward<double>({}, y.data(), gy.data(), gx.data(), outer, n, inner, log);
    const std::vector<double> num = numeric_gradient(f, x);
    for (size_t j = 0; j < x.size(); ++j) EXPECT_NEAR(gx[j], num[j], 1e-7) << "element " << j;
  }
}

}  // namespace
}  // namespace ember::kernels::cpu
