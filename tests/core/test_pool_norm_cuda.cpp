// Pooling and normalization on the GPU against the CPU: forward, gradients and running
// statistics of every op on random shapes (batch 1, odd sizes, ceil mode on both the cuDNN
// and the hand-written path), the kernels alone with NaN-filled outputs, and the device
// errors. Skipped, with the reason, when there is no GPU. (The tests that run on every
// device, CUDA included, are the Pool2dOnDevice ones in test_pool_norm.cpp.)
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

#include "core/pool_case.h"
#include "support/allclose.h"
#include "support/device.h"
#include "support/device_buffer.h"
#include "support/random.h"

namespace {

using ember::Device;
using ember::Pool2dParams;
using ember::Shape;
using ember::Tensor;
using namespace ember::testing;

// Tolerance relative to the largest magnitude of the reference (allclose_to_largest): the
// GPU sums in float and in another order than the CPU, which sums in double.
constexpr double kTol = kFloat32Tol.rtol;

int64_t pick(std::mt19937_64& gen, int64_t lo, int64_t hi) {
  return std::uniform_int_distribution<int64_t>(lo, hi)(gen);
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
  poison_cuda_pool();
  Tensor yc = op(xc), yg = op(xg);
  EXPECT_TRUE(allclose_to_largest(yg, yc, kTol)) << what << " forward";
  Tensor gy = uniform_f32(yc.shape(), gen);
  yc.backward(gy);
  yg.backward(gy.to(Device::cuda(0)));
  EXPECT_TRUE(allclose_to_largest(xg.grad(), xc.grad(), kTol)) << what << " grad_x";
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
  EMBER_SKIP_WITHOUT_GPU();
  std::mt19937_64 gen(1);
  for (int i = 0; i < 60; ++i) {
    Shape xs;
    Pool2dParams p;
    random_pool_case(gen, &xs, &p);
    Tensor x = uniform_f32(xs, gen);
    check_parity(
        x, [&](const Tensor& t) { return ember::max_pool2d(t, p); }, gen,
        "max_pool2d " + describe(xs, p));
    check_parity(
        x, [&](const Tensor& t) { return ember::avg_pool2d(t, p); }, gen,
        "avg_pool2d " + describe(xs, p));
  }
}

TEST(Pool2dCuda, CeilModeThatAddsAWindowMatchesTheCpu) {
  EMBER_SKIP_WITHOUT_GPU();
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
        Tensor x = uniform_f32(xs, gen);
        check_parity(
            x, [&](const Tensor& t) { return ember::max_pool2d(t, p); }, gen,
            "max_pool2d " + describe(xs, p));
        check_parity(
            x, [&](const Tensor& t) { return ember::avg_pool2d(t, p); }, gen,
            "avg_pool2d " + describe(xs, p));
      }
    }
  }
}

TEST(Pool2dCuda, DeterministicMaxPoolingMatchesTheCpu) {
  EMBER_SKIP_WITHOUT_GPU();
  const bool prev = ember::cuda::deterministic();
  ember::cuda::set_deterministic(true);
  std::mt19937_64 gen(3);
  Pool2dParams p{.kernel = {3, 3}, .stride = {1, 1}, .padding = {1, 1}};  // overlapping
  Tensor x = uniform_f32({2, 3, 8, 9}, gen);
  check_parity(
      x, [&](const Tensor& t) { return ember::max_pool2d(t, p); }, gen, "deterministic");
  ember::cuda::set_deterministic(prev);
}

TEST(AdaptiveAvgPool2dCuda, MatchesTheCpuIncludingGlobalPooling) {
  EMBER_SKIP_WITHOUT_GPU();
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
    Tensor x = uniform_f32(c.x, gen);
    check_parity(
        x, [&](const Tensor& t) { return ember::adaptive_avg_pool2d(t, c.out); }, gen,
        ember::detail::str_cat("adaptive ", ember::shape_str(c.x), " -> [", c.out[0], ", ",
                               c.out[1], "]"));
  }
}

// ---- batch norm ---------------------------------------------------------------------------

