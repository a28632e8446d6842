// Pooling and normalization on the CPU: forward against hand-computed cases and naive
// float64 references (stride, padding, ceil mode, count_include_pad, adaptive sizes that
// do not divide), max-pooling gradient routing, finite-difference gradient checks, batch
// norm running statistics and eval mode, and the errors for bad inputs; and, on every
// device (test_pool_norm_cuda.cpp holds what only CUDA has), non-contiguous inputs and an
// empty batch.
#include <gtest/gtest.h>

#include <array>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "ember/core/autograd.h"
#include "ember/core/base/error.h"
#include "ember/core/grad_check.h"
#include "ember/core/ops.h"
#include "ember/core/tensor.h"

#include "core/pool_case.h"
#include "support/allclose.h"
#include "support/check.h"
#include "support/device.h"
#include "support/random.h"

namespace {

using ember::DType;
using ember::Pool2dParams;
using ember::Shape;
using ember::Tensor;
using namespace ember::testing;

constexpr double kEps = 1e-5;  // batch_norm / layer_norm default

// ---- naive pooling references -----------------------------------------------------------

// PyTorch's output size, written from its documentation: floor or ceil of
// (in + 2 pad - kernel) / stride + 1, dropping a last window that would start in the
// right padding.
int64_t ref_out_size(int64_t in, int64_t k, int64_t s, int64_t p, bool ceil_mode) {
  const double q = static_cast<double>(in + 2 * p - k) / static_cast<double>(s);
  int64_t out = static_cast<int64_t>(ceil_mode ? std::ceil(q) : std::floor(q)) + 1;
  if (ceil_mode && (out - 1) * s >= in + p) --out;
  return out;
}

// Visits every kernel tap of every window. Max: the first maximum of the real elements
// (NaN wins). Avg: the sum of the real elements over the count of taps that fall inside
// the padded input (count_include_pad) or inside the input itself.
std::vector<double> naive_pool(const std::vector<double>& x, const Shape& xs, const Pool2dParams& p,
                               bool is_max, Shape* out_shape) {
  const int64_t n = xs[0], c = xs[1], h = xs[2], w = xs[3];
  const int64_t kh = p.kernel[0], kw = p.kernel[1];
  const int64_t sh = p.stride[0] == 0 ? kh : p.stride[0], sw = p.stride[1] == 0 ? kw : p.stride[1];
  const int64_t ph = p.padding[0], pw = p.padding[1];
  const int64_t oh_n = ref_out_size(h, kh, sh, ph, p.ceil_mode);
  const int64_t ow_n = ref_out_size(w, kw, sw, pw, p.ceil_mode);
  *out_shape = {n, c, oh_n, ow_n};
  std::vector<double> y;
  for (int64_t pl = 0; pl < n * c; ++pl) {
    for (int64_t oh = 0; oh < oh_n; ++oh) {
      for (int64_t ow = 0; ow < ow_n; ++ow) {
        double best = -std::numeric_limits<double>::infinity(), sum = 0.0;
        int64_t padded_taps = 0, real_taps = 0;
        for (int64_t i = 0; i < kh; ++i) {
          for (int64_t j = 0; j < kw; ++j) {
            const int64_t ih = oh * sh - ph + i, iw = ow * sw - pw + j;
            if (ih < h + ph && iw < w + pw) ++padded_taps;
            if (ih < 0 || ih >= h || iw < 0 || iw >= w) continue;
            ++real_taps;
            const double v = x[static_cast<size_t>((pl * h + ih) * w + iw)];
            sum += v;
            if (!std::isnan(best) && (v > best || std::isnan(v))) best = v;
          }
        }
        if (is_max) {
          y.push_back(best);
        } else {
          y.push_back(sum / static_cast<double>(p.count_include_pad ? padded_taps : real_taps));
        }
      }
    }
  }
  return y;
}

std::vector<PoolCase> pool_cases() {
  std::vector<PoolCase> cases;
  cases.push_back({{2, 3, 6, 6}, {.kernel = {2, 2}}});
  cases.push_back({{1, 2, 7, 5}, {.kernel = {3, 3}, .stride = {2, 2}, .padding = {1, 1}}});
  cases.push_back(
      {{2, 1, 7, 7}, {.kernel = {3, 2}, .stride = {2, 3}, .padding = {1, 0}, .ceil_mode = true}});
  cases.push_back(
      {{1, 2, 6, 6}, {.kernel = {3, 3}, .stride = {2, 2}, .padding = {1, 1}, .ceil_mode = true}});
  cases.push_back(
      {{1, 1, 5, 8}, {.kernel = {2, 4}, .stride = {1, 3}, .padding = {1, 2}, .ceil_mode = true}});
  cases.push_back({{3, 2, 4, 4}, {.kernel = {3, 3}, .stride = {1, 1}, .padding = {1, 1}}});
  cases.push_back({{1, 1, 1, 9}, {.kernel = {1, 3}, .stride = {1, 2}, .ceil_mode = true}});
  cases.push_back({{0, 2, 5, 5}, {.kernel = {2, 2}}});
  return cases;
}

// ---- max pooling --------------------------------------------------------------------------

TEST(MaxPool2d, TakesTheMaximumOfEachWindow) {
  Tensor x = ember::arange(0.0, 16.0, 1.0).reshape({1, 1, 4, 4});
  Tensor y = ember::max_pool2d(x);
  EXPECT_EQ(y.shape(), (Shape{1, 1, 2, 2}));
  EXPECT_EQ(y.to_vector<float>(), (std::vector<float>{5, 7, 13, 15}));
}

TEST(MaxPool2d, MatchesNaiveReferenceWithStridePaddingAndCeilMode) {
  uint64_t seed = 1;
  for (const PoolCase& c : pool_cases()) {
    Tensor x = uniform(c.x, -1.0, 1.0, seed++);
    Shape want_shape;
    const auto want = naive_pool(values(x), c.x, c.p, true, &want_shape);
    Tensor y = ember::max_pool2d(x, c.p);
    EXPECT_EQ(y.shape(), want_shape) << describe(c);
    EXPECT_TRUE(allclose(y, want, kFloat64RefTol)) << describe(c);
    Tensor yf = ember::max_pool2d(x.to(ember::kFloat32), c.p);
    EXPECT_TRUE(allclose(yf, want, kFloat32RefTol)) << describe(c) << " float32";
  }
}

TEST(MaxPool2d, CeilModeAddsAWindowThatStartsInsideTheInput) {
  Tensor x = ember::arange(1.0, 6.0, 1.0).reshape({1, 1, 1, 5});
  EXPECT_EQ(ember::max_pool2d(x, {.kernel = {1, 2}}).to_vector<float>(),
            (std::vector<float>{2, 4}));
  EXPECT_EQ(ember::max_pool2d(x, {.kernel = {1, 2}, .ceil_mode = true}).to_vector<float>(),
            (std::vector<float>{2, 4, 5}));
  // A last window that would start in the right padding is dropped: W = 5, kernel 2,
  // stride 2, padding 1 gives ceil(4 / 2) + 1 = 4 windows, but the fourth would start at
  // 3 * 2 - 1 = 5, past the input, so there are 3 (as in floor mode).
  Tensor y = ember::max_pool2d(
      x, {.kernel = {1, 2}, .stride = {1, 2}, .padding = {0, 1}, .ceil_mode = true});
  EXPECT_EQ(y.to_vector<float>(), (std::vector<float>{1, 3, 5}));
}

TEST(MaxPool2d, GradientGoesToTheFirstMaximumOfEachWindow) {
  // Ties everywhere: each window's gradient goes to its first element only.
  Tensor x = ember::ones({1, 1, 2, 4}).requires_grad_();
  ember::max_pool2d(x).sum().backward();
  EXPECT_EQ(x.grad().to_vector<float>(), (std::vector<float>{1, 0, 1, 0, 0, 0, 0, 0}));

  // Overlapping windows (stride 1) that share their maximum accumulate onto it.
  Tensor z = Tensor::from_vector<float>({0, 1, 0, 0, 9, 0, 0, 0, 0}, {1, 1, 3, 3}).requires_grad_();
  Tensor y = ember::max_pool2d(z, {.kernel = {2, 2}, .stride = {1, 1}});
  EXPECT_EQ(y.to_vector<float>(), (std::vector<float>{9, 9, 9, 9}));
  Tensor gy = Tensor::from_vector<float>({1, 2, 3, 4}, {1, 1, 2, 2});
  y.backward(gy);
  EXPECT_EQ(z.grad().to_vector<float>(), (std::vector<float>{0, 0, 0, 0, 10, 0, 0, 0, 0}));
}

TEST(MaxPool2d, NaNPropagatesAndTakesTheGradient) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  Tensor x = Tensor::from_vector<float>({1, nan, 3, 2, 5, 6, 7, 8}, {1, 1, 2, 4}).requires_grad_();
  Tensor y = ember::max_pool2d(x);
  auto yv = y.to_vector<float>();
  EXPECT_TRUE(std::isnan(yv[0]));
  EXPECT_EQ(yv[1], 8.0f);
  y.sum().backward();
  EXPECT_EQ(x.grad().to_vector<float>(), (std::vector<float>{0, 1, 0, 0, 0, 0, 0, 1}));
}

