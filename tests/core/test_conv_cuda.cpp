// conv2d through cuDNN against the CPU (im2col) path: forward and the gradients of x,
// weight and bias on random parameter combinations, with the heuristic, the measured
// search (benchmark mode), deterministic mode and TF32; the kernels with NaN-filled
// outputs; and the device errors. Skipped, with the reason, without a GPU. (The tests that
// run on every device, CUDA included, are the Conv2dOnDevice ones in test_conv.cpp.)
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "ember/core/autograd.h"
#include "ember/core/cuda_context.h"
#include "ember/core/device.h"
#include "ember/core/memory/caching_allocator.h"
#include "ember/core/memory/cuda_memory.h"
#include "ember/core/ops.h"
#include "ember/core/tensor.h"
#include "ember/kernels/cpu/conv.h"
#include "ember/kernels/cuda/conv.cuh"

#include "core/conv_case.h"
#include "support/allclose.h"
#include "support/device.h"
#include "support/random.h"

namespace {

using ember::Conv2dParams;
using ember::Device;
using ember::Shape;
using ember::Tensor;
using namespace ember::testing;
using Case = ember::testing::ConvCase;

// Tolerances relative to the largest magnitude of the reference (allclose_to_largest):
// float32 with FMA math differs from the CPU only in summation order (and, for
// Winograd/FFT algorithms, by their transforms), which kFloat32Tol's rtol covers; TF32
// keeps 10 mantissa bits.
constexpr double kTolFloat32 = kFloat32Tol.rtol;
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
    Tensor x = uniform_f32(k.x, gen), w = uniform_f32(k.w, gen), b = uniform_f32({k.w[0]}, gen);
    const Tensor y_shape_probe = ember::conv2d(x, w, k.bias ? b : Tensor(), k.p);
    Tensor r = uniform_f32(y_shape_probe.shape(), gen);
    const Result cpu = run(k, x, w, b, r, Device::cpu());
    const Result gpu = run(k, x, w, b, r, Device::cuda(0));
    ASSERT_TRUE(gpu.y.is_cuda());
    EXPECT_TRUE(allclose_to_largest(gpu.y, cpu.y, tol)) << "y";
    EXPECT_TRUE(allclose_to_largest(gpu.gx, cpu.gx, tol)) << "grad_x";
    EXPECT_TRUE(allclose_to_largest(gpu.gw, cpu.gw, tol)) << "grad_weight";
    if (k.bias) {
      EXPECT_TRUE(allclose_to_largest(gpu.gb, cpu.gb, tol)) << "grad_bias";
    }
  }
}

}  // namespace

TEST(Conv2dCuda, MatchesCpuWithHeuristicAlgorithms) {
  EMBER_SKIP_WITHOUT_GPU();
  ModeGuard mode(false, false, false);
  check_parity(random_cases(40, 1), kTolFloat32, 11);
}

TEST(Conv2dCuda, MatchesCpuWithMeasuredAlgorithmsInBenchmarkMode) {
  EMBER_SKIP_WITHOUT_GPU();
  ModeGuard mode(true, false, false);
  check_parity(random_cases(25, 2), kTolFloat32, 12);
}

TEST(Conv2dCuda, MatchesCpuInDeterministicMode) {
  EMBER_SKIP_WITHOUT_GPU();
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
  EMBER_SKIP_WITHOUT_GPU();
  ModeGuard mode(false, false, true);
  check_parity(random_cases(15, 5), kTolTf32, 15);
}

