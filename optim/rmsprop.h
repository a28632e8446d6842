// optim::RMSprop — torch.optim.RMSprop's update rule and option names (smoothing
// constant alpha, centered variant, momentum, weight decay).
#pragma once

#include <vector>

#include "ember/core/base/export.h"
#include "ember/core/tensor.h"
#include "ember/optim/optimizer.h"

namespace ember::optim {

struct RMSpropOptions {
  double lr = 1e-2;
  double alpha = 0.99;
  double eps = 1e-8;
  double weight_decay = 0.0;
  double momentum = 0.0;
  bool centered = false;
};

// Per step, for each parameter p with gradient g (PyTorch's rule):
//   g = g + weight_decay * p
//   sq = alpha * sq + (1 - alpha) * g^2
//   centered: ga = alpha * ga + (1 - alpha) * g;  avg = sqrt(sq - ga^2) + eps
//   else:                                          avg = sqrt(sq) + eps
//   momentum > 0: buf = momentum * buf + g / avg;  p = p - lr * buf
//   else:         p = p - lr * g / avg
// State per parameter: "step", "square_avg", "momentum_buffer" (momentum > 0),
// "grad_avg" (centered).
class EMBER_API RMSprop : public OptimizerBase<RMSpropOptions> {
 public:
  explicit RMSprop(std::vector<Tensor> params, RMSpropOptions options = {});
  explicit RMSprop(std::vector<ParamGroup<RMSpropOptions>> groups);

  void step() override;
  const char* name() const override { return "RMSprop"; }
  std::optional<double> momentum(size_t group = 0) const override;
  void set_momentum(size_t group, double momentum) override;

 protected:
  void validate(const RMSpropOptions& o) const override;
  OptionList group_options(size_t group) const override;
  void set_group_options(size_t group, const OptionList& values) override;
  std::vector<std::string> state_names() const override {
    return {"square_avg", "momentum_buffer", "grad_avg"};
  }
};

}  // namespace ember::optim
