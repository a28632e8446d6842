// `ember export-onnx`: a bundled sample's model, with the weights of a checkpoint it saved,
// written as an ONNX file (io::export_onnx; docs/deploy.md).
#include <cstdio>
#include <string>
#include <vector>

#include "commands.h"
#include "ember/python_free_api/io/onnx.h"
#include "ember/python_free_api/io/safetensors.h"
#include "models.h"  // samples/models.h: the bundled samples' models

namespace ember::cli {

namespace {

std::string sample_names() {
  std::string s;
  for (const auto& m : samples::sample_models()) s += (s.empty() ? "" : ", ") + m.name;
  return s;
}

}  // namespace

CLI::App* add_export_onnx_command(CLI::App& app, ExportOnnxOptions& opts) {
  CLI::App* cmd = app.add_subcommand(
      "export-onnx", "write a bundled sample's model with saved weights as an ONNX file");
  std::vector<std::string> names;
  for (const auto& m : samples::sample_models()) names.push_back(m.name);
  cmd->add_option("--model", opts.model, "the sample whose model it is: " + sample_names())
      ->type_name("SAMPLE")
      ->check(CLI::IsMember(names))
      ->required();
  cmd->add_option("--weights", opts.weights,
                  "the weights: a .safetensors file of io::save(model) (fashion_cnn --save) "
                  "or a training checkpoint of io::save_checkpoint")
      ->type_name("FILE")
      ->required();
  cmd->add_option("--out", opts.out, "the ONNX file to write")->type_name("FILE")->required();
  cmd->add_option("--batch", opts.batch,
                  "batch size of the example input traced (the file's batch stays dynamic)")
      ->type_name("N")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  return cmd;
}

int run_export_onnx(const ExportOnnxOptions& opts) {
  const samples::SampleModel* sample = nullptr;
  const std::vector<samples::SampleModel> all = samples::sample_models();
  for (const auto& m : all) {
    if (m.name == opts.model) sample = &m;
  }
  EMBER_CHECK_T(ValueError, sample != nullptr, "export-onnx: no bundled sample is named '",
                opts.model, "' (", sample_names(), ")");

  // A training checkpoint holds the model under "model."; a weights file holds it as is.
  const nn::StateDict file = io::load_safetensors(opts.weights).tensors;
  nn::StateDict weights;
  for (const auto& [name, t] : file) {
    if (name.rfind("model.", 0) == 0) weights.insert(name.substr(6), t);
  }
  if (weights.size() == 0) weights = file;

  const std::shared_ptr<nn::Module> model = sample->make(&weights);
  model->load_state_dict(weights, /*strict=*/true);
  Shape shape{opts.batch};
  shape.insert(shape.end(), sample->input_shape.begin(), sample->input_shape.end());
  const Tensor example = zeros(shape, {.dtype = sample->input_dtype});
  io::export_onnx(*model, example, opts.out);
  std::printf("wrote %s: %s (%lld parameters), input %s %s with a dynamic batch, opset 17\n",
              opts.out.c_str(), model->name().c_str(),
              static_cast<long long>(model->num_parameters()), dtype_name(sample->input_dtype),
              shape_str(sample->input_shape).c_str());
  return 0;
}

}  // namespace ember::cli
