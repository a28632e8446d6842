// The layers as modules on the CPU: each layer's forward against a hand-computed case,
// float64 finite-difference gradients of the input and the parameters through the layer,
// Sequential, train/eval behaviour, state_dict round trips with buffers, and the shape
// errors, which name the layer, the input it expects and the input it got.
#include <ember/ember.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <memory>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "support/check.h"
#include "layers/layer_test_util.h"

using namespace ember;

namespace {

using ember::testing::Float64;
using ember::testing::expect_close;
using ember::testing::f32;
using ember::testing::random_f64;
using ember::testing::set_state;
using ember::testing::values;

// Tolerance, stated once, relative to 1 + |expected|: float32 layers against values
// computed by hand in double.
constexpr double kTolF32 = 1e-5;
constexpr double kEps = 1e-5;  // BatchNorm's and LayerNorm's default eps

Tensor f64(const std::vector<double>& v, const Shape& shape) {
  return Tensor::from_vector(v, shape);
}

std::vector<std::string> names_of(const std::vector<std::pair<std::string, Tensor>>& v) {
  std::vector<std::string> out;
  for (const auto& [n, t] : v) out.push_back(n);
  return out;
}

// d(layer(x))/d(x) and d(layer(x))/d(every parameter) against central differences.
void expect_gradients_match(nn::Module& layer, const Tensor& x, const std::string& what) {
  std::vector<Tensor> inputs{x.clone().requires_grad_()};
  for (const Tensor& p : layer.parameters()) inputs.push_back(p);
  const GradCheckResult r =
      gradcheck([&layer](const std::vector<Tensor>& in) { return layer(in[0]); }, inputs);
  EXPECT_TRUE(r.ok) << what << "\n" << r.report;
}

using ember::testing::error_of;
using ember::testing::throws;

// x = [[1 2 3] [4 5 6] [7 8 9]] as [1, 1, 3, 3].
Tensor one_to_nine() { return f32({1, 2, 3, 4, 5, 6, 7, 8, 9}, {1, 1, 3, 3}); }

}  // namespace

// ---- Linear ----------------------------------------------------------------------------------

TEST(LinearLayer, ComputesXTimesWeightTransposedPlusBias) {
  nn::Linear fc(3, 2);
  EXPECT_EQ(fc.weight().shape(), (Shape{2, 3}));
  EXPECT_EQ(fc.bias().shape(), (Shape{2}));
  set_state(fc, {{"weight", f32({1, 2, 3, -1, 0, 1}, {2, 3})}, {"bias", f32({0.5f, -0.5f}, {2})}});
  // Row [1 1 1]: 1 + 2 + 3 + 0.5 and -1 + 0 + 1 - 0.5; row [2 0 -1]: 2 - 3 + 0.5, -2 - 1 - 0.5.
  Tensor y = fc(f32({1, 1, 1, 2, 0, -1}, {2, 3}));
  EXPECT_EQ(y.shape(), (Shape{2, 2}));
  expect_close(y, {6.5, -0.5, -0.5, -3.5}, kTolF32);
}

TEST(LinearLayer, AppliesToTheLastDimensionOfAnyRank) {
  nn::Linear fc(3, 2);
  set_state(fc, {{"weight", f32({1, 2, 3, -1, 0, 1}, {2, 3})}, {"bias", f32({0.5f, -0.5f}, {2})}});
  Tensor y = fc(f32({1, 1, 1, 2, 0, -1, 0, 0, 0, 0, 1, 0}, {2, 2, 3}));
  EXPECT_EQ(y.shape(), (Shape{2, 2, 2}));
  expect_close(y, {6.5, -0.5, -0.5, -3.5, 0.5, -0.5, 2.5, -0.5}, kTolF32);
  Tensor v = fc(f32({1, 1, 1}, {3}));
  EXPECT_EQ(v.shape(), (Shape{2}));
  expect_close(v, {6.5, -0.5}, kTolF32);
}

TEST(LinearLayer, WithoutBiasHasOnlyAWeight) {
  nn::Linear fc(3, 2, {.bias = false});
  EXPECT_EQ(names_of(fc.named_parameters()), (std::vector<std::string>{"weight"}));
  EXPECT_EQ(fc.num_parameters(), 6);
  EXPECT_EQ(fc.repr(), "Linear(in_features=3, out_features=2, bias=False)");
  set_state(fc, {{"weight", f32({1, 2, 3, -1, 0, 1}, {2, 3})}});
  expect_close(fc(f32({1, 1, 1}, {1, 3})), {6.0, 0.0}, kTolF32);
}

TEST(LinearLayer, GradientsMatchFiniteDifferences) {
  manual_seed(1);
  Float64<nn::Linear> fc(4, 3);
  expect_gradients_match(fc, random_f64({5, 4}, 10), "Linear(4, 3)");
  Float64<nn::Linear> no_bias(3, 2, nn::LinearOptions{.bias = false});
  expect_gradients_match(no_bias, random_f64({2, 2, 3}, 11), "Linear(3, 2, bias=False), rank 3");
}

TEST(LinearLayer, ActivationOptionAppliesAfterTheBiasAsKerasDense) {
  const Tensor w = f32({1, 2, 3, -1, 0, 1}, {2, 3}), b = f32({0.5f, -0.5f}, {2});
  const Tensor x = f32({1, 1, 1, 2, 0, -1}, {2, 3});  // x W^T + b = [[6.5, -0.5], [-0.5, -3.5]]
  nn::Linear relu_fc(3, 2, {.activation = "relu"});
  set_state(relu_fc, {{"weight", w}, {"bias", b}});
  expect_close(relu_fc(x), {6.5, 0, 0, 0}, kTolF32);
  EXPECT_EQ(relu_fc.repr(), "Linear(in_features=3, out_features=2, bias=True, activation=relu)");
  for (const char* act : {"gelu", "gelu_tanh"}) {
    SCOPED_TRACE(act);
    nn::Linear fc(3, 2, {.activation = act});
    set_state(fc, {{"weight", w}, {"bias", b}});
    const Tensor want = gelu(linear(x, w, b), std::string(act) == "gelu" ? "none" : "tanh");
    expect_close(fc(x), values(want), kTolF32);
  }
  // Without a bias too, and gradients through the activation.
  nn::Linear no_bias(3, 2, {.bias = false, .activation = "relu"});
  set_state(no_bias, {{"weight", w}});
  expect_close(no_bias(x), {6.0, 0, 0, 0}, kTolF32);
  manual_seed(2);
  Float64<nn::Linear> fc(4, 3, nn::LinearOptions{.activation = "gelu_tanh"});
  expect_gradients_match(fc, random_f64({5, 4}, 12), "Linear(4, 3, activation=gelu_tanh)");
  EXPECT_TRUE(throws<ValueError>([] { nn::Linear(3, 2, {.activation = "softmax"}); },
                                 {"Linear", "activation", "relu", "gelu_tanh", "softmax"}));
}

// ---- Conv2d ----------------------------------------------------------------------------------

TEST(Conv2dLayer, ValidConvolutionIsTheDotProductWithEachWindow) {
  nn::Conv2d conv(1, 1, 2);
  EXPECT_EQ(conv.weight().shape(), (Shape{1, 1, 2, 2}));
  set_state(conv, {{"weight", f32({1, 2, 3, 4}, {1, 1, 2, 2})}, {"bias", f32({0.5f}, {1})}});
  // Window [[1 2] [4 5]]: 1 + 4 + 12 + 20 = 37, and so on, plus the bias.
  Tensor y = conv(one_to_nine());
  EXPECT_EQ(y.shape(), (Shape{1, 1, 2, 2}));
  expect_close(y, {37.5, 47.5, 67.5, 77.5}, kTolF32);
}

