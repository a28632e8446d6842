// nn::ModuleHolder<M>: a shared handle to a module that is called like one, the role of
// libtorch's TORCH_MODULE, so a subclassed model writes `conv1(x)` instead of `(*conv1_)(x)`.
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <type_traits>
#include <typeinfo>
#include <utility>

#include "ember/core/base/error.h"
#include "ember/core/base/export.h"
#include "ember/layers/module.h"

namespace ember::nn {

// The name of a C++ type as Module::name() prints it: demangled, namespaces dropped
// ("ember::nn::Conv2d" -> "Conv2d", "(anonymous namespace)::Net" -> "Net").
EMBER_API std::string class_name(const std::type_info& type);

// Note [Module holders]
// libtorch generates a handle class per layer (TORCH_MODULE(Linear) wraps LinearImpl);
// ember's layers are already the classes users name, so one template does the job:
//
//   class Net : public nn::Module {
//    public:
//     Net() {
//       conv1 = register_module("conv1", nn::Conv2d(1, 32, 3));
//       fc = register_module("fc", nn::Linear(32 * 26 * 26, 10));
//     }
//     Tensor forward(const Tensor& x) override { return fc(relu(conv1(x)).flatten(1)); }
//    private:
//     nn::ModuleHolder<nn::Conv2d> conv1;
//     nn::ModuleHolder<nn::Linear> fc;
//   };
//
// A holder is a std::shared_ptr<M> with call syntax: copies share the module (as
// register_module, nn::Sequential and the holder's owner all do), `fc->weight()` reaches
// the layer's own members, and `fc(x)` goes through Module::operator() so summary() sees
// the layer. A default-constructed holder is empty until assigned; using it then throws
// an ember::ValueError naming the layer type instead of dereferencing null.
template <typename M>
class ModuleHolder {
  static_assert(std::is_base_of_v<Module, M>, "ModuleHolder<M>: M must derive from nn::Module");

 public:
  using element_type = M;

  ModuleHolder() = default;
  ModuleHolder(std::nullptr_t) {}  // NOLINT: implicit by design
  // Shares an existing module (what register_module returns).
  template <typename D, typename = std::enable_if_t<std::is_convertible_v<D*, M*>>>
  ModuleHolder(std::shared_ptr<D> module) : impl_(std::move(module)) {}  // NOLINT
  // Takes a module value (moved in): nn::ModuleHolder<nn::Linear> fc = nn::Linear(4, 2);
  template <typename D, typename = std::enable_if_t<std::is_base_of_v<M, std::decay_t<D>> &&
                                                    !std::is_lvalue_reference_v<D>>>
  ModuleHolder(D&& module)  // NOLINT
      : impl_(std::make_shared<std::decay_t<D>>(std::forward<D>(module))) {}

  // Calls the module: fc(x) is (*fc)(x), i.e. Module::operator() (or M's own).
  template <typename... Args>
  decltype(auto) operator()(Args&&... args) const {
    return (*get())(std::forward<Args>(args)...);
  }
  M* operator->() const { return get(); }
  M& operator*() const { return *get(); }
  // The module; throws when the holder is empty.
  M* get() const {
    EMBER_CHECK_T(ValueError, impl_ != nullptr, "ModuleHolder<", class_name(typeid(M)),
                  ">: used while empty; assign it a module first, e.g. `layer = "
                  "register_module(\"layer\", nn::", class_name(typeid(M)), "(...))` in the "
                  "model's constructor");
    return impl_.get();
  }
  const std::shared_ptr<M>& ptr() const { return impl_; }
  bool is_empty() const { return impl_ == nullptr; }
  explicit operator bool() const { return impl_ != nullptr; }

 private:
  std::shared_ptr<M> impl_;
};

}  // namespace ember::nn
