// CPU <-> CUDA parity for cross-entropy and NLL (with and without class weights), the
// pointwise losses and binary cross-entropy with pos_weight (forward, backward, bad-target
// counts), and the CUDA dropout mask: identical to the CPU's, deterministic,
// statistically sound. Floats within kFloat32KernelTol. Device outputs start as 0xFF
// garbage; every launch runs on a created stream. Skipped, with the reason, when there is
// no GPU.
#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "ember/core/base/cuda_check.h"
#include "ember/core/base/error.h"
#include "ember/kernels/cpu/loss.h"
#include "ember/kernels/cuda/loss.cuh"
#include "support/allclose.h"
#include "support/device_buffer.h"
#include "support/random.h"

namespace ember::kernels {
namespace {

using ember::testing::allclose;
using ember::testing::CudaStreamTest;
using ember::testing::DeviceBuffer;
using ember::testing::kFloat32KernelTol;
using ember::testing::uniform_values;

constexpr int64_t kIgnore = -100;

// Targets in [0, C) with some rows ignored and, when asked, some out of range.
std::vector<int64_t> make_targets(int64_t N, int64_t C, uint32_t seed, bool with_bad) {
  std::mt19937 gen(seed);
  std::uniform_int_distribution<int64_t> cls(0, std::max<int64_t>(C - 1, 0));
  std::vector<int64_t> t(static_cast<size_t>(N));
  for (int64_t r = 0; r < N; ++r) {
    t[r] = C > 0 ? cls(gen) : 0;
    if (r % 7 == 3) t[r] = kIgnore;
    if (with_bad && r % 11 == 5) t[r] = (r % 2 == 0) ? C : -7;
  }
  return t;
}

// The CPU forward kernels add their bad-target count to a counter; these return it.
int64_t cpu_cross_entropy_rows(const float* logits, const int64_t* target, float* loss,
                               float* lse, int64_t N, int64_t C, int64_t ignore_index,
                               double smoothing, const float* class_weight = nullptr) {
  int64_t bad = 0;
  cpu::cross_entropy_forward<float>({}, logits, target, class_weight, loss, lse, N, C,
                                    ignore_index, smoothing, &bad);
  return bad;
}

int64_t cpu_nll_rows(const float* logp, const int64_t* target, float* loss, int64_t N,
                     int64_t C, int64_t ignore_index, const float* class_weight = nullptr) {
  int64_t bad = 0;
  cpu::nll_forward<float>({}, logp, target, class_weight, loss, N, C, ignore_index, &bad);
  return bad;
}

struct RowCase {
  int64_t N, C;
  std::string str() const { return "[" + std::to_string(N) + ", " + std::to_string(C) + "]"; }
};

const RowCase kRowCases[] = {{0, 5},    {1, 1},    {7, 10},     {128, 10}, {5, 1000},
                             {33, 257}, {9, 256},  {1000, 3}, {2, 100003}, {12, 1}};

// ---- cross-entropy --------------------------------------------------------------------

// Class weights for C classes (some zero, as a user may switch a class off), or none.
std::vector<float> class_weights(int64_t C, uint32_t seed, bool weighted) {
  if (!weighted) return {};
  std::vector<float> w = uniform_values<float>(C, 0.2f, 3.0f, seed);
  if (C > 2) w[1] = 0.0f;
  return w;
}

using CrossEntropyCuda = CudaStreamTest;

TEST_F(CrossEntropyCuda, ForwardMatchesCpuIncludingBadTargetCounts) {
  uint32_t seed = 1;
  for (const RowCase& rc : kRowCases) {
    for (double smoothing : {0.0, 0.1}) {
      for (bool with_bad : {false, true}) {
        for (bool weighted : {false, true}) {
          const std::vector<float> x = uniform_values<float>(rc.N * rc.C, -6.0f, 6.0f, seed++);
          const std::vector<int64_t> t = make_targets(rc.N, rc.C, seed++, with_bad);
          const std::vector<float> w = class_weights(rc.C, seed++, weighted);
          const float* cpu_w = weighted ? w.data() : nullptr;
          std::vector<float> cpu_loss(rc.N), cpu_lse(rc.N);
          const int64_t cpu_bad =
              cpu_cross_entropy_rows(x.data(), t.data(), cpu_loss.data(), cpu_lse.data(), rc.N,
                                     rc.C, kIgnore, smoothing, cpu_w);

          DeviceBuffer<float> dx(x, stream_), dw(w, stream_), dloss(rc.N, stream_),
              dlse(rc.N, stream_);
          DeviceBuffer<int64_t> dt(t, stream_), dbad(std::vector<int64_t>{0}, stream_);
          cuda::cross_entropy_forward(stream_, dx.get(), dt.get(), weighted ? dw.get() : nullptr,
                                      dloss.get(), dlse.get(), rc.N, rc.C, kIgnore, smoothing,
                                      dbad.get());
          const std::string what = "cross_entropy " + rc.str() + " smoothing " +
                                   std::to_string(smoothing) +
                                   (with_bad ? " with bad targets" : "") +
                                   (weighted ? " weighted" : "");
          EXPECT_TRUE(allclose(dloss.to_host(), cpu_loss, kFloat32KernelTol)) << what << " (loss)";
          EXPECT_TRUE(allclose(dlse.to_host(), cpu_lse, kFloat32KernelTol)) << what << " (lse)";
          EXPECT_EQ(dbad.to_host()[0], cpu_bad) << what;
        }
      }
    }
  }
}

TEST_F(CrossEntropyCuda, BadTargetCountAddsToTheCallersCounter) {
  const std::vector<float> x = {1, 2, 3, 4, 5, 6};
  const std::vector<int64_t> t = {3, -1};
  DeviceBuffer<float> dx(x, stream_), dloss(2, stream_), dlse(2, stream_);
  DeviceBuffer<int64_t> dt(t, stream_), dbad(std::vector<int64_t>{5}, stream_);
  cuda::cross_entropy_forward<float>(stream_, dx.get(), dt.get(), nullptr, dloss.get(),
                                     dlse.get(), 2, 3, kIgnore, 0.0, dbad.get());
  EXPECT_EQ(dbad.to_host()[0], 7);
}

TEST_F(CrossEntropyCuda, BackwardMatchesCpu) {
  uint32_t seed = 100;
  for (const RowCase& rc : kRowCases) {
    for (double smoothing : {0.0, 0.1}) {
      for (int64_t grad_stride : {int64_t{0}, int64_t{1}}) {
        for (bool weighted : {false, true}) {
          const std::vector<float> x = uniform_values<float>(rc.N * rc.C, -6.0f, 6.0f, seed++);
          const std::vector<int64_t> t = make_targets(rc.N, rc.C, seed++, /*with_bad=*/false);
          const std::vector<float> g =
              uniform_values<float>(grad_stride == 0 ? 1 : rc.N, 0.1f, 2.0f, seed++);
          const std::vector<float> w = class_weights(rc.C, seed++, weighted);
          const float* cpu_w = weighted ? w.data() : nullptr;
          std::vector<float> loss(rc.N), lse(rc.N), cpu_gx(x.size());
          cpu_cross_entropy_rows(x.data(), t.data(), loss.data(), lse.data(), rc.N, rc.C, kIgnore,
                                 smoothing, cpu_w);
          cpu::cross_entropy_backward<float>({}, x.data(), t.data(), cpu_w, lse.data(), g.data(),
                                             grad_stride, cpu_gx.data(), rc.N, rc.C, kIgnore,
                                             smoothing);
          DeviceBuffer<float> dx(x, stream_), dlse(lse, stream_), dg(g, stream_), dw(w, stream_),
              dgx(x.size(), stream_);
          DeviceBuffer<int64_t> dt(t, stream_);
          cuda::cross_entropy_backward(stream_, dx.get(), dt.get(), weighted ? dw.get() : nullptr,
                                       dlse.get(), dg.get(), grad_stride, dgx.get(), rc.N, rc.C,
                                       kIgnore, smoothing);
          EXPECT_TRUE(allclose(dgx.to_host(), cpu_gx, kFloat32KernelTol))
              << "cross_entropy backward " << rc.str() << " smoothing " << smoothing
              << " grad_stride " << grad_stride << (weighted ? " weighted" : "");
        }
      }
    }
  }
}

TEST_F(CrossEntropyCuda, TargetClassWeightsMatchCpu) {
  uint32_t seed = 150;
  for (const RowCase& rc : kRowCases) {
    if (rc.C == 0) continue;
    const std::vector<int64_t> t = make_targets(rc.N, rc.C, seed++, /*with_bad=*/true);
    const std::vector<float> w = class_weights(rc.C, seed++, true);
    std::vector<float> cpu_out(rc.N);
    cpu::target_class_weights<float>({}, t.data(), w.data(), cpu_out.data(), rc.N, rc.C, kIgnore);
    DeviceBuffer<int64_t> dt(t, stream_);
    DeviceBuffer<float> dw(w, stream_), dout(rc.N, stream_);
    cuda::target_class_weights(stream_, dt.get(), dw.get(), dout.get(), rc.N, rc.C, kIgnore);
    EXPECT_EQ(dout.to_host(), cpu_out) << "target_class_weights " << rc.str();
  }
}

// ---- NLL ------------------------------------------------------------------------------

using NllCuda = CudaStreamTest;

TEST_F(NllCuda, ForwardAndBackwardMatchCpu) {
  uint32_t seed = 200;
  for (const RowCase& rc : kRowCases) {
    for (bool with_bad : {false, true}) {
      for (bool weighted : {false, true}) {
        const std::vector<float> logp = uniform_values<float>(rc.N * rc.C, -9.0f, 0.0f, seed++);
        const std::vector<int64_t> t = make_targets(rc.N, rc.C, seed++, with_bad);
        const std::vector<float> w = class_weights(rc.C, seed++, weighted);
        const float* cpu_w = weighted ? w.data() : nullptr;
        std::vector<float> cpu_loss(rc.N);
        const int64_t cpu_bad =
            cpu_nll_rows(logp.data(), t.data(), cpu_loss.data(), rc.N, rc.C, kIgnore, cpu_w);
        DeviceBuffer<float> dlogp(logp, stream_), dw(w, stream_), dloss(rc.N, stream_);
        DeviceBuffer<int64_t> dt(t, stream_), dbad(std::vector<int64_t>{0}, stream_);
        const float* gpu_w = weighted ? dw.get() : nullptr;
        cuda::nll_forward(stream_, dlogp.get(), dt.get(), gpu_w, dloss.get(), rc.N, rc.C, kIgnore,
                          dbad.get());
        const std::string what = "nll " + rc.str() + (with_bad ? " with bad targets" : "") +
                                 (weighted ? " weighted" : "");
        EXPECT_TRUE(allclose(dloss.to_host(), cpu_loss, kFloat32KernelTol)) << what;
        EXPECT_EQ(dbad.to_host()[0], cpu_bad) << what;

        for (int64_t grad_stride : {int64_t{0}, int64_t{1}}) {
          const std::vector<float> g =
              uniform_values<float>(grad_stride == 0 ? 1 : rc.N, -2, 2, seed++);
          std::vector<float> cpu_g(logp.size());
          cpu::nll_backward<float>({}, t.data(), cpu_w, g.data(), grad_stride, cpu_g.data(), rc.N,
                                   rc.C, kIgnore);
          DeviceBuffer<float> dg(g, stream_), dgl(logp.size(), stream_);
          cuda::nll_backward(stream_, dt.get(), gpu_w, dg.get(), grad_stride, dgl.get(), rc.N,
                             rc.C, kIgnore);
          EXPECT_TRUE(allclose(dgl.to_host(), cpu_g, kFloat32KernelTol))
              << what << " backward grad_stride " << grad_stride;
        }
      }
    }
  }
}

// ---- pointwise losses -----------------------------------------------------------------

using PointwiseLossCuda = CudaStreamTest;

const char* loss_name(PointwiseLoss op) {
  switch (op) {
    case PointwiseLoss::Mse:
      return "mse";
    case PointwiseLoss::L1:
      return "l1";
    case PointwiseLoss::BinaryCrossEntropy:
      return "bce";
    case PointwiseLoss::BinaryCrossEntropyWithLogits:
      return "bce_with_logits";
  }
  return "?";
}

TEST_F(PointwiseLossCuda, ForwardAndBackwardMatchCpu) {
  uint32_t seed = 300;
  for (PointwiseLoss op : {PointwiseLoss::Mse, PointwiseLoss::L1, PointwiseLoss::BinaryCrossEntropy,
                           PointwiseLoss::BinaryCrossEntropyWithLogits}) {
    for (int64_t n : {int64_t{0}, int64_t{1}, int64_t{7}, int64_t{4096}, int64_t{100003}}) {
      const bool probabilities = op == PointwiseLoss::BinaryCrossEntropy;
      std::vector<float> x = probabilities ? uniform_values<float>(n, 0.0f, 1.0f, seed++)
                                           : uniform_values<float>(n, -5.0f, 5.0f, seed++);
      std::vector<float> t = uniform_values<float>(n, 0.0f, 1.0f, seed++);
      // Edge inputs: BCE's clamped logs at exactly 0 and 1, L1's kink where x == t.
      if (n >= 7) {
        if (probabilities) {
          x[0] = 0.0f;
          x[1] = 1.0f;
          t[1] = 0.0f;
        }
        x[2] = t[2];
      }
      std::vector<float> cpu_out(n);
      cpu::pointwise_loss_forward<float>({}, op, x.data(), t.data(), cpu_out.data(), n);
      DeviceBuffer<float> dx(x, stream_), dt(t, stream_), dout(n, stream_);
      cuda::pointwise_loss_forward(stream_, op, dx.get(), dt.get(), dout.get(), n);
      const std::string what = std::string(loss_name(op)) + " n=" + std::to_string(n);
      EXPECT_TRUE(allclose(dout.to_host(), cpu_out, kFloat32KernelTol)) << what;

      for (int64_t grad_stride : {int64_t{0}, int64_t{1}}) {
        const std::vector<float> g = uniform_values<float>(grad_stride == 0 ? 1 : n, -2, 2, seed++);
        std::vector<float> cpu_gx(n);
        cpu::pointwise_loss_backward<float>({}, op, x.data(), t.data(), g.data(), grad_stride,
                                            cpu_gx.data(), n);
        DeviceBuffer<float> dg(g, stream_), dgx(n, stream_);
        cuda::pointwise_loss_backward(stream_, op, dx.get(), dt.get(), dg.get(), grad_stride,
                                      dgx.get(), n);
        EXPECT_TRUE(allclose(dgx.to_host(), cpu_gx, kFloat32KernelTol))
            << what << " backward grad_stride " << grad_stride;
      }
    }
  }
}

TEST_F(PointwiseLossCuda, BinaryCrossEntropyWithLogitsPosWeightMatchesCpu) {
  uint32_t seed = 400;
  // pos_weight_size: one weight (a scalar), one per class of a last dimension of 7, or one
  // per element.
  for (int64_t n : {int64_t{0}, int64_t{7}, int64_t{4096 * 7}, int64_t{100003}}) {
    for (int64_t size : {int64_t{1}, int64_t{7}, n}) {
      if (size == 0 || n % size != 0) continue;
      std::vector<float> x = uniform_values<float>(n, -8.0f, 8.0f, seed++);
      const std::vector<float> t = uniform_values<float>(n, 0.0f, 1.0f, seed++);
      const std::vector<float> pw = uniform_values<float>(size, 0.0f, 5.0f, seed++);
      if (n >= 7) {
        x[0] = 90.0f;  // the overflow-free forms at large |x|
        x[1] = -90.0f;
      }
      std::vector<float> cpu_out(n);
      cpu::bce_with_logits_forward<float>({}, x.data(), t.data(), pw.data(), size,
                                          cpu_out.data(), n);
      DeviceBuffer<float> dx(x, stream_), dt(t, stream_), dpw(pw, stream_), dout(n, stream_);
      cuda::bce_with_logits_forward(stream_, dx.get(), dt.get(), dpw.get(), size, dout.get(), n);
      const std::string what =
          "bce_with_logits pos_weight n=" + std::to_string(n) + " size=" + std::to_string(size);
      EXPECT_TRUE(allclose(dout.to_host(), cpu_out, kFloat32KernelTol)) << what;
      for (int64_t grad_stride : {int64_t{0}, int64_t{1}}) {
        const std::vector<float> g = uniform_values<float>(grad_stride == 0 ? 1 : n, -2, 2, seed++);
        std::vector<float> cpu_gx(n);
        cpu::bce_with_logits_backward<float>({}, x.data(), t.data(), pw.data(), size, g.data(),
                                             grad_stride, cpu_gx.data(), n);
        DeviceBuffer<float> dg(g, stream_), dgx(n, stream_);
        cuda::bce_with_logits_backward(stream_, dx.get(), dt.get(), dpw.get(), size, dg.get(),
                                       grad_stride, dgx.get(), n);
        EXPECT_TRUE(allclose(dgx.to_host(), cpu_gx, kFloat32KernelTol))
            << what << " backward grad_stride " << grad_stride;
      }
    }
  }
}

// ---- dropout --------------------------------------------------------------------------

using DropoutCuda = CudaStreamTest;

TEST_F(DropoutCuda, MaskIsIdenticalToTheCpuMask) {
  // Note [Dropout random stream]: both draw the same Philox words.
  struct Case {
    int64_t n;
    double p;
    uint64_t seed, offset;
  };
  const Case cases[] = {{1, 0.5, 1, 0},
                        {3, 0.3, 2, 1},
                        {4, 0.5, 3, 2},
                        {5, 0.7, 0xffffffffffffffffULL, 3},
                        {1000, 0.1, 42, (uint64_t{1} << 40) + 17},
                        {100003, 0.5, 0x9e3779b97f4a7c15ULL, 12345}};
  for (const Case& c : cases) {
    std::vector<float> cpu_mask(c.n);
    cpu::dropout_mask<float>({}, cpu_mask.data(), c.n, c.p, c.seed, c.offset);
    DeviceBuffer<float> dmask(c.n, stream_);
    cuda::dropout_mask(stream_, dmask.get(), c.n, c.p, c.seed, c.offset);
    EXPECT_EQ(dmask.to_host(), cpu_mask) << "n=" << c.n << " p=" << c.p;
  }
}

TEST_F(DropoutCuda, UnalignedMaskIsWrittenElementByElement) {
  const int64_t n = 1001;
  std::vector<float> cpu_mask(n);
  cpu::dropout_mask<float>({}, cpu_mask.data(), n, 0.4, 77, 5);
  DeviceBuffer<float> dmask(n + 1, stream_);
  cuda::dropout_mask(stream_, dmask.get() + 1, n, 0.4, 77, 5);
  EXPECT_EQ(dmask.to_host(1, n), cpu_mask);
  EXPECT_TRUE(std::isnan(dmask.to_host(0, 1)[0])) << "wrote before the mask";
}

TEST_F(DropoutCuda, KeptFractionIsWithinThreeSigmaAndValuesAreZeroOrScale) {
  const int64_t n = 100000;
  for (double p : {0.1, 0.5, 0.9}) {
    DeviceBuffer<float> dmask(n, stream_);
    cuda::dropout_mask(stream_, dmask.get(), n, p, 2024, 7);
    const std::vector<float> mask = dmask.to_host();
    const float scale = static_cast<float>(1.0 / (1.0 - p));
    int64_t kept = 0, other = 0;
    for (float m : mask) {
      kept += m == scale;
      other += m != scale && m != 0.0f;
    }
    EXPECT_EQ(other, 0) << "p = " << p;
    const double sigma = std::sqrt(n * p * (1 - p));
    EXPECT_NEAR(static_cast<double>(kept), n * (1 - p), 3 * sigma) << "p = " << p;
  }
}

TEST_F(DropoutCuda, SameSeedAndOffsetGiveTheSameMaskAndAnotherOffsetDoesNot) {
  const int64_t n = 4099;
  DeviceBuffer<float> a(n, stream_), b(n, stream_), c(n, stream_);
  cuda::dropout_mask(stream_, a.get(), n, 0.5, 9, 1);
  cuda::dropout_mask(stream_, b.get(), n, 0.5, 9, 1);
  cuda::dropout_mask(stream_, c.get(), n, 0.5, 9, 2);
  const std::vector<float> ha = a.to_host();
  EXPECT_EQ(ha, b.to_host());
  EXPECT_NE(ha, c.to_host());
}

TEST_F(DropoutCuda, ZeroProbabilityKeepsEverythingAndEmptyMaskIsANoOp) {
  const int64_t n = 4097;
  DeviceBuffer<float> mask(n, stream_);
  cuda::dropout_mask(stream_, mask.get(), n, 0.0, 5, 0);
  for (float m : mask.to_host()) ASSERT_EQ(m, 1.0f);
  cuda::dropout_mask(stream_, mask.get(), 0, 0.5, 5, 0);
  EMBER_CUDA_CHECK(cudaStreamSynchronize(stream_));
}

TEST_F(DropoutCuda, RejectsProbabilityOutsideZeroToOne) {
  DeviceBuffer<float> mask(4, stream_);
  EXPECT_THROW(cuda::dropout_mask(stream_, mask.get(), 4, 1.0, 0, 0), ember::Error);
  EXPECT_THROW(cuda::dropout_mask(stream_, mask.get(), 4, -0.5, 0, 0), ember::Error);
}

}  // namespace
}  // namespace ember::kernels