TEST(Conv2dLayer, StrideTwoTakesEveryOtherWindow) {
  nn::Conv2d conv(1, 1, 2, {.stride = 2, .bias = false});
  set_state(conv, {{"weight", f32({1, 2, 3, 4}, {1, 1, 2, 2})}});
  // x = 1..16 as 4x4: windows at (0, 0), (0, 2), (2, 0), (2, 2), e.g. 3 + 8 + 21 + 32 = 64.
  Tensor x = arange(1.0, 17.0).reshape({1, 1, 4, 4});
  Tensor y = conv(x);
  EXPECT_EQ(y.shape(), (Shape{1, 1, 2, 2}));
  expect_close(y, {44, 64, 124, 144}, kTolF32);
}

TEST(Conv2dLayer, SamePaddingKeepsSpatialSizeForAnOddKernel) {
  nn::Conv2d conv(1, 1, 3, {.padding = "same", .bias = false});
  // y(i, j) = x(i - 1, j) + x(i, j) + 2 x(i, j + 1), zero outside the input.
  set_state(conv, {{"weight", f32({0, 1, 0, 0, 1, 2, 0, 0, 0}, {1, 1, 3, 3})}});
  Tensor y = conv(one_to_nine());
  EXPECT_EQ(y.shape(), (Shape{1, 1, 3, 3}));
  expect_close(y, {5, 8, 3, 15, 19, 9, 27, 31, 15}, kTolF32);
  // A 5x3 kernel keeps a 4x6 input's size too.
  nn::Conv2d wide(2, 3, {5, 3}, {.padding = "same"});
  EXPECT_EQ(wide(zeros({2, 2, 4, 6})).shape(), (Shape{2, 3, 4, 6}));
}

TEST(Conv2dLayer, SamePaddingWithAnEvenKernelPadsTheBottomAndRight) {
  nn::Conv2d conv(1, 1, 2, {.padding = "same", .bias = false});
  set_state(conv, {{"weight", f32({1, 2, 3, 4}, {1, 1, 2, 2})}});
  // The one padding row and column go below and to the right, as in PyTorch.
  Tensor y = conv(one_to_nine());
  EXPECT_EQ(y.shape(), (Shape{1, 1, 3, 3}));
  expect_close(y, {37, 47, 21, 67, 77, 33, 23, 26, 9}, kTolF32);
}

TEST(Conv2dLayer, NumericAndPairPaddingAddZeroBorders) {
  nn::Conv2d conv(1, 1, 2, {.padding = 1, .bias = false});
  set_state(conv, {{"weight", f32({1, 2, 3, 4}, {1, 1, 2, 2})}});
  Tensor y = conv(one_to_nine());
  EXPECT_EQ(y.shape(), (Shape{1, 1, 4, 4}));
  const auto v = values(y);
  EXPECT_NEAR(v[0], 4.0, kTolF32);   // only x(0, 0) under w(1, 1)
  EXPECT_NEAR(v[15], 9.0, kTolF32);  // only x(2, 2) under w(0, 0)
  nn::Conv2d rows_only(1, 1, 2, {.padding = {1, 0}});
  EXPECT_EQ(rows_only(one_to_nine()).shape(), (Shape{1, 1, 4, 2}));
  nn::Conv2d valid(1, 1, 2, {.padding = "valid"});
  EXPECT_EQ(valid(one_to_nine()).shape(), (Shape{1, 1, 2, 2}));
}

TEST(Conv2dLayer, DilationSpreadsTheKernelTaps) {
  nn::Conv2d conv(1, 1, 2, {.dilation = 2, .bias = false});
  set_state(conv, {{"weight", f32({1, 2, 3, 4}, {1, 1, 2, 2})}});
  // x(i, j) = 5i + j on 5x5; y(i, j) = x(i, j) + 2 x(i, j + 2) + 3 x(i + 2, j) + 4 x(i + 2, j + 2)
  //         = 10 (5i + j) + 82.
  Tensor y = conv(arange(0.0, 25.0).reshape({1, 1, 5, 5}));
  EXPECT_EQ(y.shape(), (Shape{1, 1, 3, 3}));
  expect_close(y, {82, 92, 102, 132, 142, 152, 182, 192, 202}, kTolF32);
}

TEST(Conv2dLayer, GroupsConvolveEachChannelGroupOnItsOwn) {
  nn::Conv2d conv(2, 2, 2, {.groups = 2, .bias = false});
  EXPECT_EQ(conv.weight().shape(), (Shape{2, 1, 2, 2}));
  // Output 0 sees only channel 0 (main diagonal), output 1 only channel 1 (anti-diagonal).
  set_state(conv, {{"weight", f32({1, 0, 0, 1, 0, 1, 1, 0}, {2, 1, 2, 2})}});
  Tensor y = conv(f32({1, 2, 3, 4, 10, 20, 30, 40}, {1, 2, 2, 2}));
  EXPECT_EQ(y.shape(), (Shape{1, 2, 1, 1}));
  expect_close(y, {1 + 4, 20 + 30}, kTolF32);
}

TEST(Conv2dLayer, OptionsShapeTheWeightAndAppearInTheRepr) {
  nn::Conv2d conv(2, 4, {3, 5},
                  {.stride = {2, 1}, .padding = {1, 2}, .dilation = 2, .groups = 2, .bias = false});
  EXPECT_EQ(conv.weight().shape(), (Shape{4, 1, 3, 5}));
  EXPECT_EQ(names_of(conv.named_parameters()), (std::vector<std::string>{"weight"}));
  EXPECT_EQ(conv.repr(),
            "Conv2d(2, 4, kernel_size=(3, 5), stride=(2, 1), padding=(1, 2), "
            "dilation=2, groups=2, bias=False)");
  EXPECT_EQ(nn::Conv2d(1, 32, 3, {.padding = "same"}).repr(),
            "Conv2d(1, 32, kernel_size=3, stride=1, padding=same)");
}

TEST(Conv2dLayer, BadOptionsAreErrorsWhenTheLayerIsBuilt) {
  EXPECT_NE(error_of<Error>([] { nn::Conv2d(1, 1, 3, {.padding = "full"}); }).find("'full'"),
            std::string::npos);
  EXPECT_NE(error_of<Error>([] {
              nn::Conv2d(3, 4, 3, {.groups = 2});
            }).find("groups=2 must divide in_channels=3 and out_channels=4"),
            std::string::npos);
  EXPECT_THROW(nn::Conv2d(0, 4, 3), Error);
  // "same" is defined for stride 1 only: refused when the layer is built, as in PyTorch.
  EXPECT_NE(error_of<Error>([] {
              nn::Conv2d(1, 1, 3, {.stride = 2, .padding = "same"});
            }).find("padding=\"same\" needs stride 1, got stride=2"),
            std::string::npos);
}

TEST(Conv2dLayer, DefaultInitIsPyTorchsUniformBound) {
  manual_seed(0);
  nn::Conv2d conv(8, 16, 3);
  const double bound = 1.0 / std::sqrt(8.0 * 9.0);  // 1 / sqrt(fan_in)
  double max_abs = 0.0;
  for (float v : conv.weight().to_vector<float>())
    max_abs = std::max(max_abs, std::fabs(double(v)));
  EXPECT_LE(max_abs, bound);
  EXPECT_GT(max_abs, 0.9 * bound);
  for (float v : conv.bias().to_vector<float>()) EXPECT_LE(std::fabs(v), bound);
  manual_seed(0);
  nn::Conv2d he(8, 16, 3, {.init = "he_normal"});
  for (float v : he.bias().to_vector<float>()) EXPECT_EQ(v, 0.0f);  // named inits zero the bias
}

