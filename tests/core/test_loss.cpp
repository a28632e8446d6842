// Specification of core/ops/loss.cpp on the CPU: cross_entropy (label smoothing,
// ignore_index), nll_loss and the pointwise losses for every reduction against std::
// references in float32 and float64; gradients by the f64 finite-difference checker; empty
// and fully ignored batches; and the target, shape, dtype and option errors.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <numeric>
#include <string>
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
  EXPECT_TRUE(allclose(cross_entropy(x, t), values(cross_entropy(x, int64s({1, 3, 0}, {3}))),
                       reference_tolerance(kFloat64)));
  EXPECT_TRUE(allclose(nll_loss(x, t), values(nll_loss(x, int64s({1, 3, 0}, {3}))),
                       reference_tolerance(kFloat64)));
}

TEST(OpsCrossEntropy, EqualsLogSoftmaxFollowedByNll) {
  Tensor x = uniform({3, 6}, -2, 2, 14);
  Tensor t = int64s({5, 0, 3}, {3});
  EXPECT_TRUE(allclose(cross_entropy(x, t), values(nll_loss(log_softmax(x, 1), t)),
                       reference_tolerance(kFloat64)));
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
  EXPECT_TRUE(allclose(cross_entropy(full({2, 1}, 3.0), int64s({0, 0}, {2})), {0.0},
                       reference_tolerance(kFloat32)));
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

TEST(OpsPointwiseLoss, BinaryCrossEntropyRefusesValuesThatAreNotProbabilities) {
  // A score outside [0, 1] would give a negative or NaN loss, not an error: refused, as
  // PyTorch refuses it, naming the first offenders and the op to use for scores.
  for (DType dt : {kFloat32, kFloat64, kFloat16, kBFloat16}) {
    SCOPED_TRACE(dtype_name(dt));
    const Tensor t = from({1.0, 0.0, 1.0, 0.0}, {2, 2}, dt);
    const std::string e = error_of<ValueError>([&] {
      binary_cross_entropy(from({0.5, 1.5, -0.25, 0.5}, {2, 2}, dt), t);
    });
    EXPECT_TRUE(contains(e, "binary_cross_entropy: all elements of input should be between 0 "
                            "and 1, but 2 of 4 are not")) << e;
    EXPECT_TRUE(contains(e, "input[1] = 1.5, input[2] = -0.25")) << e;
    EXPECT_TRUE(contains(e, "binary_cross_entropy_with_logits")) << e;
    EXPECT_FALSE(contains(e, "next synchronization")) << e;
    // NaN is not a probability either.
    EXPECT_TRUE(throws<ValueError>(
        [&] { binary_cross_entropy(from({0.5, std::nan(""), 0.5, 0.5}, {2, 2}, dt), t); },
        {"binary_cross_entropy", "input", "1 of 4", "nan"}));
    // Nor is a target outside [0, 1]; soft targets inside it are fine.
    EXPECT_TRUE(throws<ValueError>(
        [&] { binary_cross_entropy(full({2, 2}, 0.5, {.dtype = dt}), from({1, 2, 0, -1}, {2, 2}, dt)); },
        {"binary_cross_entropy", "target", "2 of 4", "target[1] = 2"}));
    EXPECT_NO_THROW(binary_cross_entropy(from({0.0, 1.0, 0.3, 1.0}, {2, 2}, dt),
                                         from({0.0, 1.0, 0.25, 0.75}, {2, 2}, dt)));
  }
  // An empty batch has nothing to refuse.
  EXPECT_EQ(binary_cross_entropy(zeros({0}), zeros({0}), Reduction::Sum).item<double>(), 0.0);
}

TEST(OpsPointwiseLoss, BinaryCrossEntropyClampsItsLogsLikePyTorch) {
  // Predictions of exactly 0 and 1 give a loss of 100 (log clamped at -100), not inf.
  Tensor x = from({0.0, 1.0, 0.0, 1.0}, {4});
  Tensor t = from({1.0, 0.0, 0.0, 1.0}, {4});
  EXPECT_EQ(values(binary_cross_entropy(x, t, Reduction::None)), (std::vector<double>{100, 100, 0, 0}));
  // With logits, extreme inputs stay finite and exact.
  Tensor l = from({-1000.0, 1000.0}, {2}, kFloat32);
  Tensor lt_ = from({1.0, 0.0}, {2}, kFloat32);
  EXPECT_TRUE(allclose(binary_cross_entropy_with_logits(l, lt_, Reduction::None), {1000.0, 1000.0},
                       reference_tolerance(kFloat32)));
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

}  // namespace
}  // namespace ember