TEST(MaxPool2d, GradientMatchesFiniteDifferences) {
  uint64_t seed = 100;
  for (const PoolCase& c : pool_cases()) {
    if (c.x[0] == 0) continue;
    Tensor x = uniform(c.x, -1.0, 1.0, seed++).requires_grad_();
    auto r = ember::gradcheck(
        [&](const std::vector<Tensor>& in) { return ember::max_pool2d(in[0], c.p); }, {x});
    EXPECT_TRUE(r.ok) << describe(c) << "\n" << r.report;
  }
}

// ---- average pooling ----------------------------------------------------------------------

TEST(AvgPool2d, CountIncludePadDecidesTheBorderDivisor) {
  Tensor x = ember::ones({1, 1, 3, 3});
  Pool2dParams p{.kernel = {3, 3}, .stride = {1, 1}, .padding = {1, 1}};
  // Corners see 4 real elements of 9 taps, edges 6, the centre 9.
  const std::vector<float> include{4.f / 9, 6.f / 9, 4.f / 9, 6.f / 9, 1,
                                   6.f / 9, 4.f / 9, 6.f / 9, 4.f / 9};
  EXPECT_TRUE(allclose(ember::avg_pool2d(x, p), std::vector<double>(include.begin(), include.end()),
                       kFloat32RefTol))
      << "include pad";
  p.count_include_pad = false;
  EXPECT_TRUE(allclose(ember::avg_pool2d(x, p), std::vector<double>(9, 1.0), kFloat32RefTol))
      << "exclude pad";
}

