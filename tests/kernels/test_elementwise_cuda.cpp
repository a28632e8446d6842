// CPU <-> CUDA parity for the elementwise kernels (kernels/cuda/elementwise.cuh): every
// op on random data of odd sizes, broadcast and strided indexes, device outputs pre-filled
// with garbage. Skipped, with the reason, where no GPU is present.
#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <type_traits>
#include <vector>

#include "ember/core/base/cuda_check.h"
#include "ember/core/base/error.h"
#include "ember/kernels/cpu/elementwise.h"
#include "ember/kernels/cuda/elementwise.cuh"
#include "support/allclose.h"
#include "support/device_buffer.h"

namespace {

using namespace ember::kernels;

// Float parity tolerance: the device's libm differs from glibc by a few ulps and nvcc
// contracts a * b + c into FMAs. Integer, bool, cast, fill and copy results must match
// exactly.
constexpr ember::testing::Tolerance kParityTol{1e-5, 1e-5};

constexpr int64_t kSizes[] = {0, 1, 7, 1000, 100003};
constexpr int kF32 = 0, kI32 = 2, kI64 = 3, kU8 = 4, kBool = 5;
constexpr int kCudaDtypes[] = {kF32, kI32, kI64, kU8, kBool};  // float64 is CPU-only

constexpr UnaryOp kAllUnaryOps[] = {
    UnaryOp::Neg,       UnaryOp::Exp,     UnaryOp::Log,  UnaryOp::Sqrt,      UnaryOp::Abs,
    UnaryOp::Pow,       UnaryOp::Clamp,   UnaryOp::Relu, UnaryOp::LeakyRelu, UnaryOp::Sigmoid,
    UnaryOp::Tanh,      UnaryOp::Gelu,    UnaryOp::AddScalar, UnaryOp::MulScalar};
constexpr BinaryOp kAllBinaryOps[] = {BinaryOp::Add, BinaryOp::Sub,     BinaryOp::Mul,
                                      BinaryOp::Div, BinaryOp::Maximum, BinaryOp::Minimum};
constexpr CompareOp kAllCompareOps[] = {CompareOp::Eq, CompareOp::Ne, CompareOp::Lt,
                                        CompareOp::Le, CompareOp::Gt, CompareOp::Ge};

// A host array that also works for bool (std::vector<bool> has no data()).
template <typename T>
struct Host {
  explicit Host(int64_t count) : n(count), p(new T[std::max<int64_t>(count, 1)]()) {}
  T* data() { return p.get(); }
  const T* data() const { return p.get(); }
  T& operator[](int64_t i) { return p[i]; }
  const T& operator[](int64_t i) const { return p[i]; }
  int64_t n;
  std::unique_ptr<T[]> p;
};

// Values in [lo, hi]; integers in a small range so comparisons see ties and Div sees 0.
template <typename T>
Host<T> random_host(int64_t n, std::mt19937& rng, double lo = -3.0, double hi = 3.0) {
  Host<T> h(n);
  if constexpr (std::is_same_v<T, bool>) {
    std::bernoulli_distribution dist(0.5);
    for (int64_t i = 0; i < n; ++i) h[i] = dist(rng);
  } else if constexpr (std::is_floating_point_v<T>) {
    std::uniform_real_distribution<double> dist(lo, hi);
    for (int64_t i = 0; i < n; ++i) h[i] = static_cast<T>(dist(rng));
  } else {
    std::uniform_int_distribution<int64_t> dist(static_cast<int64_t>(lo), static_cast<int64_t>(hi));
    for (int64_t i = 0; i < n; ++i) h[i] = static_cast<T>(dist(rng));
  }
  return h;
}

std::string op_name(UnaryOp op) { return "UnaryOp " + std::to_string(static_cast<int>(op)); }

// Parameters and an input range inside each op's domain.
UnaryParams params_for(UnaryOp op) {
  UnaryParams p;
  switch (op) {
    case UnaryOp::Pow: p.a = 2.5; break;
    case UnaryOp::Clamp: p.a = -1.0; p.b = 1.5; break;
    case UnaryOp::LeakyRelu: p.a = 0.01; break;
    case UnaryOp::AddScalar: p.a = 0.75; break;
    case UnaryOp::MulScalar: p.a = -1.25; break;
    default: break;
  }
  return p;
}

bool needs_positive_input(UnaryOp op) {
  return op == UnaryOp::Log || op == UnaryOp::Sqrt || op == UnaryOp::Pow;
}

// The first n elements of the CPU's and the GPU's results (tests/support/allclose.h):
// floats within kParityTol, everything else exactly.
template <typename T>
::testing::AssertionResult all_close(const Host<T>& want, const Host<T>& got, int64_t n) {
  const std::vector<T> w(want.data(), want.data() + n), g(got.data(), got.data() + n);
  return ember::testing::allclose(
      g, w, std::is_floating_point_v<T> ? kParityTol : ember::testing::kExact);
}

// ------------------------------------------------------------------ indexes

int64_t numel(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t s : shape) n *= s;
  return n;
}

