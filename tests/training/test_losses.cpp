// Loss modules against the ops they wrap or hand-computed values: cross-entropy with
// labels and with one-hot targets, Keras's categorical forms from probabilities and from
// logits, binary cross-entropy with [N, 1] outputs, MSE/L1 shape matching, and gradients.
// Then PyTorch's class weights (cross_entropy, nll_loss) and pos_weight
// (binary_cross_entropy_with_logits): values against PyTorch's, f64 gradient checks, the
// bad-input errors, the modules that carry them, and CPU <-> CUDA parity when a GPU exists.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include <ember/ember.h>
#include "support/check.h"

using namespace ember;

namespace {

constexpr double kTol = 1e-6;  // float32 losses of a few terms

Tensor floats(const std::vector<float>& v, const Shape& shape) { return Tensor::from_vector<float>(v, shape); }
Tensor labels(const std::vector<int64_t>& v) {
  return Tensor::from_vector<int64_t>(v, {static_cast<int64_t>(v.size())});
}

// Logits [3, 4] and their labels, with the rows' softmax worked out in double below.
const std::vector<float> kLogits = {1.0f, 2.0f, 0.5f, -1.0f,
                                    0.0f, 0.0f, 3.0f, 1.0f,
                                    -2.0f, 1.5f, 0.3f, 0.2f};
const std::vector<int64_t> kLabels = {1, 2, 0};

// -mean_i log softmax(logits_i)[label_i], in double.
double reference_cross_entropy() {
  double total = 0;
  for (int i = 0; i < 3; ++i) {
    double denom = 0;
    for (int c = 0; c < 4; ++c) denom += std::exp(static_cast<double>(kLogits[i * 4 + c]));
    total += -(kLogits[i * 4 + kLabels[i]] - std::log(denom));
  }
  return total / 3.0;
}

Tensor logits(bool requires_grad = false) {
  Tensor t = floats(kLogits, {3, 4});
  if (requires_grad) t.requires_grad_();
  return t;
}

void expect_finite_grad(const Tensor& input, const Shape& shape, const std::string& what) {
  const Tensor g = input.grad();
  ASSERT_TRUE(g.defined()) << what;
  EXPECT_EQ(g.shape(), shape) << what;
  bool any_nonzero = false;
  for (float v : g.to(kFloat32).to_vector<float>()) {
    EXPECT_TRUE(std::isfinite(v)) << what;
    any_nonzero = any_nonzero || v != 0.0f;
  }
  EXPECT_TRUE(any_nonzero) << what;
}

}  // namespace

TEST(CrossEntropyLoss, LabelsAndOneHotTargetsGiveTheSameLoss) {
  const double want = reference_cross_entropy();
  const Tensor with_labels = loss::CrossEntropy()(logits(), labels(kLabels));
  const Tensor with_one_hot = loss::CrossEntropy()(logits(), metrics::one_hot(labels(kLabels), 4));
  EXPECT_EQ(with_labels.dim(), 0);
  EXPECT_NEAR(with_labels.item(), want, kTol);
  EXPECT_NEAR(with_one_hot.item(), want, kTol);
  EXPECT_NEAR(with_labels.item(), cross_entropy(logits(), labels(kLabels)).item(), 1e-7);
  EXPECT_EQ(loss::CrossEntropy().name(), "cross_entropy");
}

TEST(CrossEntropyLoss, SoftTargetsWeighTheLogProbabilities) {
  // Row 0 half class 0, half class 1; rows 1 and 2 one-hot.
  const Tensor soft = floats({0.5f, 0.5f, 0, 0, 0, 0, 1, 0, 1, 0, 0, 0}, {3, 4});
  double want = 0;
  for (int i = 0; i < 3; ++i) {
    double denom = 0;
    for (int c = 0; c < 4; ++c) denom += std::exp(static_cast<double>(kLogits[i * 4 + c]));
    for (int c = 0; c < 4; ++c) {
      const double t = soft.to_vector<float>()[i * 4 + c];
      want -= t * (kLogits[i * 4 + c] - std::log(denom));
    }
  }
  EXPECT_NEAR(loss::CrossEntropy()(logits(), soft).item(), want / 3.0, kTol);
}

