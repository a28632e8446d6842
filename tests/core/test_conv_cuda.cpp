// conv2d through cuDNN against the CPU (im2col) path: forward and the gradients of x,
// weight and bias on random parameter combinations, with the heuristic, the measured
// search (benchmark mode), deterministic mode and TF32; the kernels with NaN-filled
// outputs; and the device errors.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "ember/core/autograd.h"
#include "ember/core/cuda_context.h"
#include "ember/core/device.h"
#include "ember/core/ops.h"
#include "ember/core/tensor.h"
#include "ember/kernels/cpu/conv.h"
#include "ember/kernels/cudnn/conv.h"

namespace {

using ember::Conv2dParams;
using ember::Device;
using ember::Shape;
using ember::Tensor;

// Tolerances, stated once, relative to the largest magnitude of the reference: float32
// with FMA math differs from the CPU only in summation order (and, for Winograd/FFT
// algorithms, by their transforms); TF32 keeps 10 mantissa bits.
constexpr double kTolFloat32 = 1e-4;
constexpr double kTolTf32 = 1e-2;

// Restores cuDNN's mode flags when a test ends.
class ModeGuard {
 public:
  ModeGuard(bool benchmark, bool deterministic, bool tf32)
      : benchmark_(ember::cuda::cudnn_benchmark()),
        deterministic_(ember::cuda::deterministic()),
        tf32_(ember::cuda::allow_tf32()) {
    ember::cuda::set_cudnn_benchmark(benchmark);
    ember::cuda::set_deterministic(deterministic);
    ember::cuda::set_allow_tf32(tf32);
  }
  ~ModeGuard() {
    ember::cuda::set_cudnn_benchmark(benchmark_);
    ember::cuda::set_deterministic(deterministic_);
    ember::cuda::set_allow_tf32(tf32_);
  }

