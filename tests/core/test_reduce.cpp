// Specification of core/ops/reduce.cpp on the CPU: sum and mean over any set of dims
// with and without keepdim, max/min with their indices, argmax/argmin and their tie rule,
// against std:: references in float32 and float64; gradients by the f64 finite-difference
// checker; empty, rank-0, bool and integer inputs; and the errors for bad dims.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
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
// Reductions
// ===========================================================================================

// Sum (or mean) of x [s] over `dims`, keeping every dim (size 1 where reduced).
std::vector<double> reduce_ref(const std::vector<double>& x, const Shape& s,
                               const std::vector<int64_t>& dims, bool mean, Shape* kept) {
  Shape k = s;
  for (int64_t d : dims) k[static_cast<size_t>(d)] = 1;
  *kept = k;
  std::vector<double> out(static_cast<size_t>(shape_numel(k)), 0.0);
  const int64_t n = shape_numel(s);
  for (int64_t i = 0; i < n; ++i) {
    int64_t rest = i, o = 0, mult = 1;
    for (int64_t d = static_cast<int64_t>(s.size()) - 1; d >= 0; --d) {
      const int64_t c = rest % s[static_cast<size_t>(d)];
      rest /= s[static_cast<size_t>(d)];
      o += (k[static_cast<size_t>(d)] == 1 ? 0 : c) * mult;
      mult *= k[static_cast<size_t>(d)];
    }
    out[static_cast<size_t>(o)] += x[static_cast<size_t>(i)];
  }
  if (mean) {
    const double count = static_cast<double>(n) / static_cast<double>(out.size());
    for (auto& v : out) v /= count;
  }
  return out;
}

TEST(OpsReduce, SumAndMeanOverAllElements) {
  for (DType dt : kFloatDTypes) {
    Tensor x = from({1, 2, 3, 4, 5, 6}, {2, 3}, dt);
    Tensor s = sum(x), m = mean(x);
    EXPECT_TRUE(matches(s, {}, {21.0}, dt));
    EXPECT_TRUE(matches(m, {}, {3.5}, dt));
  }
}

TEST(OpsReduce, SumAndMeanOverDimsWithAndWithoutKeepdim) {
  const Shape s{2, 3, 4};
  const std::vector<std::vector<int64_t>> dim_sets = {{0}, {1}, {2}, {-1}, {0, 2}, {2, 0}, {0, 1, 2}};
  for (bool is_mean : {false, true}) {
    for (const auto& dims : dim_sets) {
      for (bool keepdim : {false, true}) {
        for (DType dt : kFloatDTypes) {
          SCOPED_TRACE(std::string(is_mean ? "mean" : "sum") + " dims " +
                       shape_str(Shape(dims.begin(), dims.end())) + (keepdim ? " keepdim " : " ") +
                       dtype_name(dt));
          Tensor x = uniform(s, -2, 2, 40, dt);
          std::vector<int64_t> wrapped;
          for (int64_t d : dims) wrapped.push_back(d < 0 ? d + 3 : d);
          Shape kept;
          const auto want = reduce_ref(values(x), s, wrapped, is_mean, &kept);
          Shape out_shape;
          for (size_t d = 0; d < s.size(); ++d) {
            const bool reduced =
                std::find(wrapped.begin(), wrapped.end(), static_cast<int64_t>(d)) != wrapped.end();
            if (!reduced) out_shape.push_back(s[d]);
            else if (keepdim) out_shape.push_back(1);
          }
          Tensor y = is_mean ? mean(x, dims, keepdim) : sum(x, dims, keepdim);
          EXPECT_TRUE(matches(y, out_shape, want, dt));
        }
      }
    }
  }
}

