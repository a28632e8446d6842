// nn::OnnxGraph: the ONNX graph a model's layers emit for io::export_onnx, as plain data
// (nodes, attributes, initializers) with no protobuf in it; python_free_api/io/onnx.cpp
// turns it into an ONNX file. See Note [ONNX emission].
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <variant>
#include <vector>

#include "ember/core/base/error.h"
#include "ember/core/base/export.h"
#include "ember/core/tensor.h"
#include "ember/layers/module.h"
#include "ember/layers/module_holder.h"

namespace ember {

// An export that cannot be expressed in ONNX (a layer without an ONNX form, an option ONNX
// lacks). Its message names the layer.
class EMBER_API OnnxExportError : public Error {
  using Error::Error;
};

}  // namespace ember

namespace ember::nn {

// Note [ONNX emission]
// Export runs the model's forward pass once more, in eval mode, layer by layer: every
// module says which ONNX nodes it stands for through Module::emit_onnx, and OnnxGraph::call
// runs the module's own forward on the same example values beside it. So each graph value
// carries what it holds for the example input (OnnxValue::example), which gives every
// emitter the static sizes it needs (a Linear on a 3-D input, a pooling window), and a
// container's emission is checked against its forward: a shape that differs is an error,
// not a wrong file. Built-in layers and nn::Sequential emit themselves; a model with its
// own forward overrides emit_onnx with the same calls on OnnxValues, through the helpers
// below that mirror ember's ops (g.relu(x), g.flatten(x, 1), g.call(conv1_, x)). A module
// without an override fails with OnnxExportError naming it: nothing is skipped. Dim 0 of
// the graph's input is the batch, left symbolic: reshapes keep it with ONNX's 0 ("copy
// this dim") or fold it into a -1, never as the example's number.

using OnnxAttribute = std::variant<int64_t, float, std::string, std::vector<int64_t>,
                                   std::vector<float>, std::vector<std::string>>;

struct OnnxNode {
  std::string op_type;
  std::vector<std::string> inputs;  // "" for an optional input left out
  std::vector<std::string> outputs;
  std::vector<std::pair<std::string, OnnxAttribute>> attributes;
};

// A value of the graph: its name, and what it holds for the example input.
struct OnnxValue {
  std::string name;
  Tensor example;
};

using OnnxAttributes = std::vector<std::pair<std::string, OnnxAttribute>>;

class EMBER_API OnnxGraph {
 public:
  // `root` is the exported model: parameters become initializers named by their
  // state_dict key ("conv1.weight", "0.bias").
  explicit OnnxGraph(Module& root);

  // The graph's input; `example` is a CPU tensor whose dim 0 is the (symbolic) batch.
  OnnxValue input(const std::string& name, const Tensor& example);
  // Emits `m` applied to `x` and runs m's forward on x's example (Note [ONNX emission]).
  OnnxValue call(Module& m, const OnnxValue& x);
  template <typename M>
  OnnxValue call(const ModuleHolder<M>& m, const OnnxValue& x) {
    return call(*m, x);
  }

  // --- building blocks for emitters ---------------------------------------------------
  // Adds a node and returns its output names (fresh, derived from the op and the module
  // being emitted).
  std::vector<std::string> add_node(const std::string& op_type, std::vector<std::string> inputs,
                                    OnnxAttributes attributes = {}, int num_outputs = 1);
  // One node with one output: g.op("Relu", {x.name}).
  std::string op(const std::string& op_type, std::vector<std::string> inputs,
                 OnnxAttributes attributes = {}) {
    return add_node(op_type, std::move(inputs), std::move(attributes))[0];
  }
  // A registered parameter or buffer of `m` (a module of the exported model) as an
  // initializer named by its state_dict key; added once however often it is used.
  std::string parameter(const Module& m, const std::string& name);
  // An initializer derived from `m`'s parameters (LSTM weights in ONNX's gate order, a
  // LayerNorm's implicit scale), named "<m's path>.<name>".
  std::string derived(const Module& m, const std::string& name, const Tensor& value);
  // Constants: an int64 vector (shapes, axes, sizes), an int64 scalar, a float32 scalar.
  std::string constant_ints(const std::vector<int64_t>& values);
  std::string constant_int(int64_t value);
  std::string constant_float(float value);
  // The ONNX Reshape target for reshaping `x` to `shape` (its example's new shape): the
  // batch kept as 0, or folded into a -1 (Note [ONNX emission]).
  std::vector<int64_t> reshape_target(const OnnxValue& x, const Shape& shape) const;

  // --- ember's ops on graph values (the example is computed with the op itself) ----------
  OnnxValue relu(const OnnxValue& x);
  OnnxValue leaky_relu(const OnnxValue& x, double negative_slope = 0.01);
  OnnxValue sigmoid(const OnnxValue& x);
  OnnxValue tanh(const OnnxValue& x);
  OnnxValue gelu(const OnnxValue& x, std::string_view approximate = "none");
  OnnxValue softmax(const OnnxValue& x, int64_t dim = -1);
  OnnxValue log_softmax(const OnnxValue& x, int64_t dim = -1);
  OnnxValue add(const OnnxValue& a, const OnnxValue& b);
  OnnxValue mul(const OnnxValue& a, const OnnxValue& b);
  OnnxValue flatten(const OnnxValue& x, int64_t start_dim = 0, int64_t end_dim = -1);
  // `shape` as Tensor::reshape takes it (-1 allowed); the batch stays symbolic.
  OnnxValue reshape(const OnnxValue& x, const Shape& shape);
  OnnxValue transpose(const OnnxValue& x, int64_t dim0, int64_t dim1);
  OnnxValue permute(const OnnxValue& x, const std::vector<int64_t>& dims);
  OnnxValue select(const OnnxValue& x, int64_t dim, int64_t index);
  OnnxValue narrow(const OnnxValue& x, int64_t dim, int64_t start, int64_t length);
  OnnxValue cat(const std::vector<OnnxValue>& xs, int64_t dim = 0);
  std::vector<OnnxValue> split(const OnnxValue& x, const std::vector<int64_t>& sizes,
                               int64_t dim = 0);

  // --- the result ---------------------------------------------------------------------------
  const std::vector<OnnxNode>& nodes() const { return nodes_; }
  // Initializers in the order they were added (CPU, contiguous).
  const std::vector<std::pair<std::string, Tensor>>& initializers() const { return inits_; }
  const std::vector<OnnxValue>& inputs() const { return inputs_; }
  // The dotted state_dict path of a module of the model ("" for the root).
  const std::string& path_of(const Module& m) const;

 private:
  std::string fresh(const std::string& op_type);
  std::string add_initializer(const std::string& name, const Tensor& value);

  std::unordered_map<const Module*, std::string> paths_;
  std::vector<const Module*> stack_;  // the modules being emitted, innermost last
  std::vector<OnnxNode> nodes_;
  std::vector<std::pair<std::string, Tensor>> inits_;
  std::map<std::string, size_t> init_index_;
  std::vector<OnnxValue> inputs_;
  std::map<std::string, int64_t> name_counts_;
};

}  // namespace ember::nn
