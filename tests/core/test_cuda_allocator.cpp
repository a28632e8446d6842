// The real allocators on a GPU: cudaMalloc-backed CachingAllocator, the public
// ember::cuda memory functions and the cudaMallocAsync backend. Skipped without a GPU.
#include "ember/core/memory/cuda_allocator.h"

#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "ember/core/base/cuda_check.h"
#include "ember/core/base/error.h"
#include "ember/core/memory/cuda_memory.h"
#include "support/device.h"

namespace {

using ember::memory::AllocatorBackend;
using ember::memory::AllocatorStats;
using ember::memory::CachingAllocator;

constexpr size_t kMiB = 1024 * 1024;
constexpr size_t kOnePiB = size_t{1} << 50;

class Stream {
 public:
  Stream() { EMBER_CUDA_CHECK(cudaStreamCreateWithFlags(&s_, cudaStreamNonBlocking)); }
  ~Stream() { EMBER_CUDA_WARN(cudaStreamDestroy(s_)); }
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;
  cudaStream_t get() const { return s_; }

 private:
  cudaStream_t s_ = nullptr;
};

std::unique_ptr<CachingAllocator> make_pool(int device = 0) {
  return std::make_unique<CachingAllocator>(
      std::make_unique<ember::memory::CudaSegmentSource>(device),
      std::make_unique<ember::memory::CudaEventSource>(device));
}

// Fills `bytes` at `p` with `value` on `stream` and checks them back on the host.
void fill_and_check(void* p, size_t bytes, int value, cudaStream_t stream) {
  EMBER_CUDA_CHECK(cudaMemsetAsync(p, value, bytes, stream));
  std::vector<unsigned char> host(bytes);
  EMBER_CUDA_CHECK(cudaMemcpyAsync(host.data(), p, bytes, cudaMemcpyDeviceToHost, stream));
  EMBER_CUDA_CHECK(cudaStreamSynchronize(stream));
  for (size_t i = 0; i < bytes; i += 4099) {
    ASSERT_EQ(host[i], static_cast<unsigned char>(value)) << "at byte " << i;
  }
  ASSERT_EQ(host[bytes - 1], static_cast<unsigned char>(value));
}

TEST(CudaAllocator, BackendNamesParse) {
  EXPECT_EQ(ember::memory::parse_allocator_backend(nullptr), AllocatorBackend::kPool);
  EXPECT_EQ(ember::memory::parse_allocator_backend(""), AllocatorBackend::kPool);
  EXPECT_EQ(ember::memory::parse_allocator_backend("pool"), AllocatorBackend::kPool);
  EXPECT_EQ(ember::memory::parse_allocator_backend("async"), AllocatorBackend::kAsync);
  try {
    ember::memory::parse_allocator_backend("cudaMallocAsync");
    FAIL() << "expected ember::Error";
  } catch (const ember::Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("EMBER_CUDA_ALLOC=cudaMallocAsync"), std::string::npos) << msg;
    EXPECT_NE(msg.find("\"async\""), std::string::npos) << msg;
  }
}

TEST(CudaAllocator, WithoutAGpuRawAllocIsADeviceErrorNotACrash) {
  if (ember::cuda::is_available()) GTEST_SKIP() << "a GPU is present; the GPU tests cover raw_alloc";
  EXPECT_THROW(ember::cuda::raw_alloc(1024, 0, nullptr), ember::DeviceError);
  EXPECT_THROW(ember::cuda::memory_stats(0), ember::DeviceError);
  EXPECT_NO_THROW(ember::cuda::raw_free(nullptr, 0));
  EXPECT_NO_THROW(ember::cuda::empty_cache());
}

TEST(CudaAllocator, AllocWriteFreeAndReuse) {
  EMBER_SKIP_WITHOUT_GPU();
  Stream stream;
  auto pool = make_pool();
  void* p = pool->allocate(3 * kMiB + 100, stream.get());
  ASSERT_NE(p, nullptr);
  fill_and_check(p, 3 * kMiB + 100, 0x5a, stream.get());
  pool->free(p);
  void* q = pool->allocate(3 * kMiB, stream.get());
  EXPECT_EQ(q, p);
  fill_and_check(q, 3 * kMiB, 0x17, stream.get());
  const AllocatorStats s = pool->stats();
  EXPECT_EQ(s.device_allocs, 1);
  EXPECT_EQ(s.cache_hits, 1);
  EXPECT_EQ(s.reserved_bytes, ember::memory::kLargeBuffer);
  EXPECT_EQ(s.allocated_bytes, 3 * kMiB);
  pool->free(q);
}

