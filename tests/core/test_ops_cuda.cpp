// CPU <-> CUDA parity of every op in core/ops.h through the public API: forward values and
// the .grad left by backward() on both devices, on shapes with 0, 1 and odd extents and on
// non-contiguous inputs; device-mismatch and float64 errors. Skipped without a GPU.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <functional>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "ember/core/autograd.h"
#include "ember/core/device.h"
#include "ember/core/base/error.h"
#include "ember/core/ops.h"
#include "ember/core/random.h"
#include "ember/core/tensor.h"
#include "support/parity.h"
#include "support/check.h"

namespace ember {
namespace {

using namespace ember::testing;

class OpsCuda : public ::testing::Test {
 protected:
  void SetUp() override { EMBER_SKIP_WITHOUT_GPU(); }
};

const std::vector<Layout> kLayouts = {Layout::Contiguous, Layout::Transposed, Layout::Narrowed};

// ===========================================================================================
// Elementwise
// ===========================================================================================

const std::vector<BinaryCase>& kBinary = binary_cases();

TEST_F(OpsCuda, BinaryOpsMatchTheCpuUnderBroadcasting) {
  std::vector<std::pair<Shape, Shape>> pairs = {
      {{2, 3}, {3}},     {{7, 1}, {1, 5}},   {{}, {5}},          {{5}, {}},       {{}, {}},
      {{1}, {1}},        {{0, 3}, {3}},      {{33, 17}, {17}},   {{2, 3, 4}, {3, 1}},
      {{3, 130}, {3, 130}}, {{1031}, {1031}}};
  for (const Shape& s : random_shapes(2, 4, 1)) pairs.push_back({s, s});
  for (const Shape& s : random_shapes(3, 3, 2)) pairs.push_back({s, Shape{s.back()}});
  uint64_t seed = 10;
  for (const auto& c : kBinary) {
    for (const auto& pr : pairs) {
      for (Layout la : kLayouts) {
        SCOPED_TRACE(std::string(c.name) + " " + shape_str(pr.first) + " x " + shape_str(pr.second) +
                     " " + layout_name(la));
        expect_parity([&](const std::vector<Tensor>& in) { return c.op(in[0], in[1]); },
                      {input(pr.first, -2, 2, seed++, la), input(pr.second, 0.5, 2, seed++, Layout::Narrowed)});
      }
    }
  }
}

TEST_F(OpsCuda, MaximumAndMinimumTiesMatchTheCpu) {
  for (const auto& c : {kBinary[4], kBinary[5]}) {
    expect_parity([&](const std::vector<Tensor>& in) { return c.op(in[0], in[1]); },
                  {ties({9, 11}, 1), ties({9, 11}, 2, Layout::Transposed)});
  }
}

TEST_F(OpsCuda, IntegerArithmeticAndComparisonsMatchTheCpu) {
  Tensor a = Tensor::from_vector(std::vector<int64_t>{5, -7, 0, 9, 3, -1}, {2, 3});
  Tensor b = Tensor::from_vector(std::vector<int64_t>{2, 0, -3}, {3});
  for (const auto& c : kBinary) {
    SCOPED_TRACE(c.name);
    expect_parity([&](const std::vector<Tensor>& in) { return c.op(in[0], in[1]); },
                  {constant(a), constant(b)});
  }
  const std::vector<Tensor (*)(const Tensor&, const Tensor&)> cmps = {&eq, &ne, &lt, &le, &gt, &ge};
  for (auto cmp : cmps) {
    expect_parity([&](const std::vector<Tensor>& in) { return cmp(in[0], in[1]); },
                  {constant(a), constant(b)});
    expect_parity([&](const std::vector<Tensor>& in) { return cmp(in[0], in[1]); },
                  {ties({13, 7}, 3, Layout::Transposed, false), ties({7}, 4, Layout::Contiguous, false)});
    expect_parity([&](const std::vector<Tensor>& in) { return cmp(in[0].to(kBool), in[1].to(kBool)); },
                  {ties({0, 5}, 5, Layout::Contiguous, false), ties({5}, 6, Layout::Contiguous, false)});
  }
  expect_parity([](const std::vector<Tensor>& in) { return neg(in[0]); }, {constant(a)});
  expect_parity([](const std::vector<Tensor>& in) { return mul(add(in[0], 4.0), -2.0); }, {constant(a)});
}

struct UnaryCase {
  const char* name;
  std::function<Tensor(const Tensor&)> op;
  double lo, hi;
};

const std::vector<UnaryCase>& unary_cases() {
  static const std::vector<UnaryCase> cases = {
      {"neg", [](const Tensor& x) { return neg(x); }, -3, 3},
      {"exp", [](const Tensor& x) { return ember::exp(x); }, -3, 3},
      {"log", [](const Tensor& x) { return ember::log(x); }, 0.1, 4},
      {"sqrt", [](const Tensor& x) { return ember::sqrt(x); }, 0.1, 4},
      {"abs", [](const Tensor& x) { return ember::abs(x); }, -3, 3},
      {"pow", [](const Tensor& x) { return ember::pow(x, 3.0); }, -2, 2},
      {"pow_frac", [](const Tensor& x) { return ember::pow(x, -0.5); }, 0.2, 4},
      {"clamp", [](const Tensor& x) { return clamp(x, -1.0, 1.5); }, -3, 3},
      {"clamp_min", [](const Tensor& x) { return clamp(x, 0.0, std::nullopt); }, -3, 3},
      {"relu", [](const Tensor& x) { return relu(x); }, -3, 3},
      {"leaky_relu", [](const Tensor& x) { return leaky_relu(x, 0.2); }, -3, 3},
      {"sigmoid", [](const Tensor& x) { return sigmoid(x); }, -8, 8},
      {"tanh", [](const Tensor& x) { return ember::tanh(x); }, -3, 3},
      {"gelu", [](const Tensor& x) { return gelu(x); }, -4, 4},
      {"add_scalar", [](const Tensor& x) { return add(x, 0.25); }, -3, 3},
      {"mul_scalar", [](const Tensor& x) { return mul(x, -3.0); }, -3, 3},
      {"rsub", [](const Tensor& x) { return 1.0 - x; }, -3, 3},
  };
  return cases;
}

TEST_F(OpsCuda, UnaryOpsMatchTheCpu) {
  // 1027 elements: the vectorized path and its tail; a narrowed 1-D input is misaligned.
  std::vector<Shape> shapes = {{}, {0}, {1}, {7}, {1027}, {3, 5}, {33, 17}, {2, 0, 3}};
  for (const Shape& s : random_shapes(2, 3, 7)) shapes.push_back(s);
  uint64_t seed = 100;
  for (const auto& c : unary_cases()) {
    for (const Shape& s : shapes) {
      for (Layout l : kLayouts) {
        SCOPED_TRACE(std::string(c.name) + " " + shape_str(s) + " " + layout_name(l));
        expect_parity([&](const std::vector<Tensor>& in) { return c.op(in[0]); },
                      {input(s, c.lo, c.hi, seed++, l)});
      }
    }
  }
}

// ===========================================================================================
// softmax, reductions
// ===========================================================================================

TEST_F(OpsCuda, SoftmaxAndLogSoftmaxMatchTheCpu) {
  // Rows of >= 128 take the block kernels; shorter rows and inner strides the column ones.
  const std::vector<std::pair<Shape, int64_t>> cases = {
      {{3, 5}, -1}, {{3, 5}, 0},  {{4, 300}, -1}, {{300, 3}, 0}, {{2, 130, 3}, 1}, {{2, 3, 4}, 1},
      {{1, 1}, 0},  {{}, 0},      {{0, 4}, -1},   {{5, 0}, 0},   {{1, 1000}, 1},   {{7}, 0}};
  uint64_t seed = 200;
  for (bool log : {false, true}) {
    for (const auto& [shape, dim] : cases) {
      for (Layout l : kLayouts) {
        SCOPED_TRACE(std::string(log ? "log_softmax " : "softmax ") + shape_str(shape) + " dim " +
                     std::to_string(dim) + " " + layout_name(l));
        const int64_t d = dim;
        expect_parity(
            [log, d](const std::vector<Tensor>& in) { return log ? log_softmax(in[0], d) : softmax(in[0], d); },
            {input(shape, -5, 5, seed++, l)});
      }
    }
  }
}

TEST_F(OpsCuda, SumAndMeanMatchTheCpu) {
  const std::vector<Shape> shapes = {{}, {0}, {1}, {7}, {5, 300}, {300, 5}, {2, 3, 4}, {0, 3}, {3, 0}};
  uint64_t seed = 300;
  for (bool is_mean : {false, true}) {
    for (const Shape& s : shapes) {
      for (Layout l : kLayouts) {
        SCOPED_TRACE(std::string(is_mean ? "mean " : "sum ") + shape_str(s) + " " + layout_name(l));
        expect_parity([&](const std::vector<Tensor>& in) { return is_mean ? mean(in[0]) : sum(in[0]); },
                      {input(s, -1, 1, seed++, l)});
        for (int64_t d = 0; d < static_cast<int64_t>(s.size()); ++d) {
          for (bool keepdim : {false, true}) {
            expect_parity(
                [&](const std::vector<Tensor>& in) {
                  return is_mean ? mean(in[0], {d}, keepdim) : sum(in[0], {d}, keepdim);
                },
                {input(s, -1, 1, seed++, l)});
          }
        }
        if (s.size() == 3) {
          expect_parity(
              [&](const std::vector<Tensor>& in) {
                return is_mean ? mean(in[0], {0, -1}, true) : sum(in[0], {0, -1});
              },
              {input(s, -1, 1, seed++, l)});
        }
      }
    }
  }
}

TEST_F(OpsCuda, IntegerAndBoolSumsMatchTheCpu) {
  for (const Shape& s : {Shape{0}, Shape{1}, Shape{300}, Shape{4, 130}, Shape{130, 4}}) {
    SCOPED_TRACE(shape_str(s));
    expect_parity([](const std::vector<Tensor>& in) { return sum(in[0].to(kBool)); },
                  {ties(s, 1, Layout::Contiguous, false)});
    expect_parity([](const std::vector<Tensor>& in) { return sum(in[0].to(kInt64), {-1}); },
                  {ties(s, 2, Layout::Contiguous, false)});
    expect_parity([](const std::vector<Tensor>& in) { return sum(in[0].to(kUInt8), {0}, true); },
                  {ties(s, 3, Layout::Contiguous, false)});
  }
}

TEST_F(OpsCuda, MaxMinAndArgExtremaMatchTheCpu) {
  const std::vector<Shape> shapes = {{1}, {7}, {300}, {4, 300}, {300, 4}, {2, 3, 5}, {1, 1}, {0, 3}};
  uint64_t seed = 400;
  for (const Shape& s : shapes) {
    for (Layout l : kLayouts) {
      SCOPED_TRACE(shape_str(s) + " " + layout_name(l));
      if (shape_numel(s) > 0) {
        expect_parity([](const std::vector<Tensor>& in) { return ember::max(in[0]); }, {ties(s, seed++, l)});
        expect_parity([](const std::vector<Tensor>& in) { return ember::min(in[0]); }, {input(s, -1, 1, seed++, l)});
      }
      for (int64_t d = 0; d < static_cast<int64_t>(s.size()); ++d) {
        if (s[static_cast<size_t>(d)] == 0) continue;
        for (bool keepdim : {false, true}) {
          // Ties everywhere: both devices must pick the first index.
          expect_parity([&](const std::vector<Tensor>& in) { return ember::max(in[0], d, keepdim).values; },
                        {ties(s, seed++, l)});
          expect_parity([&](const std::vector<Tensor>& in) { return ember::min(in[0], d, keepdim).values; },
                        {input(s, -1, 1, seed++, l)});
          expect_parity([&](const std::vector<Tensor>& in) { return argmax(in[0], d, keepdim); },
                        {ties(s, seed++, l, false)});
          expect_parity([&](const std::vector<Tensor>& in) { return argmin(in[0], d, keepdim); },
                        {ties(s, seed++, l, false)});
          expect_parity([&](const std::vector<Tensor>& in) { return ember::max(in[0].to(kInt64), d).indices; },
                        {ties(s, seed++, l, false)});
        }
      }
    }
  }
}

// ===========================================================================================
// matmul, linear
// ===========================================================================================

TEST_F(OpsCuda, MatmulMatchesTheCpuForEveryRankCombination) {
  const std::vector<std::pair<Shape, Shape>> pairs = {
      {{5}, {5}},          {{3, 5}, {5}},       {{5}, {5, 7}},        {{3, 5}, {5, 7}},
      {{2, 3, 5}, {2, 5, 7}}, {{2, 3, 5}, {5, 7}}, {{3, 5}, {2, 5, 7}}, {{1, 1}, {1, 1}},
      {{33, 65}, {65, 17}}, {{2, 0}, {0, 3}},   {{2, 2, 0}, {2, 0, 3}}, {{0, 4}, {4, 3}},
      {{3, 4}, {4, 0}},     {{0}, {0}},         {{2, 3, 0}, {0, 5}}};
  uint64_t seed = 500;
  for (const auto& [sa, sb] : pairs) {
    for (Layout la : kLayouts) {
      for (Layout lb : {Layout::Contiguous, Layout::Transposed}) {
        SCOPED_TRACE(shape_str(sa) + " @ " + shape_str(sb) + " " + layout_name(la) + "/" + layout_name(lb));
        expect_parity([](const std::vector<Tensor>& in) { return matmul(in[0], in[1]); },
                      {input(sa, -1, 1, seed++, la), input(sb, -1, 1, seed++, lb)});
      }
    }
  }
  // A batch-broadcast (stride 0) operand and a permuted batch.
  expect_parity([](const std::vector<Tensor>& in) { return matmul(in[0].expand({3, 4, 5}), in[1]); },
                {input({1, 4, 5}, -1, 1, 1), input({3, 5, 2}, -1, 1, 2)});
  expect_parity([](const std::vector<Tensor>& in) { return matmul(in[0].permute({1, 0, 2}), in[1]); },
                {input({4, 3, 5}, -1, 1, 3), input({3, 5, 2}, -1, 1, 4)});
}

TEST_F(OpsCuda, LinearMatchesTheCpu) {
  const std::vector<Shape> xs = {{5, 4}, {1, 4}, {4}, {2, 3, 4}, {0, 4}, {129, 4}};
  uint64_t seed = 600;
  for (const Shape& s : xs) {
    for (bool with_bias : {false, true}) {
      for (Layout lw : {Layout::Contiguous, Layout::Transposed}) {
        SCOPED_TRACE(shape_str(s) + (with_bias ? " bias " : " ") + layout_name(lw));
        std::vector<Input> in = {input(s, -1, 1, seed++), input({7, 4}, -1, 1, seed++, lw)};
        if (with_bias) in.push_back(input({7}, -1, 1, seed++));
        expect_parity(
            [with_bias](const std::vector<Tensor>& t) {
              return with_bias ? linear(t[0], t[1], t[2]) : linear(t[0], t[1]);
            },
            in);
      }
    }
  }
  // No input features: the bias alone.
  expect_parity([](const std::vector<Tensor>& t) { return linear(t[0], t[1], t[2]); },
                {input({3, 0}, -1, 1, 1), input({2, 0}, -1, 1, 2), input({2}, -1, 1, 3)});
}

TEST_F(OpsCuda, LinearWithItsActivationMatchesTheCpu) {
  // float32 through cuBLASLt (CUBLAS_COMPUTE_32F unless TF32 is allowed) with the fused
  // epilogues (Note [Fused linear]); 8 and 7 output features (GELU's aux output needs a
  // multiple of 8), a transposed input, no bias, and the bias alone (no input features).
  uint64_t seed = 650;
  for (LinearActivation act : {LinearActivation::kNone, LinearActivation::kRelu,
                               LinearActivation::kGelu, LinearActivation::kGeluTanh}) {
    for (int64_t out : {8, 7}) {
      for (Layout lx : {Layout::Contiguous, Layout::Transposed}) {
        SCOPED_TRACE(std::to_string(static_cast<int>(act)) + " out " + std::to_string(out) + " " +
                     layout_name(lx));
        expect_parity(
            [act](const std::vector<Tensor>& t) { return linear(t[0], t[1], t[2], act); },
            {input({37, 20}, -1, 1, seed++, lx), input({out, 20}, -1, 1, seed++),
             input({out}, -1, 1, seed++)});
      }
    }
    expect_parity(
        [act](const std::vector<Tensor>& t) { return linear(t[0], t[1], Tensor(), act); },
        {input({5, 4}, -1, 1, seed++), input({8, 4}, -1, 1, seed++)});
    expect_parity([act](const std::vector<Tensor>& t) { return linear(t[0], t[1], t[2], act); },
                  {input({3, 0}, -1, 1, seed++), input({8, 0}, -1, 1, seed++),
                   input({8}, -1, 1, seed++)});
  }
}

// ===========================================================================================
// Losses, dropout
// ===========================================================================================

TEST_F(OpsCuda, CrossEntropyAndNllMatchTheCpu) {
  const std::vector<std::pair<int64_t, int64_t>> sizes = {{7, 5}, {1, 1}, {3, 200}, {0, 4}, {64, 10}};
  uint64_t seed = 700;
  for (const auto& [n, c] : sizes) {
    std::vector<int64_t> t(static_cast<size_t>(n));
    for (int64_t r = 0; r < n; ++r) t[static_cast<size_t>(r)] = (r * 7 + 3) % c;
    if (n > 2) t[1] = -100;  // one ignored row
    const Tensor target = Tensor::from_vector(t, {n});
    for (Reduction red : {Reduction::None, Reduction::Mean, Reduction::Sum}) {
      for (double s : {0.0, 0.1}) {
        for (Layout l : {Layout::Contiguous, Layout::Transposed}) {
          SCOPED_TRACE("N " + std::to_string(n) + " C " + std::to_string(c) + " reduction " +
                       std::to_string(static_cast<int>(red)) + " smoothing " + std::to_string(s) + " " +
                       layout_name(l));
          const CrossEntropyOptions opts{.reduction = red, .ignore_index = -100, .label_smoothing = s};
          expect_parity([opts](const std::vector<Tensor>& in) { return cross_entropy(in[0], in[1], opts); },
                        {input({n, c}, -4, 4, seed++, l), constant(target)});
          if (s == 0.0) {
            expect_parity([opts](const std::vector<Tensor>& in) { return nll_loss(in[0], in[1], opts); },
                          {input({n, c}, -4, 0, seed++, l), constant(target)});
          }
        }
      }
    }
  }
}

TEST_F(OpsCuda, PointwiseLossesMatchTheCpu) {
  struct Case {
    const char* name;
    Tensor (*op)(const Tensor&, const Tensor&, Reduction);
    double lo, hi;
    bool target_grad;
  };
  const std::vector<Case> cases = {{"mse_loss", &mse_loss, -2, 2, true},
                                   {"l1_loss", &l1_loss, -2, 2, true},
                                   {"binary_cross_entropy", &binary_cross_entropy, 0.02, 0.98, false},
                                   {"binary_cross_entropy_with_logits", &binary_cross_entropy_with_logits, -6, 6, false}};
  uint64_t seed = 800;
  for (const auto& c : cases) {
    for (const Shape& s : {Shape{}, Shape{0}, Shape{1}, Shape{7, 9}, Shape{1031}}) {
      for (Reduction red : {Reduction::None, Reduction::Mean, Reduction::Sum}) {
        for (Layout l : kLayouts) {
          SCOPED_TRACE(std::string(c.name) + " " + shape_str(s) + " " + layout_name(l));
          Input target = input(s, 0, 1, seed++, l, c.target_grad);
          expect_parity([&](const std::vector<Tensor>& in) { return c.op(in[0], in[1], red); },
                        {input(s, c.lo, c.hi, seed++, l), target});
        }
      }
    }
  }
}

TEST_F(OpsCuda, DropoutDrawsTheSameMaskAsTheCpuAndItsGradientIsTheMask) {
  for (int64_t n : {int64_t{0}, int64_t{1}, int64_t{5}, int64_t{4099}}) {
    for (double p : {0.0, 0.3, 0.9}) {
      SCOPED_TRACE("n " + std::to_string(n) + " p " + std::to_string(p));
      manual_seed(11);
      const DeviceRun c = run_on(Device::cpu(), [p](const std::vector<Tensor>& in) { return dropout(in[0], p); },
                           {input({n}, 0.5, 1.5, 1)});
      manual_seed(11);
      const DeviceRun g = run_on(Device::cuda(), [p](const std::vector<Tensor>& in) { return dropout(in[0], p); },
                           {input({n}, 0.5, 1.5, 1)});
      EXPECT_TRUE(same(c.out, g.out));
      EXPECT_TRUE(same(c.grads[0], g.grads[0]));
    }
  }
  // Evaluation mode is the identity on the GPU too.
  Tensor x = uniform({3, 4}, -1, 1, 2, kFloat32).cuda();
  EXPECT_EQ(values(dropout(x, 0.5, false)), values(x));
}

// ===========================================================================================
// Errors
// ===========================================================================================

TEST_F(OpsCuda, MixingDevicesIsADeviceErrorNamingBothDevices) {
  Tensor c = zeros({2, 3}), g = zeros({2, 3}, {.device = Device::cuda()});
  const std::vector<std::string> both = {"cpu", "cuda:0"};
  auto named = [&](const char* op) {
    std::vector<std::string> p = both;
    p.push_back(op);
    return p;
  };
  for (const auto& b : kBinary) {
    EXPECT_TRUE(throws<DeviceError>([&] { b.op(c, g); }, named(b.name)));
  }
  EXPECT_TRUE(throws<DeviceError>([&] { lt(g, c); }, named("lt")));
  EXPECT_TRUE(throws<DeviceError>([&] { matmul(c, g.t()); }, named("matmul")));
  EXPECT_TRUE(throws<DeviceError>([&] { linear(g, zeros({4, 3})); }, named("linear")));
  EXPECT_TRUE(throws<DeviceError>([&] { linear(g, g, zeros({2})); }, named("linear")));
  EXPECT_TRUE(throws<DeviceError>(
      [&] { cross_entropy(g, Tensor::from_vector(std::vector<int64_t>{0, 1}, {2})); },
      named("cross_entropy")));
  EXPECT_TRUE(throws<DeviceError>([&] { mse_loss(c, g); }, named("mse_loss")));
}

TEST_F(OpsCuda, Float64IsRejectedOnCuda) {
  EXPECT_TRUE(throws<DTypeError>([] { zeros({2}, {.dtype = kFloat64, .device = Device::cuda()}); },
                                 {"float64", "CPU"}));
  EXPECT_TRUE(throws<DTypeError>([] { zeros({2}).cuda().to(kFloat64); }, {"float64", "CPU"}));
  EXPECT_TRUE(throws<DTypeError>([] { zeros({2}, {.dtype = kFloat64}).cuda(); }, {"float64"}));
}

TEST_F(OpsCuda, BadTargetsAndEmptyReductionsAreErrorsOnCuda) {
  Tensor logits = zeros({3, 4}, {.device = Device::cuda()});
  Tensor bad = Tensor::from_vector(std::vector<int64_t>{0, 4, -2}, {3}).cuda();
  EXPECT_TRUE(throws<ShapeError>([&] { cross_entropy(logits, bad); }, {"cross_entropy", "2 of 3", "[0, 4)"}));
  EXPECT_TRUE(throws<ShapeError>([&] { nll_loss(logits, bad); }, {"nll_loss", "2 of 3"}));
  Tensor e = zeros({0, 3}, {.device = Device::cuda()});
  EXPECT_TRUE(throws<ShapeError>([&] { argmax(e, 0); }, {"max", "empty"}));
  EXPECT_TRUE(throws<ShapeError>([&] { ember::min(e); }, {"min", "empty"}));
}

}  // namespace
}  // namespace ember