TEST(BatchNormCuda, TrainingForwardGradientsAndRunningStatsMatchTheCpu) {
  EMBER_SKIP_WITHOUT_GPU();
  std::mt19937_64 gen(6);
  const std::vector<Shape> shapes{{2, 3},       {7, 5},       {1, 4, 3},    {3, 2, 9},
                                  {1, 3, 1, 2}, {2, 4, 5, 7}, {5, 1, 3, 3}, {2, 3, 2, 2, 3}};
  for (const Shape& xs : shapes) {
    for (bool affine : {true, false}) {
      const int64_t c = xs[1];
      const Device gpu = Device::cuda(0);
      Tensor rm_c = uniform_f32({c}, gen), rv_c = uniform_f32({c}, gen, 0.5f, 2.0f);
      Tensor rm_g = rm_c.to(gpu), rv_g = rv_c.to(gpu);
      Tensor w_c, b_c, w_g, b_g;
      if (affine) {
        w_c = uniform_f32({c}, gen, 0.5f, 1.5f).requires_grad_();
        b_c = uniform_f32({c}, gen).requires_grad_();
        w_g = w_c.detach().to(gpu).requires_grad_();
        b_g = b_c.detach().to(gpu).requires_grad_();
      }
      const std::string what = ember::shape_str(xs) + (affine ? " affine" : " plain");
      for (int step = 0; step < 2; ++step) {
        Tensor x = uniform_f32(xs, gen, -2.0f, 3.0f);
        Tensor xc = x.clone().requires_grad_(), xg = x.to(gpu).requires_grad_();
        poison_cuda_pool();
        Tensor yc = ember::batch_norm(xc, rm_c, rv_c, w_c, b_c, true, 0.1, 1e-5);
        Tensor yg = ember::batch_norm(xg, rm_g, rv_g, w_g, b_g, true, 0.1, 1e-5);
        EXPECT_TRUE(allclose_to_largest(yg, yc, kTol)) << what << " forward";
        Tensor gy = uniform_f32(xs, gen);
        yc.backward(gy);
        yg.backward(gy.to(gpu));
        EXPECT_TRUE(allclose_to_largest(xg.grad(), xc.grad(), kTol)) << what << " grad_x";
        if (affine) {
          EXPECT_TRUE(allclose_to_largest(w_g.grad(), w_c.grad(), kTol)) << what << " grad_weight";
          EXPECT_TRUE(allclose_to_largest(b_g.grad(), b_c.grad(), kTol)) << what << " grad_bias";
          w_c.set_grad(Tensor());
          b_c.set_grad(Tensor());
          w_g.set_grad(Tensor());
          b_g.set_grad(Tensor());
        }
        EXPECT_TRUE(allclose_to_largest(rm_g, rm_c, kTol))
            << what << " running_mean step " << std::to_string(step);
        EXPECT_TRUE(allclose_to_largest(rv_g, rv_c, kTol))
            << what << " running_var step " << std::to_string(step);
      }
      // Eval mode with the statistics just accumulated.
      Tensor x = uniform_f32(xs, gen);
      Tensor xc = x.clone().requires_grad_(), xg = x.to(gpu).requires_grad_();
      Tensor yc = ember::batch_norm(xc, rm_c, rv_c, w_c, b_c, false);
      Tensor yg = ember::batch_norm(xg, rm_g, rv_g, w_g, b_g, false);
      EXPECT_TRUE(allclose_to_largest(yg, yc, kTol)) << what << " eval forward";
      Tensor gy = uniform_f32(xs, gen);
      yc.backward(gy);
      yg.backward(gy.to(gpu));
      EXPECT_TRUE(allclose_to_largest(xg.grad(), xc.grad(), kTol)) << what << " eval grad_x";
      if (affine) {
        EXPECT_TRUE(allclose_to_largest(w_g.grad(), w_c.grad(), kTol))
            << what << " eval grad_weight";
      }
    }
  }
}

