// The layers on the GPU against the same layers on the CPU: a layer is built on the CPU,
// a twin gets its state_dict and is moved with module.to(cuda:0), and both run the same
// input forward and backward. Outputs, input and parameter gradients, and buffers (batch
// norm's running statistics) must agree, on random shapes: Conv2d with stride, padding,
// "same", dilation, groups, odd sizes and batch 1; the pooling layers; BatchNorm in train
// and eval mode; and a small CNN end to end. Skipped, with the reason, without a GPU.
#include <ember/ember.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "ember/core/cuda_context.h"
#include "layers/layer_test_util.h"

using namespace ember;

namespace {

using ember::testing::random_f32;
using ember::testing::expect_gpu_matches_cpu;

// Tolerances, stated once, relative to the largest magnitude of the CPU result: a single
// layer differs from the CPU only in float summation order (cuDNN's algorithms included,
// TF32 off); a model of several layers compounds that a few times over.
constexpr double kTol = 1e-4;
constexpr double kTolModel = 5e-4;

Device gpu() { return Device::cuda(0); }

class LayersCuda : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!cuda::is_available()) GTEST_SKIP() << "no CUDA device: " << cuda::unavailable_reason();
  }
};

int64_t pick(std::mt19937_64& gen, int64_t lo, int64_t hi) {
  return std::uniform_int_distribution<int64_t>(lo, hi)(gen);
}

// Gives `on_gpu` the state of `on_cpu` (parameters and buffers) and moves it to the GPU.
void mirror(nn::Module& on_cpu, nn::Module& on_gpu) {
  on_gpu.load_state_dict(on_cpu.state_dict());
  on_gpu.to(gpu());
  on_gpu.train(on_cpu.is_training());
}

// One step on both twins: forward x, backward sum(y * r) with a random r so every output
// element carries its own weight, then compares the outputs, the gradients of x and of
// every parameter, and every buffer.
void step_and_compare(nn::Module& on_cpu, nn::Module& on_gpu, const Tensor& x, std::mt19937_64& gen,
                      double tol, const std::string& what) {
  on_cpu.zero_grad();
  on_gpu.zero_grad();
  Tensor xc = x.clone().requires_grad_();
  Tensor xg = x.to(gpu()).detach().requires_grad_();
  Tensor yc = on_cpu(xc);
  Tensor yg = on_gpu(xg);
  Tensor r = random_f32(yc.shape(), gen);
  sum(mul(yc, r)).backward();
  sum(mul(yg, r.to(gpu()))).backward();

  expect_gpu_matches_cpu(yg, yc, tol, what + ": output");
  expect_gpu_matches_cpu(xg.grad(), xc.grad(), tol, what + ": grad_x");
  const auto pc = on_cpu.named_parameters(), pg = on_gpu.named_parameters();
  ASSERT_EQ(pc.size(), pg.size()) << what;
  for (size_t i = 0; i < pc.size(); ++i) {
    ASSERT_EQ(pc[i].first, pg[i].first) << what;
    expect_gpu_matches_cpu(pg[i].second.grad(), pc[i].second.grad(), tol, what + ": grad " + pc[i].first);
  }
  const auto bc = on_cpu.named_buffers(), bg = on_gpu.named_buffers();
  ASSERT_EQ(bc.size(), bg.size()) << what;
  for (size_t i = 0; i < bc.size(); ++i) {
    expect_gpu_matches_cpu(bg[i].second, bc[i].second, tol, what + ": buffer " + bc[i].first);
  }
}

std::string describe(const nn::Module& layer, const Shape& x) {
  return layer.repr() + " on " + shape_str(x);
}

// ---- Conv2d cases --------------------------------------------------------------------------

struct ConvCase {
  Shape x;
  int64_t out_channels;
  nn::IntPair kernel{1};
  nn::Conv2dOptions options;
};

