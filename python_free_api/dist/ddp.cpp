// DistributedDataParallel and its gradient reducer (Note [DDP gradient buckets]).
#include "ember/python_free_api/dist/ddp.h"

#include <algorithm>

#include "ember/core/autograd.h"
#include "ember/core/dist/dist.h"
#include "ember/core/ops.h"

namespace ember::dist {

class Reducer {
 public:
  Reducer(std::vector<Tensor> params, double bucket_cap_mb) : params_(std::move(params)) {
    const auto cap = static_cast<size_t>(std::max(0.0, bucket_cap_mb) * 1024 * 1024);
    // Reverse order: backward makes the last layers' gradients first.
    for (int64_t i = static_cast<int64_t>(params_.size()) - 1; i >= 0; --i) {
      const Tensor& p = params_[i];
      const bool fits = !buckets_.empty() && buckets_.back().dtype == p.dtype() &&
                        buckets_.back().device == p.device() &&
                        buckets_.back().bytes + p.nbytes() <= cap;
      if (!fits) buckets_.push_back(Bucket{.dtype = p.dtype(), .device = p.device()});
      Bucket& b = buckets_.back();
      b.params.push_back(i);
      b.offsets.push_back(b.numel);
      b.numel += p.numel();
      b.bytes += p.nbytes();
    }
    bucket_of_.assign(params_.size(), 0);
    for (size_t b = 0; b < buckets_.size(); ++b) {
      for (int64_t i : buckets_[b].params) bucket_of_[i] = b;
    }
    reset();
  }

  // Hooks hold a weak pointer: a graph that outlives the wrapper calls nothing.
  void install_hooks(const std::shared_ptr<Reducer>& self) {
    std::weak_ptr<Reducer> weak = self;
    for (size_t i = 0; i < params_.size(); ++i) {
      accumulators_.push_back(autograd::add_grad_ready_hook(
          params_[i], [weak, i](const Tensor&) {
            if (auto r = weak.lock()) r->mark_ready(i);
          }));
    }
  }

  void mark_ready(size_t i) {
    if (!sync_enabled_ || ready_[i]) return;
    ready_[i] = true;
    started_ = true;
    Bucket& b = buckets_[bucket_of_[i]];
    --b.pending;
    launch_ready_buckets();
    if (next_bucket_ == buckets_.size()) finish();
  }

  void sync() {
    if (!sync_enabled_ || !started_) return;
    for (size_t i = 0; i < params_.size(); ++i) {
      if (ready_[i]) continue;
      if (!params_[i].grad().defined()) params_[i].set_grad(zeros_like(params_[i]));
      ready_[i] = true;
      --buckets_[bucket_of_[i]].pending;
    }
    launch_ready_buckets();
    finish();
  }

  bool sync_enabled_ = true;

  std::vector<std::vector<int64_t>> bucket_indices() const {
    std::vector<std::vector<int64_t>> out;
    for (const Bucket& b : buckets_) out.push_back(b.params);
    return out;
  }

 private:
  struct Bucket {
    DType dtype = kFloat32;
    Device device = Device::cpu();
    std::vector<int64_t> params;
    std::vector<int64_t> offsets;
    int64_t numel = 0;
    size_t bytes = 0;
    int64_t pending = 0;
    Tensor flat;
    Work work;
  };

  void reset() {
    ready_.assign(params_.size(), false);
    for (Bucket& b : buckets_) {
      b.pending = static_cast<int64_t>(b.params.size());
      b.work = Work();
    }
    next_bucket_ = 0;
    started_ = false;
  }

  void launch_ready_buckets() {
    NoGradGuard no_grad;
    while (next_bucket_ < buckets_.size() && buckets_[next_bucket_].pending == 0) {
      Bucket& b = buckets_[next_bucket_++];
      if (!b.flat.defined()) b.flat = empty({b.numel}, {.dtype = b.dtype, .device = b.device});
      for (size_t k = 0; k < b.params.size(); ++k) {
        const Tensor& p = params_[b.params[k]];
        b.flat.narrow(0, b.offsets[k], p.numel()).copy_(p.grad().reshape({-1}));
      }
      b.work = all_reduce(b.flat, ReduceOp::Avg);
    }
  }