TEST(CudaAllocator, RecordStreamBlockIsReusedOnceTheOtherStreamIsDone) {
  EMBER_SKIP_WITHOUT_GPU();
  Stream s1, s2;
  auto pool = make_pool();
  void* p = pool->allocate(kMiB, s1.get());
  EMBER_CUDA_CHECK(cudaMemsetAsync(p, 1, kMiB, s2.get()));
  pool->record_stream(p, s2.get());
  pool->free(p);
  EMBER_CUDA_CHECK(cudaStreamSynchronize(s2.get()));
  void* q = pool->allocate(kMiB, s1.get());
  EXPECT_EQ(q, p);
  pool->free(q);
}

TEST(CudaAllocator, EmptyCacheGivesMemoryBackToTheDriver) {
  EMBER_SKIP_WITHOUT_GPU();
  Stream stream;
  auto pool = make_pool();
  void* p = pool->allocate(256 * kMiB, stream.get());
  pool->free(p);
  size_t free_before = 0, total = 0;
  EMBER_CUDA_CHECK(cudaMemGetInfo(&free_before, &total));
  pool->empty_cache();
  size_t free_after = 0;
  EMBER_CUDA_CHECK(cudaMemGetInfo(&free_after, &total));
  EXPECT_EQ(pool->stats().reserved_bytes, 0u);
  EXPECT_EQ(pool->stats().device_frees, 1);
  EXPECT_GE(free_after + 16 * kMiB, free_before + 256 * kMiB);
}

TEST(CudaAllocator, OnePebibyteIsAnOutOfMemoryErrorNotACrash) {
  EMBER_SKIP_WITHOUT_GPU();
  Stream stream;
  auto pool = make_pool();
  void* keep = pool->allocate(kMiB, stream.get());
  try {
    pool->allocate(kOnePiB, stream.get());
    FAIL() << "expected OutOfMemoryError";
  } catch (const ember::OutOfMemoryError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("Tried to allocate 1048576.00 GiB"), std::string::npos) << msg;
    EXPECT_NE(msg.find("GPU 0 has a total capacity of"), std::string::npos) << msg;
    EXPECT_NE(msg.find("1.00 MiB is allocated by ember"), std::string::npos) << msg;
  }
  EXPECT_EQ(pool->stats().ooms, 1);
  // Nothing sticky left behind: the device still works.
  EXPECT_EQ(cudaGetLastError(), cudaSuccess);
  fill_and_check(keep, kMiB, 3, stream.get());
  void* more = pool->allocate(kMiB, stream.get());
  EXPECT_NE(more, nullptr);
  pool->free(more);
  pool->free(keep);
}

TEST(CudaAllocator, MemoryFractionBoundsThePoolAndTheNextFitSucceeds) {
  EMBER_SKIP_WITHOUT_GPU();
  Stream stream;
  auto pool = make_pool();
  const size_t limit = pool->set_memory_fraction(0.01);  // under 1 GiB on an 80 GiB GPU
  ASSERT_GT(limit, 64 * kMiB);
  void* half = pool->allocate(limit / 2, stream.get());
  try {
    pool->allocate(limit / 2 + 64 * kMiB, stream.get());
    FAIL() << "expected OutOfMemoryError";
  } catch (const ember::OutOfMemoryError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("over the memory limit of " + ember::memory::format_size(limit)),
              std::string::npos)
        << msg;
    EXPECT_NE(msg.find("GPU 0 has a total capacity of"), std::string::npos) << msg;
  }
  EXPECT_EQ(pool->stats().ooms, 1);
  EXPECT_LE(pool->stats().reserved_bytes, limit);
  void* more = pool->allocate(16 * kMiB, stream.get());
  EXPECT_NE(more, nullptr);
  pool->free(more);
  pool->free(half);
}

