// The layer library: Linear, Conv2d, pooling, Flatten, Dropout, normalization,
// activation modules and Sequential. Options structs take designated initializers:
// nn::Conv2d(1, 32, 3, {.padding = "same"}). Models hold their layers in
// nn::ModuleHolder<M> (layers/module_holder.h) to call them as conv1(x).
#pragma once

#include <array>
#include <initializer_list>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "ember/core/base/export.h"
#include "ember/core/ops.h"
#include "ember/layers/module.h"
#include "ember/layers/module_holder.h"

namespace ember::nn {

// A (height, width) pair given as one number or two: 3, or {3, 5}. Exported like the
// layers: its out-of-line members are part of the library's interface.
struct EMBER_API IntPair {
  IntPair(int64_t v) : h(v), w(v) {}  // NOLINT: implicit by design
  IntPair(int64_t h_, int64_t w_) : h(h_), w(w_) {}
  std::array<int64_t, 2> array() const { return {h, w}; }
  std::string str() const;
  int64_t h, w;
};

// Convolution padding: a number, a pair, or "same" / "valid" (as PyTorch and Keras).
struct EMBER_API Padding {
  Padding(int64_t v) : pair(v) {}                         // NOLINT
  Padding(int64_t h, int64_t w) : pair(h, w) {}
  // "same" or "valid". Taken as a string literal so that `.padding = 0` stays a number.
  template <size_t N>
  Padding(const char (&mode)[N]) : Padding(std::string(mode)) {}  // NOLINT
  explicit Padding(const std::string& mode);
  IntPair pair{0};
  bool same = false;
};

// --- Linear ---------------------------------------------------------------------------------
struct LinearOptions {
  bool bias = true;
  std::string init = "default";  // PyTorch's; or "glorot_uniform", "he_normal", ... (nn::init)
  // Applied after the bias, as Keras's Dense(activation=...): "none", "relu", "gelu" (exact)
  // or "gelu_tanh" (GELU's tanh approximation). On a GPU the bias and "relu"/"gelu_tanh"
  // run inside the GEMM (linear(x, w, b, LinearActivation) in core/ops.h).
  std::string activation = "none";
};

// y = act(x W^T + b). weight [out_features, in_features], bias [out_features].
class EMBER_API Linear : public Module {
 public:
  Linear(int64_t in_features, int64_t out_features, LinearOptions options = {});
  Tensor forward(const Tensor& x) override;
  std::string name() const override { return "Linear"; }
  OnnxValue emit_onnx(OnnxGraph& g, const OnnxValue& x) override;
  std::string extra_repr() const override;
  void reset_parameters();
  Tensor& weight() { return parameter_slot("weight"); }
  Tensor& bias() { return parameter_slot("bias"); }

 private:
  int64_t in_, out_;
  LinearOptions options_;
  LinearActivation activation_ = LinearActivation::kNone;
};

// --- Conv2d ---------------------------------------------------------------------------------
struct Conv2dOptions {
  IntPair stride = 1;
  Padding padding = 0;
  IntPair dilation = 1;
  int64_t groups = 1;
  bool bias = true;
  std::string init = "default";
};

// x [N, C_in, H, W] -> [N, C_out, H', W']; weight [C_out, C_in / groups, kH, kW].
class EMBER_API Conv2d : public Module {
 public:
  Conv2d(int64_t in_channels, int64_t out_channels, IntPair kernel_size, Conv2dOptions options = {});
  Tensor forward(const Tensor& x) override;
  std::string name() const override { return "Conv2d"; }
  OnnxValue emit_onnx(OnnxGraph& g, const OnnxValue& x) override;
  std::string extra_repr() const override;
  void reset_parameters();
  Tensor& weight() { return parameter_slot("weight"); }
  Tensor& bias() { return parameter_slot("bias"); }

 private:
  int64_t in_, out_;
  IntPair kernel_;
  Conv2dOptions options_;
};

// --- pooling ---------------------------------------------------------------------------------
struct Pool2dOptions {
  IntPair stride = 0;  // 0: the kernel size (PyTorch's default)
  IntPair padding = 0;
  bool ceil_mode = false;
  bool count_include_pad = true;  // AvgPool2d only
};

class EMBER_API MaxPool2d : public Module {
 public:
  explicit MaxPool2d(IntPair kernel_size, Pool2dOptions options = {});
  Tensor forward(const Tensor& x) override;
  std::string name() const override { return "MaxPool2d"; }
  OnnxValue emit_onnx(OnnxGraph& g, const OnnxValue& x) override;
  std::string extra_repr() const override;

