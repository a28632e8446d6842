// CPU <-> CUDA parity for reductions, arg-max/min and softmax on shapes with 0, 1, odd
// and large extents, within kFloat32KernelTol (exact for integers, indices and the index
// backward). Device outputs start as 0xFF garbage; every launch runs on a created stream.
// Skipped, with the reason, when there is no GPU.
#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <type_traits>
#include <vector>

#include "ember/core/base/cuda_check.h"
#include "ember/core/base/error.h"
#include "ember/kernels/cpu/reduce.h"
#include "ember/kernels/cuda/reduce.cuh"
#include "support/allclose.h"
#include "support/device_buffer.h"
#include "support/random.h"

namespace ember::kernels {
namespace {

using ember::testing::allclose;
using ember::testing::CudaStreamTest;
using ember::testing::DeviceBuffer;
using ember::testing::kExact;
using ember::testing::kFloat32KernelTol;
using ember::testing::uniform_values;

struct Shape {
  int64_t outer, n, inner;
  int64_t numel() const { return outer * n * inner; }
  std::string str() const {
    return "[" + std::to_string(outer) + ", " + std::to_string(n) + ", " + std::to_string(inner) +
           "]";
  }
};

// Empty extents, single elements, rows on each side of the block-per-row threshold, odd
// and large axes, both contiguous (inner == 1) and strided.
const Shape kShapes[] = {{0, 5, 3},      {3, 0, 2},   {4, 7, 0},   {1, 1, 1},     {2, 1, 5},
                         {5, 3, 1},      {3, 127, 1}, {3, 128, 1}, {7, 1000, 1},  {2, 100003, 1},
                         {1, 100003, 3}, {3, 17, 33}, {4, 5, 257}, {1000, 10, 1}, {33, 129, 2}};

// Multiples of 1/8 in [-2, 2]: many ties (so first-index rules are exercised) and sums
// that are exact in double, so Sum and Mean agree to the last bit.
std::vector<float> quantized_values(int64_t n, uint32_t seed) {
  std::mt19937 gen(seed);
  std::uniform_int_distribution<int> dist(-16, 16);
  std::vector<float> v(static_cast<size_t>(n));
  for (float& e : v) e = static_cast<float>(dist(gen)) / 8.0f;
  return v;
}

const char* op_name(ReduceOp op) {
  switch (op) {
    case ReduceOp::Sum:
      return "sum";
    case ReduceOp::Mean:
      return "mean";
    case ReduceOp::Max:
      return "max";
    case ReduceOp::Min:
      return "min";
  }
  return "?";
}

// Runs one reduction on both devices and compares values (and indices for max/min).
template <typename T>
void check_reduce_parity(cudaStream_t stream, ReduceOp op, const Shape& s,
                         const std::vector<T>& x) {
  const bool extreme = op == ReduceOp::Max || op == ReduceOp::Min;
  const int64_t out_n = s.outer * s.inner;
  std::vector<T> cpu_out(static_cast<size_t>(out_n));
  std::vector<int64_t> cpu_idx(static_cast<size_t>(out_n));
  cpu::reduce<T>({}, op, x.data(), cpu_out.data(), extreme ? cpu_idx.data() : nullptr, s.outer, s.n,
                 s.inner);

  DeviceBuffer<T> dx(x, stream);
  DeviceBuffer<T> dout(static_cast<size_t>(out_n), stream);
  DeviceBuffer<int64_t> didx(static_cast<size_t>(out_n), stream);
  cuda::reduce<T>(stream, op, dx.get(), dout.get(), extreme ? didx.get() : nullptr, s.outer, s.n,
                  s.inner);
  const std::string what = std::string(op_name(op)) + " over " + s.str();
  if constexpr (std::is_floating_point_v<T>) {
    EXPECT_TRUE(allclose(dout.to_host(), cpu_out, kFloat32KernelTol)) << what;
  } else {
    EXPECT_TRUE(allclose(dout.to_host(), cpu_out, kExact)) << what;
  }
  if (extreme) {
    EXPECT_TRUE(allclose(didx.to_host(), cpu_idx, kExact)) << what << " (indices)";
  }
}

using ReduceCuda = CudaStreamTest;

TEST_F(ReduceCuda, FloatReductionsMatchCpuOnEveryShape) {
  uint32_t seed = 1;
  for (const Shape& s : kShapes) {
    const std::vector<float> x = quantized_values(s.numel(), seed++);
    for (ReduceOp op : {ReduceOp::Sum, ReduceOp::Mean, ReduceOp::Max, ReduceOp::Min}) {
      if (s.n == 0 && (op == ReduceOp::Max || op == ReduceOp::Min)) continue;  // op rejects
      check_reduce_parity<float>(stream_, op, s, x);
    }
  }
}

TEST_F(ReduceCuda, FloatSumsOfContinuousValuesMatchCpu) {
  uint32_t seed = 100;
  for (const Shape& s : kShapes) {
    const std::vector<float> x = uniform_values<float>(s.numel(), -1.0f, 1.0f, seed++);
    check_reduce_parity<float>(stream_, ReduceOp::Sum, s, x);
    check_reduce_parity<float>(stream_, ReduceOp::Mean, s, x);
  }
}

TEST_F(ReduceCuda, Int64ReductionsMatchCpuExactly) {
  uint32_t seed = 200;
  for (const Shape& s : kShapes) {
    std::mt19937 gen(seed++);
    std::uniform_int_distribution<int64_t> small(-3, 3);  // ties everywhere
    std::uniform_int_distribution<int64_t> large(-1000000000000LL, 1000000000000LL);
    std::vector<int64_t> ties(static_cast<size_t>(s.numel())), big(ties.size());
    for (int64_t& v : ties) v = small(gen);
    for (int64_t& v : big) v = large(gen);  // sums beyond 2^53: exact only in int64
    for (ReduceOp op : {ReduceOp::Sum, ReduceOp::Max, ReduceOp::Min}) {
      if (s.n == 0 && op != ReduceOp::Sum) continue;
      check_reduce_parity<int64_t>(stream_, op, s, ties);
      check_reduce_parity<int64_t>(stream_, op, s, big);
    }
  }
}

TEST_F(ReduceCuda, MaxAndMinPropagateTheFirstNaNLikeCpu) {
  const Shape shapes[] = {{3, 300, 1}, {3, 50, 1}, {2, 40, 3}, {2, 100003, 1}};
  uint32_t seed = 300;
  for (const Shape& s : shapes) {
    std::vector<float> x = quantized_values(s.numel(), seed++);
    // Column (0, 0) gets two NaNs (the first must win); column (outer-1, inner-1) one.
    x[(0 * s.n + s.n / 2) * s.inner + 0] = NAN;
    x[(0 * s.n + s.n / 3) * s.inner + 0] = NAN;
    x[((s.outer - 1) * s.n + s.n - 1) * s.inner + s.inner - 1] = NAN;
    check_reduce_parity<float>(stream_, ReduceOp::Max, s, x);
    check_reduce_parity<float>(stream_, ReduceOp::Min, s, x);
  }
}

TEST_F(ReduceCuda, MeanOfInt64IsRejected) {
  DeviceBuffer<int64_t> x(3, stream_), out(1, stream_);
  EXPECT_THROW(cuda::reduce<int64_t>(stream_, ReduceOp::Mean, x.get(), out.get(), nullptr, 1, 3, 1),
               ember::Error);
}

TEST_F(ReduceCuda, IndexBackwardMatchesCpu) {
  uint32_t seed = 400;
  for (const Shape& s : kShapes) {
    if (s.n == 0) continue;
    const std::vector<float> x = quantized_values(s.numel(), seed++);
    const int64_t out_n = s.outer * s.inner;
    std::vector<float> y(static_cast<size_t>(out_n));
    std::vector<int64_t> idx(static_cast<size_t>(out_n));
    cpu::reduce<float>({}, ReduceOp::Max, x.data(), y.data(), idx.data(), s.outer, s.n, s.inner);
    const std::vector<float> gy = uniform_values<float>(out_n, -1.0f, 1.0f, seed++);
    std::vector<float> cpu_gx(static_cast<size_t>(s.numel()));
    cpu::reduce_index_backward<float>({}, idx.data(), gy.data(), cpu_gx.data(), s.outer, s.n,
                                      s.inner);
    DeviceBuffer<int64_t> didx(idx, stream_);
    DeviceBuffer<float> dgy(gy, stream_);
    DeviceBuffer<float> dgx(static_cast<size_t>(s.numel()), stream_);
    cuda::reduce_index_backward(stream_, didx.get(), dgy.get(), dgx.get(), s.outer, s.n, s.inner);
    EXPECT_TRUE(allclose(dgx.to_host(), cpu_gx, kExact)) << "index backward over " << s.str();
  }
}

// ---- softmax --------------------------------------------------------------------------

using SoftmaxCuda = CudaStreamTest;

TEST_F(SoftmaxCuda, ForwardMatchesCpuOnEveryShape) {
  uint32_t seed = 500;
  for (const Shape& s : kShapes) {
    const std::vector<float> x = uniform_values<float>(s.numel(), -8.0f, 8.0f, seed++);
    for (bool log : {false, true}) {
      std::vector<float> cpu_y(x.size());
      cpu::softmax_forward<float>({}, x.data(), cpu_y.data(), s.outer, s.n, s.inner, log);
      DeviceBuffer<float> dx(x, stream_);
      DeviceBuffer<float> dy(x.size(), stream_);
      cuda::softmax_forward(stream_, dx.get(), dy.get(), s.outer, s.n, s.inner, log);
      EXPECT_TRUE(allclose(dy.to_host(), cpu_y, kFloat32KernelTol))
          << std::string(log ? "log_softmax" : "softmax") << " over " << s.str();
    }
  }
}

TEST_F(SoftmaxCuda, LargeLogitsDoNotOverflow) {
  const Shape s{2, 300, 1};
  std::vector<float> x = uniform_values<float>(s.numel(), 1000.0f, 1010.0f, 550);
  std::vector<float> cpu_y(x.size());
  cpu::softmax_forward<float>({}, x.data(), cpu_y.data(), s.outer, s.n, s.inner, false);
  DeviceBuffer<float> dx(x, stream_), dy(x.size(), stream_);
  cuda::softmax_forward(stream_, dx.get(), dy.get(), s.outer, s.n, s.inner, false);
  EXPECT_TRUE(allclose(dy.to_host(), cpu_y, kFloat32KernelTol)) << "softmax of logits near 1000";
}

TEST_F(SoftmaxCuda, BackwardMatchesCpuOnEveryShape) {
  uint32_t seed = 600;
  for (const Shape& s : kShapes) {
    const std::vector<float> x = uniform_values<float>(s.numel(), -4.0f, 4.0f, seed++);
    const std::vector<float> gy = uniform_values<float>(s.numel(), -1.0f, 1.0f, seed++);
    for (bool log : {false, true}) {
      std::vector<float> y(x.size()), cpu_gx(x.size());
      cpu::softmax_forward<float>({}, x.data(), y.data(), s.outer, s.n, s.inner, log);
      cpu::softmax_backward<float>({}, y.data(), gy.data(), cpu_gx.data(), s.outer, s.n, s.inner,
                                   log);
      DeviceBuffer<float> dy(y, stream_), dgy(gy, stream_), dgx(x.size(), stream_);
      cuda::softmax_backward(stream_, dy.get(), dgy.get(), dgx.get(), s.outer, s.n, s.inner, log);
      EXPECT_TRUE(allclose(dgx.to_host(), cpu_gx, kFloat32KernelTol))
          << std::string(log ? "log_softmax" : "softmax") << " backward over " << s.str();
    }
  }
}

}  // namespace
}  // namespace ember::kernels
