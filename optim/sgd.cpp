// optim::SGD: option checks and the step (one fused update over every parameter with a
// gradient; see core/fused_optim.h).
#include "ember/optim/sgd.h"

#include <cmath>

#include "ember/core/base/error.h"
#include "ember/core/fused_optim.h"

namespace ember::optim {

namespace {

FusedSgdParams sgd_params(const SGDOptions& o, bool first_step) {
  FusedSgdParams h;
  h.lr = o.lr;
  h.momentum = o.momentum;
  h.dampening = o.dampening;
  h.weight_decay = o.weight_decay;
  h.nesterov = o.nesterov;
  h.first_step = first_step;
  return h;
}

}  // namespace

SGD::SGD(std::vector<Tensor> params, SGDOptions options) {
  init({{std::move(params), options}});
}

SGD::SGD(std::vector<ParamGroup<SGDOptions>> groups) { init(std::move(groups)); }

void SGD::validate(const SGDOptions& o) const {
  EMBER_CHECK_T(ValueError, std::isfinite(o.lr) && o.lr >= 0.0,
                "SGD: invalid learning rate lr=", o.lr, " (expected >= 0)");
  EMBER_CHECK_T(ValueError, std::isfinite(o.momentum) && o.momentum >= 0.0,
                "SGD: invalid momentum=", o.momentum, " (expected >= 0)");
  EMBER_CHECK_T(ValueError, std::isfinite(o.dampening), "SGD: invalid dampening=", o.dampening);
  EMBER_CHECK_T(ValueError, std::isfinite(o.weight_decay) && o.weight_decay >= 0.0,
                "SGD: invalid weight_decay=", o.weight_decay, " (expected >= 0)");
  EMBER_CHECK_T(ValueError, !o.nesterov || (o.momentum > 0.0 && o.dampening == 0.0),
                "SGD: Nesterov momentum requires momentum > 0 and dampening == 0 (got momentum=",
                o.momentum, ", dampening=", o.dampening, ")");
}

std::optional<double> SGD::momentum(size_t group) const { return options(group).momentum; }

void SGD::set_momentum(size_t group, double momentum) {
  SGDOptions o = options(group);
  o.momentum = momentum;
  set_options(group, o);
}

Optimizer::OptionList SGD::group_options(size_t group) const {
  const SGDOptions& o = options_[group];
  return {{"lr", {o.lr}},
          {"momentum", {o.momentum}},
          {"dampening", {o.dampening}},
          {"weight_decay", {o.weight_decay}},
          {"nesterov", {o.nesterov ? 1.0 : 0.0}}};
}

void SGD::set_group_options(size_t group, const OptionList& values) {
  SGDOptions o;
  o.lr = option_value(values, "lr");
  o.momentum = option_value(values, "momentum");
  o.dampening = option_value(values, "dampening");
  o.weight_decay = option_value(values, "weight_decay");
  o.nesterov = option_value(values, "nesterov") != 0.0;
  set_options(group, o);
}

void SGD::step() {
  std::vector<Tensor> params, grads, buffers;
  std::vector<FusedSgdParams> hyper_params;
  for (const Work& w : collect_work()) {
    const SGDOptions& o = options_[w.group];
    bool first = false;
    Tensor buf;
    // The first update copies the gradient into the buffer, so it needs no zero fill.
    if (o.momentum != 0.0) buf = state_buffer(w, "momentum_buffer", false, &first);
    params.push_back(w.param);
    grads.push_back(w.grad);
    buffers.push_back(buf);
    hyper_params.push_back(sgd_params(o, first));
  }
  fused_sgd_(params, grads, buffers, hyper_params);
  finish_step();
}

}  // namespace ember::optim
