// DataLoader: shuffles, batches and augments a Dataset on a background thread, stages
// batches in pinned memory and, for a CUDA device, copies them to it ahead of use without
// blocking. See Note [DataLoader pipeline].
#pragma once

#include <cstdint>
#include <iterator>
#include <memory>
#include <optional>

#include "ember/core/device.h"
#include "ember/core/base/export.h"
#include "ember/python_free_api/data/dataset.h"
#include "ember/python_free_api/data/transforms.h"

namespace ember::data {

struct DataLoaderOptions {
  int64_t batch_size = 32;
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
  // Batches prepared ahead of the consumer; 0 prepares each batch on the consumer's
  // thread when it is asked for (no background thread).
  int64_t prefetch = 2;
  // Stage batches in page-locked host memory (from ember's pinned pool, which falls back
  // to ordinary memory without a GPU), so host-to-device copies are asynchronous DMA.
  bool pin_memory = true;
};

// Note [DataLoader pipeline]
// Each begin() starts an epoch e: the order is random_permutation(size, mix(seed, e))
// when shuffling, and batch b's transforms draw from a generator seeded with
// mix(seed, e, b). Results therefore depend on the seed, the epoch and the batch only,
// never on thread timing. One worker thread per epoch prepares batches in order:
// Dataset::get_batch, the transforms, a copy into page-locked memory (Tensor::pin_memory)
// and, for a CUDA device, Tensor::to(device, /*non_blocking=*/true): the copy runs on the
// device's copy stream and the compute stream is made to wait for it with an event at
// once, so the host never blocks on the copy and every op on the batch runs after it
// (Note [Non-blocking copies] in core/memory/transfer.h). The staging buffer is held by
// core until its copy has completed. The worker keeps at most `prefetch` finished batches
// queued and sleeps on a condition variable when the queue is full; the consumer sleeps
// on another when it is empty. An exception in the worker is stored (std::exception_ptr) and
// rethrown by the consumer at the batch where it happened; the epoch then ends.
// Destroying the loader, calling begin() again, or dropping the last iterator of an
// epoch stops its worker (it finishes at most the batch in hand) and joins it; an
// iterator of a stopped epoch throws ember::Error when advanced. A loader and its
// iterators are used from one thread.
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
    // Rethrows an exception of the worker; throws ember::Error if the epoch was stopped.
    Iterator& operator++();
    bool operator==(const Iterator& other) const { return at_end() == other.at_end(); }
    bool operator!=(const Iterator& other) const { return !(*this == other); }

   private:
    friend class DataLoader;
    explicit Iterator(std::shared_ptr<Epoch> epoch) : epoch_(std::move(epoch)) {}
    bool at_end() const;
    std::shared_ptr<Epoch> epoch_;
  };

  // Throws ember::Error for a null dataset, batch_size < 1 or prefetch < 0.
  explicit DataLoader(std::shared_ptr<const Dataset> dataset, DataLoaderOptions options = {});
  ~DataLoader();
  DataLoader(const DataLoader&) = delete;
  DataLoader& operator=(const DataLoader&) = delete;
  DataLoader(DataLoader&&) noexcept;
  DataLoader& operator=(DataLoader&&) noexcept;

  // Starts the next epoch (stopping one still running) and waits for its first batch.
  Iterator begin();
  Iterator end() { return Iterator(); }

  // Batches per epoch.
  int64_t size() const;
  const Dataset& dataset() const { return *dataset_; }
  const DataLoaderOptions& options() const { return options_; }
  uint64_t seed() const { return seed_; }
  // The epoch the next begin() starts (0 at first); set_epoch() to resume a run.
  int64_t epoch() const { return next_epoch_; }
  void set_epoch(int64_t epoch) { next_epoch_ = epoch; }

 private:
  void stop_current();

  std::shared_ptr<const Dataset> dataset_;
  DataLoaderOptions options_;
  uint64_t seed_ = 0;
  int64_t next_epoch_ = 0;
  std::weak_ptr<Epoch> current_;
};

}  // namespace ember::data