TEST(OpsReduce, SumAndMeanBackwardPassTheGradientCheck) {
  for (bool is_mean : {false, true}) {
    SCOPED_TRACE(is_mean ? "mean" : "sum");
    auto all = [&](const std::vector<Tensor>& in) { return is_mean ? mean(in[0]) : sum(in[0]); };
    EXPECT_TRUE(grad_ok(all, {leaf({2, 3}, -1, 1, 1)}));
    EXPECT_TRUE(grad_ok(all, {leaf({}, -1, 1, 2)}));
    for (bool keepdim : {false, true}) {
      for (const std::vector<int64_t>& dims : {std::vector<int64_t>{0}, {-1}, {0, 2}, {1}}) {
        EXPECT_TRUE(grad_ok(
            [&](const std::vector<Tensor>& in) {
              return is_mean ? mean(in[0], dims, keepdim) : sum(in[0], dims, keepdim);
            },
            {leaf({2, 3, 2}, -1, 1, 3)}));
      }
    }
    // Through a transposed view.
    EXPECT_TRUE(grad_ok(
        [&](const std::vector<Tensor>& in) {
          return is_mean ? mean(in[0].t(), {1}) : sum(in[0].t(), {1});
        },
        {leaf({3, 2}, -1, 1, 4)}));
  }
}

TEST(OpsReduce, SumOfAnEmptyTensorIsZeroAndItsMeanIsNaN) {
  for (DType dt : kFloatDTypes) {
    EXPECT_TRUE(matches(sum(zeros({0}, {.dtype = dt})), {}, {0.0}, dt));
    EXPECT_TRUE(matches(sum(zeros({2, 0}, {.dtype = dt})), {}, {0.0}, dt));
    EXPECT_TRUE(matches(sum(zeros({2, 0}, {.dtype = dt}), {1}), {2}, {0.0, 0.0}, dt));
    EXPECT_TRUE(matches(sum(zeros({2, 0}, {.dtype = dt}), {0}, true), {1, 0}, {}, dt));
    EXPECT_TRUE(std::isnan(mean(zeros({0}, {.dtype = dt})).item()));
  }
  EXPECT_EQ(sum(zeros({0}, {.dtype = kInt64})).item<int64_t>(), 0);
  // Its gradient is empty.
  Tensor e = leaf({0, 3}, 0, 1, 5);
  sum(e).backward();
  EXPECT_EQ(e.grad().shape(), (Shape{0, 3}));
}

TEST(OpsReduce, RankZeroAndSizeOneInputs) {
  Tensor s = scalar_tensor(4.0, {.dtype = kFloat64});
  EXPECT_TRUE(matches(sum(s), {}, {4.0}, kFloat64));
  EXPECT_TRUE(matches(mean(s), {}, {4.0}, kFloat64));
  EXPECT_TRUE(matches(sum(s, {0}), {}, {4.0}, kFloat64));
  EXPECT_TRUE(matches(sum(full({1, 1}, 2.0), {0, 1}, true), {1, 1}, {2.0}, kFloat32));
  EXPECT_TRUE(matches(mean(full({1}, 2.0)), {}, {2.0}, kFloat32));
}

TEST(OpsReduce, SumOverAnEmptyDimListReducesEverythingLikePyTorch) {
  Tensor x = leaf({2, 3}, -1, 1, 6);
  Tensor y = sum(x, std::vector<int64_t>{});
  EXPECT_EQ(y.shape(), Shape{});
  EXPECT_TRUE(allclose(y, {sum(x).item()}, reference_tolerance(kFloat64)));
  EXPECT_TRUE(x.is_leaf());
  EXPECT_EQ(mean(x, std::vector<int64_t>{}, true).shape(), (Shape{1, 1}));
  EXPECT_TRUE(grad_ok([](const std::vector<Tensor>& in) { return mean(in[0], std::vector<int64_t>{}); },
                      {leaf({2, 3}, -1, 1, 7)}));
}

TEST(OpsReduce, SumOfBoolCountsAsInt64) {
  Tensor b = bools({1, 0, 1, 1, 0}, {5});
  Tensor s = sum(b);
  EXPECT_EQ(s.dtype(), kInt64);
  EXPECT_EQ(s.item<int64_t>(), 3);
  Tensor per_row = sum(bools({1, 1, 0, 1, 0, 0}, {2, 3}), {1});
  EXPECT_EQ(per_row.dtype(), kInt64);
  EXPECT_EQ(int_values(per_row), (std::vector<int64_t>{2, 1}));
  // uint8 and int32 widen to int64; int64 stays int64.
  Tensor u = Tensor::from_vector(std::vector<uint8_t>{200, 200}, {2});
  EXPECT_EQ(sum(u).dtype(), kInt64);
  EXPECT_EQ(sum(u).item<int64_t>(), 400);
  EXPECT_EQ(sum(Tensor::from_vector(std::vector<int32_t>{-5, 7}, {2})).item<int64_t>(), 2);
  EXPECT_EQ(sum(int64s({1, 2, 3, 4}, {2, 2}), {0}).dtype(), kInt64);
  EXPECT_EQ(int_values(sum(int64s({1, 2, 3, 4}, {2, 2}), {0})), (std::vector<int64_t>{4, 6}));
}

