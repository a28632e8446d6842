// CachingAllocator's bookkeeping against a fake segment source (fake addresses, a set
// capacity) and fake events completed by hand; no GPU involved.
#include "ember/core/memory/caching_allocator.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "ember/core/base/error.h"

namespace {

using ember::memory::AllocatorStats;
using ember::memory::CachingAllocator;
using ember::memory::kLargeBuffer;
using ember::memory::kSmallBuffer;

constexpr size_t kKiB = 1024;
constexpr size_t kMiB = 1024 * 1024;

// What the fake device did, shared with the test after the allocator takes the source.
struct FakeDevice {
  size_t capacity = size_t{1} << 40;
  bool real_memory = false;  // hand out malloc'ed memory the test may write to
  bool has_info = true;
  size_t in_use = 0;
  int64_t allocate_calls = 0;
  int64_t failed_allocates = 0;
  int64_t release_calls = 0;
  size_t last_request = 0;
  std::vector<size_t> released_sizes;
  uintptr_t next_address = 0x10000000;
  std::map<void*, size_t> live;
};

class FakeSegmentSource : public ember::memory::SegmentSource {
 public:
  explicit FakeSegmentSource(std::shared_ptr<FakeDevice> d) : d_(std::move(d)) {}
  void* allocate(size_t bytes) override {
    ++d_->allocate_calls;
    d_->last_request = bytes;
    if (d_->in_use + bytes > d_->capacity) {
      ++d_->failed_allocates;
      return nullptr;
    }
    void* p = nullptr;
    if (d_->real_memory) {
      p = std::malloc(bytes);
    } else {
      // A gap after each segment, so a bug that merged across segments would show.
      p = reinterpret_cast<void*>(d_->next_address);
      d_->next_address += bytes + 64 * kKiB;
    }
    d_->in_use += bytes;
    d_->live[p] = bytes;
    return p;
  }
  void release(void* ptr, size_t bytes) override {
    ++d_->release_calls;
    auto it = d_->live.find(ptr);
    if (it == d_->live.end() || it->second != bytes) {
      ADD_FAILURE() << "release of " << ptr << " (" << bytes << " bytes) that is not a segment";
      return;
    }
    d_->live.erase(it);
    d_->in_use -= bytes;
    d_->released_sizes.push_back(bytes);
    if (d_->real_memory) std::free(ptr);
  }
  bool memory_info(size_t* free_bytes, size_t* total_bytes) override {
    if (!d_->has_info) return false;
    *free_bytes = d_->capacity - d_->in_use;
    *total_bytes = d_->capacity;
    return true;
  }

 private:
  std::shared_ptr<FakeDevice> d_;
};

struct FakeEventState {
  int next_id = 1;
  std::map<int, bool> complete;  // live events
  int64_t created = 0;
  int64_t destroyed = 0;
  int64_t synchronized = 0;
  bool synchronize_completes = true;  // false: synchronize() behaves like a stuck GPU

  void complete_all() {
    for (auto& [id, done] : complete) done = true;
  }
};

class FakeEventSource : public ember::memory::EventSource {
 public:
  explicit FakeEventSource(std::shared_ptr<FakeEventState> s) : s_(std::move(s)) {}
  void* record(void* /*stream*/) override {
    const int id = s_->next_id++;
    s_->complete[id] = false;
    ++s_->created;
    return reinterpret_cast<void*>(static_cast<uintptr_t>(id));
  }
  bool query(void* event) override { return s_->complete.at(id_of(event)); }
  void destroy(void* event) override {
    EXPECT_EQ(s_->complete.erase(id_of(event)), 1u) << "event destroyed twice";
    ++s_->destroyed;
  }
  void synchronize(void* event) override {
    ++s_->synchronized;
    if (s_->synchronize_completes) s_->complete.at(id_of(event)) = true;
  }

 private:
  static int id_of(void* e) { return static_cast<int>(reinterpret_cast<uintptr_t>(e)); }
  std::shared_ptr<FakeEventState> s_;
};

void* const kStream1 = reinterpret_cast<void*>(uintptr_t{0x51});
void* const kStream2 = reinterpret_cast<void*>(uintptr_t{0x52});
void* const kStream3 = reinterpret_cast<void*>(uintptr_t{0x53});

struct Fixture {
  std::shared_ptr<FakeDevice> device = std::make_shared<FakeDevice>();
  std::shared_ptr<FakeEventState> events = std::make_shared<FakeEventState>();
  std::unique_ptr<CachingAllocator> alloc;

