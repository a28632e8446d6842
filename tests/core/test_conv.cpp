// conv2d on the CPU: forward against a hand-computed example and a naive float64
// reference (stride, padding, dilation, groups, "same"), finite-difference gradient
// checks of x, weight and bias, and the errors for bad inputs; and, on every device
// (test_conv_cuda.cpp holds what only CUDA has), non-contiguous inputs and an empty batch.
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "ember/core/autograd.h"
#include "ember/core/grad_check.h"
#include "ember/core/ops.h"
#include "ember/core/tensor.h"

#include "core/conv_case.h"
#include "support/allclose.h"
#include "support/check.h"
#include "support/device.h"
#include "support/random.h"

namespace {

using ember::Conv2dParams;
using ember::DType;
using ember::Shape;
using ember::Tensor;
using namespace ember::testing;
using Case = ember::testing::ConvCase;

// The 7-loop definition (batch, output channel, output row and column, input channel of
// the group, kernel row and column) in float64. pad_* are the top/left padding; reads
// outside the input are zero, so the bottom/right padding only shows in out_h/out_w.
std::vector<double> naive_conv2d(const std::vector<double>& x, const Shape& xs,
                                 const std::vector<double>& w, const Shape& ws,
                                 const std::vector<double>* bias, int64_t out_h, int64_t out_w,
                                 std::array<int64_t, 2> pad, std::array<int64_t, 2> stride,
                                 std::array<int64_t, 2> dil, int64_t groups) {
  const int64_t n = xs[0], c = xs[1], h = xs[2], wd = xs[3];
  const int64_t o = ws[0], cg = ws[1], kh = ws[2], kw = ws[3];
  const int64_t og = o / groups;
  std::vector<double> y(static_cast<size_t>(n * o * out_h * out_w), 0.0);
  for (int64_t b = 0; b < n; ++b)
    for (int64_t oc = 0; oc < o; ++oc)
      for (int64_t oy = 0; oy < out_h; ++oy)
        for (int64_t ox = 0; ox < out_w; ++ox) {
          double acc = bias != nullptr ? (*bias)[static_cast<size_t>(oc)] : 0.0;
          const int64_t g = oc / og;
          for (int64_t ci = 0; ci < cg; ++ci)
            for (int64_t ki = 0; ki < kh; ++ki)
              for (int64_t kj = 0; kj < kw; ++kj) {
                const int64_t iy = oy * stride[0] - pad[0] + ki * dil[0];
                const int64_t ix = ox * stride[1] - pad[1] + kj * dil[1];
                if (iy < 0 || iy >= h || ix < 0 || ix >= wd) continue;
                const int64_t cin = g * cg + ci;
                acc += x[static_cast<size_t>(((b * c + cin) * h + iy) * wd + ix)] *
                       w[static_cast<size_t>(((oc * cg + ci) * kh + ki) * kw + kj)];
              }
          y[static_cast<size_t>(((b * o + oc) * out_h + oy) * out_w + ox)] = acc;
        }
  return y;
}

// Forward parameter combinations: every knob alone and several together, odd sizes,
// batch 1, grouped and depthwise.
std::vector<Case> forward_cases() {
  std::vector<Case> cases;
  cases.push_back({{2, 3, 7, 6}, {4, 3, 3, 3}, {}});
  cases.push_back({{1, 1, 5, 5}, {1, 1, 1, 1}, {}, false});
  cases.push_back({{2, 4, 5, 7}, {6, 4, 1, 1}, {}});                              // direct 1x1
  cases.push_back({{2, 3, 9, 8}, {5, 3, 3, 2}, {.stride = {2, 3}}});
  cases.push_back({{1, 2, 6, 5}, {3, 2, 3, 3}, {.padding = {1, 2}}});
  cases.push_back({{2, 2, 9, 9}, {2, 2, 3, 3}, {.dilation = {2, 3}}});
  cases.push_back({{2, 6, 7, 5}, {4, 3, 3, 3}, {.groups = 2}});
  cases.push_back({{2, 4, 8, 8}, {4, 1, 3, 3}, {.padding = {1, 1}, .groups = 4}});  // depthwise
  cases.push_back({{1, 4, 9, 7}, {8, 1, 3, 3}, {.stride = {2, 1}, .padding = {1, 1}, .groups = 4}});
  cases.push_back({{3, 6, 11, 10}, {9, 2, 4, 3},
                   {.stride = {3, 2}, .padding = {2, 1}, .dilation = {2, 1}, .groups = 3}});
  cases.push_back({{1, 3, 4, 4}, {2, 3, 4, 4}, {}});                             // 1x1 output
  cases.push_back({{1, 1, 2, 2}, {1, 1, 3, 3}, {.padding = {1, 1}}});           // kernel > input
  cases.push_back({{2, 2, 5, 5}, {3, 2, 1, 1}, {.stride = {2, 2}}});            // strided 1x1
  cases.push_back({{2, 2, 5, 5}, {3, 2, 1, 1}, {.padding = {1, 0}}, false});    // padded 1x1
  return cases;
}

struct Expected {
  std::vector<double> y;
  Shape shape;
};

Expected reference(const Case& k, const std::vector<double>& x, const std::vector<double>& w,
                   const std::vector<double>* b) {
  std::array<int64_t, 2> pad = k.p.padding;
  std::array<int64_t, 2> extra = {0, 0};
  if (k.p.same) {
    for (int d = 0; d < 2; ++d) {
      const int64_t total = k.p.dilation[d] * (k.w[2 + d] - 1);
      pad[d] = total / 2;
      extra[d] = total - 2 * pad[d];
    }
  }
  int64_t out[2];
  for (int d = 0; d < 2; ++d) {
    out[d] = (k.x[2 + d] + 2 * pad[d] + extra[d] - k.p.dilation[d] * (k.w[2 + d] - 1) - 1) /
                 k.p.stride[d] + 1;
  }
  Expected e;
  e.y = naive_conv2d(x, k.x, w, k.w, b, out[0], out[1], pad, k.p.stride, k.p.dilation, k.p.groups);
  e.shape = {k.x[0], k.w[0], out[0], out[1]};
  return e;
}

void check_against_reference(const Case& k, uint64_t seed) {
  const int64_t o = k.w[0];
  auto xv = uniform_values(ember::shape_numel(k.x), -1.0, 1.0, seed);
  auto wv = uniform_values(ember::shape_numel(k.w), -1.0, 1.0, seed + 1);
  auto bv = uniform_values(o, -1.0, 1.0, seed + 2);
  const Expected e = reference(k, xv, wv, k.bias ? &bv : nullptr);

  Tensor x = Tensor::from_vector(xv, k.x), w = Tensor::from_vector(wv, k.w);
  Tensor b = k.bias ? Tensor::from_vector(bv, {o}) : Tensor();
  Tensor y = ember::conv2d(x, w, b, k.p);
  EXPECT_EQ(y.shape(), e.shape) << describe(k);
  EXPECT_TRUE(allclose(y, e.y, kFloat64Tol)) << "float64 " << describe(k);

  Tensor y32 = ember::conv2d(x.to(ember::kFloat32), w.to(ember::kFloat32),
                             k.bias ? b.to(ember::kFloat32) : Tensor(), k.p);
  EXPECT_EQ(y32.dtype(), ember::kFloat32);
  EXPECT_TRUE(allclose(y32, e.y, kFloat32Tol)) << "float32 " << describe(k);
}

}  // namespace

