// DataLoader: the per-epoch worker threads, the bounded window of batches in flight, pinned
// staging and the non-blocking transfer to the device (Note [DataLoader pipeline] in
// dataloader.h).
#include "ember/python_free_api/data/dataloader.h"

#include <algorithm>
#include <condition_variable>
#include <exception>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <typeinfo>
#include <utility>
#include <vector>

#include "ember/core/base/error.h"
#include "ember/core/random.h"
#include "ember/core/tensor.h"

namespace ember::data {

namespace {

// Separates the transforms' streams from the shuffle's for the same epoch.
constexpr uint64_t kTransformSalt = 0x7472616e73666f72ull;

void check_cpu(const char* what, const Tensor& t) {
  EMBER_CHECK_T(DeviceError, t.device().is_cpu(), "DataLoader: ", what, " ", shape_str(t.shape()),
                " is on ", t.device().str(), "; datasets and transforms must produce CPU tensors");
}

// "batch 3 of epoch 0 (samples 12, 40, 7)", at most kShown indices listed.
std::string batch_context(int64_t b, int64_t epoch, const std::vector<int64_t>& indices) {
  constexpr size_t kShown = 8;
  std::string s = "DataLoader: batch " + std::to_string(b) + " of epoch " + std::to_string(epoch) +
                  (indices.size() == 1 ? " (sample " : " (samples ");
  for (size_t i = 0; i < indices.size() && i < kShown; ++i) {
    s += (i ? ", " : "") + std::to_string(indices[i]);
  }
  if (indices.size() > kShown) s += ", ... " + std::to_string(indices.size()) + " in all";
  return s + "): ";
}

// Rethrows `e` with `context` before its message when it is exactly one of ember's error
// types (so it keeps its type); anything else, a user's own exception type included (it
// could not be rebuilt), is rethrown as it was.
[[noreturn]] void rethrow_with_context(const std::exception_ptr& e, const std::string& context) {
  try {
    std::rethrow_exception(e);
  } catch (const Error& x) {
    const std::type_info& type = typeid(x);
    const std::string message = context + x.what();
    if (type == typeid(ShapeError)) throw ShapeError(message);
    if (type == typeid(DTypeError)) throw DTypeError(message);
    if (type == typeid(DeviceError)) throw DeviceError(message);
    if (type == typeid(IOError)) throw IOError(message);
    if (type == typeid(CudaError)) throw CudaError(message);
    if (type == typeid(OutOfMemoryError)) throw OutOfMemoryError(message);
    if (type == typeid(ValueError)) throw ValueError(message);
    if (type == typeid(Error)) throw Error(message);
    throw;
  }
}

}  // namespace

// --- one epoch ----------------------------------------------------------------------------

struct DataLoader::Epoch {
  std::shared_ptr<const Dataset> dataset;
  DataLoaderOptions options;
  std::vector<int64_t> order;
  int64_t epoch = 0;
  int64_t num_batches = 0;
  uint64_t transform_seed = 0;
  int64_t window = 0;  // prefetch * num_workers: batches taken but not yet handed out

  // A batch a worker finished, or the exception it met.
  struct Slot {
    std::unique_ptr<Batch> batch;
    std::exception_ptr error;
  };

  std::mutex mu;
  std::condition_variable may_take;  // workers wait here for room in the window
  std::condition_variable ready;     // the consumer waits here for its next batch
  std::map<int64_t, Slot> done;      // finished batches not yet handed out, by number
  int64_t next_to_take = 0;          // the next batch number a worker takes
  int64_t handed_out = 0;            // batches the consumer has taken
  bool failed = false;               // a batch failed: take no later one
  bool stopping = false;
  std::vector<std::thread> workers;

  // Consumer side only.
  std::unique_ptr<Batch> current;
  bool finished = false;
  int64_t next_inline = 0;  // no workers: the next batch to prepare

  ~Epoch() { stop(); }

  bool threaded() const { return options.num_workers > 0 && options.prefetch > 0; }