// Shapes right-aligned against `out`; size-1 or missing input dimensions get stride 0.
BroadcastIndex make_broadcast(const std::vector<int64_t>& out, const std::vector<int64_t>& a,
                              const std::vector<int64_t>& b) {
  BroadcastIndex idx;
  idx.ndim = static_cast<int>(out.size());
  auto strides_of = [&](const std::vector<int64_t>& shape, int64_t* strides) {
    int64_t stride = 1;
    for (int d = idx.ndim - 1, s = static_cast<int>(shape.size()) - 1; d >= 0; --d, --s) {
      const int64_t size = s >= 0 ? shape[s] : 1;
      strides[d] = size == 1 ? 0 : stride;
      stride *= size;
    }
  };
  for (int d = 0; d < idx.ndim; ++d) idx.sizes[d] = out[d];
  strides_of(a, idx.stride_a);
  strides_of(b, idx.stride_b);
  return idx;
}

// One binary/compare indexing scenario: the index and the element count of each input.
struct IndexCase {
  std::string name;
  BroadcastIndex idx;
  int64_t n;
  int64_t a_size;
  int64_t b_size;
};

std::vector<IndexCase> index_cases() {
  std::vector<IndexCase> cases;
  auto bcast = [&](std::string name, std::vector<int64_t> out, std::vector<int64_t> a,
                   std::vector<int64_t> b) {
    cases.push_back({std::move(name), make_broadcast(out, a, b), numel(out), numel(a), numel(b)});
  };
  for (int64_t n : kSizes) bcast("contiguous " + std::to_string(n), {n}, {n}, {n});
  bcast("rank 0", {}, {}, {});
  bcast("[100003] op []", {100003}, {100003}, {});
  bcast("[2,3] op [3]", {2, 3}, {2, 3}, {3});
  bcast("[2,1] op [1,3]", {2, 3}, {2, 1}, {1, 3});
  bcast("[317,331] op [317,1]", {317, 331}, {317, 331}, {317, 1});
  bcast("[3,1,5,7] op [4,1,1]", {3, 4, 5, 7}, {3, 1, 5, 7}, {4, 1, 1});
  bcast("[0,3] op [3]", {0, 3}, {0, 3}, {3});

  // a: a contiguous [331, 317] matrix read as its transpose; b: contiguous [317, 331].
  BroadcastIndex t;
  t.ndim = 2;
  t.sizes[0] = 317;
  t.sizes[1] = 331;
  t.stride_a[0] = 1;
  t.stride_a[1] = 317;
  t.stride_b[0] = 331;
  t.stride_b[1] = 1;
  cases.push_back({"transposed a [317,331]", t, 317 * 331, 317 * 331, 317 * 331});

  // a: [6, 7, 9] permuted (2, 0, 1) -> [9, 6, 7]; b: every other element of a 1-D buffer
  // broadcast over the first two dimensions.
  BroadcastIndex p;
  p.ndim = 3;
  p.sizes[0] = 9;
  p.sizes[1] = 6;
  p.sizes[2] = 7;
  p.stride_a[0] = 1;
  p.stride_a[1] = 63;
  p.stride_a[2] = 9;
  p.stride_b[2] = 2;
  cases.push_back({"permuted a, strided b", p, 9 * 6 * 7, 6 * 7 * 9, 13});

  // one strided dimension (the 1-D kernel with non-unit strides)
  BroadcastIndex s;
  s.ndim = 1;
  s.sizes[0] = 1000;
  s.stride_a[0] = 3;
  s.stride_b[0] = 0;
  cases.push_back({"1-D stride 3 op scalar", s, 1000, 3000, 1});
  return cases;
}

