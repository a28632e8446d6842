// DataLoader: orders (optionally sharded), batches and augments a Dataset on worker threads,
// stages batches in pinned memory and, for a CUDA device, copies them to it ahead of use
// without blocking. See Note [DataLoader pipeline].
#pragma once

#include <cstdint>
#include <iterator>
#include <memory>
#include <optional>

#include "ember/core/device.h"
#include "ember/core/base/export.h"
#include "ember/python_free_api/data/dataset.h"
#include "ember/python_free_api/data/sampler.h"
#include "ember/python_free_api/data/transforms.h"

namespace ember::data {

struct DataLoaderOptions {
  int64_t batch_size = 32;
  // A new permutation each epoch. With a sampler, the sampler's own shuffle applies and
  // this must stay false.
  bool shuffle = false;
  // Drops the last batch when it would be smaller than batch_size.
  bool drop_last = false;
  // Seeds the shuffle and the random transforms; when absent one is drawn from ember's
  // CPU generator at construction, so manual_seed() makes a run repeatable.
  std::optional<uint64_t> seed;
  // Applied to x (and target_transforms to y) on the worker, before the copy.
  Compose transforms;
  Compose target_transforms;
  // Where batches are handed out.
  Device device = Device::cpu();
  // Threads preparing batches in parallel (reading, decoding, augmenting); 0 prepares
  // each batch on the consumer's thread when it is asked for.
  int64_t num_workers = 1;
  // Batches prepared ahead per worker (PyTorch's prefetch_factor): at most
  // prefetch * num_workers batches are being prepared or waiting, besides the one the
  // consumer holds. 0 also prepares each batch on the consumer's thread.
  int64_t prefetch = 2;
  // Which indices this loader reads each epoch, e.g. one replica's shard
  // (DistributedSampler); its dataset_size must be the dataset's size. Without one the
  // loader reads the whole dataset, shuffled when `shuffle` (Note [Sampling] in sampler.h).
  std::shared_ptr<const DistributedSampler> sampler;
  // Stage batches in page-locked host memory (from ember's pinned pool, which falls back
  // to ordinary memory without a GPU), so host-to-device copies are asynchronous DMA.
  bool pin_memory = true;
};

// Note [DataLoader pipeline]
// Each begin() starts an epoch e: the order is the sampler's indices(e), by default
// random_permutation(size, mix_seeds(seed, e)) when shuffling (Note [Sampling] in
// sampler.h), cut into batches in that order. The transforms of the sample with dataset
// index i draw from its own generator, seeded with mix_seeds(mix_seeds(mix_seeds(seed,
// e), salt), i) (Note [Per-sample randomness] in transforms.h). Batch b therefore holds
// the same samples, augmented the same way, whatever num_workers and the thread timing.
// num_workers threads per epoch each take the next batch number not yet taken and
// prepare it: Dataset::get_batch, the transforms, a copy into page-locked memory
// (Tensor::pin_memory)
// and, for a CUDA device, Tensor::to(device, /*non_blocking=*/true): the copy runs on the
// device's copy stream and the compute stream is made to wait for it with an event at
// once, so the host never blocks on the copy and every op on the batch runs after it
// (Note [Non-blocking copies] in core/memory/transfer.h). The staging buffer is held by
// core until its copy has completed. Finished batches wait in slots by batch number, and
// the consumer takes them in order. A worker takes batch b only while b < (batches handed
// out) + prefetch * num_workers, else sleeps on a condition variable; the consumer sleeps
// on another until its next batch is ready. So at most prefetch * num_workers batches
// exist besides the consumer's, whatever the dataset's size: memory stays bounded for a
// dataset that decodes lazily (ImageFolder's lazy mode). An exception while preparing
// batch b is stored (std::exception_ptr) in b's slot; workers then take no later batch,
// and the consumer rethrows it when it reaches b (earlier batches are still handed out),
// and the epoch ends. An ember error of one of ember's own types comes back with the same
// type and its message prefixed with the batch and its sample indices; any other
// exception comes back as thrown. Destroying the loader, calling begin() again, or
// dropping the last iterator of an epoch stops its workers (each finishes at most the
// batch in hand) and joins them; an iterator of a stopped epoch throws ember::ValueError when
// advanced. A loader and its iterators are used from one thread.
class EMBER_API DataLoader {
  struct Epoch;

 public:
  // Single-pass input iterator; copies share the position (like istream_iterator).
  class EMBER_API Iterator {
   public:
    using iterator_category = std::input_iterator_tag;
    using value_type = Batch;
    using difference_type = std::ptrdiff_t;
    using pointer = const Batch*;
    using reference = const Batch&;

    Iterator() = default;
    const Batch& operator*() const;
    const Batch* operator->() const { return &**this; }
    // Rethrows an exception of the worker; throws ember::ValueError if the epoch was stopped.
    Iterator& operator++();
    bool operator==(const Iterator& other) const { return at_end() == other.at_end(); }
    bool operator!=(const Iterator& other) const { return !(*this == other); }

   private:
    friend class DataLoader;
    explicit Iterator(std::shared_ptr<Epoch> epoch) : epoch_(std::move(epoch)) {}
    bool at_end() const;
    std::shared_ptr<Epoch> epoch_;
  };

  // Throws ember::ValueError for a null dataset, batch_size < 1, num_workers < 0, prefetch < 0,
  // a sampler for another dataset size, or both a sampler and shuffle.
  explicit DataLoader(std::shared_ptr<const Dataset> dataset, DataLoaderOptions options = {});
  ~DataLoader();
  DataLoader(const DataLoader&) = delete;
  DataLoader& operator=(const DataLoader&) = delete;
  DataLoader(DataLoader&&) noexcept;
  DataLoader& operator=(DataLoader&&) noexcept;

  // Starts the next epoch (stopping one still running) and waits for its first batch.
  Iterator begin();
  Iterator end() { return Iterator(); }

  // Batches per epoch (of the sampler's indices when there is one).
  int64_t size() const;
  const Dataset& dataset() const { return *dataset_; }
  const DataLoaderOptions& options() const { return options_; }
  uint64_t seed() const { return seed_; }
  // The epoch the next begin() starts (0 at first); set_epoch() to resume a run.
  int64_t epoch() const { return next_epoch_; }
  void set_epoch(int64_t epoch) { next_epoch_ = epoch; }

 private:
  void stop_current();
  void check_sampler() const;

  std::shared_ptr<const Dataset> dataset_;
  DataLoaderOptions options_;
  uint64_t seed_ = 0;
  // options_.sampler, or the single replica's sampler over the whole dataset.
  std::shared_ptr<const DistributedSampler> sampler_;
  int64_t next_epoch_ = 0;
  std::weak_ptr<Epoch> current_;
};

}  // namespace ember::data
