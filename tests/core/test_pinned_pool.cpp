// PinnedPool's bins, reuse, fallback and stats against a fake source; and the global
// pool on this machine (page-locked with a GPU, the malloc fallback without one).
#include "ember/core/memory/pinned_pool.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <thread>
#include <vector>

#include "ember/core/base/error.h"
#include "ember/core/device.h"

namespace {

using ember::memory::PinnedPool;
using ember::memory::PinnedStats;

struct FakeHost {
  bool can_lock = true;  // false: like a machine without a driver
  int64_t allocate_calls = 0;
  int64_t release_calls = 0;
  std::vector<size_t> requests;
  std::map<void*, size_t> live;
};

class FakePinnedSource : public ember::memory::PinnedSource {
 public:
  explicit FakePinnedSource(std::shared_ptr<FakeHost> h) : h_(std::move(h)) {}
  void* allocate(size_t bytes) override {
    ++h_->allocate_calls;
    h_->requests.push_back(bytes);
    if (!h_->can_lock) return nullptr;
    void* p = std::malloc(bytes);
    h_->live[p] = bytes;
    return p;
  }
  void release(void* ptr, size_t bytes) override {
    ++h_->release_calls;
    auto it = h_->live.find(ptr);
    if (it == h_->live.end() || it->second != bytes) {
      ADD_FAILURE() << "release of " << ptr << " (" << bytes << " bytes) it never handed out";
      return;
    }
    h_->live.erase(it);
    std::free(ptr);
  }

