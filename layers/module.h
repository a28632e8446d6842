// nn::Module: the base of every layer and model — registered parameters, buffers and
// children, train/eval, to(device), state_dict, and a Keras-style summary.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "ember/core/device.h"
#include "ember/core/base/export.h"
#include "ember/core/state_dict.h"
#include "ember/core/tensor.h"

namespace ember::nn {

template <typename M>
class ModuleHolder;  // layers/module_holder.h
class OnnxGraph;     // layers/onnx_graph.h
struct OnnxValue;

// Name -> tensor in registration order (core/state_dict.h); the name layers' users know.
using StateDict = ember::StateDict;

class EMBER_API Module {
 public:
  Module() = default;
  virtual ~Module() = default;
  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;
  Module(Module&&) = default;
  Module& operator=(Module&&) = default;

  virtual Tensor forward(const Tensor& x) = 0;
  // Calls forward(); prefer it to forward() so summary() can see every layer.
  Tensor operator()(const Tensor& x);

  // The class name as printed ("Linear", "Conv2d", "FashionCnn"): by default the dynamic
  // type's name, demangled and without namespaces, as PyTorch and Keras print it.
  virtual std::string name() const;
  // The constructor arguments as printed, e.g. "in_features=784, out_features=10".
  virtual std::string extra_repr() const { return ""; }

  // Adds this module's ONNX nodes, applied to `x`, to `g` (io::export_onnx; see Note [ONNX
  // emission] in layers/onnx_graph.h). A model with its own forward overrides it with the
  // same steps on graph values; the default throws OnnxExportError naming the module.
  virtual OnnxValue emit_onnx(OnnxGraph& g, const OnnxValue& x);

  std::vector<Tensor> parameters(bool recurse = true) const;
  std::vector<std::pair<std::string, Tensor>> named_parameters(bool recurse = true) const;
  std::vector<std::pair<std::string, Tensor>> named_buffers(bool recurse = true) const;
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> named_children() const;
  // Every descendant with its dotted path ("" is this module).
  std::vector<std::pair<std::string, Module*>> named_modules();
  int64_t num_parameters(bool trainable_only = false) const;

  virtual void train(bool on = true);
  void eval() { train(false); }
  bool is_training() const { return training_; }

  // Moves every parameter and buffer in place: tensors held elsewhere (an optimizer,
  // a layer member) see the move, like PyTorch's module.to().
  Module& to(Device device);
  // Converts every floating parameter and buffer (and gradient) to `dtype` in place, as
  // PyTorch's module.to(dtype): the same tensors, so an optimizer holding them sees the
  // change; requires_grad is kept; integer and bool buffers keep their dtype. `dtype` must
  // be floating (DTypeError otherwise).
  Module& to(DType dtype);
  // Sets every parameter's gradient to undefined (set_to_none, PyTorch's default).
  void zero_grad();

  StateDict state_dict() const;
  // Copies values into the registered tensors (converting device and dtype). Strict mode
  // reports every missing, unexpected and mis-shaped key in one error.
  void load_state_dict(const StateDict& dict, bool strict = true);

  // Nested printout like PyTorch's repr.
  std::string repr() const;
  // Keras-style table: layer (type), output shape, parameter count, and totals. Runs one
  // forward pass on zeros of `input_shape` (batch included) without recording gradients.
  std::string summary(const Shape& input_shape);

 protected:
  Tensor& register_parameter(const std::string& name, Tensor t, bool requires_grad = true);
  Tensor& register_buffer(const std::string& name, Tensor t);
  template <typename M, typename = std::enable_if_t<std::is_base_of_v<Module, std::decay_t<M>>>>
  std::shared_ptr<std::decay_t<M>> register_module(const std::string& name, M&& module) {
    auto ptr = std::make_shared<std::decay_t<M>>(std::forward<M>(module));
    add_child(name, ptr);
    return ptr;
  }
  template <typename M>
  std::shared_ptr<M> register_module(const std::string& name, std::shared_ptr<M> module) {
    add_child(name, module);
    return module;
  }
  // Registers the module a holder shares (the holder keeps pointing at it).
  template <typename M>
  std::shared_ptr<M> register_module(const std::string& name, const ModuleHolder<M>& holder) {
    return register_module(name, holder.ptr());
  }
  void add_child(const std::string& name, std::shared_ptr<Module> child);
  // Lets a subclass with tensor members re-point them after a move (parameters are held
  // in stable slots, so members are references into them: see Note [Parameter slots]).
  Tensor& parameter_slot(const std::string& name);
  Tensor& buffer_slot(const std::string& name);

 private:
  // Note [Parameter slots]
  // Parameters and buffers live in std::unique_ptr<Tensor> slots so a layer can keep a
  // `Tensor&` to its weight that stays valid when the module object itself is moved
  // (as happens when it is placed into an nn::Sequential).
  std::vector<std::pair<std::string, std::unique_ptr<Tensor>>> params_;
  std::vector<std::pair<std::string, std::unique_ptr<Tensor>>> buffers_;
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> children_;
  bool training_ = true;

  void collect(const std::string& prefix, bool params, bool recurse,
               std::vector<std::pair<std::string, Tensor>>* out) const;
  void repr_into(std::string* out, int indent) const;
};

// Holds any module by shared pointer; built implicitly from a module value (moved in),
// a shared_ptr or a ModuleHolder (shared), so nn::Sequential{nn::Linear(2, 3), nn::ReLU()}
// reads naturally.
class EMBER_API AnyModule {
 public:
  template <typename M, typename = std::enable_if_t<std::is_base_of_v<Module, std::decay_t<M>>>>
  AnyModule(M&& m) : ptr_(std::make_shared<std::decay_t<M>>(std::forward<M>(m))) {}
  template <typename M, typename = std::enable_if_t<std::is_base_of_v<Module, M>>>
  AnyModule(std::shared_ptr<M> m) : ptr_(std::move(m)) {}
  template <typename M>
  AnyModule(const ModuleHolder<M>& m) : ptr_(m.ptr()) {}
  const std::shared_ptr<Module>& ptr() const { return ptr_; }

 private:
  std::shared_ptr<Module> ptr_;
};

}  // namespace ember::nn