TEST(OpsReduce, SumOfManyFloat32sKeepsItsDigits) {
  // A float running sum would stall at 2^24; the accumulation is in double.
  const int64_t n = (int64_t{1} << 24) + 64;
  EXPECT_EQ(sum(ones({n})).item(), static_cast<double>(n));
  EXPECT_EQ(values(sum(ones({2, n / 2}), {1})), (std::vector<double>{n / 2.0, n / 2.0}));
}

TEST(OpsReduce, RankZeroArgmaxIsZeroAndItsDimIsChecked) {
  Tensor s = scalar_tensor(5.0);
  EXPECT_EQ(argmax(s, 0).item<int64_t>(), 0);
  EXPECT_EQ(argmin(s, -1).item<int64_t>(), 0);
  EXPECT_EQ(ember::max(s, 0).values.item(), 5.0);
  EXPECT_TRUE(throws<ShapeError>([&] { argmax(s, 1); }, {"max", "rank 0"}));
}

TEST(OpsReduce, MeanOfIntegersIsRefused) {
  EXPECT_TRUE(throws<DTypeError>([] { mean(int64s({1, 2}, {2})); }, {"mean", "int64"}));
}

TEST(OpsReduce, BadDimsAreShapeErrors) {
  EXPECT_TRUE(throws<ShapeError>([] { sum(zeros({2, 3}), {2}); }, {"sum", "2", "rank 2"}));
  EXPECT_TRUE(throws<ShapeError>([] { mean(zeros({2, 3}), {-3}); }, {"mean"}));
  EXPECT_TRUE(throws<ShapeError>([] { sum(zeros({2, 3}), {1, -1}); }, {"sum", "more than once"}));
}

TEST(OpsReduce, MaxAndMinOverAllElements) {
  for (DType dt : kFloatDTypes) {
    Tensor x = from({3, -1, 7, 2, 7, -4}, {2, 3}, dt);
    EXPECT_TRUE(matches(ember::max(x), {}, {7.0}, dt));
    EXPECT_TRUE(matches(ember::min(x), {}, {-4.0}, dt));
  }
  // The gradient goes to the first occurrence of the extreme.
  Tensor x = from({3, -1, 7, 2, 7, -4}, {2, 3});
  x.requires_grad_(true);
  ember::max(x).backward();
  EXPECT_EQ(values(x.grad()), (std::vector<double>{0, 0, 1, 0, 0, 0}));
  Tensor distinct = from({0.3, 0.9, -0.2, 0.1}, {2, 2});
  distinct.requires_grad_(true);
  EXPECT_TRUE(grad_ok([](const std::vector<Tensor>& in) { return ember::max(in[0]); }, {distinct}));
  EXPECT_TRUE(grad_ok([](const std::vector<Tensor>& in) { return ember::min(in[0]); }, {distinct}));
}

TEST(OpsReduce, MaxAndMinOverADimGiveValuesAndIndices) {
  for (DType dt : kFloatDTypes) {
    Tensor x = from({1, 5, 3, 9, 2, 4}, {2, 3}, dt);
    auto r = ember::max(x, 1);
    EXPECT_TRUE(matches(r.values, {2}, {5, 9}, dt));
    EXPECT_EQ(r.indices.dtype(), kInt64);
    EXPECT_EQ(int_values(r.indices), (std::vector<int64_t>{1, 0}));
    auto m = ember::min(x, 0, true);
    EXPECT_TRUE(matches(m.values, {1, 3}, {1, 2, 3}, dt));
    EXPECT_EQ(int_values(m.indices), (std::vector<int64_t>{0, 1, 0}));
    auto last = ember::max(x, -1, true);
    EXPECT_EQ(last.values.shape(), (Shape{2, 1}));
  }
}