  explicit Fixture(size_t capacity = size_t{1} << 40, bool real_memory = false) {
    device->capacity = capacity;
    device->real_memory = real_memory;
    alloc = std::make_unique<CachingAllocator>(std::make_unique<FakeSegmentSource>(device),
                                               std::make_unique<FakeEventSource>(events));
  }
  AllocatorStats stats() const { return alloc->stats(); }
};

char* as_bytes(void* p) { return static_cast<char*>(p); }

TEST(CachingAllocator, FreedBlockIsReusedWithoutNewSegment) {
  Fixture f;
  void* p = f.alloc->allocate(1000, kStream1);
  ASSERT_NE(p, nullptr);
  f.alloc->free(p);
  void* q = f.alloc->allocate(1000, kStream1);
  EXPECT_EQ(q, p);
  EXPECT_EQ(f.device->allocate_calls, 1);
  EXPECT_EQ(f.stats().device_allocs, 1);
  EXPECT_EQ(f.stats().cache_hits, 1);
  EXPECT_EQ(f.stats().num_allocs, 2);
  f.alloc->free(q);
}

TEST(CachingAllocator, SizesAreRoundedUpToMultiplesOf512) {
  Fixture f;
  EXPECT_EQ(ember::memory::round_size(1), 512u);
  EXPECT_EQ(ember::memory::round_size(512), 512u);
  EXPECT_EQ(ember::memory::round_size(513), 1024u);
  void* a = f.alloc->allocate(1, kStream1);
  void* b = f.alloc->allocate(513, kStream1);
  void* c = f.alloc->allocate(1024, kStream1);
  EXPECT_EQ(f.alloc->block_size(a), 512u);
  EXPECT_EQ(f.alloc->block_size(b), 1024u);
  EXPECT_EQ(f.alloc->block_size(c), 1024u);
  // Carved one after another from the same segment.
  EXPECT_EQ(as_bytes(b), as_bytes(a) + 512);
  EXPECT_EQ(as_bytes(c), as_bytes(b) + 1024);
  EXPECT_EQ(f.stats().allocated_bytes, 2560u);
  for (void* p : {a, b, c}) f.alloc->free(p);
}

TEST(CachingAllocator, SegmentSizesFollowThePolicy) {
  struct Case {
    size_t request;
    size_t segment;
  };
  const Case cases[] = {
      {1, kSmallBuffer},
      {kMiB, kSmallBuffer},                       // the largest small request
      {kMiB + 1, kLargeBuffer},                   // the smallest large one
      {10 * kMiB - 512, kLargeBuffer},            // still shares a 20 MiB segment
      {10 * kMiB, 10 * kMiB},                     // own segment, already a 2 MiB multiple
      {11 * kMiB + 1, 12 * kMiB},                 // own segment, rounded up to 2 MiB
      {100 * kMiB + 512, 102 * kMiB},
  };
  for (const Case& c : cases) {
    Fixture f;
    void* p = f.alloc->allocate(c.request, kStream1);
    EXPECT_EQ(f.device->last_request, c.segment) << "request of " << c.request << " bytes";
    EXPECT_EQ(f.stats().reserved_bytes, c.segment);
    EXPECT_EQ(ember::memory::segment_size_for(ember::memory::round_size(c.request)), c.segment);
    f.alloc->free(p);
  }
}

TEST(CachingAllocator, SmallAndLargePoolsDoNotMix) {
  Fixture f;
  void* big = f.alloc->allocate(4 * kMiB, kStream1);
  f.alloc->free(big);  // 20 MiB free in the large pool
  void* small = f.alloc->allocate(1000, kStream1);
  EXPECT_EQ(f.device->allocate_calls, 2);
  EXPECT_EQ(f.device->last_request, kSmallBuffer);
  f.alloc->free(small);  // 2 MiB free in the small pool
  void* big2 = f.alloc->allocate(2 * kMiB, kStream1);
  EXPECT_EQ(big2, big);
  EXPECT_EQ(f.device->allocate_calls, 2);
  f.alloc->free(big2);
}

TEST(CachingAllocator, SmallBlocksAreSplitAndCoalesced) {
  Fixture f;
  void* a = f.alloc->allocate(512 * kKiB, kStream1);
  void* b = f.alloc->allocate(512 * kKiB, kStream1);
  void* c = f.alloc->allocate(512 * kKiB, kStream1);
  EXPECT_EQ(as_bytes(b), as_bytes(a) + 512 * kKiB);
  EXPECT_EQ(as_bytes(c), as_bytes(b) + 512 * kKiB);
  EXPECT_EQ(f.device->allocate_calls, 1);
  f.alloc->free(b);
  f.alloc->free(a);
  f.alloc->free(c);
  // Only a coalesced segment can hold two 1 MiB blocks.
  void* x = f.alloc->allocate(kMiB, kStream1);
  void* y = f.alloc->allocate(kMiB, kStream1);
  EXPECT_EQ(x, a);
  EXPECT_EQ(as_bytes(y), as_bytes(a) + kMiB);
  EXPECT_EQ(f.device->allocate_calls, 1);
  f.alloc->free(x);
  f.alloc->free(y);
}

TEST(CachingAllocator, LargeBlocksCoalesceIntoOneSegmentSizedBlockReusedWhole) {
  Fixture f;
  void* a = f.alloc->allocate(4 * kMiB, kStream1);
  void* b = f.alloc->allocate(4 * kMiB, kStream1);
  void* c = f.alloc->allocate(4 * kMiB, kStream1);
  EXPECT_EQ(f.device->allocate_calls, 1);
  EXPECT_EQ(f.device->last_request, kLargeBuffer);
  EXPECT_EQ(as_bytes(b), as_bytes(a) + 4 * kMiB);
  EXPECT_EQ(as_bytes(c), as_bytes(b) + 4 * kMiB);
  f.alloc->free(b);
  f.alloc->free(a);
  f.alloc->free(c);
  void* whole = f.alloc->allocate(kLargeBuffer, kStream1);
  EXPECT_EQ(whole, a);
  EXPECT_EQ(f.alloc->block_size(whole), kLargeBuffer);
  EXPECT_EQ(f.device->allocate_calls, 1);
  EXPECT_EQ(f.stats().cache_hits, 3);  // b, c and whole needed no new segment
  f.alloc->free(whole);
  f.alloc->empty_cache();
  EXPECT_EQ(f.device->released_sizes, std::vector<size_t>{kLargeBuffer});
}

TEST(CachingAllocator, LargeBlockIsNotSplitForASmallRemainder) {
  Fixture f;
  void* p = f.alloc->allocate(19 * kMiB + 512 * kKiB, kStream1);  // leaves 0.5 MiB
  EXPECT_EQ(f.alloc->block_size(p), kLargeBuffer);
  EXPECT_EQ(f.stats().allocated_bytes, kLargeBuffer);
  f.alloc->free(p);
  void* q = f.alloc->allocate(18 * kMiB, kStream1);  // leaves 2 MiB: split
  EXPECT_EQ(f.alloc->block_size(q), 18 * kMiB);
  f.alloc->free(q);
}

TEST(CachingAllocator, BestFitPicksTheSmallestFreeBlockThatFits) {
  Fixture f;
  void* big = f.alloc->allocate(8 * kKiB, kStream1);
  void* sep1 = f.alloc->allocate(512, kStream1);
  void* fit = f.alloc->allocate(4 * kKiB, kStream1);
  void* sep2 = f.alloc->allocate(512, kStream1);
  f.alloc->free(big);
  f.alloc->free(fit);
  void* p = f.alloc->allocate(3 * kKiB, kStream1);
  EXPECT_EQ(p, fit);
  EXPECT_EQ(f.alloc->block_size(p), 3 * kKiB);
  for (void* q : {p, sep1, sep2}) f.alloc->free(q);
}

TEST(CachingAllocator, BlockFreedOnOneStreamIsNotHandedToAnother) {
  Fixture f;
  void* p = f.alloc->allocate(1000, kStream1);
  f.alloc->free(p);
  void* q = f.alloc->allocate(1000, kStream2);
  EXPECT_NE(q, p);
  EXPECT_EQ(f.device->allocate_calls, 2);
  EXPECT_EQ(f.stats().cache_hits, 0);
  void* r = f.alloc->allocate(1000, kStream1);
  EXPECT_EQ(r, p);
  f.alloc->free(q);
  f.alloc->free(r);
}

TEST(CachingAllocator, RecordStreamDefersReuseUntilTheEventCompletes) {
  Fixture f;
  void* p = f.alloc->allocate(1000, kStream1);
  f.alloc->record_stream(p, kStream2);
  f.alloc->record_stream(p, kStream2);  // once per stream
  f.alloc->record_stream(p, kStream1);  // the allocation stream needs no event
  f.alloc->free(p);
  EXPECT_EQ(f.events->created, 1);
  EXPECT_EQ(f.stats().allocated_bytes, 0u);

  void* q = f.alloc->allocate(1000, kStream1);
  EXPECT_NE(q, p) << "reused while stream 2 may still use it";
  f.events->complete_all();
  void* r = f.alloc->allocate(1000, kStream1);
  EXPECT_EQ(r, p);
  EXPECT_EQ(f.events->destroyed, 1);
  EXPECT_EQ(f.device->allocate_calls, 1);
  f.alloc->free(q);
  f.alloc->free(r);
  EXPECT_EQ(f.events->created, 1) << "record_stream uses are cleared on free";
}

TEST(CachingAllocator, BlockUsedOnTwoStreamsWaitsForBothEvents) {
  Fixture f;
  void* p = f.alloc->allocate(1000, kStream1);
  f.alloc->record_stream(p, kStream2);
  f.alloc->record_stream(p, kStream3);
  f.alloc->free(p);
  ASSERT_EQ(f.events->created, 2);
  f.events->complete[1] = true;
  void* q = f.alloc->allocate(1000, kStream1);
  EXPECT_NE(q, p);
  f.events->complete[2] = true;
  void* r = f.alloc->allocate(1000, kStream1);
  EXPECT_EQ(r, p);
  f.alloc->free(q);
  f.alloc->free(r);
}

TEST(CachingAllocator, StatsAreExact) {
  Fixture f;
  void* a = f.alloc->allocate(1000, kStream1);  // 1024 of a 2 MiB segment
  AllocatorStats s = f.stats();
  EXPECT_EQ(s.allocated_bytes, 1024u);
  EXPECT_EQ(s.reserved_bytes, kSmallBuffer);
  EXPECT_EQ(s.segments, 1);
  EXPECT_EQ(s.device_allocs, 1);

  void* b = f.alloc->allocate(3 * kMiB, kStream1);  // of a 20 MiB segment
  s = f.stats();
  EXPECT_EQ(s.allocated_bytes, 1024 + 3 * kMiB);
  EXPECT_EQ(s.reserved_bytes, kSmallBuffer + kLargeBuffer);
  EXPECT_EQ(s.peak_allocated_bytes, 1024 + 3 * kMiB);
  EXPECT_EQ(s.peak_reserved_bytes, kSmallBuffer + kLargeBuffer);
  EXPECT_EQ(s.segments, 2);
  EXPECT_EQ(s.device_allocs, 2);
  EXPECT_EQ(s.num_allocs, 2);
  EXPECT_EQ(s.cache_hits, 0);

  f.alloc->free(a);
  f.alloc->free(b);
  void* c = f.alloc->allocate(2 * kMiB, kStream1);  // from the cached large segment
  s = f.stats();
  EXPECT_EQ(s.allocated_bytes, 2 * kMiB);
  EXPECT_EQ(s.peak_allocated_bytes, 1024 + 3 * kMiB);
  EXPECT_EQ(s.num_allocs, 3);
  EXPECT_EQ(s.cache_hits, 1);
  EXPECT_EQ(s.device_allocs, 2);
  EXPECT_EQ(s.device_frees, 0);

  f.alloc->reset_peak_stats();
  s = f.stats();
  EXPECT_EQ(s.peak_allocated_bytes, 2 * kMiB);
  EXPECT_EQ(s.peak_reserved_bytes, kSmallBuffer + kLargeBuffer);

  f.alloc->free(c);
  f.alloc->empty_cache();
  s = f.stats();
  EXPECT_EQ(s.allocated_bytes, 0u);
  EXPECT_EQ(s.reserved_bytes, 0u);
  EXPECT_EQ(s.segments, 0);
  EXPECT_EQ(s.device_frees, 2);
  EXPECT_EQ(s.peak_reserved_bytes, kSmallBuffer + kLargeBuffer);
  EXPECT_EQ(s.oom_retries, 0);
  EXPECT_EQ(s.ooms, 0);
}

TEST(CachingAllocator, EmptyCacheReleasesOnlyWhollyFreeSegments) {
  Fixture f;
  void* live = f.alloc->allocate(1000, kStream1);       // keeps its small segment
  void* dead = f.alloc->allocate(4 * kMiB, kStream1);   // its large segment goes
  f.alloc->free(dead);
  f.alloc->empty_cache();
  EXPECT_EQ(f.device->released_sizes, std::vector<size_t>{kLargeBuffer});
  EXPECT_EQ(f.stats().reserved_bytes, kSmallBuffer);
  EXPECT_EQ(f.stats().segments, 1);
  EXPECT_EQ(f.alloc->block_size(live), 1024u);
  f.alloc->free(live);
  f.alloc->empty_cache();
  EXPECT_EQ(f.device->release_calls, 2);
  EXPECT_TRUE(f.device->live.empty());
}

TEST(CachingAllocator, EmptyCacheKeepsBlocksWhoseEventsAreStillPending) {
  Fixture f;
  f.events->synchronize_completes = false;
  void* p = f.alloc->allocate(1000, kStream1);
  f.alloc->record_stream(p, kStream2);
  f.alloc->free(p);
  f.alloc->empty_cache();
  EXPECT_EQ(f.device->release_calls, 0);
  f.events->complete_all();
  f.alloc->empty_cache();
  EXPECT_EQ(f.device->release_calls, 1);
  EXPECT_EQ(f.events->destroyed, 1);
}

TEST(CachingAllocator, OutOfMemoryReleasesTheCacheAndRetries) {
  Fixture f(/*capacity=*/kLargeBuffer);
  void* big = f.alloc->allocate(4 * kMiB, kStream1);
  f.alloc->free(big);  // the whole capacity is now cached in the large pool
  void* small = f.alloc->allocate(1000, kStream1);
  ASSERT_NE(small, nullptr);
  AllocatorStats s = f.stats();
  EXPECT_EQ(s.oom_retries, 1);
  EXPECT_EQ(s.ooms, 0);
  EXPECT_EQ(s.device_frees, 1);
  EXPECT_EQ(s.reserved_bytes, kSmallBuffer);
  EXPECT_EQ(f.device->failed_allocates, 1);
  f.alloc->free(small);
}

TEST(CachingAllocator, OutOfMemoryWaitsForPendingEventsBeforeReleasing) {
  Fixture f(/*capacity=*/kSmallBuffer);
  void* p = f.alloc->allocate(1000, kStream1);
  f.alloc->record_stream(p, kStream2);
  f.alloc->free(p);  // held back by an event nobody completed
  void* q = f.alloc->allocate(1000, kStream3);  // needs the only segment's memory
  ASSERT_NE(q, nullptr);
  EXPECT_EQ(f.events->synchronized, 1);
  EXPECT_EQ(f.events->destroyed, 1);
  EXPECT_EQ(f.device->release_calls, 1);
  EXPECT_EQ(f.stats().segments, 1);
  f.alloc->free(q);
}

TEST(CachingAllocator, OutOfMemoryAfterRetryThrowsWithTheFigures) {
  Fixture f(/*capacity=*/kLargeBuffer);
  void* live = f.alloc->allocate(4 * kMiB, kStream1);
  try {
    f.alloc->allocate(30 * kMiB, kStream1);
    FAIL() << "expected OutOfMemoryError";
  } catch (const ember::OutOfMemoryError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("CUDA out of memory. Tried to allocate 30.00 MiB."), std::string::npos)
        << msg;
    EXPECT_NE(msg.find("GPU 0 has a total capacity of 20.00 MiB of which 0 B is free."),
              std::string::npos)
        << msg;
    EXPECT_NE(msg.find("4.00 MiB is allocated by ember"), std::string::npos) << msg;
    EXPECT_NE(msg.find("16.00 MiB is reserved by ember but unallocated"), std::string::npos)
        << msg;
    EXPECT_NE(msg.find("batch size"), std::string::npos) << msg;
    EXPECT_NE(msg.find("ember::cuda::empty_cache()"), std::string::npos) << msg;
    EXPECT_NE(msg.find("EMBER_CUDA_ALLOC=async"), std::string::npos) << msg;
  }
  AllocatorStats s = f.stats();
  EXPECT_EQ(s.ooms, 1);
  EXPECT_EQ(s.oom_retries, 1);
  EXPECT_EQ(s.allocated_bytes, 4 * kMiB);
  // Still usable: the rest of the segment serves a fitting request.
  void* more = f.alloc->allocate(4 * kMiB, kStream1);
  EXPECT_NE(more, nullptr);
  f.alloc->free(more);
  f.alloc->free(live);
}