TEST(Conv2dCuda, MatchesCpuOnLargerLayers) {
  EMBER_SKIP_WITHOUT_GPU();
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
  EMBER_SKIP_WITHOUT_GPU();
  ModeGuard mode(false, true, false);
  const Case k{{8, 16, 14, 14}, {32, 16, 3, 3}, {.padding = {1, 1}}};
  std::mt19937_64 gen(7);
  Tensor x = uniform_f32(k.x, gen), w = uniform_f32(k.w, gen), b = uniform_f32({32}, gen);
  Tensor r = uniform_f32({8, 32, 14, 14}, gen);
  const Result a = run(k, x, w, b, r, Device::cuda(0));
  const Result c = run(k, x, w, b, r, Device::cuda(0));
  EXPECT_EQ(a.y.to_vector<float>(), c.y.to_vector<float>());
  EXPECT_EQ(a.gx.to_vector<float>(), c.gx.to_vector<float>());
  EXPECT_EQ(a.gw.to_vector<float>(), c.gw.to_vector<float>());
  EXPECT_EQ(a.gb.to_vector<float>(), c.gb.to_vector<float>());
}

TEST(Conv2dCuda, KernelsOverwriteGarbageInTheirOutputs) {
  EMBER_SKIP_WITHOUT_GPU();
  // The CUDA twins directly (heuristic choice, FMA math), outputs pre-filled with NaN;
  // the CPU twins are the reference.
  namespace kc = ember::kernels;
  kc::ConvShape s;
  s.n = 2; s.c = 4; s.h = 9; s.w = 7; s.o = 6; s.kh = 3; s.kw = 2;
  s.pad_h = 1; s.pad_w = 1; s.stride_h = 2; s.stride_w = 1; s.dil_h = 1; s.dil_w = 2;
  s.groups = 2;
  s.out_h = kc::conv_out_size(s.h, s.kh, s.pad_h, s.stride_h, s.dil_h);
  s.out_w = kc::conv_out_size(s.w, s.kw, s.pad_w, s.stride_w, s.dil_w);
  std::mt19937_64 gen(3);
  Tensor x = uniform_f32({s.n, s.c, s.h, s.w}, gen),
         w = uniform_f32({s.o, s.c / s.groups, s.kh, s.kw}, gen);
  Tensor b = uniform_f32({s.o}, gen), dy = uniform_f32({s.n, s.o, s.out_h, s.out_w}, gen);
  const float nan = std::numeric_limits<float>::quiet_NaN();
  Tensor y_ref = ember::empty(dy.shape()), dx_ref = ember::empty(x.shape()), dw_ref = ember::empty(w.shape());
  // The CPU loops take no scratch.
  kc::cpu::conv2d_forward({}, s, x.data<float>(), w.data<float>(), b.data<float>(),
                          y_ref.data<float>(), {});
  kc::cpu::conv2d_backward_data({}, s, w.data<float>(), dy.data<float>(), dx_ref.data<float>(),
                                {});
  kc::cpu::conv2d_backward_filter({}, s, x.data<float>(), dy.data<float>(),
                                  dw_ref.data<float>(), {});

  const Device gpu = Device::cuda(0);
  Tensor xg = x.to(gpu), wg = w.to(gpu), bg = b.to(gpu), dyg = dy.to(gpu);
  Tensor y = ember::full(dy.shape(), nan, {.device = gpu});
  Tensor dx = ember::full(x.shape(), nan, {.device = gpu});
  Tensor dw = ember::full(w.shape(), nan, {.device = gpu});
  // Workspace for the twins: one buffer at a time, as kernels/scratch.h asks.
  Tensor held;
  const kc::Scratch scratch = [&held, gpu](size_t bytes) -> void* {
    held = Tensor();
    if (bytes == 0) return nullptr;
    held = ember::empty({static_cast<int64_t>(bytes)}, {.dtype = ember::kUInt8, .device = gpu});
    return held.data_ptr();
  };
  kc::cuda::Context ctx = ember::cuda::kernel_context(0);
  ctx.cudnn_benchmark = false;
  ctx.deterministic = false;
  ctx.allow_tf32 = false;
  kc::cuda::conv2d_forward(ctx, s, xg.data<float>(), wg.data<float>(), bg.data<float>(),
                           y.data<float>(), scratch);
  kc::cuda::conv2d_backward_data(ctx, s, wg.data<float>(), dyg.data<float>(), dx.data<float>(),
                                 scratch);
  kc::cuda::conv2d_backward_filter(ctx, s, xg.data<float>(), dyg.data<float>(), dw.data<float>(),
                                   scratch);
  EXPECT_TRUE(allclose_to_largest(y, y_ref, kTolFloat32)) << "forward";
  EXPECT_TRUE(allclose_to_largest(dx, dx_ref, kTolFloat32)) << "backward data";
  EXPECT_TRUE(allclose_to_largest(dw, dw_ref, kTolFloat32)) << "backward filter";
}