 private:
  bool benchmark_, deterministic_, tf32_;
};

Tensor random_f32(const Shape& shape, std::mt19937_64& gen) {
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  std::vector<float> v(static_cast<size_t>(ember::shape_numel(shape)));
  for (auto& e : v) e = dist(gen);
  return Tensor::from_vector(v, shape);
}

struct Case {
  Shape x, w;
  Conv2dParams p;
  bool bias = true;
};

std::string describe(const Case& k) {
  return ember::detail::str_cat("x ", ember::shape_str(k.x), " w ", ember::shape_str(k.w),
                                " stride [", k.p.stride[0], ", ", k.p.stride[1], "] pad [",
                                k.p.padding[0], ", ", k.p.padding[1], "] dil [",
                                k.p.dilation[0], ", ", k.p.dilation[1], "] groups ",
                                k.p.groups, k.p.same ? " same" : "", k.bias ? " bias" : "");
}

// Random valid combinations: batch 1 to 3, odd sizes, strides, padding, dilation,
// groups (depthwise included), 'same' with odd and even kernels.
std::vector<Case> random_cases(int count, uint64_t seed) {
  std::mt19937_64 gen(seed);
  auto pick = [&gen](int64_t lo, int64_t hi) {
    return std::uniform_int_distribution<int64_t>(lo, hi)(gen);
  };
  std::vector<Case> cases;
  while (static_cast<int>(cases.size()) < count) {
    Case k;
    const int64_t groups = pick(1, 3);
    const int64_t cg = pick(1, 3), og = pick(1, 3);
    const bool depthwise = pick(0, 4) == 0;
    const int64_t c = depthwise ? groups : cg * groups;
    const int64_t o = og * groups;
    const int64_t h = pick(1, 13), w = pick(1, 13), kh = pick(1, 4), kw = pick(1, 4);
    k.x = {pick(1, 3), c, h, w};
    k.w = {o, c / groups, kh, kw};
    k.p.groups = groups;
    k.p.dilation = {pick(1, 2), pick(1, 2)};
    if (pick(0, 3) == 0) {
      k.p.same = true;
    } else {
      k.p.stride = {pick(1, 3), pick(1, 3)};
      k.p.padding = {pick(0, 2), pick(0, 2)};
    }
    k.bias = pick(0, 3) != 0;
    // Keep only kernels that fit the padded input.
    bool fits = true;
    for (int d = 0; d < 2; ++d) {
      const int64_t eff = k.p.dilation[d] * (k.w[2 + d] - 1) + 1;
      const int64_t padded = k.p.same ? k.x[2 + d] + eff - 1 : k.x[2 + d] + 2 * k.p.padding[d];
      fits = fits && eff <= padded;
    }
    if (fits) cases.push_back(k);
  }
  return cases;
}

void expect_close(const Tensor& got, const Tensor& want, double tol, const std::string& what) {
  ASSERT_TRUE(got.defined()) << what;
  ASSERT_TRUE(want.defined()) << what;
  ASSERT_EQ(got.shape(), want.shape()) << what;
  const auto g = got.to(Device::cpu()).contiguous().to_vector<float>();
  const auto w = want.to(Device::cpu()).contiguous().to_vector<float>();
  double scale = 1.0;
  for (float v : w) scale = std::max(scale, static_cast<double>(std::fabs(v)));
  for (size_t i = 0; i < g.size(); ++i) {
    ASSERT_TRUE(std::isfinite(g[i])) << what << " element " << i;
    ASSERT_NEAR(g[i], w[i], tol * scale) << what << " element " << i;
  }
}

struct Result {
  Tensor y, gx, gw, gb;
};

// Forward, then backward of sum(y * r) so every output element carries its own weight.
Result run(const Case& k, const Tensor& x0, const Tensor& w0, const Tensor& b0, const Tensor& r0,
           Device device) {
  // Fresh leaves on `device` (detach: on the CPU, to() returns the same tensor).
  Tensor x = x0.to(device).detach().requires_grad_();
  Tensor w = w0.to(device).detach().requires_grad_();
  Tensor b = k.bias ? b0.to(device).detach().requires_grad_() : Tensor();
  Tensor y = ember::conv2d(x, w, b, k.p);
  ember::sum(ember::mul(y, r0.to(device))).backward();
  return {y.detach(), x.grad(), w.grad(), k.bias ? b.grad() : Tensor()};
}

void check_parity(const std::vector<Case>& cases, double tol, uint64_t seed) {
  std::mt19937_64 gen(seed);
  for (const Case& k : cases) {
    SCOPED_TRACE(describe(k));
    Tensor x = random_f32(k.x, gen), w = random_f32(k.w, gen), b = random_f32({k.w[0]}, gen);
    const Tensor y_shape_probe = ember::conv2d(x, w, k.bias ? b : Tensor(), k.p);
    Tensor r = random_f32(y_shape_probe.shape(), gen);
    const Result cpu = run(k, x, w, b, r, Device::cpu());
    const Result gpu = run(k, x, w, b, r, Device::cuda(0));
    ASSERT_TRUE(gpu.y.is_cuda());
    expect_close(gpu.y, cpu.y, tol, "y");
    expect_close(gpu.gx, cpu.gx, tol, "grad_x");
    expect_close(gpu.gw, cpu.gw, tol, "grad_weight");
    if (k.bias) expect_close(gpu.gb, cpu.gb, tol, "grad_bias");
  }
}

}  // namespace

TEST(Conv2dCuda, MatchesCpuWithHeuristicAlgorithms) {
  if (!ember::cuda::is_available()) GTEST_SKIP() << "no CUDA device: " << ember::cuda::unavailable_reason();
  ModeGuard mode(false, false, false);
  check_parity(random_cases(40, 1), kTolFloat32, 11);
}

TEST(Conv2dCuda, MatchesCpuWithMeasuredAlgorithmsInBenchmarkMode) {
  if (!ember::cuda::is_available()) GTEST_SKIP() << "no CUDA device: " << ember::cuda::unavailable_reason();
  ModeGuard mode(true, false, false);
  check_parity(random_cases(25, 2), kTolFloat32, 12);
}

TEST(Conv2dCuda, MatchesCpuInDeterministicMode) {
  if (!ember::cuda::is_available()) GTEST_SKIP() << "no CUDA device: " << ember::cuda::unavailable_reason();
  {
    ModeGuard mode(false, true, false);
    check_parity(random_cases(25, 3), kTolFloat32, 13);
  }
  {
    ModeGuard mode(true, true, false);
    check_parity(random_cases(15, 4), kTolFloat32, 14);
  }
}

