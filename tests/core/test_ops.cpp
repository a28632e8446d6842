// Specification of every differentiable op in core/ops.h on the CPU: forward values against
// std:: references (float32 and float64), backward by the f64 finite-difference checker,
// sizes 0 and 1, integer and bool paths, and the documented errors for bad inputs.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "ember/core/autograd.h"
#include "ember/core/base/error.h"
#include "ember/core/grad_check.h"
#include "ember/core/ops.h"
#include "ember/core/random.h"
#include "ember/core/tensor.h"

namespace ember {
namespace {

// ---- tolerances, stated once -------------------------------------------------------------

// Forward results against a double-precision reference: float32 ops compute in float
// (about seven digits), float64 ones in double (the reference may round in another order).
struct Tolerance {
  double rtol;
  double atol;
};
Tolerance tolerance_for(DType dt) {
  return dt == kFloat32 ? Tolerance{2e-5, 1e-6} : Tolerance{1e-12, 1e-12};
}
const std::vector<DType> kFloatDTypes = {kFloat32, kFloat64};

// ---- tensors, values and assertions -----------------------------------------------------

std::vector<double> uniform_values(int64_t n, double lo, double hi, uint64_t seed) {
  std::mt19937_64 gen(seed);
  std::uniform_real_distribution<double> dist(lo, hi);
  std::vector<double> v(static_cast<size_t>(n));
  for (auto& x : v) x = dist(gen);
  return v;
}

// A float64 tensor of `shape` (uniform in [lo, hi)) converted to `dt`.
Tensor uniform(const Shape& shape, double lo, double hi, uint64_t seed, DType dt = kFloat64) {
  return Tensor::from_vector(uniform_values(shape_numel(shape), lo, hi, seed), shape).to(dt);
}

// A float64 leaf that requires grad, for gradcheck.
Tensor leaf(const Shape& shape, double lo, double hi, uint64_t seed) {
  Tensor t = uniform(shape, lo, hi, seed);
  t.requires_grad_(true);
  return t;
}

Tensor from(const std::vector<double>& v, const Shape& shape, DType dt = kFloat64) {
  return Tensor::from_vector(v, shape).to(dt);
}

Tensor int64s(const std::vector<int64_t>& v, const Shape& shape) {
  return Tensor::from_vector(v, shape);
}

Tensor bools(const std::vector<uint8_t>& v, const Shape& shape) {
  return Tensor::from_vector(v, shape).to(kBool);
}

// Any tensor's elements as doubles, in C order (cut from the graph).
std::vector<double> values(const Tensor& t) {
  NoGradGuard no_grad;
  Tensor d = t.detach();
  if (d.dtype() != kFloat64) d = d.to(kFloat64);
  return d.to_vector<double>();
}

std::vector<int64_t> int_values(const Tensor& t) {
  NoGradGuard no_grad;
  Tensor d = t.detach();
  if (d.dtype() != kInt64) d = d.to(kInt64);
  return d.to_vector<int64_t>();
}

::testing::AssertionResult all_close(const std::vector<double>& got,
                                     const std::vector<double>& want, Tolerance tol) {
  if (got.size() != want.size()) {
    return ::testing::AssertionFailure()
           << "got " << got.size() << " elements, want " << want.size();
  }
  for (size_t i = 0; i < got.size(); ++i) {
    const bool both_nan = std::isnan(got[i]) && std::isnan(want[i]);
    const bool same_inf = std::isinf(got[i]) && got[i] == want[i];
    if (both_nan || same_inf) continue;
    if (!(std::fabs(got[i] - want[i]) <= tol.atol + tol.rtol * std::fabs(want[i]))) {
      return ::testing::AssertionFailure()
             << "element " << i << ": got " << got[i] << ", want " << want[i];
    }
  }
  return ::testing::AssertionSuccess();
}

::testing::AssertionResult tensor_close(const Tensor& got, const std::vector<double>& want,
                                        Tolerance tol) {
  return all_close(values(got), want, tol);
}

// Forward result of dtype `dt` against the reference, with that dtype's tolerance.
::testing::AssertionResult matches(const Tensor& got, const Shape& shape,
                                   const std::vector<double>& want, DType dt) {
  if (got.dtype() != dt) {
    return ::testing::AssertionFailure() << "dtype " << got.dtype() << ", want " << dt;
  }
  if (got.shape() != shape) {
    return ::testing::AssertionFailure()
           << "shape " << shape_str(got.shape()) << ", want " << shape_str(shape);
  }
  return tensor_close(got, want, tolerance_for(dt));
}

::testing::AssertionResult grad_ok(const std::function<Tensor(const std::vector<Tensor>&)>& fn,
                                   const std::vector<Tensor>& inputs) {
  const GradCheckResult r = gradcheck(fn, inputs);
  if (r.ok) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << r.report;
}

// `f` throws exactly E (or a subclass) and the message contains every one of `parts`.
template <typename E, typename F>
::testing::AssertionResult throws(F&& f, const std::vector<std::string>& parts) {
  try {
    f();
  } catch (const E& e) {
    const std::string msg = e.what();
    for (const auto& p : parts) {
      if (msg.find(p) == std::string::npos) {
        return ::testing::AssertionFailure() << "message \"" << msg << "\" lacks \"" << p << "\"";
      }
    }
    return ::testing::AssertionSuccess();
  } catch (const std::exception& e) {
    return ::testing::AssertionFailure() << "threw the wrong type: " << e.what();
  }
  return ::testing::AssertionFailure() << "did not throw";
}

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
    EXPECT_TRUE(tensor_close(got, values(want), tolerance_for(kFloat64)));
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
  EXPECT_TRUE(tensor_close(a.grad(), {vb[0], vb[1], vb[2], vb[0], vb[1], vb[2]},
                           tolerance_for(kFloat64)));
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

// Values in [lo, hi) kept at least 0.05 from the kinks at 0, +-1 and 0.5 (relu, abs,
// clamp), where a central difference would straddle two slopes.
std::vector<double> away_from_kinks(int64_t n, double lo, double hi, uint64_t seed) {
  auto v = uniform_values(n, lo, hi, seed);
  for (auto& x : v) {
    for (double k : {0.0, 1.0, -1.0, 0.5}) {
      if (std::fabs(x - k) < 0.05) x = k + (x < k ? -0.05 : 0.05);
    }
  }
  return v;
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
    EXPECT_TRUE(tensor_close(fn_t({xt}), values(c.op(xt.t().contiguous())), tolerance_for(kFloat64)));
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
        EXPECT_TRUE(tensor_close(y, {c.ref(0.7)}, tolerance_for(kFloat32)));
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

TEST(OpsUnary, SigmoidAndTanhSaturateWithoutNaN) {
  for (DType dt : kFloatDTypes) {
    Tensor x = from({-1000.0, -50.0, 0.0, 50.0, 1000.0}, {5}, dt);
    x.requires_grad_(true);
    Tensor s = sigmoid(x);
    const auto v = values(s);
    EXPECT_EQ(v[0], 0.0);
    EXPECT_GT(v[1], 0.0);  // the left tail keeps its relative precision
    EXPECT_NEAR(v[1], std::exp(-50.0), std::exp(-50.0) * 1e-5);
    EXPECT_EQ(v[2], 0.5);
    EXPECT_EQ(v[4], 1.0);
    sum(add(s, ember::tanh(x))).backward();
    for (double g : values(x.grad())) EXPECT_TRUE(std::isfinite(g));
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

// ===========================================================================================
// softmax / log_softmax
// ===========================================================================================

std::vector<double> softmax_ref(const std::vector<double>& x, const Shape& s, int64_t dim, bool log) {
  int64_t outer = 1, n = s[static_cast<size_t>(dim)], inner = 1;
  for (int64_t d = 0; d < dim; ++d) outer *= s[static_cast<size_t>(d)];
  for (size_t d = static_cast<size_t>(dim) + 1; d < s.size(); ++d) inner *= s[d];
  std::vector<double> y(x.size());
  for (int64_t o = 0; o < outer; ++o) {
    for (int64_t i = 0; i < inner; ++i) {
      auto at = [&](int64_t k) { return static_cast<size_t>((o * n + k) * inner + i); };
      double m = -INFINITY;
      for (int64_t k = 0; k < n; ++k) m = std::max(m, x[at(k)]);
      double z = 0;
      for (int64_t k = 0; k < n; ++k) z += std::exp(x[at(k)] - m);
      for (int64_t k = 0; k < n; ++k) {
        y[at(k)] = log ? x[at(k)] - m - std::log(z) : std::exp(x[at(k)] - m) / z;
      }
    }
  }
  return y;
}

TEST(OpsSoftmax, ForwardMatchesTheReferenceAlongEveryDim) {
  const Shape s{3, 4, 5};
  for (bool log : {false, true}) {
    for (int64_t dim : {0, 1, 2, -1}) {
      for (DType dt : kFloatDTypes) {
        SCOPED_TRACE(std::string(log ? "log_softmax" : "softmax") + " dim " + std::to_string(dim) +
                     " " + dtype_name(dt));
        Tensor x = uniform(s, -3, 3, 20 + dim, dt);
        const int64_t d = dim < 0 ? dim + 3 : dim;
        const auto want = softmax_ref(values(x), s, d, log);
        EXPECT_TRUE(matches(log ? log_softmax(x, dim) : softmax(x, dim), s, want, dt));
      }
    }
  }
}

TEST(OpsSoftmax, IsStableForLargeLogits) {
  for (DType dt : kFloatDTypes) {
    Tensor x = from({1000.0, 1000.0, -1000.0}, {1, 3}, dt);
    EXPECT_TRUE(tensor_close(softmax(x), {0.5, 0.5, 0.0}, tolerance_for(dt)));
    const auto ls = values(log_softmax(x));
    EXPECT_NEAR(ls[0], -std::log(2.0), 1e-6);
    EXPECT_NEAR(ls[2], -2000.0 - std::log(2.0), 1e-3);
  }
}

TEST(OpsSoftmax, BackwardPassesTheGradientCheck) {
  for (bool log : {false, true}) {
    for (int64_t dim : {0, -1, 1}) {
      SCOPED_TRACE(std::string(log ? "log_softmax" : "softmax") + " dim " + std::to_string(dim));
      auto fn = [&](const std::vector<Tensor>& in) {
        return log ? log_softmax(in[0], dim) : softmax(in[0], dim);
      };
      EXPECT_TRUE(grad_ok(fn, {leaf({3, 4}, -2, 2, 30)}));
      EXPECT_TRUE(grad_ok(fn, {leaf({2, 3, 2}, -2, 2, 31)}));
      // Through a transposed view.
      EXPECT_TRUE(grad_ok([&](const std::vector<Tensor>& in) {
                            return log ? log_softmax(in[0].t(), dim) : softmax(in[0].t(), dim);
                          },
                          {leaf({4, 3}, -2, 2, 32)}));
    }
  }
}

TEST(OpsSoftmax, MaskedLogitsGetZeroProbabilityAndFiniteGradients) {
  const double inf = std::numeric_limits<double>::infinity();
  for (DType dt : kFloatDTypes) {
    Tensor x = from({0.0, -inf, 1.0}, {1, 3}, dt);
    x.requires_grad_(true);
    Tensor p = softmax(x);
    const double e = std::exp(1.0);
    EXPECT_TRUE(tensor_close(p, {1 / (1 + e), 0.0, e / (1 + e)}, tolerance_for(dt)));
    sum(mul(p, from({1, 2, 3}, {1, 3}, dt))).backward();
    for (double g : values(x.grad())) EXPECT_TRUE(std::isfinite(g));
    EXPECT_EQ(values(log_softmax(x))[1], -inf);
  }
}

TEST(OpsSoftmax, RankZeroSizeOneAndEmptyInputs) {
  EXPECT_TRUE(tensor_close(softmax(scalar_tensor(3.0)), {1.0}, tolerance_for(kFloat32)));
  EXPECT_TRUE(tensor_close(log_softmax(scalar_tensor(3.0)), {0.0}, tolerance_for(kFloat32)));
  EXPECT_TRUE(tensor_close(softmax(full({2, 1}, 7.0), 1), {1.0, 1.0}, tolerance_for(kFloat32)));
  EXPECT_EQ(softmax(zeros({0, 4}), -1).shape(), (Shape{0, 4}));
  EXPECT_EQ(log_softmax(zeros({3, 0}), 0).shape(), (Shape{3, 0}));
}

TEST(OpsSoftmax, BadDimIsAShapeErrorNamingTheOp) {
  EXPECT_TRUE(throws<ShapeError>([] { softmax(zeros({2, 3}), 2); }, {"softmax", "2", "rank 2"}));
  EXPECT_TRUE(throws<ShapeError>([] { log_softmax(zeros({2, 3}), -3); }, {"log_softmax"}));
  EXPECT_TRUE(throws<DTypeError>([] { softmax(int64s({1}, {1})); }, {"softmax", "int64"}));
}

// ===========================================================================================
// Reductions
// ===========================================================================================

// Sum (or mean) of x [s] over `dims`, keeping every dim (size 1 where reduced).
std::vector<double> reduce_ref(const std::vector<double>& x, const Shape& s,
                               const std::vector<int64_t>& dims, bool mean, Shape* kept) {
  Shape k = s;
  for (int64_t d : dims) k[static_cast<size_t>(d)] = 1;
  *kept = k;
  std::vector<double> out(static_cast<size_t>(shape_numel(k)), 0.0);
  const int64_t n = shape_numel(s);
  for (int64_t i = 0; i < n; ++i) {
    int64_t rest = i, o = 0, mult = 1;
    for (int64_t d = static_cast<int64_t>(s.size()) - 1; d >= 0; --d) {
      const int64_t c = rest % s[static_cast<size_t>(d)];
      rest /= s[static_cast<size_t>(d)];
      o += (k[static_cast<size_t>(d)] == 1 ? 0 : c) * mult;
      mult *= k[static_cast<size_t>(d)];
    }
    out[static_cast<size_t>(o)] += x[static_cast<size_t>(i)];
  }
  if (mean) {
    const double count = static_cast<double>(n) / static_cast<double>(out.size());
    for (auto& v : out) v /= count;
  }
  return out;
}

TEST(OpsReduce, SumAndMeanOverAllElements) {
  for (DType dt : kFloatDTypes) {
    Tensor x = from({1, 2, 3, 4, 5, 6}, {2, 3}, dt);
    Tensor s = sum(x), m = mean(x);
    EXPECT_TRUE(matches(s, {}, {21.0}, dt));
    EXPECT_TRUE(matches(m, {}, {3.5}, dt));
  }
}

TEST(OpsReduce, SumAndMeanOverDimsWithAndWithoutKeepdim) {
  const Shape s{2, 3, 4};
  const std::vector<std::vector<int64_t>> dim_sets = {{0}, {1}, {2}, {-1}, {0, 2}, {2, 0}, {0, 1, 2}};
  for (bool is_mean : {false, true}) {
    for (const auto& dims : dim_sets) {
      for (bool keepdim : {false, true}) {
        for (DType dt : kFloatDTypes) {
          SCOPED_TRACE(std::string(is_mean ? "mean" : "sum") + " dims " +
                       shape_str(Shape(dims.begin(), dims.end())) + (keepdim ? " keepdim " : " ") +
                       dtype_name(dt));
          Tensor x = uniform(s, -2, 2, 40, dt);
          std::vector<int64_t> wrapped;
          for (int64_t d : dims) wrapped.push_back(d < 0 ? d + 3 : d);
          Shape kept;
          const auto want = reduce_ref(values(x), s, wrapped, is_mean, &kept);
          Shape out_shape;
          for (size_t d = 0; d < s.size(); ++d) {
            const bool reduced =
                std::find(wrapped.begin(), wrapped.end(), static_cast<int64_t>(d)) != wrapped.end();
            if (!reduced) out_shape.push_back(s[d]);
            else if (keepdim) out_shape.push_back(1);
          }
          Tensor y = is_mean ? mean(x, dims, keepdim) : sum(x, dims, keepdim);
          EXPECT_TRUE(matches(y, out_shape, want, dt));
        }
      }
    }
  }
}

TEST(OpsReduce, SumAndMeanBackwardPassTheGradientCheck) {
  for (bool is_mean : {false, true}) {
    SCOPED_TRACE(is_mean ? "mean" : "sum");
    auto all = [&](const std::vector<Tensor>& in) { return is_mean ? mean(in[0]) : sum(in[0]); };
    EXPECT_TRUE(grad_ok(all, {leaf({2, 3}, -1, 1, 1)}));
    EXPECT_TRUE(grad_ok(all, {leaf({}, -1, 1, 2)}));
    for (bool keepdim : {false, true}) {
      for (const std::vector<int64_t>& dims : {std::vector<int64_t>{0}, {-1}, {0, 2}, {1}}) {
        EXPECT_TRUE(grad_ok(
            [&](const std::vector<Tensor>& in) {
              return is_mean ? mean(in[0], dims, keepdim) : sum(in[0], dims, keepdim);
            },
            {leaf({2, 3, 2}, -1, 1, 3)}));
      }
    }
    // Through a transposed view.
    EXPECT_TRUE(grad_ok(
        [&](const std::vector<Tensor>& in) {
          return is_mean ? mean(in[0].t(), {1}) : sum(in[0].t(), {1});
        },
        {leaf({3, 2}, -1, 1, 4)}));
  }
}

TEST(OpsReduce, SumOfAnEmptyTensorIsZeroAndItsMeanIsNaN) {
  for (DType dt : kFloatDTypes) {
    EXPECT_TRUE(matches(sum(zeros({0}, {.dtype = dt})), {}, {0.0}, dt));
    EXPECT_TRUE(matches(sum(zeros({2, 0}, {.dtype = dt})), {}, {0.0}, dt));
    EXPECT_TRUE(matches(sum(zeros({2, 0}, {.dtype = dt}), {1}), {2}, {0.0, 0.0}, dt));
    EXPECT_TRUE(matches(sum(zeros({2, 0}, {.dtype = dt}), {0}, true), {1, 0}, {}, dt));
    EXPECT_TRUE(std::isnan(mean(zeros({0}, {.dtype = dt})).item()));
  }
  EXPECT_EQ(sum(zeros({0}, {.dtype = kInt64})).item<int64_t>(), 0);
  // Its gradient is empty.
  Tensor e = leaf({0, 3}, 0, 1, 5);
  sum(e).backward();
  EXPECT_EQ(e.grad().shape(), (Shape{0, 3}));
}

TEST(OpsReduce, RankZeroAndSizeOneInputs) {
  Tensor s = scalar_tensor(4.0, {.dtype = kFloat64});
  EXPECT_TRUE(matches(sum(s), {}, {4.0}, kFloat64));
  EXPECT_TRUE(matches(mean(s), {}, {4.0}, kFloat64));
  EXPECT_TRUE(matches(sum(s, {0}), {}, {4.0}, kFloat64));
  EXPECT_TRUE(matches(sum(full({1, 1}, 2.0), {0, 1}, true), {1, 1}, {2.0}, kFloat32));
  EXPECT_TRUE(matches(mean(full({1}, 2.0)), {}, {2.0}, kFloat32));
}

TEST(OpsReduce, SumOverAnEmptyDimListReducesEverythingLikePyTorch) {
  Tensor x = leaf({2, 3}, -1, 1, 6);
  Tensor y = sum(x, std::vector<int64_t>{});
  EXPECT_EQ(y.shape(), Shape{});
  EXPECT_TRUE(tensor_close(y, {sum(x).item()}, tolerance_for(kFloat64)));
  EXPECT_TRUE(x.is_leaf());
  EXPECT_EQ(mean(x, std::vector<int64_t>{}, true).shape(), (Shape{1, 1}));
  EXPECT_TRUE(grad_ok([](const std::vector<Tensor>& in) { return mean(in[0], std::vector<int64_t>{}); },
                      {leaf({2, 3}, -1, 1, 7)}));
}

TEST(OpsReduce, SumOfBoolCountsAsInt64) {
  Tensor b = bools({1, 0, 1, 1, 0}, {5});
  Tensor s = sum(b);
  EXPECT_EQ(s.dtype(), kInt64);
  EXPECT_EQ(s.item<int64_t>(), 3);
  Tensor per_row = sum(bools({1, 1, 0, 1, 0, 0}, {2, 3}), {1});
  EXPECT_EQ(per_row.dtype(), kInt64);
  EXPECT_EQ(int_values(per_row), (std::vector<int64_t>{2, 1}));
  // uint8 and int32 widen to int64; int64 stays int64.
  Tensor u = Tensor::from_vector(std::vector<uint8_t>{200, 200}, {2});
  EXPECT_EQ(sum(u).dtype(), kInt64);
  EXPECT_EQ(sum(u).item<int64_t>(), 400);
  EXPECT_EQ(sum(Tensor::from_vector(std::vector<int32_t>{-5, 7}, {2})).item<int64_t>(), 2);
  EXPECT_EQ(sum(int64s({1, 2, 3, 4}, {2, 2}), {0}).dtype(), kInt64);
  EXPECT_EQ(int_values(sum(int64s({1, 2, 3, 4}, {2, 2}), {0})), (std::vector<int64_t>{4, 6}));
}

TEST(OpsReduce, SumOfManyFloat32sKeepsItsDigits) {
  // A float running sum would stall at 2^24; the accumulation is in double.
  const int64_t n = (int64_t{1} << 24) + 64;
  EXPECT_EQ(sum(ones({n})).item(), static_cast<double>(n));
  EXPECT_EQ(values(sum(ones({2, n / 2}), {1})), (std::vector<double>{n / 2.0, n / 2.0}));
}

TEST(OpsReduce, RankZeroArgmaxIsZeroAndItsDimIsChecked) {
  Tensor s = scalar_tensor(5.0);
  EXPECT_EQ(argmax(s, 0).item<int64_t>(), 0);
  EXPECT_EQ(argmin(s, -1).item<int64_t>(), 0);
  EXPECT_EQ(ember::max(s, 0).values.item(), 5.0);
  EXPECT_TRUE(throws<ShapeError>([&] { argmax(s, 1); }, {"max", "rank 0"}));
}

TEST(OpsReduce, MeanOfIntegersIsRefused) {
  EXPECT_TRUE(throws<DTypeError>([] { mean(int64s({1, 2}, {2})); }, {"mean", "int64"}));
}

TEST(OpsReduce, BadDimsAreShapeErrors) {
  EXPECT_TRUE(throws<ShapeError>([] { sum(zeros({2, 3}), {2}); }, {"sum", "2", "rank 2"}));
  EXPECT_TRUE(throws<ShapeError>([] { mean(zeros({2, 3}), {-3}); }, {"mean"}));
  EXPECT_TRUE(throws<ShapeError>([] { sum(zeros({2, 3}), {1, -1}); }, {"sum", "more than once"}));
}

TEST(OpsReduce, MaxAndMinOverAllElements) {
  for (DType dt : kFloatDTypes) {
    Tensor x = from({3, -1, 7, 2, 7, -4}, {2, 3}, dt);
    EXPECT_TRUE(matches(ember::max(x), {}, {7.0}, dt));
    EXPECT_TRUE(matches(ember::min(x), {}, {-4.0}, dt));
  }
  // The gradient goes to the first occurrence of the extreme.
  Tensor x = from({3, -1, 7, 2, 7, -4}, {2, 3});
  x.requires_grad_(true);
  ember::max(x).backward();
  EXPECT_EQ(values(x.grad()), (std::vector<double>{0, 0, 1, 0, 0, 0}));
  Tensor distinct = from({0.3, 0.9, -0.2, 0.1}, {2, 2});
  distinct.requires_grad_(true);
  EXPECT_TRUE(grad_ok([](const std::vector<Tensor>& in) { return ember::max(in[0]); }, {distinct}));
  EXPECT_TRUE(grad_ok([](const std::vector<Tensor>& in) { return ember::min(in[0]); }, {distinct}));
}

TEST(OpsReduce, MaxAndMinOverADimGiveValuesAndIndices) {
  for (DType dt : kFloatDTypes) {
    Tensor x = from({1, 5, 3, 9, 2, 4}, {2, 3}, dt);
    auto r = ember::max(x, 1);
    EXPECT_TRUE(matches(r.values, {2}, {5, 9}, dt));
    EXPECT_EQ(r.indices.dtype(), kInt64);
    EXPECT_EQ(int_values(r.indices), (std::vector<int64_t>{1, 0}));
    auto m = ember::min(x, 0, true);
    EXPECT_TRUE(matches(m.values, {1, 3}, {1, 2, 3}, dt));
    EXPECT_EQ(int_values(m.indices), (std::vector<int64_t>{0, 1, 0}));
    auto last = ember::max(x, -1, true);
    EXPECT_EQ(last.values.shape(), (Shape{2, 1}));
  }
}

TEST(OpsReduce, MaxAndMinValuesBackwardPassTheGradientCheck) {
  // Distinct values, so the argmax is stable under the finite-difference step.
  for (bool is_max : {true, false}) {
    for (int64_t dim : {0, 1, -1}) {
      for (bool keepdim : {false, true}) {
        EXPECT_TRUE(grad_ok(
            [&](const std::vector<Tensor>& in) {
              return is_max ? ember::max(in[0], dim, keepdim).values
                            : ember::min(in[0], dim, keepdim).values;
            },
            {leaf({3, 4}, -2, 2, 60 + dim)}));
      }
    }
    EXPECT_TRUE(grad_ok(
        [&](const std::vector<Tensor>& in) {
          return is_max ? ember::max(in[0], 1).values : ember::min(in[0], 1).values;
        },
        {leaf({2, 3, 2}, -2, 2, 64)}));
    EXPECT_TRUE(grad_ok(
        [&](const std::vector<Tensor>& in) {
          return is_max ? ember::max(in[0].t(), 0).values : ember::min(in[0].t(), 0).values;
        },
        {leaf({3, 2}, -2, 2, 65)}));
  }
}

TEST(OpsReduce, ArgmaxAndArgminPickTheFirstOfTies) {
  Tensor x = from({1, 3, 3, 0, 0, 2}, {2, 3}, kFloat32);
  EXPECT_EQ(int_values(argmax(x, 1)), (std::vector<int64_t>{1, 2}));
  EXPECT_EQ(int_values(argmin(x, 1)), (std::vector<int64_t>{0, 0}));
  EXPECT_EQ(argmax(x, 1, true).shape(), (Shape{2, 1}));
  Tensor y = from({2, 2, 2, 2}, {4}, kFloat32);
  EXPECT_EQ(int_values(argmax(y, 0)), (std::vector<int64_t>{0}));
  EXPECT_EQ(int_values(argmin(y, 0)), (std::vector<int64_t>{0}));
  // Integer inputs, and a non-contiguous view.
  Tensor i = int64s({4, 9, 9, 1, 0, 0}, {2, 3});
  EXPECT_EQ(int_values(argmax(i, 1)), (std::vector<int64_t>{1, 0}));
  EXPECT_EQ(int_values(argmin(i.t(), 0)), (std::vector<int64_t>{0, 1}));
  EXPECT_EQ(argmax(x, 0).dtype(), kInt64);
}

TEST(OpsReduce, MaxOfIntegersKeepsTheDtype) {
  Tensor i = int64s({4, -9, 12}, {3});
  EXPECT_EQ(ember::max(i).dtype(), kInt64);
  EXPECT_EQ(ember::max(i).item<int64_t>(), 12);
  EXPECT_EQ(ember::min(i, 0).values.item<int64_t>(), -9);
}

TEST(OpsReduce, NaNIsTheExtreme) {
  Tensor x = from({1.0, std::nan(""), 3.0}, {3}, kFloat32);
  EXPECT_TRUE(std::isnan(ember::max(x).item()));
  EXPECT_TRUE(std::isnan(ember::min(x).item()));
  EXPECT_EQ(argmax(x, 0).item<int64_t>(), 1);
}

TEST(OpsReduce, ExtremaOverAnEmptyDimAreShapeErrors) {
  Tensor e = zeros({0, 3});
  EXPECT_TRUE(throws<ShapeError>([&] { argmax(e, 0); }, {"max", "empty", "[0, 3]"}));
  EXPECT_TRUE(throws<ShapeError>([&] { argmin(e, 0); }, {"min", "empty"}));
  EXPECT_TRUE(throws<ShapeError>([&] { ember::max(e); }, {"max", "empty"}));
  EXPECT_TRUE(throws<ShapeError>([&] { ember::min(e, 0); }, {"min", "empty"}));
  // Reducing a non-empty dim of an empty tensor is fine.
  EXPECT_EQ(argmax(e, 1).shape(), (Shape{0}));
  EXPECT_TRUE(throws<ShapeError>([] { argmax(zeros({2, 3}), 2); }, {"max", "rank 2"}));
}

// ===========================================================================================
// matmul and linear
// ===========================================================================================

// NumPy matmul for ranks 1 to 3 (batch of 1 broadcasts).
std::vector<double> matmul_ref(const std::vector<double>& a, Shape sa, const std::vector<double>& b,
                               Shape sb, Shape* out_shape) {
  const bool a_vec = sa.size() == 1, b_vec = sb.size() == 1;
  if (a_vec) sa = {1, sa[0]};
  if (b_vec) sb = {sb[0], 1};
  const int64_t ba = sa.size() == 3 ? sa[0] : 1, bb = sb.size() == 3 ? sb[0] : 1;
  const int64_t batch = std::max(ba, bb);
  const int64_t m = sa[sa.size() - 2], k = sa.back(), n = sb.back();
  std::vector<double> c(static_cast<size_t>(batch * m * n), 0.0);
  for (int64_t z = 0; z < batch; ++z) {
    const int64_t za = ba == 1 ? 0 : z, zb = bb == 1 ? 0 : z;
    for (int64_t i = 0; i < m; ++i) {
      for (int64_t j = 0; j < n; ++j) {
        double acc = 0;
        for (int64_t p = 0; p < k; ++p) {
          acc += a[static_cast<size_t>((za * m + i) * k + p)] * b[static_cast<size_t>((zb * k + p) * n + j)];
        }
        c[static_cast<size_t>((z * m + i) * n + j)] = acc;
      }
    }
  }
  Shape out;
  if (sa.size() == 3 || sb.size() == 3) out.push_back(batch);
  if (!a_vec) out.push_back(m);
  if (!b_vec) out.push_back(n);
  *out_shape = out;
  return c;
}

const std::vector<std::pair<Shape, Shape>> kMatmulShapes = {
    {{4}, {4}},          // 1-D . 1-D -> rank 0
    {{3, 4}, {4}},       // 2-D @ 1-D
    {{4}, {4, 2}},       // 1-D @ 2-D
    {{3, 4}, {4, 2}},    // 2-D
    {{2, 3, 4}, {2, 4, 5}},  // batched
    {{2, 3, 4}, {4, 5}},     // 3-D @ 2-D
    {{3, 4}, {2, 4, 5}},     // 2-D @ 3-D
    {{1, 1}, {1, 1}},
    {{1, 4}, {4, 1}},
};

TEST(OpsMatmul, ForwardMatchesTheReferenceForEveryRankCombination) {
  uint64_t seed = 70;
  for (const auto& [sa, sb] : kMatmulShapes) {
    for (DType dt : kFloatDTypes) {
      SCOPED_TRACE(shape_str(sa) + " @ " + shape_str(sb) + " " + dtype_name(dt));
      Tensor a = uniform(sa, -1, 1, seed++, dt), b = uniform(sb, -1, 1, seed++, dt);
      Shape out_shape;
      const auto want = matmul_ref(values(a), sa, values(b), sb, &out_shape);
      EXPECT_TRUE(matches(matmul(a, b), out_shape, want, dt));
    }
  }
}

TEST(OpsMatmul, BackwardPassesTheGradientCheckForEveryRankCombination) {
  uint64_t seed = 90;
  for (const auto& [sa, sb] : kMatmulShapes) {
    SCOPED_TRACE(shape_str(sa) + " @ " + shape_str(sb));
    Tensor a = leaf(sa, -1, 1, seed++), b = leaf(sb, -1, 1, seed++);
    EXPECT_TRUE(grad_ok([](const std::vector<Tensor>& in) { return matmul(in[0], in[1]); }, {a, b}));
  }
}

TEST(OpsMatmul, TransposedAndExpandedOperandsGiveTheSameResult) {
  Tensor a = leaf({4, 3}, -1, 1, 1), b = leaf({2, 4}, -1, 1, 2);
  auto fn = [](const std::vector<Tensor>& in) { return matmul(in[0].t(), in[1].t()); };
  Tensor want = matmul(a.t().contiguous(), b.t().contiguous());
  EXPECT_TRUE(tensor_close(fn({a, b}), values(want), tolerance_for(kFloat64)));
  EXPECT_TRUE(grad_ok(fn, {a, b}));
  // Batched, transposed in the matrix dims, and a batch-broadcast (stride 0) operand.
  Tensor c = leaf({2, 4, 3}, -1, 1, 3), d = leaf({1, 4, 5}, -1, 1, 4);
  auto fn3 = [](const std::vector<Tensor>& in) {
    return matmul(in[0].transpose(1, 2), in[1].expand({2, 4, 5}));
  };
  Tensor want3 = matmul(c.transpose(1, 2).contiguous(), d.expand({2, 4, 5}).contiguous());
  EXPECT_TRUE(tensor_close(fn3({c, d}), values(want3), tolerance_for(kFloat64)));
  EXPECT_TRUE(grad_ok(fn3, {c, d}));
  // A column narrowed out of a wider matrix (row stride larger than the row).
  Tensor e = leaf({3, 6}, -1, 1, 5), f = leaf({4, 2}, -1, 1, 6);
  EXPECT_TRUE(grad_ok([](const std::vector<Tensor>& in) { return matmul(in[0].narrow(1, 1, 4), in[1]); },
                      {e, f}));
}

TEST(OpsMatmul, InnerSizeZeroGivesZeros) {
  for (DType dt : kFloatDTypes) {
    EXPECT_TRUE(matches(matmul(zeros({2, 0}, {.dtype = dt}), zeros({0, 3}, {.dtype = dt})), {2, 3},
                        std::vector<double>(6, 0.0), dt));
    EXPECT_TRUE(matches(matmul(zeros({2, 2, 0}, {.dtype = dt}), zeros({2, 0, 3}, {.dtype = dt})),
                        {2, 2, 3}, std::vector<double>(12, 0.0), dt));
    EXPECT_TRUE(matches(matmul(zeros({0}, {.dtype = dt}), zeros({0}, {.dtype = dt})), {}, {0.0}, dt));
  }
  // Backward: empty gradients of the input shapes, for every rank combination.
  for (const auto& [sa, sb] : std::vector<std::pair<Shape, Shape>>{
           {{2, 0}, {0, 3}}, {{2, 2, 0}, {2, 0, 3}}, {{2, 2, 0}, {0, 3}}, {{2, 0}, {2, 0, 3}}, {{0}, {0}}}) {
    SCOPED_TRACE(shape_str(sa) + " @ " + shape_str(sb));
    Tensor a = leaf(sa, 0, 1, 1), b = leaf(sb, 0, 1, 2);
    sum(matmul(a, b)).backward();
    EXPECT_EQ(a.grad().shape(), sa);
    EXPECT_EQ(b.grad().shape(), sb);
  }
}

TEST(OpsMatmul, EmptyOuterSizesGiveEmptyResults) {
  EXPECT_EQ(matmul(zeros({0, 3}), zeros({3, 4})).shape(), (Shape{0, 4}));
  EXPECT_EQ(matmul(zeros({2, 3}), zeros({3, 0})).shape(), (Shape{2, 0}));
  EXPECT_EQ(matmul(zeros({0, 2, 3}), zeros({0, 3, 4})).shape(), (Shape{0, 2, 4}));
  for (const auto& [sa, sb] : std::vector<std::pair<Shape, Shape>>{
           {{0, 3}, {3, 4}}, {{2, 3}, {3, 0}}, {{2, 0, 3}, {3, 4}}, {{2, 3}, {2, 3, 0}}}) {
    SCOPED_TRACE(shape_str(sa) + " @ " + shape_str(sb));
    Tensor a = leaf(sa, 0, 1, 1), b = leaf(sb, 0, 1, 2);
    sum(matmul(a, b)).backward();
    EXPECT_EQ(values(a.grad()), std::vector<double>(static_cast<size_t>(shape_numel(sa)), 0.0));
    EXPECT_EQ(values(b.grad()), std::vector<double>(static_cast<size_t>(shape_numel(sb)), 0.0));
  }
}

TEST(OpsMatmul, ShapeMismatchSaysTheShapesCannotBeMultiplied) {
  EXPECT_TRUE(throws<ShapeError>([] { matmul(zeros({2, 3}), zeros({4, 5})); },
                                 {"matmul", "[2, 3]", "[4, 5]", "cannot be multiplied", "3 != 4"}));
  // Vector operands are named as given, not as the matrices they become.
  EXPECT_TRUE(throws<ShapeError>([] { matmul(zeros({3}), zeros({4})); },
                                 {"matmul", "[3] and [4]", "cannot be multiplied"}));
  EXPECT_TRUE(throws<ShapeError>([] { matmul(zeros({2, 3}), zeros({4})); },
                                 {"matmul", "[2, 3] and [4]", "cannot be multiplied"}));
  EXPECT_TRUE(throws<ShapeError>([] { matmul(zeros({3}), zeros({2, 4, 5})); },
                                 {"matmul", "[3] and [2, 4, 5]", "cannot be multiplied"}));
  EXPECT_TRUE(throws<ShapeError>([] { matmul(zeros({2, 2, 3}), zeros({3, 3, 4})); },
                                 {"matmul", "[2, 2, 3]", "[3, 3, 4]"}));
  EXPECT_TRUE(throws<ShapeError>([] { matmul(zeros({}), zeros({3})); }, {"matmul", "rank"}));
  EXPECT_TRUE(throws<ShapeError>([] { matmul(zeros({1, 1, 2, 3}), zeros({3, 2})); },
                                 {"matmul", "rank", "[1, 1, 2, 3]"}));
}

TEST(OpsMatmul, DtypeErrorsNameTheOpAndBothDtypes) {
  EXPECT_TRUE(throws<DTypeError>([] { matmul(zeros({2, 3}), zeros({3, 2}, {.dtype = kFloat64})); },
                                 {"matmul", "float32", "float64"}));
  EXPECT_TRUE(throws<DTypeError>([] { matmul(int64s({1, 2}, {1, 2}), int64s({1, 2}, {2, 1})); },
                                 {"matmul", "int64"}));
}

std::vector<double> linear_ref(const std::vector<double>& x, int64_t rows, int64_t in,
                               const std::vector<double>& w, int64_t out, const std::vector<double>* b) {
  std::vector<double> y(static_cast<size_t>(rows * out));
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t o = 0; o < out; ++o) {
      double acc = b ? (*b)[static_cast<size_t>(o)] : 0.0;
      for (int64_t i = 0; i < in; ++i) {
        acc += x[static_cast<size_t>(r * in + i)] * w[static_cast<size_t>(o * in + i)];
      }
      y[static_cast<size_t>(r * out + o)] = acc;
    }
  }
  return y;
}

TEST(OpsLinear, ForwardMatchesTheReferenceWithAndWithoutBias) {
  for (DType dt : kFloatDTypes) {
    for (const Shape& xs : {Shape{5, 4}, Shape{2, 3, 4}, Shape{4}, Shape{1, 4}}) {
      for (bool with_bias : {false, true}) {
        SCOPED_TRACE(shape_str(xs) + (with_bias ? " bias " : " ") + dtype_name(dt));
        Tensor x = uniform(xs, -1, 1, 1, dt), w = uniform({3, 4}, -1, 1, 2, dt);
        Tensor b = with_bias ? uniform({3}, -1, 1, 3, dt) : Tensor();
        const auto vb = with_bias ? values(b) : std::vector<double>();
        const auto want = linear_ref(values(x), shape_numel(xs) / 4, 4, values(w), 3,
                                     with_bias ? &vb : nullptr);
        Shape out_shape(xs.begin(), xs.end() - 1);
        out_shape.push_back(3);
        EXPECT_TRUE(matches(linear(x, w, b), out_shape, want, dt));
      }
    }
  }
}

TEST(OpsLinear, BackwardPassesTheGradientCheck) {
  for (const Shape& xs : {Shape{5, 4}, Shape{2, 3, 4}, Shape{4}}) {
    SCOPED_TRACE(shape_str(xs));
    EXPECT_TRUE(grad_ok([](const std::vector<Tensor>& in) { return linear(in[0], in[1], in[2]); },
                        {leaf(xs, -1, 1, 1), leaf({3, 4}, -1, 1, 2), leaf({3}, -1, 1, 3)}));
    EXPECT_TRUE(grad_ok([](const std::vector<Tensor>& in) { return linear(in[0], in[1]); },
                        {leaf(xs, -1, 1, 4), leaf({3, 4}, -1, 1, 5)}));
  }
  // A transposed weight (as a tied embedding would pass) and a transposed input.
  EXPECT_TRUE(grad_ok(
      [](const std::vector<Tensor>& in) { return linear(in[0].t(), in[1].t(), in[2]); },
      {leaf({4, 5}, -1, 1, 6), leaf({4, 3}, -1, 1, 7), leaf({3}, -1, 1, 8)}));
  // Only some inputs need gradients.
  Tensor w = leaf({3, 4}, -1, 1, 9);
  Tensor x = uniform({2, 4}, -1, 1, 10);
  sum(linear(x, w)).backward();
  EXPECT_FALSE(x.grad().defined());
  EXPECT_EQ(w.grad().shape(), (Shape{3, 4}));
}

TEST(OpsLinear, ABatchOfOneLeavesTheBiasUntouched) {
  // One row makes the broadcast bias contiguous; the GEMM must not accumulate into it.
  Tensor x = from({1, 2}, {1, 2}), w = from({1, 0, 0, 1, 1, 1}, {3, 2}), b = from({10, 20, 30}, {3});
  for (int repeat = 0; repeat < 2; ++repeat) {
    EXPECT_EQ(values(linear(x, w, b)), (std::vector<double>{11, 22, 33}));
    EXPECT_EQ(values(linear(x.reshape({2}), w, b)), (std::vector<double>{11, 22, 33}));
  }
  EXPECT_EQ(values(b), (std::vector<double>{10, 20, 30}));
}

TEST(OpsLinear, ZeroSizedFeaturesAndRows) {
  // No input features: the output is the bias (or zeros).
  Tensor b = from({1, 2, 3}, {3});
  EXPECT_TRUE(matches(linear(zeros({2, 0}, {.dtype = kFloat64}), zeros({3, 0}, {.dtype = kFloat64}), b),
                      {2, 3}, {1, 2, 3, 1, 2, 3}, kFloat64));
  EXPECT_TRUE(matches(linear(zeros({2, 2, 0}), zeros({3, 0})), {2, 2, 3}, std::vector<double>(12, 0.0),
                      kFloat32));
  // No rows, and no output features.
  EXPECT_EQ(linear(zeros({0, 4}), zeros({3, 4}), zeros({3})).shape(), (Shape{0, 3}));
  EXPECT_EQ(linear(zeros({2, 5, 4}), zeros({0, 4})).shape(), (Shape{2, 5, 0}));
  // Backward through each of them gives gradients of the input shapes.
  for (const auto& [xs, ws] : std::vector<std::pair<Shape, Shape>>{
           {{2, 0}, {3, 0}}, {{2, 2, 0}, {3, 0}}, {{0, 4}, {3, 4}}, {{2, 5, 4}, {0, 4}}}) {
    SCOPED_TRACE(shape_str(xs) + " " + shape_str(ws));
    Tensor x = leaf(xs, 0, 1, 1), w = leaf(ws, 0, 1, 2), bb = leaf({ws[0]}, 0, 1, 3);
    sum(linear(x, w, bb)).backward();
    EXPECT_EQ(x.grad().shape(), xs);
    EXPECT_EQ(w.grad().shape(), ws);
    EXPECT_EQ(bb.grad().shape(), (Shape{ws[0]}));
  }
}

TEST(OpsLinear, FeatureMismatchNamesBothShapes) {
  EXPECT_TRUE(throws<ShapeError>([] { linear(zeros({2, 5}), zeros({3, 4})); },
                                 {"linear", "[2, 5]", "[3, 4]"}));
  EXPECT_TRUE(throws<ShapeError>([] { linear(zeros({2, 4}), zeros({3, 4}), zeros({2})); },
                                 {"linear", "bias", "[2]", "[3]"}));
  EXPECT_TRUE(throws<ShapeError>([] { linear(zeros({2, 4}), zeros({4})); }, {"linear", "weight", "[4]"}));
  EXPECT_TRUE(throws<ShapeError>([] { linear(zeros({}), zeros({3, 4})); }, {"linear", "[]", "[3, 4]"}));
  EXPECT_TRUE(throws<DTypeError>([] { linear(zeros({2, 4}), zeros({3, 4}), zeros({3}, {.dtype = kFloat64})); },
                                 {"linear", "float32", "float64"}));
}

// ===========================================================================================
// Losses
// ===========================================================================================

// Per-row label-smoothed cross entropy (0 for ignored rows).
std::vector<double> cross_entropy_rows(const std::vector<double>& x, int64_t N, int64_t C,
                                       const std::vector<int64_t>& t, int64_t ignore, double s) {
  std::vector<double> rows(static_cast<size_t>(N), 0.0);
  for (int64_t r = 0; r < N; ++r) {
    if (t[static_cast<size_t>(r)] == ignore) continue;
    double m = -INFINITY;
    for (int64_t c = 0; c < C; ++c) m = std::max(m, x[static_cast<size_t>(r * C + c)]);
    double z = 0;
    for (int64_t c = 0; c < C; ++c) z += std::exp(x[static_cast<size_t>(r * C + c)] - m);
    const double lse = m + std::log(z);
    double smooth = 0;
    for (int64_t c = 0; c < C; ++c) smooth += (lse - x[static_cast<size_t>(r * C + c)]) / C;
    const double nll = lse - x[static_cast<size_t>(r * C + t[static_cast<size_t>(r)])];
    rows[static_cast<size_t>(r)] = (1 - s) * nll + s * smooth;
  }
  return rows;
}

std::vector<double> reduce_rows_ref(const std::vector<double>& rows, Reduction red, double count) {
  if (red == Reduction::None) return rows;
  const double total = std::accumulate(rows.begin(), rows.end(), 0.0);
  return {red == Reduction::Sum ? total : total / count};
}

const char* reduction_label(Reduction r) {
  return r == Reduction::None ? "none" : r == Reduction::Mean ? "mean" : "sum";
}

const std::vector<Reduction> kReductions = {Reduction::None, Reduction::Mean, Reduction::Sum};

TEST(OpsCrossEntropy, ForwardMatchesTheReferenceForEveryReduction) {
  const int64_t N = 4, C = 5;
  const std::vector<int64_t> t = {0, 4, 2, 1};
  for (Reduction red : kReductions) {
    for (double smoothing : {0.0, 0.2}) {
      for (int64_t ignore : {int64_t{-100}, int64_t{2}}) {
        for (DType dt : kFloatDTypes) {
          SCOPED_TRACE(std::string(reduction_label(red)) + " smoothing " + std::to_string(smoothing) +
                       " ignore " + std::to_string(ignore) + " " + dtype_name(dt));
          Tensor x = uniform({N, C}, -3, 3, 11, dt);
          const auto rows = cross_entropy_rows(values(x), N, C, t, ignore, smoothing);
          const double count = static_cast<double>(std::count_if(t.begin(), t.end(), [&](int64_t v) {
            return v != ignore;
          }));
          const auto want = reduce_rows_ref(rows, red, count);
          Tensor y = cross_entropy(x, int64s(t, {N}),
                                   {.reduction = red, .ignore_index = ignore, .label_smoothing = smoothing});
          EXPECT_TRUE(matches(y, red == Reduction::None ? Shape{N} : Shape{}, want, dt));
        }
      }
    }
  }
}

TEST(OpsCrossEntropy, BackwardPassesTheGradientCheck) {
  const Tensor t = int64s({0, 4, 2, 1}, {4});
  for (Reduction red : kReductions) {
    for (double smoothing : {0.0, 0.3}) {
      for (int64_t ignore : {int64_t{-100}, int64_t{4}}) {
        SCOPED_TRACE(std::string(reduction_label(red)) + " smoothing " + std::to_string(smoothing) +
                     " ignore " + std::to_string(ignore));
        EXPECT_TRUE(grad_ok(
            [&](const std::vector<Tensor>& in) {
              return cross_entropy(in[0], t,
                                   {.reduction = red, .ignore_index = ignore, .label_smoothing = smoothing});
            },
            {leaf({4, 5}, -2, 2, 12)}));
      }
    }
  }
  // A transposed (non-contiguous) logits view.
  EXPECT_TRUE(grad_ok([&](const std::vector<Tensor>& in) { return cross_entropy(in[0].t(), t); },
                      {leaf({5, 4}, -2, 2, 13)}));
}

TEST(OpsCrossEntropy, NonContiguousTargetsAreRead) {
  Tensor x = uniform({3, 4}, -2, 2, 18);
  Tensor wide = int64s({1, 9, 3, 9, 0, 9}, {6});
  Tensor t = wide.slice(0, 0, 6, 2);  // {1, 3, 0}, stride 2
  ASSERT_FALSE(t.is_contiguous());
  EXPECT_TRUE(tensor_close(cross_entropy(x, t), values(cross_entropy(x, int64s({1, 3, 0}, {3}))),
                           tolerance_for(kFloat64)));
  EXPECT_TRUE(tensor_close(nll_loss(x, t), values(nll_loss(x, int64s({1, 3, 0}, {3}))),
                           tolerance_for(kFloat64)));
}

TEST(OpsCrossEntropy, EqualsLogSoftmaxFollowedByNll) {
  Tensor x = uniform({3, 6}, -2, 2, 14);
  Tensor t = int64s({5, 0, 3}, {3});
  EXPECT_TRUE(tensor_close(cross_entropy(x, t), values(nll_loss(log_softmax(x, 1), t)),
                           tolerance_for(kFloat64)));
}

TEST(OpsCrossEntropy, IsStableForLargeLogits) {
  Tensor x = from({1000, 0, -1000, 0, 1000, 0}, {2, 3}, kFloat32);
  const auto v = values(cross_entropy(x, int64s({0, 0}, {2}), {.reduction = Reduction::None}));
  EXPECT_NEAR(v[0], 0.0, 1e-6);
  EXPECT_NEAR(v[1], 1000.0, 1e-2);
}

TEST(OpsCrossEntropy, AllRowsIgnoredOrNoRows) {
  Tensor x = uniform({2, 3}, -1, 1, 15);
  Tensor t = int64s({-100, -100}, {2});
  EXPECT_EQ(cross_entropy(x, t, {.reduction = Reduction::Sum}).item(), 0.0);
  EXPECT_TRUE(std::isnan(cross_entropy(x, t).item()));  // 0 / 0, as PyTorch
  Tensor e = zeros({0, 3});
  EXPECT_EQ(cross_entropy(e, int64s({}, {0}), {.reduction = Reduction::Sum}).item(), 0.0);
  EXPECT_EQ(cross_entropy(e, int64s({}, {0}), {.reduction = Reduction::None}).shape(), (Shape{0}));
  // A single class always has loss 0.
  EXPECT_TRUE(tensor_close(cross_entropy(full({2, 1}, 3.0), int64s({0, 0}, {2})), {0.0},
                           tolerance_for(kFloat32)));
}

TEST(OpsCrossEntropy, FloatTargetsAreRefusedWithBothDtypes) {
  EXPECT_TRUE(throws<DTypeError>([] { cross_entropy(zeros({2, 3}), zeros({2})); },
                                 {"cross_entropy", "int64", "float32"}));
  EXPECT_TRUE(throws<DTypeError>([] { nll_loss(zeros({2, 3}), zeros({2})); }, {"nll_loss", "int64"}));
  EXPECT_TRUE(throws<DTypeError>([] { cross_entropy(int64s({1, 2}, {1, 2}), int64s({0}, {1})); },
                                 {"cross_entropy", "int64"}));
}

TEST(OpsCrossEntropy, OutOfRangeTargetsAreAShapeErrorNamingTheCount) {
  EXPECT_TRUE(throws<ShapeError>([] { cross_entropy(zeros({3, 4}), int64s({0, 4, 1}, {3})); },
                                 {"cross_entropy", "1 of 3", "[0, 4)"}));
  EXPECT_TRUE(throws<ShapeError>([] { cross_entropy(zeros({3, 4}), int64s({-1, 9, 1}, {3})); },
                                 {"cross_entropy", "2 of 3"}));
  EXPECT_TRUE(throws<ShapeError>([] { nll_loss(zeros({2, 4}), int64s({5, 0}, {2})); },
                                 {"nll_loss", "1 of 2"}));
  // ignore_index itself may lie outside the class range.
  EXPECT_NO_THROW(cross_entropy(zeros({2, 4}), int64s({-100, 3}, {2})));
}

TEST(OpsCrossEntropy, WrongRanksAndShapesAreShapeErrors) {
  EXPECT_TRUE(throws<ShapeError>([] { cross_entropy(zeros({2, 3, 4}), int64s({0, 1}, {2})); },
                                 {"cross_entropy", "[N, C]", "[2, 3, 4]"}));
  EXPECT_TRUE(throws<ShapeError>([] { cross_entropy(zeros({3}), int64s({0}, {1})); },
                                 {"cross_entropy", "[3]"}));
  EXPECT_TRUE(throws<ShapeError>([] { cross_entropy(zeros({2, 3}), int64s({0, 1, 2}, {3})); },
                                 {"cross_entropy", "[3]", "[2]", "[2, 3]"}));
  EXPECT_TRUE(throws<ShapeError>([] { nll_loss(zeros({2, 3}), int64s({0, 1}, {1, 2})); },
                                 {"nll_loss", "[1, 2]"}));
}

TEST(OpsCrossEntropy, BadOptionsAreRefused) {
  EXPECT_TRUE(throws<Error>(
      [] { cross_entropy(zeros({2, 3}), int64s({0, 1}, {2}), {.label_smoothing = 1.5}); },
      {"cross_entropy", "label_smoothing"}));
  EXPECT_TRUE(throws<Error>(
      [] { nll_loss(zeros({2, 3}), int64s({0, 1}, {2}), {.label_smoothing = 0.1}); },
      {"nll_loss", "label_smoothing"}));
}

TEST(OpsNllLoss, ForwardIsMinusTheTargetLogProbability) {
  const std::vector<int64_t> t = {2, 0, 1};
  for (Reduction red : kReductions) {
    for (int64_t ignore : {int64_t{-100}, int64_t{0}}) {
      for (DType dt : kFloatDTypes) {
        SCOPED_TRACE(std::string(reduction_label(red)) + " ignore " + std::to_string(ignore) + " " +
                     dtype_name(dt));
        Tensor lp = uniform({3, 3}, -3, 0, 16, dt);
        const auto v = values(lp);
        std::vector<double> rows;
        double count = 0;
        for (int64_t r = 0; r < 3; ++r) {
          const bool ign = t[static_cast<size_t>(r)] == ignore;
          rows.push_back(ign ? 0.0 : -v[static_cast<size_t>(r * 3 + t[static_cast<size_t>(r)])]);
          count += ign ? 0 : 1;
        }
        Tensor y = nll_loss(lp, int64s(t, {3}), {.reduction = red, .ignore_index = ignore});
        EXPECT_TRUE(matches(y, red == Reduction::None ? Shape{3} : Shape{}, reduce_rows_ref(rows, red, count), dt));
      }
    }
  }
}

TEST(OpsNllLoss, BackwardPassesTheGradientCheck) {
  const Tensor t = int64s({2, 0, 1, 2}, {4});
  for (Reduction red : kReductions) {
    for (int64_t ignore : {int64_t{-100}, int64_t{1}}) {
      SCOPED_TRACE(std::string(reduction_label(red)) + " ignore " + std::to_string(ignore));
      EXPECT_TRUE(grad_ok(
          [&](const std::vector<Tensor>& in) {
            return nll_loss(in[0], t, {.reduction = red, .ignore_index = ignore});
          },
          {leaf({4, 3}, -3, 0, 17)}));
    }
  }
}

struct PointwiseCase {
  const char* name;
  Tensor (*op)(const Tensor&, const Tensor&, Reduction);
  std::function<double(double, double)> ref;
  double x_lo, x_hi, t_lo, t_hi;
  bool target_grad;  // the op differentiates its target too
};

const std::vector<PointwiseCase>& pointwise_cases() {
  static const std::vector<PointwiseCase> cases = {
      {"mse_loss", &mse_loss, [](double x, double t) { return (x - t) * (x - t); }, -2, 2, -2, 2, true},
      {"l1_loss", &l1_loss, [](double x, double t) { return std::fabs(x - t); }, -2, 2, -2, 2, true},
      {"binary_cross_entropy", &binary_cross_entropy,
       [](double x, double t) { return -(t * std::log(x) + (1 - t) * std::log(1 - x)); }, 0.05, 0.95, 0,
       1, false},
      {"binary_cross_entropy_with_logits", &binary_cross_entropy_with_logits,
       [](double x, double t) {
         const double s = 1 / (1 + std::exp(-x));
         return -(t * std::log(s) + (1 - t) * std::log(1 - s));
       },
       -4, 4, 0, 1, false},
  };
  return cases;
}

TEST(OpsPointwiseLoss, ForwardMatchesTheReferenceForEveryReduction) {
  uint64_t seed = 200;
  for (const auto& c : pointwise_cases()) {
    for (Reduction red : kReductions) {
      for (DType dt : kFloatDTypes) {
        SCOPED_TRACE(std::string(c.name) + " " + reduction_label(red) + " " + dtype_name(dt));
        const Shape s{2, 3};
        Tensor x = uniform(s, c.x_lo, c.x_hi, seed++, dt), t = uniform(s, c.t_lo, c.t_hi, seed++, dt);
        std::vector<double> rows;
        const auto vx = values(x), vt = values(t);
        for (size_t i = 0; i < vx.size(); ++i) rows.push_back(c.ref(vx[i], vt[i]));
        EXPECT_TRUE(matches(c.op(x, t, red), red == Reduction::None ? s : Shape{},
                            reduce_rows_ref(rows, red, 6.0), dt));
      }
    }
  }
}

TEST(OpsPointwiseLoss, BackwardPassesTheGradientCheck) {
  uint64_t seed = 300;
  for (const auto& c : pointwise_cases()) {
    for (Reduction red : kReductions) {
      SCOPED_TRACE(std::string(c.name) + " " + reduction_label(red));
      Tensor x = from(away_from_kinks(6, c.x_lo, c.x_hi, seed++), {2, 3});
      x.requires_grad_(true);
      // Targets kept 0.1 away from the inputs: l1 has a kink at x == t.
      auto tv = values(x);
      for (size_t i = 0; i < tv.size(); ++i) tv[i] = std::clamp(tv[i] + (i % 2 ? 0.3 : -0.3), c.t_lo, c.t_hi);
      Tensor t = from(tv, {2, 3});
      if (c.target_grad) t.requires_grad_(true);
      EXPECT_TRUE(grad_ok([&](const std::vector<Tensor>& in) { return c.op(in[0], in[1], red); }, {x, t}));
      // Through transposed views.
      EXPECT_TRUE(grad_ok([&](const std::vector<Tensor>& in) { return c.op(in[0].t(), in[1].t(), red); },
                          {x, t}));
    }
  }
}

TEST(OpsPointwiseLoss, BinaryCrossEntropyClampsItsLogsLikePyTorch) {
  // Predictions of exactly 0 and 1 give a loss of 100 (log clamped at -100), not inf.
  Tensor x = from({0.0, 1.0, 0.0, 1.0}, {4});
  Tensor t = from({1.0, 0.0, 0.0, 1.0}, {4});
  EXPECT_EQ(values(binary_cross_entropy(x, t, Reduction::None)), (std::vector<double>{100, 100, 0, 0}));
  // With logits, extreme inputs stay finite and exact.
  Tensor l = from({-1000.0, 1000.0}, {2}, kFloat32);
  Tensor lt_ = from({1.0, 0.0}, {2}, kFloat32);
  EXPECT_TRUE(tensor_close(binary_cross_entropy_with_logits(l, lt_, Reduction::None), {1000.0, 1000.0},
                           tolerance_for(kFloat32)));
}

TEST(OpsPointwiseLoss, EmptyInputsGiveZeroSumAndNaNMean) {
  for (const auto& c : pointwise_cases()) {
    SCOPED_TRACE(c.name);
    Tensor e = zeros({0, 2});
    EXPECT_EQ(c.op(e, e, Reduction::Sum).item(), 0.0);
    EXPECT_TRUE(std::isnan(c.op(e, e, Reduction::Mean).item()));
    EXPECT_EQ(c.op(e, e, Reduction::None).shape(), (Shape{0, 2}));
  }
}

TEST(OpsPointwiseLoss, MismatchedShapesAndDtypesNameBoth) {
  for (const auto& c : pointwise_cases()) {
    SCOPED_TRACE(c.name);
    EXPECT_TRUE(throws<ShapeError>([&] { c.op(zeros({2, 3}), zeros({3, 2}), Reduction::Mean); },
                                   {c.name, "[2, 3]", "[3, 2]"}));
    EXPECT_TRUE(throws<DTypeError>(
        [&] { c.op(zeros({2}), zeros({2}, {.dtype = kFloat64}), Reduction::Mean); },
        {c.name, "float32", "float64"}));
    EXPECT_TRUE(throws<DTypeError>([&] { c.op(int64s({1}, {1}), int64s({1}, {1}), Reduction::Mean); },
                                   {c.name, "int64"}));
  }
}

// ===========================================================================================
// Dropout
// ===========================================================================================

TEST(OpsDropout, EvaluationModeAndZeroProbabilityAreTheIdentity) {
  Tensor x = uniform({4, 5}, -1, 1, 1, kFloat32);
  EXPECT_EQ(values(dropout(x, 0.5, /*training=*/false)), values(x));
  EXPECT_EQ(values(dropout(x, 0.0, /*training=*/true)), values(x));
}

TEST(OpsDropout, MaskValuesAreZeroOrTheInverseKeepProbability) {
  for (DType dt : kFloatDTypes) {
    for (double p : {0.1, 0.5, 0.8}) {
      SCOPED_TRACE(std::string(dtype_name(dt)) + " p " + std::to_string(p));
      manual_seed(123);
      const int64_t n = 20000;
      const auto y = values(dropout(ones({n}, {.dtype = dt}), p));
      const double scale = dt == kFloat32 ? static_cast<double>(static_cast<float>(1.0 / (1.0 - p)))
                                          : 1.0 / (1.0 - p);
      int64_t kept = 0;
      for (double v : y) {
        EXPECT_TRUE(v == 0.0 || v == scale) << v;
        kept += v != 0.0;
      }
      // The kept fraction is 1 - p within five standard deviations.
      const double frac = static_cast<double>(kept) / n;
      EXPECT_NEAR(frac, 1.0 - p, 5.0 * std::sqrt(p * (1 - p) / n));
    }
  }
}

TEST(OpsDropout, GradientIsTheMask) {
  Tensor x = leaf({50, 7}, 0.5, 1.5, 2);
  Tensor y = dropout(x, 0.3);
  sum(y).backward();
  const auto vy = values(y), vx = values(x), g = values(x.grad());
  for (size_t i = 0; i < g.size(); ++i) {
    EXPECT_NEAR(g[i], vy[i] / vx[i], 1e-12);
    EXPECT_TRUE(g[i] == 0.0 || std::fabs(g[i] - 1.0 / 0.7) < 1e-12);
  }
}

TEST(OpsDropout, ManualSeedMakesItReproducible) {
  Tensor x = ones({1000});
  manual_seed(7);
  const auto a = values(dropout(x, 0.5));
  const auto b = values(dropout(x, 0.5));
  manual_seed(7);
  const auto c = values(dropout(x, 0.5));
  EXPECT_EQ(a, c);
  EXPECT_NE(a, b);  // consecutive calls draw fresh masks
  manual_seed(8);
  EXPECT_NE(values(dropout(x, 0.5)), a);
}

TEST(OpsDropout, ProbabilityOneDropsEverythingAndSizesZeroAndOneWork) {
  EXPECT_EQ(values(dropout(ones({3}), 1.0)), (std::vector<double>{0, 0, 0}));
  EXPECT_EQ(dropout(ones({0, 4}), 0.5).shape(), (Shape{0, 4}));
  const double v = dropout(ones({}), 0.5).item();
  EXPECT_TRUE(v == 0.0 || v == 2.0);
}

TEST(OpsDropout, BadArgumentsAreRefused) {
  EXPECT_TRUE(throws<Error>([] { dropout(ones({2}), 1.5); }, {"dropout", "1.5"}));
  EXPECT_TRUE(throws<Error>([] { dropout(ones({2}), -0.1); }, {"dropout"}));
  EXPECT_TRUE(throws<DTypeError>([] { dropout(int64s({1}, {1}), 0.5); }, {"dropout", "int64"}));
}

}  // namespace
}  // namespace ember
