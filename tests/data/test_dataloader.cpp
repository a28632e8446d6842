// Datasets, splits, batch transforms and the DataLoader: coverage and order of batches,
// reproducible shuffling and augmentation, worker errors, prompt shutdown, CUDA prefetch.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <memory>
#include <numeric>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "ember/core/device.h"
#include "ember/core/base/error.h"
#include "ember/core/memory/pinned_pool.h"
#include "ember/core/ops.h"
#include "ember/core/random.h"
#include "ember/core/tensor.h"
#include "ember/python_free_api/data/dataloader.h"
#include "ember/python_free_api/data/dataset.h"
#include "ember/python_free_api/data/transforms.h"

namespace {

using namespace ember;
using namespace ember::data;
using Clock = std::chrono::steady_clock;

// x[i] = {i, -i} (float32 [n, 2]) and y[i] = i (int64 [n]): every row names its sample.
std::shared_ptr<TensorDataset> indexed_dataset(int64_t n) {
  std::vector<float> x;
  std::vector<int64_t> y;
  for (int64_t i = 0; i < n; ++i) {
    x.push_back(static_cast<float>(i));
    x.push_back(static_cast<float>(-i));
    y.push_back(i);
  }
  return std::make_shared<TensorDataset>(Tensor::from_vector(x, {n, 2}),
                                         Tensor::from_vector(y, {n}));
}

// The sample indices of each batch of one epoch, read from y.
std::vector<std::vector<int64_t>> epoch_batches(DataLoader& loader) {
  std::vector<std::vector<int64_t>> out;
  for (const Batch& b : loader) out.push_back(b.y.to_vector<int64_t>());
  return out;
}

std::vector<int64_t> flatten(const std::vector<std::vector<int64_t>>& batches) {
  std::vector<int64_t> all;
  for (const auto& b : batches) all.insert(all.end(), b.begin(), b.end());
  return all;
}

std::vector<float> values(const Tensor& t) { return t.contiguous().to_vector<float>(); }

// A dataset whose get_batch sleeps, to make the worker slow.
class SlowDataset : public Dataset {
 public:
  SlowDataset(int64_t n, std::chrono::milliseconds delay)
      : inner_(indexed_dataset(n)), delay_(delay) {}
  int64_t size() const override { return inner_->size(); }
  Batch get_batch(const std::vector<int64_t>& indices) const override {
    std::this_thread::sleep_for(delay_);
    return inner_->get_batch(indices);
  }

 private:
  std::shared_ptr<TensorDataset> inner_;
  std::chrono::milliseconds delay_;
};

// A dataset that throws when asked for sample `bad`.
class FailingDataset : public Dataset {
 public:
  FailingDataset(int64_t n, int64_t bad) : inner_(indexed_dataset(n)), bad_(bad) {}
  int64_t size() const override { return inner_->size(); }
  Batch get_batch(const std::vector<int64_t>& indices) const override {
    for (int64_t i : indices) {
      if (i == bad_) throw IOError("sample " + std::to_string(i) + " is unreadable");
    }
    return inner_->get_batch(indices);
  }

 private:
  std::shared_ptr<TensorDataset> inner_;
  int64_t bad_;
};

// --- datasets and splits ------------------------------------------------------------------

TEST(TensorDataset, MismatchedFirstDimensionsNameBothShapes) {
  try {
    TensorDataset ds(zeros({10, 3}), zeros({9}));
    FAIL() << "expected ShapeError";
  } catch (const ShapeError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("[10, 3]"), std::string::npos) << msg;
    EXPECT_NE(msg.find("[9]"), std::string::npos) << msg;
  }
}

TEST(TensorDataset, GetBatchGathersRowsInIndexOrder) {
  auto ds = indexed_dataset(10);
  Batch b = ds->get_batch({7, 2, 2, 9});
  EXPECT_EQ(b.x.shape(), (Shape{4, 2}));
  EXPECT_EQ(values(b.x), (std::vector<float>{7, -7, 2, -2, 2, -2, 9, -9}));
  EXPECT_EQ(b.y.to_vector<int64_t>(), (std::vector<int64_t>{7, 2, 2, 9}));
  EXPECT_THROW(ds->get_batch({10}), Error);
  EXPECT_THROW(ds->get_batch({-1}), Error);
}