TEST(Conv2d, MatchesHandComputedExample) {
  // x = [[1 2 3] [4 5 6] [7 8 9]], w = [[1 2] [3 4]]: each output is the dot product of
  // w with one 2x2 window of x.
  Tensor x = Tensor::from_vector(std::vector<float>{1, 2, 3, 4, 5, 6, 7, 8, 9}, {1, 1, 3, 3});
  Tensor w = Tensor::from_vector(std::vector<float>{1, 2, 3, 4}, {1, 1, 2, 2});
  Tensor y = ember::conv2d(x, w);
  EXPECT_EQ(y.shape(), (Shape{1, 1, 2, 2}));
  EXPECT_EQ(y.to_vector<float>(), (std::vector<float>{37, 47, 67, 77}));

  Tensor b = Tensor::from_vector(std::vector<float>{0.5f}, {1});
  EXPECT_EQ(ember::conv2d(x, w, b).to_vector<float>(), (std::vector<float>{37.5f, 47.5f, 67.5f, 77.5f}));
  // Padding 1: the corner output sees only x[0][0] under w[1][1].
  Tensor yp = ember::conv2d(x, w, Tensor(), {.padding = {1, 1}});
  EXPECT_EQ(yp.shape(), (Shape{1, 1, 4, 4}));
  EXPECT_FLOAT_EQ(yp.to_vector<float>()[0], 4.0f);
}

