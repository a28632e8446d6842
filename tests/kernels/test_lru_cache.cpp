// kernels::LruCache, the bound on the cuDNN plan caches (Note [Bounded plan caches]):
// least recently used entries go first, a lookup refreshes an entry, and a value a caller
// still holds outlives its eviction.
#include <gtest/gtest.h>

#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "ember/kernels/lru_cache.h"

namespace ember::kernels {
namespace {

TEST(LruCache, KeepsTheMostRecentlyUsedUpToItsCapacity) {
  LruCache<int, std::string> cache(3);
  for (int k = 0; k < 3; ++k) cache.insert(k, std::make_shared<std::string>(std::to_string(k)));
  ASSERT_NE(cache.find(0), nullptr);  // 0 is now the most recent; 1 the least
  cache.insert(3, std::make_shared<std::string>("3"));
  EXPECT_EQ(cache.size(), 3u);
  EXPECT_EQ(cache.evictions(), 1u);
  EXPECT_EQ(cache.find(1), nullptr);
  EXPECT_EQ(*cache.find(0), "0");
  EXPECT_EQ(*cache.find(2), "2");
  EXPECT_EQ(*cache.find(3), "3");
}

TEST(LruCache, ManyDistinctKeysStayBounded) {
  LruCache<int, int> cache(16);
  for (int k = 0; k < 10000; ++k) cache.insert(k, std::make_shared<int>(k));
  EXPECT_EQ(cache.size(), 16u);
  EXPECT_EQ(cache.evictions(), 10000u - 16u);
  for (int k = 10000 - 16; k < 10000; ++k) EXPECT_EQ(*cache.find(k), k);
}

TEST(LruCache, ReplacingAKeyKeepsOneEntry) {
  LruCache<int, int> cache(2);
  cache.insert(7, std::make_shared<int>(1));
  cache.insert(7, std::make_shared<int>(2));
  EXPECT_EQ(cache.size(), 1u);
  EXPECT_EQ(*cache.find(7), 2);
  cache.erase(7);
  EXPECT_EQ(cache.find(7), nullptr);
  EXPECT_EQ(cache.size(), 0u);
}

TEST(LruCache, AnEvictedValueLivesWhileACallerHoldsIt) {
  LruCache<int, int> cache(1);
  std::shared_ptr<int> held = cache.insert(1, std::make_shared<int>(41));
  std::weak_ptr<int> watch = held;
  cache.insert(2, std::make_shared<int>(42));  // evicts 1
  EXPECT_EQ(cache.find(1), nullptr);
  ASSERT_FALSE(watch.expired());
  EXPECT_EQ(*held, 41);
  held.reset();
  EXPECT_TRUE(watch.expired());
}

// The plan caches' pattern (kernels/cudnn/conv.cpp): one mutex around every call, values
// used after it is released while other threads evict them. Run under ThreadSanitizer by
// scripts/sanitize.sh, so the pattern itself is checked without a GPU.
TEST(LruCache, ThreadsUseValuesOthersEvictUnderOneMutex) {
  LruCache<int, std::vector<int>> cache(4);
  std::mutex mutex;
  const auto lookup = [&](int key) {
    std::lock_guard<std::mutex> lock(mutex);
    if (auto v = cache.find(key)) return v;
    return cache.insert(key, std::make_shared<std::vector<int>>(64, key));
  };
  std::vector<std::thread> threads;
  std::vector<long> sums(4, 0);
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 2000; ++i) {
        const std::shared_ptr<std::vector<int>> v = lookup((i * (t + 1)) % 16);
        for (const int x : *v) sums[t] += x;  // outside the lock, as a plan is run
      }
    });
  }
  for (std::thread& th : threads) th.join();
  for (int t = 0; t < 4; ++t) {
    long expected = 0;
    for (int i = 0; i < 2000; ++i) expected += 64L * ((i * (t + 1)) % 16);
    EXPECT_EQ(sums[t], expected) << "thread " << t;
  }
  EXPECT_LE(cache.size(), 4u);
}

}  // namespace
}  // namespace ember::kernels