 private:
  Pool2dParams params_;
};

class EMBER_API AvgPool2d : public Module {
 public:
  explicit AvgPool2d(IntPair kernel_size, Pool2dOptions options = {});
  Tensor forward(const Tensor& x) override;
  std::string name() const override { return "AvgPool2d"; }
  OnnxValue emit_onnx(OnnxGraph& g, const OnnxValue& x) override;
  std::string extra_repr() const override;

 private:
  Pool2dParams params_;
};

// Output [N, C, out_h, out_w] whatever the input size; AdaptiveAvgPool2d(1) is global pooling.
class EMBER_API AdaptiveAvgPool2d : public Module {
 public:
  explicit AdaptiveAvgPool2d(IntPair output_size);
  Tensor forward(const Tensor& x) override;
  std::string name() const override { return "AdaptiveAvgPool2d"; }
  OnnxValue emit_onnx(OnnxGraph& g, const OnnxValue& x) override;
  std::string extra_repr() const override;

 private:
  IntPair output_;
};

// --- reshaping, dropout -------------------------------------------------------------------------
class EMBER_API Flatten : public Module {
 public:
  explicit Flatten(int64_t start_dim = 1, int64_t end_dim = -1) : start_(start_dim), end_(end_dim) {}
  Tensor forward(const Tensor& x) override { return x.flatten(start_, end_); }
  std::string name() const override { return "Flatten"; }
  OnnxValue emit_onnx(OnnxGraph& g, const OnnxValue& x) override;
  std::string extra_repr() const override;

 private:
  int64_t start_, end_;
};

// Zeroes elements with probability p in training mode (scaling the rest by 1/(1-p));
// the identity in eval mode.
class EMBER_API Dropout : public Module {
 public:
  explicit Dropout(double p = 0.5);
  Tensor forward(const Tensor& x) override { return dropout(x, p_, is_training()); }
  std::string name() const override { return "Dropout"; }
  OnnxValue emit_onnx(OnnxGraph& g, const OnnxValue& x) override;
  std::string extra_repr() const override;

 private:
  double p_;
};

// --- normalization --------------------------------------------------------------------------------
struct BatchNormOptions {
  double eps = 1e-5;
  // new = (1 - momentum) * old + momentum * batch. Unset ({.momentum = std::nullopt},
  // PyTorch's momentum=None): the cumulative average of every batch so far, the factor
  // being 1 / num_batches_tracked (read from the device each training step, as PyTorch does).
  std::optional<double> momentum = 0.1;
  bool affine = true;
  bool track_running_stats = true;
};

// Shared by BatchNorm1d ([N, C] or [N, C, L]) and BatchNorm2d ([N, C, H, W]).
class EMBER_API BatchNorm : public Module {
 public:
  Tensor forward(const Tensor& x) override;
  OnnxValue emit_onnx(OnnxGraph& g, const OnnxValue& x) override;
  std::string extra_repr() const override;
  void reset_parameters();
  void reset_running_stats();

 protected:
  BatchNorm(int64_t num_features, BatchNormOptions options, int64_t min_rank, int64_t max_rank);

 private:
  int64_t features_;
  BatchNormOptions options_;
  int64_t min_rank_, max_rank_;
};

class EMBER_API BatchNorm1d : public BatchNorm {
 public:
  explicit BatchNorm1d(int64_t num_features, BatchNormOptions options = {})
      : BatchNorm(num_features, options, 2, 3) {}
  std::string name() const override { return "BatchNorm1d"; }
};

class EMBER_API BatchNorm2d : public BatchNorm {
 public:
  explicit BatchNorm2d(int64_t num_features, BatchNormOptions options = {})
      : BatchNorm(num_features, options, 4, 4) {}
  std::string name() const override { return "BatchNorm2d"; }
};

struct LayerNormOptions {
  double eps = 1e-5;
  bool elementwise_affine = true;
};

class EMBER_API LayerNorm : public Module {
 public:
  explicit LayerNorm(Shape normalized_shape, LayerNormOptions options = {});
  Tensor forward(const Tensor& x) override;
  std::string name() const override { return "LayerNorm"; }
  OnnxValue emit_onnx(OnnxGraph& g, const OnnxValue& x) override;
  std::string extra_repr() const override;