 private:
  std::shared_ptr<FakeHost> h_;
};

struct Fixture {
  std::shared_ptr<FakeHost> host = std::make_shared<FakeHost>();
  std::unique_ptr<PinnedPool> pool;
  explicit Fixture(bool can_lock = true) {
    host->can_lock = can_lock;
    pool = std::make_unique<PinnedPool>(std::make_unique<FakePinnedSource>(host));
  }
};

TEST(PinnedPool, FreedBlockIsReusedForAnyRequestOfItsBin) {
  Fixture f;
  void* p = f.pool->allocate(1000);
  ASSERT_NE(p, nullptr);
  f.pool->free(p);
  void* q = f.pool->allocate(700);
  EXPECT_EQ(q, p);
  EXPECT_EQ(f.host->allocate_calls, 1);
  const PinnedStats s = f.pool->stats();
  EXPECT_EQ(s.host_allocs, 1);
  EXPECT_EQ(s.cache_hits, 1);
  EXPECT_EQ(s.num_allocs, 2);
  f.pool->free(q);
}

TEST(PinnedPool, SizesRoundUpToPowersOfTwo) {
  Fixture f;
  void* a = f.pool->allocate(1);
  void* b = f.pool->allocate(513);
  void* c = f.pool->allocate((size_t{1} << 20) + 1);
  EXPECT_EQ(f.pool->block_size(a), 512u);
  EXPECT_EQ(f.pool->block_size(b), 1024u);
  EXPECT_EQ(f.pool->block_size(c), size_t{2} << 20);
  EXPECT_EQ(f.host->requests, (std::vector<size_t>{512, 1024, size_t{2} << 20}));
  for (void* p : {a, b, c}) f.pool->free(p);
}

TEST(PinnedPool, OtherBinsAreNotUsed) {
  Fixture f;
  void* small = f.pool->allocate(1024);
  f.pool->free(small);
  void* big = f.pool->allocate(3000);
  EXPECT_NE(big, small);
  EXPECT_EQ(f.pool->block_size(big), 4096u);
  EXPECT_EQ(f.host->allocate_calls, 2);
  f.pool->free(big);
}

TEST(PinnedPool, BlocksFromTheSourceArePageLocked) {
  Fixture f;
  void* p = f.pool->allocate(4096);
  EXPECT_TRUE(f.pool->is_page_locked(p));
  EXPECT_EQ(f.pool->stats().unpinned_allocs, 0);
  f.pool->free(p);
}

TEST(PinnedPool, FallsBackToOrdinaryMemoryMarkedNotPageLocked) {
  Fixture f(/*can_lock=*/false);
  auto* p = static_cast<unsigned char*>(f.pool->allocate(10000));
  ASSERT_NE(p, nullptr);
  std::memset(p, 0xab, 10000);  // really usable memory
  EXPECT_FALSE(f.pool->is_page_locked(p));
  EXPECT_EQ(reinterpret_cast<uintptr_t>(p) % 64, 0u);
  const PinnedStats s = f.pool->stats();
  EXPECT_EQ(s.host_allocs, 1);
  EXPECT_EQ(s.unpinned_allocs, 1);
  f.pool->free(p);
  void* q = f.pool->allocate(9000);
  EXPECT_EQ(q, p);
  f.pool->free(q);
  f.pool->empty_cache();
  EXPECT_EQ(f.host->release_calls, 0) << "malloc'ed blocks are not the source's to release";
  EXPECT_EQ(f.pool->stats().host_frees, 1);
}

TEST(PinnedPool, StatsAreExact) {
  Fixture f;
  void* a = f.pool->allocate(1000);  // 1024
  void* b = f.pool->allocate(5000);  // 8192
  PinnedStats s = f.pool->stats();
  EXPECT_EQ(s.allocated_bytes, 1024u + 8192u);
  EXPECT_EQ(s.peak_allocated_bytes, 1024u + 8192u);
  EXPECT_EQ(s.cached_bytes, 0u);
  f.pool->free(b);
  s = f.pool->stats();
  EXPECT_EQ(s.allocated_bytes, 1024u);
  EXPECT_EQ(s.cached_bytes, 8192u);
  EXPECT_EQ(s.peak_allocated_bytes, 1024u + 8192u);
  f.pool->free(a);
  f.pool->empty_cache();
  s = f.pool->stats();
  EXPECT_EQ(s.allocated_bytes, 0u);
  EXPECT_EQ(s.cached_bytes, 0u);
  EXPECT_EQ(s.host_allocs, 2);
  EXPECT_EQ(s.host_frees, 2);
  EXPECT_TRUE(f.host->live.empty());
}

TEST(PinnedPool, EmptyCacheKeepsLiveBlocks) {
  Fixture f;
  void* live = f.pool->allocate(1000);
  void* dead = f.pool->allocate(1000);
  f.pool->free(dead);
  f.pool->empty_cache();
  EXPECT_EQ(f.host->release_calls, 1);
  EXPECT_EQ(f.host->live.count(live), 1u);
  EXPECT_EQ(f.pool->block_size(live), 1024u);
  f.pool->free(live);
}

TEST(PinnedPool, FreeOfUnknownOrFreedPointerThrows) {
  Fixture f;
  int local = 0;
  EXPECT_THROW(f.pool->free(&local), ember::Error);
  EXPECT_THROW(f.pool->is_page_locked(&local), ember::Error);
  void* p = f.pool->allocate(100);
  f.pool->free(p);
  EXPECT_THROW(f.pool->free(p), ember::Error);
}

TEST(PinnedPool, ZeroBytesGiveNullAndFreeOfNullIsANoOp) {
  Fixture f;
  EXPECT_EQ(f.pool->allocate(0), nullptr);
  EXPECT_NO_THROW(f.pool->free(nullptr));
  EXPECT_EQ(f.host->allocate_calls, 0);
}

TEST(PinnedPool, AbsurdRequestIsOutOfMemory) {
  Fixture f;
  EXPECT_THROW(f.pool->allocate(SIZE_MAX), ember::OutOfMemoryError);
}

TEST(PinnedPool, DestructorReleasesEverything) {
  Fixture f;
  void* live = f.pool->allocate(1000);
  void* cached = f.pool->allocate(100000);
  (void)live;
  f.pool->free(cached);
  f.pool.reset();
  EXPECT_TRUE(f.host->live.empty());
  EXPECT_EQ(f.host->release_calls, 2);
}

TEST(PinnedPool, ConcurrentAllocAndFree) {
  Fixture f;
  auto worker = [&](int tid) {
    std::vector<void*> live;
    for (int i = 0; i < 5000; ++i) {
      const size_t n = 64 + static_cast<size_t>((i * 7919 + tid * 104729) % 70000);
      auto* p = static_cast<uint32_t*>(f.pool->allocate(n));
      p[0] = static_cast<uint32_t>(i);
      live.push_back(p);
      if (live.size() > 4) {
        f.pool->free(live.front());
        live.erase(live.begin());
      }
    }
    for (void* p : live) f.pool->free(p);
  };
  std::thread t1(worker, 1), t2(worker, 2);
  t1.join();
  t2.join();
  const PinnedStats s = f.pool->stats();
  EXPECT_EQ(s.num_allocs, 10000);
  EXPECT_EQ(s.allocated_bytes, 0u);
}

TEST(PinnedPool, GlobalPoolWorksWithOrWithoutAGpu) {
  auto* p = static_cast<unsigned char*>(ember::memory::pinned_alloc(1 << 16));
  ASSERT_NE(p, nullptr);
  std::memset(p, 7, 1 << 16);
  EXPECT_EQ(ember::memory::pinned_is_page_locked(p), ember::cuda::is_available());
  ember::memory::pinned_free(p);
  EXPECT_EQ(ember::memory::pinned_alloc(1 << 16), p);  // cached
  ember::memory::pinned_free(p);
  EXPECT_GE(ember::memory::pinned_stats().cache_hits, 1);
  ember::memory::pinned_empty_cache();
  EXPECT_EQ(ember::memory::pinned_stats().cached_bytes, 0u);
}

}  // namespace
