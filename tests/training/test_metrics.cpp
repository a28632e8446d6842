// Training metrics against hand-computed values: Accuracy (class scores, one-hot, binary),
// TopKAccuracy, ConfusionMatrix with per-class and averaged precision/recall/F1, AUC
// against the exact ROC AUC, reset and accumulation, and the errors for bad shapes.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include <ember/ember.h>

#include "support/check.h"

using namespace ember;

namespace {

Tensor floats(const std::vector<float>& v, const Shape& shape) { return Tensor::from_vector<float>(v, shape); }
Tensor floats(const std::vector<float>& v) { return floats(v, {static_cast<int64_t>(v.size())}); }
Tensor labels(const std::vector<int64_t>& v) {
  return Tensor::from_vector<int64_t>(v, {static_cast<int64_t>(v.size())});
}

// Scores [N, C] whose argmax in row i is pred[i].
Tensor scores_for(const std::vector<int64_t>& pred, int64_t classes) {
  std::vector<float> s(pred.size() * classes, 0.1f);
  for (size_t i = 0; i < pred.size(); ++i) s[i * classes + pred[i]] = 0.9f;
  return floats(s, {static_cast<int64_t>(pred.size()), classes});
}

using ember::testing::error_of;

// The exact ROC AUC (Mann-Whitney): the fraction of (positive, negative) pairs ranked
// correctly, ties counting one half.
double exact_auc(const std::vector<float>& scores, const std::vector<float>& targets) {
  double good = 0, pairs = 0;
  for (size_t i = 0; i < scores.size(); ++i) {
    if (targets[i] != 1.0f) continue;
    for (size_t j = 0; j < scores.size(); ++j) {
      if (targets[j] != 0.0f) continue;
      pairs += 1;
      good += scores[i] > scores[j] ? 1.0 : scores[i] == scores[j] ? 0.5 : 0.0;
    }
  }
  return good / pairs;
}

// The centre of bin b of AUC's 200 equal bins, where the histogram loses nothing.
float bin_centre(int b) { return (static_cast<float>(b) + 0.5f) / 200.0f; }

}  // namespace

// --- Accuracy ------------------------------------------------------------------------------

TEST(Accuracy, ClassScoresAgainstIntegerLabels) {
  metrics::Accuracy acc;
  acc.update(scores_for({0, 2, 1, 1}, 3), labels({0, 1, 1, 1}));
  EXPECT_DOUBLE_EQ(acc.result(), 0.75);
  EXPECT_EQ(acc.name(), "accuracy");
}

TEST(Accuracy, ClassScoresAgainstOneHotTargetsMatchIntegerLabels) {
  const Tensor scores = scores_for({0, 2, 1, 1}, 3);
  metrics::Accuracy with_labels, with_one_hot;
  with_labels.update(scores, labels({0, 1, 1, 1}));
  with_one_hot.update(scores, metrics::one_hot(labels({0, 1, 1, 1}), 3));
  EXPECT_DOUBLE_EQ(with_one_hot.result(), 0.75);
  EXPECT_DOUBLE_EQ(with_one_hot.result(), with_labels.result());
}

TEST(Accuracy, BinaryOutputsUseTheThreshold) {
  const std::vector<float> probs = {0.9f, 0.2f, 0.6f, 0.4f};
  const Tensor targets = floats({1, 0, 0, 0});
  metrics::Accuracy flat, column, strict({.threshold = 0.7});
  flat.update(floats(probs), targets);                // [N] against [N]
  column.update(floats(probs, {4, 1}), targets);      // [N, 1] against [N]
  strict.update(floats(probs, {4, 1}), targets);
  EXPECT_DOUBLE_EQ(flat.result(), 0.75);              // 0.6 > 0.5 is a false positive
  EXPECT_DOUBLE_EQ(column.result(), 0.75);
  EXPECT_DOUBLE_EQ(strict.result(), 1.0);             // 0.6 < 0.7 is now a negative

  metrics::Accuracy int_targets;
  int_targets.update(floats(probs), labels({1, 0, 0, 0}));
  EXPECT_DOUBLE_EQ(int_targets.result(), 0.75);
}

TEST(Accuracy, AccumulatesOverUpdatesAndResetStartsAgain) {
  metrics::Accuracy acc;
  acc.update(scores_for({0, 1}, 2), labels({0, 1}));     // 2 of 2
  acc.update(scores_for({0, 0, 0}, 2), labels({1, 1, 0}));  // 1 of 3
  EXPECT_DOUBLE_EQ(acc.result(), 3.0 / 5.0);
  acc.reset();
  EXPECT_DOUBLE_EQ(acc.result(), 0.0);
  acc.update(scores_for({1}, 2), labels({1}));
  EXPECT_DOUBLE_EQ(acc.result(), 1.0);
}