TEST(CachingAllocator, OutOfMemoryMessageOmitsCapacityWhenUnknown) {
  Fixture f(/*capacity=*/0);
  f.device->has_info = false;
  try {
    f.alloc->allocate(1700 * kMiB, kStream1);
    FAIL() << "expected OutOfMemoryError";
  } catch (const ember::OutOfMemoryError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("Tried to allocate 1.66 GiB on GPU 0."), std::string::npos) << msg;
    EXPECT_EQ(msg.find("total capacity"), std::string::npos) << msg;
    EXPECT_NE(msg.find("0 B is allocated by ember"), std::string::npos) << msg;
  }
}

TEST(CachingAllocator, AbsurdRequestIsOutOfMemoryNotOverflow) {
  Fixture f;
  EXPECT_THROW(f.alloc->allocate(SIZE_MAX, kStream1), ember::OutOfMemoryError);
  EXPECT_THROW(f.alloc->allocate(SIZE_MAX - 100, kStream1), ember::OutOfMemoryError);
  EXPECT_EQ(f.device->allocate_calls, 0);
}

TEST(CachingAllocator, FormatSizeUsesBinaryUnitsWithTwoDecimals) {
  using ember::memory::format_size;
  EXPECT_EQ(format_size(0), "0 B");
  EXPECT_EQ(format_size(1023), "1023 B");
  EXPECT_EQ(format_size(1536), "1.50 KiB");
  EXPECT_EQ(format_size(12 * kMiB), "12.00 MiB");
  EXPECT_EQ(format_size(static_cast<size_t>(1.7 * 1024 * kMiB)), "1.70 GiB");
}