TEST(BatchNormCuda, RunningStatsOnAnotherDeviceAreAnError) {
  EMBER_SKIP_WITHOUT_GPU();
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
  EMBER_SKIP_WITHOUT_GPU();
  std::mt19937_64 gen(7);
  const std::vector<std::pair<Shape, Shape>> cases{
      {{1, 1}, {1}},          {{3, 7}, {7}},     {{2, 5, 256}, {256}}, {{4, 1030}, {1030}},
      {{2, 3, 4, 5}, {4, 5}}, {{130, 33}, {33}}, {{1, 4097}, {4097}},  {{0, 8}, {8}}};
  const Device gpu = Device::cuda(0);
  for (const auto& [xs, ns] : cases) {
    for (bool affine : {true, false}) {
      Tensor w_c, b_c, w_g, b_g;
      if (affine) {
        w_c = uniform_f32(ns, gen, 0.5f, 1.5f).requires_grad_();
        b_c = uniform_f32(ns, gen).requires_grad_();
        w_g = w_c.detach().to(gpu).requires_grad_();
        b_g = b_c.detach().to(gpu).requires_grad_();
      }
      const std::string what = ember::shape_str(xs) + " over " + ember::shape_str(ns);
      Tensor x = uniform_f32(xs, gen, -2.0f, 3.0f);
      Tensor xc = x.clone().requires_grad_(), xg = x.to(gpu).requires_grad_();
      poison_cuda_pool();
      Tensor yc = ember::layer_norm(xc, ns, w_c, b_c), yg = ember::layer_norm(xg, ns, w_g, b_g);
      EXPECT_TRUE(allclose_to_largest(yg, yc, kTol)) << what << " forward";
      Tensor gy = uniform_f32(xs, gen);
      yc.backward(gy);
      yg.backward(gy.to(gpu));
      EXPECT_TRUE(allclose_to_largest(xg.grad(), xc.grad(), kTol)) << what << " grad_x";
      if (affine) {
        EXPECT_TRUE(allclose_to_largest(w_g.grad(), w_c.grad(), kTol)) << what << " grad_weight";
        EXPECT_TRUE(allclose_to_largest(b_g.grad(), b_c.grad(), kTol)) << what << " grad_bias";
      }
    }
  }
}

TEST(LayerNormCuda, WeightOnAnotherDeviceIsAnError) {
  EMBER_SKIP_WITHOUT_GPU();
  Tensor x = ember::zeros({2, 5}, {.device = Device::cuda(0)});
  EXPECT_THROW(ember::layer_norm(x, {5}, ember::ones({5})), ember::DeviceError);
}

// ---- the kernels alone, outputs pre-filled with NaN ---------------------------------------

TEST(PoolKernelsCuda, HandWrittenAndCudnnPoolingWriteEveryOutput) {
  EMBER_SKIP_WITHOUT_GPU();
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
    const auto x = uniform_floats(static_cast<size_t>(g.input_numel()), gen);
    const auto gy = uniform_floats(static_cast<size_t>(g.output_numel()), gen);
    for (auto mode : {ember::kernels::PoolMode::Max, ember::kernels::PoolMode::Avg}) {
      const std::string what =
          describe(xs, p) + (mode == ember::kernels::PoolMode::Max ? " max" : " avg");
      std::vector<float> y_ref(gy.size()), gx_ref(x.size());
      ember::kernels::cpu::pool2d_forward({}, g, mode, x.data(), y_ref.data());
      ember::kernels::cpu::pool2d_backward({}, g, mode, x.data(), y_ref.data(), gy.data(),
                                           gx_ref.data());
      DeviceBuffer<float> dx(x, stream), dgy(gy, stream), dy(gy.size(), stream),
          dgx(x.size(), stream);
      ember::kernels::cuda::pool2d_forward(stream, g, mode, dx.get(), dy.get());
      EXPECT_TRUE(allclose(dy.to_host(), y_ref, relative_to_largest(y_ref, kTol)))
          << what << " cuda forward";
      ember::kernels::cuda::pool2d_backward(stream, g, mode, dx.get(), dy.get(), dgy.get(),
                                            dgx.get());
      EXPECT_TRUE(allclose(dgx.to_host(), gx_ref, relative_to_largest(gx_ref, kTol)))
          << what << " cuda backward";
      if (!ember::kernels::cudnn::pool2d_supported(g)) continue;
      DeviceBuffer<float> cy(gy.size(), stream), cgx(x.size(), stream);
      ember::kernels::cudnn::pool2d_forward(handle, g, mode, dx.get(), cy.get());
      EXPECT_TRUE(allclose(cy.to_host(), y_ref, relative_to_largest(y_ref, kTol)))
          << what << " cudnn forward";
      ember::kernels::cudnn::pool2d_backward(handle, g, mode, false, dx.get(), cy.get(), dgy.get(),
                                             cgx.get());
      EXPECT_TRUE(allclose(cgx.to_host(), gx_ref, relative_to_largest(gx_ref, kTol)))
          << what << " cudnn backward";
    }
  }
}