TEST(AvgPool2d, CeilModeWindowCountsPaddingOnlyUpToThePaddedInput) {
  // W = 6, kernel 3, stride 2, padding 1, ceil mode: 4 windows; the last starts at 5 and
  // covers column 5 and one column of right padding, so its include-pad divisor is 2.
  Tensor x = ember::arange(1.0, 7.0, 1.0, {.dtype = ember::kFloat64}).reshape({1, 1, 1, 6});
  Pool2dParams p{.kernel = {1, 3}, .stride = {1, 2}, .padding = {0, 1}, .ceil_mode = true};
  EXPECT_TRUE(allclose(ember::avg_pool2d(x, p), {1.0, 3.0, 5.0, 3.0}, kFloat64RefTol))
      << "include pad";
  p.count_include_pad = false;
  EXPECT_TRUE(allclose(ember::avg_pool2d(x, p), {1.5, 3.0, 5.0, 6.0}, kFloat64RefTol))
      << "exclude pad";
}

TEST(AvgPool2d, MatchesNaiveReferenceForBothPaddingCounts) {
  uint64_t seed = 200;
  for (PoolCase c : pool_cases()) {
    for (bool include : {true, false}) {
      c.p.count_include_pad = include;
      Tensor x = uniform(c.x, -1.0, 1.0, seed++);
      Shape want_shape;
      const auto want = naive_pool(values(x), c.x, c.p, false, &want_shape);
      Tensor y = ember::avg_pool2d(x, c.p);
      EXPECT_EQ(y.shape(), want_shape) << describe(c);
      EXPECT_TRUE(allclose(y, want, kFloat64RefTol)) << describe(c);
      Tensor yf = ember::avg_pool2d(x.to(ember::kFloat32), c.p);
      EXPECT_TRUE(allclose(yf, want, kFloat32RefTol)) << describe(c) << " float32";
    }
  }
}

TEST(AvgPool2d, GradientMatchesFiniteDifferences) {
  uint64_t seed = 300;
  for (PoolCase c : pool_cases()) {
    if (c.x[0] == 0) continue;
    for (bool include : {true, false}) {
      c.p.count_include_pad = include;
      Tensor x = uniform(c.x, -1.0, 1.0, seed++).requires_grad_();
      auto r = ember::gradcheck(
          [&](const std::vector<Tensor>& in) { return ember::avg_pool2d(in[0], c.p); }, {x});
      EXPECT_TRUE(r.ok) << describe(c) << "\n" << r.report;
    }
  }
}

// ---- adaptive average pooling -------------------------------------------------------------

