// export_onnx: the graph the layers emit (nn::OnnxGraph) as an onnx::ModelProto, checked
// by onnx::checker and written atomically.
#include "ember/python_free_api/io/onnx.h"

#include <onnx/checker.h>
#include <onnx/onnx_pb.h>

#include <cstring>
#include <limits>
#include <variant>

#include "atomic_file.h"
#include "ember/core/autograd.h"
#include "ember/core/base/error.h"
#include "ember/core/version.h"
#include "ember/layers/onnx_graph.h"

namespace ember::io {

namespace {

// protobuf refuses messages of 2 GiB or more.
constexpr size_t kMaxModelBytes = (size_t{1} << 31) - 1;

int32_t onnx_type(DType t, const std::string& what) {
  switch (t) {
    case DType::Float32:
      return onnx::TensorProto::FLOAT;
    case DType::Float64:
      return onnx::TensorProto::DOUBLE;
    case DType::Int32:
      return onnx::TensorProto::INT32;
    case DType::Int64:
      return onnx::TensorProto::INT64;
    case DType::UInt8:
      return onnx::TensorProto::UINT8;
    case DType::Bool:
      return onnx::TensorProto::BOOL;
    default:
      break;
  }
  throw DTypeError(detail::str_cat("export_onnx: ", what, " has dtype ", dtype_name(t),
                                   ", which ember does not export to ONNX yet"));
}

void set_tensor(onnx::TensorProto* out, const std::string& name, const Tensor& t) {
  out->set_name(name);
  out->set_data_type(onnx_type(t.dtype(), "initializer '" + name + "'"));
  for (int64_t d : t.shape()) out->add_dims(d);
  // ONNX's raw_data is little-endian, as ember's tensors are on every host it builds for.
  out->set_raw_data(std::string(static_cast<const char*>(t.data_ptr()), t.nbytes()));
}

void set_attribute(onnx::AttributeProto* a, const std::string& name, const nn::OnnxAttribute& v) {
  a->set_name(name);
  if (const auto* i = std::get_if<int64_t>(&v)) {
    a->set_type(onnx::AttributeProto::INT);
    a->set_i(*i);
  } else if (const auto* f = std::get_if<float>(&v)) {
    a->set_type(onnx::AttributeProto::FLOAT);
    a->set_f(*f);
  } else if (const auto* s = std::get_if<std::string>(&v)) {
    a->set_type(onnx::AttributeProto::STRING);
    a->set_s(*s);
  } else if (const auto* is = std::get_if<std::vector<int64_t>>(&v)) {
    a->set_type(onnx::AttributeProto::INTS);
    for (int64_t x : *is) a->add_ints(x);
  } else if (const auto* fs = std::get_if<std::vector<float>>(&v)) {
    a->set_type(onnx::AttributeProto::FLOATS);
    for (float x : *fs) a->add_floats(x);
  } else {
    a->set_type(onnx::AttributeProto::STRINGS);
    for (const std::string& x : std::get<std::vector<std::string>>(v)) a->add_strings(x);
  }
}

// The batch (dim 0) is symbolic; the other dims are the example's.
void set_value_info(onnx::ValueInfoProto* info, const std::string& name, const Tensor& example,
                    bool batch_first_dim) {
  info->set_name(name);
  auto* type = info->mutable_type()->mutable_tensor_type();
  type->set_elem_type(onnx_type(example.dtype(), "'" + name + "'"));
  auto* shape = type->mutable_shape();
  for (int64_t i = 0; i < example.dim(); ++i) {
    auto* d = shape->add_dim();
    if (i == 0 && batch_first_dim) {
      d->set_dim_param("batch");
    } else {
      d->set_dim_value(example.size(i));
    }
  }
}

// Puts the module in eval mode for the export and back as it was afterwards.
class EvalGuard {
 public:
  explicit EvalGuard(nn::Module& m) : m_(m), was_training_(m.is_training()) { m_.eval(); }
  ~EvalGuard() { m_.train(was_training_); }
  EvalGuard(const EvalGuard&) = delete;
  EvalGuard& operator=(const EvalGuard&) = delete;

