// cudaMalloc segments and CUDA events behind the caching allocator, the cudaMallocAsync
// backend, the per-device allocators, and the public ember::cuda memory functions.
#include "ember/core/memory/cuda_allocator.h"

#include <algorithm>
#include <array>
#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>

#include "ember/core/base/cuda_check.h"
#include "ember/core/cuda_context.h"
#include "ember/core/device.h"
#include "ember/core/base/error.h"

namespace ember::memory {

// ---------------------------------------------------------------------------------------
// Sources for the caching allocator

void* CudaSegmentSource::allocate(size_t bytes) {
  cuda::DeviceGuard guard(device_);
  void* ptr = nullptr;
  const cudaError_t err = cudaMalloc(&ptr, bytes);
  if (err == cudaErrorMemoryAllocation) {
    (void)cudaGetLastError();  // not sticky, but keep later launch checks clean
    return nullptr;
  }
  EMBER_CUDA_CHECK(err);
  return ptr;
}

void CudaSegmentSource::release(void* ptr, size_t /*bytes*/) {
  cuda::DeviceGuard guard(device_);
  cuda::note_host_sync();  // cudaFree waits for the device
  EMBER_CUDA_CHECK(cudaFree(ptr));
}

bool CudaSegmentSource::memory_info(size_t* free_bytes, size_t* total_bytes) {
  int prev = -1;
  if (cudaGetDevice(&prev) != cudaSuccess || cudaSetDevice(device_) != cudaSuccess) {
    (void)cudaGetLastError();
    return false;
  }
  const bool ok = cudaMemGetInfo(free_bytes, total_bytes) == cudaSuccess;
  if (!ok) (void)cudaGetLastError();
  if (prev != device_) (void)cudaSetDevice(prev);
  return ok;
}

void* CudaEventSource::record(void* stream) {
  // An event must be created on the device of the stream it is recorded on.
  cuda::DeviceGuard guard(device_);
  cudaEvent_t event = nullptr;
  EMBER_CUDA_CHECK(cudaEventCreateWithFlags(&event, cudaEventDisableTiming));
  const cudaError_t err = cudaEventRecord(event, static_cast<cudaStream_t>(stream));
  if (err != cudaSuccess) {
    (void)cudaEventDestroy(event);
    EMBER_CUDA_CHECK(err);
  }
  return event;
}

bool CudaEventSource::query(void* event) {
  const cudaError_t err = cudaEventQuery(static_cast<cudaEvent_t>(event));
  if (err == cudaErrorNotReady) {
    (void)cudaGetLastError();  // "not ready" is an answer, not an error to report later
    return false;
  }
  EMBER_CUDA_CHECK(err);
  return true;
}

void CudaEventSource::destroy(void* event) {
  EMBER_CUDA_CHECK(cudaEventDestroy(static_cast<cudaEvent_t>(event)));
}

void CudaEventSource::synchronize(void* event) {
  cuda::note_host_sync();
  EMBER_CUDA_CHECK(cudaEventSynchronize(static_cast<cudaEvent_t>(event)));
}

// ---------------------------------------------------------------------------------------
// The cudaMallocAsync backend

AsyncAllocator::AsyncAllocator(int device) : device_(device) {
  cuda::DeviceGuard guard(device_);
  int supported = 0;
  EMBER_CUDA_CHECK(
      cudaDeviceGetAttribute(&supported, cudaDevAttrMemoryPoolsSupported, device_));
  EMBER_CHECK_T(DeviceError, supported != 0, "EMBER_CUDA_ALLOC=async: cuda:", device_,
                " does not support cudaMallocAsync (stream-ordered memory pools); unset "
                "EMBER_CUDA_ALLOC to use ember's caching allocator");
  EMBER_CUDA_CHECK(cudaDeviceGetDefaultMemPool(&pool_, device_));
  // By default the driver trims the pool at every synchronization; keeping the memory is
  // the point of a pool (empty_cache() trims explicitly).
  uint64_t threshold = UINT64_MAX;
  EMBER_CUDA_CHECK(cudaMemPoolSetAttribute(pool_, cudaMemPoolAttrReleaseThreshold, &threshold));
}

void AsyncAllocator::throw_out_of_memory(size_t bytes, size_t limit) {
  const AllocatorStats s = stats();
  size_t free_bytes = 0, total_bytes = 0;
  const bool have_info = cudaMemGetInfo(&free_bytes, &total_bytes) == cudaSuccess;
  if (!have_info) (void)cudaGetLastError();
  {
    std::lock_guard<std::mutex> lock(mu_);
    ++stats_.ooms;
  }
  throw OutOfMemoryError(out_of_memory_message(bytes, device_, have_info, free_bytes,
                                               total_bytes, s.allocated_bytes, s.reserved_bytes,
                                               limit));
}

void* AsyncAllocator::allocate(size_t bytes, cudaStream_t stream) {
  if (bytes == 0) return nullptr;
  cuda::DeviceGuard guard(device_);
  size_t limit = 0, in_use = 0;
  {
    std::lock_guard<std::mutex> lock(mu_);
    limit = limit_;
    in_use = stats_.allocated_bytes;
  }
  if (limit != 0 && (in_use > limit || bytes > limit - in_use)) throw_out_of_memory(bytes, limit);
  void* ptr = nullptr;
  cudaError_t err = cudaMallocAsync(&ptr, bytes, stream);
  if (err == cudaErrorMemoryAllocation) {
    // Memory freed on other streams returns to the pool only once their work has run.
    (void)cudaGetLastError();
    {
      std::lock_guard<std::mutex> lock(mu_);
      ++stats_.oom_retries;
    }
    cuda::note_host_sync();
    EMBER_CUDA_CHECK(cudaDeviceSynchronize());
    EMBER_CUDA_CHECK(cudaMemPoolTrimTo(pool_, 0));
    err = cudaMallocAsync(&ptr, bytes, stream);
  }
  if (err == cudaErrorMemoryAllocation) {
    (void)cudaGetLastError();
    throw_out_of_memory(bytes, 0);
  }
  EMBER_CUDA_CHECK(err);

  std::lock_guard<std::mutex> lock(mu_);
  live_.emplace(ptr, Allocation{bytes, stream, {}});
  ++stats_.device_allocs;
  ++stats_.num_allocs;
  stats_.allocated_bytes += bytes;
  stats_.peak_allocated_bytes = std::max(stats_.peak_allocated_bytes, stats_.allocated_bytes);
  return ptr;
}

void AsyncAllocator::free(void* ptr) {
  if (ptr == nullptr) return;
  Allocation a;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = live_.find(ptr);
    EMBER_CHECK(it != live_.end(), "raw_free: pointer ", ptr,
                " was not allocated by the cudaMallocAsync backend of cuda:", device_,
                " (or was already freed)");
    a = std::move(it->second);
    live_.erase(it);
    stats_.allocated_bytes -= a.size;
    ++stats_.device_frees;
  }
  cuda::DeviceGuard guard(device_);
  // cudaFreeAsync is ordered on the allocation stream only: make it wait for the work
  // queued so far on the other streams that used the memory.
  for (cudaStream_t s : a.uses) {
    cudaEvent_t event = nullptr;
    EMBER_CUDA_CHECK(cudaEventCreateWithFlags(&event, cudaEventDisableTiming));
    EMBER_CUDA_CHECK(cudaEventRecord(event, s));
    EMBER_CUDA_CHECK(cudaStreamWaitEvent(a.stream, event, 0));
    EMBER_CUDA_CHECK(cudaEventDestroy(event));  // released once it has completed
  }
  EMBER_CUDA_CHECK(cudaFreeAsync(ptr, a.stream));
}