// stream_ (CudaStreamTest) and the device buffers the test made, freed after it.
class CudaElementwise : public ember::testing::CudaStreamTest {
 protected:
  void TearDown() override {
    for (void* p : buffers_) EMBER_CUDA_WARN(cudaFree(p));
    CudaStreamTest::TearDown();
  }

  // n elements (at least one, as a canary for n == 0), every byte 0xFF.
  template <typename T>
  T* garbage(int64_t n) {
    const size_t bytes = static_cast<size_t>(std::max<int64_t>(n, 1)) * sizeof(T);
    void* p = nullptr;
    EMBER_CUDA_CHECK(cudaMalloc(&p, bytes));
    buffers_.push_back(p);
    EMBER_CUDA_CHECK(cudaMemsetAsync(p, 0xFF, bytes, stream_));
    return static_cast<T*>(p);
  }

  template <typename T>
  T* upload(const Host<T>& h) {
    T* d = garbage<T>(h.n);
    EMBER_CUDA_CHECK(cudaMemcpyAsync(d, h.data(), h.n * sizeof(T), cudaMemcpyHostToDevice, stream_));
    EMBER_CUDA_CHECK(cudaStreamSynchronize(stream_));
    return d;
  }

  template <typename T>
  Host<T> download(const T* d, int64_t n) {
    Host<T> h(n);
    EMBER_CUDA_CHECK(cudaStreamSynchronize(stream_));
    EMBER_CUDA_CHECK(cudaMemcpyAsync(h.data(), d, n * sizeof(T), cudaMemcpyDeviceToHost, stream_));
    EMBER_CUDA_CHECK(cudaStreamSynchronize(stream_));
    return h;
  }

  // True when the first element of d still holds the 0xFF garbage.
  template <typename T>
  bool untouched(const T* d) {
    Host<unsigned char> h = download(reinterpret_cast<const unsigned char*>(d), sizeof(T));
    for (size_t i = 0; i < sizeof(T); ++i)
      if (h[i] != 0xFF) return false;
    return true;
  }

  template <typename T>
  void expect_binary_parity(const IndexCase& c, BinaryOp op) {
    SCOPED_TRACE(c.name + ", BinaryOp " + std::to_string(static_cast<int>(op)));
    const Host<T> a = random_host<T>(c.a_size, rng_);
    const Host<T> b = random_host<T>(c.b_size, rng_);
    Host<T> want(c.n);
    cpu::binary<T>({}, op, a.data(), b.data(), want.data(), c.idx, c.n);
    T* dout = garbage<T>(c.n);
    cuda::binary<T>(stream_, op, upload(a), upload(b), dout, c.idx, c.n);
    if (c.n == 0) {
      EXPECT_TRUE(untouched(dout));
    } else {
      EXPECT_TRUE(all_close(want, download(dout, c.n), c.n));
    }
  }

