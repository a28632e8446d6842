// Anomaly mode (Note [Anomaly mode] in core/autograd.h): the first non-finite forward
// output or backward gradient raises AnomalyError naming the op; off by default.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "ember/core/autograd.h"
#include "ember/core/base/error.h"
#include "ember/core/ops.h"
#include "ember/core/tensor.h"
#include "support/check.h"

namespace {

using namespace ember;
using ember::testing::error_of;

Tensor leaf(const std::vector<float>& v) {
  Tensor t = Tensor::from_vector(v, {static_cast<int64_t>(v.size())});
  t.requires_grad_();
  return t;
}

TEST(AnomalyMode, OffByDefaultAndNonFiniteValuesPassThrough) {
  EXPECT_FALSE(autograd::anomaly_mode_enabled());
  Tensor x = leaf({1.0f, -1.0f});
  Tensor y = log(x);
  EXPECT_TRUE(std::isnan(y.to_vector<float>()[1]));
  Tensor z = sum(sqrt(leaf({0.0f, 4.0f})));
  z.backward();  // an inf gradient, silently
}

TEST(AnomalyMode, LogOfANegativeInForwardNamesTheOpAndShape) {
  autograd::AnomalyModeGuard anomaly;
  EXPECT_TRUE(autograd::anomaly_mode_enabled());
  Tensor x = Tensor::from_vector(std::vector<float>{1, 2, -3, 4, 5, 6}, {2, 3});
  x.requires_grad_();
  const std::string msg = error_of<autograd::AnomalyError>([&] { log(x); });
  EXPECT_NE(msg.find("anomaly mode: the forward of log produced nan (first at flat index 2 of 6) "
                     "in a float32 tensor of shape [2, 3] as its output 0"),
            std::string::npos)
      << msg;
}

TEST(AnomalyMode, ForwardChecksOpsThatRecordOnly) {
  autograd::AnomalyModeGuard anomaly;
  // No input requires grad: nothing is recorded, nothing is checked.
  Tensor y = log(Tensor::from_vector(std::vector<float>{-1.0f}, {1}));
  EXPECT_TRUE(std::isnan(y.to_vector<float>()[0]));
}

TEST(AnomalyMode, SqrtOfZeroGradientInBackwardNamesTheNodeAndTheForwardOp) {
  autograd::AnomalyModeGuard anomaly;
  Tensor x = leaf({4.0f, 0.0f, 9.0f});
  Tensor loss = sum(sqrt(x));  // forward finite; d sqrt(x) / dx = inf at 0
  const std::string msg = error_of<autograd::AnomalyError>([&] { loss.backward(); });
  EXPECT_NE(msg.find("anomaly mode: SqrtBackward, the backward of the forward op sqrt"),
            std::string::npos)
      << msg;
  EXPECT_NE(msg.find("returned inf (first at flat index 1 of 3) in a float32 tensor of shape "
                     "[3] as the gradient of its input 0"),
            std::string::npos)
      << msg;
}

TEST(AnomalyMode, ZeroTimesInfInBackwardIsNaN) {
  autograd::AnomalyModeGuard anomaly;
  Tensor x = leaf({0.0f, 1.0f});
  Tensor loss = sum(mul(sqrt(x), 0.0));  // forward 0; backward 0 * (1 / (2 sqrt(0))) = nan
  const std::string msg = error_of<autograd::AnomalyError>([&] { loss.backward(); });
  EXPECT_NE(msg.find("SqrtBackward"), std::string::npos) << msg;
  EXPECT_NE(msg.find("returned nan (first at flat index 0 of 2)"), std::string::npos) << msg;
}

TEST(AnomalyMode, AnomalyErrorIsAValueError) {
  autograd::AnomalyModeGuard anomaly;
  Tensor x = leaf({-1.0f});
  EXPECT_THROW(log(x), ValueError);
}

TEST(AnomalyMode, NonFiniteGradientGivenToBackwardIsNamed) {
  autograd::AnomalyModeGuard anomaly;
  Tensor x = leaf({1.0f, 2.0f});
  Tensor y = mul(x, 2.0);
  const Tensor g = Tensor::from_vector(
      std::vector<float>{1.0f, std::numeric_limits<float>::infinity()}, {2});
  const std::string msg = error_of<autograd::AnomalyError>([&] { y.backward(g); });
  EXPECT_NE(msg.find("the gradient given to backward for output 0 holds inf"), std::string::npos)
      << msg;
}

TEST(AnomalyMode, GuardRestoresThePreviousSettingAndFiniteGraphsPass) {
  {
    autograd::AnomalyModeGuard on;
    {
      autograd::AnomalyModeGuard off(false);
      EXPECT_FALSE(autograd::anomaly_mode_enabled());
    }
    EXPECT_TRUE(autograd::anomaly_mode_enabled());
    Tensor x = leaf({1.0f, 2.0f});
    Tensor loss = sum(mul(log(x), x));
    loss.backward();
    const std::vector<float> g = x.grad().to_vector<float>();
    EXPECT_NEAR(g[0], 1.0f, 1e-6);                   // log(1) + 1
    EXPECT_NEAR(g[1], std::log(2.0f) + 1.0f, 1e-6);  // log(2) + 1
  }
  EXPECT_FALSE(autograd::anomaly_mode_enabled());
  autograd::detect_anomaly(true);
  EXPECT_TRUE(autograd::anomaly_mode_enabled());
  autograd::detect_anomaly(false);
  EXPECT_FALSE(autograd::anomaly_mode_enabled());
}

}  // namespace