TEST(Conv2d, MatchesNaiveReferenceForStridePaddingDilationAndGroups) {
  uint64_t seed = 10;
  for (const Case& k : forward_cases()) {
    SCOPED_TRACE(describe(k));
    check_against_reference(k, seed += 7);
  }
}

TEST(Conv2d, SamePaddingKeepsSpatialSize) {
  // Odd kernels pad evenly; even kernels (or odd totals under dilation) put the extra
  // row/column at the bottom/right.
  const std::vector<Case> cases = {
      {{2, 3, 7, 6}, {4, 3, 3, 3}, {.same = true}},
      {{2, 3, 7, 6}, {4, 3, 5, 1}, {.same = true}},
      {{1, 2, 6, 7}, {3, 2, 2, 2}, {.same = true}},
      {{1, 2, 5, 8}, {3, 2, 4, 3}, {.same = true}},
      {{2, 2, 9, 9}, {2, 2, 2, 3}, {.dilation = {3, 2}, .same = true}},
      {{1, 4, 6, 6}, {4, 1, 4, 4}, {.groups = 4, .same = true}},
  };
  uint64_t seed = 100;
  for (const Case& k : cases) {
    SCOPED_TRACE(describe(k));
    Tensor y = ember::conv2d(uniform(k.x, -1, 1, 1), uniform(k.w, -1, 1, 2), Tensor(), k.p);
    EXPECT_EQ(y.shape(), (Shape{k.x[0], k.w[0], k.x[2], k.x[3]}));
    check_against_reference(k, seed += 7);
  }
}

TEST(Conv2d, ZeroInputChannelsGiveTheBias) {
  Tensor x = ember::zeros({2, 0, 4, 4}, {.dtype = ember::kFloat64});
  Tensor w = ember::zeros({3, 0, 3, 3}, {.dtype = ember::kFloat64});
  Tensor b = Tensor::from_vector(std::vector<double>{1, 2, 3}, {3});
  Tensor y = ember::conv2d(x, w, b);
  ASSERT_EQ(y.shape(), (Shape{2, 3, 2, 2}));
  const auto v = y.to_vector<double>();
  for (size_t i = 0; i < v.size(); ++i) EXPECT_EQ(v[i], static_cast<double>((i / 4) % 3 + 1));
}

TEST(Conv2d, GradientsMatchFiniteDifferences) {
  const std::vector<Case> cases = {
      {{2, 2, 5, 4}, {3, 2, 3, 2}, {}},
      {{1, 2, 6, 5}, {2, 2, 3, 3}, {.stride = {2, 1}, .padding = {1, 2}}},
      {{2, 1, 7, 7}, {2, 1, 3, 2}, {.stride = {1, 2}, .dilation = {2, 2}}},
      {{1, 4, 5, 5}, {6, 2, 2, 3}, {.padding = {1, 0}, .groups = 2}},
      {{2, 3, 5, 4}, {3, 1, 3, 3}, {.stride = {2, 2}, .padding = {1, 1}, .groups = 3}},
      {{1, 3, 4, 5}, {2, 3, 1, 1}, {}},                 // direct 1x1
      {{2, 2, 5, 5}, {2, 2, 2, 3}, {.same = true}},     // odd total: explicit extra padding
      {{1, 2, 6, 5}, {2, 2, 3, 2}, {.dilation = {1, 3}, .same = true}},
      {{1, 2, 3, 3}, {2, 2, 2, 2}, {}, false},
  };
  uint64_t seed = 1000;
  for (const Case& k : cases) {
    SCOPED_TRACE(describe(k));
    Tensor x = uniform(k.x, -1, 1, seed++).requires_grad_();
    Tensor w = uniform(k.w, -1, 1, seed++).requires_grad_();
    std::vector<Tensor> inputs = {x, w};
    if (k.bias) inputs.push_back(uniform({k.w[0]}, -1, 1, seed++).requires_grad_());
    const Conv2dParams p = k.p;
    auto result = ember::gradcheck(
        [p](const std::vector<Tensor>& in) {
          return ember::conv2d(in[0], in[1], in.size() > 2 ? in[2] : Tensor(), p);
        },
        inputs);
    EXPECT_TRUE(result.ok) << result.report;
  }
}

