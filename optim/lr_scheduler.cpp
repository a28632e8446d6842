// LR schedules: the closed forms of PyTorch's schedules and the shared stepping (see
// Note [LR schedule semantics] in lr_scheduler.h).
#include "ember/optim/lr_scheduler.h"

#include <algorithm>
#include <cmath>

#include "ember/core/base/error.h"
#include "ember/core/ops.h"

namespace ember::optim {

namespace {
constexpr double kPi = 3.14159265358979323846;
}

// --- LRScheduler -------------------------------------------------------------------------------

LRScheduler::LRScheduler(Optimizer& optimizer) : optimizer_(optimizer) {
  for (size_t g = 0; g < optimizer.num_groups(); ++g) base_lrs_.push_back(optimizer.lr(g));
}

void LRScheduler::initial_step() { apply(0); }

void LRScheduler::step() { apply(last_epoch_ + 1); }

void LRScheduler::set_last_epoch(int64_t epoch) {
  EMBER_CHECK_T(ValueError, epoch >= 0, name(), "::set_last_epoch: epoch ", epoch, " must be >= 0");
  apply(epoch);
}

void LRScheduler::apply(int64_t epoch) {
  std::vector<double> lrs;
  for (size_t g = 0; g < base_lrs_.size(); ++g) lrs.push_back(lr_at(g, epoch));
  for (size_t g = 0; g < lrs.size(); ++g) optimizer_.set_lr(g, lrs[g]);
  last_epoch_ = epoch;
  last_lr_ = std::move(lrs);
  on_epoch(epoch);
}

StateDict LRScheduler::state_dict() const {
  StateDict sd;
  sd.insert("last_epoch", scalar_tensor(static_cast<double>(last_epoch_), {.dtype = kInt64}));
  sd.insert("base_lrs", Tensor::from_vector(base_lrs_, {static_cast<int64_t>(base_lrs_.size())}));
  return sd;
}

void LRScheduler::load_state_dict(const StateDict& dict) {
  const Tensor& epoch = dict.at("last_epoch");
  const Tensor& base = dict.at("base_lrs");
  EMBER_CHECK_T(ShapeError, epoch.dim() == 0, name(),
                "::load_state_dict: 'last_epoch' should be a rank-0 tensor, got shape ",
                shape_str(epoch.shape()));
  EMBER_CHECK_T(ShapeError,
                base.dim() == 1 && static_cast<size_t>(base.numel()) == base_lrs_.size(),
                name(), "::load_state_dict: 'base_lrs' has shape ", shape_str(base.shape()),
                " but the optimizer has ", base_lrs_.size(), " parameter group(s)");
  const double e = epoch.item();
  EMBER_CHECK_T(ValueError, e >= 0 && e == std::floor(e), name(),
                "::load_state_dict: 'last_epoch' should be a non-negative integer, got ", e);
  const std::vector<double> previous = base_lrs_;
  base_lrs_ = base.cpu().to(kFloat64).to_vector<double>();
  try {
    apply(static_cast<int64_t>(e));
  } catch (const Error&) {
    base_lrs_ = previous;
    throw;
  }
}

// --- StepLR, ExponentialLR, CosineAnnealingLR, LinearLR ------------------------------------------

StepLR::StepLR(Optimizer& optimizer, int64_t step_size, double gamma)
    : LRScheduler(optimizer), step_size_(step_size), gamma_(gamma) {
  EMBER_CHECK_T(ValueError, step_size > 0, "StepLR: step_size must be > 0, got ", step_size);
  initial_step();
}

double StepLR::lr_at(size_t group, int64_t epoch) const {
  return base_lrs_[group] * std::pow(gamma_, static_cast<double>(epoch / step_size_));
}

ExponentialLR::ExponentialLR(Optimizer& optimizer, double gamma)
    : LRScheduler(optimizer), gamma_(gamma) {
  initial_step();
}

double ExponentialLR::lr_at(size_t group, int64_t epoch) const {
  return base_lrs_[group] * std::pow(gamma_, static_cast<double>(epoch));
}

CosineAnnealingLR::CosineAnnealingLR(Optimizer& optimizer, int64_t T_max, double eta_min)
    : LRScheduler(optimizer), t_max_(T_max), eta_min_(eta_min) {
  EMBER_CHECK_T(ValueError, T_max > 0, "CosineAnnealingLR: T_max must be > 0, got ", T_max);
  initial_step();
}

double CosineAnnealingLR::lr_at(size_t group, int64_t epoch) const {
  const double c = std::cos(kPi * static_cast<double>(epoch) / static_cast<double>(t_max_));
  return eta_min_ + (base_lrs_[group] - eta_min_) * (1.0 + c) / 2.0;
}

LinearLR::LinearLR(Optimizer& optimizer, double start_factor, double end_factor,
                   int64_t total_iters)
    : LRScheduler(optimizer),
      start_factor_(start_factor),
      end_factor_(end_factor),
      total_iters_(total_iters) {
  EMBER_CHECK_T(ValueError, start_factor > 0.0 && start_factor <= 1.0,
                "LinearLR: start_factor must be in (0, 1], got ", start_factor);
  EMBER_CHECK_T(ValueError, end_factor >= 0.0 && end_factor <= 1.0,
                "LinearLR: end_factor must be in [0, 1], got ", end_factor);
  EMBER_CHECK_T(ValueError, total_iters > 0, "LinearLR: total_iters must be > 0, got ",
                total_iters);
  initial_step();
}

double LinearLR::lr_at(size_t group, int64_t epoch) const {
  const double t = static_cast<double>(std::min(epoch, total_iters_));
  return base_lrs_[group] *
         (start_factor_ + (end_factor_ - start_factor_) * t / static_cast<double>(total_iters_));
}

// --- OneCycleLR --------------------------------------------------------------------------------

OneCycleLR::OneCycleLR(Optimizer& optimizer, OneCycleLROptions options)
    : LRScheduler(optimizer), options_(options) {
  const OneCycleLROptions& o = options_;
  EMBER_CHECK_T(ValueError, o.total_steps > 0, "OneCycleLR: total_steps must be > 0, got ",
                o.total_steps);
  EMBER_CHECK_T(ValueError, std::isfinite(o.max_lr) && o.max_lr > 0.0,
                "OneCycleLR: max_lr must be > 0, got ", o.max_lr);
  EMBER_CHECK_T(ValueError, o.pct_start >= 0.0 && o.pct_start <= 1.0,
                "OneCycleLR: pct_start must be in [0, 1], got ", o.pct_start);
  EMBER_CHECK_T(ValueError, o.div_factor > 0.0 && o.final_div_factor > 0.0,
                "OneCycleLR: div_factor and final_div_factor must be > 0, got ", o.div_factor,
                " and ", o.final_div_factor);
  if (o.cycle_momentum) {
    EMBER_CHECK_T(ValueError, optimizer.momentum(0).has_value(), "OneCycleLR: ", optimizer.name(),
                  " has no momentum or beta1 to cycle; set cycle_momentum = false");
  }
  const double initial_lr = o.max_lr / o.div_factor;
  const double min_lr = initial_lr / o.final_div_factor;
  const double total = static_cast<double>(o.total_steps);
  const double up_end = o.pct_start * total - 1.0;
  if (o.three_phase) {
    phases_ = {{up_end, initial_lr, o.max_lr, o.max_momentum, o.base_momentum},
               {2.0 * o.pct_start * total - 2.0, o.max_lr, initial_lr, o.base_momentum,
                o.max_momentum},
               {total - 1.0, initial_lr, min_lr, o.max_momentum, o.max_momentum}};
  } else {
    phases_ = {{up_end, initial_lr, o.max_lr, o.max_momentum, o.base_momentum},
               {total - 1.0, o.max_lr, min_lr, o.base_momentum, o.max_momentum}};
  }
  // PyTorch divides by each phase's length; a zero-length phase is a division by zero there.
  double start = 0.0;
  for (const Phase& p : phases_) {
    EMBER_CHECK_T(ValueError, p.end_step > start, "OneCycleLR: total_steps=", o.total_steps,
                  " and pct_start=", o.pct_start,
                  " leave a phase with no steps (it would end at step ", p.end_step,
                  ", starting at ", start, ")");
    start = p.end_step;
  }
  initial_step();
}

const OneCycleLR::Phase& OneCycleLR::phase_at(int64_t epoch, double* pct) const {
  EMBER_CHECK_T(ValueError, epoch <= options_.total_steps, "OneCycleLR: tried to step ", epoch,
                " times; the specified number of total steps is ", options_.total_steps);
  const double step = static_cast<double>(epoch);
  double start = 0.0;
  for (size_t i = 0; i < phases_.size(); ++i) {
    const Phase& p = phases_[i];
    if (step <= p.end_step || i + 1 == phases_.size()) {
      *pct = (step - start) / (p.end_step - start);
      return p;
    }
    start = p.end_step;
  }
  return phases_.back();  // unreachable: the last phase always matches
}

double OneCycleLR::anneal(double start, double end, double pct) const {
  if (options_.anneal_strategy == AnnealStrategy::Linear) return (end - start) * pct + start;
  return end + (start - end) / 2.0 * (std::cos(kPi * pct) + 1.0);
}

double OneCycleLR::lr_at(size_t, int64_t epoch) const {
  double pct = 0.0;
  const Phase& p = phase_at(epoch, &pct);
  return anneal(p.start_lr, p.end_lr, pct);
}

void OneCycleLR::on_epoch(int64_t epoch) {
  if (!options_.cycle_momentum) return;
  double pct = 0.0;
  const Phase& p = phase_at(epoch, &pct);
  const double m = anneal(p.start_momentum, p.end_momentum, pct);
  for (size_t g = 0; g < optimizer_.num_groups(); ++g) optimizer_.set_momentum(g, m);
}

}  // namespace ember::optim