TEST(CrossEntropyLoss, LabelSmoothingPassesThroughToTheOp) {
  const loss::CrossEntropy smoothed({.label_smoothing = 0.1});
  EXPECT_NEAR(smoothed(logits(), labels(kLabels)).item(),
              cross_entropy(logits(), labels(kLabels), {.label_smoothing = 0.1}).item(), 1e-7);
  EXPECT_THROW(smoothed(logits(), metrics::one_hot(labels(kLabels), 4)), Error);
}

TEST(CategoricalCrossEntropyLoss, FromProbabilitiesAndFromLogitsAgree) {
  const Tensor one_hot = metrics::one_hot(labels(kLabels), 4);
  const Tensor probs = softmax(logits(), 1);
  const double want = reference_cross_entropy();
  EXPECT_NEAR(loss::CategoricalCrossEntropy()(probs, one_hot).item(), want, kTol);
  EXPECT_NEAR(loss::CategoricalCrossEntropy({.from_logits = true})(logits(), one_hot).item(), want, kTol);
}

TEST(CategoricalCrossEntropyLoss, ClipsProbabilitiesAwayFromZero) {
  // A zero probability on the true class costs -log(1e-7), not infinity.
  const Tensor probs = floats({1, 0, 0, 1}, {2, 2});
  const Tensor target = floats({0, 1, 0, 1}, {2, 2});
  EXPECT_NEAR(loss::CategoricalCrossEntropy()(probs, target).item(), -std::log(1e-7) / 2.0, 1e-3);
}

TEST(CategoricalCrossEntropyLoss, RescalesRowsToSumToOneAsKerasDoes) {
  // Row [0.2, 0.2] is read as [0.5, 0.5].
  const Tensor probs = floats({0.2f, 0.2f}, {1, 2});
  EXPECT_NEAR(loss::CategoricalCrossEntropy()(probs, floats({1, 0}, {1, 2})).item(), std::log(2.0), kTol);
}

TEST(CategoricalCrossEntropyLoss, IntegerLabelsAreRejectedNamingTheLoss) {
  try {
    loss::CategoricalCrossEntropy()(softmax(logits(), 1), labels(kLabels));
    FAIL() << "labels [N] need the sparse form";
  } catch (const ShapeError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("CategoricalCrossEntropy"), std::string::npos) << msg;
    EXPECT_NE(msg.find("[3, 4]"), std::string::npos) << msg;
    EXPECT_NE(msg.find("[3]"), std::string::npos) << msg;
  }
}

TEST(SparseCategoricalCrossEntropyLoss, FromProbabilitiesAndFromLogits) {
  const double want = reference_cross_entropy();
  EXPECT_NEAR(loss::SparseCategoricalCrossEntropy()(softmax(logits(), 1), labels(kLabels)).item(), want, kTol);
  EXPECT_NEAR(loss::SparseCategoricalCrossEntropy({.from_logits = true})(logits(), labels(kLabels)).item(), want,
              kTol);
}

TEST(BinaryCrossEntropyLoss, ColumnOutputsMeetFlatTargets) {
  const std::vector<float> p = {0.9f, 0.2f, 0.6f, 0.3f};
  const std::vector<float> t = {1, 0, 0, 1};
  double want = 0;
  for (size_t i = 0; i < p.size(); ++i) want -= t[i] * std::log(p[i]) + (1 - t[i]) * std::log(1.0 - p[i]);
  want /= static_cast<double>(p.size());
  const Tensor targets = floats(t, {4});
  EXPECT_NEAR(loss::BinaryCrossEntropy()(floats(p, {4, 1}), targets).item(), want, kTol);
  EXPECT_NEAR(loss::BinaryCrossEntropy()(floats(p, {4}), targets).item(), want, kTol);
  EXPECT_NEAR(loss::BinaryCrossEntropy()(floats(p, {4, 1}), labels({1, 0, 0, 1})).item(), want, kTol);

  // From logits: the same probabilities as log-odds.
  std::vector<float> z;
  for (float v : p) z.push_back(static_cast<float>(std::log(v / (1.0 - v))));
  EXPECT_NEAR(loss::BinaryCrossEntropy({.from_logits = true})(floats(z, {4, 1}), targets).item(), want, 1e-5);
}

