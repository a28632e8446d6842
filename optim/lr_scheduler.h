// Learning-rate schedules with PyTorch's semantics: StepLR, ExponentialLR,
// CosineAnnealingLR, LinearLR (warmup) and OneCycleLR. Construct one on an optimizer, then
// call step() once per epoch (once per batch for OneCycleLR), after optimizer.step().
#pragma once

#include <cstdint>
#include <vector>

#include "ember/core/base/export.h"
#include "ember/core/state_dict.h"
#include "ember/optim/optimizer.h"

namespace ember::optim {

// Note [LR schedule semantics]
// As in PyTorch, constructing a schedule performs its first step: last_epoch() goes from
// -1 to 0 and every group's lr becomes the schedule's value at epoch 0 (for LinearLR
// base_lr * start_factor, for OneCycleLR max_lr / div_factor). Each step() then advances
// last_epoch by one and sets the lr of epoch last_epoch. The values come from each
// schedule's closed form in terms of the groups' lrs at construction (base_lrs) and
// last_epoch, so set_last_epoch(e) (resuming) gives exactly the lr a run would have at
// epoch e. Two schedules driving the same optimizer overwrite each other rather than
// compose.
class EMBER_API LRScheduler {
 public:
  virtual ~LRScheduler() = default;
  LRScheduler(const LRScheduler&) = delete;
  LRScheduler& operator=(const LRScheduler&) = delete;

  // Advances one epoch (or batch) and sets the optimizer's learning rates.
  void step();
  // The learning rates this schedule set last, one per group.
  const std::vector<double>& get_last_lr() const { return last_lr_; }
  int64_t last_epoch() const { return last_epoch_; }
  // Jumps to `epoch` and sets the learning rates of that epoch.
  void set_last_epoch(int64_t epoch);
  const std::vector<double>& base_lrs() const { return base_lrs_; }

  // "last_epoch" (int64, rank 0) and "base_lrs" (float64 [groups]).
  StateDict state_dict() const;
  void load_state_dict(const StateDict& dict);

 protected:
  explicit LRScheduler(Optimizer& optimizer);
  // The derived constructor's last call: the step to epoch 0 (see the Note).
  void initial_step();
  // The learning rate of `group` at `epoch` (>= 0).
  virtual double lr_at(size_t group, int64_t epoch) const = 0;
  // Called after the lrs of an epoch are set (OneCycleLR also sets the momentum).
  virtual void on_epoch(int64_t /*epoch*/) {}
  virtual const char* name() const = 0;

  Optimizer& optimizer_;
  std::vector<double> base_lrs_;
  int64_t last_epoch_ = -1;
  std::vector<double> last_lr_;

 private:
  void apply(int64_t epoch);
};

// lr = base_lr * gamma^floor(epoch / step_size).
class EMBER_API StepLR : public LRScheduler {
 public:
  StepLR(Optimizer& optimizer, int64_t step_size, double gamma = 0.1);

 protected:
  double lr_at(size_t group, int64_t epoch) const override;
  const char* name() const override { return "StepLR"; }

 private:
  int64_t step_size_;
  double gamma_;
};

// lr = base_lr * gamma^epoch.
class EMBER_API ExponentialLR : public LRScheduler {
 public:
  ExponentialLR(Optimizer& optimizer, double gamma);

 protected:
  double lr_at(size_t group, int64_t epoch) const override;
  const char* name() const override { return "ExponentialLR"; }

 private:
  double gamma_;
};

// lr = eta_min + (base_lr - eta_min) * (1 + cos(pi * epoch / T_max)) / 2 (periodic with
// period 2 * T_max past T_max, as PyTorch's).
class EMBER_API CosineAnnealingLR : public LRScheduler {
 public:
  CosineAnnealingLR(Optimizer& optimizer, int64_t T_max, double eta_min = 0.0);

 protected:
  double lr_at(size_t group, int64_t epoch) const override;
  const char* name() const override { return "CosineAnnealingLR"; }

 private:
  int64_t t_max_;
  double eta_min_;
};

// Warmup: lr = base_lr * (start_factor + (end_factor - start_factor) *
// min(epoch, total_iters) / total_iters).
class EMBER_API LinearLR : public LRScheduler {
 public:
  LinearLR(Optimizer& optimizer, double start_factor = 1.0 / 3.0, double end_factor = 1.0,
           int64_t total_iters = 5);

 protected:
  double lr_at(size_t group, int64_t epoch) const override;
  const char* name() const override { return "LinearLR"; }

 private:
  double start_factor_;
  double end_factor_;
  int64_t total_iters_;
};

enum class AnnealStrategy { Cos, Linear };

struct OneCycleLROptions {
  double max_lr = 0.0;           // required (> 0), for every group
  int64_t total_steps = 0;       // required (> 0): the number of step() calls in the cycle
  double pct_start = 0.3;        // fraction of the cycle spent increasing the lr
  AnnealStrategy anneal_strategy = AnnealStrategy::Cos;
  // Cycles the momentum (SGD/RMSprop momentum, Adam's beta1) inversely to the lr, between
  // max_momentum and base_momentum, as PyTorch does by default.
  bool cycle_momentum = true;
  double base_momentum = 0.85;
  double max_momentum = 0.95;
  double div_factor = 25.0;         // initial_lr = max_lr / div_factor
  double final_div_factor = 1e4;    // min_lr = initial_lr / final_div_factor
  bool three_phase = false;
};

// The 1cycle policy, stepped once per batch: from initial_lr up to max_lr over the first
// pct_start of total_steps, then down to min_lr (three_phase: back to initial_lr, then
// down to min_lr). Stepping past total_steps is an error, as in PyTorch.
class EMBER_API OneCycleLR : public LRScheduler {
 public:
  OneCycleLR(Optimizer& optimizer, OneCycleLROptions options);

 protected:
  double lr_at(size_t group, int64_t epoch) const override;
  void on_epoch(int64_t epoch) override;
  const char* name() const override { return "OneCycleLR"; }

 private:
  struct Phase {
    double end_step;
    double start_lr, end_lr;
    double start_momentum, end_momentum;
  };
  // Which phase `epoch` is in and how far through it (pct may exceed 1 at the very end).
  const Phase& phase_at(int64_t epoch, double* pct) const;
  double anneal(double start, double end, double pct) const;

  OneCycleLROptions options_;
  std::vector<Phase> phases_;
};

}  // namespace ember::optim
