// A stream-aware caching allocator for device memory. Pure bookkeeping over a
// SegmentSource (cudaMalloc in ember, a fake in tests); see Note [Caching allocator policy].
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "ember/core/base/export.h"

namespace ember::memory {

// Note [Caching allocator policy]
// cudaMalloc and cudaFree are slow and synchronize the device, so memory is taken from
// the driver in large segments and never given back on free(): freed blocks are kept
// and handed out again. The rules, chosen after PyTorch's CUDACachingAllocator:
//
// * Sizes are rounded up to multiples of kMinBlockSize (512 bytes), so blocks and
//   segments are always 512-aligned and every remainder is a whole number of blocks.
// * Requests <= kSmallSize (1 MiB) are "small" and are carved from kSmallBuffer (2 MiB)
//   segments; larger requests below kMinLargeAlloc (10 MiB) from kLargeBuffer (20 MiB)
//   segments, so that many mid-sized tensors share a segment; anything bigger gets a
//   segment of its own, rounded up to kRoundLarge (2 MiB). Small and large blocks live in
//   separate pools and never mix, which keeps small tensors from fragmenting the big
//   segments activations need.
// * Each pool is a set ordered by (stream, size, address); a request takes the smallest
//   free block of its own stream that fits (best fit). Blocks are never shared across
//   streams: a block freed on stream 1 may still be read by kernels queued on stream 1,
//   and only work on the same stream is ordered after them.
// * A block bigger than the request is split when the remainder is useful: >= 512 bytes
//   in the small pool, > 1 MiB in the large pool (a smaller tail would be a sliver no
//   large request can use, so the block is handed out whole and block_size() says so).
// * On free, a block coalesces with its free neighbours in the same segment, so a
//   segment whose blocks are all free is again a single block of the segment's size.
// * A block used on other streams (record_stream) is not reusable when freed: an event
//   is recorded on each of those streams, and the block returns to its pool once all of
//   them have completed. Events are polled at the start of the next allocate().
// * allocated_bytes counts block sizes (rounded, and whole when not split), i.e. what
//   the pool can no longer hand out; reserved_bytes counts segments.
// * Out of memory: when the source fails, wait for the pending events, release every
//   segment that is wholly free back to the source, and retry once; if that fails too,
//   throw OutOfMemoryError with the request and the pool's figures.
// * A memory limit, when set (Note [Memory limits]), is one more way for a new segment to
//   fail, handled the same way.
// * allocate(0) returns nullptr and free(nullptr) does nothing.
inline constexpr size_t kMinBlockSize = 512;
inline constexpr size_t kSmallSize = size_t{1} << 20;
inline constexpr size_t kSmallBuffer = size_t{2} << 20;
inline constexpr size_t kLargeBuffer = size_t{20} << 20;
inline constexpr size_t kMinLargeAlloc = size_t{10} << 20;
inline constexpr size_t kRoundLarge = size_t{2} << 20;

// SegmentSource::device() of the CPU pool (see host_memory.h).
inline constexpr int kCpuDevice = -1;

// Note [Memory limits]
// A pool may be given a limit (CachingAllocator::set_memory_limit; the CPU's from
// EMBER_CPU_MEMORY_LIMIT or cpu::set_memory_limit, a GPU's from EMBER_CUDA_MEMORY_FRACTION,
// EMBER_CUDA_MEMORY_LIMIT or cuda::set_memory_fraction / set_memory_limit, like PyTorch's
// torch.cuda.set_per_process_memory_fraction). It bounds what the pool has *reserved* from
// the system or the driver (its segments: memory in use plus memory cached), plus the
// bytes the source reports as held outside the pool (SegmentSource::external_bytes: the
// CPU's buffers of 1 MiB or less, which bypass the pool). A new segment that would cross
// the limit is not asked for; the allocation then takes the out-of-memory path (release
// the cache, retry once) and, if still over, throws OutOfMemoryError naming the request,
// the memory in use, the memory cached, the limit and the device. Nothing is left
// changed by the failure: the next allocation that fits succeeds. When the policy's
// segment (20 MiB for a 2 MiB request) would not fit under the limit but the request
// rounded to 2 MiB would, the segment is that smaller one. A limit below what is already
// reserved takes nothing back by itself: it stops the pool from growing, and
// empty_cache() gives back what is cached. No limit (0) is the default.

// Where segments come from (cudaMalloc/cudaFree on one device, aligned_alloc for the CPU).
struct EMBER_API SegmentSource {
  virtual ~SegmentSource();
  // nullptr when out of memory; other failures throw.
  virtual void* allocate(size_t bytes) = 0;
  virtual void release(void* ptr, size_t bytes) = 0;
  // The device's free and total memory, for the out-of-memory message.
  virtual bool memory_info(size_t* free_bytes, size_t* total_bytes) {
    (void)free_bytes;
    (void)total_bytes;
    return false;
  }
  virtual int device() const { return 0; }
  // Bytes of this device held outside the pool that count against its memory limit
  // (Note [Memory limits]); 0 for a GPU.
  virtual size_t external_bytes() const { return 0; }
};

// Events on streams; streams and events are opaque here (cudaStream_t / cudaEvent_t).
struct EMBER_API EventSource {
  virtual ~EventSource();
  virtual void* record(void* stream) = 0;
  virtual bool query(void* event) = 0;  // true when complete
  virtual void destroy(void* event) = 0;
  // Blocks until the event has completed; used on the out-of-memory path and by
  // empty_cache(). The default does not wait, so only events query() reports complete
  // are retired.
  virtual void synchronize(void* event) { (void)event; }
};

struct AllocatorStats {
  size_t allocated_bytes = 0;
  size_t reserved_bytes = 0;
  size_t peak_allocated_bytes = 0;
  size_t peak_reserved_bytes = 0;
  int64_t segments = 0;        // segments held now
  int64_t device_allocs = 0;   // successful SegmentSource::allocate (cudaMalloc) calls
  int64_t device_frees = 0;    // SegmentSource::release (cudaFree) calls
  int64_t num_allocs = 0;      // successful allocate() calls with bytes > 0
  int64_t cache_hits = 0;      // of those, served from a cached block
  int64_t oom_retries = 0;     // times the cache was flushed after a failed segment allocation
  int64_t ooms = 0;            // OutOfMemoryErrors thrown
  // The CPU only: buffers of 1 MiB or less, which bypass the pool but count against its
  // limit (Note [CPU memory limit] in host_memory.h); 0 for a GPU.
  size_t unpooled_bytes = 0;
};

// "512 B", "1.50 KiB", "20.00 MiB", "1.70 GiB".
EMBER_API std::string format_size(size_t bytes);

// The out-of-memory message of CONVENTIONS.md ("CUDA out of memory. ..." for a GPU,
// "CPU out of memory. ..." for kCpuDevice). `have_info` false omits the capacity part.
// `limit_bytes` > 0: the request failed against ember's memory limit of that many bytes
// (Note [Memory limits]) rather than the device's capacity, and the message says so.
EMBER_API std::string out_of_memory_message(size_t requested_bytes, int device, bool have_info,
                                            size_t free_bytes, size_t total_bytes,
                                            size_t allocated_bytes, size_t reserved_bytes,
                                            size_t limit_bytes = 0);

// A memory size as the environment gives it: a whole or decimal number of bytes with an
// optional unit, case-insensitive, spaces allowed before it: "8GiB", "8G", "1.5 GiB",
// "512MiB", "4096". K, M, G, T and KiB, MiB, GiB, TiB are powers of 1024 (as ulimit and
// docker read them); KB, MB, GB, TB powers of 1000; B bytes. `what` names the source
// (the variable) in the Error thrown for anything else, for a size of zero or one that
// does not fit in 64 bits.
EMBER_API size_t parse_memory_size(const std::string& text, const std::string& what);
// A fraction of a device's memory in (0, 1] ("0.5"); Error naming `what` otherwise.
EMBER_API double parse_memory_fraction(const std::string& text, const std::string& what);

// Request size rounded to the block granularity, and the segment size for a rounded
// request; see Note [Caching allocator policy].
EMBER_API size_t round_size(size_t bytes);
EMBER_API size_t segment_size_for(size_t rounded_bytes);

class EMBER_API CachingAllocator {
 public:
  CachingAllocator(std::unique_ptr<SegmentSource> source, std::unique_ptr<EventSource> events);
  ~CachingAllocator();
  CachingAllocator(const CachingAllocator&) = delete;
  CachingAllocator& operator=(const CachingAllocator&) = delete;