TEST(Conv2d, ComputesGradientsOnlyForInputsThatNeedThem) {
  Tensor x = uniform({1, 2, 4, 4}, -1, 1, 1).requires_grad_();
  Tensor w = uniform({3, 2, 3, 3}, -1, 1, 2);
  Tensor b = uniform({3}, -1, 1, 3);
  ember::sum(ember::conv2d(x, w, b)).backward();
  EXPECT_TRUE(x.grad().defined());
  EXPECT_FALSE(w.grad().defined());
  EXPECT_FALSE(b.grad().defined());

  Tensor x2 = uniform({1, 2, 4, 4}, -1, 1, 4);
  Tensor w2 = uniform({3, 2, 3, 3}, -1, 1, 5).requires_grad_();
  ember::sum(ember::conv2d(x2, w2)).backward();
  EXPECT_TRUE(w2.grad().defined());
  EXPECT_FALSE(x2.grad().defined());
}

TEST(Conv2d, RefusesAnInputModifiedAfterTheForward) {
  Tensor x = uniform({1, 1, 4, 4}, -1, 1, 1);
  Tensor w = uniform({1, 1, 3, 3}, -1, 1, 2).requires_grad_();
  Tensor y = ember::conv2d(x, w);
  x.add_(ember::ones_like(x));
  EXPECT_THROW(ember::sum(y).backward(), ember::Error);
}

TEST(Conv2d, NamesBothShapesWhenChannelsDisagree) {
  Tensor x = ember::zeros({32, 3, 28, 28});
  Tensor w = ember::zeros({64, 1, 3, 3});
  EXPECT_EQ(error_of<ember::ShapeError>([&] { ember::conv2d(x, w); }),
            "conv2d: input [32, 3, 28, 28] has 3 channels, weight [64, 1, 3, 3] expects 1 "
            "(groups = 1)");
  Tensor w2 = ember::zeros({6, 2, 3, 3});
  EXPECT_EQ(error_of<ember::ShapeError>([&] { ember::conv2d(x, w2, Tensor(), {.groups = 2}); }),
            "conv2d: input [32, 3, 28, 28] has 3 channels, weight [6, 2, 3, 3] expects 4 "
            "(groups = 2)");
}

TEST(Conv2d, RejectsBadShapes) {
  Tensor x = ember::zeros({2, 4, 5, 5});
  auto msg = error_of<ember::ShapeError>([&] { ember::conv2d(ember::zeros({4, 5, 5}), ember::zeros({2, 4, 3, 3})); });
  EXPECT_NE(msg.find("conv2d: input must be 4-D"), std::string::npos) << msg;
  EXPECT_NE(msg.find("[4, 5, 5]"), std::string::npos) << msg;

  msg = error_of<ember::ShapeError>([&] { ember::conv2d(x, ember::zeros({2, 4, 3})); });
  EXPECT_NE(msg.find("conv2d: weight must be 4-D"), std::string::npos) << msg;

  msg = error_of<ember::ShapeError>([&] { ember::conv2d(x, ember::zeros({3, 2, 3, 3}), Tensor(), {.groups = 2}); });
  EXPECT_NE(msg.find("conv2d: weight [3, 2, 3, 3] has 3 output channels"), std::string::npos) << msg;

  msg = error_of<ember::ShapeError>([&] { ember::conv2d(x, ember::zeros({2, 4, 6, 3})); });
  EXPECT_NE(msg.find("conv2d: kernel [6, 3]"), std::string::npos) << msg;
  EXPECT_NE(msg.find("padded input [5, 5]"), std::string::npos) << msg;
  EXPECT_NE(msg.find("[2, 4, 5, 5]"), std::string::npos) << msg;
  EXPECT_NE(msg.find("[2, 4, 6, 3]"), std::string::npos) << msg;

  // Dilation makes the kernel cover 5 rows; padding 1 lets it fit.
  EXPECT_THROW(ember::conv2d(x, ember::zeros({2, 4, 3, 3}), Tensor(), {.dilation = {3, 1}}),
               ember::ShapeError);
  EXPECT_EQ(ember::conv2d(x, ember::zeros({2, 4, 3, 3}), Tensor(), {.padding = {1, 0}, .dilation = {3, 1}})
                .shape(),
            (Shape{2, 2, 1, 3}));

  msg = error_of<ember::ShapeError>([&] { ember::conv2d(x, ember::zeros({2, 4, 3, 3}), ember::zeros({3})); });
  EXPECT_NE(msg.find("conv2d: bias [3] must be [2]"), std::string::npos) << msg;
}