TEST(Conv2dLayer, GradientsMatchFiniteDifferences) {
  manual_seed(2);
  {
    Float64<nn::Conv2d> conv(2, 3, 3);
    expect_gradients_match(conv, random_f64({2, 2, 5, 4}, 20), "plain 3x3");
  }
  {
    Float64<nn::Conv2d> conv(2, 2, nn::IntPair(3, 2), nn::Conv2dOptions{.stride = 2, .padding = 1});
    expect_gradients_match(conv, random_f64({1, 2, 6, 5}, 21), "stride 2, padding 1");
  }
  {
    Float64<nn::Conv2d> conv(1, 2, 2, nn::Conv2dOptions{.padding = "same"});
    expect_gradients_match(conv, random_f64({2, 1, 4, 5}, 22), "same, even kernel");
  }
  {
    Float64<nn::Conv2d> conv(2, 2, 3, nn::Conv2dOptions{.dilation = {2, 1}, .bias = false});
    expect_gradients_match(conv, random_f64({1, 2, 7, 5}, 23), "dilation (2, 1), no bias");
  }
  {
    Float64<nn::Conv2d> conv(4, 6, 3,
                             nn::Conv2dOptions{.stride = {1, 2}, .padding = 1, .groups = 2});
    expect_gradients_match(conv, random_f64({1, 4, 5, 5}, 24), "groups 2, stride (1, 2)");
  }
  {
    Float64<nn::Conv2d> conv(3, 3, 3, nn::Conv2dOptions{.padding = "same", .groups = 3});
    expect_gradients_match(conv, random_f64({2, 3, 4, 4}, 25), "depthwise, same");
  }
}

// ---- pooling ---------------------------------------------------------------------------------

TEST(MaxPool2dLayer, TakesTheMaximumOfEachWindow) {
  nn::MaxPool2d pool(2);
  EXPECT_EQ(pool.repr(), "MaxPool2d(kernel_size=2, stride=2, padding=0)");
  Tensor y = pool(arange(0.0, 16.0).reshape({1, 1, 4, 4}));
  EXPECT_EQ(y.shape(), (Shape{1, 1, 2, 2}));
  expect_close(y, {5, 7, 13, 15}, kTolF32);
  // Overlapping windows with stride 1.
  nn::MaxPool2d overlapping(2, {.stride = 1});
  expect_close(overlapping(f32({1, 5, 2, 7, 3, 8, 4, 9, 6}, {1, 1, 3, 3})), {7, 8, 9, 9}, kTolF32);
}

TEST(MaxPool2dLayer, PaddingNeverWinsTheMaximum) {
  // All inputs negative: a zero from the padding would win if padding took part.
  nn::MaxPool2d pool(3, {.stride = 2, .padding = 1});
  Tensor y = pool(arange(-20.0, -4.0).reshape({1, 1, 4, 4}));
  EXPECT_EQ(y.shape(), (Shape{1, 1, 2, 2}));
  expect_close(y, {-15, -13, -7, -5}, kTolF32);
}

TEST(MaxPool2dLayer, CeilModeKeepsThePartialLastWindow) {
  nn::MaxPool2d floor_mode(2), ceil_mode(2, {.ceil_mode = true});
  Tensor x = arange(1.0, 6.0).reshape({1, 1, 1, 5});
  EXPECT_THROW(floor_mode(x), ShapeError);  // a 2-row kernel on a 1-row input
  nn::MaxPool2d rows_of_one({1, 2}, {.ceil_mode = true});
  expect_close(rows_of_one(x), {2, 4, 5}, kTolF32);
  EXPECT_EQ(ceil_mode.repr(), "MaxPool2d(kernel_size=2, stride=2, padding=0, ceil_mode=True)");
}

TEST(AvgPool2dLayer, AveragesEachWindow) {
  nn::AvgPool2d pool(2);
  Tensor y = pool(arange(0.0, 16.0).reshape({1, 1, 4, 4}));
  expect_close(y, {2.5, 4.5, 10.5, 12.5}, kTolF32);
}

TEST(AvgPool2dLayer, PaddingCountsTowardsTheDivisorUnlessExcluded) {
  // 3x3 input 1..9, kernel 2, stride 2, padding 1: windows hold {1}, {2, 3}, {4, 7} and
  // {5, 6, 8, 9}; with the padding counted every divisor is 4.
  nn::AvgPool2d include(2, {.stride = 2, .padding = 1});
  expect_close(include(one_to_nine()), {0.25, 1.25, 2.75, 7.0}, kTolF32);
  nn::AvgPool2d exclude(2, {.stride = 2, .padding = 1, .count_include_pad = false});
  expect_close(exclude(one_to_nine()), {1.0, 2.5, 5.5, 7.0}, kTolF32);
}

TEST(AdaptiveAvgPool2dLayer, OutputOneIsGlobalAveragePooling) {
  nn::AdaptiveAvgPool2d gap(1);
  EXPECT_EQ(gap.repr(), "AdaptiveAvgPool2d(output_size=1)");
  // Plane k holds 6k .. 6k + 5.
  Tensor y = gap(arange(0.0, 24.0).reshape({2, 2, 2, 3}));
  EXPECT_EQ(y.shape(), (Shape{2, 2, 1, 1}));
  expect_close(y, {2.5, 8.5, 14.5, 20.5}, kTolF32);
  EXPECT_EQ(gap(zeros({3, 4, 7, 5})).shape(), (Shape{3, 4, 1, 1}));
  // Two bins across a 2x4 plane: columns [0, 2) and [2, 4).
  nn::AdaptiveAvgPool2d halves({1, 2});
  expect_close(halves(arange(0.0, 8.0).reshape({1, 1, 2, 4})), {2.5, 4.5}, kTolF32);
}

TEST(PoolingLayers, GradientsMatchFiniteDifferences) {
  nn::MaxPool2d max_pool(3, {.stride = 2, .padding = 1});
  expect_gradients_match(max_pool, random_f64({2, 2, 5, 6}, 30), "MaxPool2d(3, 2, 1)");
  nn::MaxPool2d max_ceil(2, {.ceil_mode = true});
  expect_gradients_match(max_ceil, random_f64({1, 2, 5, 5}, 31), "MaxPool2d(2, ceil)");
  nn::AvgPool2d avg_pool(3, {.stride = 2, .padding = 1});
  expect_gradients_match(avg_pool, random_f64({2, 1, 5, 6}, 32), "AvgPool2d(3, 2, 1)");
  nn::AvgPool2d avg_exclude(2, {.stride = 1, .padding = 1, .count_include_pad = false});
  expect_gradients_match(avg_exclude, random_f64({1, 2, 3, 4}, 33), "AvgPool2d excluding pad");
  nn::AdaptiveAvgPool2d adaptive({2, 3});
  expect_gradients_match(adaptive, random_f64({1, 2, 5, 7}, 34), "AdaptiveAvgPool2d(2, 3)");
}

// ---- Flatten -----------------------------------------------------------------------------------

TEST(FlattenLayer, CollapsesTheDimsFromStartToEnd) {
  Tensor x = arange(0.0, 120.0).reshape({2, 3, 4, 5});
  Tensor y = nn::Flatten()(x);
  EXPECT_EQ(y.shape(), (Shape{2, 60}));
  EXPECT_EQ(y.to_vector<float>(), x.to_vector<float>());  // row-major order is kept
  EXPECT_EQ(nn::Flatten(0)(x).shape(), (Shape{120}));
  EXPECT_EQ(nn::Flatten(1, 2)(x).shape(), (Shape{2, 12, 5}));
  EXPECT_EQ(nn::Flatten(-2)(x).shape(), (Shape{2, 3, 20}));
  EXPECT_EQ(nn::Flatten().repr(), "Flatten(start_dim=1, end_dim=-1)");
}

// ---- Dropout ---------------------------------------------------------------------------------

TEST(DropoutLayer, IsTheIdentityInEvalMode) {
  nn::Dropout drop(0.5);
  drop.eval();
  Tensor x = random_f64({50, 20}, 40).to(kFloat32);
  EXPECT_EQ(drop(x).to_vector<float>(), x.to_vector<float>());
}

TEST(DropoutLayer, ZeroesAboutPAndScalesTheSurvivorsInTraining) {
  manual_seed(3);
  nn::Dropout drop(0.3);
  ASSERT_TRUE(drop.is_training());
  const std::vector<float> y = drop(ones({200, 100})).to_vector<float>();
  int64_t dropped = 0;
  for (float v : y) {
    if (v == 0.0f) {
      ++dropped;
    } else {
      EXPECT_NEAR(v, 1.0 / 0.7, 1e-6);
    }
  }
  // 20000 draws: the standard deviation of the fraction is 0.0032.
  EXPECT_NEAR(static_cast<double>(dropped) / 20000.0, 0.3, 0.02);
}

