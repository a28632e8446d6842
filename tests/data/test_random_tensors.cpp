// data::uniform, data::normal and data::bernoulli: the random tensors a custom transform
// draws from the generator its apply() receives — values fixed by the generator alone
// (ember's formulas over std::mt19937_64, whose output the standard fixes), their ranges
// and moments, the bad-argument errors, and a custom transform through a DataLoader.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <ember/ember.h>
#include "support/check.h"

namespace {

using namespace ember;

std::vector<float> values(const Tensor& t) { return t.contiguous().to_vector<float>(); }

double mean_of(const std::vector<float>& v) {
  double s = 0;
  for (float x : v) s += x;
  return s / static_cast<double>(v.size());
}

double std_of(const std::vector<float>& v) {
  const double m = mean_of(v);
  double s = 0;
  for (float x : v) s += (x - m) * (x - m);
  return std::sqrt(s / static_cast<double>(v.size()));
}

// Adds N(0, sigma) noise to every element and zeroes whole samples with probability p_drop:
// a user's transform written with the helpers.
class NoiseAndDrop final : public data::Transform {
 public:
  NoiseAndDrop(double sigma, double p_drop) : sigma_(sigma), p_drop_(p_drop) {}
  Tensor apply(const Tensor& batch, data::Generator& gen) const override {
    const Tensor keep = data::bernoulli({batch.size(0), 1}, gen, 1.0 - p_drop_);  // [N, 1]
    return mul(add(batch, data::normal(batch.shape(), gen, 0.0, sigma_)), keep);
  }
  std::string str() const override { return "NoiseAndDrop"; }

 private:
  double sigma_, p_drop_;
};

}  // namespace

TEST(RandomTensors, ValuesAreFixedByTheGeneratorAlone) {
  // uniform: 53 high bits of each 64-bit draw, scaled to [0, 1), then to [low, high).
  data::Generator gen(123), ref(123);
  const std::vector<float> u = values(data::uniform({2, 3}, gen, -1.0, 3.0));
  ASSERT_EQ(u.size(), 6u);
  for (float v : u) {
    const double unit = static_cast<double>(ref() >> 11) * 0x1.0p-53;
    EXPECT_EQ(v, static_cast<float>(-1.0 + 4.0 * unit));
  }
  // bernoulli: 1 when that uniform is below p.
  const std::vector<float> b = values(data::bernoulli({4}, gen, 0.3));
  for (float v : b) EXPECT_EQ(v, static_cast<double>(ref() >> 11) * 0x1.0p-53 < 0.3 ? 1.0f : 0.0f);
  // normal: Box-Muller, two values per pair of uniforms.
  const std::vector<float> n = values(data::normal({2}, gen, 1.0, 2.0));
  const double u1 = static_cast<double>(ref() >> 11) * 0x1.0p-53, u2 = static_cast<double>(ref() >> 11) * 0x1.0p-53;
  const double r = std::sqrt(-2.0 * std::log(1.0 - u1)), a = 2.0 * M_PI * u2;
  EXPECT_FLOAT_EQ(n[0], static_cast<float>(1.0 + 2.0 * r * std::cos(a)));
  EXPECT_FLOAT_EQ(n[1], static_cast<float>(1.0 + 2.0 * r * std::sin(a)));
  // The same seed again gives the same tensors.
  data::Generator again(123);
  EXPECT_EQ(values(data::uniform({2, 3}, again, -1.0, 3.0)), u);
}

TEST(RandomTensors, AreFloat32CpuTensorsOfTheShapeAsked) {
  data::Generator gen(1);
  for (const Tensor& t : {data::uniform({2, 3, 4}, gen), data::normal({2, 3, 4}, gen),
                          data::bernoulli({2, 3, 4}, gen)}) {
    EXPECT_EQ(t.shape(), (Shape{2, 3, 4}));
    EXPECT_EQ(t.dtype(), kFloat32);
    EXPECT_TRUE(t.device().is_cpu());
  }
  EXPECT_EQ(data::uniform({0, 5}, gen).numel(), 0);
  EXPECT_EQ(data::normal({}, gen).dim(), 0);  // a scalar
}

