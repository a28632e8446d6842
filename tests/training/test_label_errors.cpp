// Labels outside the class range: the class-index losses and OneHot name how many there
// are, the first few values and where they sit, instead of only counting them.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include <ember/ember.h>
#include "support/check.h"

using namespace ember;

namespace {

Tensor labels(const std::vector<int64_t>& v) {
  return Tensor::from_vector<int64_t>(v, {static_cast<int64_t>(v.size())});
}

}  // namespace

TEST(LabelErrors, CrossEntropyNamesTheCountTheValuesAndTheirRows) {
  const Tensor logits = zeros({6, 3});
  const std::string msg = ember::testing::error_of<ShapeError>([&] { loss::CrossEntropy()(logits, labels({0, 3, 1, 2, -2, 9})); });
  EXPECT_EQ(msg,
            "CrossEntropy: 3 of 6 labels are outside the class range [0, 3) of output [6, 3]: "
            "label 3 at row 1, label -2 at row 4, label 9 at row 5 (rows of the batch; a label "
            "is a class index 0 to 2, or ignore_index -100)");
}

TEST(LabelErrors, OnlyTheFirstFiveAreListed) {
  std::vector<int64_t> v(100, 10);  // every label out of range for 4 classes
  const std::string msg = ember::testing::error_of<ShapeError>([&] { loss::CrossEntropy()(zeros({100, 4}), labels(v)); });
  EXPECT_NE(msg.find("100 of 100 labels"), std::string::npos) << msg;
  EXPECT_NE(msg.find("label 10 at row 4, ... (the first 5 shown)"), std::string::npos) << msg;
  EXPECT_EQ(msg.find("row 5"), std::string::npos) << msg;
}

TEST(LabelErrors, IgnoreIndexIsNotABadLabel) {
  const Tensor logits = zeros({3, 2});
  EXPECT_NO_THROW(loss::CrossEntropy()(logits, labels({0, -100, 1})));
  const std::string msg = ember::testing::error_of<ShapeError>(
      [&] { loss::CrossEntropy({.ignore_index = 5})(logits, labels({5, -100, 1})); });
  EXPECT_NE(msg.find("1 of 3 labels"), std::string::npos) << msg;
  EXPECT_NE(msg.find("label -100 at row 1"), std::string::npos) << msg;
  EXPECT_NE(msg.find("or ignore_index 5"), std::string::npos) << msg;
}

TEST(LabelErrors, NllAndSparseCategoricalNameThemselves) {
  const Tensor probs = full({2, 2}, 0.5);
  const std::string nll = ember::testing::error_of<ShapeError>([&] { loss::NLL()(log(probs), labels({0, 2})); });
  EXPECT_EQ(nll.rfind("NLL: 1 of 2 labels are outside the class range [0, 2) of output [2, 2]: label 2 at row 1", 0), 0u)
      << nll;
  const std::string sparse =
      ember::testing::error_of<ShapeError>([&] { loss::SparseCategoricalCrossEntropy()(probs, labels({-1, 1})); });
  EXPECT_EQ(sparse.rfind("SparseCategoricalCrossEntropy: 1 of 2 labels", 0), 0u) << sparse;
  EXPECT_NE(sparse.find("label -1 at row 0"), std::string::npos) << sparse;
  const std::string logits = ember::testing::error_of<ShapeError>(
      [&] { loss::SparseCategoricalCrossEntropy({.from_logits = true})(probs, labels({4, 1})); });
  EXPECT_NE(logits.find("label 4 at row 0"), std::string::npos) << logits;
}

TEST(LabelErrors, OtherShapeErrorsPassThroughUnchanged) {
  // A target of the wrong length is the op's own error, not a label one.
  const std::string msg = ember::testing::error_of<ShapeError>([&] { loss::CrossEntropy()(zeros({3, 2}), labels({0, 1})); });
  EXPECT_EQ(msg.find("labels are outside"), std::string::npos) << msg;
  EXPECT_NE(msg.find("[3, 2]"), std::string::npos) << msg;
}

TEST(LabelErrors, OneHotListsEveryKindOfBadLabelWithItsPosition) {
  data::Generator gen(0);
  const std::string msg = ember::testing::error_of<ShapeError>([&] { data::OneHot(3).apply(labels({0, 3, -1, 2}), gen); });
  EXPECT_EQ(msg, "OneHot: 2 of 4 labels are outside [0, 3): label 3 at position 1, label -1 at position 2");
}
