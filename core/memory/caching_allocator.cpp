// The caching allocator's bookkeeping: free-block pools, splitting and coalescing,
// deferred reuse across streams, and the out-of-memory path.
#include "ember/core/memory/caching_allocator.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <unordered_set>

#include "ember/core/base/error.h"

namespace ember::memory {

SegmentSource::~SegmentSource() = default;
EventSource::~EventSource() = default;

namespace {

// Past this, rounding would overflow; no device has that much memory anyway.
constexpr size_t kMaxRequest = std::numeric_limits<size_t>::max() / 4;

std::string device_name(int device) {
  return device == kCpuDevice ? std::string("the CPU") : detail::str_cat("cuda:", device);
}

}  // namespace

std::string format_size(size_t bytes) {
  constexpr double kKiB = 1024.0;
  char buf[64];
  if (bytes < 1024) {
    std::snprintf(buf, sizeof(buf), "%zu B", bytes);
  } else if (bytes < (size_t{1} << 20)) {
    std::snprintf(buf, sizeof(buf), "%.2f KiB", static_cast<double>(bytes) / kKiB);
  } else if (bytes < (size_t{1} << 30)) {
    std::snprintf(buf, sizeof(buf), "%.2f MiB", static_cast<double>(bytes) / (kKiB * kKiB));
  } else {
    std::snprintf(buf, sizeof(buf), "%.2f GiB",
                  static_cast<double>(bytes) / (kKiB * kKiB * kKiB));
  }
  return buf;
}

std::string out_of_memory_message(size_t requested_bytes, int device, bool have_info,
                                  size_t free_bytes, size_t total_bytes,
                                  size_t allocated_bytes, size_t reserved_bytes,
                                  size_t limit_bytes) {
  const bool cpu = device == kCpuDevice;
  const size_t unallocated =
      reserved_bytes > allocated_bytes ? reserved_bytes - allocated_bytes : 0;
  std::string msg = detail::str_cat(cpu ? "CPU" : "CUDA", " out of memory. Tried to allocate ",
                                    format_size(requested_bytes));
  const std::string where = cpu ? std::string("The machine") : detail::str_cat("GPU ", device);
  if (limit_bytes > 0) {
    // The device may have room; ember's own bound does not (Note [Memory limits]).
    msg += detail::str_cat(
        cpu ? std::string(" on the CPU") : detail::str_cat(" on GPU ", device),
        ", over the memory limit of ", format_size(limit_bytes), " set for ",
        cpu ? "the CPU (EMBER_CPU_MEMORY_LIMIT or ember::cpu::set_memory_limit)"
            : "it (EMBER_CUDA_MEMORY_FRACTION, EMBER_CUDA_MEMORY_LIMIT or "
              "ember::cuda::set_memory_fraction)",
        ". In use: ", format_size(allocated_bytes), "; cached (reserved by ember but "
        "unallocated): ", format_size(unallocated), "; limit: ",
        format_size(limit_bytes), ".");
    if (have_info) {
      msg += detail::str_cat(" ", where, " has a total capacity of ", format_size(total_bytes),
                             " of which ", format_size(free_bytes),
                             cpu ? " is available." : " is free.");
    }
    msg += " To fit: reduce the batch size, or raise the limit.";
    return msg;
  }
  if (have_info) {
    msg += detail::str_cat(". ", where, " has a total capacity of ", format_size(total_bytes),
                           " of which ", format_size(free_bytes),
                           cpu ? " is available." : " is free.");
  } else {
    msg += detail::str_cat(cpu ? " on the CPU." : detail::str_cat(" on GPU ", device, "."));
  }
  msg += detail::str_cat(" Of the allocated memory ", format_size(allocated_bytes),
                         " is allocated by ember, and ", format_size(unallocated),
                         " is reserved by ember but unallocated.");
  if (cpu) {
    msg +=
        " To fit: reduce the batch size or the data held in memory, or call "
        "ember::cpu::empty_cache() to hand cached blocks back to the system.";
  } else {
    msg +=
        " To fit: reduce the batch size, or call ember::cuda::empty_cache() to hand cached "
        "blocks back to the driver (for other libraries and processes), or set "
        "EMBER_CUDA_ALLOC=async to let the driver's cudaMallocAsync pool manage memory if "
        "reserved but unallocated memory is large (fragmentation).";
  }
  return msg;
}

namespace {

// "8", "1.5" -> the number; the rest of `text` in `unit`. False when there is no number.
bool split_number(const std::string& text, double* number, std::string* unit) {
  size_t i = 0;
  while (i < text.size() && std::isspace(static_cast<unsigned char>(text[i]))) ++i;
  const size_t start = i;
  bool digits = false, dot = false;
  for (; i < text.size(); ++i) {
    const char c = text[i];
    if (c >= '0' && c <= '9') {
      digits = true;
    } else if (c == '.' && !dot) {
      dot = true;
    } else {
      break;
    }
  }
  if (!digits) return false;
  *number = std::strtod(text.substr(start, i - start).c_str(), nullptr);
  while (i < text.size() && std::isspace(static_cast<unsigned char>(text[i]))) ++i;
  size_t end = text.size();
  while (end > i && std::isspace(static_cast<unsigned char>(text[end - 1]))) --end;
  *unit = text.substr(i, end - i);
  for (char& c : *unit) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return true;
}

}  // namespace

size_t parse_memory_size(const std::string& text, const std::string& what) {
  double number = 0;
  std::string unit;
  const bool ok = split_number(text, &number, &unit);
  double scale = -1;
  if (ok) {
    static const std::pair<const char*, double> kUnits[] = {
        {"", 1.0},       {"B", 1.0},
        {"K", 0x1p10},   {"KIB", 0x1p10}, {"KB", 1e3},
        {"M", 0x1p20},   {"MIB", 0x1p20}, {"MB", 1e6},
        {"G", 0x1p30},   {"GIB", 0x1p30}, {"GB", 1e9},
        {"T", 0x1p40},   {"TIB", 0x1p40}, {"TB", 1e12}};
    for (const auto& [name, s] : kUnits) {
      if (unit == name) scale = s;
    }
  }
  EMBER_CHECK(ok && scale > 0, what, "=\"", text,
              "\" is not a memory size; expected a number of bytes with an optional unit, "
              "such as 8GiB, 512MiB, 1.5G or 1073741824 (units K, M, G, T and KiB, MiB, GiB, "
              "TiB count in 1024s; KB, MB, GB, TB in 1000s)");
  const double bytes = std::floor(number * scale);
  EMBER_CHECK(bytes >= 1.0, what, "=\"", text,
              "\" is zero bytes; give a positive size, or unset ", what, " for no limit");
  EMBER_CHECK(bytes < 0x1p64, what, "=\"", text, "\" is too large (", bytes,
              " bytes does not fit in 64 bits)");
  return static_cast<size_t>(bytes);
}

double parse_memory_fraction(const std::string& text, const std::string& what) {
  double number = 0;
  std::string unit;
  const bool ok = split_number(text, &number, &unit) && unit.empty();
  EMBER_CHECK(ok && number > 0.0 && number <= 1.0, what, "=\"", text,
              "\" is not a fraction of the device's memory; expected a number in (0, 1], "
              "such as 0.5");
  return number;
}

size_t round_size(size_t bytes) {
  if (bytes < kMinBlockSize) return kMinBlockSize;
  return (bytes + kMinBlockSize - 1) / kMinBlockSize * kMinBlockSize;
}

size_t segment_size_for(size_t rounded_bytes) {
  if (rounded_bytes <= kSmallSize) return kSmallBuffer;
  if (rounded_bytes < kMinLargeAlloc) return kLargeBuffer;
  return (rounded_bytes + kRoundLarge - 1) / kRoundLarge * kRoundLarge;
}

// A piece of a segment. Blocks of one segment form a doubly linked list in address
// order; all of them share the segment's stream and pool.
//
// States: allocated; waiting for events (not allocated, event_count > 0); free and in
// its pool (neither). Only blocks in the last state coalesce.
struct CachingAllocator::Block {
  char* ptr;
  size_t size;
  void* stream;
  bool small;
  bool allocated = false;
  int event_count = 0;
  Block* prev = nullptr;
  Block* next = nullptr;
  std::vector<void*> stream_uses;  // other streams the allocation was used on

