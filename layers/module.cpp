// nn::Module: registration, traversal, device moves, state_dict and printing.
#include "ember/layers/module.h"

#include <cstdio>
#include <sstream>

#include "ember/core/autograd.h"
#include "ember/core/base/error.h"
#include "ember/core/ops.h"
#include "ember/layers/module_holder.h"

namespace ember::nn {

// --- summary recording -------------------------------------------------------------------

namespace {

struct SummaryRow {
  const Module* module;
  Shape output;
};

// Set only while Module::summary() runs its forward pass on this thread.
thread_local std::vector<SummaryRow>* t_summary_rows = nullptr;

}  // namespace

Tensor Module::operator()(const Tensor& x) {
  Tensor y = forward(x);
  if (t_summary_rows != nullptr) t_summary_rows->push_back({this, y.shape()});
  return y;
}

std::string Module::name() const { return class_name(typeid(*this)); }

// --- registration ---------------------------------------------------------------------------

Tensor& Module::register_parameter(const std::string& name, Tensor t, bool requires_grad) {
  EMBER_CHECK_T(ValueError, !name.empty() && name.find('.') == std::string::npos,
                "register_parameter: '", name,
                "': a parameter name must be non-empty and contain no '.'");
  for (auto& p : params_) {
    EMBER_CHECK_T(ValueError, p.first != name, "register_parameter: '", name,
                  "' is already registered");
  }
  if (t.defined()) {
    t = t.detach();
    if (requires_grad) t.requires_grad_(true);
  }
  params_.emplace_back(name, std::make_unique<Tensor>(t));
  return *params_.back().second;
}

Tensor& Module::register_buffer(const std::string& name, Tensor t) {
  for (auto& b : buffers_) {
    EMBER_CHECK_T(ValueError, b.first != name, "register_buffer: '", name,
                  "' is already registered");
  }
  buffers_.emplace_back(name, std::make_unique<Tensor>(t.defined() ? t.detach() : t));
  return *buffers_.back().second;
}

void Module::add_child(const std::string& name, std::shared_ptr<Module> child) {
  EMBER_CHECK_T(ValueError, child != nullptr, "register_module: '", name, "' is null");
  for (auto& c : children_) {
    EMBER_CHECK_T(ValueError, c.first != name, "register_module: '", name,
                  "' is already registered");
  }
  child->train(training_);
  children_.emplace_back(name, std::move(child));
}

Tensor& Module::parameter_slot(const std::string& name) {
  for (auto& p : params_) {
    if (p.first == name) return *p.second;
  }
  EMBER_CHECK_T(ValueError, false, this->name(), ": no parameter named '", name, "'");
  throw;  // unreachable
}

Tensor& Module::buffer_slot(const std::string& name) {
  for (auto& b : buffers_) {
    if (b.first == name) return *b.second;
  }
  EMBER_CHECK_T(ValueError, false, this->name(), ": no buffer named '", name, "'");
  throw;  // unreachable
}

// --- traversal ----------------------------------------------------------------------------

void Module::collect(const std::string& prefix, bool params, bool recurse,
                     std::vector<std::pair<std::string, Tensor>>* out) const {
  for (const auto& [n, t] : params ? params_ : buffers_) {
    if (t->defined()) out->emplace_back(prefix + n, *t);
  }
  if (!recurse) return;
  for (const auto& [n, c] : children_) c->collect(prefix + n + ".", params, true, out);
}

std::vector<std::pair<std::string, Tensor>> Module::named_parameters(bool recurse) const {
  std::vector<std::pair<std::string, Tensor>> out;
  collect("", true, recurse, &out);
  return out;
}

std::vector<std::pair<std::string, Tensor>> Module::named_buffers(bool recurse) const {
  std::vector<std::pair<std::string, Tensor>> out;
  collect("", false, recurse, &out);
  return out;
}

std::vector<Tensor> Module::parameters(bool recurse) const {
  std::vector<Tensor> out;
  for (auto& [n, t] : named_parameters(recurse)) out.push_back(t);
  return out;
}

std::vector<std::pair<std::string, std::shared_ptr<Module>>> Module::named_children() const {
  return children_;
}

std::vector<std::pair<std::string, Module*>> Module::named_modules() {
  std::vector<std::pair<std::string, Module*>> out{{"", this}};
  for (auto& [n, c] : children_) {
    for (auto& [sub, m] : c->named_modules()) out.emplace_back(sub.empty() ? n : n + "." + sub, m);
  }
  return out;
}

int64_t Module::num_parameters(bool trainable_only) const {
  int64_t n = 0;
  for (auto& [name, t] : named_parameters()) {
    if (!trainable_only || t.requires_grad()) n += t.numel();
  }
  return n;
}

void Module::train(bool on) {
  training_ = on;
  for (auto& [n, c] : children_) c->train(on);
}

// Points `dst`'s TensorImpl at `src`'s data, so every handle to the parameter sees it.
static void replace_data(Tensor& dst, const Tensor& src) {
  auto& d = dst.impl();
  const auto& s = src.impl();
  d.storage = s.storage;
  d.sizes = s.sizes;
  d.strides = s.strides;
  d.offset = s.offset;
  d.dtype = s.dtype;
  if (d.grad) d.grad = Tensor(d.grad).to(src.device()).to(src.dtype()).impl_ptr();
}

Module& Module::to(Device device) {
  NoGradGuard no_grad;
  for (auto& [n, t] : params_) {
    if (t->defined() && t->device() != device) replace_data(*t, t->detach().to(device));
  }
  for (auto& [n, t] : buffers_) {
    if (t->defined() && t->device() != device) replace_data(*t, t->detach().to(device));
  }
  for (auto& [n, c] : children_) c->to(device);
  return *this;
}

Module& Module::to(DType dtype) {
  EMBER_CHECK_T(DTypeError, is_floating(dtype), name(), ".to(", dtype_name(dtype),
                "): a module converts to a floating dtype only (float32, float64, float16, "
                "bfloat16); its integer and bool tensors keep theirs");
  NoGradGuard no_grad;
  const auto convert = [dtype](std::unique_ptr<Tensor>& t) {
    if (t->defined() && is_floating(t->dtype()) && t->dtype() != dtype) {
      replace_data(*t, t->detach().to(dtype));
    }
  };
  for (auto& [n, t] : params_) convert(t);
  for (auto& [n, t] : buffers_) convert(t);
  for (auto& [n, c] : children_) c->to(dtype);
  return *this;
}

void Module::zero_grad() {
  for (auto& t : parameters()) t.set_grad(Tensor());
}

// --- state dict -------------------------------------------------------------------------------

StateDict Module::state_dict() const {
  StateDict sd;
  // PyTorch's order: a module's own parameters, then its buffers, then each child's.
  std::function<void(const Module&, const std::string&)> walk = [&](const Module& m,
                                                                    const std::string& prefix) {
    for (const auto& [n, t] : m.params_) {
      if (t->defined()) sd.insert(prefix + n, t->detach());
    }
    for (const auto& [n, t] : m.buffers_) {
      if (t->defined()) sd.insert(prefix + n, t->detach());
    }
    for (const auto& [n, c] : m.children_) walk(*c, prefix + n + ".");
  };
  walk(*this, "");
  return sd;
}

void Module::load_state_dict(const StateDict& dict, bool strict) {
  std::vector<std::pair<std::string, Tensor*>> targets;
  std::function<void(Module&, const std::string&)> walk = [&](Module& m, const std::string& prefix) {
    for (auto& [n, t] : m.params_) {
      if (t->defined()) targets.emplace_back(prefix + n, t.get());
    }
    for (auto& [n, t] : m.buffers_) {
      if (t->defined()) targets.emplace_back(prefix + n, t.get());
    }
    for (auto& [n, c] : m.children_) walk(*c, prefix + n + ".");
  };
  walk(*this, "");

  std::vector<std::string> missing, unexpected, mismatched;
  for (auto& [name, t] : targets) {
    const Tensor* src = dict.find(name);
    if (src == nullptr) {
      missing.push_back(name);
    } else if (src->shape() != t->shape()) {
      mismatched.push_back(name + ": checkpoint " + shape_str(src->shape()) + ", model " +
                           shape_str(t->shape()));
    }
  }
  for (const auto& [name, t] : dict) {
    bool known = false;
    for (auto& [n, p] : targets) known = known || n == name;
    if (!known) unexpected.push_back(name);
  }
  const bool fail = !mismatched.empty() || (strict && (!missing.empty() || !unexpected.empty()));
  if (fail) {
    // A checkpoint of another model mismatches in hundreds of keys: print counts and the
    // first few of each kind, not one line of every name.
    constexpr size_t kShown = 5;
    const size_t matching = targets.size() - missing.size() - mismatched.size();
    std::ostringstream os;
    os << "load_state_dict: the state dict does not match " << name();
    if (!mismatched.empty() || (!missing.empty() && !unexpected.empty())) {
      os << "; it comes from a different architecture (or a differently configured one)";
    }
    os << "\n  " << targets.size() << " tensors in the model: " << matching << " match, "
       << missing.size() << " missing, " << mismatched.size() << " mis-shaped; "
       << unexpected.size() << " unexpected in the state dict";
    auto list = [&os](const char* what, const std::vector<std::string>& v, const char* sep) {
      if (v.empty()) return;
      os << "\n  " << what << ":" << (sep[0] == '\n' ? sep : " ");
      for (size_t i = 0; i < v.size() && i < kShown; ++i) os << (i ? sep : "") << v[i];
      if (v.size() > kShown) os << sep << "... and " << v.size() - kShown << " more";
    };
    list("missing keys", missing, ", ");
    list("unexpected keys", unexpected, ", ");
    list("shape mismatches", mismatched, "\n    ");
    if (!strict && (!missing.empty() || !unexpected.empty())) {
      os << "\n  (strict=false ignores missing and unexpected keys, never shape mismatches)";
    }
    throw ShapeError(os.str());
  }
  NoGradGuard no_grad;
  for (auto& [name, t] : targets) {
    const Tensor* src = dict.find(name);
    if (src != nullptr) t->copy_(*src);
  }
}

// --- printing -----------------------------------------------------------------------------------

void Module::repr_into(std::string* out, int indent) const {
  *out += name() + "(" + extra_repr();
  if (!children_.empty()) {
    *out += "\n";
    for (const auto& [n, c] : children_) {
      *out += std::string(indent + 2, ' ') + "(" + n + "): ";
      c->repr_into(out, indent + 2);
      *out += "\n";
    }
    *out += std::string(indent, ' ');
  }
  *out += ")";
}

std::string Module::repr() const {
  std::string s;
  repr_into(&s, 0);
  return s;
}

std::string Module::summary(const Shape& input_shape) {
  std::vector<SummaryRow> rows;
  {
    NoGradGuard no_grad;
    Device device = Device::cpu();
    for (auto& [n, t] : named_parameters()) {
      device = t.device();
      break;
    }
    Tensor x = zeros(input_shape, {.device = device});
    const bool was_training = training_;
    train(false);
    t_summary_rows = &rows;
    try {
      (*this)(x);
    } catch (...) {
      t_summary_rows = nullptr;
      train(was_training);
      throw;
    }
    t_summary_rows = nullptr;
    train(was_training);
  }
  // Path of every descendant, to label rows.
  std::vector<std::pair<std::string, Module*>> mods = named_modules();
  auto path_of = [&](const Module* m) {
    for (auto& [p, q] : mods) {
      if (q == m) return p;
    }
    return std::string("?");
  };
  std::ostringstream os;
  char line[256];
  const std::string rule(78, '=');
  os << "Model: \"" << name() << "\"\n" << rule << "\n";
  std::snprintf(line, sizeof line, "%-34s %-28s %14s\n", "Layer (type)", "Output Shape", "Param #");
  os << line << rule << "\n";
  for (const auto& r : rows) {
    if (r.module == this) continue;
    // Only leaves of the module tree, like Keras's layer list.
    if (!r.module->children_.empty()) continue;
    int64_t own = 0;
    for (const auto& [n, t] : r.module->params_) {
      if (t->defined()) own += t->numel();
    }
    Shape out = r.output;
    std::string shape = "[None";
    for (size_t i = 1; i < out.size(); ++i) shape += ", " + std::to_string(out[i]);
    shape += "]";
    const std::string label = path_of(r.module) + " (" + r.module->name() + ")";
    std::snprintf(line, sizeof line, "%-34s %-28s %14lld\n", label.c_str(), shape.c_str(),
                  static_cast<long long>(own));
    os << line;
  }
  os << rule << "\n";
  const int64_t total = num_parameters(), trainable = num_parameters(true);
  os << "Total params: " << total << "\nTrainable params: " << trainable
     << "\nNon-trainable params: " << total - trainable << "\n";
  return os.str();
}

}  // namespace ember::nn