TEST(TensorDataset, WithoutTargetsServesOnlyInputs) {
  TensorDataset ds(arange(0.0, 6.0, 1.0).reshape({3, 2}), Tensor());
  Batch b = ds.get_batch({2});
  EXPECT_EQ(values(b.x), (std::vector<float>{4, 5}));
  EXPECT_FALSE(b.y.defined());
}

TEST(Subset, MapsIndicesThroughTheParent) {
  auto ds = indexed_dataset(10);
  Subset sub(ds, {9, 3, 5});
  EXPECT_EQ(sub.size(), 3);
  EXPECT_EQ(sub.get_batch({0, 2}).y.to_vector<int64_t>(), (std::vector<int64_t>{9, 5}));
  EXPECT_THROW(Subset(ds, {10}), Error);
  EXPECT_THROW(sub.get_batch({3}), Error);
}

TEST(ValidationSplit, TakesTheLastFractionBeforeShuffling) {
  auto ds = indexed_dataset(10);
  // Keras: split_at = floor(10 * (1 - 0.25)) = 7.
  TrainValidation split = validation_split(ds, 0.25);
  std::vector<int64_t> head(7), tail = {7, 8, 9};
  std::iota(head.begin(), head.end(), 0);
  EXPECT_EQ(split.train->indices(), head);
  EXPECT_EQ(split.validation->indices(), tail);
  EXPECT_EQ(take_last(ds, 0.25)->indices(), tail);
  EXPECT_EQ(take_last(ds, 0.2)->indices(), (std::vector<int64_t>{8, 9}));
  EXPECT_THROW(validation_split(ds, 0.0), Error);
  EXPECT_THROW(validation_split(ds, 1.0), Error);
  EXPECT_THROW(validation_split(ds, 0.95), Error);  // nothing left for training
}

TEST(RandomSplit, PartsAreDisjointCoverTheDataAndRepeatWithTheSeed) {
  auto ds = indexed_dataset(10);
  auto parts = random_split(ds, {0.7, 0.3}, 42);
  ASSERT_EQ(parts.size(), 2u);
  EXPECT_EQ(parts[0]->size(), 7);
  EXPECT_EQ(parts[1]->size(), 3);
  std::vector<int64_t> all = parts[0]->indices();
  all.insert(all.end(), parts[1]->indices().begin(), parts[1]->indices().end());
  std::sort(all.begin(), all.end());
  std::vector<int64_t> expected(10);
  std::iota(expected.begin(), expected.end(), 0);
  EXPECT_EQ(all, expected);
  EXPECT_EQ(random_split(ds, {7, 3}, 42)[0]->indices(), parts[0]->indices());
  EXPECT_NE(random_split(ds, {7, 3}, 43)[0]->indices(), parts[0]->indices());
  // floor(3.33) each, the remainder dealt in order: 4, 3, 3.
  auto thirds = random_split(ds, {1.0 / 3, 1.0 / 3, 1.0 / 3}, 1);
  EXPECT_EQ(thirds[0]->size(), 4);
  EXPECT_EQ(thirds[2]->size(), 3);
  EXPECT_THROW(random_split(ds, {5, 4}, 1), Error);
}

// --- transforms ---------------------------------------------------------------------------

TEST(Normalize, SubtractsTheMeanAndDividesByTheStdPerChannel) {
  // [1, 2, 1, 2]: channel 0 = {1, 3}, channel 1 = {5, 7}.
  Tensor x = Tensor::from_vector<float>({1, 3, 5, 7}, {1, 2, 1, 2});
  Generator gen(0);
  EXPECT_EQ(values(Normalize({1, 5}, {2, 4}).apply(x, gen)), (std::vector<float>{0, 1, 0, 0.5f}));
  EXPECT_EQ(values(Normalize({1}, {2}).apply(x, gen)), (std::vector<float>{0, 1, 2, 3}));
  EXPECT_EQ(values(x), (std::vector<float>{1, 3, 5, 7}));  // input untouched
  EXPECT_THROW(Normalize({0, 0, 0}, {1, 1, 1}).apply(x, gen), ShapeError);
  EXPECT_THROW(Normalize({0}, {0}), Error);
  EXPECT_THROW(Normalize({0}, {1}).apply(x.to(kInt64), gen), DTypeError);
}