std::vector<double> naive_adaptive(const std::vector<double>& x, const Shape& xs, int64_t oh_n,
                                   int64_t ow_n) {
  const int64_t h = xs[2], w = xs[3];
  std::vector<double> y;
  for (int64_t pl = 0; pl < xs[0] * xs[1]; ++pl) {
    for (int64_t oh = 0; oh < oh_n; ++oh) {
      const auto h0 = static_cast<int64_t>(std::floor(static_cast<double>(oh * h) / oh_n));
      const auto h1 = static_cast<int64_t>(std::ceil(static_cast<double>((oh + 1) * h) / oh_n));
      for (int64_t ow = 0; ow < ow_n; ++ow) {
        const auto w0 = static_cast<int64_t>(std::floor(static_cast<double>(ow * w) / ow_n));
        const auto w1 = static_cast<int64_t>(std::ceil(static_cast<double>((ow + 1) * w) / ow_n));
        double sum = 0.0;
        for (int64_t i = h0; i < h1; ++i)
          for (int64_t j = w0; j < w1; ++j) sum += x[static_cast<size_t>((pl * h + i) * w + j)];
        y.push_back(sum / static_cast<double>((h1 - h0) * (w1 - w0)));
      }
    }
  }
  return y;
}

TEST(AdaptiveAvgPool2d, BinsOverlapWhenTheOutputDoesNotDivideTheInput) {
  // W = 5 -> 3 bins: [0, 2), [1, 4), [3, 5).
  Tensor x = ember::arange(1.0, 6.0, 1.0, {.dtype = ember::kFloat64}).reshape({1, 1, 1, 5});
  EXPECT_TRUE(allclose(ember::adaptive_avg_pool2d(x, {1, 3}), {1.5, 3.0, 4.5}, kFloat64RefTol))
      << "1x5->1x3";
}

TEST(AdaptiveAvgPool2d, MatchesNaiveReference) {
  struct Case {
    Shape x;
    std::array<int64_t, 2> out;
  };
  const std::vector<Case> cases{{{2, 3, 4, 4}, {1, 1}}, {{1, 2, 5, 7}, {3, 4}},
                                {{2, 1, 3, 3}, {5, 5}}, {{1, 1, 7, 6}, {7, 6}},
                                {{1, 3, 9, 2}, {4, 1}}, {{0, 2, 4, 4}, {2, 2}}};
  uint64_t seed = 400;
  for (const Case& c : cases) {
    Tensor x = uniform(c.x, -1.0, 1.0, seed++);
    Tensor y = ember::adaptive_avg_pool2d(x, c.out);
    EXPECT_EQ(y.shape(), (Shape{c.x[0], c.x[1], c.out[0], c.out[1]}));
    const auto want = naive_adaptive(values(x), c.x, c.out[0], c.out[1]);
    EXPECT_TRUE(allclose(y, want, kFloat64RefTol)) << ember::shape_str(c.x);
    EXPECT_TRUE(
        allclose(ember::adaptive_avg_pool2d(x.to(ember::kFloat32), c.out), want, kFloat32RefTol))
        << ember::shape_str(c.x) << " float32";
    if (c.x[0] == 0) continue;
    Tensor xg = x.clone().requires_grad_();
    auto r = ember::gradcheck(
        [&](const std::vector<Tensor>& in) { return ember::adaptive_avg_pool2d(in[0], c.out); },
        {xg});
    EXPECT_TRUE(r.ok) << ember::shape_str(c.x) << "\n" << r.report;
  }
}

// ---- pooling errors -----------------------------------------------------------------------

TEST(Pool2dErrors, NameTheOpAndTheShapes) {
  Tensor x3 = ember::zeros({3, 28, 28});
  EXPECT_EQ(error_of([&] { ember::max_pool2d(x3); }),
            "max_pool2d: input must be [N, C, H, W], got [3, 28, 28]");
  EXPECT_THROW(ember::max_pool2d(x3), ember::ShapeError);

  Tensor x = ember::zeros({1, 3, 2, 2});
  EXPECT_EQ(error_of([&] {
              ember::max_pool2d(x, {.kernel = {3, 3}});
            }),
            "max_pool2d: kernel [3, 3] is larger than the padded input [2, 2] (input [1, 3, 2, 2], "
            "padding [0, 0])");
  EXPECT_EQ(error_of([&] {
              ember::avg_pool2d(x, {.kernel = {3, 3}, .padding = {2, 1}});
            }),
            "avg_pool2d: padding [2, 1] must be at most half the kernel [3, 3]");
  EXPECT_NE(error_of([&] {
              ember::max_pool2d(x, {.kernel = {0, 2}});
            }).find("kernel must be positive"),
            std::string::npos);
  EXPECT_NE(error_of([&] {
              ember::max_pool2d(x, {.stride = {-1, 1}});
            }).find("stride must be positive"),
            std::string::npos);
  EXPECT_NE(error_of([&] { ember::max_pool2d(x.to(ember::kInt64)); }).find("floating-point"),
            std::string::npos);
  EXPECT_EQ(error_of([&] {
              ember::adaptive_avg_pool2d(x, {0, 1});
            }),
            "adaptive_avg_pool2d: output_size must be positive, got [0, 1]");
  EXPECT_EQ(error_of([&] {
              ember::adaptive_avg_pool2d(ember::zeros({2, 0, 4, 4}), {1, 1});
            }),
            "adaptive_avg_pool2d: input [2, 0, 4, 4] must have non-zero C, H and W");
}