TEST(DropoutLayer, TheSameSeedGivesTheSameMask) {
  nn::Dropout drop(0.5);
  Tensor x = ones({64, 32});
  manual_seed(9);
  const auto a = drop(x).to_vector<float>();
  manual_seed(9);
  const auto b = drop(x).to_vector<float>();
  const auto c = drop(x).to_vector<float>();
  EXPECT_EQ(a, b);
  EXPECT_NE(b, c);  // the next call draws a new mask
}

TEST(DropoutLayer, GradientIsTheMask) {
  manual_seed(4);
  nn::Dropout drop(0.25);
  Tensor x = ones({10, 10}).requires_grad_();
  Tensor y = drop(x);
  sum(y).backward();
  EXPECT_EQ(x.grad().to_vector<float>(), y.to_vector<float>());
}

TEST(DropoutLayer, EdgeProbabilities) {
  Tensor x = random_f64({4, 5}, 41).to(kFloat32);
  EXPECT_EQ(nn::Dropout(0.0)(x).to_vector<float>(), x.to_vector<float>());
  EXPECT_EQ(nn::Dropout(1.0)(x).to_vector<float>(), std::vector<float>(20, 0.0f));
  EXPECT_THROW(nn::Dropout(1.5), Error);
  EXPECT_THROW(nn::Dropout(-0.1), Error);
  EXPECT_EQ(nn::Dropout(0.25).repr(), "Dropout(p=0.25)");
}

// ---- BatchNorm ---------------------------------------------------------------------------------

namespace {

// Channel 0 holds {1, 2, 3, 4} (mean 2.5, biased variance 1.25, unbiased 5/3) and channel 1
// {10, 20, 30, 40} (mean 25, biased variance 125, unbiased 500/3), as [N, C] and as
// [N, C, H, W].
Tensor bn_batch_nc() { return f32({1, 10, 2, 20, 3, 30, 4, 40}, {4, 2}); }
Tensor bn_batch_nchw() { return f32({1, 2, 10, 20, 3, 4, 30, 40}, {2, 2, 1, 2}); }

// (x - mean) / sqrt(var + eps) * w + b for the channel of each element of bn_batch_*.
double bn_expected(double x, int channel, double w = 1.0, double b = 0.0) {
  const double mean = channel == 0 ? 2.5 : 25.0, var = channel == 0 ? 1.25 : 125.0;
  return (x - mean) / std::sqrt(var + kEps) * w + b;
}

int64_t batches_tracked(const nn::Module& m) {
  return m.state_dict().at("num_batches_tracked").item<int64_t>();
}

}  // namespace

TEST(BatchNormLayer, TrainingNormalizesWithTheBatchStatistics) {
  nn::BatchNorm1d bn1(2);
  set_state(bn1, {{"weight", f32({2.0f, 0.5f}, {2})}, {"bias", f32({1.0f, -1.0f}, {2})}});
  Tensor y1 = bn1(bn_batch_nc());
  EXPECT_EQ(y1.shape(), (Shape{4, 2}));
  std::vector<double> want1;
  for (double v : {1, 2, 3, 4}) {
    want1.push_back(bn_expected(v, 0, 2.0, 1.0));
    want1.push_back(bn_expected(v * 10, 1, 0.5, -1.0));
  }
  expect_close(y1, want1, kTolF32, "BatchNorm1d");

  nn::BatchNorm2d bn2(2);  // weight 1, bias 0
  Tensor y2 = bn2(bn_batch_nchw());
  expect_close(y2,
               {bn_expected(1, 0), bn_expected(2, 0), bn_expected(10, 1), bn_expected(20, 1),
                bn_expected(3, 0), bn_expected(4, 0), bn_expected(30, 1), bn_expected(40, 1)},
               kTolF32, "BatchNorm2d");
}

TEST(BatchNormLayer, TrainingUpdatesRunningStatsWithMomentumAndTheUnbiasedVariance) {
  nn::BatchNorm1d bn(2);
  EXPECT_EQ(names_of(bn.named_buffers()),
            (std::vector<std::string>{"running_mean", "running_var", "num_batches_tracked"}));
  expect_close(bn.state_dict().at("running_mean"), {0, 0}, 0.0);
  expect_close(bn.state_dict().at("running_var"), {1, 1}, 0.0);
  EXPECT_EQ(batches_tracked(bn), 0);

  bn(bn_batch_nc());
  const double rm0 = 0.1 * 2.5, rm1 = 0.1 * 25.0;
  const double rv0 = 0.9 + 0.1 * 5.0 / 3.0, rv1 = 0.9 + 0.1 * 500.0 / 3.0;
  expect_close(bn.state_dict().at("running_mean"), {rm0, rm1}, kTolF32, "step 1 mean");
  expect_close(bn.state_dict().at("running_var"), {rv0, rv1}, kTolF32, "step 1 var");
  EXPECT_EQ(batches_tracked(bn), 1);

  // Channel 0 {0, 0, 2, 4}: mean 1.5, unbiased variance 11/3; channel 1 {1, 1, -1, -1}:
  // mean 0, unbiased variance 4/3.
  bn(f32({0, 1, 0, 1, 2, -1, 4, -1}, {4, 2}));
  expect_close(bn.state_dict().at("running_mean"), {0.9 * rm0 + 0.1 * 1.5, 0.9 * rm1}, kTolF32,
               "step 2 mean");
  expect_close(bn.state_dict().at("running_var"),
               {0.9 * rv0 + 0.1 * 11.0 / 3.0, 0.9 * rv1 + 0.1 * 4.0 / 3.0}, kTolF32, "step 2 var");
  EXPECT_EQ(batches_tracked(bn), 2);

  nn::BatchNorm2d fast(2, {.momentum = 0.5});
  fast(bn_batch_nchw());
  expect_close(fast.state_dict().at("running_mean"), {1.25, 12.5}, kTolF32, "momentum 0.5 mean");
  expect_close(fast.state_dict().at("running_var"),
               {0.5 + 0.5 * 5.0 / 3.0, 0.5 + 0.5 * 500.0 / 3.0}, kTolF32, "momentum 0.5 var");
}

// PyTorch's momentum=None: the running stats are the plain average of every batch seen,
// whatever the initial values (the first batch replaces them).
TEST(BatchNormLayer, UnsetMomentumKeepsTheCumulativeAverageOfTheBatches) {
  nn::BatchNorm1d bn(2, {.momentum = std::nullopt});
  EXPECT_EQ(bn.repr(), "BatchNorm1d(2, eps=1e-05, momentum=None, affine=True, track_running_stats=True)");
  // Batch 1: channel 0 {1, 2, 3, 4} (mean 2.5, unbiased var 5/3), channel 1 ten times that.
  bn(bn_batch_nc());
  expect_close(bn.state_dict().at("running_mean"), {2.5, 25.0}, kTolF32, "after 1: mean");
  expect_close(bn.state_dict().at("running_var"), {5.0 / 3.0, 500.0 / 3.0}, kTolF32, "after 1: var");
  // Batch 2: {0, 0, 2, 4} (1.5, 11/3) and {1, 1, -1, -1} (0, 4/3).
  bn(f32({0, 1, 0, 1, 2, -1, 4, -1}, {4, 2}));
  expect_close(bn.state_dict().at("running_mean"), {(2.5 + 1.5) / 2, (25.0 + 0.0) / 2}, kTolF32,
               "after 2: mean");
  expect_close(bn.state_dict().at("running_var"), {(5.0 / 3 + 11.0 / 3) / 2, (500.0 / 3 + 4.0 / 3) / 2},
               kTolF32, "after 2: var");
  // Batch 3: {2, 2, 2, 2} (2, 0) and {5, 7, 5, 7} (6, 4/3).
  bn(f32({2, 5, 2, 7, 2, 5, 2, 7}, {4, 2}));
  expect_close(bn.state_dict().at("running_mean"), {(2.5 + 1.5 + 2.0) / 3, (25.0 + 0.0 + 6.0) / 3},
               kTolF32, "after 3: mean");
  expect_close(bn.state_dict().at("running_var"),
               {(5.0 / 3 + 11.0 / 3 + 0.0) / 3, (500.0 / 3 + 4.0 / 3 + 4.0 / 3) / 3}, kTolF32,
               "after 3: var");
  EXPECT_EQ(batches_tracked(bn), 3);

  // Evaluation leaves the average alone; training again goes on counting from 3.
  bn.eval();
  bn(f32({100, 100, -100, -100}, {2, 2}));
  EXPECT_EQ(batches_tracked(bn), 3);
  expect_close(bn.state_dict().at("running_mean"), {2.0, 31.0 / 3}, kTolF32, "eval: unchanged");
  bn.train();
  bn(f32({6, 0, 6, 0, 6, 0, 6, 0}, {4, 2}));  // means 6 and 0, variances 0
  expect_close(bn.state_dict().at("running_mean"), {(3 * 2.0 + 6.0) / 4, (31.0 + 0.0) / 4}, kTolF32,
               "after 4: mean");
}