TEST(RandomHorizontalFlip, IsAMirrorOfEachRow) {
  Tensor x = arange(0.0, 12.0, 1.0).reshape({1, 2, 2, 3});
  Generator gen(0);
  EXPECT_EQ(values(RandomHorizontalFlip(1.0).apply(x, gen)),
            (std::vector<float>{2, 1, 0, 5, 4, 3, 8, 7, 6, 11, 10, 9}));
  EXPECT_EQ(values(RandomHorizontalFlip(0.0).apply(x, gen)), values(x));
}

TEST(RandomHorizontalFlip, FlipsAboutHalfTheSamplesReproducibly) {
  Tensor x = arange(0.0, 2.0 * 400, 1.0).reshape({400, 1, 1, 2});
  Generator g1(7), g2(7);
  const std::vector<float> a = values(RandomHorizontalFlip().apply(x, g1));
  EXPECT_EQ(a, values(RandomHorizontalFlip().apply(x, g2)));
  int flipped = 0;
  for (int i = 0; i < 400; ++i) flipped += a[2 * i] > a[2 * i + 1];
  EXPECT_GT(flipped, 150);
  EXPECT_LT(flipped, 250);
}

TEST(RandomCrop, WithPaddingKeepsTheSizeAndCutsAWindowOfThePaddedImage) {
  const int64_t n = 16, c = 2, h = 5, w = 6, pad = 2;
  Tensor x = add(arange(0.0, static_cast<double>(n * c * h * w), 1.0).reshape({n, c, h, w}), 1.0);
  Generator gen(3);
  Tensor y = RandomCrop(std::array<int64_t, 2>{h, w}, pad).apply(x, gen);
  ASSERT_EQ(y.shape(), x.shape());
  const std::vector<float> xs = values(x), ys = values(y);
  auto padded = [&](int64_t i, int64_t ch, int64_t r, int64_t col) -> float {
    r -= pad;
    col -= pad;
    if (r < 0 || r >= h || col < 0 || col >= w) return 0.0f;
    return xs[static_cast<size_t>(((i * c + ch) * h + r) * w + col)];
  };
  std::set<std::pair<int64_t, int64_t>> offsets;
  for (int64_t i = 0; i < n; ++i) {
    bool found = false;
    for (int64_t top = 0; top <= 2 * pad && !found; ++top) {
      for (int64_t left = 0; left <= 2 * pad && !found; ++left) {
        bool match = true;
        for (int64_t ch = 0; ch < c && match; ++ch) {
          for (int64_t r = 0; r < h && match; ++r) {
            for (int64_t col = 0; col < w && match; ++col) {
              match = ys[static_cast<size_t>(((i * c + ch) * h + r) * w + col)] ==
                      padded(i, ch, top + r, left + col);
            }
          }
        }
        if (match) {
          found = true;
          offsets.insert({top, left});
        }
      }
    }
    EXPECT_TRUE(found) << "sample " << i << " is no window of the padded image";
  }
  EXPECT_GT(offsets.size(), 3u) << "the crop position should vary between samples";
}

TEST(RandomCrop, SmallerCropAndErrors) {
  Tensor x = ones({2, 1, 8, 8});
  Generator gen(0);
  EXPECT_EQ(RandomCrop(5).apply(x, gen).shape(), (Shape{2, 1, 5, 5}));
  EXPECT_EQ(values(RandomCrop(8).apply(x, gen)), values(x));  // no padding, same size
  EXPECT_THROW(RandomCrop(9).apply(x, gen), ShapeError);
  EXPECT_THROW(RandomCrop(4).apply(ones({2, 8, 8}), gen), ShapeError);
}

TEST(OneHot, TurnsClassIndicesIntoRows) {
  Generator gen(0);
  Tensor y = OneHot(3).apply(Tensor::from_vector<int64_t>({2, 0}, {2}), gen);
  EXPECT_EQ(y.shape(), (Shape{2, 3}));
  EXPECT_EQ(y.dtype(), kFloat32);
  EXPECT_EQ(values(y), (std::vector<float>{0, 0, 1, 1, 0, 0}));
  try {
    OneHot(3).apply(Tensor::from_vector<int64_t>({1, 3}, {2}), gen);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("label 3 at position 1"), std::string::npos) << e.what();
  }
}

TEST(Compose, AppliesItsStepsInOrder) {
  Tensor x = Tensor::from_vector<float>({1, 2, 3}, {1, 1, 1, 3});
  Compose both(RandomHorizontalFlip(1.0), Normalize({1}, {2}));
  EXPECT_EQ(both.size(), 2u);
  EXPECT_EQ(values(both(x)), (std::vector<float>{1, 0.5f, 0}));
  EXPECT_EQ(both.str(), "Compose(RandomHorizontalFlip(p=1), Normalize(mean=[1], std=[2]))");
  EXPECT_EQ(values(Compose()(x)), values(x));
}