TEST(CachingAllocator, SteadyStateLoopPerformsNoNewDeviceAllocations) {
  Fixture f;
  const std::vector<size_t> sizes = {1000, 70000, 3 * kMiB, 12 * kMiB, 512, 300 * kKiB, 5 * kMiB};
  auto step = [&](int iter) {
    std::vector<void*> ptrs;
    for (size_t s : sizes) ptrs.push_back(f.alloc->allocate(s, kStream1));
    // Free in an order that changes with the iteration, like a real backward pass.
    if (iter % 2 == 1) std::reverse(ptrs.begin(), ptrs.end());
    if (iter % 3 == 2) std::rotate(ptrs.begin(), ptrs.begin() + 3, ptrs.end());
    for (void* p : ptrs) f.alloc->free(p);
  };
  step(0);  // one warm-up iteration is all it takes
  const AllocatorStats warm = f.stats();
  for (int i = 1; i <= 200; ++i) step(i);
  const AllocatorStats s = f.stats();
  EXPECT_EQ(s.device_allocs, warm.device_allocs);
  EXPECT_EQ(s.device_frees, 0);
  EXPECT_EQ(s.reserved_bytes, warm.reserved_bytes);
  EXPECT_EQ(s.cache_hits - warm.cache_hits, static_cast<int64_t>(200 * sizes.size()));
  EXPECT_EQ(s.allocated_bytes, 0u);
}

