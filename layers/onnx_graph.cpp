// nn::OnnxGraph and the ONNX form of every layer that has one (Note [ONNX emission] in
// layers/onnx_graph.h): Gemm/MatMul, Conv, pools, normalizations, activations, reshapes,
// Gather for Embedding, and ONNX's own RNN, LSTM and GRU.
#include "ember/layers/onnx_graph.h"

#include <cmath>
#include <cstring>

#include "ember/core/autograd.h"
#include "ember/core/ops.h"
#include "ember/layers/layers.h"
#include "ember/layers/rnn.h"

namespace ember::nn {

namespace {

int64_t wrap_dim(int64_t dim, int64_t rank) { return dim < 0 ? dim + rank : dim; }

std::string layer_text(const Module& m) {
  const std::string extra = m.extra_repr();
  return m.name() + "(" + extra + ")";
}

// A detached CPU copy that later changes to the model's parameters cannot reach.
Tensor frozen(const Tensor& t) {
  NoGradGuard no_grad;
  return t.detach().cpu().contiguous().clone();
}

}  // namespace

// --- Module's default: no ONNX form ------------------------------------------------------

OnnxValue Module::emit_onnx(OnnxGraph& g, const OnnxValue& x) {
  (void)x;
  const std::string& path = g.path_of(*this);
  throw OnnxExportError(detail::str_cat(
      "export_onnx: no ONNX form for ", name(), path.empty() ? "" : " ('" + path + "')",
      ": a module with its own forward overrides emit_onnx (layers/onnx_graph.h) with the "
      "same steps on graph values"));
}

// --- OnnxGraph ------------------------------------------------------------------------------

OnnxGraph::OnnxGraph(Module& root) {
  for (auto& [path, m] : root.named_modules()) paths_.emplace(m, path);
}

const std::string& OnnxGraph::path_of(const Module& m) const {
  const auto it = paths_.find(&m);
  EMBER_CHECK_T(OnnxExportError, it != paths_.end(), "export_onnx: ", m.name(),
                " is called in the forward pass but is not registered in the exported model "
                "(register_module it, so that its parameters have state_dict names)");
  return it->second;
}

std::string OnnxGraph::fresh(const std::string& op_type) {
  std::string base = op_type;
  if (!stack_.empty()) {
    const std::string& path = path_of(*stack_.back());
    if (!path.empty()) base = path + "/" + op_type;
  }
  const int64_t n = name_counts_[base]++;
  return n == 0 ? base : base + "_" + std::to_string(n);
}

OnnxValue OnnxGraph::input(const std::string& name, const Tensor& example) {
  EMBER_CHECK_T(ShapeError, example.defined() && example.dim() >= 1,
                "export_onnx: the example input must have a batch dimension, got ",
                example.defined() ? shape_str(example.shape()) : std::string("undefined"));
  OnnxValue v{name, example.detach()};
  inputs_.push_back(v);
  return v;
}

OnnxValue OnnxGraph::call(Module& m, const OnnxValue& x) {
  path_of(m);  // an unregistered module is an error before anything is emitted
  stack_.push_back(&m);
  OnnxValue out;
  try {
    out = m.emit_onnx(*this, x);
  } catch (...) {
    stack_.pop_back();
    throw;
  }
  stack_.pop_back();
  Tensor y;
  {
    NoGradGuard no_grad;
    y = m.forward(x.example);
  }
  EMBER_CHECK_T(OnnxExportError, !out.example.defined() || out.example.shape() == y.shape(),
                "export_onnx: the ONNX form of ", layer_text(m), " gives ",
                shape_str(out.example.shape()), " but its forward gives ", shape_str(y.shape()),
                ": its emit_onnx does not follow its forward");
  out.example = y;
  return out;
}

std::vector<std::string> OnnxGraph::add_node(const std::string& op_type,
                                             std::vector<std::string> inputs,
                                             OnnxAttributes attributes, int num_outputs) {
  OnnxNode node{op_type, std::move(inputs), {}, std::move(attributes)};
  for (int i = 0; i < num_outputs; ++i) node.outputs.push_back(fresh(op_type));
  nodes_.push_back(node);
  return node.outputs;
}

std::string OnnxGraph::add_initializer(const std::string& name, const Tensor& value) {
  if (init_index_.count(name) == 0) {
    init_index_.emplace(name, inits_.size());
    inits_.emplace_back(name, frozen(value));
  }
  return name;
}

std::string OnnxGraph::parameter(const Module& m, const std::string& name) {
  const std::string& path = path_of(m);
  const std::string key = path.empty() ? name : path + "." + name;
  for (const auto& [n, t] : m.named_parameters(false)) {
    if (n == name) return add_initializer(key, t);
  }
  for (const auto& [n, t] : m.named_buffers(false)) {
    if (n == name) return add_initializer(key, t);
  }
  throw OnnxExportError(
      detail::str_cat("export_onnx: ", layer_text(m), " has no parameter '", name, "'"));
}

std::string OnnxGraph::derived(const Module& m, const std::string& name, const Tensor& value) {
  const std::string& path = path_of(m);
  return add_initializer(path.empty() ? name : path + "." + name, value);
}

std::string OnnxGraph::constant_ints(const std::vector<int64_t>& values) {
  std::string name = "const";
  for (int64_t v : values) name += "_" + (v < 0 ? "m" + std::to_string(-v) : std::to_string(v));
  return add_initializer(name, Tensor::from_vector(values, {static_cast<int64_t>(values.size())}));
}

std::string OnnxGraph::constant_int(int64_t value) {
  const std::string name =
      "scalar_" + (value < 0 ? "m" + std::to_string(-value) : std::to_string(value));
  return add_initializer(name, Tensor::from_vector(std::vector<int64_t>{value}, {}));
}

std::string OnnxGraph::constant_float(float value) {
  // Named by the bits, so two constants never share a name.
  uint32_t bits;
  static_assert(sizeof(bits) == sizeof(value));
  std::memcpy(&bits, &value, sizeof(bits));
  return add_initializer("scalar_f" + std::to_string(bits),
                         Tensor::from_vector(std::vector<float>{value}, {}));
}

std::vector<int64_t> OnnxGraph::reshape_target(const OnnxValue& x, const Shape& shape) const {
  const Shape& in = x.example.shape();
  std::vector<int64_t> target(shape.begin(), shape.end());
  // The leading dims the reshape keeps are copied (0): the batch among them stays symbolic.
  size_t kept = 0;
  while (kept < target.size() && kept < in.size() && target[kept] == in[kept]) {
    target[kept] = 0;
    ++kept;
  }
  // Otherwise the batch (dim 0) is folded into the first dim that changed.
  if (kept == 0 && !target.empty()) target[0] = -1;
  return target;
}

// --- ember's ops on graph values ------------------------------------------------------------

namespace {

OnnxValue unary(OnnxGraph& g, const char* op_type, const OnnxValue& x, Tensor y,
                OnnxAttributes attrs = {}) {
  return {g.op(op_type, {x.name}, std::move(attrs)), std::move(y)};
}

}  // namespace

OnnxValue OnnxGraph::relu(const OnnxValue& x) {
  return unary(*this, "Relu", x, ember::relu(x.example));
}
OnnxValue OnnxGraph::sigmoid(const OnnxValue& x) {
  return unary(*this, "Sigmoid", x, ember::sigmoid(x.example));
}
OnnxValue OnnxGraph::tanh(const OnnxValue& x) {
  return unary(*this, "Tanh", x, ember::tanh(x.example));
}
OnnxValue OnnxGraph::leaky_relu(const OnnxValue& x, double negative_slope) {
  return unary(*this, "LeakyRelu", x, ember::leaky_relu(x.example, negative_slope),
               {{"alpha", static_cast<float>(negative_slope)}});
}

OnnxValue OnnxGraph::gelu(const OnnxValue& x, std::string_view approximate) {
  // Opset 17 has no Gelu: the exact form 0.5 x (1 + erf(x / sqrt 2)) or the tanh form
  // 0.5 x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3))), as ember computes them.
  std::string inner;
  if (approximate == "tanh") {
    const std::string cube = op("Mul", {op("Mul", {x.name, x.name}), x.name});
    const std::string poly =
        op("Add", {x.name, op("Mul", {cube, constant_float(0.044715f)})});
    const auto sqrt_2_over_pi = static_cast<float>(std::sqrt(2.0 / 3.14159265358979323846));
    inner = op("Tanh", {op("Mul", {poly, constant_float(sqrt_2_over_pi)})});
  } else {
    inner = op("Erf", {op("Div", {x.name, constant_float(static_cast<float>(std::sqrt(2.0)))})});
  }
  const std::string one_plus = op("Add", {inner, constant_float(1.0f)});
  const std::string y = op("Mul", {op("Mul", {x.name, one_plus}), constant_float(0.5f)});
  return {y, ember::gelu(x.example, approximate)};
}

OnnxValue OnnxGraph::softmax(const OnnxValue& x, int64_t dim) {
  return unary(*this, "Softmax", x, ember::softmax(x.example, dim), {{"axis", dim}});
}
OnnxValue OnnxGraph::log_softmax(const OnnxValue& x, int64_t dim) {
  return unary(*this, "LogSoftmax", x, ember::log_softmax(x.example, dim), {{"axis", dim}});
}

OnnxValue OnnxGraph::add(const OnnxValue& a, const OnnxValue& b) {
  return {op("Add", {a.name, b.name}), ember::add(a.example, b.example)};
}
OnnxValue OnnxGraph::mul(const OnnxValue& a, const OnnxValue& b) {
  return {op("Mul", {a.name, b.name}), ember::mul(a.example, b.example)};
}

OnnxValue OnnxGraph::reshape(const OnnxValue& x, const Shape& shape) {
  Tensor y = x.example.reshape(shape);
  return {op("Reshape", {x.name, constant_ints(reshape_target(x, y.shape()))}), y};
}

OnnxValue OnnxGraph::flatten(const OnnxValue& x, int64_t start_dim, int64_t end_dim) {
  Tensor y = x.example.flatten(start_dim, end_dim);
  // ONNX's Flatten(axis=1) is [N, prod(the rest)]: flatten(1) on any input.
  if (wrap_dim(start_dim, x.example.dim()) == 1 &&
      wrap_dim(end_dim, x.example.dim()) == x.example.dim() - 1) {
    return {op("Flatten", {x.name}, {{"axis", int64_t{1}}}), y};
  }
  return {op("Reshape", {x.name, constant_ints(reshape_target(x, y.shape()))}), y};
}

OnnxValue OnnxGraph::permute(const OnnxValue& x, const std::vector<int64_t>& dims) {
  std::vector<int64_t> perm;
  for (int64_t d : dims) perm.push_back(wrap_dim(d, x.example.dim()));
  return {op("Transpose", {x.name}, {{"perm", perm}}), x.example.permute(dims).contiguous()};
}

OnnxValue OnnxGraph::transpose(const OnnxValue& x, int64_t dim0, int64_t dim1) {
  std::vector<int64_t> perm(static_cast<size_t>(x.example.dim()));
  for (size_t i = 0; i < perm.size(); ++i) perm[i] = static_cast<int64_t>(i);
  std::swap(perm[static_cast<size_t>(wrap_dim(dim0, x.example.dim()))],
            perm[static_cast<size_t>(wrap_dim(dim1, x.example.dim()))]);
  return permute(x, perm);
}

OnnxValue OnnxGraph::select(const OnnxValue& x, int64_t dim, int64_t index) {
  // Gather with a scalar index drops the dimension, as select does.
  Tensor y = x.example.select(dim, index).contiguous();
  const int64_t d = wrap_dim(dim, x.example.dim());
  const int64_t i = index < 0 ? index + x.example.size(d) : index;
  return {op("Gather", {x.name, constant_int(i)}, {{"axis", d}}), y};
}

OnnxValue OnnxGraph::narrow(const OnnxValue& x, int64_t dim, int64_t start, int64_t length) {
  Tensor y = x.example.narrow(dim, start, length).contiguous();
  const int64_t d = wrap_dim(dim, x.example.dim());
  return {op("Slice",
             {x.name, constant_ints({start}), constant_ints({start + length}), constant_ints({d})}),
          y};
}

OnnxValue OnnxGraph::cat(const std::vector<OnnxValue>& xs, int64_t dim) {
  EMBER_CHECK_T(ValueError, !xs.empty(), "export_onnx: cat of no values");
  std::vector<std::string> names;
  std::vector<Tensor> examples;
  for (const OnnxValue& v : xs) {
    names.push_back(v.name);
    examples.push_back(v.example);
  }
  Tensor y = ember::cat(examples, dim);
  return {op("Concat", names, {{"axis", wrap_dim(dim, y.dim())}}), y};
}

std::vector<OnnxValue> OnnxGraph::split(const OnnxValue& x, const std::vector<int64_t>& sizes,
                                        int64_t dim) {
  const std::vector<Tensor> ys = ember::split(x.example, sizes, dim);
  const std::vector<std::string> names =
      add_node("Split", {x.name, constant_ints(sizes)}, {{"axis", wrap_dim(dim, x.example.dim())}},
               static_cast<int>(sizes.size()));
  std::vector<OnnxValue> out;
  for (size_t i = 0; i < ys.size(); ++i) out.push_back({names[i], ys[i].contiguous()});
  return out;
}

// =========================================================================================
// The layers
// =========================================================================================

OnnxValue Sequential::emit_onnx(OnnxGraph& g, const OnnxValue& x) {
  OnnxValue y = x;
  for (auto& m : modules_) y = g.call(*m, y);
  return y;
}

OnnxValue Linear::emit_onnx(OnnxGraph& g, const OnnxValue& x) {
  const std::string w = g.parameter(*this, "weight");
  std::string y;
  if (x.example.dim() == 2) {  // Gemm takes the weight as stored: y = x W^T + b
    std::vector<std::string> in{x.name, w};
    if (options_.bias) in.push_back(g.parameter(*this, "bias"));
    y = g.op("Gemm", in, {{"transB", int64_t{1}}});
  } else {
    y = g.op("MatMul", {x.name, g.op("Transpose", {w}, {{"perm", std::vector<int64_t>{1, 0}}})});
    if (options_.bias) y = g.op("Add", {y, g.parameter(*this, "bias")});
  }
  if (activation_ == LinearActivation::kNone) return {y, Tensor()};
  // The activation as its own node, on the affine part's value.
  Tensor z;
  {
    NoGradGuard no_grad;
    z = linear(x.example, weight(), options_.bias ? bias() : Tensor());
  }
  const OnnxValue affine{y, z};
  if (activation_ == LinearActivation::kRelu) return g.relu(affine);
  return g.gelu(affine, activation_ == LinearActivation::kGeluTanh ? "tanh" : "none");
}

OnnxValue Conv2d::emit_onnx(OnnxGraph& g, const OnnxValue& x) {
  std::vector<int64_t> pads;
  if (options_.padding.same) {
    // PyTorch's "same": the odd extra pixel goes to the bottom/right.
    const int64_t th = options_.dilation.h * (kernel_.h - 1);
    const int64_t tw = options_.dilation.w * (kernel_.w - 1);
    pads = {th / 2, tw / 2, th - th / 2, tw - tw / 2};
  } else {
    const IntPair p = options_.padding.pair;
    pads = {p.h, p.w, p.h, p.w};
  }
  std::vector<std::string> in{x.name, g.parameter(*this, "weight")};
  if (options_.bias) in.push_back(g.parameter(*this, "bias"));
  return {g.op("Conv", in,
               {{"kernel_shape", std::vector<int64_t>{kernel_.h, kernel_.w}},
                {"strides", std::vector<int64_t>{options_.stride.h, options_.stride.w}},
                {"dilations", std::vector<int64_t>{options_.dilation.h, options_.dilation.w}},
                {"pads", pads},
                {"group", options_.groups}}),
          Tensor()};
}

namespace {

OnnxAttributes pool_attributes(const Pool2dParams& p) {
  const int64_t sh = p.stride[0] == 0 ? p.kernel[0] : p.stride[0];
  const int64_t sw = p.stride[1] == 0 ? p.kernel[1] : p.stride[1];
  return {{"kernel_shape", std::vector<int64_t>{p.kernel[0], p.kernel[1]}},
          {"strides", std::vector<int64_t>{sh, sw}},
          {"pads", std::vector<int64_t>{p.padding[0], p.padding[1], p.padding[0], p.padding[1]}},
          {"ceil_mode", int64_t{p.ceil_mode ? 1 : 0}}};
}

}  // namespace

OnnxValue MaxPool2d::emit_onnx(OnnxGraph& g, const OnnxValue& x) {
  return {g.op("MaxPool", {x.name}, pool_attributes(params_)), Tensor()};
}

OnnxValue AvgPool2d::emit_onnx(OnnxGraph& g, const OnnxValue& x) {
  OnnxAttributes a = pool_attributes(params_);
  a.emplace_back("count_include_pad", int64_t{params_.count_include_pad ? 1 : 0});
  return {g.op("AveragePool", {x.name}, a), Tensor()};
}

OnnxValue AdaptiveAvgPool2d::emit_onnx(OnnxGraph& g, const OnnxValue& x) {
  if (output_.h == 1 && output_.w == 1) return {g.op("GlobalAveragePool", {x.name}), Tensor()};
  const int64_t h = x.example.size(2), w = x.example.size(3);
  // ONNX has no adaptive pooling; it is a plain average pool when the bins are equal.
  EMBER_CHECK_T(OnnxExportError, h % output_.h == 0 && w % output_.w == 0,
                "export_onnx: no ONNX form for ", layer_text(*this), " on a ", h, "x", w,
                " input: ONNX has no adaptive pooling, and ", output_.str(),
                " bins are not of equal size there");
  Pool2dParams p;
  p.kernel = {h / output_.h, w / output_.w};
  p.stride = p.kernel;
  return {g.op("AveragePool", {x.name}, pool_attributes(p)), Tensor()};
}

OnnxValue Flatten::emit_onnx(OnnxGraph& g, const OnnxValue& x) {
  return {g.flatten(x, start_, end_).name, Tensor()};
}

OnnxValue Dropout::emit_onnx(OnnxGraph& g, const OnnxValue& x) {
  (void)g;
  return {x.name, Tensor()};  // the identity in eval mode: no node at all
}

OnnxValue BatchNorm::emit_onnx(OnnxGraph& g, const OnnxValue& x) {
  EMBER_CHECK_T(OnnxExportError, options_.track_running_stats, "export_onnx: no ONNX form for ",
                layer_text(*this),
                ": without running statistics it normalizes with each "
                "batch's own, which ONNX's BatchNormalization does not do at inference");
  const std::string scale = options_.affine ? g.parameter(*this, "weight")
                                            : g.derived(*this, "onnx_scale", ones({features_}));
  const std::string bias = options_.affine ? g.parameter(*this, "bias")
                                           : g.derived(*this, "onnx_bias", zeros({features_}));
  return {g.op("BatchNormalization",
               {x.name, scale, bias, g.parameter(*this, "running_mean"),
                g.parameter(*this, "running_var")},
               {{"epsilon", static_cast<float>(options_.eps)}}),
          Tensor()};
}

OnnxValue LayerNorm::emit_onnx(OnnxGraph& g, const OnnxValue& x) {
  const bool affine = options_.elementwise_affine;
  const std::string scale =
      affine ? g.parameter(*this, "weight") : g.derived(*this, "onnx_scale", ones(shape_));
  const std::string bias =
      affine ? g.parameter(*this, "bias") : g.derived(*this, "onnx_bias", zeros(shape_));
  return {g.op("LayerNormalization", {x.name, scale, bias},
               {{"axis", -static_cast<int64_t>(shape_.size())},
                {"epsilon", static_cast<float>(options_.eps)}}),
          Tensor()};
}

OnnxValue ReLU::emit_onnx(OnnxGraph& g, const OnnxValue& x) { return g.relu(x); }
OnnxValue LeakyReLU::emit_onnx(OnnxGraph& g, const OnnxValue& x) { return g.leaky_relu(x, slope_); }
OnnxValue Sigmoid::emit_onnx(OnnxGraph& g, const OnnxValue& x) { return g.sigmoid(x); }
OnnxValue Tanh::emit_onnx(OnnxGraph& g, const OnnxValue& x) { return g.tanh(x); }
OnnxValue GELU::emit_onnx(OnnxGraph& g, const OnnxValue& x) {
  return g.gelu(x, approximate_);
}
OnnxValue Softmax::emit_onnx(OnnxGraph& g, const OnnxValue& x) { return g.softmax(x, dim_); }
OnnxValue LogSoftmax::emit_onnx(OnnxGraph& g, const OnnxValue& x) { return g.log_softmax(x, dim_); }

OnnxValue Embedding::emit_onnx(OnnxGraph& g, const OnnxValue& x) {
  EMBER_CHECK_T(DTypeError, x.example.dtype() == kInt64, layer_text(*this),
                ": expected int64 indices, got ", dtype_name(x.example.dtype()));
  return {g.op("Gather", {g.parameter(*this, "weight"), x.name}, {{"axis", int64_t{0}}}), Tensor()};
}

// --- recurrent layers ---------------------------------------------------------------------------

namespace {

// ember (PyTorch) stacks the gates as LSTM i, f, g, o and GRU r, z, n; ONNX as LSTM
// i, o, f, c and GRU z, r, h. The ember gate each ONNX block comes from:
std::vector<int64_t> onnx_gate_order(RnnMode mode) {
  switch (mode) {
    case RnnMode::Lstm:
      return {0, 3, 1, 2};
    case RnnMode::Gru:
      return {1, 0, 2};
    default:
      return {0};
  }
}

// Rows [G * H, ...] (or a bias [G * H]) with the gate blocks reordered.
Tensor reorder_gates(const Tensor& w, const std::vector<int64_t>& order, int64_t hidden) {
  std::vector<Tensor> blocks;
  for (int64_t gate : order) blocks.push_back(w.narrow(0, gate * hidden, hidden));
  return ember::cat(blocks, 0);
}

}  // namespace

OnnxValue RNNBase::emit_onnx(OnnxGraph& g, const OnnxValue& x) {
  NoGradGuard no_grad;
  const int64_t dirs = params_.bidirectional ? 2 : 1;
  const int64_t hidden = params_.hidden_size;
  const std::vector<int64_t> order = onnx_gate_order(params_.mode);
  const int64_t per_dir = params_.bias ? 4 : 2;
  const std::vector<Tensor> w = weights();
  const char* op_type = params_.mode == RnnMode::Lstm  ? "LSTM"
                        : params_.mode == RnnMode::Gru ? "GRU"
                                                       : "RNN";

  // ONNX's recurrent ops take [T, N, in] (layout 0), one layer per node.
  std::string seq = x.name;
  if (params_.batch_first)
    seq = g.op("Transpose", {seq}, {{"perm", std::vector<int64_t>{1, 0, 2}}});
  for (int64_t layer = 0; layer < params_.num_layers; ++layer) {
    std::vector<Tensor> wi, wh, bias;
    for (int64_t d = 0; d < dirs; ++d) {
      const size_t k = static_cast<size_t>((layer * dirs + d) * per_dir);
      wi.push_back(reorder_gates(w[k], order, hidden).unsqueeze(0));
      wh.push_back(reorder_gates(w[k + 1], order, hidden).unsqueeze(0));
      if (params_.bias) {  // ONNX's B is [Wb, Rb] per direction
        bias.push_back(
            ember::cat(
                {reorder_gates(w[k + 2], order, hidden), reorder_gates(w[k + 3], order, hidden)}, 0)
                .unsqueeze(0));
      }
    }
    const std::string suffix = "_l" + std::to_string(layer);
    std::vector<std::string> in{seq, g.derived(*this, "onnx_W" + suffix, ember::cat(wi, 0)),
                                g.derived(*this, "onnx_R" + suffix, ember::cat(wh, 0))};
    if (params_.bias) in.push_back(g.derived(*this, "onnx_B" + suffix, ember::cat(bias, 0)));
    OnnxAttributes attrs{
        {"hidden_size", hidden},
        {"direction", std::string(params_.bidirectional ? "bidirectional" : "forward")}};
    if (params_.mode == RnnMode::Gru) attrs.emplace_back("linear_before_reset", int64_t{1});
    if (params_.mode == RnnMode::RnnTanh || params_.mode == RnnMode::RnnRelu) {
      const std::string act = params_.mode == RnnMode::RnnRelu ? "Relu" : "Tanh";
      attrs.emplace_back("activations", std::vector<std::string>(static_cast<size_t>(dirs), act));
    }
    const std::string y = g.add_node(op_type, in, attrs, params_.mode == RnnMode::Lstm ? 3 : 2)[0];
    // Y [T, D, N, H] -> [T, N, D * H]
    const std::string t = g.op("Transpose", {y}, {{"perm", std::vector<int64_t>{0, 2, 1, 3}}});
    seq = g.op("Reshape", {t, g.constant_ints({0, 0, -1})});
  }
  if (params_.batch_first)
    seq = g.op("Transpose", {seq}, {{"perm", std::vector<int64_t>{1, 0, 2}}});
  return {seq, Tensor()};
}

}  // namespace ember::nn
