// The shared test support checks itself: allclose fails where it must and names the worst
// element, integers compare exactly, the relative-to-largest bound scales with the
// reference, and the message checks report what they saw.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "ember/core/base/error.h"
#include "ember/core/ops.h"
#include "ember/core/tensor.h"
#include "support/allclose.h"
#include "support/check.h"
#include "support/random.h"

namespace ember {
namespace {

using namespace ember::testing;

TEST(Allclose, PassesWithinTheToleranceAndTreatsNaNAsEqualToNaN) {
  const double nan = std::nan("");
  const Tensor want = Tensor::from_vector(std::vector<double>{1.0, nan, INFINITY, -2.0}, {4});
  const Tensor got =
      Tensor::from_vector(std::vector<double>{1.0 + 1e-11, nan, INFINITY, -2.0}, {4});
  EXPECT_TRUE(allclose(got, want));
  EXPECT_TRUE(allclose(got, std::vector<double>{1.0, nan, INFINITY, -2.0}));
}

TEST(Allclose, FailsBeyondTheToleranceNamingTheWorstElementAndItsIndex) {
  const Tensor want = zeros({2, 3}, {.dtype = kFloat64});
  const Tensor got = Tensor::from_vector(std::vector<double>{0, 1e-3, 0, 0, 0, 0.5}, {2, 3});
  const ::testing::AssertionResult r = allclose(got, want);
  ASSERT_FALSE(r);
  const std::string msg = r.message();
  EXPECT_TRUE(contains(msg, "2 of 6 elements")) << msg;
  EXPECT_TRUE(contains(msg, "worst at [1, 2]")) << msg;
  // A NaN where a number is wanted, and the reverse, fail.
  EXPECT_FALSE(allclose(Tensor::from_vector(std::vector<double>{std::nan("")}, {1}), {0.0}));
  EXPECT_FALSE(allclose(Tensor::from_vector(std::vector<double>{0.0}, {1}), {std::nan("")}));
}

TEST(Allclose, ShapesDtypesAndDefinednessMustMatch) {
  EXPECT_FALSE(allclose(zeros({2, 3}), zeros({3, 2})));
  EXPECT_FALSE(allclose(zeros({2}), zeros({2}, {.dtype = kFloat64})));
  EXPECT_FALSE(allclose(zeros({2}), Tensor()));
  EXPECT_TRUE(allclose(Tensor(), Tensor()));
}

TEST(Allclose, IntegersCompareExactlyBeyondTwoToThe53) {
  const int64_t big = (int64_t{1} << 53) + 1;  // rounds to 2^53 as a double
  EXPECT_FALSE(allclose(std::vector<int64_t>{big}, std::vector<int64_t>{big - 1}, kFloat32Tol));
  EXPECT_TRUE(allclose(std::vector<int64_t>{big, -3}, std::vector<int64_t>{big, -3}, kExact));
  EXPECT_FALSE(allclose(std::vector<bool>{true, false}, std::vector<bool>{true, true}, kExact));
  EXPECT_FALSE(allclose(Tensor::from_vector(std::vector<int64_t>{big}, {1}),
                        Tensor::from_vector(std::vector<int64_t>{big - 1}, {1})));
}

TEST(Allclose, RelativeToLargestBoundsEveryElementByTheLargestReference) {
  const Tensor want = Tensor::from_vector(std::vector<float>{100.0f, 0.0f}, {2});
  // 5e-3 off an element of 0 is within 1e-4 of the largest magnitude (100), not of itself.
  const Tensor got = Tensor::from_vector(std::vector<float>{100.0f, 5e-3f}, {2});
  EXPECT_TRUE(allclose_to_largest(got, want));
  EXPECT_FALSE(allclose(got, want));
  EXPECT_FALSE(
      allclose_to_largest(Tensor::from_vector(std::vector<float>{100.0f, 2e-2f}, {2}), want));
  EXPECT_EQ(relative_to_largest(std::vector<float>{0.5f, -0.25f}, 1e-4).atol, 1e-4);  // at least 1
}

TEST(Checks, ReportWhatTheySaw) {
  const auto r =
      throws<ShapeError>([] { throw ShapeError("matmul: [2, 3] and [4]"); }, {"matmul", "[5]"});
  ASSERT_FALSE(r);
  EXPECT_TRUE(contains(r.message(), "lacks \"[5]\"")) << r.message();
  EXPECT_FALSE(throws<ShapeError>([] { throw DTypeError("x"); }, {}));
  EXPECT_FALSE(throws<ShapeError>([] {}, {}));
  EXPECT_EQ(error_of<DTypeError>([] { throw DTypeError("exp: int64"); }), "exp: int64");
  EXPECT_FALSE(contains("abc", "d"));
}

TEST(Random, TheSameSeedGivesTheSameValuesInRange) {
  const auto a = uniform_values(1000, -2.0, 3.0, 7), b = uniform_values(1000, -2.0, 3.0, 7);
  EXPECT_EQ(a, b);
  EXPECT_NE(a, uniform_values(1000, -2.0, 3.0, 8));
  for (double v : a) EXPECT_TRUE(v >= -2.0 && v < 3.0) << v;
  EXPECT_EQ(uniform({2, 3}, 0, 1, 1, kFloat32).dtype(), kFloat32);
}

}  // namespace
}  // namespace ember