// ---- batch norm ---------------------------------------------------------------------------

// Per channel over N and the spatial dims: (x - mean) / sqrt(biased var + eps) * w + b.
std::vector<double> naive_batch_norm(const std::vector<double>& x, const Shape& xs,
                                     const std::vector<double>* w, const std::vector<double>* b) {
  const int64_t n = xs[0], c = xs[1];
  int64_t s = 1;
  for (size_t d = 2; d < xs.size(); ++d) s *= xs[d];
  std::vector<double> y(x.size());
  for (int64_t ch = 0; ch < c; ++ch) {
    double mean = 0.0, var = 0.0;
    for (int64_t i = 0; i < n; ++i)
      for (int64_t k = 0; k < s; ++k) mean += x[static_cast<size_t>((i * c + ch) * s + k)];
    mean /= static_cast<double>(n * s);
    for (int64_t i = 0; i < n; ++i)
      for (int64_t k = 0; k < s; ++k) {
        const double d = x[static_cast<size_t>((i * c + ch) * s + k)] - mean;
        var += d * d;
      }
    var /= static_cast<double>(n * s);
    for (int64_t i = 0; i < n; ++i)
      for (int64_t k = 0; k < s; ++k) {
        const size_t idx = static_cast<size_t>((i * c + ch) * s + k);
        y[idx] =
            (x[idx] - mean) / std::sqrt(var + kEps) * (w ? (*w)[ch] : 1.0) + (b ? (*b)[ch] : 0.0);
      }
  }
  return y;
}

TEST(BatchNorm, TrainingNormalizesWithTheBatchStatistics) {
  uint64_t seed = 500;
  for (const Shape& xs : {Shape{4, 3}, Shape{3, 2, 5}, Shape{2, 3, 4, 5}, Shape{2, 2, 3, 1, 2}}) {
    Tensor x = uniform(xs, -2.0, 3.0, seed++);
    Tensor w = uniform({xs[1]}, 0.5, 1.5, seed++), b = uniform({xs[1]}, -1.0, 1.0, seed++);
    const auto wv = values(w), bv = values(b);
    Tensor y = ember::batch_norm(x, Tensor(), Tensor(), w, b, true);
    EXPECT_TRUE(allclose(y, naive_batch_norm(values(x), xs, &wv, &bv), kFloat64RefTol))
        << ember::shape_str(xs);
    Tensor y_plain = ember::batch_norm(x, Tensor(), Tensor(), Tensor(), Tensor(), true);
    EXPECT_TRUE(
        allclose(y_plain, naive_batch_norm(values(x), xs, nullptr, nullptr), kFloat64RefTol))
        << ember::shape_str(xs) << " without affine";
    Tensor yf = ember::batch_norm(x.to(ember::kFloat32), Tensor(), Tensor(), w.to(ember::kFloat32),
                                  b.to(ember::kFloat32), true);
    EXPECT_TRUE(allclose(yf, values(y), kFloat32RefTol)) << ember::shape_str(xs) << " float32";
  }
}

TEST(BatchNorm, RunningStatisticsAfterTwoStepsFollowPyTorchsFormula) {
  // Two channels of [N = 2, C = 2, L = 2]; momentum 0.1 from running mean 0, var 1.
  Tensor x1 = Tensor::from_vector<double>({1, 2, 10, 20, 3, 4, 30, 40}, {2, 2, 2});
  Tensor x2 = Tensor::from_vector<double>({0, 0, 1, 1, 2, 4, -1, -1}, {2, 2, 2});
  Tensor rm = ember::zeros({2}, {.dtype = ember::kFloat64});
  Tensor rv = ember::ones({2}, {.dtype = ember::kFloat64});
  ember::batch_norm(x1, rm, rv, Tensor(), Tensor(), true, 0.1);
  ember::batch_norm(x2, rm, rv, Tensor(), Tensor(), true, 0.1);
  // Step 1: channel 0 {1, 2, 3, 4}: mean 2.5, unbiased var 5/3;
  //         channel 1 {10, 20, 30, 40}: mean 25, unbiased var 500/3.
  // Step 2: channel 0 {0, 0, 2, 4}: mean 1.5, unbiased var 11/3;
  //         channel 1 {1, 1, -1, -1}: mean 0, unbiased var 4/3.
  const double rm0 = 0.9 * (0.9 * 0.0 + 0.1 * 2.5) + 0.1 * 1.5;
  const double rm1 = 0.9 * (0.9 * 0.0 + 0.1 * 25.0) + 0.1 * 0.0;
  const double rv0 = 0.9 * (0.9 * 1.0 + 0.1 * 5.0 / 3.0) + 0.1 * 11.0 / 3.0;
  const double rv1 = 0.9 * (0.9 * 1.0 + 0.1 * 500.0 / 3.0) + 0.1 * 4.0 / 3.0;
  EXPECT_TRUE(allclose(rm, {rm0, rm1}, kFloat64RefTol)) << "running_mean";
  EXPECT_TRUE(allclose(rv, {rv0, rv1}, kFloat64RefTol)) << "running_var";
}

