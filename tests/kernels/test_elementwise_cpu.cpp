// Specification tests for the CPU elementwise kernels (kernels/cpu/elementwise.h): unary
// forward against std:: references, backward against central finite differences in f64,
// broadcasting and strided binary ops, comparisons, casts, fills and strided copies.
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "ember/core/base/error.h"
#include "ember/kernels/cpu/elementwise.h"

namespace {

using namespace ember::kernels;

// Forward tolerances, relative to max(|reference|, 1): float loses a few ulps in the
// libm calls and in cancellations such as 1 + erf(x) for negative x.
constexpr double kFloatTol = 1e-6;
constexpr double kDoubleTol = 1e-13;
// Finite differences in f64 with step kFdStep: truncation O(h^2), rounding O(eps / h).
constexpr double kFdStep = 1e-6;
constexpr double kFdTol = 1e-6;

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

UnaryParams params(double a, double b = 0.0) {
  UnaryParams p;
  p.a = a;
  p.b = b;
  return p;
}

template <typename T>
constexpr double tol_for() {
  return std::is_same_v<T, float> ? kFloatTol : kDoubleTol;
}

template <typename T>
std::vector<T> run_forward(UnaryOp op, const std::vector<T>& x, UnaryParams p = {}) {
  std::vector<T> y(x.size(), T(-12345));
  cpu::unary_forward<T>({}, op, x.data(), y.data(), static_cast<int64_t>(x.size()), p);
  return y;
}

// Runs op on every xs[i] (rounded to T) and compares with ref evaluated in double on the
// same rounded input.
template <typename T>
void expect_forward(UnaryOp op, UnaryParams p, const std::vector<double>& xs,
                    const std::function<double(double)>& ref) {
  std::vector<T> x(xs.begin(), xs.end());
  const std::vector<T> y = run_forward(op, x, p);
  for (size_t i = 0; i < x.size(); ++i) {
    const double want = ref(static_cast<double>(x[i]));
    const double got = static_cast<double>(y[i]);
    SCOPED_TRACE("x = " + std::to_string(static_cast<double>(x[i])));
    if (std::isnan(want)) {
      EXPECT_TRUE(std::isnan(got));
    } else if (std::isinf(want)) {
      EXPECT_EQ(got, want);
    } else {
      EXPECT_NEAR(got, want, tol_for<T>() * std::max(std::abs(want), 1.0));
    }
  }
}

// Both element types the CPU unary kernels support.
void expect_forward_both(UnaryOp op, UnaryParams p, const std::vector<double>& xs,
                         const std::function<double(double)>& ref) {
  {
    SCOPED_TRACE("float");
    expect_forward<float>(op, p, xs, ref);
  }
  {
    SCOPED_TRACE("double");
    expect_forward<double>(op, p, xs, ref);
  }
}

template <typename T>
std::vector<T> run_backward(UnaryOp op, const std::vector<T>& x, const std::vector<T>& grad_y,
                            UnaryParams p = {}) {
  const std::vector<T> y = run_forward(op, x, p);
  std::vector<T> grad_x(x.size(), T(-12345));
  cpu::unary_backward<T>({}, op, x.data(), y.data(), grad_y.data(), grad_x.data(),
                         static_cast<int64_t>(x.size()), p);
  return grad_x;
}

// Contiguous, broadcasting index: shapes are right-aligned against `out`, and a size-1
// (or missing) input dimension gets stride 0.
BroadcastIndex make_broadcast(const std::vector<int64_t>& out, const std::vector<int64_t>& a,
                              const std::vector<int64_t>& b) {
  BroadcastIndex idx;
  idx.ndim = static_cast<int>(out.size());
  auto strides_of = [&](const std::vector<int64_t>& shape, int64_t* strides) {
    int64_t stride = 1;
    for (int d = idx.ndim - 1, s = static_cast<int>(shape.size()) - 1; d >= 0; --d, --s) {
      const int64_t size = s >= 0 ? shape[s] : 1;
      strides[d] = size == 1 ? 0 : stride;
      stride *= size;
    }
  };
  for (int d = 0; d < idx.ndim; ++d) idx.sizes[d] = out[d];
  strides_of(a, idx.stride_a);
  strides_of(b, idx.stride_b);
  return idx;
}

BroadcastIndex make_strided(const std::vector<int64_t>& out,
                            const std::vector<int64_t>& stride_a,
                            const std::vector<int64_t>& stride_b) {
  BroadcastIndex idx;
  idx.ndim = static_cast<int>(out.size());
  for (int d = 0; d < idx.ndim; ++d) {
    idx.sizes[d] = out[d];
    idx.stride_a[d] = stride_a[d];
    idx.stride_b[d] = stride_b[d];
  }
  return idx;
}

template <typename T>
std::vector<T> run_binary(BinaryOp op, const std::vector<T>& a, const std::vector<T>& b,
                          const BroadcastIndex& idx, int64_t n) {
  std::vector<T> out(static_cast<size_t>(n), T(-99));
  cpu::binary<T>({}, op, a.data(), b.data(), out.data(), idx, n);
  return out;
}

// ------------------------------------------------------------------ unary forward

TEST(CpuUnary, NegFlipsSign) {
  expect_forward_both(UnaryOp::Neg, {}, {-2.5, 0.0, 3.0}, [](double x) { return -x; });
}

TEST(CpuUnary, ExpMatchesStd) {
  expect_forward_both(UnaryOp::Exp, {}, {-20.0, -1.0, 0.0, 0.5, 10.0},
                      [](double x) { return std::exp(x); });
}

TEST(CpuUnary, LogMatchesStdAndGivesMinusInfAtZero) {
  expect_forward_both(UnaryOp::Log, {}, {0.0, 0.01, 0.5, 1.0, 2.0, 1000.0},
                      [](double x) { return std::log(x); });
}

TEST(CpuUnary, SqrtMatchesStd) {
  expect_forward_both(UnaryOp::Sqrt, {}, {0.0, 0.25, 2.0, 1e4},
                      [](double x) { return std::sqrt(x); });
}

TEST(CpuUnary, AbsDropsSign) {
  expect_forward_both(UnaryOp::Abs, {}, {-3.0, -0.0, 0.0, 2.5},
                      [](double x) { return std::abs(x); });
  EXPECT_FALSE(std::signbit(run_forward<float>(UnaryOp::Abs, {-0.0f})[0]));
}

TEST(CpuUnary, PowRaisesToExponent) {
  expect_forward_both(UnaryOp::Pow, params(3.0), {-2.0, 0.0, 1.5},
                      [](double x) { return std::pow(x, 3.0); });
  expect_forward_both(UnaryOp::Pow, params(0.5), {0.0, 0.25, 9.0},
                      [](double x) { return std::sqrt(x); });
  expect_forward_both(UnaryOp::Pow, params(0.0), {-4.0, 0.0, 7.0}, [](double) { return 1.0; });
}

TEST(CpuUnary, ClampLimitsToRange) {
  expect_forward_both(UnaryOp::Clamp, params(-1.0, 2.0), {-5.0, -1.0, 0.5, 2.0, 7.0},
                      [](double x) { return std::min(std::max(x, -1.0), 2.0); });
}

TEST(CpuUnary, ReluZeroesNegatives) {
  expect_forward_both(UnaryOp::Relu, {}, {-3.0, -1e-30, 0.0, 1e-30, 4.0},
                      [](double x) { return x > 0 ? x : 0.0; });
}

TEST(CpuUnary, LeakyReluScalesNegativesBySlope) {
  expect_forward_both(UnaryOp::LeakyRelu, params(0.1), {-3.0, 0.0, 4.0},
                      [](double x) { return x > 0 ? x : 0.1 * x; });
}

TEST(CpuUnary, SigmoidMatchesReferenceAndSaturatesWithoutNaN) {
  expect_forward_both(UnaryOp::Sigmoid, {}, {-100.0, -10.0, -1.0, 0.0, 1.0, 10.0, 100.0},
                      [](double x) { return 1.0 / (1.0 + std::exp(-x)); });
  const std::vector<float> y = run_forward<float>(UnaryOp::Sigmoid, {-100.0f, 100.0f, -1e6f, 1e6f});
  EXPECT_EQ(y[0], std::exp(-100.0f));  // below float's normal range, still not NaN
  EXPECT_EQ(y[1], 1.0f);
  EXPECT_EQ(y[2], 0.0f);
  EXPECT_EQ(y[3], 1.0f);
}

TEST(CpuUnary, SigmoidKeepsRelativePrecisionInTheLeftTail) {
  // sigmoid(-x) = e^-x / (1 + e^-x); computing 1 - sigmoid(x) would return 0 here.
  const double y = run_forward<double>(UnaryOp::Sigmoid, {-100.0})[0];
  EXPECT_NEAR(y, std::exp(-100.0) / (1.0 + std::exp(-100.0)), 1e-15 * std::exp(-100.0));
}

TEST(CpuUnary, TanhSaturatesAtLargeMagnitude) {
  expect_forward_both(UnaryOp::Tanh, {}, {-100.0, -1.0, 0.0, 0.5, 100.0},
                      [](double x) { return std::tanh(x); });
  const std::vector<float> y = run_forward<float>(UnaryOp::Tanh, {-100.0f, 100.0f});
  EXPECT_EQ(y[0], -1.0f);
  EXPECT_EQ(y[1], 1.0f);
}

TEST(CpuUnary, GeluIsExactErfForm) {
  expect_forward_both(UnaryOp::Gelu, {}, {-5.0, -1.0, 0.0, 1.0, 3.0, 100.0},
                      [](double x) { return 0.5 * x * (1.0 + std::erf(x / std::sqrt(2.0))); });
}

TEST(CpuUnary, AddScalarShiftsByA) {
  expect_forward_both(UnaryOp::AddScalar, params(1.5), {-2.0, 0.0, 3.0},
                      [](double x) { return x + 1.5; });
}

TEST(CpuUnary, MulScalarScalesByA) {
  expect_forward_both(UnaryOp::MulScalar, params(-2.0), {-2.0, 0.0, 3.0},
                      [](double x) { return x * -2.0; });
}

TEST(CpuUnary, ForwardMayRunInPlace) {
  std::vector<float> x = {-1.0f, 2.0f};
  cpu::unary_forward<float>({}, UnaryOp::Relu, x.data(), x.data(), 2, {});
  EXPECT_EQ(x, (std::vector<float>{0.0f, 2.0f}));
}

// ------------------------------------------------------------------ unary backward

struct GradCase {
  const char* name;
  UnaryOp op;
  UnaryParams p;
  std::vector<double> xs;  // away from points where the op is not differentiable
};

std::vector<GradCase> grad_cases() {
  return {
      {"Neg", UnaryOp::Neg, {}, {-2.0, 0.0, 1.5}},
      {"Exp", UnaryOp::Exp, {}, {-3.0, 0.0, 2.5}},
      {"Log", UnaryOp::Log, {}, {0.1, 1.0, 7.0}},
      {"Sqrt", UnaryOp::Sqrt, {}, {0.1, 1.0, 9.0}},
      {"Abs", UnaryOp::Abs, {}, {-2.0, -0.1, 0.3}},
      {"Pow3", UnaryOp::Pow, params(3.0), {-1.5, 0.2, 2.0}},
      {"Pow-half", UnaryOp::Pow, params(-0.5), {0.3, 1.0, 4.0}},
      {"Clamp", UnaryOp::Clamp, params(-1.0, 2.0), {-3.0, -0.5, 1.9, 5.0}},
      {"Relu", UnaryOp::Relu, {}, {-2.0, -0.1, 0.1, 3.0}},
      {"LeakyRelu", UnaryOp::LeakyRelu, params(0.2), {-2.0, -0.1, 0.1, 3.0}},
      {"Sigmoid", UnaryOp::Sigmoid, {}, {-8.0, -1.0, 0.0, 0.7, 6.0}},
      {"Tanh", UnaryOp::Tanh, {}, {-4.0, -0.3, 0.0, 1.2}},
      {"Gelu", UnaryOp::Gelu, {}, {-4.0, -0.8, 0.0, 0.5, 3.0}},
      {"AddScalar", UnaryOp::AddScalar, params(2.5), {-1.0, 0.0, 4.0}},
      {"MulScalar", UnaryOp::MulScalar, params(-3.0), {-1.0, 0.0, 4.0}},
  };
}

TEST(CpuUnaryBackward, EveryOpMatchesCentralFiniteDifference) {
  for (const GradCase& c : grad_cases()) {
    SCOPED_TRACE(c.name);
    const std::vector<double> grad_y(c.xs.size(), 0.75);
    const std::vector<double> grad_x = run_backward<double>(c.op, c.xs, grad_y, c.p);
    for (size_t i = 0; i < c.xs.size(); ++i) {
      const double x = c.xs[i];
      const double up = run_forward<double>(c.op, {x + kFdStep}, c.p)[0];
      const double down = run_forward<double>(c.op, {x - kFdStep}, c.p)[0];
      const double want = 0.75 * (up - down) / (2 * kFdStep);
      EXPECT_NEAR(grad_x[i], want, kFdTol * std::max(std::abs(want), 1.0)) << "x = " << x;
    }
  }
}

TEST(CpuUnaryBackward, FloatMatchesDouble) {
  for (const GradCase& c : grad_cases()) {
    SCOPED_TRACE(c.name);
    const std::vector<float> xf(c.xs.begin(), c.xs.end());
    const std::vector<double> xd(xf.begin(), xf.end());
    const std::vector<float> gf = run_backward<float>(c.op, xf, std::vector<float>(xf.size(), 0.5f), c.p);
    const std::vector<double> gd = run_backward<double>(c.op, xd, std::vector<double>(xd.size(), 0.5), c.p);
    for (size_t i = 0; i < xf.size(); ++i) {
      EXPECT_NEAR(gf[i], gd[i], 1e-5 * std::max(std::abs(gd[i]), 1.0)) << "x = " << xd[i];
    }
  }
}

TEST(CpuUnaryBackward, ReluGradIsZeroAtZero) {
  EXPECT_EQ(run_backward<double>(UnaryOp::Relu, {0.0}, {1.0})[0], 0.0);
}

TEST(CpuUnaryBackward, AbsGradIsSignAndZeroAtZero) {
  EXPECT_EQ(run_backward<double>(UnaryOp::Abs, {-2.0, 0.0, 3.0}, {1.0, 1.0, 1.0}),
            (std::vector<double>{-1.0, 0.0, 1.0}));
}

TEST(CpuUnaryBackward, PowWithZeroExponentHasZeroGradEvenAtZero) {
  EXPECT_EQ(run_backward<double>(UnaryOp::Pow, {0.0, 2.0}, {1.0, 1.0}, params(0.0)),
            (std::vector<double>{0.0, 0.0}));
}

TEST(CpuUnaryBackward, ClampGradIsOneOnTheBoundsAndZeroOutside) {
  EXPECT_EQ(run_backward<double>(UnaryOp::Clamp, {-1.5, -1.0, 0.0, 2.0, 2.5},
                                 std::vector<double>(5, 2.0), params(-1.0, 2.0)),
            (std::vector<double>{0.0, 2.0, 2.0, 2.0, 0.0}));
}

TEST(CpuUnaryBackward, LeakyReluGradIsSlopeAtZero) {
  EXPECT_EQ(run_backward<double>(UnaryOp::LeakyRelu, {0.0}, {1.0}, params(0.25))[0], 0.25);
}

TEST(CpuUnaryBackward, SigmoidGradStaysFiniteForLargeInputs) {
  const std::vector<float> g = run_backward<float>(UnaryOp::Sigmoid, {-100.0f, 100.0f}, {1.0f, 1.0f});
  EXPECT_TRUE(std::isfinite(g[0]));
  EXPECT_EQ(g[1], 0.0f);
}

// ------------------------------------------------------------------ binary

TEST(CpuBinary, AddBroadcastsRowVectorOverMatrix) {
  // [2, 3] + [3]
  const auto out = run_binary<float>(BinaryOp::Add, {1, 2, 3, 4, 5, 6}, {10, 20, 30},
                                     make_broadcast({2, 3}, {2, 3}, {3}), 6);
  EXPECT_EQ(out, (std::vector<float>{11, 22, 33, 14, 25, 36}));
}

TEST(CpuBinary, MulBroadcastsColumnAgainstRow) {
  // [2, 1] * [1, 3] -> [2, 3]
  const auto out = run_binary<double>(BinaryOp::Mul, {2, 3}, {1, 10, 100},
                                      make_broadcast({2, 3}, {2, 1}, {1, 3}), 6);
  EXPECT_EQ(out, (std::vector<double>{2, 20, 200, 3, 30, 300}));
}

TEST(CpuBinary, RankZeroOperands) {
  BroadcastIndex scalar;  // ndim 0: one element
  EXPECT_EQ(run_binary<float>(BinaryOp::Sub, {5}, {3}, scalar, 1), (std::vector<float>{2}));
  // [4] - [] : the scalar broadcasts with stride 0
  EXPECT_EQ(run_binary<int64_t>(BinaryOp::Sub, {1, 2, 3, 4}, {10},
                                make_broadcast({4}, {4}, {}), 4),
            (std::vector<int64_t>{-9, -8, -7, -6}));
}

TEST(CpuBinary, ReadsTransposedInputThroughStrides) {
  // a is stored as a contiguous [3, 2] matrix and read as its transpose [2, 3].
  const std::vector<float> a = {1, 2, 3, 4, 5, 6};
  const std::vector<float> b = {1, 1, 1, 2, 2, 2};
  const auto out = run_binary<float>(BinaryOp::Div, a, b, make_strided({2, 3}, {1, 2}, {3, 1}), 6);
  EXPECT_EQ(out, (std::vector<float>{1, 3, 5, 1, 2, 3}));
}

TEST(CpuBinary, BroadcastsAcrossThreeDimensions) {
  // [2, 3, 4] - [3, 1]
  std::vector<int32_t> a(24), b = {100, 200, 300};
  for (int i = 0; i < 24; ++i) a[i] = i;
  const auto out = run_binary<int32_t>(BinaryOp::Sub, a, b,
                                       make_broadcast({2, 3, 4}, {2, 3, 4}, {3, 1}), 24);
  for (int i = 0; i < 2; ++i)
    for (int j = 0; j < 3; ++j)
      for (int k = 0; k < 4; ++k) {
        const int flat = (i * 3 + j) * 4 + k;
        EXPECT_EQ(out[flat], flat - b[j]) << i << "," << j << "," << k;
      }
}

TEST(CpuBinary, IntegerDivisionTruncatesTowardZero) {
  const auto out = run_binary<int32_t>(BinaryOp::Div, {7, -7, 7, -7}, {2, 2, -2, -2},
                                       make_broadcast({4}, {4}, {4}), 4);
  EXPECT_EQ(out, (std::vector<int32_t>{3, -3, -3, 3}));
}

TEST(CpuBinary, IntegerDivisionByZeroGivesZero) {
  EXPECT_EQ(run_binary<int32_t>(BinaryOp::Div, {5, -5, 0}, {0}, make_broadcast({3}, {3}, {}), 3),
            (std::vector<int32_t>{0, 0, 0}));
  EXPECT_EQ(run_binary<int64_t>(BinaryOp::Div, {9, 8}, {0, 4}, make_broadcast({2}, {2}, {2}), 2),
            (std::vector<int64_t>{0, 2}));
}

TEST(CpuBinary, IntegerMinDividedByMinusOneWrapsInsteadOfTrapping) {
  const int32_t lo = std::numeric_limits<int32_t>::min();
  EXPECT_EQ(run_binary<int32_t>(BinaryOp::Div, {lo, 6}, {-1, -1}, make_broadcast({2}, {2}, {2}), 2),
            (std::vector<int32_t>{lo, -6}));
}

TEST(CpuBinary, FloatDivisionByZeroIsInfinite) {
  const auto out = run_binary<float>(BinaryOp::Div, {1, -1}, {0}, make_broadcast({2}, {2}, {}), 2);
  EXPECT_EQ(out[0], std::numeric_limits<float>::infinity());
  EXPECT_EQ(out[1], -std::numeric_limits<float>::infinity());
}

TEST(CpuBinary, MaximumAndMinimumPickElementwiseAndPropagateNaN) {
  const BroadcastIndex idx = make_broadcast({3}, {3}, {3});
  const std::vector<double> a = {1, kNaN, 5}, b = {2, 0, kNaN};
  const auto mx = run_binary<double>(BinaryOp::Maximum, a, b, idx, 3);
  const auto mn = run_binary<double>(BinaryOp::Minimum, a, b, idx, 3);
  EXPECT_EQ(mx[0], 2);
  EXPECT_EQ(mn[0], 1);
  EXPECT_TRUE(std::isnan(mx[1]) && std::isnan(mx[2]));
  EXPECT_TRUE(std::isnan(mn[1]) && std::isnan(mn[2]));
  EXPECT_EQ(run_binary<int64_t>(BinaryOp::Maximum, {-3, 4}, {1}, make_broadcast({2}, {2}, {}), 2),
            (std::vector<int64_t>{1, 4}));
}

// ------------------------------------------------------------------ compare

template <typename T>
std::vector<int> run_compare(CompareOp op, const std::vector<T>& a, const std::vector<T>& b,
                             const BroadcastIndex& idx, int64_t n) {
  std::unique_ptr<bool[]> out(new bool[n > 0 ? n : 1]);
  cpu::compare<T>({}, op, a.data(), b.data(), out.get(), idx, n);
  return std::vector<int>(out.get(), out.get() + n);
}

TEST(CpuCompare, EveryOpAgainstBroadcastScalar) {
  const std::vector<float> a = {1, 2, 3};
  const std::vector<float> b = {2};
  const BroadcastIndex idx = make_broadcast({3}, {3}, {});
  EXPECT_EQ(run_compare(CompareOp::Eq, a, b, idx, 3), (std::vector<int>{0, 1, 0}));
  EXPECT_EQ(run_compare(CompareOp::Ne, a, b, idx, 3), (std::vector<int>{1, 0, 1}));
  EXPECT_EQ(run_compare(CompareOp::Lt, a, b, idx, 3), (std::vector<int>{1, 0, 0}));
  EXPECT_EQ(run_compare(CompareOp::Le, a, b, idx, 3), (std::vector<int>{1, 1, 0}));
  EXPECT_EQ(run_compare(CompareOp::Gt, a, b, idx, 3), (std::vector<int>{0, 0, 1}));
  EXPECT_EQ(run_compare(CompareOp::Ge, a, b, idx, 3), (std::vector<int>{0, 1, 1}));
}

TEST(CpuCompare, NaNComparesFalseExceptNe) {
  const std::vector<double> a = {kNaN}, b = {kNaN};
  const BroadcastIndex idx = make_broadcast({1}, {1}, {1});
  for (CompareOp op : {CompareOp::Eq, CompareOp::Lt, CompareOp::Le, CompareOp::Gt, CompareOp::Ge})
    EXPECT_EQ(run_compare(op, a, b, idx, 1)[0], 0) << static_cast<int>(op);
  EXPECT_EQ(run_compare(CompareOp::Ne, a, b, idx, 1)[0], 1);
}

TEST(CpuCompare, IntegerUint8AndBoolWithBroadcasting) {
  // [2, 1] vs [1, 3]
  const BroadcastIndex idx = make_broadcast({2, 3}, {2, 1}, {1, 3});
  EXPECT_EQ(run_compare<int32_t>(CompareOp::Lt, {1, 5}, {0, 2, 6}, idx, 6),
            (std::vector<int>{0, 1, 1, 0, 0, 1}));
  EXPECT_EQ(run_compare<int64_t>(CompareOp::Ge, {1, 5}, {0, 2, 5}, idx, 6),
            (std::vector<int>{1, 0, 0, 1, 1, 1}));
  EXPECT_EQ(run_compare<uint8_t>(CompareOp::Gt, {200, 5}, {0, 100, 255}, idx, 6),
            (std::vector<int>{1, 1, 0, 1, 0, 0}));
  const bool ab[] = {false, true};
  const bool bb[] = {false, true, true};
  bool out[6];
  cpu::compare<bool>({}, CompareOp::Eq, ab, bb, out, idx, 6);
  EXPECT_EQ(std::vector<int>(out, out + 6), (std::vector<int>{1, 0, 0, 0, 1, 1}));
}

// ------------------------------------------------------------------ cast and fill

constexpr int kF32 = 0, kF64 = 1, kI32 = 2, kI64 = 3, kU8 = 4, kBool = 5;
constexpr int kAllDtypes[] = {kF32, kF64, kI32, kI64, kU8, kBool};
constexpr size_t kDtypeSize[] = {4, 8, 4, 8, 1, sizeof(bool)};

// A typed buffer behind a void*, read and written as double for the tests.
struct Buffer {
  int dtype;
  std::vector<unsigned char> bytes;
  Buffer(int dt, size_t n) : dtype(dt), bytes((n + 1) * 8, 0xAB) {}  // room for a canary