TEST(RegressionLosses, MseAndL1MatchColumnOutputsToFlatTargets) {
  const Tensor out = floats({1.0f, 2.0f, 4.0f}, {3, 1});
  const Tensor target = floats({0.5f, 2.0f, 1.0f}, {3});
  // squared errors 0.25, 0, 9; absolute 0.5, 0, 3.
  EXPECT_NEAR(loss::MSE()(out, target).item(), 9.25 / 3.0, kTol);
  EXPECT_NEAR(loss::L1()(out, target).item(), 3.5 / 3.0, kTol);
  EXPECT_NEAR(loss::MSE(Reduction::Sum)(out, target).item(), 9.25, kTol);
  EXPECT_NEAR(loss::L1(Reduction::Sum)(out, target).item(), 3.5, kTol);
  EXPECT_EQ(loss::MSE(Reduction::None)(out, target).shape(), (Shape{3, 1}));
  EXPECT_NEAR(loss::MSE()(out, target).item(), mse_loss(out, target.reshape({3, 1})).item(), 1e-7);
  // Integer targets are converted to the output's dtype.
  EXPECT_NEAR(loss::MSE()(out, labels({1, 2, 4})).item(), 0.0, kTol);
}

TEST(LossModules, GradientsFlowToTheOutputs) {
  {
    Tensor x = logits(true);
    loss::CrossEntropy()(x, labels(kLabels)).backward();
    expect_finite_grad(x, {3, 4}, "CrossEntropy labels");
  }
  {
    Tensor x = logits(true);
    loss::CrossEntropy()(x, metrics::one_hot(labels(kLabels), 4)).backward();
    expect_finite_grad(x, {3, 4}, "CrossEntropy one-hot");
  }
  {
    Tensor x = logits(true);
    loss::CategoricalCrossEntropy()(softmax(x, 1), metrics::one_hot(labels(kLabels), 4)).backward();
    expect_finite_grad(x, {3, 4}, "CategoricalCrossEntropy");
  }
  {
    Tensor x = logits(true);
    loss::SparseCategoricalCrossEntropy()(softmax(x, 1), labels(kLabels)).backward();
    expect_finite_grad(x, {3, 4}, "SparseCategoricalCrossEntropy");
  }
  {
    Tensor x = floats({0.3f, -1.0f, 2.0f}, {3, 1});
    x.requires_grad_();
    loss::BinaryCrossEntropy()(sigmoid(x), floats({1, 0, 1}, {3})).backward();
    expect_finite_grad(x, {3, 1}, "BinaryCrossEntropy");
  }
  {
    Tensor x = floats({0.3f, -1.0f, 2.0f}, {3, 1});
    x.requires_grad_();
    loss::BinaryCrossEntropy({.from_logits = true})(x, floats({1, 0, 1}, {3})).backward();
    expect_finite_grad(x, {3, 1}, "BinaryCrossEntropy from logits");
  }
  {
    Tensor x = floats({1.0f, 2.0f, 4.0f}, {3, 1});
    x.requires_grad_();
    add(loss::MSE()(x, floats({0.5f, 2.5f, 1.0f}, {3})), loss::L1()(x, floats({0.5f, 2.5f, 1.0f}, {3}))).backward();
    expect_finite_grad(x, {3, 1}, "MSE + L1");
  }
  {
    // Through a layer: the Linear's parameters receive finite gradients.
    nn::Linear fc(4, 3);
    loss::CrossEntropy()(fc(floats(kLogits, {3, 4})), labels(kLabels)).backward();
    for (const Tensor& p : fc.parameters()) expect_finite_grad(p, p.shape(), "Linear parameter");
  }
}

// ---- class weights and pos_weight (PyTorch's `weight` and `pos_weight`) -----------------

