// optim::SGD: stochastic gradient descent with momentum, Nesterov momentum, dampening and
// weight decay — torch.optim.SGD's update rule and option names.
#pragma once

#include <vector>

#include "ember/core/base/export.h"
#include "ember/core/tensor.h"
#include "ember/optim/optimizer.h"

namespace ember::optim {

struct SGDOptions {
  double lr = 1e-3;
  double momentum = 0.0;
  double dampening = 0.0;
  double weight_decay = 0.0;
  // Requires momentum > 0 and dampening == 0.
  bool nesterov = false;
};

// Per step, for each parameter p with gradient g (PyTorch's rule):
//   g = g + weight_decay * p
//   buf = g on the first step, else momentum * buf + (1 - dampening) * g
//   g = nesterov ? g + momentum * buf : buf            (when momentum != 0)
//   p = p - lr * g
// State per parameter: "momentum_buffer" (when momentum != 0).
class EMBER_API SGD : public OptimizerBase<SGDOptions> {
 public:
  explicit SGD(std::vector<Tensor> params, SGDOptions options = {});
  explicit SGD(std::vector<ParamGroup<SGDOptions>> groups);

  void step() override;
  const char* name() const override { return "SGD"; }
  std::optional<double> momentum(size_t group = 0) const override;
  void set_momentum(size_t group, double momentum) override;

 protected:
  void validate(const SGDOptions& o) const override;
  OptionList group_options(size_t group) const override;
  void set_group_options(size_t group, const OptionList& values) override;
  std::vector<std::string> state_names() const override { return {"momentum_buffer"}; }
};

}  // namespace ember::optim