TEST(Transform, CallOutsideALoaderRepeatsAfterManualSeed) {
  Tensor x = arange(0.0, 64.0 * 4, 1.0).reshape({64, 1, 2, 2});
  manual_seed(5);
  const std::vector<float> a = values(RandomHorizontalFlip()(x));
  manual_seed(5);
  EXPECT_EQ(values(RandomHorizontalFlip()(x)), a);
}

// --- DataLoader ---------------------------------------------------------------------------

TEST(DataLoader, CoversEveryIndexExactlyOncePerEpoch) {
  DataLoader loader(indexed_dataset(50), {.batch_size = 7, .shuffle = true, .seed = 1});
  EXPECT_EQ(loader.size(), 8);
  for (int epoch = 0; epoch < 3; ++epoch) {
    auto batches = epoch_batches(loader);
    ASSERT_EQ(batches.size(), 8u);
    for (size_t b = 0; b + 1 < batches.size(); ++b) EXPECT_EQ(batches[b].size(), 7u);
    EXPECT_EQ(batches.back().size(), 1u);
    std::vector<int64_t> all = flatten(batches);
    std::sort(all.begin(), all.end());
    std::vector<int64_t> expected(50);
    std::iota(expected.begin(), expected.end(), 0);
    EXPECT_EQ(all, expected);
  }
}

TEST(DataLoader, BatchesPairInputsWithTheirTargets) {
  DataLoader loader(indexed_dataset(20), {.batch_size = 6, .shuffle = true, .seed = 2});
  for (const Batch& b : loader) {
    const std::vector<float> x = values(b.x);
    const std::vector<int64_t> y = b.y.to_vector<int64_t>();
    ASSERT_EQ(b.x.shape(), (Shape{static_cast<int64_t>(y.size()), 2}));
    for (size_t i = 0; i < y.size(); ++i) {
      EXPECT_EQ(x[2 * i], static_cast<float>(y[i]));
      EXPECT_EQ(x[2 * i + 1], -static_cast<float>(y[i]));
    }
  }
}

TEST(DataLoader, WithoutShuffleKeepsTheStoredOrder) {
  DataLoader loader(indexed_dataset(10), {.batch_size = 4});
  EXPECT_EQ(epoch_batches(loader),
            (std::vector<std::vector<int64_t>>{{0, 1, 2, 3}, {4, 5, 6, 7}, {8, 9}}));
}

TEST(DataLoader, DropLastDropsTheShortBatch) {
  DataLoader loader(indexed_dataset(10), {.batch_size = 4, .drop_last = true});
  EXPECT_EQ(loader.size(), 2);
  EXPECT_EQ(epoch_batches(loader), (std::vector<std::vector<int64_t>>{{0, 1, 2, 3}, {4, 5, 6, 7}}));
  DataLoader exact(indexed_dataset(8), {.batch_size = 4, .drop_last = true});
  EXPECT_EQ(exact.size(), 2);
  DataLoader tiny(indexed_dataset(3), {.batch_size = 4, .drop_last = true});
  EXPECT_EQ(tiny.size(), 0);
  EXPECT_TRUE(tiny.begin() == tiny.end());
}

TEST(DataLoader, ShuffleDiffersBetweenEpochsAndRepeatsWithTheSeed) {
  DataLoaderOptions opts{.batch_size = 8, .shuffle = true, .seed = 123};
  DataLoader a(indexed_dataset(64), opts), b(indexed_dataset(64), opts);
  const auto a0 = flatten(epoch_batches(a)), a1 = flatten(epoch_batches(a));
  EXPECT_NE(a0, a1);
  EXPECT_EQ(flatten(epoch_batches(b)), a0);
  EXPECT_EQ(flatten(epoch_batches(b)), a1);
  opts.seed = 124;
  DataLoader c(indexed_dataset(64), opts);
  EXPECT_NE(flatten(epoch_batches(c)), a0);
  // set_epoch resumes the sequence.
  a.set_epoch(1);
  EXPECT_EQ(flatten(epoch_batches(a)), a1);
}

