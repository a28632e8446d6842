// Specification of core/ops/elementwise.cpp on the CPU: the binary ops under broadcasting,
// the comparisons, and the unary ops (the activations of core/ops/activation.cpp run
// through the same unary path and share its table): forward against std:: references in
// float32 and float64, backward by the f64 finite-difference checker, sizes 0 and 1,
// integer and bool paths, and the errors for bad inputs.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "ember/core/autograd.h"
#include "ember/core/base/error.h"
#include "ember/core/ops.h"
#include "ember/core/tensor.h"
#include "support/op_reference.h"

namespace ember {
namespace {

using namespace ember::testing;

// NumPy-broadcast reference for a binary op on double values.
std::vector<double> broadcast_ref(const std::vector<double>& a, const Shape& sa,
                                  const std::vector<double>& b, const Shape& sb,
                                  const std::function<double(double, double)>& f, Shape* out_shape) {
  const size_t nd = std::max(sa.size(), sb.size());
  Shape pa(nd, 1), pb(nd, 1), out(nd);
  std::copy(sa.begin(), sa.end(), pa.begin() + (nd - sa.size()));
  std::copy(sb.begin(), sb.end(), pb.begin() + (nd - sb.size()));
  for (size_t d = 0; d < nd; ++d) out[d] = std::max(pa[d], pb[d]);
  *out_shape = out;
  const int64_t n = shape_numel(out);
  std::vector<double> r(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    int64_t rest = i, ia = 0, ib = 0, ma = 1, mb = 1;
    for (int64_t d = static_cast<int64_t>(nd) - 1; d >= 0; --d) {
      const int64_t c = rest % out[d];
      rest /= out[d];
      ia += (pa[d] == 1 ? 0 : c) * ma;
      ib += (pb[d] == 1 ? 0 : c) * mb;
      ma *= pa[d];
      mb *= pb[d];
    }
    r[static_cast<size_t>(i)] = f(a[static_cast<size_t>(ia)], b[static_cast<size_t>(ib)]);
  }
  return r;
}

struct BinaryCase {
  const char* name;
  Tensor (*op)(const Tensor&, const Tensor&);
  double (*ref)(double, double);
};

const std::vector<BinaryCase>& binary_cases() {
  static const std::vector<BinaryCase> cases = {
      {"add", static_cast<Tensor (*)(const Tensor&, const Tensor&)>(&add),
       [](double a, double b) { return a + b; }},
      {"sub", &sub, [](double a, double b) { return a - b; }},
      {"mul", static_cast<Tensor (*)(const Tensor&, const Tensor&)>(&mul),
       [](double a, double b) { return a * b; }},
      {"div", &div, [](double a, double b) { return a / b; }},
      {"maximum", &maximum, [](double a, double b) { return std::max(a, b); }},
      {"minimum", &minimum, [](double a, double b) { return std::min(a, b); }},
  };
  return cases;
}

// Shape pairs every binary op must broadcast: trailing vector, outer product, rank-0 on
// either side, equal shapes, and a rank-3 mix.
const std::vector<std::pair<Shape, Shape>> kBroadcastPairs = {
    {{2, 3}, {3}}, {{2, 1}, {1, 3}}, {{}, {2, 3}}, {{2, 3}, {}},
    {{}, {}},      {{4}, {4}},       {{2, 1, 3}, {4, 1}}};

// ===========================================================================================
// Elementwise binary ops
// ===========================================================================================

TEST(OpsElementwise, BinaryOpsMatchTheBroadcastReference) {
  uint64_t seed = 1;
  for (const auto& c : binary_cases()) {
    for (const auto& [sa, sb] : kBroadcastPairs) {
      for (DType dt : kFloatDTypes) {
        SCOPED_TRACE(std::string(c.name) + " " + shape_str(sa) + " x " + shape_str(sb) + " " +
                     dtype_name(dt));
        const auto va = uniform_values(shape_numel(sa), -2.0, 2.0, seed++);
        const auto vb = uniform_values(shape_numel(sb), 0.5, 2.0, seed++);  // no division by 0
        Shape out_shape;
        const auto want = broadcast_ref(va, sa, vb, sb, c.ref, &out_shape);
        // The reference rounds the inputs as the op sees them.
        const auto va_r = values(from(va, sa, dt)), vb_r = values(from(vb, sb, dt));
        const auto want_r = broadcast_ref(va_r, sa, vb_r, sb, c.ref, &out_shape);
        EXPECT_TRUE(matches(c.op(from(va, sa, dt), from(vb, sb, dt)), out_shape, want_r, dt));
        (void)want;
      }
    }
  }
}

TEST(OpsElementwise, BinaryOpsHaveCorrectGradientsUnderBroadcasting) {
  uint64_t seed = 100;
  for (const auto& c : binary_cases()) {
    for (const auto& [sa, sb] : kBroadcastPairs) {
      SCOPED_TRACE(std::string(c.name) + " " + shape_str(sa) + " x " + shape_str(sb));
      // b stays in [0.5, 2] (div), and a in [-2, 2]: maximum/minimum see no ties.
      Tensor a = leaf(sa, -2.0, 2.0, seed++);
      Tensor b = leaf(sb, 0.5, 2.0, seed++);
      EXPECT_TRUE(grad_ok([&](const std::vector<Tensor>& in) { return c.op(in[0], in[1]); }, {a, b}));
    }
  }
}

TEST(OpsElementwise, BinaryOpsAcceptNonContiguousInputs) {
  for (const auto& c : binary_cases()) {
    SCOPED_TRACE(c.name);
    // a is stored [3, 2] and read through its transpose; b is a column narrowed from [2, 5].
    Tensor a = leaf({3, 2}, -2.0, 2.0, 7);
    Tensor b = leaf({2, 5}, 0.5, 2.0, 8);
    auto fn = [&](const std::vector<Tensor>& in) {
      return c.op(in[0].t(), in[1].narrow(1, 1, 3));
    };
    Tensor got = fn({a, b});
    ASSERT_FALSE(a.t().is_contiguous());
    Tensor want = c.op(a.t().contiguous(), b.narrow(1, 1, 3).contiguous());
    EXPECT_TRUE(allclose(got, values(want), reference_tolerance(kFloat64)));
    EXPECT_TRUE(grad_ok(fn, {a, b}));
  }
}

TEST(OpsElementwise, OnlyInputsThatRequireGradReceiveOne) {
  Tensor a = leaf({2, 3}, -1.0, 1.0, 1);
  Tensor b = uniform({3}, 0.5, 2.0, 2);
  Tensor y = sum(mul(a, b));
  y.backward();
  EXPECT_TRUE(a.grad().defined());
  EXPECT_FALSE(b.grad().defined());
  // d(sum(a * b))/da broadcasts b over the rows.
  const auto vb = values(b);
  EXPECT_TRUE(allclose(a.grad(), {vb[0], vb[1], vb[2], vb[0], vb[1], vb[2]},
                       reference_tolerance(kFloat64)));
  EXPECT_TRUE(grad_ok([&](const std::vector<Tensor>& in) { return div(b, in[0]); },
                      {leaf({2, 3}, 0.5, 2.0, 3)}));
}

TEST(OpsElementwise, AnInputUsedTwiceAccumulatesBothGradients) {
  for (const auto& c : binary_cases()) {
    SCOPED_TRACE(c.name);
    // maximum/minimum of x with itself is a tie everywhere: all of it goes to the first input.
    EXPECT_TRUE(grad_ok([&](const std::vector<Tensor>& in) { return c.op(in[0], in[0]); },
                        {leaf({2, 3}, 0.5, 2.0, 9)}));
  }
  EXPECT_TRUE(grad_ok([](const std::vector<Tensor>& in) { return matmul(in[0], in[0].t()); },
                      {leaf({3, 4}, -1, 1, 10)}));
}

TEST(OpsElementwise, MaximumAndMinimumSendTiedGradientsToTheFirstInput) {
  Tensor a = from({1.0, 2.0, 5.0}, {3});
  Tensor b = from({1.0, 3.0, 4.0}, {3});
  a.requires_grad_(true);
  b.requires_grad_(true);
  sum(maximum(a, b)).backward();
  EXPECT_EQ(values(a.grad()), (std::vector<double>{1, 0, 1}));
  EXPECT_EQ(values(b.grad()), (std::vector<double>{0, 1, 0}));
  a.set_grad(Tensor());
  b.set_grad(Tensor());
  sum(minimum(a, b)).backward();
  EXPECT_EQ(values(a.grad()), (std::vector<double>{1, 1, 0}));
  EXPECT_EQ(values(b.grad()), (std::vector<double>{0, 0, 1}));
}

TEST(OpsElementwise, MaximumAndMinimumPropagateNaN) {
  const double nan = std::nan("");
  Tensor a = from({nan, 1.0, 2.0}, {3}, kFloat32);
  Tensor b = from({0.0, nan, 1.0}, {3}, kFloat32);
  const auto mx = values(maximum(a, b)), mn = values(minimum(a, b));
  EXPECT_TRUE(std::isnan(mx[0]) && std::isnan(mx[1]));
  EXPECT_TRUE(std::isnan(mn[0]) && std::isnan(mn[1]));
  EXPECT_EQ(mx[2], 2.0);
  EXPECT_EQ(mn[2], 1.0);
}

TEST(OpsElementwise, EmptyAndSizeOneShapesBroadcast) {
  for (DType dt : kFloatDTypes) {
    Tensor e = add(zeros({0, 3}, {.dtype = dt}), ones({3}, {.dtype = dt}));
    EXPECT_EQ(e.shape(), (Shape{0, 3}));
    Tensor e2 = mul(zeros({2, 0}, {.dtype = dt}), ones({2, 1}, {.dtype = dt}));
    EXPECT_EQ(e2.shape(), (Shape{2, 0}));
    Tensor one = sub(full({1}, 5.0, {.dtype = dt}), full({1, 1}, 2.0, {.dtype = dt}));
    EXPECT_TRUE(matches(one, {1, 1}, {3.0}, dt));
  }
  // Backward through an empty broadcast gives empty gradients of the input shapes.
  Tensor a = leaf({0, 3}, 0, 1, 1), b = leaf({3}, 0, 1, 2);
  sum(mul(a, b)).backward();
  EXPECT_EQ(a.grad().shape(), (Shape{0, 3}));
  EXPECT_EQ(values(b.grad()), (std::vector<double>{0, 0, 0}));
}

TEST(OpsElementwise, Int64ArithmeticStaysInteger) {
  Tensor a = int64s({1, -2, 3, 40}, {2, 2});
  Tensor b = int64s({10, 3}, {2});
  Tensor s = add(a, b);
  EXPECT_EQ(s.dtype(), kInt64);
  EXPECT_EQ(int_values(s), (std::vector<int64_t>{11, 1, 13, 43}));
  EXPECT_EQ(int_values(sub(a, b)), (std::vector<int64_t>{-9, -5, -7, 37}));
  EXPECT_EQ(int_values(mul(a, b)), (std::vector<int64_t>{10, -6, 30, 120}));
  // Integer division truncates toward zero; division by zero gives 0 instead of trapping.
  EXPECT_EQ(int_values(div(int64s({7, -7, 5}, {3}), int64s({2, 2, 0}, {3}))),
            (std::vector<int64_t>{3, -3, 0}));
  EXPECT_EQ(int_values(maximum(a, b)), (std::vector<int64_t>{10, 3, 10, 40}));
  EXPECT_EQ(int_values(minimum(a, b)), (std::vector<int64_t>{1, -2, 3, 3}));
  EXPECT_EQ(int_values(add(a, 2.0)), (std::vector<int64_t>{3, 0, 5, 42}));
  EXPECT_EQ(int_values(mul(a, -3.0)), (std::vector<int64_t>{-3, 6, -9, -120}));
  // No type promotion: a fractional scalar is refused rather than truncated.
  EXPECT_TRUE(throws<DTypeError>([&] { mul(a, 2.5); }, {"mul", "2.5", "int64"}));
  EXPECT_TRUE(throws<DTypeError>([&] { add(a, 0.5); }, {"add", "0.5", "int64"}));
  EXPECT_EQ(int_values(neg(a)), (std::vector<int64_t>{-1, 2, -3, -40}));
  Tensor i32 = Tensor::from_vector(std::vector<int32_t>{1, 2, 3}, {3});
  Tensor i32s = add(i32, i32);
  EXPECT_EQ(i32s.dtype(), kInt32);
  EXPECT_EQ(int_values(i32s), (std::vector<int64_t>{2, 4, 6}));
}

TEST(OpsElementwise, ArithmeticOnBoolOrUInt8IsRefusedWithTheDtype) {
  Tensor b = bools({1, 0}, {2});
  EXPECT_TRUE(throws<DTypeError>([&] { add(b, b); }, {"add", "bool"}));
  Tensor u = Tensor::from_vector(std::vector<uint8_t>{1, 2}, {2});
  EXPECT_TRUE(throws<DTypeError>([&] { mul(u, u); }, {"mul", "uint8"}));
}

TEST(OpsElementwise, BroadcastFailureNamesTheOpAndBothShapes) {
  Tensor a = zeros({2, 3}), b = zeros({4});
  for (const auto& c : binary_cases()) {
    EXPECT_TRUE(throws<ShapeError>([&] { c.op(a, b); }, {c.name, "[2, 3]", "[4]", "broadcast"}));
  }
  EXPECT_TRUE(throws<ShapeError>([&] { eq(a, b); }, {"eq", "[2, 3]", "[4]"}));
  EXPECT_TRUE(throws<ShapeError>([&] { broadcast_shapes({2, 3}, {3, 2}, "myop"); },
                                 {"myop", "[2, 3]", "[3, 2]"}));
}

TEST(OpsElementwise, DtypeMismatchNamesTheOpAndBothDtypes) {
  Tensor a = zeros({2}), b = zeros({2}, {.dtype = kFloat64});
  for (const auto& c : binary_cases()) {
    EXPECT_TRUE(throws<DTypeError>([&] { c.op(a, b); }, {c.name, "float32", "float64"}));
  }
  EXPECT_TRUE(throws<DTypeError>([&] { lt(a, int64s({1, 2}, {2})); }, {"lt", "float32", "int64"}));
}

TEST(OpsElementwise, BroadcastShapesFollowsNumPyRules) {
  EXPECT_EQ(broadcast_shapes({2, 1, 3}, {4, 1}, "t"), (Shape{2, 4, 3}));
  EXPECT_EQ(broadcast_shapes({}, {5}, "t"), (Shape{5}));
  EXPECT_EQ(broadcast_shapes({0, 1}, {1, 3}, "t"), (Shape{0, 3}));
}

TEST(OpsElementwise, SumToReversesBroadcasting) {
  Tensor x = from({1, 2, 3, 4, 5, 6}, {2, 3});
  EXPECT_EQ(values(sum_to(x, {3})), (std::vector<double>{5, 7, 9}));
  EXPECT_EQ(values(sum_to(x, {2, 1})), (std::vector<double>{6, 15}));
  EXPECT_EQ(values(sum_to(x, {})), (std::vector<double>{21}));
  EXPECT_EQ(sum_to(x, {2, 3}).shape(), (Shape{2, 3}));
}

// ===========================================================================================
// Comparisons
// ===========================================================================================

TEST(OpsCompare, ComparisonsGiveBoolTensorsThatBroadcast) {
  for (DType dt : {kFloat32, kFloat64, kInt64}) {
    SCOPED_TRACE(dtype_name(dt));
    Tensor a = from({1, 2, 3, 4, 5, 6}, {2, 3}).to(dt);
    Tensor b = from({2, 2, 4}, {3}).to(dt);
    struct Case {
      Tensor (*op)(const Tensor&, const Tensor&);
      std::vector<int64_t> want;
    };
    const std::vector<Case> cases = {{&eq, {0, 1, 0, 0, 0, 0}}, {&ne, {1, 0, 1, 1, 1, 1}},
                                     {&lt, {1, 0, 1, 0, 0, 0}}, {&le, {1, 1, 1, 0, 0, 0}},
                                     {&gt, {0, 0, 0, 1, 1, 1}}, {&ge, {0, 1, 0, 1, 1, 1}}};
    for (const auto& c : cases) {
      Tensor r = c.op(a, b);
      EXPECT_EQ(r.dtype(), kBool);
      EXPECT_EQ(r.shape(), (Shape{2, 3}));
      EXPECT_EQ(int_values(r), c.want);
    }
  }
}

TEST(OpsCompare, ComparisonsAreNotDifferentiable) {
  Tensor a = leaf({3}, 0, 1, 1), b = leaf({3}, 0, 1, 2);
  EXPECT_FALSE(lt(a, b).requires_grad());
  EXPECT_FALSE(eq(a, a).requires_grad());
}

TEST(OpsCompare, NaNComparesUnequalToEverything) {
  Tensor a = from({std::nan(""), 1.0}, {2}, kFloat32);
  Tensor b = from({std::nan(""), 1.0}, {2}, kFloat32);
  EXPECT_EQ(int_values(eq(a, b)), (std::vector<int64_t>{0, 1}));
  EXPECT_EQ(int_values(ne(a, b)), (std::vector<int64_t>{1, 0}));
  EXPECT_EQ(int_values(le(a, b)), (std::vector<int64_t>{0, 1}));
}

TEST(OpsCompare, BoolAndUInt8TensorsCompare) {
  Tensor a = bools({1, 0, 1}, {3}), b = bools({1, 1, 0}, {3});
  EXPECT_EQ(int_values(eq(a, b)), (std::vector<int64_t>{1, 0, 0}));
  EXPECT_EQ(int_values(gt(a, b)), (std::vector<int64_t>{0, 0, 1}));
  Tensor u = Tensor::from_vector(std::vector<uint8_t>{0, 200, 7}, {3});
  Tensor v = Tensor::from_vector(std::vector<uint8_t>{1, 100, 7}, {3});
  EXPECT_EQ(int_values(lt(u, v)), (std::vector<int64_t>{1, 0, 0}));
}

// ===========================================================================================
// Unary math and activations
// ===========================================================================================

struct UnaryCase {
  const char* name;
  std::function<Tensor(const Tensor&)> op;
  std::function<double(double)> ref;
  double lo, hi;  // input range, away from kinks and poles
};

double gelu_ref(double x) { return 0.5 * x * (1.0 + std::erf(x / std::sqrt(2.0))); }

const std::vector<UnaryCase>& unary_cases() {
  static const std::vector<UnaryCase> cases = {
      {"neg", [](const Tensor& x) { return neg(x); }, [](double x) { return -x; }, -3, 3},
      {"exp", [](const Tensor& x) { return ember::exp(x); }, [](double x) { return std::exp(x); }, -3, 3},
      {"log", [](const Tensor& x) { return ember::log(x); }, [](double x) { return std::log(x); }, 0.2, 4},
      {"sqrt", [](const Tensor& x) { return ember::sqrt(x); }, [](double x) { return std::sqrt(x); }, 0.2, 4},
      {"abs", [](const Tensor& x) { return ember::abs(x); }, [](double x) { return std::fabs(x); }, -3, 3},
      {"pow2", [](const Tensor& x) { return ember::pow(x, 2.0); }, [](double x) { return x * x; }, -3, 3},
      {"pow3", [](const Tensor& x) { return ember::pow(x, 3.0); }, [](double x) { return x * x * x; }, -3, 3},
      {"pow0.5", [](const Tensor& x) { return ember::pow(x, 0.5); }, [](double x) { return std::sqrt(x); }, 0.2, 4},
      {"pow-1.5", [](const Tensor& x) { return ember::pow(x, -1.5); }, [](double x) { return std::pow(x, -1.5); }, 0.3, 4},
      {"clamp", [](const Tensor& x) { return clamp(x, -1.0, 1.0); },
       [](double x) { return std::min(std::max(x, -1.0), 1.0); }, -3, 3},
      {"clamp_min", [](const Tensor& x) { return clamp(x, 0.5, std::nullopt); },
       [](double x) { return std::max(x, 0.5); }, -3, 3},
      {"clamp_max", [](const Tensor& x) { return clamp(x, std::nullopt, 0.5); },
       [](double x) { return std::min(x, 0.5); }, -3, 3},
      {"relu", [](const Tensor& x) { return relu(x); }, [](double x) { return x > 0 ? x : 0.0; }, -3, 3},
      {"leaky_relu", [](const Tensor& x) { return leaky_relu(x); },
       [](double x) { return x > 0 ? x : 0.01 * x; }, -3, 3},
      {"leaky_relu0.2", [](const Tensor& x) { return leaky_relu(x, 0.2); },
       [](double x) { return x > 0 ? x : 0.2 * x; }, -3, 3},
      {"sigmoid", [](const Tensor& x) { return sigmoid(x); },
       [](double x) { return 1.0 / (1.0 + std::exp(-x)); }, -6, 6},
      {"tanh", [](const Tensor& x) { return ember::tanh(x); }, [](double x) { return std::tanh(x); }, -3, 3},
      {"gelu", [](const Tensor& x) { return gelu(x); }, gelu_ref, -4, 4},
      {"add_scalar", [](const Tensor& x) { return add(x, 2.5); }, [](double x) { return x + 2.5; }, -3, 3},
      {"mul_scalar", [](const Tensor& x) { return mul(x, -1.5); }, [](double x) { return x * -1.5; }, -3, 3},
  };
  return cases;
}

TEST(OpsUnary, ForwardMatchesTheStdReference) {
  uint64_t seed = 10;
  for (const auto& c : unary_cases()) {
    for (DType dt : kFloatDTypes) {
      SCOPED_TRACE(std::string(c.name) + " " + dtype_name(dt));
      const Shape shape{3, 5};
      Tensor x = from(away_from_kinks(15, c.lo, c.hi, seed++), shape, dt);
      std::vector<double> want;
      for (double v : values(x)) want.push_back(c.ref(v));
      EXPECT_TRUE(matches(c.op(x), shape, want, dt));
    }
  }
}

TEST(OpsUnary, BackwardPassesTheGradientCheck) {
  uint64_t seed = 50;
  for (const auto& c : unary_cases()) {
    SCOPED_TRACE(c.name);
    Tensor x = from(away_from_kinks(12, c.lo, c.hi, seed++), {3, 4});
    x.requires_grad_(true);
    EXPECT_TRUE(grad_ok([&](const std::vector<Tensor>& in) { return c.op(in[0]); }, {x}));
    // A transposed (non-contiguous) view gives the same values and gradients.
    Tensor xt = from(away_from_kinks(12, c.lo, c.hi, seed++), {4, 3});
    xt.requires_grad_(true);
    auto fn_t = [&](const std::vector<Tensor>& in) { return c.op(in[0].t()); };
    EXPECT_TRUE(
        allclose(fn_t({xt}), values(c.op(xt.t().contiguous())), reference_tolerance(kFloat64)));
    EXPECT_TRUE(grad_ok(fn_t, {xt}));
  }
}

TEST(OpsUnary, RankZeroEmptyAndSizeOneInputsKeepTheirShape) {
  for (const auto& c : unary_cases()) {
    SCOPED_TRACE(c.name);
    for (const Shape& s : {Shape{}, Shape{0}, Shape{1}, Shape{2, 0, 3}}) {
      Tensor x = full(s, 0.7);
      Tensor y = c.op(x);
      EXPECT_EQ(y.shape(), s);
      if (shape_numel(s) == 1) {
        EXPECT_TRUE(allclose(y, {c.ref(0.7)}, reference_tolerance(kFloat32)));
      }
    }
    Tensor x0 = leaf({}, 0.6, 0.8, 3);
    EXPECT_TRUE(grad_ok([&](const std::vector<Tensor>& in) { return c.op(in[0]); }, {x0}));
  }
}

TEST(OpsUnary, DerivativesAtTheKinksFollowPyTorch) {
  // relu'(0) = 0, |x|'(0) = 0, clamp' = 1 on the closed interval, d(x^0)/dx = 0 (not NaN at 0).
  auto grad_of = [](const std::function<Tensor(const Tensor&)>& f, double at) {
    Tensor x = from({at}, {1});
    x.requires_grad_(true);
    sum(f(x)).backward();
    return values(x.grad())[0];
  };
  EXPECT_EQ(grad_of([](const Tensor& x) { return relu(x); }, 0.0), 0.0);
  EXPECT_EQ(grad_of([](const Tensor& x) { return ember::abs(x); }, 0.0), 0.0);
  EXPECT_EQ(grad_of([](const Tensor& x) { return clamp(x, -1.0, 1.0); }, 1.0), 1.0);
  EXPECT_EQ(grad_of([](const Tensor& x) { return clamp(x, -1.0, 1.0); }, -1.0), 1.0);
  EXPECT_EQ(grad_of([](const Tensor& x) { return clamp(x, -1.0, 1.0); }, 1.5), 0.0);
  EXPECT_EQ(grad_of([](const Tensor& x) { return ember::pow(x, 0.0); }, 0.0), 0.0);
  EXPECT_EQ(grad_of([](const Tensor& x) { return leaky_relu(x, 0.1); }, -2.0), 0.1);
}

TEST(OpsUnary, NaNPropagatesThroughEveryActivation) {
  for (const auto& c : unary_cases()) {
    SCOPED_TRACE(c.name);
    for (DType dt : kFloatDTypes) {
      EXPECT_TRUE(std::isnan(c.op(from({std::nan("")}, {1}, dt)).item()));
    }
  }
}

TEST(OpsUnary, OperatorsAreTheNamedOps) {
  Tensor a = from({1, 2}, {2}), b = from({4, 8}, {2});
  EXPECT_EQ(values(a + b), (std::vector<double>{5, 10}));
  EXPECT_EQ(values(a - b), (std::vector<double>{-3, -6}));
  EXPECT_EQ(values(a * b), (std::vector<double>{4, 16}));
  EXPECT_EQ(values(a / b), (std::vector<double>{0.25, 0.25}));
  EXPECT_EQ(values(a + 1.0), (std::vector<double>{2, 3}));
  EXPECT_EQ(values(a - 1.0), (std::vector<double>{0, 1}));
  EXPECT_EQ(values(a * 3.0), (std::vector<double>{3, 6}));
  EXPECT_EQ(values(b / 4.0), (std::vector<double>{1, 2}));
  EXPECT_EQ(values(1.0 + a), (std::vector<double>{2, 3}));
  EXPECT_EQ(values(10.0 - a), (std::vector<double>{9, 8}));
  EXPECT_EQ(values(2.0 * a), (std::vector<double>{2, 4}));
  EXPECT_EQ(values(-a), (std::vector<double>{-1, -2}));
  EXPECT_TRUE(grad_ok([](const std::vector<Tensor>& in) { return 3.0 - in[0] * 2.0 + in[0] / 4.0; },
                      {leaf({3}, -1, 1, 4)}));
}

TEST(OpsUnary, NonFloatingInputsAreRefusedWithTheOpName) {
  Tensor i = int64s({1, 2}, {2});
  EXPECT_TRUE(throws<DTypeError>([&] { ember::exp(i); }, {"exp", "int64"}));
  EXPECT_TRUE(throws<DTypeError>([&] { relu(i); }, {"relu", "int64"}));
  EXPECT_TRUE(throws<DTypeError>([&] { sigmoid(bools({1}, {1})); }, {"sigmoid", "bool"}));
  EXPECT_TRUE(throws<Error>([&] { clamp(zeros({2}), 2.0, 1.0); }, {"clamp"}));
}

}  // namespace
}  // namespace ember
