// optim::Optimizer: parameter checks, gradient collection, lazily created state, and the
// state dict (see Note [Optimizer state dict] in optimizer.h).
#include "ember/optim/optimizer.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <string>

#include "ember/core/autograd.h"
#include "ember/core/base/error.h"
#include "ember/core/ops.h"

namespace ember::optim {

namespace {

// The state buffer holding a 16-bit parameter's float32 copy (Note [Master weights]).
const std::string kMasterName = "master";

std::string describe(const Tensor& t) {
  return detail::str_cat(shape_str(t.shape()), " ", dtype_name(t.dtype()), " ", t.device().str());
}

bool starts_with(const std::string& s, const std::string& prefix) {
  return s.compare(0, prefix.size(), prefix) == 0;
}

// Parses "<digits>.<rest>" after `prefix`; false when the key does not have that form.
bool parse_indexed_key(const std::string& key, const std::string& prefix, size_t* index,
                       std::string* rest) {
  if (!starts_with(key, prefix)) return false;
  size_t pos = prefix.size();
  const size_t digits_begin = pos;
  while (pos < key.size() && std::isdigit(static_cast<unsigned char>(key[pos]))) ++pos;
  if (pos == digits_begin || pos - digits_begin > 9 || pos >= key.size() || key[pos] != '.') {
    return false;
  }
  *index = static_cast<size_t>(std::stoul(key.substr(digits_begin, pos - digits_begin)));
  *rest = key.substr(pos + 1);
  return !rest->empty();
}

// A CPU snapshot of `t` that shares nothing with it.
Tensor cpu_copy(const Tensor& t) {
  NoGradGuard no_grad;
  Tensor c = t.detach().to(Device::cpu());
  // Already on the CPU, to() returns the same storage.
  if (c.impl().storage == t.impl().storage) c = c.clone();
  return c;
}

// `src` converted to `like`'s dtype and device, never sharing storage with `src`.
Tensor owned_like(const Tensor& src, const Tensor& like) {
  NoGradGuard no_grad;
  Tensor t = src.detach().to(like.dtype()).to(like.device());
  if (t.impl().storage == src.impl().storage) t = t.clone();
  return t.contiguous();
}

}  // namespace

// --- parameters and groups ------------------------------------------------------------------

Tensor* Optimizer::ParamState::find(const std::string& name) {
  for (auto& [n, t] : buffers) {
    if (n == name) return &t;
  }
  return nullptr;
}

void Optimizer::add_param_group(std::vector<Tensor> params) {
  const size_t group = groups_.size();
  for (size_t k = 0; k < params.size(); ++k) {
    const Tensor& p = params[k];
    EMBER_CHECK_T(ValueError, p.defined(), name(), ": parameter ", k, " of group ", group,
                  " is undefined");
    EMBER_CHECK_T(DTypeError, is_floating(p.dtype()), name(), ": parameter ", k, " of group ",
                  group, " is ", describe(p),
                  "; only float32, float16, bfloat16 (and float64 on the CPU) parameters can "
                  "be optimized");
    EMBER_CHECK_T(DTypeError, !(p.dtype() == kFloat64 && p.is_cuda()), name(), ": parameter ",
                  k, " of group ", group, " is ", describe(p),
                  "; float64 is supported on the CPU only");
    EMBER_CHECK_T(ValueError, p.requires_grad(), name(), ": parameter ", k, " of group ", group,
                  " (", describe(p),
                  ") does not require grad; call requires_grad_() on it or leave "
                  "it out of the optimizer");
    EMBER_CHECK_T(ValueError, p.is_leaf(), name(), ": parameter ", k, " of group ", group, " (",
                  describe(p),
                  ") is not a leaf tensor (it was computed from other tensors); optimize the "
                  "leaves it was computed from, or detach() it and call requires_grad_()");
    EMBER_CHECK_T(ValueError, p.is_contiguous(), name(), ": parameter ", k, " of group ", group,
                  " (", describe(p), ") is not contiguous; updates run over flat memory");
    for (size_t g = 0; g < groups_.size(); ++g) {
      for (const Tensor& q : groups_[g]) {
        EMBER_CHECK_T(ValueError, !q.is_same(p), name(), ": parameter ", k, " of group ", group,
                      " already appears in group ", g,
                      "; a parameter may belong to one group only");
      }
    }
    for (size_t j = 0; j < k; ++j) {
      EMBER_CHECK_T(ValueError, !params[j].is_same(p), name(), ": parameter ", k, " of group ",
                    group, " appears twice in the group (also at ", j, ")");
    }
  }
  groups_.push_back(std::move(params));
  state_.resize(state_.size() + groups_.back().size());
}

void Optimizer::check_group(size_t group, const char* op) const {
  EMBER_CHECK_T(ValueError, group < groups_.size(), name(), "::", op, ": parameter group ", group,
                " does not exist (the optimizer has ", groups_.size(), ")");
}

const std::vector<Tensor>& Optimizer::params(size_t group) const {
  check_group(group, "params");
  return groups_[group];
}

std::vector<Tensor> Optimizer::all_params() const {
  std::vector<Tensor> out;
  for (const auto& g : groups_) out.insert(out.end(), g.begin(), g.end());
  return out;
}

double Optimizer::lr(size_t group) const {
  check_group(group, "lr");
  return group_lr(group);
}

void Optimizer::set_lr(double lr) {
  for (size_t g = 0; g < groups_.size(); ++g) set_lr(g, lr);
}

void Optimizer::set_lr(size_t group, double lr) {
  check_group(group, "set_lr");
  EMBER_CHECK_T(ValueError, std::isfinite(lr) && lr >= 0.0, name(),
                "::set_lr: invalid learning rate ", lr, " for group ", group,
                " (expected a finite value >= 0)");
  set_group_lr(group, lr);
}

void Optimizer::set_momentum(size_t group, double) {
  EMBER_CHECK_T(ValueError, false, name(), " has no momentum option to set");
}

void Optimizer::zero_grad(bool set_to_none) {
  NoGradGuard no_grad;
  for (const auto& g : groups_) {
    for (const Tensor& p : g) {
      if (set_to_none) {
        Tensor(p).set_grad(Tensor());
      } else if (p.grad().defined()) {
        p.grad().zero_();
      }
    }
  }
}

// --- step support ------------------------------------------------------------------------

std::vector<Optimizer::Work> Optimizer::collect_work() {
  pending_refresh_.clear();
  std::vector<Work> work;
  size_t flat = 0;
  for (size_t g = 0; g < groups_.size(); ++g) {
    for (size_t k = 0; k < groups_[g].size(); ++k, ++flat) {
      const Tensor& p = groups_[g][k];
      Tensor grad = p.grad();
      if (!grad.defined()) continue;  // like PyTorch: no gradient, no update, no state
      EMBER_CHECK_T(DTypeError, grad.dtype() == p.dtype(), name(), "::step: parameter ", k,
                    " of group ", g, " is ", describe(p), " but its gradient is ",
                    describe(grad));
      EMBER_CHECK_T(DeviceError, grad.device() == p.device(), name(), "::step: parameter ",
                    k, " of group ", g, " is ", describe(p), " but its gradient is ",
                    describe(grad));
      EMBER_CHECK_T(ShapeError, grad.shape() == p.shape(), name(), "::step: parameter ", k,
                    " of group ", g, " is ", describe(p), " but its gradient is ",
                    describe(grad));
      EMBER_CHECK_T(DTypeError, !(p.dtype() == kFloat64 && p.is_cuda()), name(),
                    "::step: parameter ", k, " of group ", g, " is ", describe(p),
                    "; float64 is supported on the CPU only");
      EMBER_CHECK_T(ValueError, p.is_contiguous(), name(), "::step: parameter ", k, " of group ", g,
                    " (", describe(p), ") is not contiguous");
      if (!grad.is_contiguous()) {
        NoGradGuard no_grad;
        grad = grad.contiguous();
      }
      if (master_weights_ && is_reduced_float(p.dtype())) {
        // Note [Master weights]: the update runs on the float32 copy.
        NoGradGuard no_grad;
        ParamState& st = state_[flat];
        Tensor* master = st.find(kMasterName);
        if (master == nullptr) {
          st.buffers.emplace_back(kMasterName, p.detach().to(kFloat32).clone());
          master = &st.buffers.back().second;
        } else if (master->device() != p.device() || master->dtype() != kFloat32) {
          *master = master->to(kFloat32).to(p.device()).contiguous();
        }
        pending_refresh_.emplace_back(p, *master);
        work.push_back({*master, grad.to(kFloat32).contiguous(), &st, g});
        continue;
      }
      work.push_back({p, grad, &state_[flat], g});
    }
  }
  return work;
}

void Optimizer::finish_step() {
  NoGradGuard no_grad;
  for (auto& [param, master] : pending_refresh_) {
    Tensor p = param;  // a handle: copy_ writes the parameter's storage in place
    p.copy_(master);
  }
  pending_refresh_.clear();
  ++steps_;
}

Tensor Optimizer::state_buffer(const Work& w, const std::string& buffer, bool zero,
                               bool* created) {
  if (created != nullptr) *created = false;
  if (Tensor* t = w.state->find(buffer)) {
    // The module may have moved since the state was made (Module::to moves parameters in
    // place); the state follows its parameter, as PyTorch's load_state_dict casts it.
    if (t->device() != w.param.device() || t->dtype() != w.param.dtype()) {
      *t = owned_like(*t, w.param);
    }
    return *t;
  }
  const TensorOptions opts{.dtype = w.param.dtype(), .device = w.param.device()};
  Tensor t = zero ? zeros(w.param.shape(), opts) : empty(w.param.shape(), opts);
  w.state->buffers.emplace_back(buffer, t);
  if (created != nullptr) *created = true;
  return t;
}

// --- state dict --------------------------------------------------------------------------

std::vector<double> Optimizer::option_values(const OptionList& values, const std::string& option,
                                             size_t count) const {
  for (const auto& [n, v] : values) {
    if (n != option) continue;
    EMBER_CHECK_T(ValueError, v.size() == count, name(), ": option '", option, "' has ", v.size(),
                  " values, expected ", count);
    return v;
  }
  EMBER_CHECK_T(ValueError, false, name(), ": option '", option,
                "' is missing (was the state saved by another optimizer?)");
  return {};
}

StateDict Optimizer::state_dict() const {
  StateDict sd;
  sd.insert("step", scalar_tensor(static_cast<double>(steps_), {.dtype = kInt64}));
  int64_t flat = 0;
  for (size_t g = 0; g < groups_.size(); ++g) {
    const std::string prefix = "param_groups." + std::to_string(g) + ".";
    std::vector<int64_t> indices;
    for (size_t k = 0; k < groups_[g].size(); ++k) indices.push_back(flat++);
    sd.insert(prefix + "params",
              Tensor::from_vector(indices, {static_cast<int64_t>(indices.size())}));
    for (const auto& [option, values] : group_options(g)) {
      Tensor t = values.size() == 1
                     ? scalar_tensor(values[0], {.dtype = kFloat64})
                     : Tensor::from_vector(values, {static_cast<int64_t>(values.size())});
      sd.insert(prefix + option, t);
    }
  }
  for (size_t i = 0; i < state_.size(); ++i) {
    const ParamState& st = state_[i];
    if (!st.initialized()) continue;
    const std::string prefix = "state." + std::to_string(i) + ".";
    if (st.step > 0) {
      sd.insert(prefix + "step", scalar_tensor(static_cast<double>(st.step), {.dtype = kInt64}));
    }
    for (const auto& [buffer, t] : st.buffers) sd.insert(prefix + buffer, cpu_copy(t));
  }
  return sd;
}

struct Optimizer::ParsedState {
  std::optional<int64_t> steps;
  std::vector<OptionList> options;  // per group
  std::vector<ParamState> state;    // per parameter, tensors as found in the dict
};

Optimizer::ParsedState Optimizer::parse_state_dict(const StateDict& dict, const std::string& op) const {
  const std::vector<Tensor> params = all_params();
  const std::vector<std::string> known = state_names();

  ParsedState parsed;
  parsed.options.resize(groups_.size());
  parsed.state.resize(state_.size());
  std::vector<bool> has_params(groups_.size(), false);
  std::vector<std::string> unexpected;

  // Step counts are whole numbers from 0 to 2^53, the largest a double (which the updates'
  // bias corrections use) holds exactly; anything else is refused rather than converted,
  // since converting an out-of-range double to int64 is undefined behaviour.
  constexpr int64_t kMaxStepCount = int64_t{1} << 53;
  auto integer_of = [&](const std::string& key, const Tensor& t) -> int64_t {
    EMBER_CHECK_T(ShapeError, t.numel() == 1 && t.dim() == 0, op, ": '", key,
                  "' should be a rank-0 tensor, got ", describe(t));
    if (!is_floating(t.dtype())) {  // read exactly, not through a double
      const int64_t v = t.cpu().to(kInt64).item<int64_t>();
      EMBER_CHECK_T(ValueError, v >= 0 && v <= kMaxStepCount, op, ": '", key,
                    "' should hold a step count (a whole number from 0 to 2^53), got ", v);
      return v;
    }
    const double v = t.item();
    EMBER_CHECK_T(
        ValueError,
        std::isfinite(v) && v >= 0 && v == std::floor(v) && v <= static_cast<double>(kMaxStepCount),
        op, ": '", key, "' should hold a step count (a whole number from 0 to 2^53), got ", v);
    return static_cast<int64_t>(v);
  };

  int64_t first_of_group = 0;
  std::vector<int64_t> group_begin;
  for (const auto& g : groups_) {
    group_begin.push_back(first_of_group);
    first_of_group += static_cast<int64_t>(g.size());
  }

  for (const auto& [key, t] : dict) {
    size_t index = 0;
    std::string rest;
    if (key == "step") {
      parsed.steps = integer_of(key, t);
    } else if (parse_indexed_key(key, "param_groups.", &index, &rest)) {
      EMBER_CHECK_T(ValueError, index < groups_.size(), op, ": the state dict has parameter group ",
                    index, " ('", key, "') but the optimizer has ", groups_.size(), " group(s)");
      if (rest == "params") {
        const size_t expected = groups_[index].size();
        EMBER_CHECK_T(ShapeError, t.dim() == 1 && static_cast<size_t>(t.numel()) == expected,
                      op, ": parameter group ", index, " of the state dict has ",
                      t.dim() == 1 ? t.numel() : -1, " parameters ('", key, "' is ",
                      describe(t), ") but the optimizer's has ", expected);
        const std::vector<int64_t> got = t.cpu().to(kInt64).to_vector<int64_t>();
        for (size_t k = 0; k < got.size(); ++k) {
          EMBER_CHECK_T(ValueError, got[k] == group_begin[index] + static_cast<int64_t>(k), op,
                        ": '", key, "' lists parameter ", got[k], " at position ", k, ", expected ",
                        group_begin[index] + static_cast<int64_t>(k));
        }
        has_params[index] = true;
      } else {
        EMBER_CHECK_T(ShapeError, t.dim() <= 1 && t.numel() >= 1, op, ": option '", key,
                      "' should be a rank-0 or rank-1 tensor, got ", describe(t));
        parsed.options[index].emplace_back(rest, t.cpu().to(kFloat64).to_vector<double>());
      }
    } else if (parse_indexed_key(key, "state.", &index, &rest)) {
      EMBER_CHECK_T(ValueError, index < params.size(), op, ": '", key, "' refers to parameter ",
                    index, " but the optimizer has ", params.size(), " parameters");
      if (rest == "step") {
        parsed.state[index].step = integer_of(key, t);
      } else {
        const bool known_name =
            rest == kMasterName || std::find(known.begin(), known.end(), rest) != known.end();
        EMBER_CHECK_T(ValueError, known_name, op, ": unknown state '", rest, "' in '", key, "' (",
                      name(), " keeps no such state; was the state saved by another optimizer?)");
        const Tensor& p = params[index];
        EMBER_CHECK_T(ShapeError, t.shape() == p.shape(), op, ": '", key, "' is ",
                      describe(t), " but parameter ", index, " is ", describe(p));
        EMBER_CHECK_T(DTypeError, is_floating(t.dtype()), op, ": '", key, "' is ",
                      describe(t), "; expected a floating-point tensor");
        parsed.state[index].buffers.emplace_back(rest, t);
      }
    } else {
      unexpected.push_back(key);
    }
  }
  if (!unexpected.empty()) {
    // A file of another kind can hold thousands: name the first few.
    constexpr size_t kShown = 5;
    std::string list;
    for (size_t i = 0; i < unexpected.size() && i < kShown; ++i) list += (i ? ", '" : "'") + unexpected[i] + "'";
    if (unexpected.size() > kShown) list += detail::str_cat(" and ", unexpected.size() - kShown, " more");
    EMBER_CHECK_T(ValueError, false, op, ": unexpected keys ", list,
                  " (expected 'step', 'param_groups.<g>.<option>' and 'state.<i>.<name>')");
  }
  for (size_t g = 0; g < groups_.size(); ++g) {
    EMBER_CHECK_T(ValueError, has_params[g], op, ": the state dict has no 'param_groups.", g,
                  ".params' (the optimizer has ", groups_.size(), " group(s))");
  }
  return parsed;
}

void Optimizer::set_all_group_options(const std::vector<OptionList>& options, const std::string& op, bool keep) {
  std::vector<OptionList> previous;
  for (size_t g = 0; g < groups_.size(); ++g) previous.push_back(group_options(g));
  try {
    for (size_t g = 0; g < groups_.size(); ++g) set_group_options(g, options[g]);
  } catch (const ValueError& e) {
    // A bad option value (validate()) stays a ValueError, which the loaders of files turn
    // into an IOError naming the file.
    for (size_t g = 0; g < groups_.size(); ++g) set_group_options(g, previous[g]);
    throw ValueError(detail::str_cat(op, ": ", e.what()));
  } catch (const Error& e) {
    for (size_t g = 0; g < groups_.size(); ++g) set_group_options(g, previous[g]);
    throw Error(detail::str_cat(op, ": ", e.what()));
  }
  if (!keep) {
    for (size_t g = 0; g < groups_.size(); ++g) set_group_options(g, previous[g]);
  }
}

void Optimizer::check_state_dict(const StateDict& dict) {
  const std::string op = std::string(name()) + "::load_state_dict";
  const ParsedState parsed = parse_state_dict(dict, op);
  set_all_group_options(parsed.options, op, /*keep=*/false);
}

void Optimizer::load_state_dict(const StateDict& dict) {
  const std::string op = std::string(name()) + "::load_state_dict";
  ParsedState parsed = parse_state_dict(dict, op);
  // The state on each parameter's device and dtype, made before anything changes.
  const std::vector<Tensor> params = all_params();
  for (size_t i = 0; i < parsed.state.size(); ++i) {
    // With master weights a 16-bit parameter's state stays float32 (Note [Master weights]).
    const bool master = master_weights_ && is_reduced_float(params[i].dtype());
    for (auto& [buffer, t] : parsed.state[i].buffers) {
      t = master ? owned_like(t, params[i].to(kFloat32)) : owned_like(t, params[i]);
    }
  }
  set_all_group_options(parsed.options, op, /*keep=*/true);
  state_ = std::move(parsed.state);
  if (parsed.steps) steps_ = *parsed.steps;
}

}  // namespace ember::optim
