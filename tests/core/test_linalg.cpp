// Specification of core/ops/linalg.cpp on the CPU: matmul for every rank combination and
// linear with and without bias, against float64 reference loops; gradients by the f64
// finite-difference checker, transposed, expanded and narrowed operands, zero sizes, and
// the shape and dtype errors.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
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
  EXPECT_TRUE(allclose(fn({a, b}), values(want), reference_tolerance(kFloat64)));
  EXPECT_TRUE(grad_ok(fn, {a, b}));
  // Batched, transposed in the matrix dims, and a batch-broadcast (stride 0) operand.
  Tensor c = leaf({2, 4, 3}, -1, 1, 3), d = leaf({1, 4, 5}, -1, 1, 4);
  auto fn3 = [](const std::vector<Tensor>& in) {
    return matmul(in[0].transpose(1, 2), in[1].expand({2, 4, 5}));
  };
  Tensor want3 = matmul(c.transpose(1, 2).contiguous(), d.expand({2, 4, 5}).contiguous());
  EXPECT_TRUE(allclose(fn3({c, d}), values(want3), reference_tolerance(kFloat64)));
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

// ---- the activation fused into linear (Note [Fused linear]) --------------------------------

struct ActivationCase {
  const char* name;
  LinearActivation act;
  Tensor (*composed)(const Tensor&);
};
const std::vector<ActivationCase> kActivations = {
    {"none", LinearActivation::kNone, [](const Tensor& t) { return t; }},
    {"relu", LinearActivation::kRelu, [](const Tensor& t) { return relu(t); }},
    {"gelu", LinearActivation::kGelu, [](const Tensor& t) { return gelu(t); }},
    {"gelu_tanh", LinearActivation::kGeluTanh, [](const Tensor& t) { return gelu(t, "tanh"); }},
};

TEST(OpsLinearActivation, ForwardIsTheActivationOfTheLinearResultBitForBit) {
  // The CPU computes the fused op as the composed one does (product onto the bias, then the
  // activation on the float32 value), so they agree exactly.
  for (DType dt : kFloatDTypes) {
    for (const ActivationCase& a : kActivations) {
      for (const Shape& xs : {Shape{5, 4}, Shape{2, 3, 4}, Shape{4}, Shape{0, 4}, Shape{3, 0}}) {
        for (bool with_bias : {false, true}) {
          SCOPED_TRACE(std::string(a.name) + " " + shape_str(xs) + (with_bias ? " bias " : " ") +
                       dtype_name(dt));
          const int64_t in = xs.back();
          Tensor x = uniform(xs, -2, 2, 1, dt), w = uniform({6, in}, -1, 1, 2, dt);
          Tensor b = with_bias ? uniform({6}, -1, 1, 3, dt) : Tensor();
          const Tensor got = linear(x, w, b, a.act);
          const Tensor want = a.composed(linear(x, w, b));
          ASSERT_EQ(got.shape(), want.shape());
          EXPECT_EQ(values(got), values(want));
        }
      }
    }
  }
}

TEST(OpsLinearActivation, BackwardPassesTheGradientCheck) {
  for (const ActivationCase& a : kActivations) {
    SCOPED_TRACE(a.name);
    const LinearActivation act = a.act;
    // Inputs spread over [-2, 2]: ReLU's kink at 0 is hit with probability 0.
    for (const Shape& xs : {Shape{5, 4}, Shape{2, 3, 4}}) {
      EXPECT_TRUE(grad_ok(
          [act](const std::vector<Tensor>& in) { return linear(in[0], in[1], in[2], act); },
          {leaf(xs, -2, 2, 1), leaf({3, 4}, -1, 1, 2), leaf({3}, -1, 1, 3)}));
      EXPECT_TRUE(grad_ok(
          [act](const std::vector<Tensor>& in) { return linear(in[0], in[1], Tensor(), act); },
          {leaf(xs, -2, 2, 4), leaf({3, 4}, -1, 1, 5)}));
    }
    // A transposed input and weight (the GEMMs take them as transpose flags).
    EXPECT_TRUE(grad_ok(
        [act](const std::vector<Tensor>& in) { return linear(in[0].t(), in[1].t(), in[2], act); },
        {leaf({4, 5}, -2, 2, 6), leaf({4, 3}, -1, 1, 7), leaf({3}, -1, 1, 8)}));
  }
}

TEST(OpsLinearActivation, GradientsEqualTheComposedOpsAndOnlyTheOnesAskedFor) {
  for (const ActivationCase& a : kActivations) {
    SCOPED_TRACE(a.name);
    for (int wanted = 1; wanted < 8; ++wanted) {  // every subset of {x, weight, bias}
      const bool gx = wanted & 1, gw = wanted & 2, gb = wanted & 4;
      auto make = [&](uint64_t seed) {
        Tensor x = uniform({7, 5}, -2, 2, seed), w = uniform({4, 5}, -1, 1, seed + 1),
               b = uniform({4}, -1, 1, seed + 2);
        x.requires_grad_(gx);
        w.requires_grad_(gw);
        b.requires_grad_(gb);
        return std::vector<Tensor>{x, w, b};
      };
      std::vector<Tensor> f = make(10), c = make(10);
      const Tensor g = uniform({7, 4}, -1, 1, 20);
      linear(f[0], f[1], f[2], a.act).backward(g);
      a.composed(linear(c[0], c[1], c[2])).backward(g);
      for (size_t i = 0; i < 3; ++i) {
        ASSERT_EQ(f[i].grad().defined(), c[i].grad().defined()) << "input " << i;
        if (!f[i].grad().defined()) continue;
        EXPECT_TRUE(matches(f[i].grad(), c[i].grad().shape(), values(c[i].grad()), kFloat64))
            << "input " << i;
      }
    }
  }
}

TEST(OpsLinearActivation, ReluSavesItsOutputSoAnInPlaceChangeIsCaught) {
  Tensor x = leaf({3, 4}, -2, 2, 1), w = leaf({5, 4}, -1, 1, 2), b = leaf({5}, -1, 1, 3);
  Tensor y = linear(x, w, b, LinearActivation::kRelu);
  Tensor s = sum(y);
  {
    NoGradGuard no_grad;
    y.mul_(2.0);
  }
  EXPECT_THROW(s.backward(), Error);
}

TEST(OpsGelu, TanhApproximationMatchesItsFormulaAndGradient) {
  Tensor x = uniform({64}, -6, 6, 1, kFloat64);
  const auto xv = values(x);
  std::vector<double> want;
  for (double v : xv) {
    want.push_back(0.5 * v * (1 + std::tanh(std::sqrt(2 / M_PI) * (v + 0.044715 * v * v * v))));
  }
  EXPECT_TRUE(matches(gelu(x, "tanh"), {64}, want, kFloat64));
  // It differs from the exact GELU (by up to ~5e-4 near |x| = 2), which stays the default.
  EXPECT_GT(max(abs(sub(gelu(x, "tanh"), gelu(x)))).item<double>(), 1e-4);
  EXPECT_TRUE(grad_ok([](const std::vector<Tensor>& in) { return gelu(in[0], "tanh"); },
                      {leaf({4, 9}, -4, 4, 2)}));
  EXPECT_TRUE(throws<ValueError>([&] { gelu(x, "erf"); }, {"gelu", "approximate", "erf"}));
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

}  // namespace
}  // namespace ember
