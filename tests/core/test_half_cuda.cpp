// float16 and bfloat16 on the GPU against the CPU: every op family (elementwise,
// activations, reductions, softmax, matmul/linear through cuBLASLt, convolution, pooling
// and normalization through cuDNN, losses, embedding, RNNs), forward and the gradients of
// every input, on contiguous and non-contiguous inputs; autocast regions and optimizers on
// 16-bit parameters (the gradient scaler on CUDA: tests/optim/test_mixed_precision.cpp). Both devices compute in float32
// and round once on store, so they agree to about one unit in the last place of the 16-bit
// type. Skipped without a GPU.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include "ember/core/autocast.h"
#include "ember/core/autograd.h"
#include "ember/core/half.h"
#include "ember/core/ops.h"
#include "ember/core/random.h"
#include "ember/core/tensor.h"
#include "ember/layers/layers.h"
#include "ember/layers/rnn.h"
#include "ember/optim/optim.h"

#include "support/allclose.h"
#include "support/device.h"
#include "support/parity.h"

namespace {

using namespace ember;
using namespace ember::testing;

class Half16Cuda : public ::testing::TestWithParam<DType> {
 protected:
  void SetUp() override { EMBER_SKIP_WITHOUT_GPU(); }
};
INSTANTIATE_TEST_SUITE_P(Dtypes, Half16Cuda, ::testing::Values(kFloat16, kBFloat16),
                         [](const auto& info) { return std::string(dtype_name(info.param)); });

// One or two roundings of a value both devices computed in float32 (2^-11 relative for
// float16, 2^-8 for bfloat16); `scale` widens it for sums whose order differs.
Tolerance tolerance(DType dt, double scale = 1.0) {
  const double t = (dt == kFloat16 ? 2e-3 : 1.6e-2) * scale;
  return {t, t};
}

// A 16-bit input with values in [lo, hi), seen through `layout`.
Input in16(const Shape& shape, DType dt, double lo, double hi, uint64_t seed,
           Layout layout = Layout::Contiguous, bool grad = true) {
  Input in = input(shape, lo, hi, seed, layout, grad);
  in.stored = in.stored.to(dt);
  return in;
}

// Forward values and every input's gradient agree between the CPU and the GPU, in the
// inputs' 16-bit dtype.
void expect_parity16(const OpFn& fn, const std::vector<Input>& inputs, const std::string& what,
                     double scale = 1.0) {
  const DType dt = inputs[0].stored.dtype();
  const DeviceRun c = run_on(Device::cpu(), fn, inputs);
  const DeviceRun g = run_on(Device::cuda(), fn, inputs);
  ASSERT_TRUE(g.out.is_cuda()) << what;
  EXPECT_EQ(g.out.dtype(), c.out.dtype()) << what;
  EXPECT_TRUE(allclose(g.out, c.out, tolerance(dt, scale))) << what << " forward";
  for (size_t i = 0; i < inputs.size(); ++i) {
    if (!c.grads[i].defined() && !g.grads[i].defined()) continue;
    ASSERT_TRUE(c.grads[i].defined() && g.grads[i].defined()) << what << " input " << i;
    EXPECT_EQ(g.grads[i].dtype(), dt) << what << " input " << i;
    EXPECT_TRUE(allclose(g.grads[i], c.grads[i], tolerance(dt, scale)))
        << what << " gradient of input " << i;
  }
}

const std::vector<Layout> kLayouts = {Layout::Contiguous, Layout::Transposed, Layout::Narrowed};

TEST_P(Half16Cuda, ElementwiseAndActivations) {
  const DType dt = GetParam();
  using Unary = std::pair<const char*, std::function<Tensor(const Tensor&)>>;
  const std::vector<Unary> unary = {
      {"neg", [](const Tensor& t) { return neg(t); }},
      {"exp", [](const Tensor& t) { return exp(t); }},
      {"abs", [](const Tensor& t) { return abs(t); }},
      {"pow", [](const Tensor& t) { return pow(t, 3.0); }},
      {"clamp", [](const Tensor& t) { return clamp(t, -0.5, 0.7); }},
      {"relu", [](const Tensor& t) { return relu(t); }},
      {"leaky_relu", [](const Tensor& t) { return leaky_relu(t, 0.1); }},
      {"sigmoid", [](const Tensor& t) { return sigmoid(t); }},
      {"tanh", [](const Tensor& t) { return tanh(t); }},
      {"gelu", [](const Tensor& t) { return gelu(t); }},
      {"scalar", [](const Tensor& t) { return add(mul(t, 1.5), 0.25); }}};
  uint64_t seed = 1;
  for (const auto& [name, fn] : unary) {
    for (Layout la : kLayouts) {
      expect_parity16([&](const auto& in) { return fn(in[0]); },
                      {in16({7, 33}, dt, -2, 2, seed++, la)},
                      std::string(name) + " " + layout_name(la), 2.0);
    }
  }
  for (const char* name : {"log", "sqrt"}) {
    expect_parity16(
        [&](const auto& in) { return std::string(name) == "log" ? log(in[0]) : sqrt(in[0]); },
        {in16({5, 130}, dt, 0.5, 3, seed++, Layout::Transposed)}, name);
  }
  for (const auto& [name, op] : binary_cases()) {
    for (Layout la : kLayouts) {
      expect_parity16([op = op](const auto& in) { return op(in[0], in[1]); },
                      {in16({9, 31}, dt, -2, 2, seed++, la),
                       in16({31}, dt, 0.5, 2, seed++, Layout::Narrowed)},
                      std::string(name) + " broadcast " + layout_name(la));
    }
  }
}

TEST_P(Half16Cuda, ReductionsAndSoftmaxAccumulateInFloat) {
  const DType dt = GetParam();
  uint64_t seed = 100;
  for (Layout la : kLayouts) {
    const std::string l = layout_name(la);
    expect_parity16([](const auto& in) { return sum(in[0]); },
                    {in16({6, 300}, dt, -1, 1, seed++, la)}, "sum " + l, 4.0);
    expect_parity16([](const auto& in) { return sum(in[0], {1}); },
                    {in16({6, 300}, dt, -1, 1, seed++, la)}, "sum(1) " + l, 4.0);
    expect_parity16([](const auto& in) { return mean(in[0], {0}, true); },
                    {in16({130, 7}, dt, -1, 1, seed++, la)}, "mean(0) " + l, 4.0);
    expect_parity16([](const auto& in) { return max(in[0], 1).values; },
                    {in16({9, 13}, dt, -1, 1, seed++, la)}, "max(1) " + l);
    expect_parity16([](const auto& in) { return softmax(in[0], -1); },
                    {in16({8, 257}, dt, -4, 4, seed++, la)}, "softmax " + l);
    expect_parity16([](const auto& in) { return log_softmax(in[0], 1); },
                    {in16({8, 10}, dt, -4, 4, seed++, la)}, "log_softmax " + l);
  }
  // 4096 ones: a 16-bit running sum would stop at 2048 (float16) or 256 (bfloat16).
  EXPECT_EQ(ones({4096}, {.dtype = dt, .device = Device::cuda()}).sum().item(), 4096.0);
}

// cuBLASLt with float32 accumulation against the CPU's float32 GEMM; sums of 64 products
// are compared relative to their largest terms.
TEST_P(Half16Cuda, MatmulAndLinearThroughCublasLt) {
  const DType dt = GetParam();
  uint64_t seed = 200;
  for (Layout la : kLayouts) {
    const std::string l = layout_name(la);
    expect_parity16([](const auto& in) { return matmul(in[0], in[1]); },
                    {in16({17, 64}, dt, -1, 1, seed++, la), in16({64, 24}, dt, -1, 1, seed++)},
                    "matmul " + l, 8.0);
    expect_parity16([](const auto& in) { return linear(in[0], in[1], in[2]); },
                    {in16({33, 64}, dt, -1, 1, seed++, la), in16({16, 64}, dt, -1, 1, seed++),
                     in16({16}, dt, -1, 1, seed++)},
                    "linear " + l, 8.0);
  }
  expect_parity16([](const auto& in) { return matmul(in[0], in[1]); },
                  {in16({3, 5, 40}, dt, -1, 1, seed++), in16({3, 40, 7}, dt, -1, 1, seed++)},
                  "batched matmul", 8.0);
}

// Note [Fused linear]: cuBLASLt's BIAS / RELU_BIAS / GELU_AUX_BIAS epilogues forward and
// BGRADB backward against the CPU's float computation; 16 output features take GELU's aux
// output, 13 (not a multiple of 8) the composed path; a bias view one element in is
// unaligned for the epilogue and composes too.
TEST_P(Half16Cuda, LinearWithFusedEpiloguesMatchesTheCpu) {
  const DType dt = GetParam();
  uint64_t seed = 260;
  for (LinearActivation act : {LinearActivation::kNone, LinearActivation::kRelu,
                               LinearActivation::kGelu, LinearActivation::kGeluTanh}) {
    for (int64_t out : {16, 13}) {
      for (Layout lb : {Layout::Contiguous, Layout::Narrowed}) {
        const std::string what = "linear act " + std::to_string(static_cast<int>(act)) +
                                 " out " + std::to_string(out) + " bias " + layout_name(lb);
        expect_parity16([act](const auto& in) { return linear(in[0], in[1], in[2], act); },
                        {in16({33, 64}, dt, -1, 1, seed++), in16({out, 64}, dt, -1, 1, seed++),
                         in16({out}, dt, -1, 1, seed++, lb)},
                        what, 8.0);
      }
    }
    // Without a bias, and without gradients (inference takes GELU_BIAS without aux).
    expect_parity16([act](const auto& in) { return linear(in[0], in[1], Tensor(), act); },
                    {in16({9, 24}, dt, -1, 1, seed++), in16({16, 24}, dt, -1, 1, seed++)},
                    "linear without bias", 8.0);
    expect_parity16([act](const auto& in) { return linear(in[0], in[1], in[2], act); },
                    {in16({9, 24}, dt, -1, 1, seed++, Layout::Contiguous, false),
                     in16({16, 24}, dt, -1, 1, seed++, Layout::Contiguous, false),
                     in16({16}, dt, -1, 1, seed++, Layout::Contiguous, false)},
                    "linear inference", 8.0);
  }
}

TEST_P(Half16Cuda, ConvolutionPoolingAndNormalizationThroughCudnn) {
  const DType dt = GetParam();
  uint64_t seed = 300;
  expect_parity16(
      [](const auto& in) { return conv2d(in[0], in[1], in[2], {.padding = {1, 1}}); },
      {in16({2, 8, 9, 9}, dt, -1, 1, seed++), in16({16, 8, 3, 3}, dt, -0.5, 0.5, seed++),
       in16({16}, dt, -1, 1, seed++)},
      "conv2d", 8.0);
  expect_parity16(
      [](const auto& in) {
        return conv2d(in[0], in[1], Tensor(), {.stride = {2, 2}, .groups = 2});
      },
      {in16({2, 8, 9, 9}, dt, -1, 1, seed++), in16({8, 4, 3, 3}, dt, -0.5, 0.5, seed++)},
      "grouped strided conv2d", 8.0);
  expect_parity16([](const auto& in) { return max_pool2d(in[0]); },
                  {in16({2, 3, 8, 8}, dt, -2, 2, seed++)}, "max_pool2d");
  expect_parity16(
      [](const auto& in) { return avg_pool2d(in[0], {.kernel = {3, 3}, .padding = {1, 1}}); },
      {in16({2, 3, 7, 7}, dt, -2, 2, seed++)}, "avg_pool2d");
  expect_parity16([](const auto& in) { return adaptive_avg_pool2d(in[0], {3, 2}); },
                  {in16({2, 3, 7, 7}, dt, -2, 2, seed++)}, "adaptive_avg_pool2d");
  expect_parity16(
      [](const auto& in) { return batch_norm(in[0], Tensor(), Tensor(), in[1], in[2], true); },
      {in16({8, 4, 5, 5}, dt, -1, 3, seed++), in16({4}, dt, 0.5, 1.5, seed++),
       in16({4}, dt, -1, 1, seed++)},
      "batch_norm (training)", 8.0);
  expect_parity16([](const auto& in) { return layer_norm(in[0], {40}, in[1], in[2]); },
                  {in16({6, 40}, dt, -1, 3, seed++), in16({40}, dt, 0.5, 1.5, seed++),
                   in16({40}, dt, -1, 1, seed++)},
                  "layer_norm", 8.0);
}

TEST_P(Half16Cuda, LossesAndEmbedding) {
  const DType dt = GetParam();
  uint64_t seed = 400;
  const Tensor target = Tensor::from_vector<int64_t>({0, 4, 2, 1, 3, 3, -100, 0, 2}, {9});
  expect_parity16(
      [&](const auto& in) { return cross_entropy(in[0], target.to(in[0].device())); },
      {in16({9, 5}, dt, -3, 3, seed++)}, "cross_entropy");
  expect_parity16(
      [&](const auto& in) {
        return cross_entropy(in[0], target.to(in[0].device()), {.label_smoothing = 0.1});
      },
      {in16({9, 5}, dt, -3, 3, seed++)}, "cross_entropy (smoothed)");
  // Targets carry no gradient.
  auto target16 = [&](const Shape& s, double lo, double hi) {
    return in16(s, dt, lo, hi, seed++, Layout::Contiguous, false);
  };
  expect_parity16([](const auto& in) { return mse_loss(in[0], in[1]); },
                  {in16({4, 33}, dt, -2, 2, seed++), target16({4, 33}, -2, 2)}, "mse_loss", 2.0);
  expect_parity16([](const auto& in) { return l1_loss(in[0], in[1], Reduction::Sum); },
                  {in16({4, 33}, dt, -2, 2, seed++), target16({4, 33}, -2, 2)}, "l1_loss", 4.0);
  expect_parity16([](const auto& in) { return binary_cross_entropy(in[0], in[1]); },
                  {in16({4, 6}, dt, 0.05, 0.95, seed++), target16({4, 6}, 0, 1)},
                  "binary_cross_entropy");
  expect_parity16([](const auto& in) { return binary_cross_entropy_with_logits(in[0], in[1]); },
                  {in16({4, 6}, dt, -3, 3, seed++), target16({4, 6}, 0, 1)},
                  "binary_cross_entropy_with_logits");
  const Tensor idx = Tensor::from_vector<int64_t>({1, 4, 1, 1, 0, 5}, {6});
  expect_parity16([&](const auto& in) { return embedding(in[0], idx.to(in[0].device())); },
                  {in16({6, 37}, dt, -2, 2, seed++)}, "embedding");
}

// float16 runs as one cuDNN call (float32 math); bfloat16, which cuDNN's RNNs do not take,
// is composed from the ops like the CPU's.
TEST_P(Half16Cuda, RecurrentNetworks) {
  const DType dt = GetParam();
  uint64_t seed = 500;
  for (RnnMode mode : {RnnMode::Lstm, RnnMode::Gru, RnnMode::RnnTanh}) {
    RnnParams p{.mode = mode, .input_size = 6, .hidden_size = 8};
    std::vector<Input> in{in16({5, 3, 6}, dt, -1, 1, seed++)};
    for (const Shape& s : rnn_weight_shapes(p)) in.push_back(in16(s, dt, -0.5, 0.5, seed++));
    expect_parity16(
        [&](const auto& t) {
          const std::vector<Tensor> weights(t.begin() + 1, t.end());
          return rnn(t[0], Tensor(), Tensor(), weights, {}, p).output;
        },
        in, "rnn mode " + std::to_string(static_cast<int>(mode)), 8.0);
  }
  // The layer flattens float16 weights into cuDNN's buffer and keeps training them there.
  manual_seed(7);
  nn::LSTM lstm(6, 8);
  lstm.to(dt);
  lstm.to(Device::cuda());
  Tensor x = rand({5, 3, 6}).to(dt).to(Device::cuda());
  Tensor y = lstm(x);
  EXPECT_EQ(y.dtype(), dt);
  y.sum().backward();
  for (const Tensor& w : lstm.parameters()) {
    ASSERT_TRUE(w.grad().defined());
    EXPECT_EQ(w.grad().dtype(), dt);
  }
}

TEST_P(Half16Cuda, AutocastRegionsMatchTheCpu) {
  const DType dt = GetParam();
  manual_seed(600);
  nn::Sequential net{nn::Conv2d(3, 8, 3, {.padding = 1}), nn::ReLU(), nn::Flatten(),
                     nn::Linear(8 * 6 * 6, 10)};
  const Tensor x = rand({4, 3, 6, 6});
  const Tensor target = Tensor::from_vector<int64_t>({1, 0, 9, 3}, {4});
  auto run = [&](Device device) {
    net.to(device);
    net.zero_grad();
    Tensor logits, loss;
    {
      AutocastGuard guard(dt);
      logits = net(x.to(device));
      loss = cross_entropy(logits, target.to(device));
    }
    EXPECT_EQ(logits.dtype(), dt);
    EXPECT_EQ(loss.dtype(), kFloat32);
    loss.backward();
    std::vector<Tensor> grads;
    for (const Tensor& p : net.parameters()) grads.push_back(p.grad().cpu());
    return std::make_pair(logits.cpu(), grads);
  };
  const auto cpu = run(Device::cpu());
  const auto gpu = run(Device::cuda());
  EXPECT_TRUE(allclose(gpu.first, cpu.first, tolerance(dt, 8.0)));
  for (size_t i = 0; i < cpu.second.size(); ++i) {
    EXPECT_EQ(gpu.second[i].dtype(), kFloat32) << "the weights and their gradients stay float32";
    EXPECT_TRUE(allclose_to_largest(gpu.second[i], cpu.second[i], tolerance(dt, 8.0).rtol))
        << "gradient " << i;
  }
}

TEST_P(Half16Cuda, OptimizersUpdate16BitParametersLikeTheCpu) {
  const DType dt = GetParam();
  manual_seed(700);
  const Tensor init = (rand({1031}) * 2.0 - 1.0).to(dt);
  const Tensor grad = (rand({1031}) * 2.0 - 1.0).to(dt);
  auto run = [&](Device device, bool master, auto make) {
    Tensor p = init.to(device).detach().requires_grad_();
    auto opt = make(p);
    opt.set_master_weights(master);
    for (int i = 0; i < 3; ++i) {
      p.set_grad(grad.to(device));
      opt.step();
    }
    EXPECT_EQ(p.dtype(), dt);
    return p.cpu();
  };
  auto sgd = [](Tensor p) { return optim::SGD({p}, {.lr = 0.1, .momentum = 0.9}); };
  auto adam = [](Tensor p) { return optim::Adam({p}, {.lr = 0.01, .weight_decay = 0.01}); };
  auto adamw = [](Tensor p) { return optim::AdamW({p}, {.lr = 0.01}); };
  for (bool master : {false, true}) {
    const std::string m = master ? " (master weights)" : "";
    EXPECT_TRUE(allclose(run(Device::cuda(), master, sgd), run(Device::cpu(), master, sgd),
                         tolerance(dt, 2.0))) << "SGD" << m;
    EXPECT_TRUE(allclose(run(Device::cuda(), master, adam), run(Device::cpu(), master, adam),
                         tolerance(dt, 2.0))) << "Adam" << m;
    EXPECT_TRUE(allclose(run(Device::cuda(), master, adamw), run(Device::cpu(), master, adamw),
                         tolerance(dt, 2.0))) << "AdamW" << m;
  }
}

}  // namespace