TEST(PoolKernelsCuda, AdaptiveAndLayerNormWriteEveryOutput) {
  EMBER_SKIP_WITHOUT_GPU();
  std::mt19937_64 gen(9);
  cudaStream_t stream = ember::cuda::compute_stream(0);
  for (int i = 0; i < 20; ++i) {
    const int64_t planes = pick(gen, 1, 6), h = pick(gen, 1, 12), w = pick(gen, 1, 12);
    const int64_t oh = i % 4 == 0 ? 1 : pick(gen, 1, 7), ow = i % 4 == 0 ? 1 : pick(gen, 1, 7);
    const auto x = uniform_floats(static_cast<size_t>(planes * h * w), gen);
    const auto gy = uniform_floats(static_cast<size_t>(planes * oh * ow), gen);
    std::vector<float> y_ref(gy.size()), gx_ref(x.size());
    ember::kernels::cpu::adaptive_avg_pool2d_forward({}, x.data(), y_ref.data(), planes, h, w, oh, ow);
    ember::kernels::cpu::adaptive_avg_pool2d_backward({}, gy.data(), gx_ref.data(), planes, h, w, oh,
                                                      ow);
    DeviceBuffer<float> dx(x, stream), dgy(gy, stream), dy(gy.size(), stream),
        dgx(x.size(), stream);
    ember::kernels::cuda::adaptive_avg_pool2d_forward(stream, dx.get(), dy.get(), planes, h, w, oh,
                                                      ow);
    ember::kernels::cuda::adaptive_avg_pool2d_backward(stream, dgy.get(), dgx.get(), planes, h, w,
                                                       oh, ow);
    const std::string what =
        ember::detail::str_cat("adaptive ", planes, "x", h, "x", w, " -> ", oh, "x", ow);
    EXPECT_TRUE(allclose(dy.to_host(), y_ref, relative_to_largest(y_ref, kTol)))
        << what << " forward";
    EXPECT_TRUE(allclose(dgx.to_host(), gx_ref, relative_to_largest(gx_ref, kTol)))
        << what << " backward";
  }
  for (auto [rows, cols] :
       std::vector<std::pair<int64_t, int64_t>>{{1, 1}, {5, 3}, {17, 300}, {3, 2049}, {300, 40}}) {
    const auto x = uniform_floats(static_cast<size_t>(rows * cols), gen);
    const auto gy = uniform_floats(x.size(), gen);
    const auto w = uniform_floats(static_cast<size_t>(cols), gen);
    const auto b = uniform_floats(static_cast<size_t>(cols), gen);
    std::vector<float> y(x.size()), mean(rows), rstd(rows), gx(x.size()), gw(cols), gb(cols);
    ember::kernels::cpu::layer_norm_forward({}, x.data(), w.data(), b.data(), y.data(),
                                            mean.data(), rstd.data(), rows, cols, 1e-5);
    ember::kernels::cpu::layer_norm_backward({}, x.data(), gy.data(), w.data(), mean.data(),
                                             rstd.data(), gx.data(), gw.data(), gb.data(), rows,
                                             cols);
    DeviceBuffer<float> dx(x, stream), dgy(gy, stream), dw(w, stream), db(b, stream),
        dy(x.size(), stream), dmean(rows, stream), drstd(rows, stream), dgx(x.size(), stream),
        dgw(cols, stream), dgb(cols, stream);
    ember::kernels::cuda::layer_norm_forward(stream, dx.get(), dw.get(), db.get(), dy.get(),
                                             dmean.get(), drstd.get(), rows, cols, 1e-5);
    ember::kernels::cuda::layer_norm_backward(stream, dx.get(), dgy.get(), dw.get(), dmean.get(),
                                              drstd.get(), dgx.get(), dgw.get(), dgb.get(), rows,
                                              cols);
    const std::string what = ember::detail::str_cat("layer_norm ", rows, "x", cols);
    EXPECT_TRUE(allclose(dy.to_host(), y, relative_to_largest(y, kTol))) << what << " y";
    EXPECT_TRUE(allclose(dmean.to_host(), mean, relative_to_largest(mean, kTol)))
        << what << " mean";
    EXPECT_TRUE(allclose(drstd.to_host(), rstd, relative_to_largest(rstd, kTol)))
        << what << " rstd";
    EXPECT_TRUE(allclose(dgx.to_host(), gx, relative_to_largest(gx, kTol))) << what << " grad_x";
    EXPECT_TRUE(allclose(dgw.to_host(), gw, relative_to_largest(gw, kTol)))
        << what << " grad_weight";
    EXPECT_TRUE(allclose(dgb.to_host(), gb, relative_to_largest(gb, kTol))) << what << " grad_bias";
  }
}

