// DistributedSampler: disjoint shards covering the dataset (padded or cut), per-epoch
// reshuffles from a shared seed, and the DataLoader reading one rank's shard through it.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <memory>
#include <set>
#include <vector>

#include "ember/core/base/error.h"
#include "ember/core/tensor.h"
#include "ember/python_free_api/data/dataloader.h"
#include "ember/python_free_api/data/dataset.h"
#include "ember/python_free_api/data/sampler.h"

namespace {

using namespace ember;
using namespace ember::data;

DistributedSampler sampler(int64_t n, int64_t world, int64_t rank, bool shuffle = true,
                           uint64_t seed = 7, bool drop_last = false) {
  return DistributedSampler(n, {.num_replicas = world,
                                .rank = rank,
                                .shuffle = shuffle,
                                .seed = seed,
                                .drop_last = drop_last});
}

// Every rank's indices for `epoch`.
std::vector<std::vector<int64_t>> shards(int64_t n, int64_t world, int64_t epoch,
                                         bool shuffle = true, uint64_t seed = 7,
                                         bool drop_last = false) {
  std::vector<std::vector<int64_t>> out;
  for (int64_t r = 0; r < world; ++r) {
    out.push_back(sampler(n, world, r, shuffle, seed, drop_last).indices(epoch));
  }
  return out;
}

std::vector<int64_t> sorted_union(const std::vector<std::vector<int64_t>>& parts) {
  std::vector<int64_t> all;
  for (const auto& p : parts) all.insert(all.end(), p.begin(), p.end());
  std::sort(all.begin(), all.end());
  return all;
}

std::vector<int64_t> iota_vector(int64_t n) {
  std::vector<int64_t> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) v[static_cast<size_t>(i)] = i;
  return v;
}

}  // namespace

TEST(DistributedSampler, ShardsAreDisjointAndTogetherCoverTheDataset) {
  // 12 samples over 4 ranks: no padding, a partition.
  const auto parts = shards(12, 4, 0);
  for (const auto& p : parts) EXPECT_EQ(p.size(), 3u);
  EXPECT_EQ(sorted_union(parts), iota_vector(12));
}

TEST(DistributedSampler, PadsWithTheFirstIndicesOfTheEpochsOrder) {
  // 10 samples over 3 ranks: 4 each, the 2 extra entries repeating the order's first two.
  for (const bool shuffle : {false, true}) {
    const auto parts = shards(10, 3, 0, shuffle);
    for (const auto& p : parts) EXPECT_EQ(p.size(), 4u);
    const std::vector<int64_t> order = sampler(10, 1, 0, shuffle).indices(0);
    std::vector<int64_t> expected = iota_vector(10);
    expected.push_back(order[0]);
    expected.push_back(order[1]);
    std::sort(expected.begin(), expected.end());
    EXPECT_EQ(sorted_union(parts), expected) << "shuffle " << shuffle;
    // Without the padding (the last entry of ranks 1 and 2) the shards are disjoint.
    std::set<int64_t> seen;
    for (size_t r = 0; r < parts.size(); ++r) {
      const size_t real = r == 0 ? 4 : 3;
      for (size_t k = 0; k < real; ++k) EXPECT_TRUE(seen.insert(parts[r][k]).second);
    }
    EXPECT_EQ(seen.size(), 10u);
  }
  // In order, PyTorch's layout: rank r reads r, r + 3, ...
  EXPECT_EQ(shards(10, 3, 0, false),
            (std::vector<std::vector<int64_t>>{{0, 3, 6, 9}, {1, 4, 7, 0}, {2, 5, 8, 1}}));
  // More replicas than samples: the order repeats cyclically.
  EXPECT_EQ(shards(2, 5, 0, false),
            (std::vector<std::vector<int64_t>>{{0}, {1}, {0}, {1}, {0}}));
}

TEST(DistributedSampler, DropLastCutsTheTailInsteadOfPadding) {
  const auto parts = shards(10, 3, 0, true, 7, /*drop_last=*/true);
  EXPECT_EQ(sampler(10, 3, 0, true, 7, true).size(), 3);
  EXPECT_EQ(sampler(10, 3, 0, true, 7, true).total_size(), 9);
  const std::vector<int64_t> all = sorted_union(parts);
  ASSERT_EQ(all.size(), 9u);
  EXPECT_EQ(std::adjacent_find(all.begin(), all.end()), all.end());  // no repeats
  // The dropped sample is the order's last.
  const std::vector<int64_t> order = sampler(10, 1, 0).indices(0);
  EXPECT_EQ(std::count(all.begin(), all.end(), order.back()), 0);
  EXPECT_EQ(sampler(2, 3, 0, true, 7, true).indices(0), std::vector<int64_t>{});
}