namespace {

// Reference values were computed with PyTorch 1.13 in float64 (torch.nn.functional).
constexpr double kRefTol = 1e-9;

Tensor doubles(const std::vector<double>& v, const Shape& shape) {
  return Tensor::from_vector<double>(v, shape);
}

// Logits [4, 3], targets with one ignored row, and class weights.
Tensor weighted_logits() {
  return doubles({1.0, 2.0, 0.5, 0.0, -1.0, 3.0, 2.0, 2.0, -2.0, -0.5, 1.5, 0.3}, {4, 3});
}
Tensor weighted_targets() { return labels({1, 2, -100, 0}); }
Tensor class_weight() { return doubles({0.2, 1.0, 3.0}, {3}); }

// Logits [3, 2], probability targets and a weight per class of the last dimension.
Tensor bce_logits() { return doubles({0.3, -1.2, 2.5, 0.0, -4.0, 1.0}, {3, 2}); }
Tensor bce_targets() { return doubles({0.6, 1.0, 0.0, 1.0, 0.25, 1.0}, {3, 2}); }
Tensor pos_weight() { return doubles({3.0, 0.5}, {2}); }

void expect_values(const Tensor& t, const std::vector<double>& want, double tol,
                   const std::string& what) {
  const std::vector<double> got = t.to(kFloat64).to_vector<double>();
  ASSERT_EQ(got.size(), want.size()) << what;
  for (size_t i = 0; i < want.size(); ++i) {
    EXPECT_NEAR(got[i], want[i], tol) << what << " element " << i;
  }
}

const char* reduction_str(Reduction r) {
  switch (r) {
    case Reduction::None: return "none";
    case Reduction::Mean: return "mean";
    case Reduction::Sum: return "sum";
  }
  return "?";
}

}  // namespace

TEST(ClassWeights, CrossEntropyMatchesPyTorchForEveryReduction) {
  struct Case {
    double smoothing;
    Reduction reduction;
    std::vector<double> want;
  };
  const std::vector<Case> cases = {
      {0.0, Reduction::Mean, {0.270111076608}},
      {0.0, Reduction::Sum, {1.134466521755}},
      {0.0, Reduction::None, {0.464368784108, 0.197651711272, 0.0, 0.472446026375}},
      {0.2, Reduction::Mean, {0.486698827047}},
      {0.2, Reduction::Sum, {2.044135073598}},
      {0.2, Reduction::None, {0.814851620170, 0.483235528737, 0.0, 0.746047924691}},
  };
  for (const Case& c : cases) {
    const Tensor y = cross_entropy(weighted_logits(), weighted_targets(),
                                   {.reduction = c.reduction,
                                    .label_smoothing = c.smoothing,
                                    .weight = class_weight()});
    expect_values(y, c.want, kRefTol,
                  std::string("smoothing ") + std::to_string(c.smoothing) + " " +
                      reduction_str(c.reduction));
  }
}

TEST(ClassWeights, IgnoreIndexOnARealClassLeavesItsRowsOutOfTheWeightSum) {
  // Targets [1, 2, 0, 0] with ignore_index 2: the mean divides by w1 + w0 + w0.
  const Tensor t = labels({1, 2, 0, 0});
  expect_values(cross_entropy(weighted_logits(), t, {.ignore_index = 2, .weight = class_weight()}),
                {0.769476767693}, kRefTol, "no smoothing");
  expect_values(
      cross_entropy(weighted_logits(), t,
                    {.ignore_index = 2, .label_smoothing = 0.2, .weight = class_weight()}),
      {1.907068147353}, kRefTol, "smoothing 0.2");
  expect_values(nll_loss(log_softmax(weighted_logits(), 1), t,
                         {.ignore_index = 2, .weight = class_weight()}),
                {0.769476767693}, kRefTol, "nll_loss");
}

TEST(ClassWeights, NllLossMatchesPyTorchForEveryReduction) {
  const Tensor lp = log_softmax(weighted_logits(), 1);
  const auto nll = [&](Reduction r) {
    return nll_loss(lp, weighted_targets(), {.reduction = r, .weight = class_weight()});
  };
  expect_values(nll(Reduction::Mean), {0.270111076608}, kRefTol, "mean");
  expect_values(nll(Reduction::Sum), {1.134466521755}, kRefTol, "sum");
  expect_values(nll(Reduction::None), {0.464368784108, 0.197651711272, 0.0, 0.472446026375},
                kRefTol, "none");
}

TEST(ClassWeights, CrossEntropyGradientMatchesPyTorch) {
  Tensor x = weighted_logits().requires_grad_();
  cross_entropy(x, weighted_targets(), {.label_smoothing = 0.2, .weight = class_weight()})
      .backward();
  expect_values(x.grad(),
                {0.056282970499663715, -0.04472676426618173, -0.011556206233482011,
                 0.02656868932753255, -0.004931070048731433, -0.02163761927880105, 0.0, 0.0, 0.0,
                 -0.03140023392711792, 0.057054066456784895, -0.025653832529666992},
                1e-12, "grad");
}

