// optim::Adam and optim::AdamW — torch.optim.Adam / AdamW's update rules and option names
// (AdamW is Adam with decoupled weight decay, default 1e-2).
#pragma once

#include <array>
#include <vector>

#include "ember/core/base/export.h"
#include "ember/core/tensor.h"
#include "ember/optim/optimizer.h"

namespace ember::optim {

struct AdamOptions {
  double lr = 1e-3;
  std::array<double, 2> betas{0.9, 0.999};
  double eps = 1e-8;
  double weight_decay = 0.0;
  bool amsgrad = false;
  // Weight decay applied to the parameter (p *= 1 - lr * weight_decay) instead of added
  // to the gradient: what AdamW does.
  bool decoupled_weight_decay = false;
};

struct AdamWOptions {
  double lr = 1e-3;
  std::array<double, 2> betas{0.9, 0.999};
  double eps = 1e-8;
  double weight_decay = 1e-2;
  bool amsgrad = false;
};

// Per step t of each parameter p with gradient g (PyTorch's rule):
//   decoupled: p = p * (1 - lr * weight_decay)     else: g = g + weight_decay * p
//   m = beta1 * m + (1 - beta1) * g
//   v = beta2 * v + (1 - beta2) * g^2
//   v_hat = amsgrad ? (v_max = max(v_max, v)) : v
//   p = p - lr / (1 - beta1^t) * m / (sqrt(v_hat) / sqrt(1 - beta2^t) + eps)
// State per parameter: "step", "exp_avg", "exp_avg_sq", "max_exp_avg_sq" (amsgrad).
class EMBER_API Adam : public OptimizerBase<AdamOptions> {
 public:
  explicit Adam(std::vector<Tensor> params, AdamOptions options = {});
  explicit Adam(std::vector<ParamGroup<AdamOptions>> groups);

  void step() override;
  const char* name() const override { return "Adam"; }
  // beta1, which OneCycleLR cycles.
  std::optional<double> momentum(size_t group = 0) const override;
  void set_momentum(size_t group, double beta1) override;

 protected:
  Adam() = default;
  void validate(const AdamOptions& o) const override;
  OptionList group_options(size_t group) const override;
  void set_group_options(size_t group, const OptionList& values) override;
  std::vector<std::string> state_names() const override {
    return {"exp_avg", "exp_avg_sq", "max_exp_avg_sq"};
  }
};

// Adam with decoupled weight decay. options(g) reports AdamOptions with
// decoupled_weight_decay set.
class EMBER_API AdamW : public Adam {
 public:
  explicit AdamW(std::vector<Tensor> params, AdamWOptions options = {});
  explicit AdamW(std::vector<ParamGroup<AdamWOptions>> groups);

  const char* name() const override { return "AdamW"; }
};

}  // namespace ember::optim
