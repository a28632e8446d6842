// A small caching pool of page-locked host memory for host<->device transfers, with
// power-of-two bins; falls back to ordinary memory when pages cannot be locked.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "ember/core/base/export.h"

namespace ember::memory {

// Where page-locked memory comes from (cudaHostAlloc / cudaFreeHost in ember).
struct EMBER_API PinnedSource {
  virtual ~PinnedSource();
  // nullptr when no page-locked memory can be had (no driver, limit reached).
  virtual void* allocate(size_t bytes) = 0;
  virtual void release(void* ptr, size_t bytes) = 0;
};

// cudaHostAlloc (portable: usable from every device) and cudaFreeHost. Without a usable
// GPU it never calls CUDA and always answers nullptr.
class EMBER_API CudaPinnedSource final : public PinnedSource {
 public:
  void* allocate(size_t bytes) override;
  void release(void* ptr, size_t bytes) override;
};

struct PinnedStats {
  size_t allocated_bytes = 0;       // bin sizes of live blocks
  size_t cached_bytes = 0;          // free blocks kept for reuse
  size_t peak_allocated_bytes = 0;
  int64_t host_allocs = 0;          // new blocks (cudaHostAlloc, or malloc as fallback)
  int64_t host_frees = 0;
  int64_t unpinned_allocs = 0;      // of host_allocs, the malloc fallbacks
  int64_t num_allocs = 0;
  int64_t cache_hits = 0;
};

// Note [Pinned pool policy]
// Requests are rounded up to a power of two (at least kMinPinnedBlock) and a freed block
// goes to the free list of its bin, to be handed out again for any request of that bin;
// blocks are never split or merged. cudaHostAlloc is slow (it maps pages for the device),
// which is why a handful of staging buffers are cached rather than re-made per batch.
// When the source has no page-locked memory, the block comes from ordinary aligned
// malloc instead: transfers from it still work (the driver stages them), only slower
// and synchronous, so the loss is speed, never correctness; is_page_locked() tells.
// Only when even malloc fails is the cache emptied and the request retried before
// OutOfMemoryError. The pool does not track streams: a block must not be freed before
// the asynchronous copies that read or write it have completed.
inline constexpr size_t kMinPinnedBlock = 512;

class EMBER_API PinnedPool {
 public:
  explicit PinnedPool(std::unique_ptr<PinnedSource> source);
  ~PinnedPool();
  PinnedPool(const PinnedPool&) = delete;
  PinnedPool& operator=(const PinnedPool&) = delete;

  // bytes == 0 gives nullptr.
  void* allocate(size_t bytes);
  // nullptr is a no-op; a pointer the pool did not hand out throws ember::Error.
  void free(void* ptr);
  bool is_page_locked(void* ptr) const;
  size_t block_size(void* ptr) const;
  // Gives every cached free block back.
  void empty_cache();
  PinnedStats stats() const;

 private:
  struct Block {
    size_t size;
    bool page_locked;
    bool in_use;
  };

  void release_block(void* ptr, const Block& block);
  void release_free_blocks();
  const Block& find(void* ptr, const char* op) const;

  std::unique_ptr<PinnedSource> source_;
  mutable std::mutex mu_;
  std::unordered_map<void*, Block> blocks_;
  std::vector<std::vector<void*>> free_lists_;  // by log2 of the bin size
  PinnedStats stats_;
};

// The process-wide pool over CudaPinnedSource, created on first use.
EMBER_API void* pinned_alloc(size_t bytes);
EMBER_API void pinned_free(void* ptr);
// False for memory that came from the malloc fallback (no driver, no page-locked memory).
EMBER_API bool pinned_is_page_locked(void* ptr);
EMBER_API PinnedStats pinned_stats();
EMBER_API void pinned_empty_cache();

}  // namespace ember::memory