TEST(ClassWeights, GradientsPassFiniteDifferenceChecks) {
  const Tensor t = labels({1, 2, -100, 0, 1});
  const Tensor w = doubles({0.2, 1.0, 3.0}, {3});
  const Tensor x = doubles({1.0, 2.0, 0.5, 0.0, -1.0, 3.0, 2.0, 2.0, -2.0, -0.5, 1.5, 0.3, 0.1,
                            -0.2, 0.7},
                           {5, 3})
                       .requires_grad_();
  for (Reduction r : {Reduction::Mean, Reduction::Sum, Reduction::None}) {
    for (double s : {0.0, 0.3}) {
      const GradCheckResult ce = gradcheck(
          [&](const std::vector<Tensor>& in) {
            return cross_entropy(in[0], t, {.reduction = r, .label_smoothing = s, .weight = w});
          },
          {x});
      EXPECT_TRUE(ce.ok) << "cross_entropy " << reduction_str(r) << " smoothing " << s << "\n"
                         << ce.report;
    }
    const GradCheckResult nll = gradcheck(
        [&](const std::vector<Tensor>& in) {
          return nll_loss(log_softmax(in[0], 1), t, {.reduction = r, .weight = w});
        },
        {x});
    EXPECT_TRUE(nll.ok) << "nll_loss " << reduction_str(r) << "\n" << nll.report;
  }
}

TEST(ClassWeights, MeanOverOnlyIgnoredTargetsIsNaNAsInPyTorch) {
  // The divisor, the sum of no weights, is 0.
  EXPECT_TRUE(std::isnan(
      cross_entropy(weighted_logits(), labels({-100, -100, -100, -100}), {.weight = class_weight()})
          .item()));
}

TEST(ClassWeights, BadWeightsAreRejectedWithClearErrors) {
  const Tensor x = weighted_logits(), t = weighted_targets();
  EXPECT_TRUE(ember::testing::throws<ShapeError>(
      [&] { cross_entropy(x, t, {.weight = doubles({1, 2, 3, 4}, {4})}); },
      {"cross_entropy", "weight [4]", "must be [3]", "[4, 3]"}));
  EXPECT_TRUE(ember::testing::throws<ShapeError>(
      [&] { nll_loss(x, t, {.weight = doubles({1, 2, 3}, {1, 3})}); },
      {"nll_loss", "weight [1, 3]", "must be [3]"}));
  EXPECT_TRUE(ember::testing::throws<DTypeError>(
      [&] { cross_entropy(x, t, {.weight = floats({1, 2, 3}, {3})}); },
      {"cross_entropy", "weight", "input's dtype", "float32", "float64"}));
  EXPECT_TRUE(ember::testing::throws<DTypeError>(
      [&] { cross_entropy(x, t, {.weight = labels({1, 2, 3})}); },
      {"cross_entropy", "weight", "int64"}));
  const Tensor trainable = doubles({1, 2, 3}, {3}).requires_grad_();
  EXPECT_TRUE(ember::testing::throws<Error>([&] { cross_entropy(x, t, {.weight = trainable}); },
                                 {"cross_entropy", "weight requires grad", "detach"}));
  {
    NoGradGuard no_grad;  // without autograd a trainable weight is just values
    EXPECT_NO_THROW(cross_entropy(x, t, {.weight = trainable}));
  }
}

TEST(PosWeight, BinaryCrossEntropyWithLogitsMatchesPyTorchForEveryReduction) {
  const auto bce = [](Reduction r) {
    return binary_cross_entropy_with_logits(bce_logits(), bce_targets(),
                                            {.reduction = r, .pos_weight = pos_weight()});
  };
  expect_values(bce(Reduction::Mean), {1.363423638618}, kRefTol, "mean");
  expect_values(bce(Reduction::Sum), {8.180541831708}, kRefTol, "sum");
  expect_values(bce(Reduction::None),
                {1.339581537831, 0.731641233669, 2.578889734293, 0.346573590280, 3.027224891877,
                 0.156630843759},
                kRefTol, "none");
  EXPECT_EQ(bce(Reduction::None).shape(), (Shape{3, 2}));
}

