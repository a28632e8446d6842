// Specification of core/ops/dropout.cpp on the CPU: identity in evaluation mode and at
// p = 0, mask values and kept fraction, the gradient is the mask, reproducibility under
// manual_seed, sizes 0 and 1, and the errors for bad probabilities and dtypes.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "ember/core/autograd.h"
#include "ember/core/base/error.h"
#include "ember/core/ops.h"
#include "ember/core/tensor.h"
#include "support/op_reference.h"
#include "ember/core/random.h"

namespace ember {
namespace {

using namespace ember::testing;

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