  Block(char* p, size_t s, void* st, bool sm) : ptr(p), size(s), stream(st), small(sm) {}
  bool is_free() const { return !allocated && event_count == 0; }
};

bool CachingAllocator::BlockLess::operator()(const Block* a, const Block* b) const {
  const auto sa = reinterpret_cast<uintptr_t>(a->stream);
  const auto sb = reinterpret_cast<uintptr_t>(b->stream);
  if (sa != sb) return sa < sb;
  if (a->size != b->size) return a->size < b->size;
  return reinterpret_cast<uintptr_t>(a->ptr) < reinterpret_cast<uintptr_t>(b->ptr);
}

CachingAllocator::CachingAllocator(std::unique_ptr<SegmentSource> source,
                                   std::unique_ptr<EventSource> events)
    : source_(std::move(source)), events_(std::move(events)) {
  EMBER_INTERNAL_ASSERT(source_ != nullptr && events_ != nullptr,
                        "CachingAllocator needs a segment source and an event source");
}

// Destructors must not throw: every release is attempted and failures are swallowed
// (at process exit the driver may already be gone).
CachingAllocator::~CachingAllocator() {
  std::unordered_set<Block*> blocks;
  for (Block* b : small_blocks_) blocks.insert(b);
  for (Block* b : large_blocks_) blocks.insert(b);
  for (auto& [ptr, b] : allocated_) blocks.insert(b);
  for (auto& [stream, queue] : pending_) {
    for (auto& [event, b] : queue) {
      blocks.insert(b);
      try {
        events_->destroy(event);
      } catch (...) {
      }
    }
  }
  for (Block* b : blocks) {
    if (b->prev != nullptr) continue;  // not the head of its segment
    size_t segment_bytes = 0;
    for (Block* x = b; x != nullptr; x = x->next) segment_bytes += x->size;
    try {
      source_->release(b->ptr, segment_bytes);
    } catch (...) {
    }
  }
  for (Block* b : blocks) delete b;
}

CachingAllocator::BlockPool& CachingAllocator::pool_of(const Block* block) {
  return block->small ? small_blocks_ : large_blocks_;
}

CachingAllocator::Block* CachingAllocator::take_free_block(BlockPool& pool, void* stream,
                                                           size_t size) {
  Block key(nullptr, size, stream, false);
  auto it = pool.lower_bound(&key);
  if (it == pool.end() || (*it)->stream != stream) return nullptr;
  Block* block = *it;
  pool.erase(it);
  return block;
}

bool CachingAllocator::over_limit(size_t segment_bytes) const {
  if (limit_ == 0) return false;
  const size_t held = stats_.reserved_bytes + source_->external_bytes();
  return held > limit_ || segment_bytes > limit_ - held;
}

size_t CachingAllocator::segment_bytes_for(size_t rounded_bytes) const {
  const size_t policy = segment_size_for(rounded_bytes);
  // See Note [Memory limits]: a segment just big enough may still fit under the limit.
  const size_t tight = (rounded_bytes + kRoundLarge - 1) / kRoundLarge * kRoundLarge;
  if (tight < policy && over_limit(policy) && !over_limit(tight)) return tight;
  return policy;
}

CachingAllocator::Block* CachingAllocator::new_segment(size_t segment_bytes, void* stream,
                                                       bool small) {
  if (over_limit(segment_bytes)) return nullptr;  // Note [Memory limits]
  auto block = std::make_unique<Block>(nullptr, segment_bytes, stream, small);
  void* ptr = source_->allocate(segment_bytes);
  if (ptr == nullptr) return nullptr;
  block->ptr = static_cast<char*>(ptr);
  ++stats_.device_allocs;
  ++stats_.segments;
  stats_.reserved_bytes += segment_bytes;
  stats_.peak_reserved_bytes = std::max(stats_.peak_reserved_bytes, stats_.reserved_bytes);
  return block.release();
}

void CachingAllocator::split(Block* block, size_t size) {
  const size_t remaining = block->size - size;
  const bool worth_it = block->small ? remaining >= kMinBlockSize : remaining > kSmallSize;
  if (!worth_it) return;
  Block* rest = new Block(block->ptr + size, remaining, block->stream, block->small);
  rest->prev = block;
  rest->next = block->next;
  if (rest->next != nullptr) rest->next->prev = rest;
  block->next = rest;
  block->size = size;
  pool_of(rest).insert(rest);
}

void* CachingAllocator::allocate(size_t bytes, void* stream) {
  if (bytes == 0) return nullptr;
  std::lock_guard<std::mutex> lock(mu_);
  process_events(/*wait=*/false);
  if (bytes > kMaxRequest) throw_oom(bytes, limit_ != 0);

  const size_t size = round_size(bytes);
  const bool small = size <= kSmallSize;
  BlockPool& pool = small ? small_blocks_ : large_blocks_;

  bool from_cache = true;
  Block* block = take_free_block(pool, stream, size);
  if (block == nullptr) {
    from_cache = false;
    block = new_segment(segment_bytes_for(size), stream, small);
  }
  if (block == nullptr) {
    // Out of memory: blocks held back by events may be free once those are waited
    // for, and every wholly free segment (of any stream or pool) can go back.
    ++stats_.oom_retries;
    process_events(/*wait=*/true);
    block = take_free_block(pool, stream, size);
    from_cache = block != nullptr;
    if (block == nullptr) {
      release_cached_segments();
      block = new_segment(segment_bytes_for(size), stream, small);
    }
    if (block == nullptr) throw_oom(bytes, over_limit(segment_bytes_for(size)));
  }

  split(block, size);
  block->allocated = true;
  allocated_.emplace(block->ptr, block);
  ++stats_.num_allocs;
  if (from_cache) ++stats_.cache_hits;
  stats_.allocated_bytes += block->size;
  stats_.peak_allocated_bytes = std::max(stats_.peak_allocated_bytes, stats_.allocated_bytes);
  return block->ptr;
}

void CachingAllocator::throw_oom(size_t requested_bytes, bool limit_hit) {
  ++stats_.ooms;
  size_t free_bytes = 0, total_bytes = 0;
  bool have_info = false;
  try {
    have_info = source_->memory_info(&free_bytes, &total_bytes);
  } catch (...) {
    // The figures are a courtesy; the OutOfMemoryError below is what matters.
  }
  // Memory held outside the pool (the CPU's small buffers) is in use too.
  const size_t external = source_->external_bytes();
  throw OutOfMemoryError(out_of_memory_message(
      requested_bytes, source_->device(), have_info, free_bytes, total_bytes,
      stats_.allocated_bytes + external, stats_.reserved_bytes + external,
      limit_hit ? limit_ : 0));
}

CachingAllocator::Block* CachingAllocator::find_allocated(void* ptr, const char* op) const {
  auto it = allocated_.find(ptr);
  EMBER_CHECK(it != allocated_.end(), "CachingAllocator::", op, ": pointer ", ptr,
              " was not allocated by the caching allocator of ",
              source_->device() == kCpuDevice ? std::string("the CPU")
                                              : detail::str_cat("device ", source_->device()),
              " (or was already freed)");
  return it->second;
}

void CachingAllocator::free(void* ptr) {
  if (ptr == nullptr) return;
  std::lock_guard<std::mutex> lock(mu_);
  Block* block = find_allocated(ptr, "free");
  allocated_.erase(ptr);
  block->allocated = false;
  stats_.allocated_bytes -= block->size;
  if (block->stream_uses.empty()) {
    free_block(block);
    return;
  }
  try {
    for (void* s : block->stream_uses) {
      void* event = events_->record(s);
      pending_[s].emplace_back(event, block);
      ++block->event_count;
    }
  } catch (...) {
    // Streams whose event could not be recorded cannot be waited for; the block is
    // held back by the events that were recorded, or returned at once if none were.
    block->stream_uses.clear();
    if (block->event_count == 0) free_block(block);
    throw;
  }
  block->stream_uses.clear();
}

void CachingAllocator::record_stream(void* ptr, void* stream) {
  std::lock_guard<std::mutex> lock(mu_);
  Block* block = find_allocated(ptr, "record_stream");
  // Work on the allocation stream is ordered before any reuse already.
  if (stream == block->stream) return;
  auto& uses = block->stream_uses;
  if (std::find(uses.begin(), uses.end(), stream) == uses.end()) uses.push_back(stream);
}

void CachingAllocator::merge_into(Block* dst, Block* src) {
  if (src == nullptr || !src->is_free()) return;
  pool_of(src).erase(src);
  if (dst->prev == src) {
    dst->ptr = src->ptr;
    dst->prev = src->prev;
    if (dst->prev != nullptr) dst->prev->next = dst;
  } else {
    dst->next = src->next;
    if (dst->next != nullptr) dst->next->prev = dst;
  }
  dst->size += src->size;
  delete src;
}

void CachingAllocator::free_block(Block* block) {
  merge_into(block, block->prev);
  merge_into(block, block->next);
  pool_of(block).insert(block);
}

void CachingAllocator::process_events(bool wait) {
  for (auto it = pending_.begin(); it != pending_.end();) {
    auto& queue = it->second;
    while (!queue.empty()) {
      auto [event, block] = queue.front();
      if (wait) events_->synchronize(event);
      if (!events_->query(event)) break;
      queue.pop_front();
      if (--block->event_count == 0) free_block(block);
      events_->destroy(event);
    }
    it = queue.empty() ? pending_.erase(it) : std::next(it);
  }
}

void CachingAllocator::release_cached_segments() {
  for (BlockPool* pool : {&small_blocks_, &large_blocks_}) {
    for (auto it = pool->begin(); it != pool->end();) {
      Block* block = *it;
      if (block->prev != nullptr || block->next != nullptr) {
        ++it;
        continue;
      }
      // Release first: if the source throws, the block stays cached and consistent.
      source_->release(block->ptr, block->size);
      it = pool->erase(it);
      ++stats_.device_frees;
      --stats_.segments;
      stats_.reserved_bytes -= block->size;
      delete block;
    }
  }
}

void CachingAllocator::empty_cache() {
  std::lock_guard<std::mutex> lock(mu_);
  process_events(/*wait=*/true);
  release_cached_segments();
}

void CachingAllocator::set_memory_limit(size_t bytes) {
  std::lock_guard<std::mutex> lock(mu_);
  limit_ = bytes;
}

size_t CachingAllocator::set_memory_fraction(double fraction) {
  EMBER_CHECK(fraction > 0.0 && fraction <= 1.0, "set_memory_fraction: the fraction must be in "
              "(0, 1], got ", fraction, " for ", device_name(source_->device()));
  size_t free_bytes = 0, total_bytes = 0;
  EMBER_CHECK(source_->memory_info(&free_bytes, &total_bytes) && total_bytes > 0,
              "set_memory_fraction: the total memory of ", device_name(source_->device()),
              " is unknown; give the limit in bytes instead");
  const auto bytes = static_cast<size_t>(fraction * static_cast<double>(total_bytes));
  set_memory_limit(std::max<size_t>(bytes, 1));
  return std::max<size_t>(bytes, 1);
}

size_t CachingAllocator::memory_limit() const {
  std::lock_guard<std::mutex> lock(mu_);
  return limit_;
}

AllocatorStats CachingAllocator::stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  return stats_;
}

void CachingAllocator::reset_peak_stats() {
  std::lock_guard<std::mutex> lock(mu_);
  stats_.peak_allocated_bytes = stats_.allocated_bytes;
  stats_.peak_reserved_bytes = stats_.reserved_bytes;
}

size_t CachingAllocator::block_size(void* ptr) const {
  std::lock_guard<std::mutex> lock(mu_);
  return find_allocated(ptr, "block_size")->size;
}

bool CachingAllocator::owns(void* ptr) const {
  std::lock_guard<std::mutex> lock(mu_);
  return allocated_.count(ptr) != 0;
}

}  // namespace ember::memory