  void finish() {
    NoGradGuard no_grad;
    for (Bucket& b : buckets_) {
      b.work.wait();
      for (size_t k = 0; k < b.params.size(); ++k) {
        const Tensor& p = params_[b.params[k]];
        Tensor g = p.grad();
        g.copy_(b.flat.narrow(0, b.offsets[k], p.numel()).view(p.shape()));
      }
    }
    reset();
  }

  std::vector<Tensor> params_;
  std::vector<Bucket> buckets_;
  std::vector<size_t> bucket_of_;
  std::vector<bool> ready_;
  std::vector<std::shared_ptr<autograd::Node>> accumulators_;
  size_t next_bucket_ = 0;
  bool started_ = false;
};

namespace {

// Every rank must wrap the same architecture: compare the parameters' count and sizes.
void check_same_model(const std::vector<Tensor>& params) {
  int64_t total = 0;
  for (const Tensor& p : params) total += p.numel();
  const int world = get_world_size();
  Tensor mine = Tensor::from_vector<int64_t>({static_cast<int64_t>(params.size()), total}, {2});
  const std::string backend = get_backend();
  if (backend == "nccl") mine = mine.to(params.empty() ? Device::cpu() : params[0].device());
  Tensor all = empty({2 * world}, {.dtype = kInt64, .device = mine.device()});
  all_gather_into_tensor(all, mine).wait();
  const std::vector<int64_t> v = all.cpu().to_vector<int64_t>();
  for (int r = 0; r < world; ++r) {
    EMBER_CHECK_T(dist::DistributedError, v[2 * r] == v[0] && v[2 * r + 1] == v[1],
                  "DistributedDataParallel: rank ", r, "'s model has ", v[2 * r],
                  " parameters with ", v[2 * r + 1], " elements but rank 0's has ", v[0],
                  " with ", v[1], ": every rank must wrap the same model");
  }
}

void broadcast_from_rank0(const std::vector<Tensor>& tensors) {
  NoGradGuard no_grad;
  std::vector<Work> works;
  for (const Tensor& t : tensors) {
    if (t.defined() && t.numel() > 0) works.push_back(broadcast(t, 0));
  }
  for (Work& w : works) w.wait();
}

std::vector<Tensor> buffers_of(const nn::Module& m) {
  std::vector<Tensor> out;
  for (auto& [name, t] : m.named_buffers()) out.push_back(t);
  return out;
}

}  // namespace

DistributedDataParallel::DistributedDataParallel(nn::AnyModule module, DDPOptions options)
    : module_(module.ptr()), options_(options) {
  EMBER_CHECK_T(dist::DistributedError, is_initialized(), "DistributedDataParallel: the "
                "default process group is not initialized; call dist::init_process_group() "
                "first");
  EMBER_CHECK_T(ValueError, module_ != nullptr, "DistributedDataParallel: no module given");
  register_module("module", module_);
  std::vector<Tensor> params = module_->parameters();
  check_same_model(params);
  broadcast_from_rank0(params);
  broadcast_from_rank0(buffers_of(*module_));
  std::vector<Tensor> trainable;
  for (const Tensor& p : params) {
    if (p.requires_grad()) trainable.push_back(p);
  }
  reducer_ = std::make_shared<Reducer>(std::move(trainable), options_.bucket_cap_mb);
  reducer_->install_hooks(reducer_);
}

DistributedDataParallel::~DistributedDataParallel() = default;
DistributedDataParallel::DistributedDataParallel(DistributedDataParallel&&) noexcept = default;
DistributedDataParallel& DistributedDataParallel::operator=(DistributedDataParallel&&) noexcept =
    default;

Tensor DistributedDataParallel::forward(const Tensor& x) {
  // A backward that left parameters without gradients was not reduced yet.
  reducer_->sync();
  if (options_.broadcast_buffers && get_world_size() > 1) {
    broadcast_from_rank0(buffers_of(*module_));
  }
  return (*module_)(x);
}

void DistributedDataParallel::sync_gradients() { reducer_->sync(); }

std::vector<std::vector<int64_t>> DistributedDataParallel::bucket_indices() const {
  return reducer_->bucket_indices();
}

DistributedDataParallel::NoSyncGuard::NoSyncGuard(DistributedDataParallel& ddp)
    : ddp_(ddp), prev_(ddp.reducer_->sync_enabled_) {
  ddp_.reducer_->sync_enabled_ = false;
}

DistributedDataParallel::NoSyncGuard::~NoSyncGuard() { ddp_.reducer_->sync_enabled_ = prev_; }

}  // namespace ember::dist