  void start() {
    if (!threaded()) return;
    window = options.prefetch * options.num_workers;
    const int64_t n = std::min(options.num_workers, num_batches);
    for (int64_t w = 0; w < n; ++w) workers.emplace_back([this] { run(); });
  }

  void stop() {
    std::map<int64_t, Slot> dropped;
    {
      std::lock_guard<std::mutex> lock(mu);
      stopping = true;
      dropped.swap(done);
    }
    may_take.notify_all();
    ready.notify_all();
    for (std::thread& w : workers) {
      if (w.joinable()) w.join();
    }
  }

  void run() {
    for (;;) {
      int64_t b;
      {
        std::unique_lock<std::mutex> lock(mu);
        may_take.wait(lock, [&] {
          return stopping || failed || next_to_take >= num_batches ||
                 next_to_take < handed_out + window;
        });
        if (stopping || failed || next_to_take >= num_batches) return;
        b = next_to_take++;
      }
      Slot slot;
      try {
        slot.batch = prepare(b);
      } catch (...) {
        slot.error = std::current_exception();
      }
      {
        std::lock_guard<std::mutex> lock(mu);
        if (stopping) return;  // `slot` is dropped outside the lock
        if (slot.error) failed = true;
        done.emplace(b, std::move(slot));
      }
      ready.notify_one();
    }
  }

  std::vector<int64_t> batch_indices(int64_t b) const {
    const auto n = static_cast<int64_t>(order.size());
    const int64_t first = b * options.batch_size;
    const int64_t last = std::min(n, first + options.batch_size);
    return {order.begin() + first, order.begin() + last};
  }

  std::unique_ptr<Batch> prepare(int64_t b) const {
    const std::vector<int64_t> indices = batch_indices(b);
    try {
      return prepare(indices);
    } catch (...) {
      rethrow_with_context(std::current_exception(), batch_context(b, epoch, indices));
    }
  }