TEST(DataLoader, DefaultSeedComesFromManualSeed) {
  manual_seed(99);
  DataLoader a(indexed_dataset(32), {.batch_size = 32, .shuffle = true});
  manual_seed(99);
  DataLoader b(indexed_dataset(32), {.batch_size = 32, .shuffle = true});
  EXPECT_EQ(a.seed(), b.seed());
  EXPECT_EQ(epoch_batches(a), epoch_batches(b));
}

TEST(DataLoader, TransformsAreReproducibleAndAppliedToInputsOnly) {
  // 64 images [1, 1, 2]: {i, i + 0.5}; a flip swaps the two.
  std::vector<float> x;
  std::vector<int64_t> y;
  for (int i = 0; i < 64; ++i) {
    x.push_back(static_cast<float>(i));
    x.push_back(static_cast<float>(i) + 0.5f);
    y.push_back(i % 4);
  }
  auto ds = std::make_shared<TensorDataset>(Tensor::from_vector(x, {64, 1, 1, 2}),
                                            Tensor::from_vector(y, {64}));
  DataLoaderOptions opts{.batch_size = 16,
                         .shuffle = true,
                         .seed = 9,
                         .transforms = Compose(RandomHorizontalFlip()),
                         .target_transforms = Compose(OneHot(4))};
  DataLoader a(ds, opts), b(ds, opts);
  std::vector<float> a0, b0, a1;
  int flipped = 0;
  for (const Batch& batch : a) {
    EXPECT_EQ(batch.y.shape(), (Shape{16, 4}));
    const std::vector<float> v = values(batch.x);
    a0.insert(a0.end(), v.begin(), v.end());
    for (size_t i = 0; i < v.size(); i += 2) flipped += v[i] > v[i + 1];
  }
  for (const Batch& batch : b) {
    const std::vector<float> v = values(batch.x);
    b0.insert(b0.end(), v.begin(), v.end());
  }
  for (const Batch& batch : a) {
    const std::vector<float> v = values(batch.x);
    a1.insert(a1.end(), v.begin(), v.end());
  }
  EXPECT_EQ(a0, b0);
  EXPECT_NE(a0, a1);
  EXPECT_GT(flipped, 10);
  EXPECT_LT(flipped, 54);
}

TEST(DataLoader, WorksWithoutPinnedMemoryAndWithoutAWorkerThread) {
  for (int64_t prefetch : {0, 1, 3}) {
    for (bool pin : {false, true}) {
      DataLoader loader(indexed_dataset(10),
                        {.batch_size = 3, .prefetch = prefetch, .pin_memory = pin});
      EXPECT_EQ(flatten(epoch_batches(loader)),
                (std::vector<int64_t>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}))
          << "prefetch " << prefetch << " pin " << pin;
    }
  }
}

TEST(DataLoader, PinMemoryStagesBatchesInThePinnedPool) {
  // Without a GPU the pool's blocks are ordinary memory (Tensor::pin_memory), and the
  // batches handed out on the CPU are those staged copies.
  for (bool pin : {false, true}) {
    const int64_t allocs = memory::pinned_stats().num_allocs;
    DataLoader loader(indexed_dataset(10), {.batch_size = 4, .prefetch = 0, .pin_memory = pin});
    int64_t batches = 0;
    for (const Batch& b : loader) {
      ++batches;
      if (pin) {
        // Throws for memory the pinned pool did not hand out.
        EXPECT_EQ(memory::pinned_is_page_locked(b.x.data_ptr()), cuda::is_available());
        EXPECT_EQ(memory::pinned_is_page_locked(b.y.data_ptr()), cuda::is_available());
      }
    }
    EXPECT_EQ(batches, 3);
    EXPECT_EQ(memory::pinned_stats().num_allocs - allocs, pin ? 6 : 0) << "pin " << pin;
  }
}

TEST(DataLoader, WorkerExceptionReachesTheConsumerAtItsBatch) {
  for (const int64_t workers : {0, 1, 3}) {
    for (const int64_t prefetch : {0, 2}) {
      DataLoader loader(std::make_shared<FailingDataset>(20, 13),
                        {.batch_size = 5, .num_workers = workers, .prefetch = prefetch});
      std::vector<int64_t> seen;
      try {
        for (const Batch& b : loader) {
          const auto y = b.y.to_vector<int64_t>();
          seen.insert(seen.end(), y.begin(), y.end());
        }
        FAIL() << "expected the dataset's IOError";
      } catch (const IOError& e) {
        // The dataset's message, after the batch and its samples.
        EXPECT_NE(std::string(e.what()).find("DataLoader: batch 2 of epoch 0 (samples 10, 11, "
                                             "12, 13, 14): sample 13 is unreadable"),
                  std::string::npos)
            << e.what();
      }
      // Batches 0 and 1 came first, whatever the workers did after them.
      EXPECT_EQ(seen.size(), 10u) << "workers " << workers << " prefetch " << prefetch;
      // The next epoch starts afresh (and fails again at the same place).
      EXPECT_THROW(for (const Batch& b : loader)(void) b, IOError);
    }
  }
}

