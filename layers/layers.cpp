// Layer implementations: each a few lines over core ops.
#include "ember/layers/layers.h"

#include <cmath>
#include <cstring>
#include <sstream>

#include "ember/core/autograd.h"
#include "ember/layers/init.h"

namespace ember::nn {

namespace {

std::string fmt(double v) {
  std::ostringstream os;
  os << v;
  return os.str();
}

// PyTorch's default for Linear and Conv weights (kaiming_uniform with a = sqrt(5), i.e.
// U(-1/sqrt(fan_in), 1/sqrt(fan_in))) and biases (the same bound), or a named init.
void init_weight_and_bias(Tensor& weight, Tensor* bias, const std::string& init) {
  const double bound = 1.0 / std::sqrt(static_cast<double>(init::fan_in(weight)));
  if (init == "default") {
    init::uniform_(weight, -bound, bound);
    if (bias != nullptr && bias->defined()) init::uniform_(*bias, -bound, bound);
    return;
  }
  init::by_name(weight, init);
  if (bias != nullptr && bias->defined()) init::zeros_(*bias);  // Keras's bias default
}

// The layer as its shape errors name it: "Conv2d(3, 8, kernel_size=3, stride=1)".
std::string layer_str(const Module& m) { return m.name() + "(" + m.extra_repr() + ")"; }

void check_defined(const Module& m, const Tensor& x) {
  EMBER_CHECK_T(ValueError, x.defined(), m.name(), ": input is an undefined tensor");
}

// Pooling layers take any C, H and W; the op checks the window against the input.
void check_nchw(const Module& m, const Tensor& x) {
  check_defined(m, x);
  EMBER_CHECK_T(ShapeError, x.dim() == 4, layer_str(m), ": expected input [N, C, H, W], got ",
                shape_str(x.shape()));
}

// A pooling layer's window is checked when it is made, as Conv2d's is, not at its first
// forward.
Pool2dParams pool_params(const char* layer, IntPair kernel, const Pool2dOptions& o) {
  EMBER_CHECK_T(ValueError, kernel.h > 0 && kernel.w > 0, layer,
                ": kernel_size must be positive, got ", kernel.str());
  EMBER_CHECK_T(ValueError, o.stride.h >= 0 && o.stride.w >= 0, layer,
                ": stride must be positive (or 0 for the kernel size), got ", o.stride.str());
  EMBER_CHECK_T(ValueError,
                o.padding.h >= 0 && o.padding.w >= 0 && o.padding.h <= kernel.h / 2 &&
                    o.padding.w <= kernel.w / 2,
                layer, ": padding ", o.padding.str(), " must be in [0, half the kernel ",
                kernel.str(), "]");
  Pool2dParams p;
  p.kernel = kernel.array();
  p.stride = o.stride.array();
  p.padding = o.padding.array();
  p.ceil_mode = o.ceil_mode;
  p.count_include_pad = o.count_include_pad;
  return p;
}

std::string pool_repr(const Pool2dParams& p) {
  const IntPair stride(p.stride[0] ? p.stride[0] : p.kernel[0], p.stride[1] ? p.stride[1] : p.kernel[1]);
  return "kernel_size=" + IntPair(p.kernel[0], p.kernel[1]).str() + ", stride=" + stride.str() +
         ", padding=" + IntPair(p.padding[0], p.padding[1]).str() +
         (p.ceil_mode ? ", ceil_mode=True" : "");
}

}  // namespace

std::string IntPair::str() const {
  return h == w ? std::to_string(h) : "(" + std::to_string(h) + ", " + std::to_string(w) + ")";
}

Padding::Padding(const std::string& mode) {
  if (mode == "same") {
    same = true;
  } else if (mode != "valid") {
    throw ValueError("Conv2d: padding '" + mode + "' is not known (use a number, a pair, "
                     "\"same\" or \"valid\")");
  }
}

// --- Linear --------------------------------------------------------------------------------

Linear::Linear(int64_t in_features, int64_t out_features, LinearOptions options)
    : in_(in_features), out_(out_features), options_(std::move(options)) {
  EMBER_CHECK_T(ValueError, in_features > 0 && out_features > 0,
                "Linear: features must be positive, got in=", in_features, " out=", out_features);
  const std::string& a = options_.activation;
  EMBER_CHECK_T(ValueError, a == "none" || a == "relu" || a == "gelu" || a == "gelu_tanh",
                "Linear: activation must be \"none\", \"relu\", \"gelu\" or \"gelu_tanh\", "
                "got \"", a, "\"");
  activation_ = a == "relu"        ? LinearActivation::kRelu
                : a == "gelu"      ? LinearActivation::kGelu
                : a == "gelu_tanh" ? LinearActivation::kGeluTanh
                                   : LinearActivation::kNone;
  register_parameter("weight", empty({out_, in_}));
  register_parameter("bias", options_.bias ? empty({out_}) : Tensor());
  reset_parameters();
}

void Linear::reset_parameters() {
  init_weight_and_bias(weight(), options_.bias ? &bias() : nullptr, options_.init);
}

Tensor Linear::forward(const Tensor& x) {
  check_defined(*this, x);
  EMBER_CHECK_T(ShapeError, x.dim() >= 1 && x.size(-1) == in_, "Linear(in_features=", in_,
                ", out_features=", out_, "): expected input [*, ", in_, "], got ",
                shape_str(x.shape()));
  return linear(x, weight(), options_.bias ? bias() : Tensor(), activation_);
}

std::string Linear::extra_repr() const {
  std::string r = "in_features=" + std::to_string(in_) + ", out_features=" + std::to_string(out_) +
                  ", bias=" + (options_.bias ? "True" : "False");
  if (activation_ != LinearActivation::kNone) r += ", activation=" + options_.activation;
  return r;
}

// --- Conv2d --------------------------------------------------------------------------------

Conv2d::Conv2d(int64_t in_channels, int64_t out_channels, IntPair kernel_size, Conv2dOptions options)
    : in_(in_channels), out_(out_channels), kernel_(kernel_size), options_(std::move(options)) {
  EMBER_CHECK_T(ValueError, in_ > 0 && out_ > 0 && kernel_.h > 0 && kernel_.w > 0,
                "Conv2d: channels and kernel "
                "size must be positive, got in=",
                in_, " out=", out_, " kernel=", kernel_.str());
  EMBER_CHECK_T(ValueError,
                options_.groups > 0 && in_ % options_.groups == 0 && out_ % options_.groups == 0,
                "Conv2d: groups=", options_.groups, " must divide in_channels=", in_,
                " and out_channels=", out_);
  EMBER_CHECK_T(ValueError,
                !options_.padding.same || (options_.stride.h == 1 && options_.stride.w == 1),
                "Conv2d: padding=\"same\" needs stride 1, got stride=", options_.stride.str(),
                " (as in PyTorch; give the padding as numbers for a strided convolution)");
  register_parameter("weight", empty({out_, in_ / options_.groups, kernel_.h, kernel_.w}));
  register_parameter("bias", options_.bias ? empty({out_}) : Tensor());
  reset_parameters();
}

void Conv2d::reset_parameters() {
  init_weight_and_bias(weight(), options_.bias ? &bias() : nullptr, options_.init);
}

Tensor Conv2d::forward(const Tensor& x) {
  check_defined(*this, x);
  EMBER_CHECK_T(ShapeError, x.dim() == 4 && x.size(1) == in_, layer_str(*this),
                ": expected input [N, ", in_, ", H, W], got ", shape_str(x.shape()));
  Conv2dParams p;
  p.stride = options_.stride.array();
  p.padding = options_.padding.pair.array();
  p.dilation = options_.dilation.array();
  p.groups = options_.groups;
  p.same = options_.padding.same;
  return conv2d(x, weight(), options_.bias ? bias() : Tensor(), p);
}

std::string Conv2d::extra_repr() const {
  std::string s = std::to_string(in_) + ", " + std::to_string(out_) +
                  ", kernel_size=" + kernel_.str() + ", stride=" + options_.stride.str();
  if (options_.padding.same) {
    s += ", padding=same";
  } else if (options_.padding.pair.h || options_.padding.pair.w) {
    s += ", padding=" + options_.padding.pair.str();
  }
  if (options_.dilation.h != 1 || options_.dilation.w != 1) s += ", dilation=" + options_.dilation.str();
  if (options_.groups != 1) s += ", groups=" + std::to_string(options_.groups);
  if (!options_.bias) s += ", bias=False";
  return s;
}

// --- pooling --------------------------------------------------------------------------------

MaxPool2d::MaxPool2d(IntPair kernel_size, Pool2dOptions options)
    : params_(pool_params("MaxPool2d", kernel_size, options)) {}
Tensor MaxPool2d::forward(const Tensor& x) {
  check_nchw(*this, x);
  return max_pool2d(x, params_);
}
std::string MaxPool2d::extra_repr() const { return pool_repr(params_); }

AvgPool2d::AvgPool2d(IntPair kernel_size, Pool2dOptions options)
    : params_(pool_params("AvgPool2d", kernel_size, options)) {}
Tensor AvgPool2d::forward(const Tensor& x) {
  check_nchw(*this, x);
  return avg_pool2d(x, params_);
}
std::string AvgPool2d::extra_repr() const { return pool_repr(params_); }

AdaptiveAvgPool2d::AdaptiveAvgPool2d(IntPair output_size) : output_(output_size) {
  EMBER_CHECK_T(ValueError, output_.h > 0 && output_.w > 0,
                "AdaptiveAvgPool2d: output size must be positive, got ", output_.str());
}
Tensor AdaptiveAvgPool2d::forward(const Tensor& x) {
  check_nchw(*this, x);
  return adaptive_avg_pool2d(x, output_.array());
}
std::string AdaptiveAvgPool2d::extra_repr() const { return "output_size=" + output_.str(); }

std::string Flatten::extra_repr() const {
  return "start_dim=" + std::to_string(start_) + ", end_dim=" + std::to_string(end_);
}

Dropout::Dropout(double p) : p_(p) {
  EMBER_CHECK_T(ValueError, p >= 0.0 && p <= 1.0, "Dropout: probability must be in [0, 1], got ",
                p);
}
std::string Dropout::extra_repr() const { return "p=" + fmt(p_); }

// --- normalization ----------------------------------------------------------------------------

BatchNorm::BatchNorm(int64_t num_features, BatchNormOptions options, int64_t min_rank, int64_t max_rank)
    : features_(num_features), options_(options), min_rank_(min_rank), max_rank_(max_rank) {
  // name() is not yet the derived class's here.
  const char* who = min_rank == 4 ? "BatchNorm2d" : "BatchNorm1d";
  EMBER_CHECK_T(ValueError, num_features > 0, who, ": num_features must be positive, got ",
                num_features);
  EMBER_CHECK_T(ValueError,
                !options_.momentum || (*options_.momentum >= 0.0 && *options_.momentum <= 1.0),
                who, ": momentum must be in [0, 1] (or unset for a cumulative average), got ",
                options_.momentum.value_or(0.0));
  register_parameter("weight", options_.affine ? empty({features_}) : Tensor());
  register_parameter("bias", options_.affine ? empty({features_}) : Tensor());
  if (options_.track_running_stats) {
    register_buffer("running_mean", zeros({features_}));
    register_buffer("running_var", ones({features_}));
    register_buffer("num_batches_tracked", zeros({}, {.dtype = kInt64}));
  }
  reset_parameters();
}

void BatchNorm::reset_running_stats() {
  if (!options_.track_running_stats) return;
  NoGradGuard no_grad;
  buffer_slot("running_mean").zero_();
  buffer_slot("running_var").fill_(1.0);
  buffer_slot("num_batches_tracked").zero_();
}

void BatchNorm::reset_parameters() {
  reset_running_stats();
  if (options_.affine) {
    init::ones_(parameter_slot("weight"));
    init::zeros_(parameter_slot("bias"));
  }
}

Tensor BatchNorm::forward(const Tensor& x) {
  check_defined(*this, x);
  EMBER_CHECK_T(ShapeError, x.dim() >= min_rank_ && x.dim() <= max_rank_ && x.size(1) == features_,
                name(), "(", features_, "): expected input ",
                min_rank_ == 4 ? detail::str_cat("[N, ", features_, ", H, W]")
                               : detail::str_cat("[N, ", features_, "] or [N, ", features_, ", L]"),
                ", got ", shape_str(x.shape()));
  const bool use_batch_stats = is_training() || !options_.track_running_stats;
  const bool updates_stats = options_.track_running_stats && is_training();
  Tensor rm, rv;
  if (options_.track_running_stats) {
    rm = buffer_slot("running_mean");
    rv = buffer_slot("running_var");
  }
  double momentum = options_.momentum.value_or(0.0);
  if (!options_.momentum && updates_stats) {
    // Cumulative moving average: this batch is number n = num_batches_tracked + 1, and
    // new = old + (batch - old) / n keeps the mean of all n batches.
    const int64_t seen = buffer_slot("num_batches_tracked").item<int64_t>();
    momentum = 1.0 / static_cast<double>(seen + 1);
  }
  Tensor y = batch_norm(x, rm, rv, options_.affine ? parameter_slot("weight") : Tensor(),
                        options_.affine ? parameter_slot("bias") : Tensor(), use_batch_stats,
                        momentum, options_.eps);
  // Counted only once batch_norm has accepted the input and updated the running stats.
  if (updates_stats) {
    NoGradGuard no_grad;
    buffer_slot("num_batches_tracked").add_(ones({}, {.dtype = kInt64, .device = x.device()}));
  }
  return y;
}

std::string BatchNorm::extra_repr() const {
  return std::to_string(features_) + ", eps=" + fmt(options_.eps) + ", momentum=" +
         (options_.momentum ? fmt(*options_.momentum) : "None") + ", affine=" + (options_.affine ? "True" : "False") +
         ", track_running_stats=" + (options_.track_running_stats ? "True" : "False");
}

LayerNorm::LayerNorm(Shape normalized_shape, LayerNormOptions options)
    : shape_(std::move(normalized_shape)), options_(options) {
  EMBER_CHECK_T(ValueError, !shape_.empty(), "LayerNorm: normalized_shape must not be empty");
  register_parameter("weight", options_.elementwise_affine ? ones(shape_) : Tensor());
  register_parameter("bias", options_.elementwise_affine ? zeros(shape_) : Tensor());
}

Tensor LayerNorm::forward(const Tensor& x) {
  check_defined(*this, x);
  const int64_t k = static_cast<int64_t>(shape_.size());
  bool trailing = x.dim() >= k;
  for (int64_t i = 0; trailing && i < k; ++i) trailing = x.size(x.dim() - k + i) == shape_[i];
  EMBER_CHECK_T(ShapeError, trailing, layer_str(*this), ": expected input [*, ",
                shape_str(shape_).substr(1), ", got ", shape_str(x.shape()));
  return layer_norm(x, shape_, options_.elementwise_affine ? parameter_slot("weight") : Tensor(),
                    options_.elementwise_affine ? parameter_slot("bias") : Tensor(), options_.eps);
}

std::string LayerNorm::extra_repr() const {
  std::string s = "(";
  for (size_t i = 0; i < shape_.size(); ++i) s += (i ? ", " : "") + std::to_string(shape_[i]);
  if (shape_.size() == 1) s += ",";
  return s + "), eps=" + fmt(options_.eps) +
         ", elementwise_affine=" + (options_.elementwise_affine ? "True" : "False");
}

std::string LeakyReLU::extra_repr() const { return "negative_slope=" + fmt(slope_); }
std::string Softmax::extra_repr() const { return "dim=" + std::to_string(dim_); }

GELU::GELU(std::string approximate) : approximate_(std::move(approximate)) {
  EMBER_CHECK_T(ValueError, approximate_ == "none" || approximate_ == "tanh",
                "GELU: approximate must be \"none\" or \"tanh\", got \"", approximate_, "\"");
}
std::string GELU::extra_repr() const {
  return approximate_ == "none" ? std::string() : "approximate='" + approximate_ + "'";
}

Tensor LogSoftmax::forward(const Tensor& x) {
  check_defined(*this, x);
  return log_softmax(x, dim_);
}
std::string LogSoftmax::extra_repr() const { return "dim=" + std::to_string(dim_); }

// --- Sequential ------------------------------------------------------------------------------------

Sequential::Sequential(std::initializer_list<AnyModule> modules) {
  for (const auto& m : modules) push_back(m);
}

Sequential& Sequential::push_back(AnyModule module) {
  add_child(std::to_string(modules_.size()), module.ptr());
  modules_.push_back(module.ptr());
  return *this;
}

Module& Sequential::operator[](size_t i) const {
  EMBER_CHECK_T(ValueError, i < modules_.size(), "Sequential: index ", i, " is out of range (",
                modules_.size(), " layers)");
  return *modules_[i];
}

Tensor Sequential::forward(const Tensor& x) {
  Tensor y = x;
  for (auto& m : modules_) y = (*m)(y);
  return y;
}

}  // namespace ember::nn
