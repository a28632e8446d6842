// optim::Optimizer: the base of SGD, Adam, AdamW and RMSprop — parameter groups with
// their own options, zero_grad, step, and a state_dict of tensors (so it saves to
// safetensors next to the model's).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "ember/core/base/error.h"
#include "ember/core/base/export.h"
#include "ember/core/state_dict.h"
#include "ember/core/tensor.h"

namespace ember::optim {

// A list of parameters with the options that apply to them (PyTorch's param_groups):
//   std::vector<optim::ParamGroup<optim::AdamOptions>> groups{
//       {weights, {.lr = 1e-3, .weight_decay = 1e-4}}, {biases, {.lr = 1e-3}}};
template <typename Options>
struct ParamGroup {
  std::vector<Tensor> params;
  Options options{};
};

// Note [Optimizer state dict]
// Everything needed to resume exactly, as tensors only (scalars are rank-0 tensors), so
// it saves to safetensors beside the model:
//   "step"                       int64 []    number of step() calls
//   "param_groups.<g>.params"    int64 [n]   flat indices of the group's parameters
//   "param_groups.<g>.<option>"  float64 []  every option ("lr", "momentum", ...; booleans
//                                            as 0/1), "betas" as float64 [2]
//   "state.<i>.step"             int64 []    per-parameter step count (Adam, RMSprop)
//   "state.<i>.<buffer>"         the parameter's state ("momentum_buffer", "exp_avg", ...)
// <i> is the parameter's index in the order of the groups (PyTorch's numbering). A
// parameter that has never been updated has no state entries. With master weights (Note
// [Master weights]) a float16/bfloat16 parameter's state also holds "master", its float32
// copy, and its other buffers are float32. The tensors are CPU
// copies (a snapshot: later steps do not change them); load_state_dict moves them to
// each parameter's device and dtype.
class EMBER_API Optimizer {
 public:
  virtual ~Optimizer() = default;
  Optimizer(const Optimizer&) = delete;
  Optimizer& operator=(const Optimizer&) = delete;

  // Applies one update to every parameter that has a gradient (others are skipped).
  virtual void step() = 0;
  // Sets every parameter's gradient to undefined (PyTorch's set_to_none default), or
  // to zeros when set_to_none is false.
  void zero_grad(bool set_to_none = true);

  // "SGD", "Adam", ... (used in messages).
  virtual const char* name() const = 0;

  size_t num_groups() const { return groups_.size(); }
  const std::vector<Tensor>& params(size_t group = 0) const;
  // Every parameter, in the order of the groups.
  std::vector<Tensor> all_params() const;
  // Learning rate of one group / of every group (what LR schedules change).
  double lr(size_t group = 0) const;
  void set_lr(double lr);
  void set_lr(size_t group, double lr);
  // The momentum-like option OneCycleLR cycles: SGD's and RMSprop's momentum, Adam's
  // beta1. Empty when the optimizer has none.
  virtual std::optional<double> momentum(size_t /*group*/ = 0) const { return std::nullopt; }
  virtual void set_momentum(size_t group, double momentum);
  // Number of step() calls so far.
  int64_t steps() const { return steps_; }

  // Note [Master weights]
  // float16 and bfloat16 parameters are updated in float and rounded once per step. With
  // master weights on (PyTorch's mixed-precision recipe for a model converted with
  // to(kBFloat16)), each such parameter gets a float32 copy in its state ("master"),
  // made from the parameter at its first update; step() updates the copy with the
  // gradient converted to float32 (the other state buffers are float32 too) and then
  // refreshes the 16-bit parameter from it. Small updates then accumulate instead of
  // being rounded away. float32 and float64 parameters are unaffected. The copies are
  // saved in state_dict() as "state.<i>.master"; a state dict without them (saved with
  // master weights off) rebuilds them from the parameters at the next step.
  void set_master_weights(bool enabled) { master_weights_ = enabled; }
  bool master_weights() const { return master_weights_; }

  // See Note [Optimizer state dict].
  StateDict state_dict() const;
  // Restores it: checks the group and parameter counts, every option, each state
  // tensor's name and shape, and the step counts (whole numbers from 0 to 2^53), and
  // changes nothing unless all of it is valid.
  void load_state_dict(const StateDict& dict);
  // Runs every check load_state_dict runs and leaves the optimizer as it was: what a
  // loader that restores several objects all or nothing (io::load_checkpoint) calls
  // before it changes any of them. (The options are validated by setting them and
  // putting the previous ones back, hence not const.)
  void check_state_dict(const StateDict& dict);

