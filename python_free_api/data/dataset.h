// Datasets that serve whole batches: the Dataset interface, in-memory TensorDataset,
// Subset, and the splits (random_split, and Keras's validation_split: the last fraction).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <type_traits>
#include <utility>
#include <vector>

#include "ember/core/base/export.h"
#include "ember/core/tensor.h"

namespace ember::data {

// One batch: inputs and targets, rows in the order of the indices asked for. From a
// Dataset both are CPU tensors; a DataLoader hands them out on its device. `y` is
// undefined for an unlabelled dataset.
struct Batch {
  Tensor x;
  Tensor y;
};

// A dataset is asked for whole batches rather than single samples, so an in-memory
// dataset can gather rows with one memcpy each instead of building N small tensors.
// get_batch() is const and must be safe to call from another thread (the DataLoader's
// worker) while the dataset is otherwise only read.
class EMBER_API Dataset {
 public:
  virtual ~Dataset();
  virtual int64_t size() const = 0;
  // Rows `indices` (each in [0, size()), repeats allowed). x: [B, ...], y: [B, ...].
  virtual Batch get_batch(const std::vector<int64_t>& indices) const = 0;
  // Sample i as a batch of one.
  Batch get(int64_t index) const { return get_batch({index}); }
};

// Note [Passing datasets]
// A dataset is passed as std::shared_ptr<const Dataset> (std::make_shared<...>(...)):
// DataLoader, Subset, random_split, validation_split and Trainer::fit / evaluate /
// predict (and FitOptions::validation) all take it, and whoever holds it keeps it alive.
// The Trainer's calls take a DatasetRef, which also accepts a dataset by reference or
// pointer, borrowed for the call (the caller keeps it alive until the call returns), so
// code written when they took `const Dataset&` still compiles; a temporary is moved into
// shared ownership instead of being borrowed.
class DatasetRef {
 public:
  DatasetRef() = default;
  DatasetRef(std::nullptr_t) {}  // NOLINT: implicit by design, as every constructor here
  template <typename D, typename = std::enable_if_t<std::is_convertible_v<D*, const Dataset*>>>
  DatasetRef(std::shared_ptr<D> dataset) : ptr_(std::move(dataset)) {}  // NOLINT
  DatasetRef(const Dataset& dataset) : ptr_(&dataset, [](const Dataset*) {}) {}  // NOLINT
  DatasetRef(const Dataset* dataset)  // NOLINT
      : ptr_(dataset == nullptr ? nullptr : std::shared_ptr<const Dataset>(dataset, [](const Dataset*) {})) {}
  template <typename D, typename = std::enable_if_t<std::is_base_of_v<Dataset, D> &&
                                                    !std::is_reference_v<D>>>
  DatasetRef(D&& temporary)  // NOLINT
      : ptr_(std::make_shared<D>(std::move(temporary))) {}

  const std::shared_ptr<const Dataset>& shared() const { return ptr_; }
  const Dataset* get() const { return ptr_.get(); }
  const Dataset& operator*() const { return *ptr_; }
  const Dataset* operator->() const { return ptr_.get(); }
  explicit operator bool() const { return ptr_ != nullptr; }

 private:
  std::shared_ptr<const Dataset> ptr_;
};

// Inputs and targets held in memory (like torch.utils.data.TensorDataset). The tensors
// are kept as contiguous CPU tensors, cut from the autograd graph; handles are shared,
// so copying a TensorDataset is cheap.
class EMBER_API TensorDataset : public Dataset {
 public:
  // x: [N, ...]; y: [N, ...] or undefined (no targets). Throws ShapeError naming both
  // shapes when the first dimensions differ.
  TensorDataset(Tensor x, Tensor y);

  int64_t size() const override;
  Batch get_batch(const std::vector<int64_t>& indices) const override;

  const Tensor& x() const { return x_; }
  const Tensor& y() const { return y_; }

 private:
  Tensor x_;
  Tensor y_;
};

// The samples of `dataset` at `indices`, in that order (like torch.utils.data.Subset).
class EMBER_API Subset : public Dataset {
 public:
  // Throws ember::ValueError when an index is outside [0, dataset->size()).
  Subset(std::shared_ptr<const Dataset> dataset, std::vector<int64_t> indices);

  int64_t size() const override { return static_cast<int64_t>(indices_.size()); }
  Batch get_batch(const std::vector<int64_t>& indices) const override;

  const Dataset& dataset() const { return *dataset_; }
  const std::vector<int64_t>& indices() const { return indices_; }

 private:
  std::shared_ptr<const Dataset> dataset_;
  std::vector<int64_t> indices_;
};

// Splits a permutation of the dataset into consecutive parts (like PyTorch's
// random_split). `lengths` are either sample counts summing to size(), or fractions in
// [0, 1] summing to 1: each part gets floor(fraction * size()) and the remainder is
// dealt one sample at a time to the parts in order. The permutation comes from `seed`,
// or from a seed drawn from ember's CPU generator (so manual_seed makes it repeatable).
EMBER_API std::vector<std::shared_ptr<Subset>> random_split(
    std::shared_ptr<const Dataset> dataset, const std::vector<double>& lengths,
    std::optional<uint64_t> seed = std::nullopt);

// A permutation of 0..n-1 determined by `seed` alone: a Fisher-Yates shuffle driven by
// std::mt19937_64 with our own unbiased bounded draw, so the order is the same with
// every standard library (std::shuffle's is not specified).
EMBER_API std::vector<int64_t> random_permutation(int64_t n, uint64_t seed);

struct TrainValidation {
  std::shared_ptr<Subset> train;
  std::shared_ptr<Subset> validation;
};

// Keras's validation_split: the validation set is the LAST `fraction` of the samples, in
// their stored order and taken before any shuffling; the training set is the rest. With
// N samples, training gets floor(N * (1 - fraction)) (Keras's split_at). Throws
// ember::ValueError unless 0 < fraction < 1 and both parts are non-empty.
EMBER_API TrainValidation validation_split(std::shared_ptr<const Dataset> dataset, double fraction);
// validation_split(dataset, fraction).validation.
EMBER_API std::shared_ptr<Subset> take_last(std::shared_ptr<const Dataset> dataset,
                                            double fraction);

}  // namespace ember::data
