// kernels::LruCache, the bound on the cuDNN plan caches (Note [Bounded plan caches]):
// least recently used entries go first, a lookup refreshes an entry, and a value a caller
// still holds outlives its eviction.
#include <gtest/gtest.h>

#include <memory>
#include <string>

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

}  // namespace
}  // namespace ember::kernels