TEST(OpsReduce, MaxAndMinValuesBackwardPassTheGradientCheck) {
  // Distinct values, so the argmax is stable under the finite-difference step.
  for (bool is_max : {true, false}) {
    for (int64_t dim : {0, 1, -1}) {
      for (bool keepdim : {false, true}) {
        EXPECT_TRUE(grad_ok(
            [&](const std::vector<Tensor>& in) {
              return is_max ? ember::max(in[0], dim, keepdim).values
                            : ember::min(in[0], dim, keepdim).values;
            },
            {leaf({3, 4}, -2, 2, 60 + dim)}));
      }
    }
    EXPECT_TRUE(grad_ok(
        [&](const std::vector<Tensor>& in) {
          return is_max ? ember::max(in[0], 1).values : ember::min(in[0], 1).values;
        },
        {leaf({2, 3, 2}, -2, 2, 64)}));
    EXPECT_TRUE(grad_ok(
        [&](const std::vector<Tensor>& in) {
          return is_max ? ember::max(in[0].t(), 0).values : ember::min(in[0].t(), 0).values;
        },
        {leaf({3, 2}, -2, 2, 65)}));
  }
}

TEST(OpsReduce, ArgmaxAndArgminPickTheFirstOfTies) {
  Tensor x = from({1, 3, 3, 0, 0, 2}, {2, 3}, kFloat32);
  EXPECT_EQ(int_values(argmax(x, 1)), (std::vector<int64_t>{1, 2}));
  EXPECT_EQ(int_values(argmin(x, 1)), (std::vector<int64_t>{0, 0}));
  EXPECT_EQ(argmax(x, 1, true).shape(), (Shape{2, 1}));
  Tensor y = from({2, 2, 2, 2}, {4}, kFloat32);
  EXPECT_EQ(int_values(argmax(y, 0)), (std::vector<int64_t>{0}));
  EXPECT_EQ(int_values(argmin(y, 0)), (std::vector<int64_t>{0}));
  // Integer inputs, and a non-contiguous view.
  Tensor i = int64s({4, 9, 9, 1, 0, 0}, {2, 3});
  EXPECT_EQ(int_values(argmax(i, 1)), (std::vector<int64_t>{1, 0}));
  EXPECT_EQ(int_values(argmin(i.t(), 0)), (std::vector<int64_t>{0, 1}));
  EXPECT_EQ(argmax(x, 0).dtype(), kInt64);
}

TEST(OpsReduce, MaxOfIntegersKeepsTheDtype) {
  Tensor i = int64s({4, -9, 12}, {3});
  EXPECT_EQ(ember::max(i).dtype(), kInt64);
  EXPECT_EQ(ember::max(i).item<int64_t>(), 12);
  EXPECT_EQ(ember::min(i, 0).values.item<int64_t>(), -9);
}

TEST(OpsReduce, NaNIsTheExtreme) {
  Tensor x = from({1.0, std::nan(""), 3.0}, {3}, kFloat32);
  EXPECT_TRUE(std::isnan(ember::max(x).item()));
  EXPECT_TRUE(std::isnan(ember::min(x).item()));
  EXPECT_EQ(argmax(x, 0).item<int64_t>(), 1);
}

TEST(OpsReduce, ExtremaOverAnEmptyDimAreShapeErrors) {
  Tensor e = zeros({0, 3});
  EXPECT_TRUE(throws<ShapeError>([&] { argmax(e, 0); }, {"max", "empty", "[0, 3]"}));
  EXPECT_TRUE(throws<ShapeError>([&] { argmin(e, 0); }, {"min", "empty"}));
  EXPECT_TRUE(throws<ShapeError>([&] { ember::max(e); }, {"max", "empty"}));
  EXPECT_TRUE(throws<ShapeError>([&] { ember::min(e, 0); }, {"min", "empty"}));
  // Reducing a non-empty dim of an empty tensor is fine.
  EXPECT_EQ(argmax(e, 1).shape(), (Shape{0}));
  EXPECT_TRUE(throws<ShapeError>([] { argmax(zeros({2, 3}), 2); }, {"max", "rank 2"}));
}

}  // namespace
}  // namespace ember