// Random valid layers: batch 1 to 3, odd sizes from 1, stride, padding or "same",
// dilation, groups (depthwise included), with and without bias.
std::vector<ConvCase> random_conv_cases(int count, uint64_t seed) {
  std::mt19937_64 gen(seed);
  std::vector<ConvCase> cases;
  while (static_cast<int>(cases.size()) < count) {
    ConvCase k;
    const int64_t groups = pick(gen, 1, 3);
    const bool depthwise = pick(gen, 0, 4) == 0;
    const int64_t c = depthwise ? groups : pick(gen, 1, 3) * groups;
    k.out_channels = pick(gen, 1, 3) * groups;
    k.kernel = nn::IntPair(pick(gen, 1, 4), pick(gen, 1, 4));
    k.x = {pick(gen, 1, 3), c, pick(gen, 1, 13), pick(gen, 1, 13)};
    k.options.groups = groups;
    k.options.dilation = nn::IntPair(pick(gen, 1, 2), pick(gen, 1, 2));
    const bool same = pick(gen, 0, 3) == 0;
    if (same) {
      k.options.padding = nn::Padding("same");
    } else {
      k.options.stride = nn::IntPair(pick(gen, 1, 3), pick(gen, 1, 3));
      k.options.padding = nn::Padding(pick(gen, 0, 2), pick(gen, 0, 2));
    }
    k.options.bias = pick(gen, 0, 3) != 0;
    // Keep only kernels that fit the padded input.
    const int64_t eff_h = k.options.dilation.h * (k.kernel.h - 1) + 1;
    const int64_t eff_w = k.options.dilation.w * (k.kernel.w - 1) + 1;
    const int64_t padded_h = same ? k.x[2] + eff_h - 1 : k.x[2] + 2 * k.options.padding.pair.h;
    const int64_t padded_w = same ? k.x[3] + eff_w - 1 : k.x[3] + 2 * k.options.padding.pair.w;
    if (eff_h <= padded_h && eff_w <= padded_w) cases.push_back(k);
  }
  return cases;
}

void check_conv_cases(const std::vector<ConvCase>& cases, uint64_t seed) {
  std::mt19937_64 gen(seed);
  for (const ConvCase& k : cases) {
    nn::Conv2d on_cpu(k.x[1], k.out_channels, k.kernel, k.options);
    nn::Conv2d on_gpu(k.x[1], k.out_channels, k.kernel, k.options);
    mirror(on_cpu, on_gpu);
    const std::string what = describe(on_cpu, k.x);
    SCOPED_TRACE(what);
    step_and_compare(on_cpu, on_gpu, random_f32(k.x, gen), gen, kTol, what);
    if (::testing::Test::HasFatalFailure()) return;
  }
}

// Restores cuDNN's benchmark flag when a test ends.
class BenchmarkModeGuard {
 public:
  explicit BenchmarkModeGuard(bool on) : was_(cuda::cudnn_benchmark()) {
    cuda::set_cudnn_benchmark(on);
  }
  ~BenchmarkModeGuard() { cuda::set_cudnn_benchmark(was_); }
  BenchmarkModeGuard(const BenchmarkModeGuard&) = delete;
  BenchmarkModeGuard& operator=(const BenchmarkModeGuard&) = delete;

 private:
  bool was_;
};

// ---- pooling cases -------------------------------------------------------------------------

struct PoolCase {
  Shape x;
  nn::IntPair kernel{1};
  nn::Pool2dOptions options;
};

std::vector<PoolCase> random_pool_cases(int count, uint64_t seed) {
  std::mt19937_64 gen(seed);
  std::vector<PoolCase> cases;
  for (int i = 0; i < count; ++i) {
    PoolCase k;
    const int64_t kh = pick(gen, 1, 4), kw = pick(gen, 1, 4);
    k.kernel = nn::IntPair(kh, kw);
    k.options.stride = nn::IntPair(pick(gen, 0, 3), pick(gen, 0, 3));  // 0: the kernel size
    k.options.padding = nn::IntPair(pick(gen, 0, kh / 2), pick(gen, 0, kw / 2));
    k.options.ceil_mode = pick(gen, 0, 1) == 1;
    k.options.count_include_pad = pick(gen, 0, 1) == 1;
    k.x = {pick(gen, 1, 3), pick(gen, 1, 4), pick(gen, kh, 12), pick(gen, kw, 12)};
    cases.push_back(k);
  }
  return cases;
}

}  // namespace

