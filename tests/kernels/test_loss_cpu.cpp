// CPU losses and dropout: hand-computed values (class weights and pos_weight included),
// target validation, every backward against central finite differences in double, the
// Philox known answers and the mask statistics.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <random>
#include <vector>

#include "ember/core/base/error.h"
#include "ember/kernels/cpu/loss.h"
#include "ember/kernels/loss_math.h"
#include "ember/kernels/philox.h"
#include "support/finite_difference.h"
#include "support/random.h"

namespace ember::kernels::cpu {
namespace {

using ember::testing::numeric_gradient;
using ember::testing::uniform_values;

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr int64_t kNoIgnore = -100;  // PyTorch's default ignore_index

// The forward kernels add their count of out-of-range targets to a counter; these return
// it, with the class weights last (null: none).
template <typename T>
int64_t cross_entropy_rows(const T* logits, const int64_t* target, T* loss, T* lse, int64_t N,
                           int64_t C, int64_t ignore_index, double smoothing,
                           const T* class_weight = nullptr) {
  int64_t bad = 0;
  cross_entropy_forward<T>({}, logits, target, class_weight, loss, lse, N, C, ignore_index,
                           smoothing, &bad);
  return bad;
}

template <typename T>
int64_t nll_rows(const T* logp, const int64_t* target, T* loss, int64_t N, int64_t C,
                 int64_t ignore_index, const T* class_weight = nullptr) {
  int64_t bad = 0;
  nll_forward<T>({}, logp, target, class_weight, loss, N, C, ignore_index, &bad);
  return bad;
}

// ---- Philox ---------------------------------------------------------------------------

TEST(Philox4x32_10, MatchesRandom123KnownAnswers) {
  // kat_vectors of Random123: counter (4 words), key (2 words) -> output (4 words).
  struct Kat {
    PhiloxBlock ctr;
    PhiloxKey key;
    PhiloxBlock expected;
  };
  const Kat kats[] = {
      {{{0, 0, 0, 0}}, {{0, 0}}, {{0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8}}},
      {{{0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff}},
       {{0xffffffff, 0xffffffff}},
       {{0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd}}},
      {{{0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344}},
       {{0xa4093822, 0x299f31d0}},
       {{0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1}}},
  };
  for (const Kat& kat : kats) {
    const PhiloxBlock out = philox4x32_10(kat.ctr, kat.key);
    for (int w = 0; w < 4; ++w) EXPECT_EQ(out.v[w], kat.expected.v[w]) << "word " << w;
  }
}

// ---- cross-entropy --------------------------------------------------------------------

// logits [[1, 2, 3], [1, -1, 0.5]], targets [2, 0]; lse and losses by log-sum-exp in double.
const std::vector<double> kLogits = {1, 2, 3, 1, -1, 0.5};
constexpr double kLse0 = 3.4076059644, kLse1 = 1.5549569196;

template <typename T>
class CrossEntropyCpuTyped : public ::testing::Test {};
using FloatTypes = ::testing::Types<float, double>;
TYPED_TEST_SUITE(CrossEntropyCpuTyped, FloatTypes);

TYPED_TEST(CrossEntropyCpuTyped, MatchesLogSumExpOn2x3Logits) {
  using T = TypeParam;
  const std::vector<T> x(kLogits.begin(), kLogits.end());
  const std::vector<int64_t> t = {2, 0};
  std::vector<T> loss(2, T(kNaN)), lse(2, T(kNaN));
  const int64_t bad =
      cross_entropy_rows<T>(x.data(), t.data(), loss.data(), lse.data(), 2, 3, kNoIgnore, 0.0);
  EXPECT_EQ(bad, 0);
  EXPECT_NEAR(lse[0], kLse0, 1e-6);
  EXPECT_NEAR(lse[1], kLse1, 1e-6);
  EXPECT_NEAR(loss[0], 0.4076059644, 1e-6);
  EXPECT_NEAR(loss[1], 0.5549569196, 1e-6);
}

TYPED_TEST(CrossEntropyCpuTyped, LabelSmoothingMixesInTheMeanOverClasses) {
  using T = TypeParam;
  const std::vector<T> x(kLogits.begin(), kLogits.end());
  const std::vector<int64_t> t = {2, 0};
  std::vector<T> loss(2), lse(2);
  cross_entropy_rows<T>(x.data(), t.data(), loss.data(), lse.data(), 2, 3, kNoIgnore, 0.1);
  // 0.9 (lse - x_t) + 0.1 (lse - mean(x))
  EXPECT_NEAR(loss[0], 0.5076059644, 1e-6);
  EXPECT_NEAR(loss[1], 0.6382902530, 1e-6);
}

TEST(CrossEntropyCpu, IgnoredRowHasZeroLossButItsLseIsWritten) {
  const std::vector<int64_t> t = {kNoIgnore, 0};
  std::vector<double> loss(2, kNaN), lse(2, kNaN);
  const int64_t bad = cross_entropy_rows<double>(kLogits.data(), t.data(), loss.data(),
                                                    lse.data(), 2, 3, kNoIgnore, 0.1);
  EXPECT_EQ(bad, 0);
  EXPECT_EQ(loss[0], 0.0);
  EXPECT_NEAR(lse[0], kLse0, 1e-9);
  EXPECT_NEAR(loss[1], 0.6382902530, 1e-9);
}

TEST(CrossEntropyCpu, IgnoreIndexMayBeAValidClass) {
  const std::vector<int64_t> t = {1, 0};
  std::vector<double> loss(2), lse(2);
  const int64_t bad = cross_entropy_rows<double>(kLogits.data(), t.data(), loss.data(),
                                                    lse.data(), 2, 3, /*ignore_index=*/1, 0.0);
  EXPECT_EQ(bad, 0);
  EXPECT_EQ(loss[0], 0.0);
  EXPECT_NEAR(loss[1], 0.5549569196, 1e-9);
}

TEST(CrossEntropyCpu, OutOfRangeTargetsAreCountedAndGetNaNLoss) {
  const std::vector<double> x = {1, 2, 3, 1, -1, 0.5, 0, 0, 0};
  const std::vector<int64_t> t = {3, -5, 1};
  std::vector<double> loss(3), lse(3);
  const int64_t bad = cross_entropy_rows<double>(x.data(), t.data(), loss.data(), lse.data(), 3,
                                                    3, kNoIgnore, 0.0);
  EXPECT_EQ(bad, 2);
  EXPECT_TRUE(std::isnan(loss[0]));
  EXPECT_TRUE(std::isnan(loss[1]));
  EXPECT_NEAR(loss[2], std::log(3.0), 1e-12);
  EXPECT_NEAR(lse[0], kLse0, 1e-9);
}

TEST(CrossEntropyCpu, BackwardMatchesFiniteDifferences) {
  const int64_t N = 4, C = 5;
  const std::vector<double> x = uniform_values(N * C, -3, 3, 41);
  const std::vector<int64_t> t = {3, kNoIgnore, 0, 4};
  const std::vector<double> weights = uniform_values(N, 0.5, 1.5, 42);
  for (double s : {0.0, 0.1}) {
    for (int64_t grad_stride : {int64_t{0}, int64_t{1}}) {
      // grad_stride 0: one scalar gradient for every row (a mean or sum reduction).
      auto f = [&](const std::vector<double>& xv) {
        std::vector<double> loss(N), lse(N);
        cross_entropy_rows<double>(xv.data(), t.data(), loss.data(), lse.data(), N, C, kNoIgnore,
                                      s);
        double total = 0;
        for (int64_t r = 0; r < N; ++r) total += weights[r * grad_stride] * loss[r];
        return total;
      };
      std::vector<double> loss(N), lse(N), gx(N * C, kNaN);
      cross_entropy_rows<double>(x.data(), t.data(), loss.data(), lse.data(), N, C, kNoIgnore,
                                    s);
      cross_entropy_backward<double>({}, x.data(), t.data(), nullptr, lse.data(), weights.data(),
                                     grad_stride, gx.data(), N, C, kNoIgnore, s);
      const std::vector<double> num = numeric_gradient(f, x);
      for (size_t j = 0; j < x.size(); ++j) {
        EXPECT_NEAR(gx[j], num[j], 1e-7)
            << "smoothing " << s << " grad_stride " << grad_stride << " element " << j;
      }
      for (int64_t c = 0; c < C; ++c) EXPECT_EQ(gx[1 * C + c], 0.0) << "ignored row";
    }
  }
}

TEST(CrossEntropyCpu, FloatBackwardAgreesWithDouble) {
  const int64_t N = 3, C = 7;
  const std::vector<double> xd = uniform_values(N * C, -4, 4, 51);
  const std::vector<float> xf(xd.begin(), xd.end());
  const std::vector<int64_t> t = {6, 0, 2};
  const std::vector<double> gd = {0.5};
  const std::vector<float> gf = {0.5f};
  std::vector<double> lossd(N), lsed(N), gxd(N * C);
  std::vector<float> lossf(N), lsef(N), gxf(N * C);
  cross_entropy_rows<double>(xd.data(), t.data(), lossd.data(), lsed.data(), N, C, kNoIgnore,
                                0.2);
  cross_entropy_rows<float>(xf.data(), t.data(), lossf.data(), lsef.data(), N, C, kNoIgnore,
                               0.2);
  cross_entropy_backward<double>({}, xd.data(), t.data(), nullptr, lsed.data(), gd.data(), 0,
                                 gxd.data(), N, C, kNoIgnore, 0.2);
  cross_entropy_backward<float>({}, xf.data(), t.data(), nullptr, lsef.data(), gf.data(), 0,
                                gxf.data(), N, C, kNoIgnore, 0.2);
  for (int64_t r = 0; r < N; ++r) EXPECT_NEAR(lossf[r], lossd[r], 1e-5);
  for (int64_t j = 0; j < N * C; ++j) EXPECT_NEAR(gxf[j], gxd[j], 1e-6);
}

TEST(CrossEntropyCpu, BadTargetCountAddsToTheCallersCounter) {
  const std::vector<int64_t> t = {3, -1};
  std::vector<double> loss(2), lse(2);
  int64_t bad = 5;
  cross_entropy_forward<double>({}, kLogits.data(), t.data(), nullptr, loss.data(), lse.data(), 2,
                                3, kNoIgnore, 0.0, &bad);
  EXPECT_EQ(bad, 7);
}

// ---- cross-entropy with class weights --------------------------------------------------

// Row r of weighted, smoothed cross-entropy straight from its definition (PyTorch's):
// (1 - s) w_t (lse - x_t) + s / C * sum_c w_c (lse - x_c).
double weighted_row_reference(const std::vector<double>& x, int64_t r, int64_t C, int64_t t,
                              const std::vector<double>& w, double s) {
  double m = -INFINITY, sum_exp = 0;
  for (int64_t c = 0; c < C; ++c) m = std::max(m, x[r * C + c]);
  for (int64_t c = 0; c < C; ++c) sum_exp += std::exp(x[r * C + c] - m);
  const double lse = m + std::log(sum_exp);
  double smooth = 0;
  for (int64_t c = 0; c < C; ++c) smooth += w[c] * (lse - x[r * C + c]);
  return (1 - s) * w[t] * (lse - x[r * C + t]) + s / static_cast<double>(C) * smooth;
}

TYPED_TEST(CrossEntropyCpuTyped, ClassWeightsScaleEachRowByItsTargetsWeight) {
  using T = TypeParam;
  const std::vector<T> x(kLogits.begin(), kLogits.end());
  const std::vector<T> w = {T(0.5), T(2.0), T(3.0)};
  const std::vector<int64_t> t = {2, 0};
  std::vector<T> loss(2, T(kNaN)), lse(2, T(kNaN));
  EXPECT_EQ(cross_entropy_rows<T>(x.data(), t.data(), loss.data(), lse.data(), 2, 3, kNoIgnore,
                                  0.0, w.data()),
            0);
  EXPECT_NEAR(lse[0], kLse0, 1e-6);
  EXPECT_NEAR(loss[0], 3.0 * 0.4076059644, 1e-6);
  EXPECT_NEAR(loss[1], 0.5 * 0.5549569196, 1e-6);
}

TEST(CrossEntropyCpu, ClassWeightsWithSmoothingWeighEveryClassTerm) {
  const std::vector<double> w = {0.5, 2.0, 0.0};
  for (double s : {0.1, 0.5, 1.0}) {
    for (const std::vector<int64_t>& t : {std::vector<int64_t>{2, 0}, {1, 1}}) {
      std::vector<double> loss(2), lse(2);
      cross_entropy_rows<double>(kLogits.data(), t.data(), loss.data(), lse.data(), 2, 3,
                                 kNoIgnore, s, w.data());
      for (int64_t r = 0; r < 2; ++r) {
        EXPECT_NEAR(loss[r], weighted_row_reference(kLogits, r, 3, t[r], w, s), 1e-12)
            << "smoothing " << s << " row " << r;
      }
    }
  }
}

TEST(CrossEntropyCpu, UnitClassWeightsGiveTheUnweightedLossAndGradient) {
  const int64_t N = 3, C = 4;
  const std::vector<double> x = uniform_values(N * C, -3, 3, 81);
  const std::vector<double> ones(C, 1.0), g = {0.7};
  const std::vector<int64_t> t = {3, kNoIgnore, 1};
  std::vector<double> a(N), b(N), lse(N), ga(N * C), gb(N * C);
  cross_entropy_rows<double>(x.data(), t.data(), a.data(), lse.data(), N, C, kNoIgnore, 0.2);
  cross_entropy_rows<double>(x.data(), t.data(), b.data(), lse.data(), N, C, kNoIgnore, 0.2,
                             ones.data());
  cross_entropy_backward<double>({}, x.data(), t.data(), nullptr, lse.data(), g.data(), 0,
                                 ga.data(), N, C, kNoIgnore, 0.2);
  cross_entropy_backward<double>({}, x.data(), t.data(), ones.data(), lse.data(), g.data(), 0,
                                 gb.data(), N, C, kNoIgnore, 0.2);
  for (int64_t r = 0; r < N; ++r) EXPECT_NEAR(a[r], b[r], 1e-12);
  for (int64_t j = 0; j < N * C; ++j) EXPECT_NEAR(ga[j], gb[j], 1e-12);
}

TEST(CrossEntropyCpu, WeightedBackwardMatchesFiniteDifferences) {
  const int64_t N = 4, C = 5;
  const std::vector<double> x = uniform_values(N * C, -3, 3, 91);
  const std::vector<double> w = {0.3, 1.7, 0.0, 2.5, 1.1};
  const std::vector<int64_t> t = {3, kNoIgnore, 2, 0};
  const std::vector<double> upstream = uniform_values(N, 0.5, 1.5, 92);
  for (double s : {0.0, 0.1, 0.9}) {
    for (int64_t grad_stride : {int64_t{0}, int64_t{1}}) {
      auto f = [&](const std::vector<double>& xv) {
        std::vector<double> loss(N), lse(N);
        cross_entropy_rows<double>(xv.data(), t.data(), loss.data(), lse.data(), N, C, kNoIgnore,
                                   s, w.data());
        double total = 0;
        for (int64_t r = 0; r < N; ++r) total += upstream[r * grad_stride] * loss[r];
        return total;
      };
      std::vector<double> loss(N), lse(N), gx(N * C, kNaN);
      cross_entropy_rows<double>(x.data(), t.data(), loss.data(), lse.data(), N, C, kNoIgnore, s,
                                 w.data());
      cross_entropy_backward<double>({}, x.data(), t.data(), w.data(), lse.data(),
                                     upstream.data(), grad_stride, gx.data(), N, C, kNoIgnore, s);
      const std::vector<double> num = numeric_gradient(f, x);
      for (size_t j = 0; j < x.size(); ++j) {
        EXPECT_NEAR(gx[j], num[j], 1e-7)
            << "smoothing " << s << " grad_stride " << grad_stride << " element " << j;
      }
      for (int64_t c = 0; c < C; ++c) EXPECT_EQ(gx[1 * C + c], 0.0) << "ignored row";
    }
  }
}

TEST(CrossEntropyCpu, TargetClassWeightsAreZeroForIgnoredAndOutOfRangeRows) {
  const std::vector<float> w = {0.5f, 2.0f, 3.0f};
  const std::vector<int64_t> t = {2, kNoIgnore, 0, 3, -1, 1};
  std::vector<float> out(t.size(), NAN);
  target_class_weights<float>({}, t.data(), w.data(), out.data(),
                              static_cast<int64_t>(t.size()), 3, kNoIgnore);
  EXPECT_EQ(out, (std::vector<float>{3.0f, 0.0f, 0.5f, 0.0f, 0.0f, 2.0f}));
}

// ---- NLL ------------------------------------------------------------------------------

TEST(NllCpu, LossIsTheNegatedTargetLogProbability) {
  const std::vector<float> logp = {-0.1f, -2.5f, -3.0f, -1.2f, -0.4f, -2.0f};
  const std::vector<int64_t> t = {1, kNoIgnore};
  std::vector<float> loss(2, NAN);
  EXPECT_EQ(nll_rows<float>(logp.data(), t.data(), loss.data(), 2, 3, kNoIgnore), 0);
  EXPECT_EQ(loss[0], 2.5f);
  EXPECT_EQ(loss[1], 0.0f);
}

TEST(NllCpu, OutOfRangeTargetsAreCountedAndGetNaNLoss) {
  const std::vector<double> logp = {-1, -2, -3, -1, -2};
  const std::vector<int64_t> t = {5, -1, 1, 2, 0};
  std::vector<double> loss(5);
  EXPECT_EQ(nll_rows<double>(logp.data(), t.data(), loss.data(), 5, 1, kNoIgnore), 4);
  EXPECT_TRUE(std::isnan(loss[0]));
  EXPECT_EQ(loss[4], 2.0);  // row 4 of the [5, 1] log-probabilities holds -2
}

TEST(NllCpu, BackwardMatchesFiniteDifferences) {
  const int64_t N = 3, C = 4;
  const std::vector<double> logp = uniform_values(N * C, -5, 0, 61);
  const std::vector<int64_t> t = {2, 0, kNoIgnore};
  const std::vector<double> weights = {0.3, -1.2, 2.0};
  for (int64_t grad_stride : {int64_t{0}, int64_t{1}}) {
    auto f = [&](const std::vector<double>& lp) {
      std::vector<double> loss(N);
      nll_rows<double>(lp.data(), t.data(), loss.data(), N, C, kNoIgnore);
      double total = 0;
      for (int64_t r = 0; r < N; ++r) total += weights[r * grad_stride] * loss[r];
      return total;
    };
    std::vector<double> g(N * C, kNaN);
    nll_backward<double>({}, t.data(), nullptr, weights.data(), grad_stride, g.data(), N, C,
                         kNoIgnore);
    const std::vector<double> num = numeric_gradient(f, logp);
    for (size_t j = 0; j < g.size(); ++j) EXPECT_NEAR(g[j], num[j], 1e-8) << "element " << j;
  }
}

TEST(NllCpu, ClassWeightsScaleTheLossAndTheGradient) {
  const std::vector<double> logp = {-0.1, -2.5, -3.0, -1.2, -0.4, -2.0, -0.7, -0.9, -1.8};
  const std::vector<double> w = {0.25, 4.0, 2.0};
  const std::vector<int64_t> t = {1, kNoIgnore, 2};
  std::vector<double> loss(3, kNaN);
  EXPECT_EQ(nll_rows<double>(logp.data(), t.data(), loss.data(), 3, 3, kNoIgnore, w.data()), 0);
  EXPECT_EQ(loss, (std::vector<double>{10.0, 0.0, 3.6}));
  const std::vector<double> upstream = {0.3, -1.2, 2.0};
  std::vector<double> g(9, kNaN);
  nll_backward<double>({}, t.data(), w.data(), upstream.data(), 1, g.data(), 3, 3, kNoIgnore);
  EXPECT_EQ(g, (std::vector<double>{0, -1.2, 0, 0, 0, 0, 0, 0, -4.0}));
}

TEST(NllCpu, WeightedBackwardMatchesFiniteDifferences) {
  const int64_t N = 3, C = 4;
  const std::vector<double> logp = uniform_values(N * C, -5, 0, 101);
  const std::vector<double> w = {0.5, 1.5, 3.0, 0.0};
  const std::vector<int64_t> t = {2, 0, kNoIgnore};
  const std::vector<double> upstream = {0.3, -1.2, 2.0};
  for (int64_t grad_stride : {int64_t{0}, int64_t{1}}) {
    auto f = [&](const std::vector<double>& lp) {
      std::vector<double> loss(N);
      nll_rows<double>(lp.data(), t.data(), loss.data(), N, C, kNoIgnore, w.data());
      double total = 0;
      for (int64_t r = 0; r < N; ++r) total += upstream[r * grad_stride] * loss[r];
      return total;
    };
    std::vector<double> g(N * C, kNaN);
    nll_backward<double>({}, t.data(), w.data(), upstream.data(), grad_stride, g.data(), N, C,
                         kNoIgnore);
    const std::vector<double> num = numeric_gradient(f, logp);
    for (size_t j = 0; j < g.size(); ++j) EXPECT_NEAR(g[j], num[j], 1e-8) << "element " << j;
  }
}

// ---- pointwise losses -----------------------------------------------------------------

double pointwise(PointwiseLoss op, double x, double t) {
  double out = kNaN;
  pointwise_loss_forward<double>({}, op, &x, &t, &out, 1);
  return out;
}

TEST(PointwiseLossCpu, ForwardMatchesHandComputedValues) {
  EXPECT_DOUBLE_EQ(pointwise(PointwiseLoss::Mse, 0.5, 2.0), 2.25);
  EXPECT_DOUBLE_EQ(pointwise(PointwiseLoss::L1, 0.5, 2.0), 1.5);
  EXPECT_NEAR(pointwise(PointwiseLoss::BinaryCrossEntropy, 0.8, 1.0), 0.2231435513, 1e-10);
  EXPECT_NEAR(pointwise(PointwiseLoss::BinaryCrossEntropy, 0.7, 0.25), 0.9921483392, 1e-10);
  EXPECT_NEAR(pointwise(PointwiseLoss::BinaryCrossEntropyWithLogits, 0.3, 0.6), 0.6743552445,
              1e-10);
}

TEST(PointwiseLossCpu, BinaryCrossEntropyClampsItsLogsAtMinus100) {
  EXPECT_EQ(pointwise(PointwiseLoss::BinaryCrossEntropy, 0.0, 1.0), 100.0);
  EXPECT_EQ(pointwise(PointwiseLoss::BinaryCrossEntropy, 1.0, 0.0), 100.0);
  EXPECT_EQ(pointwise(PointwiseLoss::BinaryCrossEntropy, 0.0, 0.0), 0.0);
  EXPECT_EQ(pointwise(PointwiseLoss::BinaryCrossEntropy, 1.0, 1.0), 0.0);
  const float x = 0.0f, t = 0.5f;
  float out = NAN;
  pointwise_loss_forward<float>({}, PointwiseLoss::BinaryCrossEntropy, &x, &t, &out, 1);
  EXPECT_FLOAT_EQ(out, 50.0f);
}

TEST(PointwiseLossCpu, BinaryCrossEntropyWithLogitsIsStableForLargeLogits) {
  const std::vector<float> x = {1000.0f, -1000.0f, 100.0f, -100.0f};
  const std::vector<float> t = {0.0f, 1.0f, 1.0f, 1.0f};
  std::vector<float> out(4), grad(4);
  const float one = 1.0f;
  pointwise_loss_forward<float>({}, PointwiseLoss::BinaryCrossEntropyWithLogits, x.data(),
                                t.data(), out.data(), 4);
  pointwise_loss_backward<float>({}, PointwiseLoss::BinaryCrossEntropyWithLogits, x.data(),
                                 t.data(), &one, 0, grad.data(), 4);
  EXPECT_FLOAT_EQ(out[0], 1000.0f);
  EXPECT_FLOAT_EQ(out[1], 1000.0f);
  EXPECT_NEAR(out[2], 0.0f, 1e-30f);
  EXPECT_FLOAT_EQ(out[3], 100.0f);
  EXPECT_FLOAT_EQ(grad[0], 1.0f);
  EXPECT_FLOAT_EQ(grad[1], -1.0f);
  EXPECT_FLOAT_EQ(grad[2], 0.0f);
  EXPECT_FLOAT_EQ(grad[3], -1.0f);
}

TEST(PointwiseLossCpu, L1DerivativeIsZeroWhereInputEqualsTarget) {
  const std::vector<double> x = {2.0, 1.0, 3.0}, t = {2.0, 2.0, 2.0};
  const double g = 1.0;
  std::vector<double> grad(3, kNaN);
  pointwise_loss_backward<double>({}, PointwiseLoss::L1, x.data(), t.data(), &g, 0, grad.data(), 3);
  EXPECT_EQ(grad, (std::vector<double>{0.0, -1.0, 1.0}));
}

TEST(PointwiseLossCpu, BinaryCrossEntropyDerivativeFloorsItsDenominator) {
  const double x = 0.0, t = 1.0, g = 1.0;
  double grad = kNaN;
  pointwise_loss_backward<double>({}, PointwiseLoss::BinaryCrossEntropy, &x, &t, &g, 0, &grad, 1);
  EXPECT_DOUBLE_EQ(grad, -1e12);
}

TEST(PointwiseLossCpu, EveryBackwardMatchesFiniteDifferences) {
  const size_t n = 12;
  const std::vector<double> weights = uniform_values(n, -1.5, 1.5, 71);
  for (PointwiseLoss op : {PointwiseLoss::Mse, PointwiseLoss::L1, PointwiseLoss::BinaryCrossEntropy,
                           PointwiseLoss::BinaryCrossEntropyWithLogits}) {
    const bool probabilities = op == PointwiseLoss::BinaryCrossEntropy;
    const std::vector<double> x =
        probabilities ? uniform_values(n, 0.05, 0.95, 72) : uniform_values(n, -4, 4, 72);
    // L1's targets keep away from the inputs so the difference never straddles its kink.
    std::vector<double> t = uniform_values(n, 0.0, 1.0, 73);
    if (op == PointwiseLoss::L1) {
      for (size_t i = 0; i < n; ++i) t[i] = x[i] + (i % 2 == 0 ? 0.5 : -0.5);
    }
    for (int64_t grad_stride : {int64_t{0}, int64_t{1}}) {
      auto f = [&](const std::vector<double>& xv) {
        std::vector<double> out(n);
        pointwise_loss_forward<double>({}, op, xv.data(), t.data(), out.data(), n);
        double total = 0;
        for (size_t i = 0; i < n; ++i) total += weights[i * grad_stride] * out[i];
        return total;
      };
      std::vector<double> grad(n, kNaN);
      pointwise_loss_backward<double>({}, op, x.data(), t.data(), weights.data(), grad_stride,
                                      grad.data(), n);
      const std::vector<double> num = numeric_gradient(f, x);
      for (size_t i = 0; i < n; ++i) {
        EXPECT_NEAR(grad[i], num[i], 1e-6 * (1 + std::fabs(num[i])))
            << "loss " << static_cast<int>(op) << " grad_stride " << grad_stride << " element "
            << i;
      }
    }
  }
}

// ---- binary cross-entropy on logits with pos_weight -------------------------------------

// -(p t log s(x) + (1 - t) log(1 - s(x))), PyTorch's definition, for moderate x.
double pos_weighted_bce_reference(double x, double t, double p) {
  const double s = 1.0 / (1.0 + std::exp(-x));
  return -(p * t * std::log(s) + (1 - t) * std::log(1 - s));
}

TEST(BceWithLogitsPosWeightCpu, ForwardMatchesTheDefinition) {
  const std::vector<double> x = {0.3, -1.2, 2.5, 0.0, -4.0, 1.0};
  const std::vector<double> t = {0.6, 1.0, 0.0, 1.0, 0.25, 1.0};
  const std::vector<double> pw = {3.0, 0.5};  // per class of a last dimension of 2
  std::vector<double> out(6, kNaN);
  bce_with_logits_forward<double>({}, x.data(), t.data(), pw.data(), 2, out.data(), 6);
  for (size_t i = 0; i < x.size(); ++i) {
    EXPECT_NEAR(out[i], pos_weighted_bce_reference(x[i], t[i], pw[i % 2]), 1e-12)
        << "element " << i;
  }
  // -(3 * 0.6 * log s(0.3) + 0.4 * log(1 - s(0.3))), by hand.
  EXPECT_NEAR(out[0], 1.3395815378, 1e-9);
}

TEST(BceWithLogitsPosWeightCpu, UnitPosWeightIsThePlainLoss) {
  const size_t n = 16;
  const std::vector<double> x = uniform_values(n, -6, 6, 111);
  const std::vector<double> t = uniform_values(n, 0, 1, 112);
  const double one = 1.0;
  std::vector<double> plain(n), weighted(n), gp(n), gw(n);
  pointwise_loss_forward<double>({}, PointwiseLoss::BinaryCrossEntropyWithLogits, x.data(),
                                 t.data(), plain.data(), n);
  bce_with_logits_forward<double>({}, x.data(), t.data(), &one, 1, weighted.data(), n);
  pointwise_loss_backward<double>({}, PointwiseLoss::BinaryCrossEntropyWithLogits, x.data(),
                                  t.data(), &one, 0, gp.data(), n);
  bce_with_logits_backward<double>({}, x.data(), t.data(), &one, 1, &one, 0, gw.data(), n);
  for (size_t i = 0; i < n; ++i) {
    EXPECT_NEAR(weighted[i], plain[i], 1e-12);
    EXPECT_NEAR(gw[i], gp[i], 1e-12);
  }
}

TEST(BceWithLogitsPosWeightCpu, IsStableForLargeLogits) {
  const std::vector<float> x = {1000.0f, -1000.0f, 100.0f, -100.0f};
  const std::vector<float> t = {0.0f, 1.0f, 1.0f, 1.0f};
  const float pw = 3.0f, one = 1.0f;
  std::vector<float> out(4), grad(4);
  bce_with_logits_forward<float>({}, x.data(), t.data(), &pw, 1, out.data(), 4);
  bce_with_logits_backward<float>({}, x.data(), t.data(), &pw, 1, &one, 0, grad.data(), 4);
  EXPECT_FLOAT_EQ(out[0], 1000.0f);
  EXPECT_FLOAT_EQ(out[1], 3000.0f);
  EXPECT_NEAR(out[2], 0.0f, 1e-30f);
  EXPECT_FLOAT_EQ(out[3], 300.0f);
  EXPECT_FLOAT_EQ(grad[0], 1.0f);
  EXPECT_FLOAT_EQ(grad[1], -3.0f);
  EXPECT_FLOAT_EQ(grad[2], 0.0f);
  EXPECT_FLOAT_EQ(grad[3], -3.0f);
}

TEST(BceWithLogitsPosWeightCpu, BackwardMatchesFiniteDifferences) {
  const size_t n = 12;
  const std::vector<double> x = uniform_values(n, -4, 4, 121);
  const std::vector<double> t = uniform_values(n, 0, 1, 122);
  const std::vector<double> pw = uniform_values(3, 0.1, 5.0, 123);
  const std::vector<double> upstream = uniform_values(n, -1.5, 1.5, 124);
  for (int64_t grad_stride : {int64_t{0}, int64_t{1}}) {
    auto f = [&](const std::vector<double>& xv) {
      std::vector<double> out(n);
      bce_with_logits_forward<double>({}, xv.data(), t.data(), pw.data(), 3, out.data(), n);
      double total = 0;
      for (size_t i = 0; i < n; ++i) total += upstream[i * grad_stride] * out[i];
      return total;
    };
    std::vector<double> grad(n, kNaN);
    bce_with_logits_backward<double>({}, x.data(), t.data(), pw.data(), 3, upstream.data(),
                                     grad_stride, grad.data(), n);
    const std::vector<double> num = numeric_gradient(f, x);
    for (size_t i = 0; i < n; ++i) {
      EXPECT_NEAR(grad[i], num[i], 1e-6 * (1 + std::fabs(num[i])))
          << "grad_stride " << grad_stride << " element " << i;
    }
  }
}

// ---- dropout --------------------------------------------------------------------------

TEST(DropoutCpu, MaskHoldsOnlyZeroOrTheInverseKeepProbability) {
  const double p = 0.3;
  std::vector<float> mask(10001, NAN);
  dropout_mask<float>({}, mask.data(), static_cast<int64_t>(mask.size()), p, 1234, 0);
  const float scale = static_cast<float>(1.0 / (1.0 - p));
  for (float m : mask) EXPECT_TRUE(m == 0.0f || m == scale) << m;
}

TEST(DropoutCpu, KeptFractionIsWithinThreeSigma) {
  const int64_t n = 100000;
  for (double p : {0.1, 0.5, 0.9}) {
    std::vector<double> mask(n);
    dropout_mask<double>({}, mask.data(), n, p, 2024, 7);
    int64_t kept = 0;
    for (double m : mask) kept += m != 0.0;
    const double expected = n * (1 - p);
    const double sigma = std::sqrt(n * p * (1 - p));
    EXPECT_NEAR(static_cast<double>(kept), expected, 3 * sigma) << "p = " << p;
  }
}

TEST(DropoutCpu, SameSeedAndOffsetGiveTheSameMask) {
  const int64_t n = 1003;
  std::vector<float> a(n), b(n, NAN);
  dropout_mask<float>({}, a.data(), n, 0.5, 99, 3);
  dropout_mask<float>({}, b.data(), n, 0.5, 99, 3);
  EXPECT_EQ(a, b);
}

TEST(DropoutCpu, DifferentOffsetOrSeedGivesADifferentMask) {
  const int64_t n = 1000;
  std::vector<float> a(n), b(n), c(n);
  dropout_mask<float>({}, a.data(), n, 0.5, 99, 3);
  dropout_mask<float>({}, b.data(), n, 0.5, 99, 4);
  dropout_mask<float>({}, c.data(), n, 0.5, 100, 3);
  EXPECT_NE(a, b);
  EXPECT_NE(a, c);
}

TEST(DropoutCpu, ZeroProbabilityKeepsEverything) {
  std::vector<float> mask(4097, NAN);
  dropout_mask<float>({}, mask.data(), static_cast<int64_t>(mask.size()), 0.0, 5, 0);
  for (float m : mask) EXPECT_EQ(m, 1.0f);
}

TEST(DropoutCpu, MaskOfAPrefixIsThePrefixOfTheMask) {
  std::vector<float> full(1000), prefix(10);
  dropout_mask<float>({}, full.data(), 1000, 0.4, 8, 2);
  dropout_mask<float>({}, prefix.data(), 10, 0.4, 8, 2);
  EXPECT_EQ(prefix, std::vector<float>(full.begin(), full.begin() + 10));
}

// The layout Note [Dropout random stream] documents, which the CUDA kernel reproduces
// through cuRAND: element i keeps iff word i % 4 of block (offset, i / 4) is >= p * 2^32.
TEST(DropoutCpu, MaskFollowsThePhiloxCounterLayout) {
  const int64_t n = 37;
  const double p = 0.5;
  const uint64_t seed = 0x0123456789abcdefULL, offset = (uint64_t{5} << 32) + 9;
  std::vector<double> mask(n);
  dropout_mask<double>({}, mask.data(), n, p, seed, offset);
  for (int64_t i = 0; i < n; ++i) {
    const PhiloxBlock block = dropout_philox_block(seed, offset, static_cast<uint64_t>(i / 4));
    const bool keep = block.v[i % 4] >= 0x80000000u;
    EXPECT_EQ(mask[i], keep ? 2.0 : 0.0) << "element " << i;
  }
}

TEST(DropoutCpu, RejectsProbabilityOutsideZeroToOne) {
  std::vector<float> mask(4);
  EXPECT_THROW(dropout_mask<float>({}, mask.data(), 4, 1.0, 0, 0), ember::Error);
  EXPECT_THROW(dropout_mask<float>({}, mask.data(), 4, -0.1, 0, 0), ember::Error);
}

}  // namespace
}  // namespace ember::kernels::cpu
