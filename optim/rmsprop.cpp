// optim::RMSprop: option checks and the step (CPU loop per tensor, one multi-tensor CUDA
// launch per device).
#include "ember/optim/rmsprop.h"

#include <cmath>

#include "ember/core/base/error.h"
#include "ember/kernels/cpu/optim.h"
#include "ember/kernels/cuda/optim.cuh"
#include "ember/optim/multi_tensor.h"

namespace ember::optim {

namespace {

template <typename T>
kernels::math::RmspropParams<T> rmsprop_params(const RMSpropOptions& o) {
  kernels::math::RmspropParams<T> h;
  h.lr = static_cast<T>(o.lr);
  h.alpha = static_cast<T>(o.alpha);
  h.eps = static_cast<T>(o.eps);
  h.weight_decay = static_cast<T>(o.weight_decay);
  h.momentum = static_cast<T>(o.momentum);
  h.centered = o.centered;
  return h;
}

}  // namespace

RMSprop::RMSprop(std::vector<Tensor> params, RMSpropOptions options) {
  init({{std::move(params), options}});
}

RMSprop::RMSprop(std::vector<ParamGroup<RMSpropOptions>> groups) { init(std::move(groups)); }

void RMSprop::validate(const RMSpropOptions& o) const {
  EMBER_CHECK(std::isfinite(o.lr) && o.lr >= 0.0, "RMSprop: invalid learning rate lr=", o.lr,
              " (expected >= 0)");
  EMBER_CHECK(std::isfinite(o.eps) && o.eps >= 0.0, "RMSprop: invalid eps=", o.eps,
              " (expected >= 0)");
  EMBER_CHECK(std::isfinite(o.alpha) && o.alpha >= 0.0, "RMSprop: invalid alpha=", o.alpha,
              " (expected >= 0)");
  EMBER_CHECK(std::isfinite(o.momentum) && o.momentum >= 0.0, "RMSprop: invalid momentum=",
              o.momentum, " (expected >= 0)");
  EMBER_CHECK(std::isfinite(o.weight_decay) && o.weight_decay >= 0.0,
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
  std::vector<Work> work = collect_work();
  detail::DeviceBatches<kernels::cuda::RmspropEntry> batches;
  for (const Work& w : work) {
    const RMSpropOptions& o = options_[w.group];
    Tensor square_avg = state_buffer(w, "square_avg", true);
    Tensor buf, grad_avg;
    if (o.momentum > 0.0) buf = state_buffer(w, "momentum_buffer", true);
    if (o.centered) grad_avg = state_buffer(w, "grad_avg", true);
    ++w.state->step;
    const int64_t n = w.param.numel();
    if (w.param.is_cuda()) {
      kernels::cuda::RmspropEntry e;
      e.param = w.param.data<float>();
      e.grad = w.grad.data<float>();
      e.state[0] = square_avg.data<float>();
      e.state[1] = buf.defined() ? buf.data<float>() : nullptr;
      e.state[2] = grad_avg.defined() ? grad_avg.data<float>() : nullptr;
      e.numel = n;
      e.hyper = rmsprop_params<float>(o);
      batches.add(w.param.device().index(), e);
    } else if (w.param.dtype() == kFloat32) {
      kernels::cpu::rmsprop_update(rmsprop_params<float>(o), w.param.data<float>(),
                                   w.grad.data<float>(), square_avg.data<float>(),
                                   buf.defined() ? buf.data<float>() : nullptr,
                                   grad_avg.defined() ? grad_avg.data<float>() : nullptr, n);
    } else {
      kernels::cpu::rmsprop_update(rmsprop_params<double>(o), w.param.data<double>(),
                                   w.grad.data<double>(), square_avg.data<double>(),
                                   buf.defined() ? buf.data<double>() : nullptr,
                                   grad_avg.defined() ? grad_avg.data<double>() : nullptr, n);
    }
  }
  batches.launch(kernels::cuda::rmsprop_multi_tensor);
  ++steps_;
}

}  // namespace ember::optim