TEST_F(LayersCuda, Conv2dMatchesTheCpuOnRandomLayers) {
  check_conv_cases(random_conv_cases(40, 1), 11);
}

TEST_F(LayersCuda, Conv2dMatchesTheCpuOnHandPickedLayers) {
  std::vector<ConvCase> cases;
  cases.push_back({{1, 3, 7, 5}, 4, 3, {.stride = 2, .padding = 1}});  // batch 1, odd
  cases.push_back({{2, 2, 9, 9}, 3, 3, {.padding = "same"}});
  cases.push_back({{2, 2, 6, 7}, 2, {2, 4}, {.padding = "same"}});  // even kernel
  cases.push_back({{1, 2, 11, 10}, 2, 3, {.dilation = 2}});
  cases.push_back({{3, 4, 8, 5}, 6, {3, 1}, {.stride = {1, 2}, .padding = {1, 0}, .groups = 2}});
  cases.push_back({{2, 6, 9, 9}, 6, 3, {.padding = 1, .groups = 6, .bias = false}});  // depthwise
  cases.push_back({{1, 1, 1, 1}, 2, 1, {}});                                          // 1x1 input
  cases.push_back({{4, 5, 13, 11}, 7, 5, {.stride = 3, .padding = 2, .dilation = {1, 2}}});
  check_conv_cases(cases, 12);
}

TEST_F(LayersCuda, Conv2dMatchesTheCpuInBenchmarkMode) {
  BenchmarkModeGuard benchmark(true);
  check_conv_cases(random_conv_cases(15, 2), 13);
}

TEST_F(LayersCuda, PoolingLayersMatchTheCpuOnRandomShapes) {
  std::mt19937_64 gen(21);
  for (const PoolCase& k : random_pool_cases(40, 3)) {
    {
      nn::MaxPool2d on_cpu(k.kernel, k.options), on_gpu(k.kernel, k.options);
      mirror(on_cpu, on_gpu);
      const std::string what = describe(on_cpu, k.x);
      SCOPED_TRACE(what);
      step_and_compare(on_cpu, on_gpu, random_f32(k.x, gen), gen, kTol, what);
    }
    {
      nn::AvgPool2d on_cpu(k.kernel, k.options), on_gpu(k.kernel, k.options);
      mirror(on_cpu, on_gpu);
      const std::string what =
          describe(on_cpu, k.x) + (k.options.count_include_pad ? "" : " excluding padding");
      SCOPED_TRACE(what);
      step_and_compare(on_cpu, on_gpu, random_f32(k.x, gen), gen, kTol, what);
    }
    if (HasFatalFailure()) return;
  }
}

TEST_F(LayersCuda, AdaptiveAvgPool2dMatchesTheCpu) {
  std::mt19937_64 gen(22);
  for (int i = 0; i < 20; ++i) {
    const nn::IntPair out(pick(gen, 1, 5), pick(gen, 1, 5));
    const Shape xs{pick(gen, 1, 3), pick(gen, 1, 4), pick(gen, 1, 12), pick(gen, 1, 12)};
    nn::AdaptiveAvgPool2d on_cpu(out), on_gpu(out);
    mirror(on_cpu, on_gpu);
    const std::string what = describe(on_cpu, xs);
    SCOPED_TRACE(what);
    step_and_compare(on_cpu, on_gpu, random_f32(xs, gen), gen, kTol, what);
    if (HasFatalFailure()) return;
  }
}

