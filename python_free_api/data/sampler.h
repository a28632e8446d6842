// DistributedSampler: which sample indices one data-parallel replica reads in an epoch
// (like torch.utils.data.distributed.DistributedSampler); the DataLoader orders every epoch
// through it, a single replica's when no sampler is given. See Note [Sampling].
#pragma once

#include <cstdint>
#include <vector>

#include "ember/core/base/export.h"

namespace ember::data {

// splitmix64(a ^ splitmix64(b)): how the loaders derive a seed from a seed and a counter
// (an epoch, a sample index), so neighbouring counters give unrelated streams.
EMBER_API uint64_t mix_seeds(uint64_t a, uint64_t b);

struct DistributedSamplerOptions {
  // The data-parallel world: replicas (processes) and this one's rank in [0, num_replicas).
  int64_t num_replicas = 1;
  int64_t rank = 0;
  // A new permutation each epoch, the same on every rank (it comes from `seed`, which
  // must therefore be the same on every rank).
  bool shuffle = true;
  uint64_t seed = 0;
  // Drop the tail that does not divide evenly among the replicas instead of padding.
  bool drop_last = false;
};

// Note [Sampling]
// Epoch e's order is p = random_permutation(N, mix_seeds(seed, e)) when shuffling, else
// 0..N-1. Without drop_last it is padded to T = ceil(N / R) * R entries by repeating its
// own first entries (cyclically when T - N > N); with drop_last it is cut to
// T = floor(N / R) * R. Rank r reads p[r], p[r + R], p[r + 2R], ...: T / R indices, as
// PyTorch's DistributedSampler does. The shards of one epoch are therefore disjoint
// (apart from the padding) and together cover the dataset; every rank computes the same
// p, so no communication is needed. A DataLoader without a sampler uses R = 1, r = 0 and
// its own seed and shuffle flag: one way to order an epoch, whoever asks.
// num_replicas and rank are explicit here; a constructor reading them from a process
// group belongs beside the process-group code, delegating to this one.
class EMBER_API DistributedSampler {
 public:
  // Throws ember::ValueError for a negative dataset_size, num_replicas < 1 or a rank outside
  // [0, num_replicas).
  DistributedSampler(int64_t dataset_size, DistributedSamplerOptions options);

  // The indices this rank reads in `epoch` (Note [Sampling]); a pure function of the
  // options and the epoch.
  std::vector<int64_t> indices(int64_t epoch) const;
  // indices(epoch()). A DataLoader given this sampler asks for its own epoch's indices
  // (DataLoader::epoch, set_epoch), so set_epoch only serves code that iterates the
  // sampler itself, as PyTorch's set_epoch does.
  std::vector<int64_t> indices() const { return indices(epoch_); }
  void set_epoch(int64_t epoch) { epoch_ = epoch; }
  int64_t epoch() const { return epoch_; }

  // Indices per rank and epoch: ceil(N / R), or floor(N / R) with drop_last.
  int64_t size() const { return num_samples_; }
  // The padded (or cut) length of the whole epoch, size() * num_replicas.
  int64_t total_size() const { return num_samples_ * options_.num_replicas; }
  int64_t dataset_size() const { return dataset_size_; }
  const DistributedSamplerOptions& options() const { return options_; }

 private:
  int64_t dataset_size_;
  DistributedSamplerOptions options_;
  int64_t num_samples_;
  int64_t epoch_ = 0;
};

}  // namespace ember::data