TEST(BatchNormLayer, UnsetMomentumResumesTheAverageFromALoadedCount) {
  // A state dict that has seen 4 batches averaging 1.0: a fifth batch of mean 6 gives 2.
  nn::BatchNorm2d bn(1, {.momentum = std::nullopt, .affine = false});
  set_state(bn, {{"running_mean", f32({1.0f}, {1})},
                 {"running_var", f32({2.0f}, {1})},
                 {"num_batches_tracked", Tensor::from_vector<int64_t>({4}, {})}});
  bn(f32({5, 7, 5, 7}, {2, 1, 1, 2}));  // mean 6, unbiased var 4/3
  expect_close(bn.state_dict().at("running_mean"), {(4 * 1.0 + 6.0) / 5}, kTolF32, "mean");
  expect_close(bn.state_dict().at("running_var"), {(4 * 2.0 + 4.0 / 3) / 5}, kTolF32, "var");
  EXPECT_EQ(batches_tracked(bn), 5);
}

TEST(BatchNormLayer, RejectsAMomentumOutsideZeroToOne) {
  EXPECT_THROW(nn::BatchNorm1d(2, {.momentum = 1.5}), Error);
  EXPECT_THROW(nn::BatchNorm2d(2, {.momentum = -0.1}), Error);
  const std::string msg = error_of<Error>([] { nn::BatchNorm1d(2, {.momentum = 2.0}); });
  EXPECT_NE(msg.find("momentum must be in [0, 1] (or unset for a cumulative average), got 2"),
            std::string::npos)
      << msg;
}

TEST(BatchNormLayer, EvalUsesTheRunningStatsAndLeavesThemUnchanged) {
  nn::BatchNorm2d bn(2);
  set_state(bn, {{"weight", f32({2.0f, -1.0f}, {2})},
                 {"bias", f32({0.1f, 0.2f}, {2})},
                 {"running_mean", f32({1.0f, -1.0f}, {2})},
                 {"running_var", f32({4.0f, 0.25f}, {2})}});
  bn.eval();
  Tensor y = bn(bn_batch_nchw());
  auto expected = [](double x, int c) {
    const double mean[2] = {1.0, -1.0}, var[2] = {4.0, 0.25}, w[2] = {2.0, -1.0}, b[2] = {0.1, 0.2};
    return (x - mean[c]) / std::sqrt(var[c] + kEps) * w[c] + b[c];
  };
  expect_close(y,
               {expected(1, 0), expected(2, 0), expected(10, 1), expected(20, 1), expected(3, 0),
                expected(4, 0), expected(30, 1), expected(40, 1)},
               kTolF32);
  expect_close(bn.state_dict().at("running_mean"), {1.0, -1.0}, 0.0);
  expect_close(bn.state_dict().at("running_var"), {4.0, 0.25}, 0.0);
  EXPECT_EQ(batches_tracked(bn), 0);
  // One sample per channel is fine in eval mode.
  EXPECT_EQ(bn(ones({1, 2, 1, 1})).shape(), (Shape{1, 2, 1, 1}));
}

TEST(BatchNormLayer, TrainAndEvalGiveDifferentOutputsForTheSameInput) {
  nn::BatchNorm2d bn(2);
  Tensor x = bn_batch_nchw();
  const auto train_out = bn(x).to_vector<float>();
  bn.eval();
  const auto eval_out = bn(x).to_vector<float>();
  // Eval normalizes with the running stats after one step (mean 0.1 * batch mean, ...).
  EXPECT_NE(train_out, eval_out);
  const double rm = 0.1 * 2.5, rv = 0.9 + 0.1 * 5.0 / 3.0;
  EXPECT_NEAR(eval_out[0], (1.0 - rm) / std::sqrt(rv + kEps), kTolF32);
  bn.train();
  EXPECT_EQ(bn(x).to_vector<float>(), train_out);
}

TEST(BatchNorm1dLayer, NormalizesNCLOverTheBatchAndTheLength) {
  nn::BatchNorm1d bn(2);
  // [N = 2, C = 2, L = 2]: channel 0 is {1, 2, 3, 4}, channel 1 {10, 20, 30, 40}.
  Tensor y = bn(f32({1, 2, 10, 20, 3, 4, 30, 40}, {2, 2, 2}));
  EXPECT_EQ(y.shape(), (Shape{2, 2, 2}));
  expect_close(y,
               {bn_expected(1, 0), bn_expected(2, 0), bn_expected(10, 1), bn_expected(20, 1),
                bn_expected(3, 0), bn_expected(4, 0), bn_expected(30, 1), bn_expected(40, 1)},
               kTolF32);
}

TEST(BatchNormLayer, WithoutRunningStatsEvalAlsoUsesTheBatch) {
  nn::BatchNorm2d bn(2, {.track_running_stats = false});
  EXPECT_TRUE(bn.named_buffers().empty());
  EXPECT_EQ(bn.state_dict().keys(), (std::vector<std::string>{"weight", "bias"}));
  const auto train_out = bn(bn_batch_nchw()).to_vector<float>();
  bn.eval();
  EXPECT_EQ(bn(bn_batch_nchw()).to_vector<float>(), train_out);
  EXPECT_NEAR(train_out[0], bn_expected(1, 0), kTolF32);
}

TEST(BatchNormLayer, WithoutAffineHasNoParameters) {
  nn::BatchNorm2d bn(3, {.affine = false});
  EXPECT_TRUE(bn.parameters().empty());
  EXPECT_EQ(bn.state_dict().keys(),
            (std::vector<std::string>{"running_mean", "running_var", "num_batches_tracked"}));
  EXPECT_EQ(bn.repr(),
            "BatchNorm2d(3, eps=1e-05, momentum=0.1, affine=False, track_running_stats=True)");
}

TEST(BatchNormLayer, AFailedForwardLeavesTheStatisticsUntouched) {
  nn::BatchNorm1d bn(3);
  // One value per channel cannot give a batch variance in training mode.
  EXPECT_THROW(bn(ones({1, 3})), Error);
  EXPECT_THROW(bn(ones({2, 3}, {.dtype = kFloat64})), DTypeError);
  EXPECT_THROW(bn(ones({2, 4})), ShapeError);
  EXPECT_EQ(batches_tracked(bn), 0);
  expect_close(bn.state_dict().at("running_mean"), {0, 0, 0}, 0.0);
  expect_close(bn.state_dict().at("running_var"), {1, 1, 1}, 0.0);
}

TEST(BatchNormLayer, GradientsMatchFiniteDifferences) {
  {
    Float64<nn::BatchNorm2d> bn(3);
    set_state(bn, {{"weight", random_f64({3}, 50, 0.5, 1.5)}, {"bias", random_f64({3}, 51)}});
    expect_gradients_match(bn, random_f64({2, 3, 3, 2}, 52), "BatchNorm2d, training");
    bn.eval();
    expect_gradients_match(bn, random_f64({2, 3, 3, 2}, 53), "BatchNorm2d, eval");
  }
  {
    Float64<nn::BatchNorm1d> bn(4, nn::BatchNormOptions{.momentum = 0.3});
    set_state(bn, {{"weight", random_f64({4}, 54, 0.5, 1.5)}, {"bias", random_f64({4}, 55)}});
    expect_gradients_match(bn, random_f64({5, 4}, 56), "BatchNorm1d [N, C], training");
    expect_gradients_match(bn, random_f64({2, 4, 3}, 57), "BatchNorm1d [N, C, L], training");
  }
  {
    Float64<nn::BatchNorm2d> bn(2, nn::BatchNormOptions{.affine = false});
    expect_gradients_match(bn, random_f64({3, 2, 2, 2}, 58), "BatchNorm2d without affine");
  }
}

