// DistributedDataParallel: wraps a model so that every rank trains the same weights on
// its own share of each batch, as PyTorch's DDP does (docs/distributed.md).
//
// Note [DDP gradient buckets]
// At construction rank 0's parameters and buffers are broadcast to every rank. The
// parameters that need gradients are packed, in reverse registration order (about the
// order backward produces their gradients), into buckets of about bucket_cap_mb each.
// A gradient-ready hook on each parameter (autograd::add_grad_ready_hook) counts down its
// bucket; a full bucket is copied into one flat tensor and all-reduced (averaged)
// asynchronously while backward goes on. Buckets start in bucket order on every rank, so
// the ranks' collectives match. When the last parameter's gradient is ready, still
// inside backward(), the reducer waits for every bucket and copies the averages back
// into .grad: after loss.backward() the gradients are the same on every rank, and the
// optimizer step needs nothing more. A parameter that got no gradient in this backward
// (not used by the forward) keeps its bucket from completing: sync_gradients() then
// reduces the rest, with zeros for the missing gradients, and the next forward() calls it
// if the user did not. Inside a no_sync() scope the hooks do nothing: gradients only
// accumulate locally, and the first backward after the scope averages the sum.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "ember/core/base/export.h"
#include "ember/core/tensor.h"
#include "ember/layers/module.h"

namespace ember::dist {

struct DDPOptions {
  double bucket_cap_mb = 25.0;
  // Broadcast rank 0's buffers (batch norm's running statistics) before each forward.
  bool broadcast_buffers = true;
};

class Reducer;

class EMBER_API DistributedDataParallel : public nn::Module {
 public:
  // Needs init_process_group() first. The module is registered as child "module", so
  // parameter names are "module.<name>" as in PyTorch.
  explicit DistributedDataParallel(nn::AnyModule module, DDPOptions options = {});
  ~DistributedDataParallel() override;
  DistributedDataParallel(DistributedDataParallel&&) noexcept;
  DistributedDataParallel& operator=(DistributedDataParallel&&) noexcept;

  Tensor forward(const Tensor& x) override;
  std::string name() const override { return "DistributedDataParallel"; }
  nn::Module& module() { return *module_; }

  // Reduces what backward left unreduced (parameters without a gradient in this pass) and
  // waits for every bucket; a no-op when backward already did (Note [DDP gradient buckets]).
  void sync_gradients();

  // While alive, backward passes accumulate gradients locally without communicating.
  class EMBER_API NoSyncGuard {
   public:
    explicit NoSyncGuard(DistributedDataParallel& ddp);
    ~NoSyncGuard();
    NoSyncGuard(const NoSyncGuard&) = delete;
    NoSyncGuard& operator=(const NoSyncGuard&) = delete;

   private:
    DistributedDataParallel& ddp_;
    bool prev_;
  };
  NoSyncGuard no_sync() { return NoSyncGuard(*this); }

  // How the parameters were bucketed: parameter indices (into module().parameters()) per
  // bucket, for tests and for tuning bucket_cap_mb.
  std::vector<std::vector<int64_t>> bucket_indices() const;

 private:
  std::shared_ptr<nn::Module> module_;
  DDPOptions options_;
  std::shared_ptr<Reducer> reducer_;
};

}  // namespace ember::dist
