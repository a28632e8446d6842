// optim::SGD: option checks and the step (CPU loop per tensor, one multi-tensor CUDA
// launch per device).
#include "ember/optim/sgd.h"

#include <cmath>

#include "ember/core/base/error.h"
#include "ember/kernels/cpu/optim.h"
#include "ember/kernels/cuda/optim.cuh"
#include "ember/optim/multi_tensor.h"

namespace ember::optim {

namespace {

template <typename T>
kernels::math::SgdParams<T> sgd_params(const SGDOptions& o, bool first_step) {
  kernels::math::SgdParams<T> h;
  h.lr = static_cast<T>(o.lr);
  h.momentum = static_cast<T>(o.momentum);
  h.dampening = static_cast<T>(o.dampening);
  h.weight_decay = static_cast<T>(o.weight_decay);
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
  EMBER_CHECK(std::isfinite(o.lr) && o.lr >= 0.0, "SGD: invalid learning rate lr=", o.lr,
              " (expected >= 0)");
  EMBER_CHECK(std::isfinite(o.momentum) && o.momentum >= 0.0, "SGD: invalid momentum=",
              o.momentum, " (expected >= 0)");
  EMBER_CHECK(std::isfinite(o.dampening), "SGD: invalid dampening=", o.dampening);
  EMBER_CHECK(std::isfinite(o.weight_decay) && o.weight_decay >= 0.0,
              "SGD: invalid weight_decay=", o.weight_decay, " (expected >= 0)");
  EMBER_CHECK(!o.nesterov || (o.momentum > 0.0 && o.dampening == 0.0),
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
  std::vector<Work> work = collect_work();
  detail::DeviceBatches<kernels::cuda::SgdEntry> batches;
  for (const Work& w : work) {
    const SGDOptions& o = options_[w.group];
    bool first = false;
    Tensor buf;
    // The first update copies the gradient into the buffer, so it needs no zero fill.
    if (o.momentum != 0.0) buf = state_buffer(w, "momentum_buffer", false, &first);
    const int64_t n = w.param.numel();
    if (w.param.is_cuda()) {
      kernels::cuda::SgdEntry e;
      e.param = w.param.data<float>();
      e.grad = w.grad.data<float>();
      e.state[0] = buf.defined() ? buf.data<float>() : nullptr;
      e.numel = n;
      e.hyper = sgd_params<float>(o, first);
      batches.add(w.param.device().index(), e);
    } else if (w.param.dtype() == kFloat32) {
      kernels::cpu::sgd_update(sgd_params<float>(o, first), w.param.data<float>(),
                               w.grad.data<float>(), buf.defined() ? buf.data<float>() : nullptr,
                               n);
    } else {
      kernels::cpu::sgd_update(sgd_params<double>(o, first), w.param.data<double>(),
                               w.grad.data<double>(),
                               buf.defined() ? buf.data<double>() : nullptr, n);
    }
  }
  batches.launch(kernels::cuda::sgd_multi_tensor);
  ++steps_;
}

}  // namespace ember::optim