void AsyncAllocator::record_stream(void* ptr, cudaStream_t stream) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = live_.find(ptr);
  EMBER_CHECK(it != live_.end(), "record_stream: pointer ", ptr,
              " was not allocated by the cudaMallocAsync backend of cuda:", device_);
  Allocation& a = it->second;
  if (stream == a.stream) return;
  if (std::find(a.uses.begin(), a.uses.end(), stream) == a.uses.end()) a.uses.push_back(stream);
}

void AsyncAllocator::empty_cache() {
  cuda::DeviceGuard guard(device_);
  // Frees still queued on streams are not in the pool yet.
  cuda::note_host_sync();
  EMBER_CUDA_CHECK(cudaDeviceSynchronize());
  EMBER_CUDA_CHECK(cudaMemPoolTrimTo(pool_, 0));
}

AllocatorStats AsyncAllocator::stats() const {
  AllocatorStats s;
  {
    std::lock_guard<std::mutex> lock(mu_);
    s = stats_;
  }
  uint64_t reserved = 0, peak = 0;
  if (cudaMemPoolGetAttribute(pool_, cudaMemPoolAttrReservedMemCurrent, &reserved) ==
          cudaSuccess &&
      cudaMemPoolGetAttribute(pool_, cudaMemPoolAttrReservedMemHigh, &peak) == cudaSuccess) {
    s.reserved_bytes = static_cast<size_t>(reserved);
    s.peak_reserved_bytes = static_cast<size_t>(peak);
  } else {
    (void)cudaGetLastError();
  }
  return s;
}