// ---- LayerNorm ---------------------------------------------------------------------------------

TEST(LayerNormLayer, NormalizesEachRowOverTheLastDim) {
  nn::LayerNorm ln(Shape{3});
  EXPECT_EQ(names_of(ln.named_parameters()), (std::vector<std::string>{"weight", "bias"}));
  expect_close(ln.state_dict().at("weight"), {1, 1, 1}, 0.0);  // PyTorch's init
  expect_close(ln.state_dict().at("bias"), {0, 0, 0}, 0.0);
  set_state(ln, {{"weight", f32({1, 2, 3}, {3})}, {"bias", f32({0, 0, 1}, {3})}});
  // Row [1 2 3]: mean 2, variance 2/3; row [2 4 6]: mean 4, variance 8/3.
  Tensor y = ln(f32({1, 2, 3, 2, 4, 6}, {2, 3}));
  const double s0 = std::sqrt(2.0 / 3.0 + kEps), s1 = std::sqrt(8.0 / 3.0 + kEps);
  expect_close(y, {-1.0 / s0, 0.0, 3.0 / s0 + 1.0, -2.0 / s1, 0.0, 6.0 / s1 + 1.0}, kTolF32);
}

TEST(LayerNormLayer, NormalizesOverSeveralTrailingDims) {
  nn::LayerNorm ln(Shape{2, 3}, {.elementwise_affine = false});
  EXPECT_TRUE(ln.parameters().empty());
  EXPECT_EQ(ln.repr(), "LayerNorm((2, 3), eps=1e-05, elementwise_affine=False)");
  // 1..6: mean 3.5, variance (6.25 + 2.25 + 0.25) * 2 / 6 = 35/12.
  Tensor y = ln(arange(1.0, 7.0).reshape({1, 2, 3}));
  const double s = std::sqrt(35.0 / 12.0 + kEps);
  expect_close(y, {-2.5 / s, -1.5 / s, -0.5 / s, 0.5 / s, 1.5 / s, 2.5 / s}, kTolF32);
}

TEST(LayerNormLayer, GradientsMatchFiniteDifferences) {
  Float64<nn::LayerNorm> ln(Shape{2, 3});
  set_state(ln, {{"weight", random_f64({2, 3}, 60, 0.5, 1.5)}, {"bias", random_f64({2, 3}, 61)}});
  expect_gradients_match(ln, random_f64({4, 2, 3}, 62), "LayerNorm((2, 3))");
  Float64<nn::LayerNorm> plain(Shape{5}, nn::LayerNormOptions{.elementwise_affine = false});
  expect_gradients_match(plain, random_f64({3, 5}, 63), "LayerNorm((5,)) without affine");
}

// ---- activations -------------------------------------------------------------------------------

TEST(ActivationLayers, EachMatchesItsFormula) {
  const std::vector<double> xs{-2.0, -0.5, 0.0, 1.0, 3.0};
  Tensor x = f64(xs, {5}).to(kFloat32);
  auto map = [&xs](double (*f)(double)) {
    std::vector<double> out;
    for (double v : xs) out.push_back(f(v));
    return out;
  };
  expect_close(nn::ReLU()(x), {0, 0, 0, 1, 3}, kTolF32, "ReLU");
  expect_close(nn::LeakyReLU()(x), {-0.02, -0.005, 0, 1, 3}, kTolF32, "LeakyReLU(0.01)");
  expect_close(nn::LeakyReLU(0.2)(x), {-0.4, -0.1, 0, 1, 3}, kTolF32, "LeakyReLU(0.2)");
  expect_close(nn::Sigmoid()(x), map([](double v) { return 1.0 / (1.0 + std::exp(-v)); }), kTolF32,
               "Sigmoid");
  expect_close(nn::Tanh()(x), map([](double v) { return std::tanh(v); }), kTolF32, "Tanh");
  // Exact GELU, x * Phi(x), not the tanh approximation (which gives 0.841192 at 1).
  expect_close(nn::GELU()(x),
               map([](double v) { return 0.5 * v * (1.0 + std::erf(v / std::sqrt(2.0))); }),
               kTolF32, "GELU");
  EXPECT_NEAR(values(nn::GELU()(x))[3], 0.8413447, 1e-6);
  EXPECT_EQ(nn::LeakyReLU(0.2).repr(), "LeakyReLU(negative_slope=0.2)");
  EXPECT_EQ(nn::GELU().repr(), "GELU()");
  // The tanh approximation on request, as PyTorch's nn.GELU(approximate="tanh").
  EXPECT_NEAR(values(nn::GELU("tanh")(x))[3], 0.841192, 1e-6);
  EXPECT_EQ(nn::GELU("tanh").repr(), "GELU(approximate='tanh')");
  EXPECT_TRUE(throws<ValueError>([] { nn::GELU("fast"); }, {"GELU", "approximate", "fast"}));
}

TEST(ActivationLayers, SoftmaxNormalizesAlongItsDim) {
  Tensor x = f32({1, 2, 3, 1, 1, 1}, {2, 3});
  const double e1 = std::exp(1.0), e2 = std::exp(2.0), e3 = std::exp(3.0), s = e1 + e2 + e3;
  expect_close(nn::Softmax()(x), {e1 / s, e2 / s, e3 / s, 1.0 / 3, 1.0 / 3, 1.0 / 3}, kTolF32,
               "dim -1");
  expect_close(nn::Softmax(0)(x),
               {0.5, e2 / (e2 + e1), e3 / (e3 + e1), 0.5, e1 / (e2 + e1), e1 / (e3 + e1)}, kTolF32,
               "dim 0");
  EXPECT_EQ(nn::Softmax(1).repr(), "Softmax(dim=1)");
}

TEST(ActivationLayers, LogSoftmaxIsTheLogOfSoftmaxAlongItsDim) {
  Tensor x = f32({1, 2, 3, 1, 1, 1}, {2, 3});
  const double lse = std::log(std::exp(1.0) + std::exp(2.0) + std::exp(3.0));
  expect_close(nn::LogSoftmax()(x), {1 - lse, 2 - lse, 3 - lse, -std::log(3.0), -std::log(3.0),
                                     -std::log(3.0)},
               kTolF32, "dim -1");
  const double l12 = std::log(std::exp(1.0) + std::exp(1.0)), l21 = std::log(std::exp(2.0) + std::exp(1.0)),
               l31 = std::log(std::exp(3.0) + std::exp(1.0));
  expect_close(nn::LogSoftmax(0)(x), {1 - l12, 2 - l21, 3 - l31, 1 - l12, 1 - l21, 1 - l31}, kTolF32,
               "dim 0");
  // Stable where log(softmax(x)) is not: softmax underflows to 0 for the -1000 entry.
  expect_close(nn::LogSoftmax()(f32({0, -1000}, {1, 2})), {0.0, -1000.0}, kTolF32, "large gap");
  EXPECT_EQ(nn::LogSoftmax(1).repr(), "LogSoftmax(dim=1)");
  EXPECT_THROW(nn::LogSoftmax(2)(x), Error);
  EXPECT_THROW(nn::LogSoftmax()(Tensor()), Error);
}

