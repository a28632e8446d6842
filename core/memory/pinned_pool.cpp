// The pinned host pool: power-of-two bins over cudaHostAlloc, with a malloc fallback.
// See Note [Pinned pool policy].
#include "ember/core/memory/pinned_pool.h"

#include <algorithm>
#include <cstdlib>

#include "ember/core/base/error.h"
#include "ember/core/device.h"
#include "ember/core/memory/caching_allocator.h"

#if EMBER_WITH_CUDA
#include <cuda_runtime_api.h>

#include "ember/core/base/cuda_check.h"
#endif

namespace ember::memory {

PinnedSource::~PinnedSource() = default;

namespace {

constexpr size_t kMaxPinnedBlock = size_t{1} << 62;
constexpr size_t kFallbackAlignment = 64;  // a cache line; all bins are multiples of it

int bin_of(size_t size) {
  int bin = 0;
  while ((size_t{1} << bin) < size) ++bin;
  return bin;
}

}  // namespace

// Without a GPU (or a build without CUDA) there is nothing to pin for: allocate() says so
// with nullptr and the pool serves ordinary memory.
#if EMBER_WITH_CUDA
void* CudaPinnedSource::allocate(size_t bytes) {
  if (!cuda::is_available()) return nullptr;
  void* ptr = nullptr;
  if (cudaHostAlloc(&ptr, bytes, cudaHostAllocPortable) != cudaSuccess) {
    (void)cudaGetLastError();
    return nullptr;
  }
  return ptr;
}

void CudaPinnedSource::release(void* ptr, size_t /*bytes*/) {
  EMBER_CUDA_CHECK(cudaFreeHost(ptr));
}
#else
void* CudaPinnedSource::allocate(size_t /*bytes*/) { return nullptr; }
void CudaPinnedSource::release(void* /*ptr*/, size_t /*bytes*/) {}
#endif

PinnedPool::PinnedPool(std::unique_ptr<PinnedSource> source)
    : source_(std::move(source)), free_lists_(64) {
  EMBER_INTERNAL_ASSERT(source_ != nullptr, "PinnedPool needs a source");
}

PinnedPool::~PinnedPool() {
  for (auto& [ptr, block] : blocks_) {
    try {
      release_block(ptr, block);
    } catch (...) {
      // Destructors must not throw; at exit the driver may be gone already.
    }
  }
}

void PinnedPool::release_block(void* ptr, const Block& block) {
  if (block.page_locked) {
    source_->release(ptr, block.size);
  } else {
    std::free(ptr);
  }
}

void* PinnedPool::allocate(size_t bytes) {
  if (bytes == 0) return nullptr;
  std::lock_guard<std::mutex> lock(mu_);
  EMBER_CHECK_T(OutOfMemoryError, bytes <= kMaxPinnedBlock, "pinned_alloc: out of host memory. "
                "Tried to allocate ", format_size(bytes));
  const size_t size = bytes <= kMinPinnedBlock ? kMinPinnedBlock : size_t{1} << bin_of(bytes);
  auto& free_list = free_lists_[bin_of(size)];
  ++stats_.num_allocs;
  if (!free_list.empty()) {
    void* ptr = free_list.back();
    free_list.pop_back();
    blocks_[ptr].in_use = true;
    ++stats_.cache_hits;
    stats_.cached_bytes -= size;
    stats_.allocated_bytes += size;
    stats_.peak_allocated_bytes = std::max(stats_.peak_allocated_bytes, stats_.allocated_bytes);
    return ptr;
  }

  bool page_locked = true;
  void* ptr = source_->allocate(size);
  if (ptr == nullptr) {
    page_locked = false;
    ptr = std::aligned_alloc(kFallbackAlignment, size);
  }
  if (ptr == nullptr && stats_.cached_bytes > 0) {
    release_free_blocks();
    page_locked = true;
    ptr = source_->allocate(size);
    if (ptr == nullptr) {
      page_locked = false;
      ptr = std::aligned_alloc(kFallbackAlignment, size);
    }
  }
  if (ptr == nullptr) {
    --stats_.num_allocs;
    EMBER_CHECK_T(OutOfMemoryError, false, "pinned_alloc: out of host memory. Tried to allocate ",
                  format_size(bytes), " (a block of ", format_size(size), "); the pinned pool "
                  "holds ", format_size(stats_.allocated_bytes), " in live blocks. Free pinned "
                  "buffers sooner or use smaller transfers.");
  }
  blocks_.emplace(ptr, Block{size, page_locked, true});
  ++stats_.host_allocs;
  if (!page_locked) ++stats_.unpinned_allocs;
  stats_.allocated_bytes += size;
  stats_.peak_allocated_bytes = std::max(stats_.peak_allocated_bytes, stats_.allocated_bytes);
  return ptr;
}

const PinnedPool::Block& PinnedPool::find(void* ptr, const char* op) const {
  auto it = blocks_.find(ptr);
  EMBER_CHECK(it != blocks_.end(), op, ": pointer ", ptr,
              " was not allocated by the pinned host pool");
  return it->second;
}

void PinnedPool::free(void* ptr) {
  if (ptr == nullptr) return;
  std::lock_guard<std::mutex> lock(mu_);
  const Block& found = find(ptr, "pinned_free");
  EMBER_CHECK(found.in_use, "pinned_free: pointer ", ptr, " was already freed");
  Block& block = blocks_[ptr];
  block.in_use = false;
  free_lists_[bin_of(block.size)].push_back(ptr);
  stats_.allocated_bytes -= block.size;
  stats_.cached_bytes += block.size;
}

bool PinnedPool::is_page_locked(void* ptr) const {
  std::lock_guard<std::mutex> lock(mu_);
  return find(ptr, "pinned_is_page_locked").page_locked;
}

size_t PinnedPool::block_size(void* ptr) const {
  std::lock_guard<std::mutex> lock(mu_);
  return find(ptr, "pinned block_size").size;
}

void PinnedPool::release_free_blocks() {
  for (auto& free_list : free_lists_) {
    while (!free_list.empty()) {
      void* ptr = free_list.back();
      auto it = blocks_.find(ptr);
      release_block(ptr, it->second);  // first: if it throws, the block stays cached
      free_list.pop_back();
      stats_.cached_bytes -= it->second.size;
      ++stats_.host_frees;
      blocks_.erase(it);
    }
  }
}

void PinnedPool::empty_cache() {
  std::lock_guard<std::mutex> lock(mu_);
  release_free_blocks();
}

PinnedStats PinnedPool::stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  return stats_;
}

namespace {

PinnedPool& global_pool() {
  // Never destroyed, like the device allocators (Note [Allocator lifetime] in
  // cuda_allocator.cpp): buffers may be freed by static objects at exit.
  static PinnedPool* pool = new PinnedPool(std::make_unique<CudaPinnedSource>());
  return *pool;
}

}  // namespace

void* pinned_alloc(size_t bytes) { return global_pool().allocate(bytes); }
void pinned_free(void* ptr) { global_pool().free(ptr); }
bool pinned_is_page_locked(void* ptr) { return global_pool().is_page_locked(ptr); }
PinnedStats pinned_stats() { return global_pool().stats(); }
void pinned_empty_cache() { global_pool().empty_cache(); }

}  // namespace ember::memory