TEST(DataLoader, AWorkersOwnExceptionTypeComesBackAsThrown) {
  // Not one of ember's types, so it cannot be rebuilt with context: it comes back as is.
  class Odd : public Dataset {
   public:
    int64_t size() const override { return 8; }
    Batch get_batch(const std::vector<int64_t>& indices) const override {
      if (indices.front() >= 4) throw std::out_of_range("odd failure");
      return indexed_dataset(8)->get_batch(indices);
    }
  };
  for (const int64_t workers : {0, 2}) {
    DataLoader loader(std::make_shared<Odd>(), {.batch_size = 4, .num_workers = workers});
    auto it = loader.begin();
    try {
      ++it;
      FAIL() << "expected std::out_of_range";
    } catch (const std::out_of_range& e) {
      EXPECT_STREQ(e.what(), "odd failure");
    }
  }
}

TEST(DataLoader, SameBatchesWhateverTheNumberOfWorkers) {
  // 103 images [1, 1, 2] = {i, i + 0.5} (a flip swaps them) with labels i: shuffled,
  // cropped with padding and flipped at random, over two epochs.
  std::vector<float> x;
  std::vector<int64_t> y;
  for (int i = 0; i < 103; ++i) {
    x.push_back(static_cast<float>(i));
    x.push_back(static_cast<float>(i) + 0.5f);
    y.push_back(i);
  }
  auto ds = std::make_shared<TensorDataset>(Tensor::from_vector(x, {103, 1, 1, 2}),
                                            Tensor::from_vector(y, {103}));
  auto run = [&](int64_t workers, int64_t prefetch) {
    DataLoader loader(ds, {.batch_size = 8,
                           .shuffle = true,
                           .seed = 17,
                           .transforms = Compose(RandomCrop({1, 2}, 1), RandomHorizontalFlip()),
                           .num_workers = workers,
                           .prefetch = prefetch});
    std::vector<std::pair<std::vector<float>, std::vector<int64_t>>> batches;
    for (int epoch = 0; epoch < 2; ++epoch) {
      for (const Batch& b : loader) batches.emplace_back(values(b.x), b.y.to_vector<int64_t>());
    }
    return batches;
  };
  const auto reference = run(0, 2);
  ASSERT_EQ(reference.size(), 26u);
  for (const auto& [workers, prefetch] :
       std::vector<std::pair<int64_t, int64_t>>{{1, 2}, {2, 1}, {2, 3}, {4, 2}, {16, 1}}) {
    EXPECT_EQ(run(workers, prefetch), reference) << "workers " << workers << " prefetch "
                                                 << prefetch;
  }
}

TEST(DataLoader, AugmentationDependsOnTheSampleNotOnItsBatch) {
  // Each sample draws from its own generator (seed, epoch, index), so batch size and
  // neighbours do not change how it is flipped.
  std::vector<float> x;
  for (int i = 0; i < 48; ++i) {
    x.push_back(static_cast<float>(i));
    x.push_back(static_cast<float>(i) + 0.5f);
  }
  auto ds = std::make_shared<TensorDataset>(Tensor::from_vector(x, {48, 1, 1, 2}), Tensor());
  auto run = [&](int64_t batch_size) {
    DataLoader loader(ds, {.batch_size = batch_size,
                           .seed = 3,
                           .transforms = Compose(RandomHorizontalFlip())});
    std::vector<float> all;
    for (const Batch& b : loader) {
      const std::vector<float> v = values(b.x);
      all.insert(all.end(), v.begin(), v.end());
    }
    return all;
  };
  const std::vector<float> one = run(1);
  EXPECT_EQ(run(5), one);
  EXPECT_EQ(run(48), one);
  int flipped = 0;
  for (size_t i = 0; i < one.size(); i += 2) flipped += one[i] > one[i + 1];
  EXPECT_GT(flipped, 8);
  EXPECT_LT(flipped, 40);
}