  template <typename T>
  void expect_compare_parity(const IndexCase& c, CompareOp op) {
    SCOPED_TRACE(c.name + ", CompareOp " + std::to_string(static_cast<int>(op)));
    const Host<T> a = random_host<T>(c.a_size, rng_);
    const Host<T> b = random_host<T>(c.b_size, rng_);
    Host<bool> want(c.n);
    cpu::compare<T>({}, op, a.data(), b.data(), want.data(), c.idx, c.n);
    bool* dout = garbage<bool>(c.n);
    cuda::compare<T>(stream_, op, upload(a), upload(b), dout, c.idx, c.n);
    if (c.n == 0) {
      EXPECT_TRUE(untouched(dout));
    } else {
      EXPECT_TRUE(all_close(want, download(dout, c.n), c.n));
    }
  }

  std::vector<void*> buffers_;
  std::mt19937 rng_{20240611};
};

// ------------------------------------------------------------------ unary

TEST_F(CudaElementwise, UnaryForwardMatchesCpuForEveryOp) {
  for (UnaryOp op : kAllUnaryOps) {
    const UnaryParams p = params_for(op);
    const double lo = needs_positive_input(op) ? 0.05 : -6.0;
    for (int64_t n : kSizes) {
      SCOPED_TRACE(op_name(op) + ", n = " + std::to_string(n));
      const Host<float> x = random_host<float>(n, rng_, lo, 6.0);
      Host<float> want(n);
      cpu::unary_forward<float>({}, op, x.data(), want.data(), n, p);
      const float* dx = upload(x);
      float* dy = garbage<float>(n);
      cuda::unary_forward(stream_, op, dx, dy, n, p);
      if (n == 0) {
        EXPECT_TRUE(untouched(dy));
      } else {
        EXPECT_TRUE(all_close(want, download(dy, n), n));
      }
    }
  }
}

TEST_F(CudaElementwise, UnaryForwardMatchesCpuOnMisalignedPointers) {
  // Offsets of one float defeat the float4 path's 16-byte alignment.
  const int64_t n = 1001;
  const Host<float> x = random_host<float>(n + 1, rng_);
  for (UnaryOp op : {UnaryOp::Relu, UnaryOp::Gelu, UnaryOp::Sigmoid}) {
    SCOPED_TRACE(op_name(op));
    Host<float> want(n);
    cpu::unary_forward<float>({}, op, x.data() + 1, want.data(), n, {});
    const float* dx = upload(x);
    float* dy = garbage<float>(n + 1);
    cuda::unary_forward(stream_, op, dx + 1, dy + 1, n, {});
    const Host<float> got = download(dy, n + 1);
    Host<float> shifted(n);
    std::copy(got.data() + 1, got.data() + n + 1, shifted.data());
    EXPECT_TRUE(all_close(want, shifted, n));
    EXPECT_TRUE(untouched(dy));
  }
}

TEST_F(CudaElementwise, UnaryForwardRunsInPlace) {
  const int64_t n = 100003;
  const Host<float> x = random_host<float>(n, rng_);
  Host<float> want(n);
  cpu::unary_forward<float>({}, UnaryOp::Tanh, x.data(), want.data(), n, {});
  float* d = upload(x);
  cuda::unary_forward(stream_, UnaryOp::Tanh, d, d, n, {});
  EXPECT_TRUE(all_close(want, download(d, n), n));
}

TEST_F(CudaElementwise, UnaryBackwardMatchesCpuForEveryOp) {
  for (UnaryOp op : kAllUnaryOps) {
    const UnaryParams p = params_for(op);
    const double lo = needs_positive_input(op) ? 0.05 : -6.0;
    for (int64_t n : kSizes) {
      SCOPED_TRACE(op_name(op) + ", n = " + std::to_string(n));
      const Host<float> x = random_host<float>(n, rng_, lo, 6.0);
      const Host<float> grad_y = random_host<float>(n, rng_);
      Host<float> y(n), want(n);
      cpu::unary_forward<float>({}, op, x.data(), y.data(), n, p);
      cpu::unary_backward<float>({}, op, x.data(), y.data(), grad_y.data(), want.data(), n, p);
      const float* dx = upload(x);
      const float* dy = upload(y);
      const float* dgy = upload(grad_y);
      float* dgx = garbage<float>(n);
      cuda::unary_backward(stream_, op, dx, dy, dgy, dgx, n, p);
      if (n == 0) {
        EXPECT_TRUE(untouched(dgx));
      } else {
        EXPECT_TRUE(all_close(want, download(dgx, n), n));
      }
    }
  }
}