TEST(Accuracy, CloneStartsEmptyWithTheSameOptions) {
  metrics::Accuracy acc({.threshold = 0.7});
  acc.update(floats({0.9f}), floats({1}));
  auto copy = acc.clone();
  EXPECT_DOUBLE_EQ(copy->result(), 0.0);
  copy->update(floats({0.6f}), floats({0}));  // below 0.7: a correct negative
  EXPECT_DOUBLE_EQ(copy->result(), 1.0);
}

TEST(Accuracy, BadShapesNameTheMetric) {
  metrics::Accuracy acc;
  std::string msg = error_of<ShapeError>([&] { acc.update(scores_for({0, 1, 1}, 2), labels({0, 1})); });
  EXPECT_NE(msg.find("Accuracy"), std::string::npos) << msg;
  EXPECT_NE(msg.find("[3, 2]"), std::string::npos) << msg;
  msg = error_of<ShapeError>([&] { acc.update(scores_for({0, 1}, 2), floats({1, 0, 0, 1, 0, 1}, {2, 3})); });
  EXPECT_NE(msg.find("Accuracy"), std::string::npos) << msg;
  msg = error_of<DTypeError>([&] { acc.update(scores_for({0, 1}, 2), floats({0, 1})); });
  EXPECT_NE(msg.find("Accuracy"), std::string::npos) << msg;
}

// --- TopKAccuracy ----------------------------------------------------------------------------

TEST(TopKAccuracy, KOneIsAccuracyAndKTwoCountsTheRunnerUp) {
  // Row ranks: row 0 label is 1st, row 1 label 2nd, row 2 label 3rd, row 3 label 4th.
  const Tensor scores = floats({0.7f, 0.1f, 0.1f, 0.1f,
                                0.5f, 0.3f, 0.1f, 0.1f,
                                0.4f, 0.3f, 0.2f, 0.1f,
                                0.1f, 0.2f, 0.3f, 0.4f}, {4, 4});
  const Tensor y = labels({0, 1, 2, 0});
  metrics::TopKAccuracy top1(1), top2(2), top3(3);
  top1.update(scores, y);
  top2.update(scores, y);
  top3.update(scores, y);
  EXPECT_DOUBLE_EQ(top1.result(), 0.25);
  EXPECT_DOUBLE_EQ(top2.result(), 0.5);
  EXPECT_DOUBLE_EQ(top3.result(), 0.75);
  EXPECT_EQ(top2.name(), "top_2_accuracy");

  metrics::Accuracy acc;
  acc.update(scores, y);
  EXPECT_DOUBLE_EQ(top1.result(), acc.result());
}

TEST(TopKAccuracy, TiesCountInTheLabelsFavour) {
  metrics::TopKAccuracy top1(1);
  top1.update(floats({0.5f, 0.5f}, {1, 2}), labels({1}));
  EXPECT_DOUBLE_EQ(top1.result(), 1.0);
}

TEST(TopKAccuracy, AccumulatesAndResets) {
  metrics::TopKAccuracy top2(2);
  top2.update(floats({0.1f, 0.2f, 0.7f}, {1, 3}), labels({1}));  // 2nd: in
  top2.update(floats({0.1f, 0.2f, 0.7f}, {1, 3}), labels({0}));  // 3rd: out
  EXPECT_DOUBLE_EQ(top2.result(), 0.5);
  top2.reset();
  EXPECT_DOUBLE_EQ(top2.result(), 0.0);
}

TEST(TopKAccuracy, BadShapesAndKNameTheMetric) {
  metrics::TopKAccuracy top2(2);
  const std::string msg = error_of<ShapeError>([&] { top2.update(floats({0.1f, 0.9f}), labels({1, 0})); });
  EXPECT_NE(msg.find("TopKAccuracy"), std::string::npos) << msg;
  EXPECT_NE(error_of<Error>([] { metrics::TopKAccuracy bad(0); }).find("TopKAccuracy"), std::string::npos);
}

// --- ConfusionMatrix, Precision, Recall, F1Score ------------------------------------------------

namespace {
// truth 0 0 1 1 2 2 0, predicted 0 1 1 0 1 0 0: class 2 is never predicted.
//            p0 p1 p2
//   true 0 [  2  1  0 ]
//   true 1 [  1  1  0 ]
//   true 2 [  1  1  0 ]
const std::vector<int64_t> kTruth = {0, 0, 1, 1, 2, 2, 0};
const std::vector<int64_t> kPred = {0, 1, 1, 0, 1, 0, 0};
}  // namespace