// A transform written with apply() alone: the loader applies it sample by sample.
class AddNoise final : public Transform {
 public:
  Tensor apply(const Tensor& batch, Generator& gen) const override {
    return add(batch, data::normal(batch.shape(), gen, 0.0, 1.0));
  }
  std::string str() const override { return "AddNoise"; }
};

TEST(DataLoader, ATransformWithOnlyApplyGetsEachSamplesOwnGenerator) {
  auto ds = indexed_dataset(30);
  auto run = [&](int64_t batch_size, int64_t workers) {
    DataLoader loader(ds, {.batch_size = batch_size,
                           .seed = 8,
                           .transforms = Compose(AddNoise()),
                           .num_workers = workers});
    std::vector<float> all;
    for (const Batch& b : loader) {
      EXPECT_EQ(b.x.shape(), (Shape{b.y.size(0), 2}));
      const std::vector<float> v = values(b.x);
      all.insert(all.end(), v.begin(), v.end());
    }
    return all;
  };
  const std::vector<float> reference = run(1, 0);
  EXPECT_EQ(run(7, 0), reference);
  EXPECT_EQ(run(7, 3), reference);
  // Sample i, drawn from its generator alone: the loader's seeds, reproduced here.
  const uint64_t transform_seed = mix_seeds(mix_seeds(8, 0), 0x7472616e73666f72ull);
  Generator gen(mix_seeds(transform_seed, 4));
  const std::vector<float> noise = values(data::normal({1, 2}, gen, 0.0, 1.0));
  EXPECT_EQ(reference[8], 4.0f + noise[0]);
  EXPECT_EQ(reference[9], -4.0f + noise[1]);
}

// A dataset that counts the batches it has produced, to measure what the loader holds.
class CountingDataset : public Dataset {
 public:
  explicit CountingDataset(int64_t n) : inner_(indexed_dataset(n)) {}
  int64_t size() const override { return inner_->size(); }
  Batch get_batch(const std::vector<int64_t>& indices) const override {
    Batch b = inner_->get_batch(indices);
    produced.fetch_add(1);
    return b;
  }
  mutable std::atomic<int64_t> produced{0};

 private:
  std::shared_ptr<TensorDataset> inner_;
};

TEST(DataLoader, WorkersStayWithinThePrefetchWindow) {
  for (const auto& [workers, prefetch] :
       std::vector<std::pair<int64_t, int64_t>>{{1, 1}, {2, 2}, {4, 1}}) {
    auto ds = std::make_shared<CountingDataset>(200);
    DataLoader loader(ds, {.batch_size = 2, .num_workers = workers, .prefetch = prefetch});
    int64_t consumed = 0, most_ahead = 0;
    for (const Batch& b : loader) {
      (void)b;
      ++consumed;
      // A slow consumer: the workers fill their window while it sleeps.
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
      most_ahead = std::max(most_ahead, ds->produced.load() - consumed);
    }
    EXPECT_EQ(consumed, 100);
    EXPECT_LE(most_ahead, workers * prefetch) << "workers " << workers << " prefetch " << prefetch;
    EXPECT_GE(most_ahead, 1);  // they did work ahead
  }
}

TEST(DataLoader, DestroyingALoaderWithSeveralWorkersMidEpochReturnsPromptly) {
  auto ds = std::make_shared<SlowDataset>(1000, std::chrono::milliseconds(20));
  const auto start = Clock::now();
  {
    DataLoader loader(ds, {.batch_size = 1, .num_workers = 4, .prefetch = 2});
    auto it = loader.begin();
    ++it;
    EXPECT_EQ(it->y.to_vector<int64_t>(), (std::vector<int64_t>{1}));
  }
  {
    // And before the first batch is taken.
    DataLoader loader(ds, {.batch_size = 1, .num_workers = 3});
    loader.begin();
  }
  EXPECT_LT(std::chrono::duration<double>(Clock::now() - start).count(), 2.0);
}

TEST(DataLoader, DestroyingTheLoaderAfterOneBatchReturnsPromptly) {
  auto ds = std::make_shared<SlowDataset>(1000, std::chrono::milliseconds(20));
  const auto start = Clock::now();
  {
    DataLoader loader(ds, {.batch_size = 1, .prefetch = 4});
    auto it = loader.begin();
    EXPECT_EQ(it->y.to_vector<int64_t>(), (std::vector<int64_t>{0}));
  }  // the iterator and then the loader go, with the worker mid-epoch
  EXPECT_LT(std::chrono::duration<double>(Clock::now() - start).count(), 2.0);
}

