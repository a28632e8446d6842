// The CPU caching pool: aligned_alloc segments under a CachingAllocator (Note [Host memory]).
#include "ember/core/memory/host_memory.h"

#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <mutex>
#include <string>

#include "ember/core/base/error.h"

namespace ember::cpu {

namespace {

constexpr size_t kAlignment = 64;
constexpr size_t kSegmentAlignment = 4096;

// Bytes of the buffers that bypass the pool (Note [CPU memory limit]), rounded as
// allocated, and the OutOfMemoryErrors thrown for them.
std::atomic<size_t> g_unpooled_bytes{0};
std::atomic<int64_t> g_unpooled_ooms{0};

size_t rounded_size(size_t bytes) { return (bytes + kAlignment - 1) / kAlignment * kAlignment; }

// Page-aligned segments from the C library; memory_info from /proc/meminfo
// (MemAvailable) and the machine's physical memory.
class HostSegmentSource final : public memory::SegmentSource {
 public:
  void* allocate(size_t bytes) override {
    // Segment sizes are multiples of 2 MiB, hence of the alignment, as aligned_alloc wants.
    return std::aligned_alloc(kSegmentAlignment, bytes);
  }
  void release(void* ptr, size_t /*bytes*/) override { std::free(ptr); }
  bool memory_info(size_t* free_bytes, size_t* total_bytes) override {
    const long pages = sysconf(_SC_PHYS_PAGES), page_size = sysconf(_SC_PAGESIZE);
    if (pages <= 0 || page_size <= 0) return false;
    *total_bytes = static_cast<size_t>(pages) * static_cast<size_t>(page_size);
    std::ifstream in("/proc/meminfo");
    std::string key;
    size_t kib = 0;
    std::string unit;
    while (in >> key >> kib >> unit) {
      if (key == "MemAvailable:") {
        *free_bytes = kib * 1024;
        return true;
      }
    }
    const long avail = sysconf(_SC_AVPHYS_PAGES);
    if (avail < 0) return false;
    *free_bytes = static_cast<size_t>(avail) * static_cast<size_t>(page_size);
    return true;
  }
  int device() const override { return memory::kCpuDevice; }
  size_t external_bytes() const override { return g_unpooled_bytes.load(); }
};

// The CPU has no streams: nothing is ever recorded (record_stream is never called on
// the host pool), so every event is complete.
class NoEvents final : public memory::EventSource {
 public:
  void* record(void* /*stream*/) override { return nullptr; }
  bool query(void* /*event*/) override { return true; }
  void destroy(void* /*event*/) override {}
};

bool use_pool() {
  static const bool pool = [] {
    const char* value = std::getenv("EMBER_CPU_ALLOC");
    if (value == nullptr || value[0] == '\0' || std::strcmp(value, "pool") == 0) return true;
    if (std::strcmp(value, "system") == 0) return false;
    EMBER_CHECK(false, "EMBER_CPU_ALLOC=", value,
                " is not a CPU allocator backend; expected \"pool\" (ember's caching "
                "allocator, the default) or \"system\" (aligned_alloc and free)");
    return true;
  }();
  return pool;
}

// Created on first use and never destroyed (as the CUDA pools, Note [Allocator
// lifetime]): tensors held by static objects may be freed after it would have been.
memory::CachingAllocator& pool() {
  static auto* p = new memory::CachingAllocator(std::make_unique<HostSegmentSource>(),
                                                std::make_unique<NoEvents>());
  return *p;
}

bool pooled(size_t bytes) { return bytes > memory::kSmallSize && use_pool(); }

// The limit of Note [CPU memory limit]: read from the environment at first use (a bad
// value throws, and is read again at the next use), then one atomic load per allocation.
std::mutex g_limit_mu;
std::atomic<bool> g_limit_ready{false};
std::atomic<size_t> g_limit{0};

void apply_limit(size_t bytes) {  // under g_limit_mu
  if (use_pool()) pool().set_memory_limit(bytes);
  g_limit.store(bytes);
  g_limit_ready.store(true, std::memory_order_release);
}

size_t current_limit() {
  if (g_limit_ready.load(std::memory_order_acquire)) return g_limit.load();
  std::lock_guard<std::mutex> lock(g_limit_mu);
  if (!g_limit_ready.load()) {
    const char* value = std::getenv("EMBER_CPU_MEMORY_LIMIT");
    const bool set = value != nullptr && value[0] != '\0';
    apply_limit(set ? memory::parse_memory_size(value, "EMBER_CPU_MEMORY_LIMIT") : 0);
  }
  return g_limit.load();
}

size_t pool_reserved() { return use_pool() ? pool().stats().reserved_bytes : 0; }

[[noreturn]] void throw_unpooled_oom(size_t bytes, size_t limit) {
  g_unpooled_ooms.fetch_add(1);
  size_t free_bytes = 0, total_bytes = 0;
  const bool have_info = HostSegmentSource().memory_info(&free_bytes, &total_bytes);
  const memory::AllocatorStats s = use_pool() ? pool().stats() : memory::AllocatorStats{};
  const size_t unpooled = g_unpooled_bytes.load();
  throw OutOfMemoryError(memory::out_of_memory_message(
      bytes, memory::kCpuDevice, have_info, free_bytes, total_bytes,
      s.allocated_bytes + unpooled, s.reserved_bytes + unpooled, limit));
}

// Counts `rounded` bytes outside the pool, or throws when they would cross the limit
// even after the cache is released.
void reserve_unpooled(size_t bytes, size_t rounded) {
  const size_t limit = current_limit();
  const size_t held = g_unpooled_bytes.fetch_add(rounded) + rounded;
  if (limit == 0 || held + pool_reserved() <= limit) return;
  if (use_pool()) pool().empty_cache();
  if (g_unpooled_bytes.load() + pool_reserved() <= limit) return;
  g_unpooled_bytes.fetch_sub(rounded);
  throw_unpooled_oom(bytes, limit);
}

}  // namespace

std::string allocator_backend() { return use_pool() ? "pool" : "system"; }

void* raw_alloc(size_t bytes) {
  if (bytes == 0) return nullptr;
  if (pooled(bytes)) {
    current_limit();  // the pool holds the limit once the variable is read
    return pool().allocate(bytes, nullptr);
  }
  const size_t rounded = rounded_size(bytes);
  reserve_unpooled(bytes, rounded);
  void* p = std::aligned_alloc(kAlignment, rounded);
  if (p == nullptr) {
    // Cached segments may be what is missing.
    if (use_pool()) pool().empty_cache();
    p = std::aligned_alloc(kAlignment, rounded);
  }
  if (p == nullptr) {
    g_unpooled_bytes.fetch_sub(rounded);
    throw_unpooled_oom(bytes, 0);
  }
  return p;
}

void raw_free(void* ptr, size_t bytes) {
  if (ptr == nullptr) return;
  if (pooled(bytes)) {
    pool().free(ptr);
  } else {
    std::free(ptr);
    g_unpooled_bytes.fetch_sub(rounded_size(bytes));
  }
}

void set_memory_limit(size_t bytes) {
  std::lock_guard<std::mutex> lock(g_limit_mu);
  apply_limit(bytes);
}

size_t memory_limit() { return current_limit(); }

memory::AllocatorStats memory_stats() {
  memory::AllocatorStats s = use_pool() ? pool().stats() : memory::AllocatorStats{};
  s.ooms += g_unpooled_ooms.load();
  s.unpooled_bytes = g_unpooled_bytes.load();
  return s;
}

void reset_peak_memory_stats() {
  if (use_pool()) pool().reset_peak_stats();
}

void empty_cache() {
  if (use_pool()) pool().empty_cache();
}

}  // namespace ember::cpu
