// Pooling and normalization on the GPU against the CPU: forward, gradients and running
// statistics of every op on random shapes (batch 1, odd sizes, ceil mode on both the cuDNN
// and the hand-written path), the kernels alone with NaN-filled outputs, and the device
// errors. Skipped, with the reason, when there is no GPU.
#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "ember/core/autograd.h"
#include "ember/core/base/cuda_check.h"
#include "ember/core/cuda_context.h"
#include "ember/core/device.h"
#include "ember/core/base/error.h"
#include "ember/core/ops.h"
#include "ember/core/tensor.h"
#include "ember/kernels/cpu/norm.h"
#include "ember/kernels/cpu/pool.h"
#include "ember/kernels/cuda/norm.cuh"
#include "ember/kernels/cuda/pool.cuh"
#include "ember/kernels/cudnn/pool.h"

namespace {

using ember::Device;
using ember::Pool2dParams;
using ember::Shape;
using ember::Tensor;

// Tolerance, stated once, relative to the largest magnitude of the reference: the GPU
// sums in float and in another order than the CPU, which sums in double.
constexpr double kTol = 1e-4;

Tensor random_f32(const Shape& shape, std::mt19937_64& gen, float lo = -1.0f, float hi = 1.0f) {
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<float> v(static_cast<size_t>(ember::shape_numel(shape)));
  for (auto& e : v) e = dist(gen);
  return Tensor::from_vector(v, shape);
}

int64_t pick(std::mt19937_64& gen, int64_t lo, int64_t hi) {
  return std::uniform_int_distribution<int64_t>(lo, hi)(gen);
}

// Compares a GPU result with the CPU reference, relative to the reference's largest
// magnitude (a NaN in either is a mismatch unless both are NaN).
void expect_close(const Tensor& gpu, const Tensor& cpu, const std::string& what) {
  ASSERT_TRUE(gpu.defined() && cpu.defined()) << what;
  ASSERT_EQ(gpu.shape(), cpu.shape()) << what;
  const auto g = gpu.cpu().contiguous().to_vector<float>();
  const auto c = cpu.contiguous().to_vector<float>();
  double scale = 1.0;
  for (float v : c) scale = std::max(scale, static_cast<double>(std::fabs(v)));
  int reported = 0;
  for (size_t i = 0; i < c.size(); ++i) {
    const bool ok = (std::isnan(c[i]) && std::isnan(g[i])) ||
                    std::fabs(static_cast<double>(g[i]) - c[i]) <= kTol * scale;
    if (!ok && reported++ < 5) {
      ADD_FAILURE() << what << " element " << i << ": gpu " << g[i] << ", cpu " << c[i];
    }
  }
}

// Allocates and frees a NaN-filled block so the pool hands its bytes to the next
// allocations: an output element a kernel forgets to write then shows up as NaN. (The
// kernel tests below fill their outputs explicitly.)
void poison_pool() {
  Tensor junk =
      ember::full({1 << 22}, std::numeric_limits<double>::quiet_NaN(), {.device = Device::cuda(0)});
  ember::cuda::synchronize(0);
}

struct Grads {
  Tensor y, gx;
};

// Runs `op` on a CPU copy and a GPU copy of x, backpropagates the same random gradient
// and compares output and input gradient.
template <typename Op>
void check_parity(const Tensor& x_cpu, Op&& op, std::mt19937_64& gen, const std::string& what) {
  Tensor xc = x_cpu.clone().requires_grad_();
  Tensor xg = x_cpu.to(Device::cuda(0)).requires_grad_();
  poison_pool();
  Tensor yc = op(xc), yg = op(xg);
  expect_close(yg, yc, what + " forward");
  Tensor gy = random_f32(yc.shape(), gen);
  yc.backward(gy);
  yg.backward(gy.to(Device::cuda(0)));
  expect_close(xg.grad(), xc.grad(), what + " grad_x");
}

std::string pool_str(const Shape& x, const Pool2dParams& p) {
  return ember::detail::str_cat(ember::shape_str(x), " k[", p.kernel[0], ",", p.kernel[1], "] s[",
                                p.stride[0], ",", p.stride[1], "] p[", p.padding[0], ",",
                                p.padding[1], "] ceil=", p.ceil_mode,
                                " include_pad=", p.count_include_pad);
}

// A random valid pooling problem; about half use ceil mode.
void random_pool_case(std::mt19937_64& gen, Shape* xs, Pool2dParams* p) {
  p->kernel = {pick(gen, 1, 4), pick(gen, 1, 4)};
  p->stride = {pick(gen, 0, 3), pick(gen, 0, 3)};
  p->padding = {pick(gen, 0, p->kernel[0] / 2), pick(gen, 0, p->kernel[1] / 2)};
  p->ceil_mode = pick(gen, 0, 1) == 1;
  p->count_include_pad = pick(gen, 0, 1) == 1;
  *xs = {pick(gen, 1, 3), pick(gen, 1, 5), pick(gen, p->kernel[0], 13),
         pick(gen, p->kernel[1], 13)};
}

// ---- pooling ------------------------------------------------------------------------------

TEST(Pool2dCuda, MaxAndAvgMatchTheCpuOnRandomShapes) {
  if (!ember::cuda::is_available())
    GTEST_SKIP() << "no CUDA device: " << ember::cuda::unavailable_reason();
  std::mt19937_64 gen(1);
  for (int i = 0; i < 60; ++i) {
    Shape xs;
    Pool2dParams p;
    random_pool_case(gen, &xs, &p);
    Tensor x = random_f32(xs, gen);
    check_parity(
        x, [&](const Tensor& t) { return ember::max_pool2d(t, p); }, gen,
        "max_pool2d " + pool_str(xs, p));
    check_parity(
        x, [&](const Tensor& t) { return ember::avg_pool2d(t, p); }, gen,
        "avg_pool2d " + pool_str(xs, p));
  }
}

TEST(Pool2dCuda, CeilModeThatAddsAWindowMatchesTheCpu) {
  if (!ember::cuda::is_available())
    GTEST_SKIP() << "no CUDA device: " << ember::cuda::unavailable_reason();
  std::mt19937_64 gen(2);
  // Each of these has a ceil-mode window past the bottom/right padding (the hand-written
  // kernels) and, with ceil_mode off, the same problem through cuDNN.
  const std::vector<std::pair<Shape, Pool2dParams>> cases{
      {{2, 3, 7, 7}, {.kernel = {3, 2}, .stride = {2, 3}, .padding = {1, 0}, .ceil_mode = true}},
      {{1, 2, 6, 6}, {.kernel = {3, 3}, .stride = {2, 2}, .padding = {1, 1}, .ceil_mode = true}},
      {{1, 1, 5, 8}, {.kernel = {2, 4}, .stride = {1, 3}, .padding = {1, 2}, .ceil_mode = true}},
      {{3, 4, 9, 11}, {.kernel = {2, 2}, .ceil_mode = true}},
  };
  for (auto [xs, p] : cases) {
    for (bool ceil : {true, false}) {
      for (bool include : {true, false}) {
        p.ceil_mode = ceil;
        p.count_include_pad = include;
        Tensor x = random_f32(xs, gen);
        check_parity(
            x, [&](const Tensor& t) { return ember::max_pool2d(t, p); }, gen,
            "max_pool2d " + pool_str(xs, p));
        check_parity(
            x, [&](const Tensor& t) { return ember::avg_pool2d(t, p); }, gen,
            "avg_pool2d " + pool_str(xs, p));
      }
    }
  }
}

TEST(Pool2dCuda, DeterministicMaxPoolingMatchesTheCpu) {
  if (!ember::cuda::is_available())
    GTEST_SKIP() << "no CUDA device: " << ember::cuda::unavailable_reason();
  const bool prev = ember::cuda::deterministic();
  ember::cuda::set_deterministic(true);
  std::mt19937_64 gen(3);
  Pool2dParams p{.kernel = {3, 3}, .stride = {1, 1}, .padding = {1, 1}};  // overlapping
  Tensor x = random_f32({2, 3, 8, 9}, gen);
  check_parity(
      x, [&](const Tensor& t) { return ember::max_pool2d(t, p); }, gen, "deterministic");
  ember::cuda::set_deterministic(prev);
}

TEST(Pool2dCuda, NonContiguousInputAndEmptyBatch) {
  if (!ember::cuda::is_available())
    GTEST_SKIP() << "no CUDA device: " << ember::cuda::unavailable_reason();
  std::mt19937_64 gen(4);
  Tensor base = random_f32({2, 6, 7, 3}, gen).to(Device::cuda(0));
  Tensor x = base.permute({0, 3, 1, 2});  // [2, 3, 6, 7], strided
  Pool2dParams p{.kernel = {2, 3}, .stride = {2, 1}, .padding = {1, 1}};
  expect_close(ember::max_pool2d(x, p), ember::max_pool2d(x.cpu(), p), "permuted max");
  expect_close(ember::avg_pool2d(x, p), ember::avg_pool2d(x.cpu(), p), "permuted avg");
  Tensor empty = ember::zeros({0, 3, 6, 6}, {.device = Device::cuda(0)}).requires_grad_();
  Tensor y = ember::max_pool2d(empty);
  EXPECT_EQ(y.shape(), (Shape{0, 3, 3, 3}));
  y.sum().backward();
  EXPECT_EQ(empty.grad().shape(), empty.shape());
}

TEST(AdaptiveAvgPool2dCuda, MatchesTheCpuIncludingGlobalPooling) {
  if (!ember::cuda::is_available())
    GTEST_SKIP() << "no CUDA device: " << ember::cuda::unavailable_reason();
  std::mt19937_64 gen(5);
  struct Case {
    Shape x;
    std::array<int64_t, 2> out;
  };
  std::vector<Case> cases{{{1, 1, 1, 1}, {1, 1}}, {{3, 7, 5, 5}, {1, 1}}, {{2, 64, 17, 13}, {1, 1}},
                          {{1, 3, 5, 7}, {3, 4}}, {{2, 2, 3, 3}, {5, 5}}, {{1, 2, 9, 2}, {4, 1}}};
  for (int i = 0; i < 20; ++i) {
    cases.push_back({{pick(gen, 1, 3), pick(gen, 1, 4), pick(gen, 1, 15), pick(gen, 1, 15)},
                     {pick(gen, 1, 8), pick(gen, 1, 8)}});
  }
  for (const Case& c : cases) {
    Tensor x = random_f32(c.x, gen);
    check_parity(
        x, [&](const Tensor& t) { return ember::adaptive_avg_pool2d(t, c.out); }, gen,
        ember::detail::str_cat("adaptive ", ember::shape_str(c.x), " -> [", c.out[0], ", ",
                               c.out[1], "]"));
  }
}

// ---- batch norm ---------------------------------------------------------------------------

TEST(BatchNormCuda, TrainingForwardGradientsAndRunningStatsMatchTheCpu) {
  if (!ember::cuda::is_available())
    GTEST_SKIP() << "no CUDA device: " << ember::cuda::unavailable_reason();
  std::mt19937_64 gen(6);
  const std::vector<Shape> shapes{{2, 3},       {7, 5},       {1, 4, 3},    {3, 2, 9},
                                  {1, 3, 1, 2}, {2, 4, 5, 7}, {5, 1, 3, 3}, {2, 3, 2, 2, 3}};
  for (const Shape& xs : shapes) {
    for (bool affine : {true, false}) {
      const int64_t c = xs[1];
      const Device gpu = Device::cuda(0);
      Tensor rm_c = random_f32({c}, gen), rv_c = random_f32({c}, gen, 0.5f, 2.0f);
      Tensor rm_g = rm_c.to(gpu), rv_g = rv_c.to(gpu);
      Tensor w_c, b_c, w_g, b_g;
      if (affine) {
        w_c = random_f32({c}, gen, 0.5f, 1.5f).requires_grad_();
        b_c = random_f32({c}, gen).requires_grad_();
        w_g = w_c.detach().to(gpu).requires_grad_();
        b_g = b_c.detach().to(gpu).requires_grad_();
      }
      const std::string what = ember::shape_str(xs) + (affine ? " affine" : " plain");
      for (int step = 0; step < 2; ++step) {
        Tensor x = random_f32(xs, gen, -2.0f, 3.0f);
        Tensor xc = x.clone().requires_grad_(), xg = x.to(gpu).requires_grad_();
        poison_pool();
        Tensor yc = ember::batch_norm(xc, rm_c, rv_c, w_c, b_c, true, 0.1, 1e-5);
        Tensor yg = ember::batch_norm(xg, rm_g, rv_g, w_g, b_g, true, 0.1, 1e-5);
        expect_close(yg, yc, what + " forward");
        Tensor gy = random_f32(xs, gen);
        yc.backward(gy);
        yg.backward(gy.to(gpu));
        expect_close(xg.grad(), xc.grad(), what + " grad_x");
        if (affine) {
          expect_close(w_g.grad(), w_c.grad(), what + " grad_weight");
          expect_close(b_g.grad(), b_c.grad(), what + " grad_bias");
          w_c.set_grad(Tensor());
          b_c.set_grad(Tensor());
          w_g.set_grad(Tensor());
          b_g.set_grad(Tensor());
        }
        expect_close(rm_g, rm_c, what + " running_mean step " + std::to_string(step));
        expect_close(rv_g, rv_c, what + " running_var step " + std::to_string(step));
      }
      // Eval mode with the statistics just accumulated.
      Tensor x = random_f32(xs, gen);
      Tensor xc = x.clone().requires_grad_(), xg = x.to(gpu).requires_grad_();
      Tensor yc = ember::batch_norm(xc, rm_c, rv_c, w_c, b_c, false);
      Tensor yg = ember::batch_norm(xg, rm_g, rv_g, w_g, b_g, false);
      expect_close(yg, yc, what + " eval forward");
      Tensor gy = random_f32(xs, gen);
      yc.backward(gy);
      yg.backward(gy.to(gpu));
      expect_close(xg.grad(), xc.grad(), what + " eval grad_x");
      if (affine) expect_close(w_g.grad(), w_c.grad(), what + " eval grad_weight");
    }
  }
}

TEST(BatchNormCuda, RunningStatsOnAnotherDeviceAreAnError) {
  if (!ember::cuda::is_available())
    GTEST_SKIP() << "no CUDA device: " << ember::cuda::unavailable_reason();
  Tensor x = ember::zeros({4, 3}, {.device = Device::cuda(0)});
  try {
    ember::batch_norm(x, ember::zeros({3}), ember::ones({3}), Tensor(), Tensor(), true);
    FAIL() << "expected a DeviceError";
  } catch (const ember::DeviceError& e) {
    EXPECT_EQ(std::string(e.what()),
              "batch_norm: running_mean is on cpu but the input [4, 3] is on cuda:0 (move it "
              "with .to(device))");
  }
  EXPECT_THROW(ember::batch_norm(x, Tensor(), Tensor(), ember::ones({3}), Tensor(), true),
               ember::DeviceError);
}

// ---- layer norm ---------------------------------------------------------------------------

TEST(LayerNormCuda, ForwardAndGradientsMatchTheCpu) {
  if (!ember::cuda::is_available())
    GTEST_SKIP() << "no CUDA device: " << ember::cuda::unavailable_reason();
  std::mt19937_64 gen(7);
  const std::vector<std::pair<Shape, Shape>> cases{
      {{1, 1}, {1}},          {{3, 7}, {7}},     {{2, 5, 256}, {256}}, {{4, 1030}, {1030}},
      {{2, 3, 4, 5}, {4, 5}}, {{130, 33}, {33}}, {{1, 4097}, {4097}},  {{0, 8}, {8}}};
  const Device gpu = Device::cuda(0);
  for (const auto& [xs, ns] : cases) {
    for (bool affine : {true, false}) {
      Tensor w_c, b_c, w_g, b_g;
      if (affine) {
        w_c = random_f32(ns, gen, 0.5f, 1.5f).requires_grad_();
        b_c = random_f32(ns, gen).requires_grad_();
        w_g = w_c.detach().to(gpu).requires_grad_();
        b_g = b_c.detach().to(gpu).requires_grad_();
      }
      const std::string what = ember::shape_str(xs) + " over " + ember::shape_str(ns);
      Tensor x = random_f32(xs, gen, -2.0f, 3.0f);
      Tensor xc = x.clone().requires_grad_(), xg = x.to(gpu).requires_grad_();
      poison_pool();
      Tensor yc = ember::layer_norm(xc, ns, w_c, b_c), yg = ember::layer_norm(xg, ns, w_g, b_g);
      expect_close(yg, yc, what + " forward");
      Tensor gy = random_f32(xs, gen);
      yc.backward(gy);
      yg.backward(gy.to(gpu));
      expect_close(xg.grad(), xc.grad(), what + " grad_x");
      if (affine) {
        expect_close(w_g.grad(), w_c.grad(), what + " grad_weight");
        expect_close(b_g.grad(), b_c.grad(), what + " grad_bias");
      }
    }
  }
}

TEST(LayerNormCuda, WeightOnAnotherDeviceIsAnError) {
  if (!ember::cuda::is_available())
    GTEST_SKIP() << "no CUDA device: " << ember::cuda::unavailable_reason();
  Tensor x = ember::zeros({2, 5}, {.device = Device::cuda(0)});
  EXPECT_THROW(ember::layer_norm(x, {5}, ember::ones({5})), ember::DeviceError);
}

// ---- the kernels alone, outputs pre-filled with NaN ---------------------------------------

template <typename T>
class DeviceBuffer {
 public:
  explicit DeviceBuffer(size_t n) : n_(n) {
    EMBER_CUDA_CHECK(
        cudaMalloc(reinterpret_cast<void**>(&ptr_), std::max<size_t>(n, 1) * sizeof(T)));
    EMBER_CUDA_CHECK(cudaMemset(ptr_, 0xFF, std::max<size_t>(n, 1) * sizeof(T)));  // NaN
    // The kernels run on ember's non-blocking compute stream, which does not wait for
    // work on the legacy default stream.
    EMBER_CUDA_CHECK(cudaDeviceSynchronize());
  }
  explicit DeviceBuffer(const std::vector<T>& host) : DeviceBuffer(host.size()) {
    EMBER_CUDA_CHECK(cudaMemcpy(ptr_, host.data(), n_ * sizeof(T), cudaMemcpyHostToDevice));
    EMBER_CUDA_CHECK(cudaDeviceSynchronize());
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  ~DeviceBuffer() { EMBER_CUDA_WARN(cudaFree(ptr_)); }
  T* get() const { return ptr_; }
  std::vector<T> to_host() const {
    std::vector<T> h(n_);
    EMBER_CUDA_CHECK(cudaDeviceSynchronize());
    EMBER_CUDA_CHECK(cudaMemcpy(h.data(), ptr_, n_ * sizeof(T), cudaMemcpyDeviceToHost));
    return h;
  }

 private:
  T* ptr_ = nullptr;
  size_t n_;
};

std::vector<float> random_vector(size_t n, std::mt19937_64& gen) {
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  std::vector<float> v(n);
  for (auto& e : v) e = dist(gen);
  return v;
}

void expect_vectors_close(const std::vector<float>& gpu, const std::vector<float>& cpu,
                          const std::string& what) {
  ASSERT_EQ(gpu.size(), cpu.size()) << what;
  Tensor g = Tensor::from_vector(gpu, {static_cast<int64_t>(gpu.size())});
  Tensor c = Tensor::from_vector(cpu, {static_cast<int64_t>(cpu.size())});
  expect_close(g, c, what);
}

TEST(PoolKernelsCuda, HandWrittenAndCudnnPoolingWriteEveryOutput) {
  if (!ember::cuda::is_available())
    GTEST_SKIP() << "no CUDA device: " << ember::cuda::unavailable_reason();
  std::mt19937_64 gen(8);
  cudaStream_t stream = ember::cuda::compute_stream(0);
  cudnnHandle_t handle = ember::cuda::cudnn_handle(0);
  for (int i = 0; i < 30; ++i) {
    Shape xs;
    Pool2dParams p;
    random_pool_case(gen, &xs, &p);
    ember::kernels::Pool2dGeometry g;
    g.n = xs[0], g.c = xs[1], g.h = xs[2], g.w = xs[3];
    g.kernel_h = p.kernel[0], g.kernel_w = p.kernel[1];
    g.stride_h = p.stride[0] == 0 ? p.kernel[0] : p.stride[0];
    g.stride_w = p.stride[1] == 0 ? p.kernel[1] : p.stride[1];
    g.pad_h = p.padding[0], g.pad_w = p.padding[1];
    g.count_include_pad = p.count_include_pad;
    g.out_h = ember::kernels::pool_output_size(g.h, g.kernel_h, g.stride_h, g.pad_h, p.ceil_mode);
    g.out_w = ember::kernels::pool_output_size(g.w, g.kernel_w, g.stride_w, g.pad_w, p.ceil_mode);
    const auto x = random_vector(static_cast<size_t>(g.input_numel()), gen);
    const auto gy = random_vector(static_cast<size_t>(g.output_numel()), gen);
    for (auto mode : {ember::kernels::PoolMode::Max, ember::kernels::PoolMode::Avg}) {
      const std::string what =
          pool_str(xs, p) + (mode == ember::kernels::PoolMode::Max ? " max" : " avg");
      std::vector<float> y_ref(gy.size()), gx_ref(x.size());
      ember::kernels::cpu::pool2d_forward({}, g, mode, x.data(), y_ref.data());
      ember::kernels::cpu::pool2d_backward({}, g, mode, x.data(), y_ref.data(), gy.data(),
                                           gx_ref.data());
      DeviceBuffer<float> dx(x), dgy(gy), dy(gy.size()), dgx(x.size());
      ember::kernels::cuda::pool2d_forward(stream, g, mode, dx.get(), dy.get());
      expect_vectors_close(dy.to_host(), y_ref, what + " cuda forward");
      ember::kernels::cuda::pool2d_backward(stream, g, mode, dx.get(), dy.get(), dgy.get(),
                                            dgx.get());
      expect_vectors_close(dgx.to_host(), gx_ref, what + " cuda backward");
      if (!ember::kernels::cudnn::pool2d_supported(g)) continue;
      DeviceBuffer<float> cy(gy.size()), cgx(x.size());
      ember::kernels::cudnn::pool2d_forward(handle, g, mode, dx.get(), cy.get());
      expect_vectors_close(cy.to_host(), y_ref, what + " cudnn forward");
      ember::kernels::cudnn::pool2d_backward(handle, g, mode, false, dx.get(), cy.get(), dgy.get(),
                                             cgx.get());
      expect_vectors_close(cgx.to_host(), gx_ref, what + " cudnn backward");
    }
  }
}

TEST(PoolKernelsCuda, AdaptiveAndLayerNormWriteEveryOutput) {
  if (!ember::cuda::is_available())
    GTEST_SKIP() << "no CUDA device: " << ember::cuda::unavailable_reason();
  std::mt19937_64 gen(9);
  cudaStream_t stream = ember::cuda::compute_stream(0);
  for (int i = 0; i < 20; ++i) {
    const int64_t planes = pick(gen, 1, 6), h = pick(gen, 1, 12), w = pick(gen, 1, 12);
    const int64_t oh = i % 4 == 0 ? 1 : pick(gen, 1, 7), ow = i % 4 == 0 ? 1 : pick(gen, 1, 7);
    const auto x = random_vector(static_cast<size_t>(planes * h * w), gen);
    const auto gy = random_vector(static_cast<size_t>(planes * oh * ow), gen);
    std::vector<float> y_ref(gy.size()), gx_ref(x.size());
    ember::kernels::cpu::adaptive_avg_pool2d_forward({}, x.data(), y_ref.data(), planes, h, w, oh, ow);
    ember::kernels::cpu::adaptive_avg_pool2d_backward({}, gy.data(), gx_ref.data(), planes, h, w, oh,
                                                      ow);
    DeviceBuffer<float> dx(x), dgy(gy), dy(gy.size()), dgx(x.size());
    ember::kernels::cuda::adaptive_avg_pool2d_forward(stream, dx.get(), dy.get(), planes, h, w, oh,
                                                      ow);
    ember::kernels::cuda::adaptive_avg_pool2d_backward(stream, dgy.get(), dgx.get(), planes, h, w,
                                                       oh, ow);
    const std::string what =
        ember::detail::str_cat("adaptive ", planes, "x", h, "x", w, " -> ", oh, "x", ow);
    expect_vectors_close(dy.to_host(), y_ref, what + " forward");
    expect_vectors_close(dgx.to_host(), gx_ref, what + " backward");
  }
  for (auto [rows, cols] :
       std::vector<std::pair<int64_t, int64_t>>{{1, 1}, {5, 3}, {17, 300}, {3, 2049}, {300, 40}}) {
    const auto x = random_vector(static_cast<size_t>(rows * cols), gen);
    const auto gy = random_vector(x.size(), gen);
    const auto w = random_vector(static_cast<size_t>(cols), gen);
    const auto b = random_vector(static_cast<size_t>(cols), gen);
    std::vector<float> y(x.size()), mean(rows), rstd(rows), gx(x.size()), gw(cols), gb(cols);
    ember::kernels::cpu::layer_norm_forward(x.data(), w.data(), b.data(), y.data(), mean.data(),
                                            rstd.data(), rows, cols, 1e-5);
    ember::kernels::cpu::layer_norm_backward(x.data(), gy.data(), w.data(), mean.data(),
                                             rstd.data(), gx.data(), gw.data(), gb.data(), rows,
                                             cols);
    DeviceBuffer<float> dx(x), dgy(gy), dw(w), db(b), dy(x.size()), dmean(rows), drstd(rows),
        dgx(x.size()), dgw(cols), dgb(cols);
    ember::kernels::cuda::layer_norm_forward(stream, dx.get(), dw.get(), db.get(), dy.get(),
                                             dmean.get(), drstd.get(), rows, cols, 1e-5);
    ember::kernels::cuda::layer_norm_backward(stream, dx.get(), dgy.get(), dw.get(), dmean.get(),
                                              drstd.get(), dgx.get(), dgw.get(), dgb.get(), rows,
                                              cols);
    const std::string what = ember::detail::str_cat("layer_norm ", rows, "x", cols);
    expect_vectors_close(dy.to_host(), y, what + " y");
    expect_vectors_close(dmean.to_host(), mean, what + " mean");
    expect_vectors_close(drstd.to_host(), rstd, what + " rstd");
    expect_vectors_close(dgx.to_host(), gx, what + " grad_x");
    expect_vectors_close(dgw.to_host(), gw, what + " grad_weight");
    expect_vectors_close(dgb.to_host(), gb, what + " grad_bias");
  }
}

}  // namespace
