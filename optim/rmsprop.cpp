// optim::RMSprop: option checks and the step (one fused update over every parameter with
// a gradient; see core/fused_optim.h).
#include "ember/optim/rmsprop.h"

#include <cmath>

#include "ember/core/base/error.h"
#include "ember/core/fused_optim.h"

namespace ember::optim {

namespace {

FusedRmspropParams rmsprop_params(const RMSpropOptions& o) {
  FusedRmspropParams h;
  h.lr = o.lr;
  h.alpha = o.alpha;
  h.eps = o.eps;
  h.weight_decay = o.weight_decay;
  h.momentum = o.momentum;
  h.centered = o.centered;
  return h;
}

}  // namespace

RMSprop::RMSprop(std::vector<Tensor> params, RMSpropOptions options) {
  init({{std::move(params), options}});
}

RMSprop::RMSprop(std::vector<ParamGroup<RMSpropOptions>> groups) { init(std::move(groups)); }

void RMSprop::validate(const RMSpropOptions& o) const {
  EMBER_CHECK_T(ValueError, std::isfinite(o.lr) && o.lr >= 0.0,
                "RMSprop: invalid learning rate lr=", o.lr, " (expected >= 0)");
  EMBER_CHECK_T(ValueError, std::isfinite(o.eps) && o.eps >= 0.0, "RMSprop: invalid eps=", o.eps,
                " (expected >= 0)");
  EMBER_CHECK_T(ValueError, std::isfinite(o.alpha) && o.alpha >= 0.0,
                "RMSprop: invalid alpha=", o.alpha, " (expected >= 0)");
  EMBER_CHECK_T(ValueError, std::isfinite(o.momentum) && o.momentum >= 0.0,
                "RMSprop: invalid momentum=", o.momentum, " (expected >= 0)");
  EMBER_CHECK_T(ValueError, std::isfinite(o.weight_decay) && o.weight_decay >= 0.0,
                "RMSprop: invalid weight_decay=", o.weight_decay, " (expected >= 0)");
}

std::optional<double> RMSprop::momentum(size_t group) const { return options(group).momentum; }

void RMSprop::set_momentum(size_t group, double momentum) {
  RMSpropOptions o = options(group);
  o.momentum = momentum;
  set_options(group, o);
}

Optimizer::OptionList RMSprop::group_options(size_t group) const {
  const RMSpropOptions& o = options_[group];
  return {{"lr", {o.lr}},
          {"alpha", {o.alpha}},
          {"eps", {o.eps}},
          {"weight_decay", {o.weight_decay}},
          {"momentum", {o.momentum}},
          {"centered", {o.centered ? 1.0 : 0.0}}};
}

void RMSprop::set_group_options(size_t group, const OptionList& values) {
  RMSpropOptions o;
  o.lr = option_value(values, "lr");
  o.alpha = option_value(values, "alpha");
  o.eps = option_value(values, "eps");
  o.weight_decay = option_value(values, "weight_decay");
  o.momentum = option_value(values, "momentum");
  o.centered = option_value(values, "centered") != 0.0;
  set_options(group, o);
}

void RMSprop::step() {
  std::vector<Tensor> params, grads, square_avgs, buffers, grad_avgs;
  std::vector<FusedRmspropParams> hyper_params;
  for (const Work& w : collect_work()) {
    const RMSpropOptions& o = options_[w.group];
    params.push_back(w.param);
    grads.push_back(w.grad);
    square_avgs.push_back(state_buffer(w, "square_avg", true));
    buffers.push_back(o.momentum > 0.0 ? state_buffer(w, "momentum_buffer", true) : Tensor());
    grad_avgs.push_back(o.centered ? state_buffer(w, "grad_avg", true) : Tensor());
    ++w.state->step;
    hyper_params.push_back(rmsprop_params(o));
  }
  fused_rmsprop_(params, grads, square_avgs, buffers, grad_avgs, hyper_params);
  finish_step();
}

}  // namespace ember::optim