void AsyncAllocator::reset_peak_stats() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stats_.peak_allocated_bytes = stats_.allocated_bytes;
  }
  uint64_t zero = 0;  // the driver resets the high-water mark to the current value
  EMBER_CUDA_CHECK(cudaMemPoolSetAttribute(pool_, cudaMemPoolAttrReservedMemHigh, &zero));
}

void AsyncAllocator::set_memory_limit(size_t bytes) {
  std::lock_guard<std::mutex> lock(mu_);
  limit_ = bytes;
}

size_t AsyncAllocator::set_memory_fraction(double fraction) {
  EMBER_CHECK(fraction > 0.0 && fraction <= 1.0, "set_memory_fraction: the fraction must be in "
              "(0, 1], got ", fraction, " for cuda:", device_);
  cuda::DeviceGuard guard(device_);
  size_t free_bytes = 0, total_bytes = 0;
  EMBER_CUDA_CHECK(cudaMemGetInfo(&free_bytes, &total_bytes));
  const size_t bytes =
      std::max<size_t>(static_cast<size_t>(fraction * static_cast<double>(total_bytes)), 1);
  set_memory_limit(bytes);
  return bytes;
}

size_t AsyncAllocator::memory_limit() const {
  std::lock_guard<std::mutex> lock(mu_);
  return limit_;
}

size_t AsyncAllocator::block_size(void* ptr) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = live_.find(ptr);
  EMBER_CHECK(it != live_.end(), "block_size: pointer ", ptr,
              " was not allocated by the cudaMallocAsync backend of cuda:", device_);
  return it->second.size;
}

// ---------------------------------------------------------------------------------------
// Backend choice and the per-device allocators

AllocatorBackend parse_allocator_backend(const char* value) {
  if (value == nullptr || value[0] == '\0' || std::strcmp(value, "pool") == 0) {
    return AllocatorBackend::kPool;
  }
  if (std::strcmp(value, "async") == 0) return AllocatorBackend::kAsync;
  EMBER_CHECK(false, "EMBER_CUDA_ALLOC=", value,
              " is not a CUDA allocator backend; expected \"pool\" (ember's caching "
              "allocator, the default) or \"async\" (cudaMallocAsync)");
  return AllocatorBackend::kPool;
}