TEST(DataLoader, BreakingOutOfTheLoopStopsTheWorker) {
  auto ds = std::make_shared<SlowDataset>(1000, std::chrono::milliseconds(20));
  DataLoader loader(ds, {.batch_size = 1, .prefetch = 2});
  const auto start = Clock::now();
  for (const Batch& b : loader) {
    (void)b;
    break;
  }
  EXPECT_LT(std::chrono::duration<double>(Clock::now() - start).count(), 2.0);
  // And the loader still serves a new epoch.
  auto it = loader.begin();
  EXPECT_EQ(it->y.to_vector<int64_t>(), (std::vector<int64_t>{0}));
}

TEST(DataLoader, IteratorOfAStoppedEpochThrowsWhenAdvanced) {
  auto ds = indexed_dataset(40);
  auto loader = std::make_unique<DataLoader>(ds, DataLoaderOptions{.batch_size = 1, .prefetch = 1});
  auto it = loader->begin();
  loader.reset();
  EXPECT_THROW(++it, Error);
  EXPECT_TRUE(it == DataLoader::Iterator());
}

TEST(DataLoader, RejectsBadOptions) {
  EXPECT_THROW(DataLoader(indexed_dataset(4), {.batch_size = 0}), Error);
  EXPECT_THROW(DataLoader(indexed_dataset(4), {.prefetch = -1}), Error);
  EXPECT_THROW(DataLoader(indexed_dataset(4), {.num_workers = -1}), Error);
  EXPECT_THROW(DataLoader(nullptr), Error);
}

TEST(DataLoader, CudaPrefetchDeliversBatchesOnTheDevice) {
  if (!cuda::is_available()) GTEST_SKIP() << "no CUDA device: " << cuda::unavailable_reason();
  DataLoaderOptions opts{.batch_size = 64,
                         .shuffle = true,
                         .seed = 5,
                         .transforms = Compose(Normalize({1.0}, {2.0})),
                         .device = Device::cuda(0),
                         .prefetch = 3};
  auto ds = indexed_dataset(1000);
  DataLoader gpu(ds, opts);
  opts.device = Device::cpu();
  DataLoader cpu(ds, opts);
  std::vector<float> on_gpu, on_cpu;
  std::vector<int64_t> labels;
  for (const Batch& b : gpu) {
    EXPECT_TRUE(b.x.is_cuda());
    EXPECT_TRUE(b.y.is_cuda());
    // Work on the compute stream right away: ordered after the copy by the event.
    const std::vector<float> v = values(mul(b.x, 2.0).cpu());
    on_gpu.insert(on_gpu.end(), v.begin(), v.end());
    const auto y = b.y.cpu().to_vector<int64_t>();
    labels.insert(labels.end(), y.begin(), y.end());
  }
  for (const Batch& b : cpu) {
    const std::vector<float> v = values(mul(b.x, 2.0));
    on_cpu.insert(on_cpu.end(), v.begin(), v.end());
  }
  EXPECT_EQ(on_gpu, on_cpu);
  std::sort(labels.begin(), labels.end());
  for (int64_t i = 0; i < 1000; ++i) ASSERT_EQ(labels[static_cast<size_t>(i)], i);
}

TEST(DataLoader, CudaBatchesFromPageableMemoryAndWithoutAWorker) {
  if (!cuda::is_available()) GTEST_SKIP() << "no CUDA device: " << cuda::unavailable_reason();
  for (int64_t prefetch : {0, 2}) {
    for (bool pin : {false, true}) {
      DataLoader loader(indexed_dataset(100), {.batch_size = 16,
                                               .device = Device::cuda(0),
                                               .prefetch = prefetch,
                                               .pin_memory = pin});
      std::vector<int64_t> labels;
      for (const Batch& b : loader) {
        ASSERT_TRUE(b.x.is_cuda());
        const auto y = add(b.y, b.y).cpu().to_vector<int64_t>();
        labels.insert(labels.end(), y.begin(), y.end());
      }
      ASSERT_EQ(labels.size(), 100u) << "prefetch " << prefetch << " pin " << pin;
      for (int64_t i = 0; i < 100; ++i) ASSERT_EQ(labels[static_cast<size_t>(i)], 2 * i);
    }
  }
}

}  // namespace
