// DataLoader: the per-epoch worker thread, the bounded batch queue, pinned staging and the
// copy-stream transfer (see Note [DataLoader pipeline] in dataloader.h).
#include "ember/python_free_api/data/dataloader.h"

#include <cuda_runtime_api.h>

#include <algorithm>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <exception>
#include <mutex>
#include <numeric>
#include <thread>
#include <utility>
#include <vector>

#include "ember/core/base/cuda_check.h"
#include "ember/core/cuda_context.h"
#include "ember/core/base/error.h"
#include "ember/core/memory/cuda_memory.h"
#include "ember/core/memory/pinned_pool.h"
#include "ember/core/random.h"

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

// A batch ready to hand out: on the loader's device, with the host staging it was copied
// from kept alive until the copy has completed.
struct Prepared {
  Batch batch;
  Tensor staged_x;
  Tensor staged_y;
  cudaEvent_t ready = nullptr;  // recorded on the copy stream after the copies
  int device = -1;

  Prepared() = default;
  Prepared(const Prepared&) = delete;
  Prepared& operator=(const Prepared&) = delete;
  ~Prepared() {
    if (ready != nullptr) {
      // Releasing the staging buffers to the pool before the DMA read them would let the
      // next batch overwrite bytes still in flight.
      EMBER_CUDA_WARN(cudaEventSynchronize(ready));
      EMBER_CUDA_WARN(cudaEventDestroy(ready));
    }
  }
};

// `t` (a CPU tensor) copied into a page-locked buffer from ember's pinned pool.
Tensor stage_pinned(const Tensor& t) {
  Tensor src = t.contiguous();
  void* p = memory::pinned_alloc(src.nbytes());
  Tensor out = Tensor::from_blob(p, src.shape(), src.dtype(), Device::cpu(),
                                 [](void* q) { memory::pinned_free(q); });
  if (src.nbytes() > 0) std::memcpy(p, src.data_ptr(), src.nbytes());
  return out;
}

// Starts the copy of host tensor `host` to `device` on `copy`; the memory is allocated on
// the copy stream and announced to `compute`, where it will be read.
Tensor copy_to_device(const Tensor& host, int device, cudaStream_t copy, cudaStream_t compute) {
  void* d = cuda::raw_alloc(host.nbytes(), device, copy);
  Tensor out = Tensor::from_blob(d, host.shape(), host.dtype(), Device::cuda(device),
                                 [device](void* q) { cuda::raw_free(q, device); });
  if (d != nullptr) {
    cuda::record_stream(d, device, compute);
    EMBER_CUDA_CHECK(
        cudaMemcpyAsync(d, host.data_ptr(), host.nbytes(), cudaMemcpyHostToDevice, copy));
  }
  return out;
}

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
  std::deque<std::unique_ptr<Prepared>> queue;
  bool stopping = false;
  bool worker_done = false;
  std::exception_ptr error;
  std::thread worker;

  // Consumer side only.
  std::unique_ptr<Prepared> current;
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
    std::deque<std::unique_ptr<Prepared>> dropped;
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
      std::unique_ptr<cuda::DeviceGuard> guard;
      if (options.device.is_cuda())
        guard = std::make_unique<cuda::DeviceGuard>(options.device.index());
      for (int64_t b = 0; b < num_batches; ++b) {
        {
          std::unique_lock<std::mutex> lock(mu);
          not_full.wait(lock, [&] {
            return stopping || static_cast<int64_t>(queue.size()) < options.prefetch;
          });
          if (stopping) break;
        }
        std::unique_ptr<Prepared> p = prepare(b);
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

  std::unique_ptr<Prepared> prepare(int64_t b) const {
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

    auto p = std::make_unique<Prepared>();
    Tensor host_x = options.pin_memory ? stage_pinned(raw.x) : raw.x.contiguous();
    Tensor host_y;
    if (raw.y.defined()) host_y = options.pin_memory ? stage_pinned(raw.y) : raw.y.contiguous();
    if (!options.device.is_cuda()) {
      p->batch = {host_x, host_y};
      return p;
    }
    const int dev = options.device.index();
    cudaStream_t copy = cuda::copy_stream(dev);
    cudaStream_t compute = cuda::compute_stream(dev);
    p->device = dev;
    p->staged_x = host_x;
    p->staged_y = host_y;
    p->batch.x = copy_to_device(host_x, dev, copy, compute);
    if (host_y.defined()) p->batch.y = copy_to_device(host_y, dev, copy, compute);
    EMBER_CUDA_CHECK(
        cudaEventCreateWithFlags(&p->ready, cudaEventDisableTiming | cudaEventBlockingSync));
    EMBER_CUDA_CHECK(cudaEventRecord(p->ready, copy));
    return p;
  }

  // Orders the compute stream after the batch's copy; the host does not wait.
  static void hand_out(const Prepared& p) {
    if (p.ready == nullptr) return;
    cuda::DeviceGuard guard(p.device);
    EMBER_CUDA_CHECK(cudaStreamWaitEvent(cuda::compute_stream(p.device), p.ready, 0));
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
      std::unique_ptr<Prepared> p = std::move(queue.front());
      queue.pop_front();
      lock.unlock();
      not_full.notify_one();
      ++consumed;
      hand_out(*p);
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
      std::unique_ptr<Prepared> p = prepare(next_inline++);
      hand_out(*p);
      current = std::move(p);
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
  return epoch_->current->batch;
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
    // Validates the device and creates its streams here rather than on the worker.
    options_.device = Device::cuda(options_.device.index());
    cuda::copy_stream(options_.device.index());
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
