// Specification of core/ops/activation.cpp on the CPU: softmax and log_softmax along every
// dim against a std:: reference, their gradients, stability for large and masked logits,
// and the saturation of sigmoid and tanh. (Each activation's forward, gradient and NaN
// cases are in the unary table of test_elementwise.cpp.)
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>
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
    EXPECT_TRUE(allclose(softmax(x), {0.5, 0.5, 0.0}, reference_tolerance(dt)));
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
    EXPECT_TRUE(allclose(p, {1 / (1 + e), 0.0, e / (1 + e)}, reference_tolerance(dt)));
    sum(mul(p, from({1, 2, 3}, {1, 3}, dt))).backward();
    for (double g : values(x.grad())) EXPECT_TRUE(std::isfinite(g));
    EXPECT_EQ(values(log_softmax(x))[1], -inf);
  }
}

TEST(OpsSoftmax, RankZeroSizeOneAndEmptyInputs) {
  EXPECT_TRUE(allclose(softmax(scalar_tensor(3.0)), {1.0}, reference_tolerance(kFloat32)));
  EXPECT_TRUE(allclose(log_softmax(scalar_tensor(3.0)), {0.0}, reference_tolerance(kFloat32)));
  EXPECT_TRUE(allclose(softmax(full({2, 1}, 7.0), 1), {1.0, 1.0}, reference_tolerance(kFloat32)));
  EXPECT_EQ(softmax(zeros({0, 4}), -1).shape(), (Shape{0, 4}));
  EXPECT_EQ(log_softmax(zeros({3, 0}), 0).shape(), (Shape{3, 0}));
}

TEST(OpsSoftmax, BadDimIsAShapeErrorNamingTheOp) {
  EXPECT_TRUE(throws<ShapeError>([] { softmax(zeros({2, 3}), 2); }, {"softmax", "2", "rank 2"}));
  EXPECT_TRUE(throws<ShapeError>([] { log_softmax(zeros({2, 3}), -3); }, {"log_softmax"}));
  EXPECT_TRUE(throws<DTypeError>([] { softmax(int64s({1}, {1})); }, {"softmax", "int64"}));
}

}  // namespace
}  // namespace ember