  // Memory for use on `stream`. Throws OutOfMemoryError when even a flushed cache cannot
  // make room.
  void* allocate(size_t bytes, void* stream);
  // Throws ember::Error for a pointer this allocator did not hand out (or already took back).
  void free(void* ptr);
  // `ptr` is also used on `stream`: its block is not reused until that work is done.
  void record_stream(void* ptr, void* stream);
  // Gives every wholly free segment back to the source.
  void empty_cache();

  // Bounds the bytes reserved from the source (Note [Memory limits]); 0 removes the bound.
  void set_memory_limit(size_t bytes);
  // The limit as a fraction in (0, 1] of the device's total memory (from
  // SegmentSource::memory_info); throws ember::Error when the fraction is out of range or
  // the source cannot tell its total. Returns the limit in bytes.
  size_t set_memory_fraction(double fraction);
  size_t memory_limit() const;

  AllocatorStats stats() const;
  void reset_peak_stats();
  // The size of the block behind an allocated pointer (>= the request).
  size_t block_size(void* ptr) const;
  bool owns(void* ptr) const;
  int device() const { return source_->device(); }

 private:
  struct Block;
  struct BlockLess {
    bool operator()(const Block* a, const Block* b) const;
  };
  using BlockPool = std::set<Block*, BlockLess>;

  BlockPool& pool_of(const Block* block);
  Block* take_free_block(BlockPool& pool, void* stream, size_t size);
  Block* new_segment(size_t segment_bytes, void* stream, bool small);
  size_t segment_bytes_for(size_t rounded_bytes) const;
  bool over_limit(size_t segment_bytes) const;
  void split(Block* block, size_t size);
  void free_block(Block* block);
  void merge_into(Block* dst, Block* src);
  void process_events(bool wait);
  void release_cached_segments();
  [[noreturn]] void throw_oom(size_t requested_bytes, bool limit_hit);
  Block* find_allocated(void* ptr, const char* op) const;

  std::unique_ptr<SegmentSource> source_;
  std::unique_ptr<EventSource> events_;
  mutable std::mutex mu_;
  BlockPool small_blocks_;
  BlockPool large_blocks_;
  std::unordered_map<void*, Block*> allocated_;
  // Per stream, events in recording order with the block each one holds back. Events on
  // one stream complete in order, so polling stops at the first incomplete one.
  std::unordered_map<void*, std::deque<std::pair<void*, Block*>>> pending_;
  AllocatorStats stats_;
  size_t limit_ = 0;  // Note [Memory limits]; 0: none
};

}  // namespace ember::memory