TEST(BatchNormKernelsCuda, StandInsForNullArgumentsMatchTheCpu) {
  EMBER_SKIP_WITHOUT_GPU();
  // The cuDNN twins with a null weight and bias (cuDNN needs both) and, in the backward,
  // null gradients (cuDNN writes all three): the stand-ins of Note [Batch norm stand-ins]
  // in kernels/cudnn/norm.cpp. Outputs start as NaN (DeviceBuffer); the CPU twins are the
  // reference.
  namespace kc = ember::kernels;
  std::mt19937_64 gen(12);
  const Device gpu = Device::cuda(0);
  Tensor held;
  const kc::Scratch scratch = [&held, gpu](size_t bytes) -> void* {
    held = Tensor();
    if (bytes == 0) return nullptr;
    held = ember::empty({static_cast<int64_t>(bytes)}, {.dtype = ember::kUInt8, .device = gpu});
    return held.data_ptr();
  };
  const kc::cuda::Context ctx = ember::cuda::kernel_context(0);
  for (auto [n, c, s] : std::vector<std::array<int64_t, 3>>{{2, 3, 5}, {7, 1, 1}, {3, 70, 4}}) {
    const std::string what = ember::detail::str_cat("batch_norm ", n, "x", c, "x", s);
    const auto x = uniform_floats(static_cast<size_t>(n * c * s), gen);
    const auto gy = uniform_floats(x.size(), gen);
    std::vector<float> y(x.size()), mean(c), invstd(c), gx(x.size()), yi(x.size());
    const std::vector<float> rm(static_cast<size_t>(c), 0.25f), rv(static_cast<size_t>(c), 1.5f);
    kc::cpu::batch_norm_forward_training<float>({}, x.data(), nullptr, nullptr, y.data(),
                                                mean.data(), invstd.data(), nullptr, nullptr, n, c,
                                                s, 0.1, 1e-5, {});
    kc::cpu::batch_norm_forward_inference<float>({}, x.data(), nullptr, nullptr, rm.data(),
                                                 rv.data(), yi.data(), n, c, s, 1e-5, {});
    kc::cpu::batch_norm_backward<float>({}, x.data(), gy.data(), nullptr, mean.data(),
                                        invstd.data(), gx.data(), nullptr, nullptr, n, c, s, 1e-5,
                                        {});
    DeviceBuffer<float> dx(x, ctx.stream), dgy(gy, ctx.stream), drm(rm, ctx.stream),
        drv(rv, ctx.stream);  // the rest start as NaN
    DeviceBuffer<float> dy(x.size(), ctx.stream), dmean(mean.size(), ctx.stream),
        dinvstd(invstd.size(), ctx.stream), dgx(x.size(), ctx.stream), dyi(x.size(), ctx.stream);
    kc::cuda::batch_norm_forward_training<float>(ctx, dx.get(), nullptr, nullptr, dy.get(),
                                                 dmean.get(), dinvstd.get(), nullptr, nullptr, n,
                                                 c, s, 0.1, 1e-5, scratch);
    EXPECT_TRUE(allclose(dy.to_host(), y, relative_to_largest(y, kTol))) << what << " training y";
    EXPECT_TRUE(allclose(dmean.to_host(), mean, relative_to_largest(mean, kTol)))
        << what << " save_mean";
    EXPECT_TRUE(allclose(dinvstd.to_host(), invstd, relative_to_largest(invstd, kTol)))
        << what << " save_invstd";
    kc::cuda::batch_norm_forward_inference<float>(ctx, dx.get(), nullptr, nullptr, drm.get(),
                                                  drv.get(), dyi.get(), n, c, s, 1e-5, scratch);
    EXPECT_TRUE(allclose(dyi.to_host(), yi, relative_to_largest(yi, kTol))) << what << " eval y";
    kc::cuda::batch_norm_backward<float>(ctx, dx.get(), dgy.get(), nullptr, dmean.get(),
                                         dinvstd.get(), dgx.get(), nullptr, nullptr, n, c, s,
                                         1e-5, scratch);
    EXPECT_TRUE(allclose(dgx.to_host(), gx, relative_to_largest(gx, kTol))) << what << " grad_x";
  }
}

}  // namespace