// ------------------------------------------------------------------ binary and compare

TEST_F(CudaElementwise, BinaryMatchesCpuForEveryOpAndIndex) {
  for (const IndexCase& c : index_cases()) {
    for (BinaryOp op : kAllBinaryOps) {
      expect_binary_parity<float>(c, op);
      expect_binary_parity<int32_t>(c, op);  // Div sees b == 0
      expect_binary_parity<int64_t>(c, op);
    }
  }
}

TEST_F(CudaElementwise, CompareMatchesCpuForEveryOpAndIndex) {
  for (const IndexCase& c : index_cases()) {
    for (CompareOp op : kAllCompareOps) {
      expect_compare_parity<float>(c, op);
      expect_compare_parity<int32_t>(c, op);
      expect_compare_parity<int64_t>(c, op);
      expect_compare_parity<uint8_t>(c, op);
      expect_compare_parity<bool>(c, op);
    }
  }
}

// ------------------------------------------------------------------ cast, fill, copy

size_t dtype_size(int dtype) {
  switch (dtype) {
    case kF32: case kI32: return 4;
    case kI64: return 8;
    case kU8: return 1;
    case kBool: return sizeof(bool);
  }
  return 8;
}

// n random values of `dtype` as raw bytes: floats in [-300, 300] (so float -> u8 wraps),
// made by the CPU cast from f64 so every dtype holds valid values.
Host<unsigned char> random_bytes(int dtype, int64_t n, std::mt19937& rng) {
  const Host<double> v = random_host<double>(n, rng, -300.0, 300.0);
  Host<unsigned char> h(n * 8);
  cpu::cast({}, 1, v.data(), dtype, h.data(), n);
  return h;
}

TEST_F(CudaElementwise, CastMatchesCpuForEveryDtypePair) {
  for (int src : kCudaDtypes) {
    for (int dst : kCudaDtypes) {
      for (int64_t n : kSizes) {
        SCOPED_TRACE("src " + std::to_string(src) + " -> dst " + std::to_string(dst) +
                     ", n = " + std::to_string(n));
        const Host<unsigned char> x = random_bytes(src, n, rng_);
        Host<unsigned char> want(n * 8);
        cpu::cast({}, src, x.data(), dst, want.data(), n);
        unsigned char* dy = garbage<unsigned char>(n * 8);
        cuda::cast(stream_, src, upload(x), dst, dy, n);
        const int64_t bytes = n * static_cast<int64_t>(dtype_size(dst));
        if (n == 0) {
          EXPECT_TRUE(untouched(dy));
        } else {
          EXPECT_TRUE(all_close(want, download(dy, bytes), bytes));
        }
      }
    }
  }
}

TEST_F(CudaElementwise, CastRejectsFloat64) {
  void* d = garbage<double>(4);
  EXPECT_THROW(cuda::cast(stream_, 1, d, kF32, d, 4), ember::Error);
  EXPECT_THROW(cuda::cast(stream_, kF32, d, 1, d, 4), ember::Error);
}

TEST_F(CudaElementwise, FillMatchesCpuForEveryDtype) {
  for (int dtype : {0, 1, 2, 3, 4, 5}) {
    for (double value : {3.0, -1.5, 0.0}) {
      for (int64_t n : kSizes) {
        SCOPED_TRACE("dtype " + std::to_string(dtype) + ", value " + std::to_string(value) +
                     ", n = " + std::to_string(n));
        const int64_t bytes = n * static_cast<int64_t>(dtype == 1 ? 8 : dtype_size(dtype));
        Host<unsigned char> want(bytes);
        cpu::fill({}, dtype, want.data(), n, value);
        unsigned char* dy = garbage<unsigned char>(bytes);
        cuda::fill(stream_, dtype, dy, n, value);
        if (n == 0) {
          EXPECT_TRUE(untouched(dy));
        } else {
          EXPECT_TRUE(all_close(want, download(dy, bytes), bytes));
        }
      }
    }
  }
}

