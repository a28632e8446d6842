// CPU <-> CUDA parity for reductions, arg-max/min and softmax on shapes with 0, 1, odd
// and large extents. Device outputs start as 0xFF garbage; every launch runs on a created
// stream. Skipped, with the reason, when there is no GPU.
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

namespace ember::kernels {
namespace {

// Float tolerances, stated once: the GPU sums softmax terms in float and in another
// order than the CPU, which sums in double.
constexpr double kRtol = 1e-4;
constexpr double kAtol = 1e-6;

bool cuda_device_available() {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    (void)cudaGetLastError();  // "no driver" / "no device" is a normal state, not an error
    return false;
  }
  return count > 0;
}

// Device memory that starts as 0xFF bytes (NaN for float, -1 for int64), so an element a
// kernel forgets to write cannot pass for a correct one.
template <typename T>
class DeviceBuffer {
 public:
  DeviceBuffer(size_t n, cudaStream_t stream) : n_(n), stream_(stream) {
    EMBER_CUDA_CHECK(cudaMalloc(reinterpret_cast<void**>(&ptr_), bytes()));
    EMBER_CUDA_CHECK(cudaMemsetAsync(ptr_, 0xFF, bytes(), stream_));
  }
  DeviceBuffer(const std::vector<T>& host, cudaStream_t stream)
      : DeviceBuffer(host.size(), stream) {
    EMBER_CUDA_CHECK(
        cudaMemcpyAsync(ptr_, host.data(), n_ * sizeof(T), cudaMemcpyHostToDevice, stream_));
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  ~DeviceBuffer() { EMBER_CUDA_WARN(cudaFree(ptr_)); }

  T* get() const { return ptr_; }

  std::vector<T> to_host() const {
    std::vector<T> host(n_);
    EMBER_CUDA_CHECK(
        cudaMemcpyAsync(host.data(), ptr_, n_ * sizeof(T), cudaMemcpyDeviceToHost, stream_));
    EMBER_CUDA_CHECK(cudaStreamSynchronize(stream_));
    return host;
  }

 private:
  size_t bytes() const { return std::max<size_t>(n_, 1) * sizeof(T); }
  T* ptr_ = nullptr;
  size_t n_;
  cudaStream_t stream_;
};

class CudaTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!cuda_device_available()) {
      GTEST_SKIP() << "no CUDA device (cudaGetDeviceCount found none): CUDA kernels not run";
    }
    EMBER_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
  }
  void TearDown() override {
    if (stream_ != nullptr) EMBER_CUDA_WARN(cudaStreamDestroy(stream_));
  }
  cudaStream_t stream_ = nullptr;
};

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

std::vector<float> uniform_values(int64_t n, uint32_t seed, float lo, float hi) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<float> v(static_cast<size_t>(n));
  for (float& e : v) e = dist(gen);
  return v;
}

void expect_close(const std::vector<float>& gpu, const std::vector<float>& cpu,
                  const std::string& what) {
  ASSERT_EQ(gpu.size(), cpu.size()) << what;
  int failures = 0;
  for (size_t i = 0; i < cpu.size() && failures < 10; ++i) {
    const bool ok = std::isnan(cpu[i])
                        ? std::isnan(gpu[i])
                        : std::fabs(gpu[i] - cpu[i]) <= kAtol + kRtol * std::fabs(cpu[i]);
    if (!ok) {
      ++failures;
      ADD_FAILURE() << what << " element " << i << ": cuda " << gpu[i] << ", cpu " << cpu[i];
    }
  }
}

template <typename T>
void expect_equal(const std::vector<T>& gpu, const std::vector<T>& cpu, const std::string& what) {
  ASSERT_EQ(gpu.size(), cpu.size()) << what;
  int failures = 0;
  for (size_t i = 0; i < cpu.size() && failures < 10; ++i) {
    if constexpr (std::is_floating_point_v<T>) {
      if (std::isnan(cpu[i]) && std::isnan(gpu[i])) continue;
    }
    if (gpu[i] != cpu[i]) {
      ++failures;
      ADD_FAILURE() << what << " element " << i << ": cuda " << gpu[i] << ", cpu " << cpu[i];
    }
  }
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
  cpu::reduce<T>(op, x.data(), cpu_out.data(), extreme ? cpu_idx.data() : nullptr, s.outer, s.n,
                 s.inner);

  DeviceBuffer<T> dx(x, stream);
  DeviceBuffer<T> dout(static_cast<size_t>(out_n), stream);
  DeviceBuffer<int64_t> didx(static_cast<size_t>(out_n), stream);
  cuda::reduce<T>(stream, op, dx.get(), dout.get(), extreme ? didx.get() : nullptr, s.outer, s.n,
                  s.inner);
  const std::string what = std::string(op_name(op)) + " over " + s.str();
  if constexpr (std::is_floating_point_v<T>) {
    expect_close(dout.to_host(), cpu_out, what);
  } else {
    expect_equal(dout.to_host(), cpu_out, what);
  }
  if (extreme) expect_equal(didx.to_host(), cpu_idx, what + " (indices)");
}