 private:
  nn::Module& m_;
  bool was_training_;
};

}  // namespace

void export_onnx(nn::Module& module, const Tensor& example_input, const std::string& path,
                 const OnnxExportOptions& options) {
  EMBER_CHECK_T(ValueError, options.opset == 17, "export_onnx: opset ", options.opset,
                " is not supported; ember writes opset 17");
  EMBER_CHECK_T(ValueError,
                !options.input_name.empty() && !options.output_name.empty() &&
                    options.input_name != options.output_name,
                "export_onnx: the input and output need two different non-empty names, got '",
                options.input_name, "' and '", options.output_name, "'");
  EMBER_CHECK_T(
      ShapeError, example_input.defined() && example_input.dim() >= 1,
      "export_onnx: the example input must be a tensor with a batch dimension, got ",
      example_input.defined() ? shape_str(example_input.shape()) : std::string("undefined"));
  if (path.empty()) throw IOError("export_onnx: the path is empty");

  // --- trace: every layer's nodes, in eval mode without recording gradients ----------------
  EvalGuard eval(module);
  NoGradGuard no_grad;
  nn::OnnxGraph g(module);
  const nn::OnnxValue x = g.input(options.input_name, example_input);
  const nn::OnnxValue y = g.call(module, x);

  // --- the ModelProto ------------------------------------------------------------------------
  onnx::ModelProto model;
  model.set_ir_version(onnx::IR_VERSION);
  model.set_producer_name("ember");
  model.set_producer_version(ember::version());
  auto* opset = model.add_opset_import();
  opset->set_domain("");
  opset->set_version(options.opset);
  auto* graph = model.mutable_graph();
  graph->set_name(module.name());

  set_value_info(graph->add_input(), options.input_name, x.example, true);
  size_t bytes = 0;
  for (const auto& [name, t] : g.initializers()) {
    set_tensor(graph->add_initializer(), name, t);
    bytes += t.nbytes();
  }
  for (const nn::OnnxNode& n : g.nodes()) {
    auto* node = graph->add_node();
    node->set_op_type(n.op_type);
    node->set_name(n.outputs.front());
    for (const std::string& in : n.inputs) node->add_input(in);
    for (const std::string& out : n.outputs) node->add_output(out);
    for (const auto& [name, v] : n.attributes) set_attribute(node->add_attribute(), name, v);
  }
  // The output gets its public name through an Identity (ONNX Runtime removes it).
  auto* identity = graph->add_node();
  identity->set_op_type("Identity");
  identity->set_name(options.output_name);
  identity->add_input(y.name);
  identity->add_output(options.output_name);
  const bool batched = y.example.dim() >= 1 && y.example.size(0) == x.example.size(0);
  set_value_info(graph->add_output(), options.output_name, y.example, batched);

  EMBER_CHECK_T(IOError, bytes < kMaxModelBytes, "export_onnx: ", path, ": the weights take ",
                bytes, " bytes; an ONNX file (a protobuf message) holds less than 2 GiB");
  try {
    onnx::checker::check_model(model);
  } catch (const std::exception& e) {
    // A layer emitted something ONNX does not accept: ember's bug, reported with the
    // checker's words.
    throw OnnxExportError(detail::str_cat("export_onnx: the ONNX graph of ", module.name(),
                                          " fails onnx::checker: ", e.what()));
  }
  std::string serialized;
  EMBER_CHECK_T(IOError, model.SerializeToString(&serialized), "export_onnx: ", path,
                ": protobuf could not serialize the model");

  internal::write_file_atomically("export_onnx", path, [&](internal::AtomicFileWriter& w) {
    w.write(serialized.data(), serialized.size());
  });
}

}  // namespace ember::io
