// optim::Adam and AdamW: option checks, bias corrections on the host, and the step (one
// fused update over every parameter with a gradient; see core/fused_optim.h).
#include "ember/optim/adam.h"

#include <cmath>

#include "ember/core/base/error.h"
#include "ember/core/fused_optim.h"

namespace ember::optim {

namespace {

// The step-count-dependent scalars are computed here in double, once per tensor (the
// update rounds them to the parameter's dtype).
FusedAdamParams adam_params(const AdamOptions& o, int64_t step) {
  const double t = static_cast<double>(step);
  const double bias_correction1 = 1.0 - std::pow(o.betas[0], t);
  const double bias_correction2 = 1.0 - std::pow(o.betas[1], t);
  FusedAdamParams h;
  h.lr = o.lr;
  h.beta1 = o.betas[0];
  h.beta2 = o.betas[1];
  h.eps = o.eps;
  h.weight_decay = o.weight_decay;
  h.step_size = o.lr / bias_correction1;
  h.bias_correction2_sqrt = std::sqrt(bias_correction2);
  h.amsgrad = o.amsgrad;
  h.decoupled_weight_decay = o.decoupled_weight_decay;
  return h;
}

AdamOptions from_adamw(const AdamWOptions& w) {
  AdamOptions o;
  o.lr = w.lr;
  o.betas = w.betas;
  o.eps = w.eps;
  o.weight_decay = w.weight_decay;
  o.amsgrad = w.amsgrad;
  o.decoupled_weight_decay = true;
  return o;
}

}  // namespace

Adam::Adam(std::vector<Tensor> params, AdamOptions options) {
  init({{std::move(params), options}});
}

Adam::Adam(std::vector<ParamGroup<AdamOptions>> groups) { init(std::move(groups)); }

AdamW::AdamW(std::vector<Tensor> params, AdamWOptions options) {
  init({{std::move(params), from_adamw(options)}});
}

AdamW::AdamW(std::vector<ParamGroup<AdamWOptions>> groups) {
  std::vector<ParamGroup<AdamOptions>> converted;
  for (auto& g : groups) converted.push_back({std::move(g.params), from_adamw(g.options)});
  init(std::move(converted));
}

void Adam::validate(const AdamOptions& o) const {
  EMBER_CHECK_T(ValueError, std::isfinite(o.lr) && o.lr >= 0.0, name(),
                ": invalid learning rate lr=", o.lr, " (expected >= 0)");
  EMBER_CHECK_T(ValueError, std::isfinite(o.eps) && o.eps >= 0.0, name(), ": invalid eps=", o.eps,
                " (expected >= 0)");
  for (int i = 0; i < 2; ++i) {
    EMBER_CHECK_T(ValueError, o.betas[i] >= 0.0 && o.betas[i] < 1.0, name(), ": invalid betas[", i,
                  "]=", o.betas[i], " (expected 0 <= beta < 1)");
  }
  EMBER_CHECK_T(ValueError, std::isfinite(o.weight_decay) && o.weight_decay >= 0.0, name(),
                ": invalid weight_decay=", o.weight_decay, " (expected >= 0)");
}

std::optional<double> Adam::momentum(size_t group) const { return options(group).betas[0]; }

void Adam::set_momentum(size_t group, double beta1) {
  AdamOptions o = options(group);
  o.betas[0] = beta1;
  set_options(group, o);
}

Optimizer::OptionList Adam::group_options(size_t group) const {
  const AdamOptions& o = options_[group];
  return {{"lr", {o.lr}},
          {"betas", {o.betas[0], o.betas[1]}},
          {"eps", {o.eps}},
          {"weight_decay", {o.weight_decay}},
          {"amsgrad", {o.amsgrad ? 1.0 : 0.0}},
          {"decoupled_weight_decay", {o.decoupled_weight_decay ? 1.0 : 0.0}}};
}

void Adam::set_group_options(size_t group, const OptionList& values) {
  AdamOptions o;
  o.lr = option_value(values, "lr");
  const std::vector<double> betas = option_values(values, "betas", 2);
  o.betas = {betas[0], betas[1]};
  o.eps = option_value(values, "eps");
  o.weight_decay = option_value(values, "weight_decay");
  o.amsgrad = option_value(values, "amsgrad") != 0.0;
  o.decoupled_weight_decay = option_value(values, "decoupled_weight_decay") != 0.0;
  set_options(group, o);
}

void Adam::step() {
  std::vector<Tensor> params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs;
  std::vector<FusedAdamParams> hyper_params;
  for (const Work& w : collect_work()) {
    const AdamOptions& o = options_[w.group];
    params.push_back(w.param);
    grads.push_back(w.grad);
    exp_avgs.push_back(state_buffer(w, "exp_avg", true));
    exp_avg_sqs.push_back(state_buffer(w, "exp_avg_sq", true));
    max_exp_avg_sqs.push_back(o.amsgrad ? state_buffer(w, "max_exp_avg_sq", true) : Tensor());
    hyper_params.push_back(adam_params(o, ++w.state->step));
  }
  fused_adam_(params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, hyper_params);
  finish_step();
}

}  // namespace ember::optim
