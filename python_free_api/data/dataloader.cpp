// DataLoader: the per-epoch worker thread, the bounded batch queue, pinned staging and the
// non-blocking transfer to the device (see Note [DataLoader pipeline] in dataloader.h).
#include "ember/python_free_api/data/dataloader.h"

#include <algorithm>
#include <condition_variable>
#include <deque>
#include <exception>
#include <mutex>
#include <numeric>
#include <thread>
#include <utility>
#include <vector>

#include "ember/core/base/error.h"
#include "ember/core/random.h"
#include "ember/core/tensor.h"

namespace ember::data {

namespace {

uint64_t splitmix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

uint64_t mix(uint64_t a, uint64_t b) { return splitmix64(a ^ splitmix64(b)); }

// Separates the transforms' stream from the shuffle's for the same epoch.
constexpr uint64_t kTransformSalt = 0x7472616e73666f72ull;

void check_cpu(const char* what, const Tensor& t) {
  EMBER_CHECK_T(DeviceError, t.device().is_cpu(), "DataLoader: ", what, " ", shape_str(t.shape()),
                " is on ", t.device().str(), "; datasets and transforms must produce CPU tensors");
}

}  // namespace

// --- one epoch ----------------------------------------------------------------------------

struct DataLoader::Epoch {
  std::shared_ptr<const Dataset> dataset;
  DataLoaderOptions options;
  std::vector<int64_t> order;
  int64_t num_batches = 0;
  uint64_t epoch_seed = 0;

  std::mutex mu;
  std::condition_variable not_full;   // the worker waits here for queue space
  std::condition_variable not_empty;  // the consumer waits here for a batch
  std::deque<std::unique_ptr<Batch>> queue;
  bool stopping = false;
  bool worker_done = false;
  std::exception_ptr error;
  std::thread worker;

  // Consumer side only.
  std::unique_ptr<Batch> current;
  bool finished = false;
  int64_t consumed = 0;     // batches handed out
  int64_t next_inline = 0;  // prefetch == 0: the next batch to prepare

  ~Epoch() { stop(); }

  void start() {
    if (options.prefetch == 0) return;
    if (num_batches == 0) {
      worker_done = true;  // nothing to prepare: the first advance() ends the epoch
      return;
    }
    worker = std::thread([this] { run(); });
  }

  void stop() {
    std::deque<std::unique_ptr<Batch>> dropped;
    {
      std::lock_guard<std::mutex> lock(mu);
      stopping = true;
      dropped.swap(queue);
    }
    not_full.notify_all();
    not_empty.notify_all();
    if (worker.joinable()) worker.join();
  }

  void run() {
    try {
      for (int64_t b = 0; b < num_batches; ++b) {
        {
          std::unique_lock<std::mutex> lock(mu);
          not_full.wait(lock, [&] {
            return stopping || static_cast<int64_t>(queue.size()) < options.prefetch;
          });
          if (stopping) break;
        }
        std::unique_ptr<Batch> p = prepare(b);
        {
          std::lock_guard<std::mutex> lock(mu);
          if (stopping) break;  // `p` is dropped outside the lock, below
          queue.push_back(std::move(p));
        }
        not_empty.notify_one();
      }
    } catch (...) {
      std::lock_guard<std::mutex> lock(mu);
      error = std::current_exception();
    }
    {
      std::lock_guard<std::mutex> lock(mu);
      worker_done = true;
    }
    not_empty.notify_all();
  }

  std::unique_ptr<Batch> prepare(int64_t b) const {
    const int64_t n = static_cast<int64_t>(order.size());
    const int64_t first = b * options.batch_size;
    const int64_t last = std::min(n, first + options.batch_size);
    const std::vector<int64_t> indices(order.begin() + first, order.begin() + last);
    Batch raw = dataset->get_batch(indices);
    const int64_t count = last - first;
    EMBER_CHECK_T(ShapeError, raw.x.defined() && raw.x.dim() >= 1 && raw.x.size(0) == count,
                  "DataLoader: the dataset returned x ",
                  raw.x.defined() ? shape_str(raw.x.shape()) : std::string("(undefined)"),
                  " for a batch of ", count, " indices");
    EMBER_CHECK_T(ShapeError, !raw.y.defined() || (raw.y.dim() >= 1 && raw.y.size(0) == count),
                  "DataLoader: the dataset returned y ",
                  raw.y.defined() ? shape_str(raw.y.shape()) : std::string(), " for a batch of ",
                  count, " indices");
    Generator gen(mix(mix(epoch_seed, kTransformSalt), static_cast<uint64_t>(b)));
    if (!options.transforms.empty()) raw.x = options.transforms.apply(raw.x, gen);
    if (!options.target_transforms.empty() && raw.y.defined()) {
      raw.y = options.target_transforms.apply(raw.y, gen);
    }
    check_cpu("x", raw.x);
    if (raw.y.defined()) check_cpu("y", raw.y);

    // Staged on the host, then sent without waiting (Note [Non-blocking copies] in
    // core/memory/transfer.h); for a CPU loader to() returns the staged tensor itself.
    auto to_device = [&](const Tensor& t) {
      const Tensor host = options.pin_memory ? t.pin_memory() : t.contiguous();
      return host.to(options.device, /*non_blocking=*/true);
    };
    auto p = std::make_unique<Batch>();
    p->x = to_device(raw.x);
    if (raw.y.defined()) p->y = to_device(raw.y);
    return p;
  }