TEST(ActivationLayers, HaveNoParametersAndPassGradientsThrough) {
  Tensor x = f64({-1.5, -0.2, 0.3, 2.0}, {2, 2});
  std::vector<std::pair<std::string, std::shared_ptr<nn::Module>>> layers{
      {"ReLU", std::make_shared<nn::ReLU>()},
      {"LeakyReLU", std::make_shared<nn::LeakyReLU>(0.1)},
      {"Sigmoid", std::make_shared<nn::Sigmoid>()},
      {"Tanh", std::make_shared<nn::Tanh>()},
      {"GELU", std::make_shared<nn::GELU>()},
      {"Softmax", std::make_shared<nn::Softmax>(0)},
      {"LogSoftmax", std::make_shared<nn::LogSoftmax>(1)}};
  for (auto& [name, layer] : layers) {
    EXPECT_EQ(layer->num_parameters(), 0) << name;
    expect_gradients_match(*layer, x, name);
  }
}

// ---- Sequential --------------------------------------------------------------------------------

TEST(SequentialLayer, OutputEqualsTheManualComposition) {
  manual_seed(5);
  nn::Sequential net{nn::Conv2d(1, 2, 3, {.padding = 1}),
                     nn::ReLU(),
                     nn::MaxPool2d(2),
                     nn::Flatten(),
                     nn::Linear(8, 3),
                     nn::Softmax()};
  Tensor x = randn({2, 1, 4, 4});
  auto& conv = net.at<nn::Conv2d>(0);
  auto& fc = net.at<nn::Linear>(4);
  Tensor h = relu(conv2d(x, conv.weight(), conv.bias(), {.padding = {1, 1}}));
  Tensor manual =
      softmax(linear(max_pool2d(h, {.kernel = {2, 2}}).flatten(1), fc.weight(), fc.bias()));
  Tensor y = net(x);
  EXPECT_EQ(y.shape(), (Shape{2, 3}));
  EXPECT_EQ(y.to_vector<float>(), manual.to_vector<float>());
  // The same through the layers one at a time.
  Tensor step = x;
  for (size_t i = 0; i < net.size(); ++i) step = net[i](step);
  EXPECT_EQ(step.to_vector<float>(), y.to_vector<float>());
}

TEST(SequentialLayer, BraceInitIndexingAndPushBack) {
  nn::Sequential net{nn::Linear(4, 3), nn::ReLU()};
  net.push_back(nn::Linear(3, 2)).push_back(nn::Sigmoid());
  ASSERT_EQ(net.size(), 4u);
  EXPECT_EQ(net[3].name(), "Sigmoid");
  EXPECT_EQ(net.at<nn::Linear>(2).weight().shape(), (Shape{2, 3}));
  // operator[] and the registered children are the same objects.
  const auto children = net.named_children();
  ASSERT_EQ(children.size(), 4u);
  EXPECT_EQ(children[2].first, "2");
  EXPECT_EQ(children[2].second.get(), &net[2]);
  EXPECT_EQ(names_of(net.named_parameters()),
            (std::vector<std::string>{"0.weight", "0.bias", "2.weight", "2.bias"}));
  const auto y = net(ones({5, 4})).to_vector<float>();
  ASSERT_EQ(y.size(), 10u);
  for (float v : y) EXPECT_TRUE(v > 0.0f && v < 1.0f);
  EXPECT_NE(error_of<Error>([&] { net[4]; }).find("index 4 is out of range (4 layers)"),
            std::string::npos);
  EXPECT_NE(error_of<Error>([&] { net.at<nn::Conv2d>(0); }).find("layer 0 is a Linear"),
            std::string::npos);
}

TEST(SequentialLayer, SharedAndNestedModulesKeepDottedNames) {
  auto block = std::make_shared<nn::Sequential>();
  block->push_back(nn::Linear(2, 2)).push_back(nn::Tanh());
  auto head = std::make_shared<nn::Linear>(2, 1);
  nn::Sequential net{block, head};
  EXPECT_EQ(names_of(net.named_parameters()),
            (std::vector<std::string>{"0.0.weight", "0.0.bias", "1.weight", "1.bias"}));
  // Held by pointer: changing `head` changes the network's layer.
  set_state(*head, {{"weight", zeros({1, 2})}, {"bias", f32({7.0f}, {1})}});
  expect_close(net(ones({3, 2})), {7, 7, 7}, 0.0);
  net.eval();
  EXPECT_FALSE(block->is_training());
  EXPECT_FALSE((*block)[0].is_training());
}

TEST(SequentialLayer, EmptySequentialIsTheIdentity) {
  nn::Sequential empty;
  EXPECT_EQ(empty.size(), 0u);
  Tensor x = f32({1, 2, 3}, {1, 3});
  EXPECT_EQ(empty(x).to_vector<float>(), x.to_vector<float>());
}

TEST(SequentialLayer, SummaryOfASmallCnn) {
  nn::Sequential model{
      nn::Conv2d(1, 32, 3), nn::ReLU(),         nn::MaxPool2d(2), nn::Conv2d(32, 64, 3),
      nn::ReLU(),           nn::MaxPool2d(2),   nn::Flatten(),    nn::Linear(64 * 5 * 5, 128),
      nn::ReLU(),           nn::Linear(128, 10)};
  const std::string text = model.summary({1, 1, 28, 28});
  EXPECT_NE(text.find("0 (Conv2d)"), std::string::npos) << text;
  EXPECT_NE(text.find("[None, 32, 26, 26]"), std::string::npos) << text;
  EXPECT_NE(text.find("[None, 64, 5, 5]"), std::string::npos) << text;
  EXPECT_NE(text.find("[None, 1600]"), std::string::npos) << text;
  // 320 + 18496 + 204928 + 1290.
  EXPECT_NE(text.find("Total params: 225034"), std::string::npos) << text;
  EXPECT_EQ(model.num_parameters(), 225034);
}

// ---- shape errors ------------------------------------------------------------------------------

TEST(LayerShapeErrors, LinearNamesTheExpectedAndTheGivenShape) {
  nn::Linear fc(4, 2);
  EXPECT_EQ(error_of<ShapeError>([&] {
              fc(ones({3, 5}));
            }),
            "Linear(in_features=4, out_features=2): expected input [*, 4], got [3, 5]");
  EXPECT_EQ(error_of<ShapeError>([&] { fc(scalar_tensor(1.0)); }),
            "Linear(in_features=4, out_features=2): expected input [*, 4], got []");
}

TEST(LayerShapeErrors, Conv2dNamesTheExpectedAndTheGivenShape) {
  nn::Conv2d conv(3, 8, 3);
  EXPECT_EQ(error_of<ShapeError>([&] {
              conv(ones({2, 4, 5, 5}));
            }),
            "Conv2d(3, 8, kernel_size=3, stride=1): expected input [N, 3, H, W], got [2, 4, 5, 5]");
  EXPECT_EQ(error_of<ShapeError>([&] {
              conv(ones({3, 5, 5}));
            }),
            "Conv2d(3, 8, kernel_size=3, stride=1): expected input [N, 3, H, W], got [3, 5, 5]");
  nn::Conv2d grouped(4, 4, 1, {.groups = 2});
  EXPECT_EQ(error_of<ShapeError>([&] {
              grouped(ones({1, 2, 5, 5}));
            }),
            "Conv2d(4, 4, kernel_size=1, stride=1, groups=2): expected input [N, 4, H, W], "
            "got [1, 2, 5, 5]");
  EXPECT_THROW(conv(Tensor()), Error);
}

TEST(LayerShapeErrors, PoolsNameTheExpectedAndTheGivenShape) {
  EXPECT_EQ(error_of<ShapeError>([] {
              nn::MaxPool2d(2)(ones({3, 28, 28}));
            }),
            "MaxPool2d(kernel_size=2, stride=2, padding=0): expected input [N, C, H, W], "
            "got [3, 28, 28]");
  EXPECT_EQ(error_of<ShapeError>([] {
              nn::AvgPool2d(3, {.stride = 1, .padding = 1})(ones({2, 1, 3, 4, 4}));
            }),
            "AvgPool2d(kernel_size=3, stride=1, padding=1): expected input [N, C, H, W], "
            "got [2, 1, 3, 4, 4]");
  EXPECT_EQ(error_of<ShapeError>([] {
              nn::AdaptiveAvgPool2d(1)(ones({2, 8}));
            }),
            "AdaptiveAvgPool2d(output_size=1): expected input [N, C, H, W], got [2, 8]");
}