TEST(CachingAllocator, FreeOfUnknownPointerThrows) {
  Fixture f;
  void* bogus = reinterpret_cast<void*>(uintptr_t{0x1234});
  try {
    f.alloc->free(bogus);
    FAIL() << "expected ember::Error";
  } catch (const ember::OutOfMemoryError&) {
    FAIL() << "not an out-of-memory condition";
  } catch (const ember::Error& e) {
    EXPECT_NE(std::string(e.what()).find("0x1234"), std::string::npos) << e.what();
  }
  void* p = f.alloc->allocate(1000, kStream1);
  f.alloc->free(p);
  EXPECT_THROW(f.alloc->free(p), ember::Error) << "double free";
  EXPECT_THROW(f.alloc->record_stream(bogus, kStream2), ember::Error);
  EXPECT_THROW(f.alloc->block_size(bogus), ember::Error);
}

TEST(CachingAllocator, ZeroBytesGiveNullAndFreeOfNullIsANoOp) {
  Fixture f;
  EXPECT_EQ(f.alloc->allocate(0, kStream1), nullptr);
  EXPECT_NO_THROW(f.alloc->free(nullptr));
  EXPECT_EQ(f.stats().num_allocs, 0);
  EXPECT_EQ(f.device->allocate_calls, 0);
}