using ReduceCuda = CudaTest;

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
    const std::vector<float> x = uniform_values(s.numel(), seed++, -1.0f, 1.0f);
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
    cpu::reduce<float>(ReduceOp::Max, x.data(), y.data(), idx.data(), s.outer, s.n, s.inner);
    const std::vector<float> gy = uniform_values(out_n, seed++, -1.0f, 1.0f);
    std::vector<float> cpu_gx(static_cast<size_t>(s.numel()));
    cpu::reduce_index_backward<float>(idx.data(), gy.data(), cpu_gx.data(), s.outer, s.n, s.inner);
    DeviceBuffer<int64_t> didx(idx, stream_);
    DeviceBuffer<float> dgy(gy, stream_);
    DeviceBuffer<float> dgx(static_cast<size_t>(s.numel()), stream_);
    cuda::reduce_index_backward(stream_, didx.get(), dgy.get(), dgx.get(), s.outer, s.n, s.inner);
    expect_equal(dgx.to_host(), cpu_gx, "index backward over " + s.str());
  }
}

// ---- softmax --------------------------------------------------------------------------

using SoftmaxCuda = CudaTest;

TEST_F(SoftmaxCuda, ForwardMatchesCpuOnEveryShape) {
  uint32_t seed = 500;
  for (const Shape& s : kShapes) {
    const std::vector<float> x = uniform_values(s.numel(), seed++, -8.0f, 8.0f);
    for (bool log : {false, true}) {
      std::vector<float> cpu_y(x.size());
      cpu::softmax_forward<float>(x.data(), cpu_y.data(), s.outer, s.n, s.inner, log);
      DeviceBuffer<float> dx(x, stream_);
      DeviceBuffer<float> dy(x.size(), stream_);
      cuda::softmax_forward(stream_, dx.get(), dy.get(), s.outer, s.n, s.inner, log);
      expect_close(dy.to_host(), cpu_y,
                   std::string(log ? "log_softmax" : "softmax") + " over " + s.str());
    }
  }
}

TEST_F(SoftmaxCuda, LargeLogitsDoNotOverflow) {
  const Shape s{2, 300, 1};
  std::vector<float> x = uniform_values(s.numel(), 550, 1000.0f, 1010.0f);
  std::vector<float> cpu_y(x.size());
  cpu::softmax_forward<float>(x.data(), cpu_y.data(), s.outer, s.n, s.inner, false);
  DeviceBuffer<float> dx(x, stream_), dy(x.size(), stream_);
  cuda::softmax_forward(stream_, dx.get(), dy.get(), s.outer, s.n, s.inner, false);
  expect_close(dy.to_host(), cpu_y, "softmax of logits near 1000");
}

TEST_F(SoftmaxCuda, BackwardMatchesCpuOnEveryShape) {
  uint32_t seed = 600;
  for (const Shape& s : kShapes) {
    const std::vector<float> x = uniform_values(s.numel(), seed++, -4.0f, 4.0f);
    const std::vector<float> gy = uniform_values(s.numel(), seed++, -1.0f, 1.0f);
    for (bool log : {false, true}) {
      std::vector<float> y(x.size()), cpu_gx(x.size());
      cpu::softmax_forward<float>(x.data(), y.data(), s.outer, s.n, s.inner, log);
      cpu::softmax_backward<float>(y.data(), gy.data(), cpu_gx.data(), s.outer, s.n, s.inner, log);
      DeviceBuffer<float> dy(y, stream_), dgy(gy, stream_), dgx(x.size(), stream_);
      cuda::softmax_backward(stream_, dy.get(), dgy.get(), dgx.get(), s.outer, s.n, s.inner, log);
      expect_close(dgx.to_host(), cpu_gx,
                   std::string(log ? "log_softmax" : "softmax") + " backward over " + s.str());
    }
  }
}

}  // namespace
}  // namespace ember::kernels