StridedIndex make_strided(const std::vector<int64_t>& sizes, const std::vector<int64_t>& strides) {
  StridedIndex idx;
  idx.ndim = static_cast<int>(sizes.size());
  for (int d = 0; d < idx.ndim; ++d) {
    idx.sizes[d] = sizes[d];
    idx.strides[d] = strides[d];
  }
  return idx;
}

TEST_F(CudaElementwise, StridedCopyMatchesCpuForEveryElementSize) {
  struct Case {
    std::string name;
    StridedIndex idx;
    int64_t n;
    int64_t src_elems;
  };
  const std::vector<Case> cases = {
      {"transposed 3x4", make_strided({4, 3}, {1, 4}), 12, 12},
      {"permuted [37,29,101]", make_strided({101, 37, 29}, {1, 29 * 101, 101}), 37 * 29 * 101,
       37 * 29 * 101},
      {"expanded [1000] -> [7,1000]", make_strided({7, 1000}, {0, 1}), 7000, 1000},
      {"rank 0", make_strided({}, {}), 1, 1},
      {"empty", make_strided({0, 5}, {5, 1}), 0, 0},
  };
  for (const Case& c : cases) {
    for (int64_t elem : {1, 2, 4, 8}) {
      SCOPED_TRACE(c.name + ", elem_size " + std::to_string(elem));
      const Host<uint8_t> x = random_host<uint8_t>(c.src_elems * elem, rng_, 0, 255);
      Host<uint8_t> want(c.n * elem);
      cpu::strided_copy({}, elem, x.data(), c.idx, want.data(), c.n);
      uint8_t* dy = garbage<uint8_t>(c.n * elem);
      cuda::strided_copy(stream_, elem, upload(x), c.idx, dy, c.n);
      if (c.n == 0) {
        EXPECT_TRUE(untouched(dy));
      } else {
        EXPECT_TRUE(all_close(want, download(dy, c.n * elem), c.n * elem));
      }
    }
  }
}

TEST_F(CudaElementwise, StridedScatterMatchesCpuForEveryElementSize) {
  // Indices that write every destination element once (a scatter through stride 0 would
  // race); the destination starts as the 0xFF garbage on both sides.
  struct Case {
    std::string name;
    StridedIndex idx;
    int64_t n;
  };
  const std::vector<Case> cases = {
      {"transposed 3x4", make_strided({4, 3}, {1, 4}), 12},
      {"permuted [37,29,101]", make_strided({101, 37, 29}, {1, 29 * 101, 101}), 37 * 29 * 101},
      {"rank 0", make_strided({}, {}), 1},
      {"empty", make_strided({0, 5}, {5, 1}), 0},
  };
  for (const Case& c : cases) {
    for (int64_t elem : {1, 2, 4, 8}) {
      SCOPED_TRACE(c.name + ", elem_size " + std::to_string(elem));
      const Host<uint8_t> x = random_host<uint8_t>(c.n * elem, rng_, 0, 255);
      Host<uint8_t> want(c.n * elem);
      for (int64_t i = 0; i < c.n * elem; ++i) want[i] = 0xFF;
      cpu::strided_scatter({}, elem, x.data(), c.idx, want.data(), c.n);
      uint8_t* dy = garbage<uint8_t>(c.n * elem);
      cuda::strided_scatter(stream_, elem, upload(x), c.idx, dy, c.n);
      if (c.n == 0) {
        EXPECT_TRUE(untouched(dy));
      } else {
        EXPECT_TRUE(all_close(want, download(dy, c.n * elem), c.n * elem));
      }
    }
  }
}

}  // namespace