TEST(CachingAllocator, DestructorReleasesEverySegmentAndEvent) {
  Fixture f;
  void* live = f.alloc->allocate(5 * kMiB, kStream1);
  void* pending = f.alloc->allocate(1000, kStream2);
  void* cached = f.alloc->allocate(16 * kMiB, kStream1);  // too big for the first's rest
  (void)live;
  f.alloc->record_stream(pending, kStream3);
  f.alloc->free(pending);
  f.alloc->free(cached);
  EXPECT_EQ(f.device->live.size(), 3u);
  f.alloc.reset();
  EXPECT_TRUE(f.device->live.empty());
  EXPECT_EQ(f.events->destroyed, f.events->created);
}

TEST(CachingAllocator, ConcurrentAllocAndFreeFromTwoThreads) {
  Fixture f(/*capacity=*/size_t{1} << 40, /*real_memory=*/true);
  constexpr int kIters = 10000;
  auto worker = [&](int tid, void* stream) {
    std::mt19937 rng(tid);
    std::uniform_int_distribution<size_t> size_dist(1, 3 * kMiB);
    struct Live {
      uint64_t* p;
      size_t n;
      uint64_t tag;
    };
    std::vector<Live> live;
    // Another live block overlapping this one would have overwritten its tags.
    auto check_and_free = [&](size_t k) {
      const Live b = live[k];
      EXPECT_EQ(b.p[0], b.tag);
      EXPECT_EQ(b.p[b.n / 8 - 1], b.tag);
      f.alloc->free(b.p);
      live.erase(live.begin() + static_cast<std::ptrdiff_t>(k));
    };
    for (int i = 0; i < kIters; ++i) {
      const size_t n = std::max<size_t>(size_dist(rng) / 64, 1) * 8;  // >= 8 bytes
      auto* p = static_cast<uint64_t*>(f.alloc->allocate(n, stream));
      const uint64_t tag = (uint64_t(tid) << 32) | uint64_t(i);
      p[0] = tag;
      p[n / 8 - 1] = tag;
      live.push_back({p, n, tag});
      if (live.size() > 8 || (rng() & 1)) check_and_free(rng() % live.size());
    }
    while (!live.empty()) check_and_free(live.size() - 1);
  };
  std::thread t1(worker, 1, kStream1);
  std::thread t2(worker, 2, kStream2);
  t1.join();
  t2.join();
  const AllocatorStats s = f.stats();
  EXPECT_EQ(s.num_allocs, 2 * kIters);
  EXPECT_EQ(s.allocated_bytes, 0u);
  EXPECT_GT(s.cache_hits, 0);
}