TEST_F(LayersCuda, BatchNorm2dMatchesTheCpuInTrainAndEvalMode) {
  std::mt19937_64 gen(31);
  for (int i = 0; i < 20; ++i) {
    Shape xs{pick(gen, 1, 4), pick(gen, 1, 5), pick(gen, 1, 7), pick(gen, 1, 7)};
    if (xs[0] * xs[2] * xs[3] == 1) xs[0] = 2;  // training needs two values per channel
    const double momentum = i % 2 == 0 ? 0.1 : 0.3;
    nn::BatchNorm2d on_cpu(xs[1], {.momentum = momentum}), on_gpu(xs[1], {.momentum = momentum});
    nn::StateDict affine;
    affine.insert("weight", random_f32({xs[1]}, gen, 0.5f, 1.5f));
    affine.insert("bias", random_f32({xs[1]}, gen));
    on_cpu.load_state_dict(affine, /*strict=*/false);
    mirror(on_cpu, on_gpu);
    const std::string what = describe(on_cpu, xs);
    SCOPED_TRACE(what);
    // Two training steps (batch statistics; running stats and num_batches_tracked compared
    // after each), then eval mode on the running statistics the GPU computed itself.
    step_and_compare(on_cpu, on_gpu, random_f32(xs, gen, -2.0f, 3.0f), gen, kTol,
                     what + " train 1");
    step_and_compare(on_cpu, on_gpu, random_f32(xs, gen, -1.0f, 2.0f), gen, kTol,
                     what + " train 2");
    on_cpu.eval();
    on_gpu.eval();
    step_and_compare(on_cpu, on_gpu, random_f32(xs, gen), gen, kTol, what + " eval");
    if (HasFatalFailure()) return;
  }
}

TEST_F(LayersCuda, BatchNormCumulativeAverageMatchesTheCpu) {
  // momentum unset: the factor 1/n comes from num_batches_tracked, read from the device.
  std::mt19937_64 gen(33);
  const Shape xs{4, 3, 5, 5};
  nn::BatchNorm2d on_cpu(3, {.momentum = std::nullopt}), on_gpu(3, {.momentum = std::nullopt});
  mirror(on_cpu, on_gpu);
  for (int step = 0; step < 4; ++step) {
    step_and_compare(on_cpu, on_gpu, random_f32(xs, gen, -2.0f, 3.0f), gen, kTol,
                     "cumulative average, step " + std::to_string(step + 1));
    if (HasFatalFailure()) return;
  }
  EXPECT_EQ(on_gpu.state_dict().at("num_batches_tracked").cpu().item<int64_t>(), 4);
}

TEST_F(LayersCuda, AnOutOfRangeLabelOnTheGpuIsNamedAsOnTheCpu) {
  const Tensor logits = zeros({4, 3}, {.device = gpu()});
  const Tensor labels = Tensor::from_vector<int64_t>({0, 5, 2, -3}, {4}).to(gpu());
  try {
    loss::CrossEntropy()(logits, labels);
    FAIL() << "expected a ShapeError";
  } catch (const ShapeError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("2 of 4 labels are outside the class range [0, 3) of output [4, 3]: label 5 at "
                       "row 1, label -3 at row 3"),
              std::string::npos)
        << msg;
  }
}

TEST_F(LayersCuda, BatchNorm1dMatchesTheCpuForNCAndNCL) {
  std::mt19937_64 gen(32);
  for (const Shape& xs : {Shape{8, 5}, Shape{2, 3}, Shape{3, 4, 7}, Shape{1, 2, 5}}) {
    nn::BatchNorm1d on_cpu(xs[1]), on_gpu(xs[1]);
    mirror(on_cpu, on_gpu);
    const std::string what = describe(on_cpu, xs);
    SCOPED_TRACE(what);
    step_and_compare(on_cpu, on_gpu, random_f32(xs, gen), gen, kTol, what + " train");
    on_cpu.eval();
    on_gpu.eval();
    step_and_compare(on_cpu, on_gpu, random_f32(xs, gen), gen, kTol, what + " eval");
  }
}