  // Drops the current batch and makes the next one current (or finishes the epoch).
  void advance() {
    current.reset();
    if (finished) return;
    if (options.prefetch == 0) {
      advance_inline();
      return;
    }
    std::unique_lock<std::mutex> lock(mu);
    not_empty.wait(lock, [&] { return !queue.empty() || worker_done || stopping; });
    if (!queue.empty()) {
      std::unique_ptr<Batch> p = std::move(queue.front());
      queue.pop_front();
      lock.unlock();
      not_full.notify_one();
      ++consumed;
      current = std::move(p);
      return;
    }
    finished = true;
    std::exception_ptr e = std::exchange(error, nullptr);
    lock.unlock();
    if (e) {
      if (worker.joinable()) worker.join();
      std::rethrow_exception(e);
    }
    EMBER_CHECK(consumed == num_batches, "DataLoader: this epoch was stopped after ", consumed,
                " of ", num_batches,
                " batches (by a later begin() or by destroying the loader); "
                "its iterators cannot be advanced");
    if (worker.joinable()) worker.join();
  }

  void advance_inline() {
    EMBER_CHECK(!stopping, "DataLoader: this epoch was stopped after ", next_inline, " of ",
                num_batches,
                " batches (by a later begin() or by destroying the loader); "
                "its iterators cannot be advanced");
    if (next_inline >= num_batches) {
      finished = true;
      return;
    }
    try {
      current = prepare(next_inline++);
    } catch (...) {
      finished = true;
      throw;
    }
  }
};

// --- Iterator -----------------------------------------------------------------------------

bool DataLoader::Iterator::at_end() const {
  return epoch_ == nullptr || epoch_->current == nullptr;
}

const Batch& DataLoader::Iterator::operator*() const {
  EMBER_CHECK(!at_end(), "DataLoader: dereferencing an iterator past the last batch");
  return *epoch_->current;
}

DataLoader::Iterator& DataLoader::Iterator::operator++() {
  EMBER_CHECK(epoch_ != nullptr, "DataLoader: incrementing an end iterator");
  epoch_->advance();
  return *this;
}

// --- DataLoader ---------------------------------------------------------------------------

DataLoader::DataLoader(std::shared_ptr<const Dataset> dataset, DataLoaderOptions options)
    : dataset_(std::move(dataset)), options_(std::move(options)) {
  EMBER_CHECK(dataset_ != nullptr, "DataLoader: the dataset is null");
  EMBER_CHECK(options_.batch_size >= 1, "DataLoader: batch_size must be at least 1, got ",
              options_.batch_size);
  EMBER_CHECK(options_.prefetch >= 0, "DataLoader: prefetch must be non-negative, got ",
              options_.prefetch);
  if (options_.device.is_cuda()) {
    // Validates the device and creates its streams (with its first tensor) here rather
    // than on the worker.
    options_.device = Device::cuda(options_.device.index());
    (void)Tensor::empty({0}, {.device = options_.device});
  }
  if (options_.seed) {
    seed_ = *options_.seed;
  } else {
    std::lock_guard<std::mutex> lock(cpu_generator_mutex());
    seed_ = cpu_generator()();
  }
}

DataLoader::~DataLoader() { stop_current(); }

DataLoader::DataLoader(DataLoader&&) noexcept = default;

DataLoader& DataLoader::operator=(DataLoader&& other) noexcept {
  if (this != &other) {
    stop_current();
    dataset_ = std::move(other.dataset_);
    options_ = std::move(other.options_);
    seed_ = other.seed_;
    next_epoch_ = other.next_epoch_;
    current_ = std::move(other.current_);
  }
  return *this;
}

void DataLoader::stop_current() {
  if (std::shared_ptr<Epoch> e = current_.lock()) e->stop();
  current_.reset();
}

int64_t DataLoader::size() const {
  const int64_t n = dataset_->size();
  const int64_t bs = options_.batch_size;
  return options_.drop_last ? n / bs : (n + bs - 1) / bs;
}

DataLoader::Iterator DataLoader::begin() {
  stop_current();
  const int64_t e = next_epoch_++;
  auto ep = std::make_shared<Epoch>();
  ep->dataset = dataset_;
  ep->options = options_;
  ep->num_batches = size();
  ep->epoch_seed = mix(seed_, static_cast<uint64_t>(e));
  const int64_t n = dataset_->size();
  if (options_.shuffle) {
    ep->order = random_permutation(n, ep->epoch_seed);
  } else {
    ep->order.resize(static_cast<size_t>(n));
    std::iota(ep->order.begin(), ep->order.end(), int64_t{0});
  }
  ep->start();
  current_ = ep;
  Iterator it(ep);
  ep->advance();
  return it;
}

}  // namespace ember::data
