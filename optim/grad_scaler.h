// optim::GradScaler: dynamic loss scaling for float16 training (PyTorch's
// torch.amp.GradScaler): the loss is multiplied by a large scale before backward so that
// small float16 gradients do not flush to zero, the gradients are divided by it before
// the optimizer step, and a step whose gradients overflowed is skipped and the scale
// lowered.
#pragma once

#include <cstdint>
#include <utility>
#include <vector>

#include "ember/core/base/export.h"
#include "ember/core/state_dict.h"
#include "ember/core/tensor.h"
#include "ember/optim/optimizer.h"

namespace ember::optim {

struct GradScalerOptions {
  double init_scale = 65536.0;    // 2^16
  double growth_factor = 2.0;     // the scale is multiplied by this after ...
  int64_t growth_interval = 2000;  // ... this many steps in a row without inf/NaN
  double backoff_factor = 0.5;    // and by this after a step with inf/NaN gradients
  // false: every call passes through (scale() returns the loss, step() steps), PyTorch's
  // enabled=False, for code that runs with or without float16.
  bool enabled = true;
};

// The loop, as in PyTorch:
//   scaler.scale(loss).backward();
//   scaler.unscale_(opt);           // optional: before gradient clipping
//   scaler.step(opt);               // skipped when a gradient is inf or NaN
//   scaler.update();                // grows or backs off the scale
// bfloat16 has float32's exponent range, so its gradients do not underflow and it needs
// no scaling: using an enabled scaler for bfloat16 parameters, or inside a bfloat16
// autocast region, is an error that says so (construct it with {.enabled = false}).
class EMBER_API GradScaler {
 public:
  explicit GradScaler(GradScalerOptions options = {});

  // loss * scale (the loss itself when disabled).
  Tensor scale(const Tensor& loss) const;
  // Divides the gradients of opt's parameters by the scale, in place, and records whether
  // any was inf or NaN (one fused pass: Note [Gradient unscaling] in core/fused_optim.h).
  // At most once per optimizer between two update() calls.
  void unscale_(Optimizer& opt);
  // Unscales (unless unscale_ already did) and calls opt.step() unless a gradient was inf
  // or NaN. Returns whether it stepped.
  bool step(Optimizer& opt);
  // Ends the iteration: the scale is multiplied by backoff_factor when a step found
  // inf/NaN gradients, by growth_factor after growth_interval clean steps in a row.
  void update();

  double get_scale() const { return enabled_ ? scale_ : 1.0; }
  bool is_enabled() const { return enabled_; }
  const GradScalerOptions& options() const { return options_; }
  // Clean steps in a row since the scale last changed.
  int64_t growth_tracker() const { return growth_tracker_; }

  // "scale" (float64 []), "growth_factor", "backoff_factor" (float64 []), "growth_interval"
  // and "growth_tracker" (int64 []); empty when disabled, as PyTorch's.
  StateDict state_dict() const;
  // Restores it (checked: positive finite scale and factors, a non-negative tracker
  // below the interval); changes nothing when any entry is wrong.
  void load_state_dict(const StateDict& dict);

 private:
  void check_dtypes(const Optimizer& opt, const char* op) const;

  GradScalerOptions options_;
  bool enabled_ = true;
  double scale_ = 1.0;
  int64_t growth_tracker_ = 0;
  // This iteration: each unscaled optimizer and whether its gradients held inf/NaN.
  std::vector<std::pair<const Optimizer*, bool>> unscaled_;
};

}  // namespace ember::optim