  template <typename T>
  void put_as(size_t i, double v) {
    const T t = static_cast<T>(v);
    std::memcpy(bytes.data() + i * sizeof(T), &t, sizeof(T));
  }
  template <typename T>
  double get_as(size_t i) const {
    T t;
    std::memcpy(&t, bytes.data() + i * sizeof(T), sizeof(T));
    return static_cast<double>(t);
  }
  void put(size_t i, double v) {
    switch (dtype) {
      case kF32: return put_as<float>(i, v);
      case kF64: return put_as<double>(i, v);
      case kI32: return put_as<int32_t>(i, v);
      case kI64: return put_as<int64_t>(i, v);
      case kU8: return put_as<uint8_t>(i, v);
      case kBool: return put_as<bool>(i, v != 0);
    }
  }
  double get(size_t i) const {
    switch (dtype) {
      case kF32: return get_as<float>(i);
      case kF64: return get_as<double>(i);
      case kI32: return get_as<int32_t>(i);
      case kI64: return get_as<int64_t>(i);
      case kU8: return get_as<uint8_t>(i);
      case kBool: return get_as<bool>(i);
    }
    return kNaN;
  }
  void* data() { return bytes.data(); }
};

TEST(CpuCast, EveryDtypePairKeepsSmallNonNegativeValues) {
  const std::vector<double> values = {0, 1, 2, 5};
  for (int src : kAllDtypes) {
    for (int dst : kAllDtypes) {
      SCOPED_TRACE("src " + std::to_string(src) + " -> dst " + std::to_string(dst));
      Buffer x(src, values.size()), y(dst, values.size());
      for (size_t i = 0; i < values.size(); ++i) x.put(i, values[i]);
      cpu::cast({}, src, x.data(), dst, y.data(), static_cast<int64_t>(values.size()));
      for (size_t i = 0; i < values.size(); ++i) {
        const double stored = x.get(i);  // 1 for bool sources of 2 and 5
        EXPECT_EQ(y.get(i), dst == kBool ? (stored != 0 ? 1.0 : 0.0) : stored) << "i = " << i;
      }
    }
  }
}

TEST(CpuCast, NegativeFloatToIntTruncatesTowardZero) {
  const float x[] = {-2.7f, 2.9f, -0.5f};
  int32_t y32[3];
  int64_t y64[3];
  cpu::cast({}, kF32, x, kI32, y32, 3);
  cpu::cast({}, kF32, x, kI64, y64, 3);
  EXPECT_EQ(std::vector<int32_t>(y32, y32 + 3), (std::vector<int32_t>{-2, 2, 0}));
  EXPECT_EQ(std::vector<int64_t>(y64, y64 + 3), (std::vector<int64_t>{-2, 2, 0}));
}

TEST(CpuCast, NonZeroToBoolIsTrue) {
  const double x[] = {2.0, 0.0, -0.5, -0.0};
  bool y[4];
  cpu::cast({}, kF64, x, kBool, y, 4);
  EXPECT_EQ(std::vector<int>(y, y + 4), (std::vector<int>{1, 0, 1, 0}));
  const int64_t xi[] = {0, -3};
  cpu::cast({}, kI64, xi, kBool, y, 2);
  EXPECT_EQ(std::vector<int>(y, y + 2), (std::vector<int>{0, 1}));
}

TEST(CpuCast, BoolToFloatGivesZeroAndOne) {
  const bool x[] = {true, false};
  float y[2];
  cpu::cast({}, kBool, x, kF32, y, 2);
  EXPECT_EQ(y[0], 1.0f);
  EXPECT_EQ(y[1], 0.0f);
}

TEST(CpuCast, RejectsUnknownDtypeCode) {
  float x = 1, y = 0;
  EXPECT_THROW(cpu::cast({}, kF32, &x, 8, &y, 1), ember::Error);
  EXPECT_THROW(cpu::cast({}, -1, &x, kF32, &y, 1), ember::Error);
}

TEST(CpuFill, WritesValueInEveryDtype) {
  for (int dt : kAllDtypes) {
    SCOPED_TRACE("dtype " + std::to_string(dt));
    Buffer y(dt, 5);
    cpu::fill({}, dt, y.data(), 5, 3.0);
    for (size_t i = 0; i < 5; ++i) EXPECT_EQ(y.get(i), dt == kBool ? 1.0 : 3.0);
    // and nothing past the end
    EXPECT_EQ(y.bytes[5 * kDtypeSize[dt]], 0xAB);
  }
}

TEST(CpuFill, ConvertsTheValueLikeCast) {
  int32_t yi[2];
  cpu::fill({}, kI32, yi, 2, -1.5);
  EXPECT_EQ(yi[0], -1);
  bool yb[2] = {true, true};
  cpu::fill({}, kBool, yb, 2, 0.0);
  EXPECT_FALSE(yb[0] || yb[1]);
}

// ------------------------------------------------------------------ strided copy

template <typename U>
void expect_transposed_copy() {
  // x: contiguous [3, 4]; y: its transpose [4, 3], gathered with strides {1, 4}.
  std::vector<U> x(12), y(12, U(0));
  for (int i = 0; i < 12; ++i) x[i] = static_cast<U>(i * 17 + 1);
  StridedIndex idx;
  idx.ndim = 2;
  idx.sizes[0] = 4;
  idx.sizes[1] = 3;
  idx.strides[0] = 1;
  idx.strides[1] = 4;
  cpu::strided_copy({}, sizeof(U), x.data(), idx, y.data(), 12);
  for (int r = 0; r < 4; ++r)
    for (int c = 0; c < 3; ++c) EXPECT_EQ(y[r * 3 + c], x[c * 4 + r]) << r << "," << c;
}

TEST(CpuStridedCopy, TransposesA3x4MatrixForEveryElementSize) {
  expect_transposed_copy<uint8_t>();
  expect_transposed_copy<uint16_t>();
  expect_transposed_copy<uint32_t>();
  expect_transposed_copy<uint64_t>();
}

TEST(CpuStridedCopy, StrideZeroRepeatsAnElement) {
  // expand: [2] -> [3, 2] with strides {0, 1}
  const float x[] = {4, 7};
  float y[6];
  StridedIndex idx;
  idx.ndim = 2;
  idx.sizes[0] = 3;
  idx.sizes[1] = 2;
  idx.strides[0] = 0;
  idx.strides[1] = 1;
  cpu::strided_copy({}, 4, x, idx, y, 6);
  EXPECT_EQ(std::vector<float>(y, y + 6), (std::vector<float>{4, 7, 4, 7, 4, 7}));
}

TEST(CpuStridedCopy, RejectsUnsupportedElementSize) {
  const uint8_t x[3] = {};
  uint8_t y[3];
  StridedIndex idx;
  idx.ndim = 1;
  idx.sizes[0] = 1;
  idx.strides[0] = 1;
  EXPECT_THROW(cpu::strided_copy({}, 3, x, idx, y, 1), ember::Error);
  EXPECT_THROW(cpu::strided_scatter({}, 3, x, idx, y, 1), ember::Error);
}

TEST(CpuStridedScatter, UndoesTheTransposingGather) {
  // y: contiguous [3, 4] written through its transpose [4, 3] (strides {1, 4}) from x.
  std::vector<float> x(12), y(12, -1.0f);
  for (int i = 0; i < 12; ++i) x[i] = static_cast<float>(i);
  StridedIndex idx;
  idx.ndim = 2;
  idx.sizes[0] = 4;
  idx.sizes[1] = 3;
  idx.strides[0] = 1;
  idx.strides[1] = 4;
  cpu::strided_scatter({}, 4, x.data(), idx, y.data(), 12);
  for (int r = 0; r < 4; ++r)
    for (int c = 0; c < 3; ++c) EXPECT_EQ(y[c * 4 + r], x[r * 3 + c]) << r << "," << c;
  std::vector<float> back(12);
  cpu::strided_copy({}, 4, y.data(), idx, back.data(), 12);
  EXPECT_EQ(back, x);
}

// ------------------------------------------------------------------ empty inputs

TEST(CpuElementwise, ZeroElementsTouchNothing) {
  float out[1] = {-7.0f};
  bool bout[1] = {true};
  const BroadcastIndex idx = make_broadcast({0}, {0}, {0});
  cpu::unary_forward<float>({}, UnaryOp::Exp, nullptr, out, 0, {});
  cpu::unary_backward<float>({}, UnaryOp::Exp, nullptr, nullptr, nullptr, out, 0, {});
  cpu::binary<float>({}, BinaryOp::Add, nullptr, nullptr, out, idx, 0);
  cpu::compare<float>({}, CompareOp::Eq, nullptr, nullptr, bout, idx, 0);
  cpu::cast({}, kF64, nullptr, kF32, out, 0);
  cpu::fill({}, kF32, out, 0, 1.0);
  StridedIndex sidx;
  sidx.ndim = 1;
  cpu::strided_copy({}, 4, nullptr, sidx, out, 0);
  EXPECT_EQ(out[0], -7.0f);
  EXPECT_TRUE(bout[0]);
}

}  // namespace