TEST(PosWeight, BroadcastsLikePyTorch) {
  // A weight per row ([3, 1], expanded), one for everything ([1] and []).
  expect_values(binary_cross_entropy_with_logits(bce_logits(), bce_targets(),
                                                 {.pos_weight = doubles({2.0, 0.5, 4.0}, {3, 1})}),
                {2.023967629055}, kRefTol, "[3, 1]");
  for (const Shape& shape : {Shape{1}, Shape{}, Shape{1, 1}}) {
    expect_values(binary_cross_entropy_with_logits(
                      bce_logits(), bce_targets(),
                      {.reduction = Reduction::Sum, .pos_weight = doubles({2.0}, shape)}),
                  {10.547928206172}, kRefTol, "scalar weight");
  }
  // pos_weight 1 is the plain loss.
  EXPECT_NEAR(binary_cross_entropy_with_logits(bce_logits(), bce_targets(),
                                               {.pos_weight = doubles({1.0, 1.0}, {2})})
                  .item(),
              binary_cross_entropy_with_logits(bce_logits(), bce_targets()).item(), 1e-12);
}

TEST(PosWeight, GradientMatchesPyTorchAndFiniteDifferences) {
  Tensor z = bce_logits().requires_grad_();
  binary_cross_entropy_with_logits(z, bce_targets(), {.pos_weight = pos_weight()}).backward();
  expect_values(z.grad(),
                {-0.08937107716905834, -0.06404373195825147, 0.1540236366631261,
                 -0.041666666666666664, -0.12050344750947711, -0.02241178511416626},
                1e-12, "grad");
  for (Reduction r : {Reduction::Mean, Reduction::Sum, Reduction::None}) {
    for (const Tensor& pw : {pos_weight(), doubles({2.0, 0.5, 4.0}, {3, 1})}) {
      const GradCheckResult res = gradcheck(
          [&](const std::vector<Tensor>& in) {
            return binary_cross_entropy_with_logits(in[0], bce_targets(),
                                                    {.reduction = r, .pos_weight = pw});
          },
          {bce_logits().requires_grad_()});
      EXPECT_TRUE(res.ok) << reduction_str(r) << " pos_weight " << shape_str(pw.shape()) << "\n"
                          << res.report;
    }
  }
}

TEST(PosWeight, BadPosWeightsAreRejectedWithClearErrors) {
  const Tensor z = bce_logits(), y = bce_targets();
  const char* op = "binary_cross_entropy_with_logits";
  EXPECT_TRUE(ember::testing::throws<ShapeError>(
      [&] { binary_cross_entropy_with_logits(z, y, {.pos_weight = doubles({1, 2, 3}, {3})}); },
      {op, "pos_weight [3]", "cannot be broadcast", "[3, 2]"}));
  EXPECT_TRUE(ember::testing::throws<ShapeError>(
      [&] {
        binary_cross_entropy_with_logits(z, y, {.pos_weight = doubles({1, 2}, {1, 1, 2})});
      },
      {op, "pos_weight [1, 1, 2]", "cannot be broadcast"}));
  EXPECT_TRUE(ember::testing::throws<DTypeError>(
      [&] { binary_cross_entropy_with_logits(z, y, {.pos_weight = floats({1, 2}, {2})}); },
      {op, "pos_weight", "input's dtype", "float32"}));
  const Tensor trainable = doubles({1, 2}, {2}).requires_grad_();
  EXPECT_TRUE(ember::testing::throws<Error>(
      [&] { binary_cross_entropy_with_logits(z, y, {.pos_weight = trainable}); },
      {op, "pos_weight requires grad", "detach"}));
}

TEST(WeightedLossModules, CarryTheirWeightsToTheOps) {
  const Tensor x = weighted_logits(), t = weighted_targets();
  EXPECT_NEAR(loss::CrossEntropy({.weight = class_weight()})(x, t).item(), 0.270111076608,
              kRefTol);
  EXPECT_NEAR(loss::NLL({.weight = class_weight()})(log_softmax(x, 1), t).item(),
              0.270111076608, kRefTol);
  // Float32 as a model would produce, against PyTorch's float32 result.
  EXPECT_NEAR(loss::CrossEntropy({.weight = class_weight().to(kFloat32)})(x.to(kFloat32), t)
                  .item(),
              0.270111083984375, 1e-6);
  const loss::BCEWithLogits bce({.pos_weight = pos_weight()});
  EXPECT_NEAR(bce(bce_logits(), bce_targets()).item(), 1.363423638618, kRefTol);
  EXPECT_EQ(bce.name(), "bce_with_logits");
  // A [N, 1] output meets [N] targets, as the other binary module allows.
  EXPECT_NEAR(loss::BCEWithLogits({.pos_weight = doubles({2.0}, {1})})(
                  bce_logits().reshape({6, 1}), bce_targets().reshape({6}))
                  .item(),
              10.547928206172 / 6.0, kRefTol);
}