TEST(BatchNorm, EvalModeUsesTheRunningStatisticsAndLeavesThemUnchanged) {
  Tensor x = uniform({3, 2, 2, 2}, -1.0, 1.0, 600);
  Tensor rm = Tensor::from_vector<double>({0.5, -1.0}, {2});
  Tensor rv = Tensor::from_vector<double>({4.0, 0.25}, {2});
  Tensor w = Tensor::from_vector<double>({2.0, -1.0}, {2});
  Tensor b = Tensor::from_vector<double>({0.1, 0.2}, {2});
  Tensor y = ember::batch_norm(x, rm, rv, w, b, false);
  const auto xv = values(x);
  std::vector<double> want(xv.size());
  const double mean[2] = {0.5, -1.0}, var[2] = {4.0, 0.25}, wt[2] = {2.0, -1.0}, bs[2] = {0.1, 0.2};
  for (size_t i = 0; i < xv.size(); ++i) {
    const size_t ch = (i / 4) % 2;
    want[i] = (xv[i] - mean[ch]) / std::sqrt(var[ch] + kEps) * wt[ch] + bs[ch];
  }
  EXPECT_TRUE(allclose(y, want, kFloat64RefTol)) << "eval";
  EXPECT_TRUE(allclose(rm, {0.5, -1.0}, kExact)) << "running_mean untouched";
  EXPECT_TRUE(allclose(rv, {4.0, 0.25}, kExact)) << "running_var untouched";
  // One value per channel is fine in eval mode.
  EXPECT_NO_THROW(ember::batch_norm(uniform({1, 2}, -1.0, 1.0, 601), rm, rv, w, b, false));
}

TEST(BatchNorm, TrainingGradientMatchesFiniteDifferences) {
  uint64_t seed = 700;
  for (const Shape& xs : {Shape{5, 3}, Shape{2, 3, 4}, Shape{2, 2, 3, 3}, Shape{1, 2, 3, 1}}) {
    Tensor x = uniform(xs, -1.0, 1.0, seed++).requires_grad_();
    Tensor w = uniform({xs[1]}, 0.5, 1.5, seed++).requires_grad_();
    Tensor b = uniform({xs[1]}, -1.0, 1.0, seed++).requires_grad_();
    Tensor rm = ember::zeros({xs[1]}, {.dtype = ember::kFloat64});
    Tensor rv = ember::ones({xs[1]}, {.dtype = ember::kFloat64});
    auto r = ember::gradcheck(
        [&](const std::vector<Tensor>& in) {
          return ember::batch_norm(in[0], rm, rv, in[1], in[2], true);
        },
        {x, w, b});
    EXPECT_TRUE(r.ok) << ember::shape_str(xs) << "\n" << r.report;
    Tensor x2 = uniform(xs, -1.0, 1.0, seed++).requires_grad_();
    auto r2 = ember::gradcheck(
        [&](const std::vector<Tensor>& in) {
          return ember::batch_norm(in[0], Tensor(), Tensor(), Tensor(), Tensor(), true);
        },
        {x2});
    EXPECT_TRUE(r2.ok) << ember::shape_str(xs) << " without affine\n" << r2.report;
  }
}

TEST(BatchNorm, EvalGradientMatchesFiniteDifferences) {
  Tensor x = uniform({3, 2, 2, 3}, -1.0, 1.0, 800).requires_grad_();
  Tensor w = uniform({2}, 0.5, 1.5, 801).requires_grad_();
  Tensor b = uniform({2}, -1.0, 1.0, 802).requires_grad_();
  Tensor rm = uniform({2}, -1.0, 1.0, 803), rv = uniform({2}, 0.5, 2.0, 804);
  auto r = ember::gradcheck(
      [&](const std::vector<Tensor>& in) {
        return ember::batch_norm(in[0], rm, rv, in[1], in[2], false);
      },
      {x, w, b});
  EXPECT_TRUE(r.ok) << r.report;
  Tensor x2 = uniform({4, 2}, -1.0, 1.0, 805).requires_grad_();
  auto r2 = ember::gradcheck(
      [&](const std::vector<Tensor>& in) {
        return ember::batch_norm(in[0], rm, rv, Tensor(), Tensor(), false);
      },
      {x2});
  EXPECT_TRUE(r2.ok) << "without affine\n" << r2.report;
}