namespace {

constexpr int kMaxDevices = 64;

AllocatorBackend backend() {
  static const AllocatorBackend b = parse_allocator_backend(std::getenv("EMBER_CUDA_ALLOC"));
  return b;
}

// Note [Allocator lifetime]
// The per-device allocators are created on first use and never destroyed: tensors held
// by static objects may be freed after a static allocator would have been, and at that
// point the CUDA runtime may be unloading too. The driver reclaims everything at exit.
struct Registry {
  std::mutex mu;  // creation only; lookups read the atomics
  std::array<std::atomic<CachingAllocator*>, kMaxDevices> pools{};
  std::array<std::atomic<AsyncAllocator*>, kMaxDevices> asyncs{};
};

Registry& registry() {
  static Registry* r = new Registry();  // see Note [Allocator lifetime]
  return *r;
}

void check_device(const char* op, int device) {
  const int n = cuda::device_count();
  EMBER_CHECK_T(DeviceError, n > 0, op, ": cuda:", device,
                " is not available: ", cuda::unavailable_reason());
  EMBER_CHECK_T(DeviceError, device >= 0 && device < n && device < kMaxDevices, op, ": cuda:",
                device, " is not available (", n, " CUDA device(s))");
}

// Creates the allocator for `device` under the registry lock the first time.
template <typename T, typename Make>
T& get_or_create(std::atomic<T*>& slot, Make make) {
  T* p = slot.load(std::memory_order_acquire);
  if (p != nullptr) return *p;
  std::lock_guard<std::mutex> lock(registry().mu);
  p = slot.load(std::memory_order_relaxed);
  if (p == nullptr) {
    p = make();  // see Note [Allocator lifetime]
    slot.store(p, std::memory_order_release);
  }
  return *p;
}

// Already-created allocators only, so stats and frees never create one.
CachingAllocator* existing_pool(int device) {
  if (device < 0 || device >= kMaxDevices) return nullptr;
  return registry().pools[device].load(std::memory_order_acquire);
}
AsyncAllocator* existing_async(int device) {
  if (device < 0 || device >= kMaxDevices) return nullptr;
  return registry().asyncs[device].load(std::memory_order_acquire);
}

// The limit the environment sets for every device (Note [CUDA memory limits]), read
// when a device's allocator is created: a bad value fails that first allocation.
template <typename Allocator>
void apply_env_limit(Allocator& a) {
  const char* fraction = std::getenv("EMBER_CUDA_MEMORY_FRACTION");
  const char* bytes = std::getenv("EMBER_CUDA_MEMORY_LIMIT");
  const bool has_fraction = fraction != nullptr && fraction[0] != '\0';
  const bool has_bytes = bytes != nullptr && bytes[0] != '\0';
  EMBER_CHECK(!(has_fraction && has_bytes), "EMBER_CUDA_MEMORY_FRACTION=", fraction,
              " and EMBER_CUDA_MEMORY_LIMIT=", bytes,
              " are both set; set one of them to limit the memory of each GPU");
  if (has_fraction) {
    a.set_memory_fraction(parse_memory_fraction(fraction, "EMBER_CUDA_MEMORY_FRACTION"));
  } else if (has_bytes) {
    a.set_memory_limit(parse_memory_size(bytes, "EMBER_CUDA_MEMORY_LIMIT"));
  }
}

AsyncAllocator& async_allocator(int device) {
  return get_or_create(registry().asyncs[device], [device] {
    auto a = std::make_unique<AsyncAllocator>(device);
    apply_env_limit(*a);
    return a.release();
  });
}

}  // namespace

CachingAllocator& device_allocator(int device) {
  check_device("device_allocator", device);
  return get_or_create(registry().pools[device], [device] {
    auto a = std::make_unique<CachingAllocator>(std::make_unique<CudaSegmentSource>(device),
                                                std::make_unique<CudaEventSource>(device));
    apply_env_limit(*a);
    return a.release();
  });
}

}  // namespace ember::memory