TEST(WeightedLossModules, CrossEntropyWeighsProbabilityTargetsAsPyTorch) {
  // Probability targets: -sum_c w_c p_c log softmax(x)_c per row, the mean over N rows.
  const Tensor p = doubles({0.5, 0.5, 0, 0, 0, 1, 0.2, 0.3, 0.5, 1, 0, 0}, {4, 3});
  EXPECT_NEAR(loss::CrossEntropy({.weight = class_weight()})(weighted_logits(), p).item(),
              2.085220879890, kRefTol);
  EXPECT_TRUE(ember::testing::throws<ShapeError>(
      [&] { loss::CrossEntropy({.weight = doubles({1, 2}, {2})})(weighted_logits(), p); },
      {"CrossEntropy", "weight [2]", "must be [3]"}));
  Tensor x = weighted_logits().requires_grad_();
  loss::CrossEntropy({.weight = class_weight()})(x, p).backward();
  expect_finite_grad(x, {4, 3}, "weighted soft targets");
}

TEST(WeightedLossesCuda, MatchTheCpuAndRejectAWeightOnAnotherDevice) {
  if (!cuda::is_available()) {
    GTEST_SKIP() << "no CUDA device (" << cuda::unavailable_reason() << ")";
  }
  const auto host = [](const Tensor& t) { return t.cpu().to(kFloat64).to_vector<double>(); };
  const Tensor x = weighted_logits().to(kFloat32), t = weighted_targets();
  const Tensor w = class_weight().to(kFloat32);
  const Tensor wg = w.cuda();
  for (double s : {0.0, 0.2}) {
    for (Reduction r : {Reduction::Mean, Reduction::Sum, Reduction::None}) {
      const std::string what = std::string(reduction_str(r)) + " smoothing " + std::to_string(s);
      Tensor xc = x.clone().requires_grad_(), xg = x.cuda().requires_grad_();
      const Tensor yc = cross_entropy(xc, t, {.reduction = r, .label_smoothing = s, .weight = w});
      const Tensor yg =
          cross_entropy(xg, t.cuda(), {.reduction = r, .label_smoothing = s, .weight = wg});
      expect_values(yg, host(yc), 1e-5, "cross_entropy " + what);
      sum(yc).backward();
      sum(yg).backward();
      expect_values(xg.grad(), host(xc.grad()), 1e-5, "cross_entropy grad " + what);
    }
    const Tensor lp = log_softmax(x, 1);
    expect_values(nll_loss(lp.cuda(), t.cuda(), {.weight = wg}),
                  host(nll_loss(lp, t, {.weight = w})), 1e-5, "nll_loss");
  }
  const Tensor z = bce_logits().to(kFloat32), y = bce_targets().to(kFloat32);
  for (const Tensor& pw :
       {pos_weight().to(kFloat32), doubles({2.0, 0.5, 4.0}, {3, 1}).to(kFloat32)}) {
    Tensor zc = z.clone().requires_grad_(), zg = z.cuda().requires_grad_();
    const Tensor lc = binary_cross_entropy_with_logits(zc, y, {.pos_weight = pw});
    const Tensor lg = binary_cross_entropy_with_logits(zg, y.cuda(), {.pos_weight = pw.cuda()});
    expect_values(lg, host(lc), 1e-5, "pos_weight " + shape_str(pw.shape()));
    lc.backward();
    lg.backward();
    expect_values(zg.grad(), host(zc.grad()), 1e-6, "pos_weight grad " + shape_str(pw.shape()));
  }
  EXPECT_TRUE(ember::testing::throws<DeviceError>(
      [&] { cross_entropy(x.cuda(), t.cuda(), {.weight = w}); },
      {"cross_entropy", "weight", "input's device", "cpu", "cuda:0"}));
  EXPECT_TRUE(ember::testing::throws<DeviceError>(
      [&] {
        binary_cross_entropy_with_logits(z.cuda(), y.cuda(),
                                         {.pos_weight = pos_weight().to(kFloat32)});
      },
      {"binary_cross_entropy_with_logits", "pos_weight", "input's device"}));
}