TEST(RandomTensors, HaveTheirDistributionsRangeAndMoments) {
  data::Generator gen(7);
  const auto u = values(data::uniform({100000}, gen, 2.0, 4.0));
  for (float v : u) {
    ASSERT_GE(v, 2.0f);
    ASSERT_LT(v, 4.0f);
  }
  EXPECT_NEAR(mean_of(u), 3.0, 0.01);
  EXPECT_NEAR(std_of(u), 2.0 / std::sqrt(12.0), 0.01);

  const auto n = values(data::normal({100001}, gen, -1.0, 0.5));  // odd: the last spare is dropped
  EXPECT_NEAR(mean_of(n), -1.0, 0.01);
  EXPECT_NEAR(std_of(n), 0.5, 0.01);

  const auto b = values(data::bernoulli({100000}, gen, 0.25));
  for (float v : b) ASSERT_TRUE(v == 0.0f || v == 1.0f);
  EXPECT_NEAR(mean_of(b), 0.25, 0.01);
  EXPECT_EQ(mean_of(values(data::bernoulli({100}, gen, 0.0))), 0.0);
  EXPECT_EQ(mean_of(values(data::bernoulli({100}, gen, 1.0))), 1.0);
  EXPECT_EQ(std_of(values(data::normal({10}, gen, 3.0, 0.0))), 0.0);
}

TEST(RandomTensors, UniformNeverReachesHighAfterRoundingToFloat) {
  // [1, 1 + 2^-22) holds two floats, 1 and 1 + 2^-23: to nearest, a quarter of the draws
  // round down to 1, half to 1 + 2^-23, and a quarter up to `high` itself but for the clamp.
  data::Generator gen(0);
  const float high = 1.0f + 0x1.0p-22f;
  int at_one = 0, above = 0;
  for (float v : values(data::uniform({1000}, gen, 1.0, static_cast<double>(high)))) {
    ASSERT_GE(v, 1.0f);
    ASSERT_LT(v, high);
    (v == 1.0f ? at_one : above) += 1;
  }
  EXPECT_GT(at_one, 150);
  EXPECT_GT(above, 600);
}

TEST(RandomTensors, BadArgumentsAreRefusedNamingThem) {
  data::Generator gen(0);
  EXPECT_EQ(ember::testing::error_of<Error>([&] { data::uniform({2}, gen, 1.0, 1.0); }),
            "data::uniform: need finite low < high, got low=1 high=1");
  EXPECT_EQ(ember::testing::error_of<Error>([&] { data::normal({2}, gen, 0.0, -1.0); }),
            "data::normal: need a finite mean and stddev >= 0, got mean=0 stddev=-1");
  EXPECT_EQ(ember::testing::error_of<Error>([&] { data::bernoulli({2}, gen, 1.5); }),
            "data::bernoulli: probability p must be in [0, 1], got 1.5");
  EXPECT_EQ(ember::testing::error_of<ShapeError>([&] { data::uniform({2, -1}, gen); }),
            "data::uniform: shape [2, -1] has a negative size");
  EXPECT_THROW(data::bernoulli({1}, gen, std::nan("")), Error);
}

TEST(RandomTensors, ACustomTransformThroughADataLoaderRepeatsForTheSameSeed) {
  auto ds = std::make_shared<data::TensorDataset>(ones({12, 3}), zeros({12}, {.dtype = kInt64}));
  auto epoch = [&](uint64_t seed) {
    data::DataLoader loader(ds, {.batch_size = 4, .seed = seed, .transforms = data::Compose(NoiseAndDrop(0.1, 0.5))});
    std::vector<std::vector<float>> out;
    for (const data::Batch& b : loader) out.push_back(values(b.x));
    return out;
  };
  const auto a = epoch(5), b = epoch(5), c = epoch(6);
  EXPECT_EQ(a, b);
  EXPECT_NE(a, c);
  // Each sample is either dropped (all zeros) or 1 plus small noise.
  for (const auto& batch : a) {
    for (size_t i = 0; i < batch.size(); i += 3) {
      const bool dropped = batch[i] == 0.0f && batch[i + 1] == 0.0f && batch[i + 2] == 0.0f;
      for (size_t k = i; k < i + 3 && !dropped; ++k) EXPECT_NEAR(batch[k], 1.0, 0.6);
    }
  }
}