namespace ember::cuda {

using memory::AllocatorBackend;

std::string allocator_backend() {
  return memory::backend() == AllocatorBackend::kAsync ? "async" : "pool";
}

void* raw_alloc(size_t bytes, int device, void* stream) {
  memory::check_device("raw_alloc", device);
  if (bytes == 0) return nullptr;
  if (memory::backend() == AllocatorBackend::kAsync) {
    return memory::async_allocator(device).allocate(bytes, static_cast<cudaStream_t>(stream));
  }
  return memory::device_allocator(device).allocate(bytes, stream);
}

void raw_free(void* ptr, int device) {
  if (ptr == nullptr) return;
  if (memory::backend() == AllocatorBackend::kAsync) {
    memory::AsyncAllocator* a = memory::existing_async(device);
    EMBER_CHECK(a != nullptr, "raw_free: pointer ", ptr, " was not allocated on cuda:", device,
                " (no allocation was ever made there)");
    a->free(ptr);
    return;
  }
  memory::CachingAllocator* a = memory::existing_pool(device);
  EMBER_CHECK(a != nullptr, "raw_free: pointer ", ptr, " was not allocated on cuda:", device,
              " (no allocation was ever made there)");
  a->free(ptr);
}

void record_stream(void* ptr, int device, void* stream) {
  if (ptr == nullptr) return;
  if (memory::backend() == AllocatorBackend::kAsync) {
    memory::AsyncAllocator* a = memory::existing_async(device);
    EMBER_CHECK(a != nullptr, "record_stream: pointer ", ptr, " was not allocated on cuda:",
                device);
    a->record_stream(ptr, static_cast<cudaStream_t>(stream));
    return;
  }
  memory::CachingAllocator* a = memory::existing_pool(device);
  EMBER_CHECK(a != nullptr, "record_stream: pointer ", ptr, " was not allocated on cuda:",
              device);
  a->record_stream(ptr, stream);
}

memory::AllocatorStats memory_stats(int device) {
  memory::check_device("memory_stats", device);
  if (memory::backend() == AllocatorBackend::kAsync) {
    memory::AsyncAllocator* a = memory::existing_async(device);
    return a != nullptr ? a->stats() : memory::AllocatorStats{};
  }
  memory::CachingAllocator* a = memory::existing_pool(device);
  return a != nullptr ? a->stats() : memory::AllocatorStats{};
}

void reset_peak_memory_stats(int device) {
  memory::check_device("reset_peak_memory_stats", device);
  if (memory::AsyncAllocator* a = memory::existing_async(device)) a->reset_peak_stats();
  if (memory::CachingAllocator* a = memory::existing_pool(device)) a->reset_peak_stats();
}

void set_memory_fraction(double fraction, int device) {
  memory::check_device("set_memory_fraction", device);
  if (memory::backend() == AllocatorBackend::kAsync) {
    memory::async_allocator(device).set_memory_fraction(fraction);
  } else {
    memory::device_allocator(device).set_memory_fraction(fraction);
  }
}

void set_memory_limit(size_t bytes, int device) {
  memory::check_device("set_memory_limit", device);
  if (memory::backend() == AllocatorBackend::kAsync) {
    memory::async_allocator(device).set_memory_limit(bytes);
  } else {
    memory::device_allocator(device).set_memory_limit(bytes);
  }
}

size_t memory_limit(int device) {
  memory::check_device("memory_limit", device);
  if (memory::backend() == AllocatorBackend::kAsync) {
    return memory::async_allocator(device).memory_limit();
  }
  return memory::device_allocator(device).memory_limit();
}

void empty_cache() {
  for (int d = 0; d < memory::kMaxDevices; ++d) {
    if (memory::CachingAllocator* a = memory::existing_pool(d)) a->empty_cache();
    if (memory::AsyncAllocator* a = memory::existing_async(d)) a->empty_cache();
  }
}

}  // namespace ember::cuda