  std::unique_ptr<Batch> prepare(const std::vector<int64_t>& indices) const {
    Batch raw = dataset->get_batch(indices);
    const auto count = static_cast<int64_t>(indices.size());
    EMBER_CHECK_T(ShapeError, raw.x.defined() && raw.x.dim() >= 1 && raw.x.size(0) == count,
                  "the dataset returned x ",
                  raw.x.defined() ? shape_str(raw.x.shape()) : std::string("(undefined)"),
                  " for a batch of ", count, " indices");
    EMBER_CHECK_T(ShapeError, !raw.y.defined() || (raw.y.dim() >= 1 && raw.y.size(0) == count),
                  "the dataset returned y ",
                  raw.y.defined() ? shape_str(raw.y.shape()) : std::string(), " for a batch of ",
                  count, " indices");
    const bool transform_y = !options.target_transforms.empty() && raw.y.defined();
    if (!options.transforms.empty() || transform_y) {
      // One generator per sample (Note [Per-sample randomness] in transforms.h); the
      // target transforms continue the streams the input transforms left.
      std::vector<Generator> gens;
      gens.reserve(indices.size());
      for (const int64_t i : indices) {
        gens.emplace_back(mix_seeds(transform_seed, static_cast<uint64_t>(i)));
      }
      if (!options.transforms.empty()) raw.x = options.transforms.apply_per_sample(raw.x, gens);
      if (transform_y) raw.y = options.target_transforms.apply_per_sample(raw.y, gens);
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
    if (!threaded()) {
      advance_inline();
      return;
    }
    std::unique_lock<std::mutex> lock(mu);
    const int64_t b = handed_out;
    if (b >= num_batches) {
      finished = true;
      lock.unlock();
      join();
      return;
    }
    ready.wait(lock, [&] { return stopping || done.count(b) != 0; });
    auto it = done.find(b);
    if (it == done.end()) {
      finished = true;
      lock.unlock();
      throw ValueError("DataLoader: this epoch was stopped after " + std::to_string(b) + " of " +
                       std::to_string(num_batches) +
                       " batches (by a later begin() or by destroying the loader); "
                       "its iterators cannot be advanced");
    }
    Slot slot = std::move(it->second);
    done.erase(it);
    if (slot.error) {
      finished = true;
      stopping = true;  // the epoch ends here: workers drop what they hold
      lock.unlock();
      may_take.notify_all();
      join();
      std::rethrow_exception(slot.error);
    }
    ++handed_out;
    lock.unlock();
    may_take.notify_all();
    current = std::move(slot.batch);
  }

  void join() {
    for (std::thread& w : workers) {
      if (w.joinable()) w.join();
    }
  }

  void advance_inline() {
    EMBER_CHECK_T(ValueError, !stopping, "DataLoader: this epoch was stopped after ", next_inline,
                  " of ", num_batches,
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
  EMBER_CHECK_T(ValueError, !at_end(), "DataLoader: dereferencing an iterator past the last batch");
  return *epoch_->current;
}

DataLoader::Iterator& DataLoader::Iterator::operator++() {
  EMBER_CHECK_T(ValueError, epoch_ != nullptr, "DataLoader: incrementing an end iterator");
  epoch_->advance();
  return *this;
}

// --- DataLoader ---------------------------------------------------------------------------

DataLoader::DataLoader(std::shared_ptr<const Dataset> dataset, DataLoaderOptions options)
    : dataset_(std::move(dataset)), options_(std::move(options)) {
  EMBER_CHECK_T(ValueError, dataset_ != nullptr, "DataLoader: the dataset is null");
  EMBER_CHECK_T(ValueError, options_.batch_size >= 1,
                "DataLoader: batch_size must be at least 1, got ", options_.batch_size);
  EMBER_CHECK_T(ValueError, options_.prefetch >= 0,
                "DataLoader: prefetch must be non-negative, got ", options_.prefetch);
  EMBER_CHECK_T(ValueError, options_.num_workers >= 0,
                "DataLoader: num_workers must be non-negative, got ", options_.num_workers);
  if (options_.sampler) {
    EMBER_CHECK_T(ValueError, !options_.shuffle,
                  "DataLoader: shuffle is set together with a sampler; the sampler orders the "
                  "samples (DistributedSamplerOptions::shuffle), leave the loader's shuffle false");
  }
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
  sampler_ = options_.sampler != nullptr
                 ? options_.sampler
                 : std::make_shared<const DistributedSampler>(
                       dataset_->size(), DistributedSamplerOptions{.num_replicas = 1,
                                                                   .rank = 0,
                                                                   .shuffle = options_.shuffle,
                                                                   .seed = seed_});
  check_sampler();
}

void DataLoader::check_sampler() const {
  EMBER_CHECK_T(ValueError, sampler_->dataset_size() == dataset_->size(),
                "DataLoader: the sampler is for ", sampler_->dataset_size(),
                " samples but the dataset has ", dataset_->size());
}

DataLoader::~DataLoader() { stop_current(); }

DataLoader::DataLoader(DataLoader&&) noexcept = default;

DataLoader& DataLoader::operator=(DataLoader&& other) noexcept {
  if (this != &other) {
    stop_current();
    dataset_ = std::move(other.dataset_);
    options_ = std::move(other.options_);
    seed_ = other.seed_;
    sampler_ = std::move(other.sampler_);
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
  const int64_t n = sampler_->size();
  const int64_t bs = options_.batch_size;
  return options_.drop_last ? n / bs : (n + bs - 1) / bs;
}

DataLoader::Iterator DataLoader::begin() {
  stop_current();
  check_sampler();  // the dataset may have changed size since
  const int64_t e = next_epoch_++;
  auto ep = std::make_shared<Epoch>();
  ep->dataset = dataset_;
  ep->options = options_;
  ep->epoch = e;
  ep->num_batches = size();
  ep->transform_seed = mix_seeds(mix_seeds(seed_, static_cast<uint64_t>(e)), kTransformSalt);
  ep->order = sampler_->indices(e);
  ep->start();
  current_ = ep;
  Iterator it(ep);
  ep->advance();
  return it;
}

}  // namespace ember::data