 protected:
  Optimizer() = default;

  // One parameter's state: its step count and named buffers (created at its first update).
  struct ParamState {
    int64_t step = 0;
    std::vector<std::pair<std::string, Tensor>> buffers;
    bool initialized() const { return step > 0 || !buffers.empty(); }
    Tensor* find(const std::string& name);
  };

  // A parameter with a gradient, ready for an update: grad contiguous, same dtype,
  // device and shape as the parameter (checked). With master weights, `param` is a
  // 16-bit parameter's float32 copy and `grad` its gradient in float32.
  struct Work {
    Tensor param;
    Tensor grad;
    ParamState* state;
    size_t group;
  };

  // Checks and registers the parameters of a new group (construction only).
  void add_param_group(std::vector<Tensor> params);
  // Every parameter that has a gradient, in group order, after the checks. The fused
  // update (core/fused_optim.h) that writes them bumps their version counters.
  std::vector<Work> collect_work();
  // Ends step(): refreshes the 16-bit parameters from their master copies (Note [Master
  // weights]) and counts the step.
  void finish_step();
  // The buffer `name` of `w`'s state on the parameter's device and dtype, created
  // (zero-filled when `zero`) if missing; `created` tells which happened.
  Tensor state_buffer(const Work& w, const std::string& name, bool zero, bool* created = nullptr);

  // Options of one group, for the state dict: name -> value(s). One value is stored as a
  // rank-0 float64 tensor, several (Adam's betas) as a rank-1 one.
  using OptionList = std::vector<std::pair<std::string, std::vector<double>>>;
  virtual OptionList group_options(size_t group) const = 0;
  // Builds and validates one group's options from such a list (values looked up by name
  // with option_value), then stores them. Throws without storing when one is wrong.
  virtual void set_group_options(size_t group, const OptionList& values) = 0;
  // The values of option `name` in `values`, checked to number `count`.
  std::vector<double> option_values(const OptionList& values, const std::string& name,
                                    size_t count) const;
  double option_value(const OptionList& values, const std::string& name) const {
    return option_values(values, name, 1)[0];
  }
  // The state buffer names this optimizer may create ("step" excluded).
  virtual std::vector<std::string> state_names() const = 0;
  virtual double group_lr(size_t group) const = 0;
  virtual void set_group_lr(size_t group, double lr) = 0;

  std::vector<std::vector<Tensor>> groups_;
  std::vector<ParamState> state_;  // by flat parameter index
  int64_t steps_ = 0;
  bool master_weights_ = false;
  // (16-bit parameter, master copy) pairs of the step in progress.
  std::vector<std::pair<Tensor, Tensor>> pending_refresh_;

 private:
  void check_group(size_t group, const char* op) const;
  // A state dict parsed and checked against this optimizer, options not yet validated.
  struct ParsedState;
  ParsedState parse_state_dict(const StateDict& dict, const std::string& op) const;
  // Sets every group's options or, when one is invalid, none; with `keep` false the
  // previous options are put back even when all are valid (check_state_dict's dry run).
  void set_all_group_options(const std::vector<OptionList>& options, const std::string& op, bool keep);
};

// The options-holding middle of every optimizer: one Options per group.
template <typename Options>
class OptimizerBase : public Optimizer {
 public:
  const Options& options(size_t group = 0) const {
    check_index(group);
    return options_[group];
  }
  // Replaces one group's options (validated like the constructor's).
  void set_options(size_t group, const Options& options) {
    check_index(group);
    validate(options);
    options_[group] = options;
  }

 protected:
  void init(std::vector<ParamGroup<Options>> groups) {
    EMBER_CHECK_T(ValueError, !groups.empty(), name(), ": got no parameter groups");
    for (auto& g : groups) {
      validate(g.options);
      add_param_group(std::move(g.params));
      options_.push_back(g.options);
    }
  }
  virtual void validate(const Options& options) const = 0;
  double group_lr(size_t group) const override { return options_[group].lr; }
  void set_group_lr(size_t group, double lr) override { options_[group].lr = lr; }

  std::vector<Options> options_;

 private:
  void check_index(size_t group) const {
    EMBER_CHECK_T(ValueError, group < options_.size(), name(), ": parameter group ", group,
                  " does not exist (the optimizer has ", options_.size(), ")");
  }
};

}  // namespace ember::optim