TEST(BatchNorm, OnlyTheRequestedGradientsAreComputed) {
  Tensor x = uniform({4, 3}, -1.0, 1.0, 900);
  Tensor w = uniform({3}, -1.0, 1.0, 901).requires_grad_();
  ember::batch_norm(x, Tensor(), Tensor(), w, Tensor(), true).pow(2.0).sum().backward();
  EXPECT_TRUE(w.grad().defined());
  EXPECT_FALSE(x.grad().defined());
}

TEST(BatchNormErrors, NameTheOpShapesAndDevices) {
  Tensor x = ember::zeros({2, 3, 4, 4});
  Tensor w4 = ember::ones({4});
  EXPECT_EQ(error_of([&] { ember::batch_norm(x, Tensor(), Tensor(), w4, Tensor(), true); }),
            "batch_norm: weight [4] does not match the channels (dim 1) of input [2, 3, 4, 4] "
            "(expected [3])");
  EXPECT_THROW(ember::batch_norm(x, Tensor(), Tensor(), w4, Tensor(), true), ember::ShapeError);
  EXPECT_NE(error_of([&] {
              ember::batch_norm(x, ember::zeros({2}), ember::ones({2}), Tensor(), Tensor(), true);
            }).find("running_mean [2] does not match"),
            std::string::npos);
  EXPECT_EQ(
      error_of([&] {
        ember::batch_norm(ember::zeros({1, 3}), Tensor(), Tensor(), Tensor(), Tensor(), true);
      }),
      "batch_norm: Expected more than 1 value per channel when training, got input size [1, 3]");
  EXPECT_NE(
      error_of([&] {
        ember::batch_norm(ember::zeros({1, 3, 1, 1}), Tensor(), Tensor(), Tensor(), Tensor(), true);
      }).find("Expected more than 1 value per channel when training"),
      std::string::npos);
  EXPECT_NE(error_of([&] {
              ember::batch_norm(ember::zeros({5}), Tensor(), Tensor(), Tensor(), Tensor(), true);
            }).find("batch_norm: input must be [N, C] or [N, C, *], got [5]"),
            std::string::npos);
  EXPECT_NE(error_of([&] {
              ember::batch_norm(x, Tensor(), Tensor(), Tensor(), Tensor(), false);
            }).find("eval mode"),
            std::string::npos);
  EXPECT_NE(error_of([&] {
              ember::batch_norm(x, ember::zeros({3}), Tensor(), Tensor(), Tensor(), true);
            }).find("both be defined or both undefined"),
            std::string::npos);
  Tensor rm_grad = ember::zeros({3}).requires_grad_();
  EXPECT_NE(error_of([&] {
              ember::batch_norm(x, rm_grad, ember::ones({3}), Tensor(), Tensor(), true);
            }).find("must not require grad"),
            std::string::npos);
  EXPECT_NE(error_of([&] {
              ember::batch_norm(x, ember::zeros({3}, {.dtype = ember::kFloat64}),
                                ember::ones({3}, {.dtype = ember::kFloat64}), Tensor(), Tensor(),
                                true);
            }).find("running_mean is float64 but the input is float32"),
            std::string::npos);
}

// ---- layer norm ---------------------------------------------------------------------------

std::vector<double> naive_layer_norm(const std::vector<double>& x, int64_t cols,
                                     const std::vector<double>* w, const std::vector<double>* b) {
  std::vector<double> y(x.size());
  for (size_t r = 0; r * cols < x.size(); ++r) {
    double mean = 0.0, var = 0.0;
    for (int64_t j = 0; j < cols; ++j) mean += x[r * cols + j];
    mean /= static_cast<double>(cols);
    for (int64_t j = 0; j < cols; ++j) var += (x[r * cols + j] - mean) * (x[r * cols + j] - mean);
    var /= static_cast<double>(cols);
    for (int64_t j = 0; j < cols; ++j) {
      y[r * cols + j] = (x[r * cols + j] - mean) / std::sqrt(var + kEps) * (w ? (*w)[j] : 1.0) +
                        (b ? (*b)[j] : 0.0);
    }
  }
  return y;
}

