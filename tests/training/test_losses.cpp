// Loss modules against the ops they wrap or hand-computed values: cross-entropy with
// labels and with one-hot targets, Keras's categorical forms from probabilities and from
// logits, binary cross-entropy with [N, 1] outputs, MSE/L1 shape matching, and gradients.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include <ember/ember.h>

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