TEST(LayerShapeErrors, BatchNormNamesTheExpectedAndTheGivenShape) {
  nn::BatchNorm2d bn2(3);
  EXPECT_EQ(error_of<ShapeError>([&] {
              bn2(ones({2, 4, 5, 5}));
            }),
            "BatchNorm2d(3): expected input [N, 3, H, W], got [2, 4, 5, 5]");
  EXPECT_EQ(error_of<ShapeError>([&] {
              bn2(ones({2, 3}));
            }),
            "BatchNorm2d(3): expected input [N, 3, H, W], got [2, 3]");
  nn::BatchNorm1d bn1(3);
  EXPECT_EQ(error_of<ShapeError>([&] {
              bn1(ones({2, 4}));
            }),
            "BatchNorm1d(3): expected input [N, 3] or [N, 3, L], got [2, 4]");
  EXPECT_EQ(error_of<ShapeError>([&] {
              bn1(ones({2, 3, 4, 4}));
            }),
            "BatchNorm1d(3): expected input [N, 3] or [N, 3, L], got [2, 3, 4, 4]");
}

TEST(LayerShapeErrors, LayerNormNamesTheExpectedAndTheGivenShape) {
  nn::LayerNorm ln(Shape{10});
  EXPECT_EQ(
      error_of<ShapeError>([&] {
        ln(ones({3, 5}));
      }),
      "LayerNorm((10,), eps=1e-05, elementwise_affine=True): expected input [*, 10], got [3, 5]");
  nn::LayerNorm ln2(Shape{2, 3});
  EXPECT_EQ(error_of<ShapeError>([&] {
              ln2(ones({4, 3, 2}));
            }),
            "LayerNorm((2, 3), eps=1e-05, elementwise_affine=True): expected input [*, 2, 3], "
            "got [4, 3, 2]");
  EXPECT_EQ(error_of<ShapeError>([&] { ln2(ones({3})); }),
            "LayerNorm((2, 3), eps=1e-05, elementwise_affine=True): expected input [*, 2, 3], "
            "got [3]");
}

// ---- state_dict --------------------------------------------------------------------------------

TEST(LayerStateDict, Conv2dRoundTripRestoresTheOutput) {
  manual_seed(6);
  nn::Conv2d a(2, 3, 3, {.padding = 1});
  manual_seed(7);
  nn::Conv2d b(2, 3, 3, {.padding = 1});
  Tensor x = randn({1, 2, 5, 5});
  EXPECT_NE(a(x).to_vector<float>(), b(x).to_vector<float>());
  const nn::StateDict sd = a.state_dict();
  EXPECT_EQ(sd.keys(), (std::vector<std::string>{"weight", "bias"}));
  EXPECT_EQ(sd.at("weight").shape(), (Shape{3, 2, 3, 3}));
  b.load_state_dict(sd);
  EXPECT_EQ(a(x).to_vector<float>(), b(x).to_vector<float>());
  // Values of another dtype are converted into the layer's own.
  nn::StateDict as_f64;
  for (const auto& [n, t] : sd) as_f64.insert(n, t.to(kFloat64));
  nn::Conv2d c(2, 3, 3, {.padding = 1});
  c.load_state_dict(as_f64);
  EXPECT_EQ(c.weight().dtype(), kFloat32);
  EXPECT_EQ(c(x).to_vector<float>(), a(x).to_vector<float>());
}

TEST(LayerStateDict, BatchNorm2dRoundTripIncludesTheBuffers) {
  manual_seed(8);
  nn::BatchNorm2d a(3);
  set_state(a, {{"weight", f32({1.5f, 0.5f, 2.0f}, {3})}, {"bias", f32({0.1f, 0.2f, 0.3f}, {3})}});
  a(randn({4, 3, 2, 2}));
  a(randn({4, 3, 2, 2}));
  const nn::StateDict sd = a.state_dict();
  EXPECT_EQ(sd.keys(), (std::vector<std::string>{"weight", "bias", "running_mean", "running_var",
                                                 "num_batches_tracked"}));
  EXPECT_EQ(sd.at("num_batches_tracked").dtype(), kInt64);
  EXPECT_EQ(sd.at("num_batches_tracked").shape(), Shape{});

  nn::BatchNorm2d b(3);
  b.load_state_dict(sd);
  EXPECT_EQ(b.state_dict().at("running_mean").to_vector<float>(),
            sd.at("running_mean").to_vector<float>());
  EXPECT_EQ(b.state_dict().at("running_var").to_vector<float>(),
            sd.at("running_var").to_vector<float>());
  EXPECT_EQ(batches_tracked(b), 2);
  a.eval();
  b.eval();
  Tensor x = randn({2, 3, 2, 2});
  EXPECT_EQ(a(x).to_vector<float>(), b(x).to_vector<float>());
}

TEST(LayerStateDict, BatchNorm2dNamesMissingAndMisshapedBuffers) {
  nn::BatchNorm2d bn(3);
  nn::StateDict sd = bn.state_dict();
  nn::StateDict bad;
  for (const auto& [n, t] : sd) {
    if (n == "running_var") continue;
    bad.insert(n, n == "running_mean" ? zeros({4}) : t);
  }
  const std::string msg = error_of<ShapeError>([&] { bn.load_state_dict(bad); });
  EXPECT_NE(msg.find("does not match BatchNorm2d"), std::string::npos) << msg;
  EXPECT_NE(msg.find("missing keys: running_var"), std::string::npos) << msg;
  EXPECT_NE(msg.find("running_mean: checkpoint [4], model [3]"), std::string::npos) << msg;
}

// ---- a model written by subclassing (as docs/layers.md shows it) ------------------------------

namespace {

class Net : public nn::Module {
 public:
  Net() {
    conv = register_module("conv", nn::Conv2d(1, 16, 3, {.padding = "same"}));
    bn = register_module("bn", nn::BatchNorm2d(16));
    fc = register_module("fc", nn::Linear(16, 10));
    register_buffer("scale", full({1}, 0.5));
  }
  Tensor forward(const Tensor& x) override {
    Tensor h = relu((*bn)((*conv)(x)));             // [N, 16, 28, 28]
    h = adaptive_avg_pool2d(h, {1, 1}).flatten(1);  // [N, 16]
    return mul((*fc)(h), buffer_slot("scale"));     // [N, 10]
  }
  std::string name() const override { return "Net"; }

  std::shared_ptr<nn::Conv2d> conv;
  std::shared_ptr<nn::BatchNorm2d> bn;
  std::shared_ptr<nn::Linear> fc;
};

}  // namespace

TEST(CustomModuleLayers, StateDictPutsOwnBuffersBeforeChildrenAndSummaryListsLeaves) {
  manual_seed(12);
  Net net;
  EXPECT_EQ(net.state_dict().keys(),
            (std::vector<std::string>{"scale", "conv.weight", "conv.bias", "bn.weight", "bn.bias",
                                      "bn.running_mean", "bn.running_var", "bn.num_batches_tracked",
                                      "fc.weight", "fc.bias"}));
  EXPECT_EQ(net.num_parameters(), 160 + 32 + 170);
  const std::string text = net.summary({2, 1, 28, 28});
  EXPECT_NE(text.find("conv (Conv2d)"), std::string::npos) << text;
  EXPECT_NE(text.find("[None, 16, 28, 28]"), std::string::npos) << text;
  EXPECT_NE(text.find("fc (Linear)"), std::string::npos) << text;
  EXPECT_EQ(batches_tracked(*net.bn), 0);  // summary() runs in eval mode
  EXPECT_TRUE(net.is_training());
  // The buffer takes part in forward: halving it halves the output.
  Tensor x = randn({2, 1, 28, 28});
  net.eval();
  const auto y = values(net(x));
  set_state(net, {{"scale", f32({0.25f}, {1})}});
  const auto half = values(net(x));
  ASSERT_EQ(y.size(), 20u);
  for (size_t i = 0; i < y.size(); ++i) EXPECT_NEAR(half[i], 0.5 * y[i], kTolF32);
}