// --- memory limits (Note [Memory limits]) -------------------------------------------------

TEST(CachingAllocatorLimit, NewSegmentOverTheLimitThrowsWithTheFiguresAndTheNextFitSucceeds) {
  Fixture f;  // a device far larger than the limit: only the limit can refuse
  f.alloc->set_memory_limit(40 * kMiB);
  EXPECT_EQ(f.alloc->memory_limit(), 40 * kMiB);
  void* live = f.alloc->allocate(30 * kMiB, kStream1);
  try {
    f.alloc->allocate(12 * kMiB, kStream1);
    FAIL() << "expected OutOfMemoryError";
  } catch (const ember::OutOfMemoryError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("CUDA out of memory. Tried to allocate 12.00 MiB on GPU 0, over the "
                       "memory limit of 40.00 MiB"),
              std::string::npos)
        << msg;
    EXPECT_NE(msg.find("In use: 30.00 MiB; cached (reserved by ember but unallocated): 0 B; "
                       "limit: 40.00 MiB."),
              std::string::npos)
        << msg;
    EXPECT_NE(msg.find("EMBER_CUDA_MEMORY_FRACTION"), std::string::npos) << msg;
  }
  AllocatorStats s = f.stats();
  EXPECT_EQ(s.ooms, 1);
  EXPECT_EQ(s.oom_retries, 1);
  EXPECT_EQ(s.reserved_bytes, 30 * kMiB);
  EXPECT_EQ(f.device->failed_allocates, 0);  // the device was never asked
  // 8 MiB would take a 20 MiB segment by the policy; under the limit it takes 8 MiB.
  void* fits = f.alloc->allocate(8 * kMiB, kStream1);
  ASSERT_NE(fits, nullptr);
  EXPECT_EQ(f.device->last_request, 8 * kMiB);
  EXPECT_EQ(f.stats().reserved_bytes, 38 * kMiB);
  f.alloc->free(fits);
  f.alloc->free(live);
}

TEST(CachingAllocatorLimit, CachedSegmentsAreReleasedBeforeGivingUp) {
  Fixture f;
  f.alloc->set_memory_limit(40 * kMiB);
  f.alloc->free(f.alloc->allocate(30 * kMiB, kStream1));  // 30 MiB cached
  // Another stream cannot take that block: a new segment, which fits once the cache is gone.
  void* p = f.alloc->allocate(20 * kMiB, kStream2);
  ASSERT_NE(p, nullptr);
  const AllocatorStats s = f.stats();
  EXPECT_EQ(s.ooms, 0);
  EXPECT_EQ(s.oom_retries, 1);
  EXPECT_EQ(s.device_frees, 1);
  EXPECT_EQ(s.reserved_bytes, 20 * kMiB);
  f.alloc->free(p);
}

TEST(CachingAllocatorLimit, CachedMemoryShowsInTheError) {
  Fixture f;
  f.alloc->set_memory_limit(24 * kMiB);
  void* a = f.alloc->allocate(3 * kMiB, kStream1);  // a 20 MiB segment: 17 MiB cached in it
  try {
    f.alloc->allocate(18 * kMiB, kStream1);  // no free block fits; 20 + 18 > 24
    FAIL() << "expected OutOfMemoryError";
  } catch (const ember::OutOfMemoryError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("In use: 3.00 MiB; cached (reserved by ember but unallocated): "
                       "17.00 MiB; limit: 24.00 MiB."),
              std::string::npos)
        << msg;
  }
  f.alloc->free(a);
}