TEST(Conv2dCuda, RejectsTensorsOnDifferentDevices) {
  EMBER_SKIP_WITHOUT_GPU();
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

// Note [cuDNN handles per thread]: each thread has its own handle, a thread that ends hands
// its handle to the next one, and convolutions from several threads at once (sharing the
// plans) all give the single-threaded result.
TEST(Conv2dCuda, EachThreadHasItsOwnCudnnHandle) {
  EMBER_SKIP_WITHOUT_GPU();
  const cudnnHandle_t mine = ember::cuda::cudnn_handle(0);
  EXPECT_EQ(ember::cuda::cudnn_handle(0), mine);
  EXPECT_EQ(ember::cuda::kernel_context(0).cudnn, mine);
  cudnnHandle_t other = nullptr;
  std::thread([&] { other = ember::cuda::cudnn_handle(0); }).join();
  EXPECT_NE(other, nullptr);
  EXPECT_NE(other, mine);
  cudnnHandle_t reused = nullptr;
  std::thread([&] { reused = ember::cuda::cudnn_handle(0); }).join();
  EXPECT_EQ(reused, other) << "a finished thread's handle is handed to the next thread";
}

TEST(Conv2dCuda, ConcurrentThreadsMatchOneThread) {
  EMBER_SKIP_WITHOUT_GPU();
  const Device gpu = Device::cuda(0);
  Tensor x = ember::randn({4, 3, 12, 12}).to(gpu);
  Tensor w = ember::randn({8, 3, 3, 3}).to(gpu);
  Conv2dParams params;
  params.padding = {1, 1};
  const std::vector<float> expected = ember::conv2d(x, w, Tensor(), params).to_vector<float>();
  constexpr int kThreads = 4;
  std::vector<std::vector<float>> got(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      Tensor y;
      for (int i = 0; i < 20; ++i) y = ember::conv2d(x, w, Tensor(), params);
      got[t] = y.to_vector<float>();
    });
  }
  for (auto& th : threads) th.join();
  for (int t = 0; t < kThreads; ++t) EXPECT_EQ(got[t], expected) << "thread " << t;
}

// Note [Conv search workspace]: the measured search's workspace (up to 1 GiB) does not
// stay in the pool's cache after the first benchmark-mode call of a shape.
TEST(Conv2dCuda, BenchmarkSearchDoesNotLeaveItsWorkspaceCached) {
  EMBER_SKIP_WITHOUT_GPU();
  ModeGuard mode(/*benchmark=*/true, false, false);
  const Device gpu = Device::cuda(0);
  Tensor x = ember::randn({32, 64, 56, 56}).to(gpu).requires_grad_(true);
  Tensor w = ember::randn({64, 64, 3, 3}).to(gpu).requires_grad_(true);
  ember::cuda::empty_cache();
  Conv2dParams params;
  params.padding = {1, 1};
  ember::conv2d(x, w, Tensor(), params).sum().backward();
  ember::cuda::synchronize();
  const ember::memory::AllocatorStats st = ember::cuda::memory_stats(0);
  EXPECT_LE(st.reserved_bytes - st.allocated_bytes, size_t{80} << 20)
      << "cached but free after the search: " << ember::memory::format_size(
             st.reserved_bytes - st.allocated_bytes);
}