TEST(LayerNorm, NormalizesOverTheTrailingDims) {
  Tensor x = uniform({2, 3, 2, 4}, -3.0, 2.0, 1000);
  Tensor w = uniform({2, 4}, 0.5, 1.5, 1001), b = uniform({2, 4}, -1.0, 1.0, 1002);
  const auto wv = values(w), bv = values(b);
  Tensor y = ember::layer_norm(x, {2, 4}, w, b);
  EXPECT_EQ(y.shape(), x.shape());
  EXPECT_TRUE(allclose(y, naive_layer_norm(values(x), 8, &wv, &bv), kFloat64RefTol)) << "affine";
  EXPECT_TRUE(allclose(ember::layer_norm(x, {4}), naive_layer_norm(values(x), 4, nullptr, nullptr),
                       kFloat64RefTol))
      << "plain";
  Tensor yf = ember::layer_norm(x.to(ember::kFloat32), {2, 4}, w.to(ember::kFloat32),
                                b.to(ember::kFloat32));
  EXPECT_TRUE(allclose(yf, values(y), kFloat32RefTol)) << "float32";
}

TEST(LayerNorm, GradientMatchesFiniteDifferences) {
  Tensor x = uniform({3, 2, 5}, -1.0, 1.0, 1100).requires_grad_();
  Tensor w = uniform({2, 5}, 0.5, 1.5, 1101).requires_grad_();
  Tensor b = uniform({2, 5}, -1.0, 1.0, 1102).requires_grad_();
  auto r = ember::gradcheck(
      [&](const std::vector<Tensor>& in) {
        return ember::layer_norm(in[0], {2, 5}, in[1], in[2]);
      },
      {x, w, b});
  EXPECT_TRUE(r.ok) << r.report;
  Tensor x2 = uniform({4, 6}, -1.0, 1.0, 1103).requires_grad_();
  Tensor w2 = uniform({6}, -1.0, 1.0, 1104).requires_grad_();
  auto r2 = ember::gradcheck(
      [&](const std::vector<Tensor>& in) { return ember::layer_norm(in[0], {6}, in[1]); },
      {x2, w2});
  EXPECT_TRUE(r2.ok) << "weight only\n" << r2.report;
  Tensor x3 = uniform({2, 3, 4}, -1.0, 1.0, 1105).requires_grad_();
  auto r3 = ember::gradcheck(
      [&](const std::vector<Tensor>& in) {
        return ember::layer_norm(in[0], {3, 4});
      },
      {x3});
  EXPECT_TRUE(r3.ok) << "without affine\n" << r3.report;
}

TEST(LayerNormErrors, NameTheExpectedShape) {
  Tensor x = ember::zeros({3, 5});
  EXPECT_EQ(error_of([&] { ember::layer_norm(x, {10}); }),
            "layer_norm: normalized_shape [10] expects input of shape [*, 10], got [3, 5]");
  EXPECT_EQ(
      error_of([&] { ember::layer_norm(x, {5}, ember::ones({4})); }),
      "layer_norm: weight [4] does not match normalized_shape of input [3, 5] (expected [5])");
  EXPECT_NE(error_of([&] { ember::layer_norm(x, {}); }).find("must not be empty"),
            std::string::npos);
}

// ---- on every device ------------------------------------------------------------------------

class Pool2dOnDevice : public OnDevice {};

TEST_P(Pool2dOnDevice, AcceptsNonContiguousInput) {
  for (DType dt : floating_dtypes(device())) {
    SCOPED_TRACE(ember::dtype_name(dt));
    Tensor base = uniform({2, 5, 6, 3}, -1.0, 1.0, 7, dt);
    Tensor x = base.to(device()).permute({0, 3, 1, 2});  // [2, 3, 5, 6], strided
    ASSERT_FALSE(x.is_contiguous());
    Pool2dParams p{.kernel = {2, 3}, .stride = {1, 2}, .padding = {1, 1}};
    // Against the contiguous input on the CPU.
    const Tensor want = base.permute({0, 3, 1, 2}).contiguous();
    EXPECT_TRUE(allclose(ember::max_pool2d(x, p), ember::max_pool2d(want, p))) << "max";
    EXPECT_TRUE(allclose(ember::avg_pool2d(x, p), ember::avg_pool2d(want, p))) << "avg";
  }
}

TEST_P(Pool2dOnDevice, EmptyBatchGivesEmptyOutputAndGradient) {
  for (DType dt : floating_dtypes(device())) {
    SCOPED_TRACE(ember::dtype_name(dt));
    for (bool is_max : {true, false}) {
      Tensor x =
          ember::zeros({0, 3, 6, 6}, {.dtype = dt, .device = device(), .requires_grad = true});
      Tensor y = is_max ? ember::max_pool2d(x) : ember::avg_pool2d(x);
      EXPECT_EQ(y.shape(), (Shape{0, 3, 3, 3}));
      y.sum().backward();
      EXPECT_EQ(x.grad().shape(), x.shape());
    }
  }
}

EMBER_INSTANTIATE_ON_DEVICES(Pool2dOnDevice);

}  // namespace
