// DistributedSampler's shards: a shared permutation, padded or cut to a multiple of the
// replicas, read with a stride (Note [Sampling] in sampler.h).
#include "ember/python_free_api/data/sampler.h"

#include <numeric>

#include "ember/core/base/error.h"
#include "ember/python_free_api/data/dataset.h"

namespace ember::data {

namespace {

uint64_t splitmix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

}  // namespace

uint64_t mix_seeds(uint64_t a, uint64_t b) { return splitmix64(a ^ splitmix64(b)); }

DistributedSampler::DistributedSampler(int64_t dataset_size, DistributedSamplerOptions options)
    : dataset_size_(dataset_size), options_(options) {
  EMBER_CHECK_T(ValueError, dataset_size_ >= 0,
                "DistributedSampler: dataset_size must be non-negative, got ", dataset_size_);
  EMBER_CHECK_T(ValueError, options_.num_replicas >= 1,
                "DistributedSampler: num_replicas must be at least 1, got ", options_.num_replicas);
  EMBER_CHECK_T(ValueError, options_.rank >= 0 && options_.rank < options_.num_replicas,
                "DistributedSampler: rank ", options_.rank, " is outside [0, ",
                options_.num_replicas, ") for num_replicas ", options_.num_replicas);
  const int64_t r = options_.num_replicas;
  num_samples_ = options_.drop_last ? dataset_size_ / r : (dataset_size_ + r - 1) / r;
}

std::vector<int64_t> DistributedSampler::indices(int64_t epoch) const {
  const int64_t n = dataset_size_;
  std::vector<int64_t> order;
  if (options_.shuffle) {
    order = random_permutation(n, mix_seeds(options_.seed, static_cast<uint64_t>(epoch)));
  } else {
    order.resize(static_cast<size_t>(n));
    std::iota(order.begin(), order.end(), int64_t{0});
  }
  const int64_t r = options_.num_replicas;
  // A single replica reads the order as it is (the DataLoader's own case).
  if (r == 1) return order;
  std::vector<int64_t> shard;
  shard.reserve(static_cast<size_t>(num_samples_));
  for (int64_t k = 0; k < num_samples_; ++k) {
    // Entry k * R + rank of the order padded cyclically (padded[i] = order[i % N]);
    // num_samples_ > 0 implies N > 0.
    const int64_t i = k * r + options_.rank;
    shard.push_back(order[static_cast<size_t>(i % n)]);
  }
  return shard;
}

}  // namespace ember::data