TEST(DistributedSampler, ReshufflesEachEpochAndStaysAPartition) {
  const auto e0 = shards(40, 4, 0), e1 = shards(40, 4, 1);
  EXPECT_NE(e0, e1);
  EXPECT_EQ(sorted_union(e1), iota_vector(40));
  // set_epoch selects what indices() returns.
  DistributedSampler s = sampler(40, 4, 2);
  EXPECT_EQ(s.indices(), e0[2]);
  s.set_epoch(1);
  EXPECT_EQ(s.epoch(), 1);
  EXPECT_EQ(s.indices(), e1[2]);
  // Without shuffle every epoch reads the same.
  EXPECT_EQ(shards(40, 4, 0, false), shards(40, 4, 3, false));
}

TEST(DistributedSampler, TheSameSeedGivesTheSameShards) {
  EXPECT_EQ(shards(50, 3, 2, true, 11), shards(50, 3, 2, true, 11));
  EXPECT_NE(shards(50, 3, 2, true, 11), shards(50, 3, 2, true, 12));
}

TEST(DistributedSampler, RejectsBadArguments) {
  EXPECT_THROW(sampler(10, 0, 0), Error);
  EXPECT_THROW(sampler(10, 2, 2), Error);
  EXPECT_THROW(sampler(10, 2, -1), Error);
  EXPECT_THROW(sampler(-1, 1, 0), Error);
}

// --- in a DataLoader ----------------------------------------------------------------------

namespace {

std::shared_ptr<TensorDataset> labelled(int64_t n) {
  std::vector<float> x(static_cast<size_t>(n));
  std::vector<int64_t> y(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    x[static_cast<size_t>(i)] = static_cast<float>(i);
    y[static_cast<size_t>(i)] = i;
  }
  return std::make_shared<TensorDataset>(Tensor::from_vector(x, {n, 1}),
                                         Tensor::from_vector(y, {n}));
}

std::vector<int64_t> epoch_labels(DataLoader& loader) {
  std::vector<int64_t> all;
  for (const Batch& b : loader) {
    const auto y = b.y.to_vector<int64_t>();
    all.insert(all.end(), y.begin(), y.end());
  }
  return all;
}

}  // namespace

TEST(DistributedSampler, IsHowTheDataLoaderOrdersAnEpoch) {
  // A loader without a sampler reads the single replica's order from its own seed, which
  // is random_permutation(N, mix_seeds(seed, epoch)) (what the loader always read).
  DataLoader loader(labelled(30), {.batch_size = 4, .shuffle = true, .seed = 5});
  for (int64_t e = 0; e < 3; ++e) {
    const std::vector<int64_t> order = epoch_labels(loader);
    EXPECT_EQ(order, sampler(30, 1, 0, true, 5).indices(e));
    EXPECT_EQ(order, random_permutation(30, mix_seeds(5, static_cast<uint64_t>(e))));
  }
}

TEST(DistributedSampler, EachRanksLoaderReadsItsShard) {
  auto ds = labelled(23);
  for (const int64_t epoch : {0, 1}) {
    std::vector<std::vector<int64_t>> seen;
    for (int64_t r = 0; r < 3; ++r) {
      auto s = std::make_shared<DistributedSampler>(sampler(23, 3, r, true, 99));
      DataLoader loader(ds, {.batch_size = 3, .seed = 1, .sampler = s});
      EXPECT_EQ(loader.size(), 3);  // 8 indices a rank
      loader.set_epoch(epoch);
      seen.push_back(epoch_labels(loader));
      EXPECT_EQ(seen.back(), s->indices(epoch));
    }
    std::set<int64_t> distinct;
    for (const auto& p : seen) distinct.insert(p.begin(), p.end());
    EXPECT_EQ(distinct.size(), 23u);
  }
}

TEST(DistributedSampler, DataLoaderRefusesAMismatchedSamplerOrShuffleWithIt) {
  auto s = std::make_shared<DistributedSampler>(sampler(10, 2, 0));
  EXPECT_THROW(DataLoader(labelled(11), {.sampler = s}), Error);
  EXPECT_THROW(DataLoader(labelled(10), {.shuffle = true, .sampler = s}), Error);
  EXPECT_NO_THROW(DataLoader(labelled(10), {.sampler = s}));
}