TEST_F(LayersCuda, BatchNormWithoutRunningStatsOrAffineMatchesTheCpu) {
  std::mt19937_64 gen(33);
  const Shape xs{3, 4, 5, 5};
  nn::BatchNorm2d on_cpu(4, {.affine = false, .track_running_stats = false});
  nn::BatchNorm2d on_gpu(4, {.affine = false, .track_running_stats = false});
  mirror(on_cpu, on_gpu);
  step_and_compare(on_cpu, on_gpu, random_f32(xs, gen), gen, kTol, "train");
  on_cpu.eval();
  on_gpu.eval();
  step_and_compare(on_cpu, on_gpu, random_f32(xs, gen), gen, kTol, "eval (batch statistics)");
}

TEST_F(LayersCuda, LinearAndLayerNormMatchTheCpu) {
  std::mt19937_64 gen(41);
  manual_seed(41);
  nn::Linear fc_cpu(37, 19), fc_gpu(37, 19);
  mirror(fc_cpu, fc_gpu);
  step_and_compare(fc_cpu, fc_gpu, random_f32({5, 37}, gen), gen, kTol, "Linear(37, 19)");
  step_and_compare(fc_cpu, fc_gpu, random_f32({2, 3, 37}, gen), gen, kTol,
                   "Linear(37, 19), rank 3");
  nn::LayerNorm ln_cpu(Shape{3, 7}), ln_gpu(Shape{3, 7});
  nn::StateDict affine;
  affine.insert("weight", random_f32({3, 7}, gen, 0.5f, 1.5f));
  affine.insert("bias", random_f32({3, 7}, gen));
  ln_cpu.load_state_dict(affine);
  mirror(ln_cpu, ln_gpu);
  step_and_compare(ln_cpu, ln_gpu, random_f32({4, 3, 7}, gen, -2.0f, 3.0f), gen, kTol, "LayerNorm");
}

TEST_F(LayersCuda, DropoutDrawsTheCpuMaskForTheSameSeedAndIsTheIdentityInEval) {
  std::mt19937_64 gen(51);
  Tensor x = random_f32({33, 17}, gen);
  nn::Dropout drop(0.4);
  manual_seed(5);
  Tensor y_cpu = drop(x);
  manual_seed(5);
  Tensor y_gpu = drop(x.to(gpu()));
  expect_gpu_matches_cpu(y_gpu, y_cpu, kTol, "train");
  drop.eval();
  EXPECT_EQ(drop(x.to(gpu())).cpu().to_vector<float>(), x.to_vector<float>());
}

TEST_F(LayersCuda, SmallCnnMatchesTheCpuEndToEnd) {
  std::mt19937_64 gen(61);
  manual_seed(61);
  auto make = [] {
    return nn::Sequential{nn::Conv2d(3, 8, 3, {.padding = "same"}),
                          nn::BatchNorm2d(8),
                          nn::ReLU(),
                          nn::MaxPool2d(2),
                          nn::Conv2d(8, 8, 3, {.stride = 2, .padding = 1, .groups = 2}),
                          nn::GELU(),
                          nn::AdaptiveAvgPool2d(1),
                          nn::Flatten(),
                          nn::Dropout(0.0),
                          nn::Linear(8, 5)};
  };
  nn::Sequential on_cpu = make();
  nn::Sequential on_gpu = make();
  mirror(on_cpu, on_gpu);
  step_and_compare(on_cpu, on_gpu, random_f32({3, 3, 15, 13}, gen), gen, kTolModel, "train");
  on_cpu.eval();
  on_gpu.eval();
  step_and_compare(on_cpu, on_gpu, random_f32({1, 3, 15, 13}, gen), gen, kTolModel,
                   "eval, batch 1");
}

TEST_F(LayersCuda, MovingBackToTheCpuKeepsTheValues) {
  manual_seed(71);
  nn::Conv2d conv(2, 3, 3);
  const auto before = conv.weight().to_vector<float>();
  Tensor w = conv.weight();
  conv.to(gpu());
  EXPECT_TRUE(w.is_cuda());
  EXPECT_TRUE(conv(zeros({1, 2, 4, 4}, {.device = gpu()})).is_cuda());
  conv.to(Device::cpu());
  EXPECT_FALSE(w.is_cuda());
  EXPECT_EQ(conv.weight().to_vector<float>(), before);
}
