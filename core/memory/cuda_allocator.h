// The CUDA side of ember's memory (internal): cudaMalloc segments and CUDA events for the
// caching allocator, the cudaMallocAsync backend, and the per-device allocators.
#pragma once

#include <cuda_runtime_api.h>

#include <mutex>
#include <unordered_map>
#include <vector>

#include "ember/core/base/export.h"
#include "ember/core/memory/caching_allocator.h"
#include "ember/core/memory/cuda_memory.h"

namespace ember::memory {

// cudaMalloc / cudaFree on one device (made current around each call).
class EMBER_API CudaSegmentSource final : public SegmentSource {
 public:
  explicit CudaSegmentSource(int device) : device_(device) {}
  // nullptr on cudaErrorMemoryAllocation; other CUDA errors throw CudaError.
  void* allocate(size_t bytes) override;
  void release(void* ptr, size_t bytes) override;
  bool memory_info(size_t* free_bytes, size_t* total_bytes) override;
  int device() const override { return device_; }

 private:
  int device_;
};

// Timing-free CUDA events on one device's streams.
class EMBER_API CudaEventSource final : public EventSource {
 public:
  explicit CudaEventSource(int device) : device_(device) {}
  void* record(void* stream) override;
  bool query(void* event) override;
  void destroy(void* event) override;
  void synchronize(void* event) override;

 private:
  int device_;
};

// EMBER_CUDA_ALLOC=async: every allocation is a cudaMallocAsync on its stream and every
// free a cudaFreeAsync; the driver's pool does the caching. ember only tracks the live
// pointers (for stats and record_stream).
class EMBER_API AsyncAllocator {
 public:
  // Throws DeviceError when the device has no stream-ordered allocator.
  explicit AsyncAllocator(int device);
  AsyncAllocator(const AsyncAllocator&) = delete;
  AsyncAllocator& operator=(const AsyncAllocator&) = delete;

  void* allocate(size_t bytes, cudaStream_t stream);
  void free(void* ptr);
  void record_stream(void* ptr, cudaStream_t stream);
  void empty_cache();
  AllocatorStats stats() const;
  void reset_peak_stats();
  size_t block_size(void* ptr) const;
  // Note [CUDA memory limits]: with this backend the bound is on the memory in use.
  void set_memory_limit(size_t bytes);
  size_t set_memory_fraction(double fraction);  // returns the limit in bytes
  size_t memory_limit() const;

 private:
  struct Allocation {
    size_t size;
    cudaStream_t stream;
    std::vector<cudaStream_t> uses;  // other streams, waited for before the free
  };

  // Counts an out-of-memory and throws OutOfMemoryError for `bytes` with the device's and
  // the pool's figures (and `limit` when a limit refused it).
  [[noreturn]] void throw_out_of_memory(size_t bytes, size_t limit);

  int device_;
  cudaMemPool_t pool_ = nullptr;
  mutable std::mutex mu_;
  std::unordered_map<void*, Allocation> live_;
  AllocatorStats stats_;
  size_t limit_ = 0;  // 0: none
};

enum class AllocatorBackend { kPool, kAsync };

// nullptr or "" or "pool" -> kPool, "async" -> kAsync; anything else throws ember::Error.
EMBER_API AllocatorBackend parse_allocator_backend(const char* value);

// The caching allocator of `device`, created on first use and kept for the process.
EMBER_API CachingAllocator& device_allocator(int device);

}  // namespace ember::memory
