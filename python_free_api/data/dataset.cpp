// In-memory datasets gathered with one memcpy per row, subsets and the dataset splits.
#include "ember/python_free_api/data/dataset.h"

#include <cmath>
#include <cstring>
#include <mutex>
#include <random>
#include <utility>

#include "ember/core/base/error.h"
#include "ember/core/random.h"

namespace ember::data {

namespace {

// `t` as a contiguous CPU tensor outside the autograd graph (shared when it already is).
Tensor as_stored(const Tensor& t) {
  if (!t.defined()) return t;
  return t.detach().cpu().contiguous();
}

void check_index(const char* op, int64_t index, int64_t size) {
  EMBER_CHECK_T(ValueError, index >= 0 && index < size, op, ": index ", index,
                " is out of range for a dataset of ", size, " samples");
}

// Rows `indices` of the contiguous CPU tensor `t` ([N, ...]) as a new [B, ...] tensor.
Tensor gather_rows(const Tensor& t, const std::vector<int64_t>& indices) {
  Shape shape = t.shape();
  const int64_t n = shape[0];
  shape[0] = static_cast<int64_t>(indices.size());
  Tensor out = Tensor::empty(shape, {.dtype = t.dtype()});
  const size_t row_bytes = n == 0 ? 0 : t.nbytes() / static_cast<size_t>(n);
  if (row_bytes == 0) return out;
  const auto* src = static_cast<const uint8_t*>(t.data_ptr());
  auto* dst = static_cast<uint8_t*>(out.data_ptr());
  for (size_t i = 0; i < indices.size(); ++i) {
    check_index("TensorDataset::get_batch", indices[i], n);
    std::memcpy(dst + i * row_bytes, src + static_cast<size_t>(indices[i]) * row_bytes, row_bytes);
  }
  return out;
}

uint64_t draw_seed() {
  std::lock_guard<std::mutex> lock(cpu_generator_mutex());
  return cpu_generator()();
}

// Uniform in [0, bound) without modulo bias (rejection of the short last interval).
uint64_t uniform_below(std::mt19937_64& gen, uint64_t bound) {
  const uint64_t limit = UINT64_MAX - UINT64_MAX % bound;
  uint64_t r;
  do {
    r = gen();
  } while (r >= limit);
  return r % bound;
}

}  // namespace

Dataset::~Dataset() = default;

// --- TensorDataset ------------------------------------------------------------------------

TensorDataset::TensorDataset(Tensor x, Tensor y) {
  EMBER_CHECK_T(ShapeError, x.defined(), "TensorDataset: x is undefined");
  EMBER_CHECK_T(ShapeError, x.dim() >= 1, "TensorDataset: x must have a sample dimension, got ",
                shape_str(x.shape()));
  if (y.defined()) {
    EMBER_CHECK_T(ShapeError, y.dim() >= 1 && y.size(0) == x.size(0), "TensorDataset: x ",
                  shape_str(x.shape()), " and y ", shape_str(y.shape()),
                  " must have the same first dimension (the number of samples)");
  }
  x_ = as_stored(x);
  y_ = as_stored(y);
}

int64_t TensorDataset::size() const { return x_.size(0); }

Batch TensorDataset::get_batch(const std::vector<int64_t>& indices) const {
  Batch b;
  b.x = gather_rows(x_, indices);
  if (y_.defined()) b.y = gather_rows(y_, indices);
  return b;
}

// --- Subset -------------------------------------------------------------------------------

Subset::Subset(std::shared_ptr<const Dataset> dataset, std::vector<int64_t> indices)
    : dataset_(std::move(dataset)), indices_(std::move(indices)) {
  EMBER_CHECK_T(ValueError, dataset_ != nullptr, "Subset: the dataset is null");
  const int64_t n = dataset_->size();
  for (int64_t i : indices_) check_index("Subset", i, n);
}

Batch Subset::get_batch(const std::vector<int64_t>& indices) const {
  std::vector<int64_t> mapped(indices.size());
  for (size_t i = 0; i < indices.size(); ++i) {
    check_index("Subset::get_batch", indices[i], size());
    mapped[i] = indices_[static_cast<size_t>(indices[i])];
  }
  return dataset_->get_batch(mapped);
}

// --- splits -------------------------------------------------------------------------------

std::vector<int64_t> random_permutation(int64_t n, uint64_t seed) {
  EMBER_CHECK_T(ValueError, n >= 0, "random_permutation: n must be non-negative, got ", n);
  std::vector<int64_t> p(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) p[static_cast<size_t>(i)] = i;
  std::mt19937_64 gen(seed);
  for (int64_t i = n - 1; i > 0; --i) {
    const auto j = static_cast<size_t>(uniform_below(gen, static_cast<uint64_t>(i) + 1));
    std::swap(p[static_cast<size_t>(i)], p[j]);
  }
  return p;
}

std::vector<std::shared_ptr<Subset>> random_split(std::shared_ptr<const Dataset> dataset,
                                                  const std::vector<double>& lengths,
                                                  std::optional<uint64_t> seed) {
  EMBER_CHECK_T(ValueError, dataset != nullptr, "random_split: the dataset is null");
  EMBER_CHECK_T(ValueError, !lengths.empty(), "random_split: no lengths given");
  const int64_t n = dataset->size();
  double total = 0;
  bool all_fractions = true, all_counts = true;
  for (double l : lengths) {
    EMBER_CHECK_T(ValueError, std::isfinite(l) && l >= 0, "random_split: length ", l,
                  " must be a non-negative count or fraction");
    total += l;
    all_fractions = all_fractions && l <= 1.0;
    all_counts = all_counts && l == std::floor(l);
  }
  std::vector<int64_t> counts;
  if (all_counts && static_cast<int64_t>(total) == n) {
    for (double l : lengths) counts.push_back(static_cast<int64_t>(l));
  } else {
    EMBER_CHECK_T(ValueError, all_fractions && std::abs(total - 1.0) < 1e-6,
                  "random_split: lengths sum to ", total,
                  "; give sample counts summing to the dataset's size (", n,
                  ") or fractions summing to 1");
    int64_t assigned = 0;
    for (double f : lengths) {
      counts.push_back(static_cast<int64_t>(std::floor(f * static_cast<double>(n))));
      assigned += counts.back();
    }
    for (size_t i = 0; assigned < n; i = (i + 1) % counts.size(), ++assigned) ++counts[i];
  }
  const std::vector<int64_t> perm = random_permutation(n, seed ? *seed : draw_seed());
  std::vector<std::shared_ptr<Subset>> parts;
  auto it = perm.begin();
  for (int64_t c : counts) {
    parts.push_back(std::make_shared<Subset>(dataset, std::vector<int64_t>(it, it + c)));
    it += c;
  }
  return parts;
}

TrainValidation validation_split(std::shared_ptr<const Dataset> dataset, double fraction) {
  EMBER_CHECK_T(ValueError, dataset != nullptr, "validation_split: the dataset is null");
  EMBER_CHECK_T(ValueError, fraction > 0.0 && fraction < 1.0,
                "validation_split: fraction must be in (0, 1), got ", fraction);
  const int64_t n = dataset->size();
  const auto split_at = static_cast<int64_t>(std::floor(static_cast<double>(n) * (1.0 - fraction)));
  EMBER_CHECK_T(ValueError, split_at > 0 && split_at < n, "validation_split: a fraction of ",
                fraction, " of ", n, " samples leaves ", split_at, " for training and ",
                n - split_at, " for validation; both must be non-empty");
  std::vector<int64_t> head(static_cast<size_t>(split_at)), tail(static_cast<size_t>(n - split_at));
  for (int64_t i = 0; i < n; ++i) {
    if (i < split_at) {
      head[static_cast<size_t>(i)] = i;
    } else {
      tail[static_cast<size_t>(i - split_at)] = i;
    }
  }
  return {std::make_shared<Subset>(dataset, std::move(head)),
          std::make_shared<Subset>(dataset, std::move(tail))};
}

std::shared_ptr<Subset> take_last(std::shared_ptr<const Dataset> dataset, double fraction) {
  return validation_split(std::move(dataset), fraction).validation;
}

}  // namespace ember::data
