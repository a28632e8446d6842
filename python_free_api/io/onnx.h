// ONNX export: io::export_onnx writes a model as an ONNX file (opset 17) that ONNX Runtime
// and other ONNX tools run. docs/deploy.md says what exports and how to run the file.
#pragma once

#include <cstdint>
#include <string>

#include "ember/core/base/export.h"
#include "ember/core/tensor.h"
#include "ember/layers/module.h"

namespace ember::io {

struct OnnxExportOptions {
  int64_t opset = 17;  // the ONNX operator set; 17 is the only one ember writes today
  std::string input_name = "input";
  std::string output_name = "output";
};

// Runs one forward pass of `module` on `example_input` in eval mode (restoring the mode
// afterwards), recording each layer's ONNX nodes (Note [ONNX emission] in
// layers/onnx_graph.h), and writes the model to `path`: the parameters and buffers as
// initializers named by their state_dict keys, one input and one output with dim 0 a
// symbolic "batch", the graph checked by onnx::checker. The file is replaced atomically
// (a temporary beside it, renamed over it). Throws OnnxExportError naming a layer
// without an ONNX form, ember::IOError when the file cannot be written.
EMBER_API void export_onnx(nn::Module& module, const Tensor& example_input, const std::string& path,
                           const OnnxExportOptions& options = {});

}  // namespace ember::io
