// The CUDA GEMM twin (kernels/cuda/gemm.cuh, cuBLAS) against kernels/cpu/gemm on random
// shapes (odd sizes, transposes, padded leading dimensions, batches, broadcasts, k == 0),
// outputs pre-filled with NaN.
#include "ember/kernels/cuda/gemm.cuh"

#include <cublas_v2.h>
#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

#include "ember/core/base/cuda_check.h"
#include "ember/core/base/error.h"
#include "ember/kernels/cpu/gemm.h"
#include "support/device_buffer.h"

namespace {

using ember::testing::DeviceBuffer;

struct Case {
  bool ta = false, tb = false;
  int64_t m = 1, n = 1, k = 1;
  int64_t lda_pad = 0, ldb_pad = 0, ldc_pad = 0;
  int64_t batch = 1;
  bool broadcast_a = false, broadcast_b = false;
  float alpha = 1, beta = 0;
};

// stream_ (CudaStreamTest) with a cuBLAS handle of its own bound to it.
class GemmCuda : public ember::testing::CudaStreamTest {
 protected:
  void SetUp() override {
    CudaStreamTest::SetUp();
    if (IsSkipped()) return;
    EMBER_CUBLAS_CHECK(cublasCreate(&handle_));
    EMBER_CUBLAS_CHECK(cublasSetStream(handle_, stream_));
    // Plain FP32 arithmetic: the tolerances below assume no TF32.
    EMBER_CUBLAS_CHECK(cublasSetMathMode(handle_, CUBLAS_DEFAULT_MATH));
    ctx_ = ember::kernels::cuda::Context(stream_);
    ctx_.cublas = handle_;
  }
  void TearDown() override {
    if (handle_ != nullptr) cublasDestroy(handle_);
    CudaStreamTest::TearDown();
  }

  // Same random operands through both backends; C starts as NaN when beta == 0 (it must
  // not be read) and as random values otherwise. Padding must come back untouched.
  void check_parity(const Case& cs, uint32_t seed) {
    std::mt19937 rng(seed);
    std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
    const int64_t a_rows = cs.ta ? cs.k : cs.m, a_cols = cs.ta ? cs.m : cs.k;
    const int64_t b_rows = cs.tb ? cs.n : cs.k, b_cols = cs.tb ? cs.k : cs.n;
    const int64_t lda = std::max<int64_t>(1, a_cols + cs.lda_pad);
    const int64_t ldb = std::max<int64_t>(1, b_cols + cs.ldb_pad);
    const int64_t ldc = cs.n + cs.ldc_pad;
    const int64_t a_size = a_rows * lda, b_size = b_rows * ldb, c_size = cs.m * ldc;
    const int64_t stride_a = cs.broadcast_a ? 0 : a_size;
    const int64_t stride_b = cs.broadcast_b ? 0 : b_size;
    const int64_t stride_c = c_size;
    std::vector<float> a(cs.broadcast_a ? a_size : a_size * cs.batch);
    std::vector<float> b(cs.broadcast_b ? b_size : b_size * cs.batch);
    std::vector<float> c(c_size * cs.batch);
    for (auto& v : a) v = dist(rng);
    for (auto& v : b) v = dist(rng);
    const float nan = std::numeric_limits<float>::quiet_NaN();
    for (int64_t idx = 0; idx < static_cast<int64_t>(c.size()); ++idx) {
      const bool padding = idx % ldc >= cs.n;
      c[idx] = (cs.beta == 0 || padding) ? nan : dist(rng);
    }

    DeviceBuffer<float> da(a, stream_), db(b, stream_), dc(c, stream_);
    ember::kernels::cuda::gemm(ctx_, cs.ta, cs.tb, cs.m, cs.n, cs.k, cs.alpha, da.get(), lda,
                               stride_a, db.get(), ldb, stride_b, cs.beta, dc.get(), ldc,
                               stride_c, cs.batch);
    const std::vector<float> got = dc.to_host();

    std::vector<float> want = c;
    ember::kernels::cpu::gemm<float>({}, cs.ta, cs.tb, cs.m, cs.n, cs.k, cs.alpha, a.data(),
                                     lda, stride_a, b.data(), ldb, stride_b, cs.beta,
                                     want.data(), ldc, stride_c, cs.batch);

    // Operands lie in [-1, 1], so |C| <= k |alpha| + |beta|; FP32 accumulation error is
    // bounded by a few ulp of that per term.
    const double tol = 1e-6 * (cs.k * std::abs(cs.alpha) + std::abs(cs.beta) + 1);
    for (size_t idx = 0; idx < got.size(); ++idx) {
      const int64_t col = static_cast<int64_t>(idx) % ldc;
      if (col >= cs.n) {
        ASSERT_TRUE(std::isnan(got[idx])) << "padding of C written at flat index " << idx;
        continue;
      }
      ASSERT_FALSE(std::isnan(got[idx])) << "NaN at flat index " << idx;
      ASSERT_NEAR(got[idx], want[idx], tol)
          << "flat index " << idx << " m=" << cs.m << " n=" << cs.n << " k=" << cs.k
          << " ta=" << cs.ta << " tb=" << cs.tb << " batch=" << cs.batch;
    }
  }