 private:
  Shape shape_;
  LayerNormOptions options_;
};

// --- activations ----------------------------------------------------------------------------------
class EMBER_API ReLU : public Module {
 public:
  Tensor forward(const Tensor& x) override { return relu(x); }
  std::string name() const override { return "ReLU"; }
  OnnxValue emit_onnx(OnnxGraph& g, const OnnxValue& x) override;
};

class EMBER_API LeakyReLU : public Module {
 public:
  explicit LeakyReLU(double negative_slope = 0.01) : slope_(negative_slope) {}
  Tensor forward(const Tensor& x) override { return leaky_relu(x, slope_); }
  std::string name() const override { return "LeakyReLU"; }
  OnnxValue emit_onnx(OnnxGraph& g, const OnnxValue& x) override;
  std::string extra_repr() const override;

 private:
  double slope_;
};

class EMBER_API Sigmoid : public Module {
 public:
  Tensor forward(const Tensor& x) override { return sigmoid(x); }
  std::string name() const override { return "Sigmoid"; }
  OnnxValue emit_onnx(OnnxGraph& g, const OnnxValue& x) override;
};

class EMBER_API Tanh : public Module {
 public:
  Tensor forward(const Tensor& x) override { return tanh(x); }
  std::string name() const override { return "Tanh"; }
  OnnxValue emit_onnx(OnnxGraph& g, const OnnxValue& x) override;
};

// approximate: "none" (exact) or "tanh", as PyTorch's nn.GELU.
class EMBER_API GELU : public Module {
 public:
  explicit GELU(std::string approximate = "none");
  Tensor forward(const Tensor& x) override { return gelu(x, approximate_); }
  std::string name() const override { return "GELU"; }
  OnnxValue emit_onnx(OnnxGraph& g, const OnnxValue& x) override;
  std::string extra_repr() const override;

 private:
  std::string approximate_;
};

class EMBER_API Softmax : public Module {
 public:
  explicit Softmax(int64_t dim = -1) : dim_(dim) {}
  Tensor forward(const Tensor& x) override { return softmax(x, dim_); }
  std::string name() const override { return "Softmax"; }
  OnnxValue emit_onnx(OnnxGraph& g, const OnnxValue& x) override;
  std::string extra_repr() const override;

 private:
  int64_t dim_;
};

// log(softmax(x)) along `dim`, computed stably in one op: the output NLL takes.
class EMBER_API LogSoftmax : public Module {
 public:
  explicit LogSoftmax(int64_t dim = -1) : dim_(dim) {}
  Tensor forward(const Tensor& x) override;
  std::string name() const override { return "LogSoftmax"; }
  OnnxValue emit_onnx(OnnxGraph& g, const OnnxValue& x) override;
  std::string extra_repr() const override;

 private:
  int64_t dim_;
};

// --- Sequential ---------------------------------------------------------------------------------------
// Runs its children in order. Children are named "0", "1", ... as in PyTorch, so
// parameters read "0.weight", "3.bias".
class EMBER_API Sequential : public Module {
 public:
  Sequential() = default;
  Sequential(std::initializer_list<AnyModule> modules);
  Tensor forward(const Tensor& x) override;
  std::string name() const override { return "Sequential"; }
  OnnxValue emit_onnx(OnnxGraph& g, const OnnxValue& x) override;

  Sequential& push_back(AnyModule module);
  size_t size() const { return modules_.size(); }
  Module& operator[](size_t i) const;
  template <typename M>
  M& at(size_t i) const {
    auto* m = dynamic_cast<M*>(&(*this)[i]);
    EMBER_CHECK_T(ValueError, m != nullptr, "Sequential::at: layer ", i, " is a ",
                  (*this)[i].name());
    return *m;
  }

 private:
  std::vector<std::shared_ptr<Module>> modules_;
};

}  // namespace ember::nn