TEST(ConfusionMatrix, CountsTrueAgainstPredictedClasses) {
  metrics::ConfusionMatrix cm(3);
  cm.update(scores_for(kPred, 3), labels(kTruth));
  EXPECT_EQ(cm.matrix().shape(), (Shape{3, 3}));
  EXPECT_EQ(cm.matrix().to_vector<int64_t>(), (std::vector<int64_t>{2, 1, 0, 1, 1, 0, 1, 1, 0}));
  EXPECT_DOUBLE_EQ(cm.result(), 3.0 / 7.0);
}

TEST(ConfusionMatrix, PerClassPrecisionRecallF1WithANeverPredictedClassAtZero) {
  metrics::ConfusionMatrix cm(3);
  cm.update(scores_for(kPred, 3), labels(kTruth));
  const auto p = cm.precision(), r = cm.recall(), f = cm.f1();
  ASSERT_EQ(p.size(), 3u);
  EXPECT_DOUBLE_EQ(p[0], 2.0 / 4.0);
  EXPECT_DOUBLE_EQ(p[1], 1.0 / 3.0);
  EXPECT_DOUBLE_EQ(p[2], 0.0);  // never predicted: 0/0 counts as 0
  EXPECT_DOUBLE_EQ(r[0], 2.0 / 3.0);
  EXPECT_DOUBLE_EQ(r[1], 1.0 / 2.0);
  EXPECT_DOUBLE_EQ(r[2], 0.0);
  EXPECT_DOUBLE_EQ(f[0], 4.0 / 7.0);
  EXPECT_DOUBLE_EQ(f[1], 2.0 / 5.0);
  EXPECT_DOUBLE_EQ(f[2], 0.0);
}

TEST(ConfusionMatrix, MacroAveragesIncludeTheNeverPredictedClass) {
  metrics::Precision precision(3);
  metrics::Recall recall(3);
  metrics::F1Score f1(3);
  for (metrics::Metric* m : std::vector<metrics::Metric*>{&precision, &recall, &f1}) {
    m->update(scores_for(kPred, 3), labels(kTruth));
  }
  EXPECT_NEAR(precision.result(), 5.0 / 18.0, 1e-12);
  EXPECT_NEAR(recall.result(), 7.0 / 18.0, 1e-12);
  EXPECT_NEAR(f1.result(), 34.0 / 105.0, 1e-12);
}

TEST(ConfusionMatrix, BinaryAverageIsClassOneOfThresholdedOutputs) {
  // probabilities 0.9 0.8 0.3 0.6 0.1 -> predicted 1 1 0 1 0; truth 1 0 1 1 0:
  // TP 2, FP 1, FN 1.
  const Tensor probs = floats({0.9f, 0.8f, 0.3f, 0.6f, 0.1f}, {5, 1});
  const Tensor truth = floats({1, 0, 1, 1, 0});
  metrics::Precision precision(2, metrics::Average::Binary);
  metrics::Recall recall(2, metrics::Average::Binary);
  metrics::F1Score f1(2, metrics::Average::Binary);
  for (metrics::Metric* m : std::vector<metrics::Metric*>{&precision, &recall, &f1}) m->update(probs, truth);
  EXPECT_NEAR(precision.result(), 2.0 / 3.0, 1e-12);
  EXPECT_NEAR(recall.result(), 2.0 / 3.0, 1e-12);
  EXPECT_NEAR(f1.result(), 2.0 / 3.0, 1e-12);

  metrics::ConfusionMatrix cm(2);
  cm.update(probs, truth);
  EXPECT_EQ(cm.matrix().to_vector<int64_t>(), (std::vector<int64_t>{1, 1, 1, 2}));
}

TEST(ConfusionMatrix, AccumulatesOverUpdatesAndResets) {
  metrics::ConfusionMatrix cm(3);
  cm.update(scores_for({0, 1, 1}, 3), labels({0, 0, 1}));
  cm.update(scores_for({0, 1, 0, 0}, 3), labels({1, 2, 2, 0}));
  EXPECT_EQ(cm.matrix().to_vector<int64_t>(), (std::vector<int64_t>{2, 1, 0, 1, 1, 0, 1, 1, 0}));
  cm.reset();
  EXPECT_EQ(cm.matrix().to_vector<int64_t>(), std::vector<int64_t>(9, 0));
  EXPECT_DOUBLE_EQ(cm.result(), 0.0);
}

TEST(ConfusionMatrix, WrongClassCountNamesTheMetric) {
  metrics::ConfusionMatrix cm(3);
  std::string msg = error_of<ShapeError>([&] { cm.update(scores_for({0, 1}, 4), labels({0, 1})); });
  EXPECT_NE(msg.find("ConfusionMatrix"), std::string::npos) << msg;
  EXPECT_NE(msg.find("[2, 4]"), std::string::npos) << msg;

  metrics::Precision precision(3);
  msg = error_of<ShapeError>([&] { precision.update(scores_for({0, 1}, 4), labels({0, 1})); });
  EXPECT_NE(msg.find("Precision"), std::string::npos) << msg;
  metrics::F1Score f1(3);
  msg = error_of<ShapeError>([&] { f1.update(scores_for({0, 1, 2}, 3), labels({0, 1})); });
  EXPECT_NE(msg.find("F1Score"), std::string::npos) << msg;
  EXPECT_NE(error_of<Error>([] { metrics::ConfusionMatrix bad(0); }).find("ConfusionMatrix"), std::string::npos);
}

