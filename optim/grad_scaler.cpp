// optim::GradScaler (optim/grad_scaler.h): the scale and growth bookkeeping on the host, the
// unscaling and the inf/NaN check in one fused pass per device (core/fused_optim.h).
#include "ember/optim/grad_scaler.h"

#include <algorithm>
#include <cmath>

#include "ember/core/autocast.h"
#include "ember/core/base/error.h"
#include "ember/core/fused_optim.h"
#include "ember/core/ops.h"

namespace ember::optim {

namespace {

constexpr const char* kNotNeeded =
    "bfloat16 has float32's exponent range, so its gradients do not underflow and need no "
    "loss scaling (GradScaler is for float16); construct the scaler with "
    "{.enabled = false} or leave it out";

void check_options(const GradScalerOptions& o, const char* op) {
  EMBER_CHECK_T(ValueError, std::isfinite(o.init_scale) && o.init_scale > 0.0, op,
                ": init_scale must be positive and finite, got ", o.init_scale);
  EMBER_CHECK_T(ValueError, std::isfinite(o.growth_factor) && o.growth_factor > 1.0, op,
                ": growth_factor must be > 1, got ", o.growth_factor);
  EMBER_CHECK_T(ValueError, o.backoff_factor > 0.0 && o.backoff_factor < 1.0, op,
                ": backoff_factor must be in (0, 1), got ", o.backoff_factor);
  EMBER_CHECK_T(ValueError, o.growth_interval > 0, op, ": growth_interval must be positive, got ",
                o.growth_interval);
}

}  // namespace

GradScaler::GradScaler(GradScalerOptions options)
    : options_(options), enabled_(options.enabled), scale_(options.init_scale) {
  if (enabled_) check_options(options_, "GradScaler");
}

void GradScaler::check_dtypes(const Optimizer& opt, const char* op) const {
  bool bf16 = false, f16 = false;
  for (const Tensor& p : opt.all_params()) {
    bf16 = bf16 || p.dtype() == kBFloat16;
    f16 = f16 || p.dtype() == kFloat16;
  }
  EMBER_CHECK_T(DTypeError, !(bf16 && !f16), op, ": the parameters of ", opt.name(),
                " are bfloat16; ", kNotNeeded);
}

Tensor GradScaler::scale(const Tensor& loss) const {
  if (!enabled_) return loss;
  EMBER_CHECK_T(DTypeError, !(autocast_enabled() && autocast_dtype() == kBFloat16),
                "GradScaler::scale: called inside a bfloat16 autocast region; ", kNotNeeded);
  return mul(loss, scale_);
}

void GradScaler::unscale_(Optimizer& opt) {
  if (!enabled_) return;
  constexpr const char* kOp = "GradScaler::unscale_";
  check_dtypes(opt, kOp);
  for (const auto& entry : unscaled_) {
    EMBER_CHECK_T(ValueError, entry.first != &opt, kOp, ": unscale_ was already called for this ",
                  opt.name(), " since the last update()");
  }
  // Gradients grouped by device: one flag and one 1/scale per device.
  std::vector<std::vector<Tensor>> by_device;
  for (const Tensor& p : opt.all_params()) {
    const Tensor g = p.grad();
    if (!g.defined()) continue;
    EMBER_CHECK_T(ValueError, g.is_contiguous(), kOp, ": the gradient of a ", opt.name(),
                  " parameter is not contiguous");
    auto it = std::find_if(by_device.begin(), by_device.end(),
                           [&](const auto& list) { return list[0].device() == g.device(); });
    if (it == by_device.end()) {
      by_device.push_back({g});
    } else {
      it->push_back(g);
    }
  }
  bool found = false;
  for (const std::vector<Tensor>& grads : by_device) {
    const TensorOptions f32{.dtype = kFloat32, .device = grads[0].device()};
    Tensor found_inf = zeros({1}, f32);
    Tensor inv_scale = full({1}, 1.0 / scale_, f32);
    amp_unscale_and_check_(grads, found_inf, inv_scale);
    found = found || found_inf.item() != 0.0;
  }
  unscaled_.emplace_back(&opt, found);
}

bool GradScaler::step(Optimizer& opt) {
  if (!enabled_) {
    opt.step();
    return true;
  }
  auto it = std::find_if(unscaled_.begin(), unscaled_.end(),
                         [&](const auto& e) { return e.first == &opt; });
  if (it == unscaled_.end()) {
    unscale_(opt);
    it = unscaled_.end() - 1;
  }
  if (it->second) return false;  // inf/NaN gradients: skip, as PyTorch does
  opt.step();
  return true;
}

void GradScaler::update() {
  if (!enabled_) return;
  const bool found = std::any_of(unscaled_.begin(), unscaled_.end(),
                                 [](const auto& e) { return e.second; });
  if (found) {
    scale_ *= options_.backoff_factor;
    growth_tracker_ = 0;
  } else if (!unscaled_.empty() && ++growth_tracker_ >= options_.growth_interval) {
    scale_ *= options_.growth_factor;
    growth_tracker_ = 0;
  }
  unscaled_.clear();
}

StateDict GradScaler::state_dict() const {
  StateDict sd;
  if (!enabled_) return sd;
  const TensorOptions f64{.dtype = kFloat64};
  sd.insert("scale", scalar_tensor(scale_, f64));
  sd.insert("growth_factor", scalar_tensor(options_.growth_factor, f64));
  sd.insert("backoff_factor", scalar_tensor(options_.backoff_factor, f64));
  sd.insert("growth_interval",
            scalar_tensor(static_cast<double>(options_.growth_interval), {.dtype = kInt64}));
  sd.insert("growth_tracker",
            scalar_tensor(static_cast<double>(growth_tracker_), {.dtype = kInt64}));
  return sd;
}

void GradScaler::load_state_dict(const StateDict& dict) {
  constexpr const char* kOp = "GradScaler::load_state_dict";
  if (!enabled_) return;
  EMBER_CHECK_T(ValueError, dict.size() > 0, kOp,
                ": the state dict is empty (saved by a disabled scaler?); expected 'scale', "
                "'growth_factor', 'backoff_factor', 'growth_interval' and 'growth_tracker'");
  auto value = [&](const char* key) {
    const Tensor& t = dict.at(key);
    EMBER_CHECK_T(ShapeError, t.numel() == 1, kOp, ": '", key, "' must hold one value, got ",
                  shape_str(t.shape()));
    return t.cpu().to(kFloat64).item();
  };
  GradScalerOptions o = options_;
  const double scale = value("scale");
  o.init_scale = scale;
  o.growth_factor = value("growth_factor");
  o.backoff_factor = value("backoff_factor");
  const double interval = value("growth_interval"), tracker = value("growth_tracker");
  EMBER_CHECK_T(ValueError, interval >= 1 && interval < 9.0e15 && interval == std::floor(interval),
                kOp, ": 'growth_interval' must be a positive whole number, got ", interval);
  o.growth_interval = static_cast<int64_t>(interval);
  check_options(o, kOp);
  EMBER_CHECK_T(ValueError, tracker >= 0 && tracker < interval && tracker == std::floor(tracker),
                kOp, ": 'growth_tracker' must be a whole number in [0, growth_interval = ",
                interval, "), got ", tracker);
  options_ = o;
  scale_ = scale;
  growth_tracker_ = static_cast<int64_t>(tracker);
  unscaled_.clear();
}

}  // namespace ember::optim
