// For the tests of CUDA kernels called directly (CUDA builds only): raw device memory that
// starts as 0xFF bytes (NaN for float, -1 for integers), so an element a kernel forgets to
// write cannot pass for a correct one, and a fixture that skips without a GPU and gives
// each test a stream of its own.
#pragma once

#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cstddef>
#include <vector>

#include "ember/core/base/cuda_check.h"
#include "ember/core/base/error.h"
#include "support/device.h"

namespace ember::testing {

// Every copy and the initial fill are ordered on `stream`, the stream the kernels under
// test run on; to_host() waits for it.
template <typename T>
class DeviceBuffer {
 public:
  DeviceBuffer(size_t n, cudaStream_t stream) : n_(n), stream_(stream) {
    EMBER_CUDA_CHECK(cudaMalloc(reinterpret_cast<void**>(&ptr_), bytes()));
    EMBER_CUDA_CHECK(cudaMemsetAsync(ptr_, 0xFF, bytes(), stream_));
  }
  DeviceBuffer(const std::vector<T>& host, cudaStream_t stream)
      : DeviceBuffer(host.size(), stream) {
    if (n_ > 0) {
      EMBER_CUDA_CHECK(
          cudaMemcpyAsync(ptr_, host.data(), n_ * sizeof(T), cudaMemcpyHostToDevice, stream_));
    }
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  ~DeviceBuffer() { EMBER_CUDA_WARN(cudaFree(ptr_)); }

  T* get() const { return ptr_; }
  size_t size() const { return n_; }

  std::vector<T> to_host() const { return to_host(0, n_); }

  // Elements [offset, offset + count).
  std::vector<T> to_host(size_t offset, size_t count) const {
    EMBER_INTERNAL_ASSERT(offset + count <= n_, "DeviceBuffer::to_host: [", offset, ", ",
                          offset + count, ") is outside the ", n_, " elements");
    std::vector<T> host(count);
    if (count > 0) {
      EMBER_CUDA_CHECK(cudaMemcpyAsync(host.data(), ptr_ + offset, count * sizeof(T),
                                       cudaMemcpyDeviceToHost, stream_));
    }
    EMBER_CUDA_CHECK(cudaStreamSynchronize(stream_));
    return host;
  }

 private:
  size_t bytes() const { return std::max<size_t>(n_, 1) * sizeof(T); }
  T* ptr_ = nullptr;
  size_t n_;
  cudaStream_t stream_;
};

// A kernel test: skipped without a GPU; stream_ is created for the test (non-blocking, so
// it does not wait for the legacy default stream) and destroyed after it. A fixture that
// extends SetUp() calls CudaStreamTest::SetUp() first and returns if IsSkipped().
class CudaStreamTest : public ::testing::Test {
 protected:
  void SetUp() override {
    EMBER_SKIP_WITHOUT_GPU();
    EMBER_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
  }
  void TearDown() override {
    if (stream_ != nullptr) EMBER_CUDA_WARN(cudaStreamDestroy(stream_));
  }
  cudaStream_t stream_ = nullptr;
};

}  // namespace ember::testing