// --- AUC ----------------------------------------------------------------------------------------

TEST(AUC, MatchesTheExactRocAucForScoresOnBinCentres) {
  // Positives at bins 180, 140, 80 and 100; negatives at 160, 60, 20 and 100 (a tie).
  const std::vector<float> scores = {bin_centre(180), bin_centre(140), bin_centre(80), bin_centre(100),
                                     bin_centre(160), bin_centre(60), bin_centre(20), bin_centre(100)};
  const std::vector<float> targets = {1, 1, 1, 1, 0, 0, 0, 0};
  const double exact = exact_auc(scores, targets);
  EXPECT_DOUBLE_EQ(exact, (4 + 3 + 2 + 2.5) / 16.0);
  metrics::AUC auc;
  auc.update(floats(scores, {8, 1}), floats(targets));
  EXPECT_NEAR(auc.result(), exact, 1e-9);
  EXPECT_EQ(auc.name(), "auc");
}

TEST(AUC, RandomScoresAreWithinTheBinningError) {
  std::mt19937 gen(3);
  std::uniform_real_distribution<float> u(0.0f, 1.0f);
  std::vector<float> scores(300), targets(300);
  for (size_t i = 0; i < scores.size(); ++i) {
    targets[i] = i % 3 == 0 ? 1.0f : 0.0f;
    scores[i] = std::min(1.0f, std::max(0.0f, u(gen) * 0.8f + (targets[i] == 1.0f ? 0.2f : 0.0f)));
  }
  metrics::AUC auc;
  auc.update(floats(scores), labels(std::vector<int64_t>(targets.begin(), targets.end())));
  // Pairs sharing one of the 200 bins are the only ones miscounted, each by at most 1/2.
  EXPECT_NEAR(auc.result(), exact_auc(scores, targets), 0.01);
}

TEST(AUC, AccumulatesOverUpdatesAndResetsBetweenEpochs) {
  const std::vector<float> scores = {bin_centre(190), bin_centre(30), bin_centre(120), bin_centre(50)};
  const std::vector<float> targets = {1, 0, 0, 1};
  metrics::AUC whole, parts;
  whole.update(floats(scores), floats(targets));
  parts.update(floats({scores[0], scores[1]}), floats({targets[0], targets[1]}));
  parts.update(floats({scores[2], scores[3]}), floats({targets[2], targets[3]}));
  EXPECT_DOUBLE_EQ(whole.result(), exact_auc(scores, targets));
  EXPECT_DOUBLE_EQ(parts.result(), whole.result());
  parts.reset();
  EXPECT_DOUBLE_EQ(parts.result(), 0.0);
  parts.update(floats({bin_centre(10), bin_centre(20)}), floats({1, 0}));  // a fresh epoch
  EXPECT_DOUBLE_EQ(parts.result(), 0.0);
}

TEST(AUC, ClassScoresAreRejectedNamingTheMetric) {
  metrics::AUC auc;
  const std::string msg = error_of<ShapeError>([&] { auc.update(scores_for({0, 1}, 3), labels({0, 1})); });
  EXPECT_NE(msg.find("AUC"), std::string::npos) << msg;
  EXPECT_NE(msg.find("[2, 3]"), std::string::npos) << msg;
}

// --- metrics on the GPU ------------------------------------------------------------------------

TEST(MetricsCuda, AccuracyAndConfusionMatrixMatchTheCpu) {
  if (!cuda::is_available()) GTEST_SKIP() << "no CUDA device: " << cuda::unavailable_reason();
  const Device gpu = Device::cuda(0);
  metrics::Accuracy acc;
  metrics::ConfusionMatrix cm(3);
  metrics::AUC auc;
  acc.update(scores_for(kPred, 3).to(gpu), labels(kTruth).to(gpu));
  cm.update(scores_for(kPred, 3).to(gpu), labels(kTruth).to(gpu));
  auc.update(floats({bin_centre(190), bin_centre(30)}).to(gpu), floats({1, 0}).to(gpu));
  EXPECT_DOUBLE_EQ(acc.result(), 3.0 / 7.0);
  EXPECT_EQ(cm.matrix().to_vector<int64_t>(), (std::vector<int64_t>{2, 1, 0, 1, 1, 0, 1, 1, 0}));
  EXPECT_DOUBLE_EQ(auc.result(), 1.0);
}