TEST(CudaAllocator, PublicMemoryLimitFunctions) {
  EMBER_SKIP_WITHOUT_GPU();
  ember::cuda::set_memory_fraction(0.5, 0);
  const size_t limit = ember::cuda::memory_limit(0);
  EXPECT_GT(limit, 0u);
  EXPECT_THROW(ember::cuda::set_memory_fraction(1.5, 0), ember::Error);
  EXPECT_EQ(ember::cuda::memory_limit(0), limit);
  EXPECT_THROW(ember::cuda::set_memory_fraction(0.5, 1 << 20), ember::DeviceError);
  ember::cuda::set_memory_limit(0, 0);
  EXPECT_EQ(ember::cuda::memory_limit(0), 0u);
}

TEST(CudaAllocator, PublicApiAllocatesFromTheDevicePool) {
  EMBER_SKIP_WITHOUT_GPU();
  Stream stream;
  void* p = ember::cuda::raw_alloc(5000, 0, stream.get());
  ASSERT_NE(p, nullptr);
  fill_and_check(p, 5000, 9, stream.get());
  const AllocatorStats s = ember::cuda::memory_stats(0);
  EXPECT_GE(s.allocated_bytes, 5000u);
  EXPECT_GE(s.num_allocs, 1);
  ember::cuda::raw_free(p, 0);
  EXPECT_EQ(ember::cuda::raw_alloc(0, 0, stream.get()), nullptr);
  EXPECT_THROW(ember::cuda::raw_alloc(kOnePiB, 0, stream.get()), ember::OutOfMemoryError);
  EXPECT_THROW(ember::cuda::raw_alloc(16, 1 << 20, stream.get()), ember::DeviceError);
  ember::cuda::reset_peak_memory_stats(0);
  EXPECT_NO_THROW(ember::cuda::empty_cache());
}

TEST(CudaAllocator, SteadyStateLoopMakesNoCudaMallocCalls) {
  EMBER_SKIP_WITHOUT_GPU();
  if (ember::cuda::allocator_backend() != "pool") GTEST_SKIP() << "EMBER_CUDA_ALLOC is not pool";
  Stream stream;
  const std::vector<size_t> sizes = {4096, 300000, 3 * kMiB, 12 * kMiB, 40 * kMiB};
  auto step = [&] {
    std::vector<void*> ptrs;
    for (size_t n : sizes) ptrs.push_back(ember::cuda::raw_alloc(n, 0, stream.get()));
    for (void* p : ptrs) ember::cuda::raw_free(p, 0);
  };
  step();
  const int64_t warm = ember::cuda::memory_stats(0).device_allocs;
  for (int i = 0; i < 100; ++i) step();
  EXPECT_EQ(ember::cuda::memory_stats(0).device_allocs, warm);
}

TEST(CudaAllocator, AsyncBackendAllocatesOnTheStream) {
  EMBER_SKIP_WITHOUT_GPU();
  int supported = 0;
  EMBER_CUDA_CHECK(cudaDeviceGetAttribute(&supported, cudaDevAttrMemoryPoolsSupported, 0));
  if (supported == 0) GTEST_SKIP() << "device 0 has no cudaMallocAsync";
  Stream s1, s2;
  ember::memory::AsyncAllocator async(0);
  void* p = async.allocate(2 * kMiB, s1.get());
  ASSERT_NE(p, nullptr);
  fill_and_check(p, 2 * kMiB, 0x33, s1.get());
  AllocatorStats s = async.stats();
  EXPECT_EQ(s.allocated_bytes, 2 * kMiB);
  EXPECT_EQ(s.device_allocs, 1);
  EXPECT_GE(s.reserved_bytes, 2 * kMiB);
  EXPECT_EQ(async.block_size(p), 2 * kMiB);
  EMBER_CUDA_CHECK(cudaMemsetAsync(p, 0, 2 * kMiB, s2.get()));
  async.record_stream(p, s2.get());
  async.free(p);
  EXPECT_EQ(async.stats().allocated_bytes, 0u);
  EXPECT_THROW(async.free(p), ember::Error);
  EXPECT_THROW(async.allocate(kOnePiB, s1.get()), ember::OutOfMemoryError);
  EXPECT_EQ(cudaGetLastError(), cudaSuccess);
  EXPECT_EQ(async.stats().ooms, 1);
  async.empty_cache();
  EMBER_CUDA_CHECK(cudaStreamSynchronize(s1.get()));
}

}  // namespace