TEST(Conv2dCuda, MatchesCpuWithinTf32PrecisionWhenTf32IsAllowed) {
  if (!ember::cuda::is_available()) GTEST_SKIP() << "no CUDA device: " << ember::cuda::unavailable_reason();
  ModeGuard mode(false, false, true);
  check_parity(random_cases(15, 5), kTolTf32, 15);
}

TEST(Conv2dCuda, MatchesCpuOnLargerLayers) {
  if (!ember::cuda::is_available()) GTEST_SKIP() << "no CUDA device: " << ember::cuda::unavailable_reason();
  // Shapes of a small CNN, where cuDNN picks its fast (Winograd, FFT, tensor-op) paths.
  const std::vector<Case> cases = {
      {{16, 1, 28, 28}, {32, 1, 3, 3}, {}},
      {{16, 32, 13, 13}, {64, 32, 3, 3}, {}},
      {{8, 64, 16, 16}, {64, 64, 3, 3}, {.padding = {1, 1}}},
      {{8, 32, 15, 15}, {32, 1, 5, 5}, {.groups = 32, .same = true}},
      {{4, 16, 32, 32}, {32, 16, 1, 1}, {.stride = {2, 2}}},
  };
  for (bool benchmark : {false, true}) {
    ModeGuard mode(benchmark, false, false);
    check_parity(cases, 5e-4, 16);
  }
}

TEST(Conv2dCuda, DeterministicModeRepeatsGradientsBitForBit) {
  if (!ember::cuda::is_available()) GTEST_SKIP() << "no CUDA device: " << ember::cuda::unavailable_reason();
  ModeGuard mode(false, true, false);
  const Case k{{8, 16, 14, 14}, {32, 16, 3, 3}, {.padding = {1, 1}}};
  std::mt19937_64 gen(7);
  Tensor x = random_f32(k.x, gen), w = random_f32(k.w, gen), b = random_f32({32}, gen);
  Tensor r = random_f32({8, 32, 14, 14}, gen);
  const Result a = run(k, x, w, b, r, Device::cuda(0));
  const Result c = run(k, x, w, b, r, Device::cuda(0));
  EXPECT_EQ(a.y.to_vector<float>(), c.y.to_vector<float>());
  EXPECT_EQ(a.gx.to_vector<float>(), c.gx.to_vector<float>());
  EXPECT_EQ(a.gw.to_vector<float>(), c.gw.to_vector<float>());
  EXPECT_EQ(a.gb.to_vector<float>(), c.gb.to_vector<float>());
}