TEST(Conv2d, RejectsBadParameters) {
  Tensor x = ember::zeros({1, 2, 6, 6});
  Tensor w = ember::zeros({2, 2, 3, 3});
  auto msg = error_of<ember::Error>([&] { ember::conv2d(x, w, Tensor(), {.stride = {2, 2}, .same = true}); });
  EXPECT_NE(msg.find("conv2d: 'same' padding needs stride 1, got stride [2, 2]"), std::string::npos) << msg;
  msg = error_of<ember::Error>([&] { ember::conv2d(x, w, Tensor(), {.padding = {1, 1}, .same = true}); });
  EXPECT_NE(msg.find("padding must be [0, 0]"), std::string::npos) << msg;
  EXPECT_THROW(ember::conv2d(x, w, Tensor(), {.stride = {0, 1}}), ember::Error);
  EXPECT_THROW(ember::conv2d(x, w, Tensor(), {.padding = {-1, 0}}), ember::Error);
  EXPECT_THROW(ember::conv2d(x, w, Tensor(), {.dilation = {1, 0}}), ember::Error);
  EXPECT_THROW(ember::conv2d(x, w, Tensor(), {.groups = 0}), ember::Error);
}

TEST(Conv2d, RejectsMixedOrNonFloatingDtypes) {
  Tensor x = ember::zeros({1, 2, 5, 5});
  Tensor w64 = ember::zeros({2, 2, 3, 3}, {.dtype = ember::kFloat64});
  auto msg = error_of<ember::DTypeError>([&] { ember::conv2d(x, w64); });
  EXPECT_NE(msg.find("conv2d"), std::string::npos) << msg;
  EXPECT_NE(msg.find("[1, 2, 5, 5] float32"), std::string::npos) << msg;
  EXPECT_NE(msg.find("[2, 2, 3, 3] float64"), std::string::npos) << msg;

  Tensor xi = ember::zeros({1, 2, 5, 5}, {.dtype = ember::kInt64});
  msg = error_of<ember::DTypeError>([&] { ember::conv2d(xi, ember::zeros({2, 2, 3, 3})); });
  EXPECT_NE(msg.find("conv2d"), std::string::npos) << msg;

  msg = error_of<ember::DTypeError>([&] {
    ember::conv2d(x, ember::zeros({2, 2, 3, 3}), ember::zeros({2}, {.dtype = ember::kFloat64}));
  });
  EXPECT_NE(msg.find("conv2d"), std::string::npos) << msg;
}

// ---- on every device ------------------------------------------------------------------------

class Conv2dOnDevice : public OnDevice {};

TEST_P(Conv2dOnDevice, AcceptsNonContiguousInputs) {
  for (DType dt : floating_dtypes(device())) {
    SCOPED_TRACE(ember::dtype_name(dt));
    Tensor x = uniform({2, 3, 6, 5}, -1, 1, 1, dt), w = uniform({4, 3, 3, 3}, -1, 1, 2, dt);
    // The same values with other strides, on the device under test.
    Tensor xt = x.to(device()).transpose(2, 3).contiguous().transpose(2, 3);
    Tensor wt = w.to(device()).transpose(0, 1).contiguous().transpose(0, 1);
    ASSERT_FALSE(xt.is_contiguous());
    ASSERT_FALSE(wt.is_contiguous());
    // Against the contiguous inputs on the CPU, relative to the largest output: the cuDNN
    // algorithms (Winograd, FFT) add the error of their transforms.
    EXPECT_TRUE(allclose_to_largest(ember::conv2d(xt, wt), ember::conv2d(x, w)));
  }
}

TEST_P(Conv2dOnDevice, EmptyBatchGivesEmptyOutputAndZeroGradients) {
  for (DType dt : floating_dtypes(device())) {
    SCOPED_TRACE(ember::dtype_name(dt));
    Tensor x = ember::zeros({0, 2, 5, 5}, {.dtype = dt, .device = device(), .requires_grad = true});
    Tensor w = uniform({3, 2, 3, 3}, -1, 1, 1, dt).to(device()).requires_grad_();
    Tensor b = uniform({3}, -1, 1, 2, dt).to(device()).requires_grad_();
    Tensor y = ember::conv2d(x, w, b);
    EXPECT_EQ(y.shape(), (Shape{0, 3, 3, 3}));
    ember::sum(y).backward();
    EXPECT_EQ(x.grad().shape(), x.shape());
    EXPECT_TRUE(allclose(w.grad(), std::vector<double>(54, 0.0), kExact));
    EXPECT_TRUE(allclose(b.grad(), std::vector<double>(3, 0.0), kExact));
  }
}

EMBER_INSTANTIATE_ON_DEVICES(Conv2dOnDevice);