TEST(CachingAllocatorLimit, FractionOfTheDeviceSize) {
  Fixture f(/*capacity=*/100 * kMiB);
  EXPECT_EQ(f.alloc->set_memory_fraction(0.5), 50 * kMiB);
  EXPECT_EQ(f.alloc->memory_limit(), 50 * kMiB);
  void* a = f.alloc->allocate(40 * kMiB, kStream1);
  try {
    f.alloc->allocate(12 * kMiB, kStream1);
    FAIL() << "expected OutOfMemoryError";
  } catch (const ember::OutOfMemoryError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("over the memory limit of 50.00 MiB"), std::string::npos) << msg;
    EXPECT_NE(msg.find("GPU 0 has a total capacity of 100.00 MiB of which 60.00 MiB is free."),
              std::string::npos)
        << msg;
  }
  // Removing the limit lets the device decide again.
  f.alloc->set_memory_limit(0);
  void* b = f.alloc->allocate(12 * kMiB, kStream1);
  EXPECT_NE(b, nullptr);
  f.alloc->free(b);
  f.alloc->free(a);
}

TEST(CachingAllocatorLimit, BadFractionsAndUnknownTotalsAreErrors) {
  Fixture f(/*capacity=*/100 * kMiB);
  for (const double bad : {0.0, -0.5, 1.5, std::nan("")}) {
    EXPECT_THROW(f.alloc->set_memory_fraction(bad), ember::Error) << bad;
  }
  EXPECT_EQ(f.alloc->memory_limit(), 0u);
  f.device->has_info = false;
  EXPECT_THROW(f.alloc->set_memory_fraction(0.5), ember::Error);
}

TEST(CachingAllocatorLimit, AbsurdRequestUnderALimitNamesTheLimit) {
  Fixture f;
  f.alloc->set_memory_limit(kLargeBuffer);
  try {
    f.alloc->allocate(SIZE_MAX, kStream1);
    FAIL() << "expected OutOfMemoryError";
  } catch (const ember::OutOfMemoryError& e) {
    EXPECT_NE(std::string(e.what()).find("over the memory limit of 20.00 MiB"),
              std::string::npos)
        << e.what();
  }
}

TEST(MemorySize, ParsesBytesAndUnits) {
  using ember::memory::parse_memory_size;
  const size_t kGiB = 1024 * kMiB;
  EXPECT_EQ(parse_memory_size("4096", "X"), 4096u);
  EXPECT_EQ(parse_memory_size("8GiB", "X"), 8 * kGiB);
  EXPECT_EQ(parse_memory_size("8G", "X"), 8 * kGiB);
  EXPECT_EQ(parse_memory_size("8gib", "X"), 8 * kGiB);
  EXPECT_EQ(parse_memory_size(" 1.5 GiB ", "X"), 3 * kGiB / 2);
  EXPECT_EQ(parse_memory_size("512MiB", "X"), 512 * kMiB);
  EXPECT_EQ(parse_memory_size("512M", "X"), 512 * kMiB);
  EXPECT_EQ(parse_memory_size("2K", "X"), 2048u);
  EXPECT_EQ(parse_memory_size("2KiB", "X"), 2048u);
  EXPECT_EQ(parse_memory_size("10KB", "X"), 10000u);
  EXPECT_EQ(parse_memory_size("3GB", "X"), 3000000000u);
  EXPECT_EQ(parse_memory_size("100B", "X"), 100u);
  EXPECT_EQ(parse_memory_size("1TiB", "X"), 1024 * kGiB);
}

TEST(MemorySize, BadValuesNameTheVariable) {
  using ember::memory::parse_memory_size;
  for (const char* bad : {"", "lots", "8XB", "-1", "0", "0.1B", "1e3", "GiB", "8 Gi B",
                          "99999999999TiB"}) {
    try {
      parse_memory_size(bad, "EMBER_CPU_MEMORY_LIMIT");
      ADD_FAILURE() << "accepted \"" << bad << "\"";
    } catch (const ember::Error& e) {
      const std::string msg = e.what();
      EXPECT_NE(msg.find(std::string("EMBER_CPU_MEMORY_LIMIT=\"") + bad + "\""),
                std::string::npos)
          << msg;
    }
  }
}

TEST(MemorySize, FractionsAreInZeroToOne) {
  using ember::memory::parse_memory_fraction;
  EXPECT_EQ(parse_memory_fraction("0.5", "F"), 0.5);
  EXPECT_EQ(parse_memory_fraction("1", "F"), 1.0);
  EXPECT_EQ(parse_memory_fraction(" .25 ", "F"), 0.25);
  for (const char* bad : {"", "0", "1.5", "half", "0.5GiB", "-0.5"}) {
    try {
      parse_memory_fraction(bad, "EMBER_CUDA_MEMORY_FRACTION");
      ADD_FAILURE() << "accepted \"" << bad << "\"";
    } catch (const ember::Error& e) {
      EXPECT_NE(std::string(e.what()).find("EMBER_CUDA_MEMORY_FRACTION=\""), std::string::npos)
          << e.what();
    }
  }
}

}  // namespace