  cublasHandle_t handle_ = nullptr;
  ember::kernels::cuda::Context ctx_;  // stream_ and handle_
};

TEST_F(GemmCuda, AllTransposeCombinationsOddSizes) {
  uint32_t seed = 1;
  for (bool ta : {false, true}) {
    for (bool tb : {false, true}) {
      Case cs;
      cs.ta = ta;
      cs.tb = tb;
      cs.m = 37;
      cs.n = 19;
      cs.k = 53;
      check_parity(cs, seed++);
    }
  }
}

TEST_F(GemmCuda, RandomShapesMatchCpu) {
  std::mt19937 rng(2024);
  std::uniform_int_distribution<int64_t> size(1, 70), pad(0, 3), batch(1, 4);
  std::uniform_int_distribution<int> coin(0, 1);
  for (uint32_t trial = 0; trial < 40; ++trial) {
    Case cs;
    cs.ta = coin(rng);
    cs.tb = coin(rng);
    cs.m = size(rng);
    cs.n = size(rng);
    cs.k = size(rng);
    cs.lda_pad = pad(rng);
    cs.ldb_pad = pad(rng);
    cs.ldc_pad = pad(rng);
    cs.batch = batch(rng);
    cs.broadcast_b = cs.batch > 1 && coin(rng);
    cs.alpha = coin(rng) ? 1.0f : -0.75f;
    cs.beta = coin(rng) ? 0.0f : 0.5f;
    SCOPED_TRACE(::testing::Message() << "trial " << trial);
    check_parity(cs, 100 + trial);
  }
}

TEST_F(GemmCuda, SizeOneAndLargeK) {
  Case cs;
  cs.m = 1;
  cs.n = 1;
  cs.k = 4097;
  check_parity(cs, 7);
  cs.m = 129;
  cs.n = 1;
  cs.k = 1;
  cs.tb = true;
  check_parity(cs, 8);
}

TEST_F(GemmCuda, BatchedBroadcastA) {
  Case cs;
  cs.m = 8;
  cs.n = 13;
  cs.k = 9;
  cs.batch = 5;
  cs.broadcast_a = true;
  cs.ldc_pad = 2;
  cs.beta = 1.0f;
  check_parity(cs, 11);
}

TEST_F(GemmCuda, KZeroMatchesCpu) {
  for (float beta : {0.0f, 1.0f, -2.0f}) {
    for (int64_t ldc_pad : {0, 3}) {
      for (int64_t batch : {1, 3}) {
        for (int64_t m : {2, 9}) {  // m > n takes the column-wise scaling path
          Case cs;
          cs.m = m;
          cs.n = 5;
          cs.k = 0;
          cs.ldc_pad = ldc_pad;
          cs.batch = batch;
          cs.beta = beta;
          check_parity(cs, 21);
        }
      }
    }
  }
}

TEST_F(GemmCuda, EmptyOutputDoesNothing) {
  const std::vector<float> sentinel = {1, 2, 3, 4};
  DeviceBuffer<float> dc(sentinel, stream_);
  ember::kernels::cuda::gemm<float>(ctx_, false, false, 0, 4, 3, 1.0f, nullptr, 3, 0, nullptr,
                                    4, 0, 0.0f, dc.get(), 4, 0, 1);
  ember::kernels::cuda::gemm<float>(ctx_, false, false, 4, 0, 3, 1.0f, nullptr, 3, 0, nullptr,
                                    1, 0, 0.0f, dc.get(), 1, 0, 1);
  EXPECT_EQ(dc.to_host(), sentinel);
}

TEST_F(GemmCuda, DevicePointerModeIsHonouredAndRestored) {
  EMBER_CUBLAS_CHECK(cublasSetPointerMode(handle_, CUBLAS_POINTER_MODE_DEVICE));
  Case cs;
  cs.m = 6;
  cs.n = 7;
  cs.k = 8;
  cs.alpha = 2.0f;
  cs.beta = 0.5f;
  check_parity(cs, 31);
  cublasPointerMode_t mode = CUBLAS_POINTER_MODE_HOST;
  EMBER_CUBLAS_CHECK(cublasGetPointerMode(handle_, &mode));
  EXPECT_EQ(mode, CUBLAS_POINTER_MODE_DEVICE);
}

TEST_F(GemmCuda, SizeBeyondIntThrows) {
  DeviceBuffer<float> d(1, stream_);
  const int64_t huge = int64_t{1} << 33;
  EXPECT_THROW(ember::kernels::cuda::gemm(ctx_, false, false, huge, 1, 1, 1.0f, d.get(), 1, 0,
                                          d.get(), 1, 0, 0.0f, d.get(), 1, 0, 1),
               ember::Error);
}

}  // namespace