TEST(Conv2dCuda, KernelsOverwriteGarbageInTheirOutputs) {
  if (!ember::cuda::is_available()) GTEST_SKIP() << "no CUDA device: " << ember::cuda::unavailable_reason();
  // The cuDNN entry points directly, outputs pre-filled with NaN; the CPU twin is the
  // reference.
  namespace kc = ember::kernels;
  kc::ConvShape s;
  s.n = 2; s.c = 4; s.h = 9; s.w = 7; s.o = 6; s.kh = 3; s.kw = 2;
  s.pad_h = 1; s.pad_w = 1; s.stride_h = 2; s.stride_w = 1; s.dil_h = 1; s.dil_w = 2;
  s.groups = 2;
  s.out_h = kc::conv_out_size(s.h, s.kh, s.pad_h, s.stride_h, s.dil_h);
  s.out_w = kc::conv_out_size(s.w, s.kw, s.pad_w, s.stride_w, s.dil_w);
  std::mt19937_64 gen(3);
  Tensor x = random_f32({s.n, s.c, s.h, s.w}, gen), w = random_f32({s.o, s.c / s.groups, s.kh, s.kw}, gen);
  Tensor b = random_f32({s.o}, gen), dy = random_f32({s.n, s.o, s.out_h, s.out_w}, gen);
  const float nan = std::numeric_limits<float>::quiet_NaN();
  Tensor y_ref = ember::empty(dy.shape()), dx_ref = ember::empty(x.shape()), dw_ref = ember::empty(w.shape());
  kc::cpu::conv2d_forward(s, x.data<float>(), w.data<float>(), b.data<float>(), y_ref.data<float>());
  kc::cpu::conv2d_backward_data(s, w.data<float>(), dy.data<float>(), dx_ref.data<float>());
  kc::cpu::conv2d_backward_filter(s, x.data<float>(), dy.data<float>(), dw_ref.data<float>());

  const Device gpu = Device::cuda(0);
  Tensor xg = x.to(gpu), wg = w.to(gpu), bg = b.to(gpu), dyg = dy.to(gpu);
  Tensor y = ember::full(dy.shape(), nan, {.device = gpu});
  Tensor dx = ember::full(x.shape(), nan, {.device = gpu});
  Tensor dw = ember::full(w.shape(), nan, {.device = gpu});
  cudnnHandle_t h = ember::cuda::cudnn_handle(0);
  const kc::cudnn::ConvPolicy policy{};
  auto workspace = [&](size_t bytes) {
    return ember::empty({static_cast<int64_t>(std::max<size_t>(bytes, 1))},
                        {.dtype = ember::kUInt8, .device = gpu});
  };
  size_t bytes = kc::cudnn::conv2d_forward_workspace(h, s, policy, xg.data<float>(), wg.data<float>(),
                                                     y.data<float>(), nullptr);
  Tensor ws = workspace(bytes);
  kc::cudnn::conv2d_forward(h, s, policy, xg.data<float>(), wg.data<float>(), bg.data<float>(),
                            y.data<float>(), ws.data_ptr(), bytes);
  bytes = kc::cudnn::conv2d_backward_data_workspace(h, s, policy, wg.data<float>(), dyg.data<float>(),
                                                    dx.data<float>(), nullptr);
  ws = workspace(bytes);
  kc::cudnn::conv2d_backward_data(h, s, policy, wg.data<float>(), dyg.data<float>(), dx.data<float>(),
                                  ws.data_ptr(), bytes);
  bytes = kc::cudnn::conv2d_backward_filter_workspace(h, s, policy, xg.data<float>(), dyg.data<float>(),
                                                      dw.data<float>(), nullptr);
  ws = workspace(bytes);
  kc::cudnn::conv2d_backward_filter(h, s, policy, xg.data<float>(), dyg.data<float>(),
                                    dw.data<float>(), ws.data_ptr(), bytes);
  expect_close(y, y_ref, kTolFloat32, "forward");
  expect_close(dx, dx_ref, kTolFloat32, "backward data");
  expect_close(dw, dw_ref, kTolFloat32, "backward filter");
}

TEST(Conv2dCuda, AcceptsNonContiguousAndEmptyInputs) {
  if (!ember::cuda::is_available()) GTEST_SKIP() << "no CUDA device: " << ember::cuda::unavailable_reason();
  std::mt19937_64 gen(9);
  Tensor x = random_f32({2, 3, 6, 5}, gen), w = random_f32({4, 3, 3, 3}, gen);
  Tensor xt = x.to(Device::cuda(0)).transpose(2, 3).contiguous().transpose(2, 3);
  ASSERT_FALSE(xt.is_contiguous());
  expect_close(ember::conv2d(xt, w.to(Device::cuda(0))), ember::conv2d(x, w), kTolFloat32,
               "non-contiguous");

  Tensor empty_batch = ember::zeros({0, 3, 6, 5}, {.device = Device::cuda(0)});
  EXPECT_EQ(ember::conv2d(empty_batch, w.to(Device::cuda(0))).shape(), (Shape{0, 4, 4, 3}));
}

TEST(Conv2dCuda, RejectsTensorsOnDifferentDevices) {
  if (!ember::cuda::is_available()) GTEST_SKIP() << "no CUDA device: " << ember::cuda::unavailable_reason();
  Tensor x = ember::zeros({1, 2, 5, 5});
  Tensor w = ember::zeros({3, 2, 3, 3}, {.device = Device::cuda(0)});
  try {
    ember::conv2d(x, w);
    FAIL() << "no exception";
  } catch (const ember::DeviceError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("conv2d"), std::string::npos) << msg;
    EXPECT_NE(msg.find("[1, 2, 5, 5]"), std::string::npos) << msg;
    EXPECT_NE(msg.find("[3, 2, 3, 3]"), std::string::npos) << msg;
  }
  // The bias on the CPU, x and weight on the GPU.
  EXPECT_THROW(ember::conv2d(ember::zeros({1, 3, 4, 4}, {.device = Device::cuda(0)}),
                             ember::zeros({2, 3, 1, 1}, {.device = Device::cuda(0)}),
                             ember::zeros({2})),
               ember::DeviceError);
}
