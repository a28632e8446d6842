// The joining and splitting ops (cat, stack, split, chunk) and the embedding op on the CPU:
// values, float64 finite-difference gradients (including non-contiguous inputs and pieces
// that receive no gradient), sizes 0 and 1, and the errors.
#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <vector>

#include "ember/core/autograd.h"
#include "ember/core/base/error.h"
#include "ember/core/grad_check.h"
#include "ember/core/ops.h"
#include "ember/core/tensor.h"
#include "support/check.h"
#include "support/op_reference.h"

namespace ember {
namespace {

using namespace ember::testing;

TEST(Cat, JoinsAlongAnyDimension) {
  const Tensor a = arange(0.0, 6.0, 1.0, {.dtype = kFloat64}).reshape({2, 3});
  const Tensor b = arange(10.0, 14.0, 1.0, {.dtype = kFloat64}).reshape({2, 2});
  const Tensor c = cat({a, b}, 1);
  EXPECT_EQ(c.shape(), (Shape{2, 5}));
  EXPECT_EQ(values(c), (std::vector<double>{0, 1, 2, 10, 11, 3, 4, 5, 12, 13}));
  const Tensor d = cat({a, a.narrow(0, 1, 1)}, -2);
  EXPECT_EQ(values(d), (std::vector<double>{0, 1, 2, 3, 4, 5, 3, 4, 5}));
  // Empty pieces and non-contiguous ones.
  EXPECT_EQ(values(cat({a.t(), zeros({0, 2}, {.dtype = kFloat64})}, 0)),
            (std::vector<double>{0, 3, 1, 4, 2, 5}));
}

TEST(Cat, GradientsMatchFiniteDifferences) {
  const Tensor a = leaf({2, 3}, -1, 1, 1), b = leaf({2, 1}, -1, 1, 2), c = leaf({3, 2}, -1, 1, 3);
  auto r = gradcheck(
      [](const std::vector<Tensor>& in) {
        return cat({in[0], in[1], in[2].t()}, 1);
      },
      {a, b, c});
  EXPECT_TRUE(r.ok) << r.report;
  // Only some inputs require grad.
  const Tensor fixed = uniform({1, 3}, -1, 1, 4);
  auto r2 = gradcheck([&](const std::vector<Tensor>& in) { return cat({fixed, in[0]}, 0); }, {a});
  EXPECT_TRUE(r2.ok) << r2.report;
}

TEST(Cat, MismatchedShapesAndEmptyListsAreErrors) {
  const std::string m = error_of<ShapeError>([] { cat({zeros({2, 3}), zeros({3, 3})}, 1); });
  EXPECT_NE(m.find("tensor 1 has shape [3, 3], tensor 0 has [2, 3]"), std::string::npos) << m;
  EXPECT_THROW(cat({}, 0), Error);
  EXPECT_THROW(cat({zeros({2}), zeros({2}, {.dtype = kFloat64})}, 0), DTypeError);
  EXPECT_THROW(cat({zeros({2, 2})}, 2), ShapeError);
}

TEST(Stack, AddsANewDimension) {
  const Tensor a = arange(0.0, 3.0, 1.0, {.dtype = kFloat64});
  const Tensor b = arange(3.0, 6.0, 1.0, {.dtype = kFloat64});
  EXPECT_EQ(stack({a, b}, 0).shape(), (Shape{2, 3}));
  const Tensor s = stack({a, b}, 1);
  EXPECT_EQ(s.shape(), (Shape{3, 2}));
  EXPECT_EQ(values(s), (std::vector<double>{0, 3, 1, 4, 2, 5}));
  EXPECT_EQ(stack({a}, -1).shape(), (Shape{3, 1}));
  auto r = gradcheck([](const std::vector<Tensor>& in) { return stack({in[0], in[1]}, 1); },
                     {leaf({2, 2}, -1, 1, 5), leaf({2, 2}, -1, 1, 6)});
  EXPECT_TRUE(r.ok) << r.report;
  EXPECT_THROW(stack({zeros({2}), zeros({3})}, 0), ShapeError);
}

TEST(Split, GivesViewsWithTheGivenSizes) {
  const Tensor x = arange(0.0, 12.0, 1.0, {.dtype = kFloat64}).reshape({3, 4});
  const auto parts = split(x, {1, 3}, 1);
  ASSERT_EQ(parts.size(), 2u);
  EXPECT_EQ(parts[0].shape(), (Shape{3, 1}));
  EXPECT_EQ(values(parts[1]), (std::vector<double>{1, 2, 3, 5, 6, 7, 9, 10, 11}));
  EXPECT_EQ(parts[1].impl().storage, x.impl().storage);  // views, not copies
  const std::string m = error_of<ShapeError>([&] { split(x, {1, 2}, 1); });
  EXPECT_NE(m.find("sizes adding up to 3 cannot split dimension 1 of size 4"), std::string::npos)
      << m;
}

TEST(Split, GradientsMatchFiniteDifferencesWhenSomePiecesAreUnused) {
  const Tensor x = leaf({3, 5}, -1, 1, 7);
  auto r = gradcheck(
      [](const std::vector<Tensor>& in) {
        const auto p = split(in[0], {2, 0, 3}, 1);
        return mul(p[2], p[2]);  // pieces 0 and 1 get no gradient
      },
      {x});
  EXPECT_TRUE(r.ok) << r.report;
  auto r2 = gradcheck(
      [](const std::vector<Tensor>& in) {
        const auto p = chunk(in[0], 2, 0);
        return add(mul(p[0], 2.0), sum(p[1]));
      },
      {leaf({4, 2}, -1, 1, 8)});
  EXPECT_TRUE(r2.ok) << r2.report;
}

TEST(Chunk, FollowsPyTorchsSizes) {
  const Tensor x = zeros({7, 2});
  const auto p = chunk(x, 3, 0);
  ASSERT_EQ(p.size(), 3u);
  EXPECT_EQ(p[0].size(0), 3);
  EXPECT_EQ(p[2].size(0), 1);
  EXPECT_EQ(chunk(zeros({2, 2}), 4, 0).size(), 2u);  // fewer pieces than asked
  EXPECT_THROW(chunk(x, 0, 0), Error);
}

TEST(EmbeddingOp, GathersRowsAndScattersGradients) {
  const Tensor w = arange(0.0, 8.0, 1.0, {.dtype = kFloat64}).reshape({4, 2}).requires_grad_();
  const Tensor idx = Tensor::from_vector(std::vector<int64_t>{2, 2, 0}, {3});
  const Tensor y = embedding(w, idx);
  EXPECT_EQ(values(y), (std::vector<double>{4, 5, 4, 5, 0, 1}));
  sum(y).backward();
  EXPECT_EQ(values(w.grad()), (std::vector<double>{1, 1, 0, 0, 2, 2, 0, 0}));
  // Empty indices give an empty result and a zero gradient.
  const Tensor none = embedding(w, Tensor::from_vector(std::vector<int64_t>{}, {0}));
  EXPECT_EQ(none.shape(), (Shape{0, 2}));
  EXPECT_THROW(embedding(w, idx, 4), Error);
  EXPECT_THROW(embedding(w.detach().reshape({8}), idx), ShapeError);
}

}  // namespace
}  // namespace ember
