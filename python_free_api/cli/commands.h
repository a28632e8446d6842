// The `ember` tool's commands: each adds its sub-command to the parser and runs it.
// A command returns the process's exit code and lets library errors propagate (main
// prints them as `ember: error: ...`).
#pragma once

#include <CLI/CLI.hpp>

#include <cstdint>
#include <string>
#include <vector>

namespace ember::cli {

// ember info: version, build options, devices and run-time library versions.
CLI::App* add_info_command(CLI::App& app);
int run_info();

// ember bench: runs the bench_* programs and prints one table of their JSON reports.
struct BenchOptions {
  std::string json_dir;                // empty: a new temporary folder
  std::string programs_dir;            // empty: found from the tool's own place
  std::vector<std::string> only;       // benchmark names ("conv" or "bench_conv")
  bool verbose = false;                // show the programs' own output
  std::vector<std::string> passthrough;  // the arguments after `--`
};
CLI::App* add_bench_command(CLI::App& app, BenchOptions& opts);
int run_bench(const BenchOptions& opts);

// ember export-images: Fashion-MNIST as PNG files, one sub-folder per class.
struct ExportImagesOptions {
  std::string data_dir;
  std::string out_dir;
  std::string split = "both";  // train, test or both
  int64_t limit = -1;          // images per split; -1: all
};
CLI::App* add_export_images_command(CLI::App& app, ExportImagesOptions& opts);
int run_export_images(const ExportImagesOptions& opts);

// ember export-onnx: a bundled sample's model with saved weights as an ONNX file.
struct ExportOnnxOptions {
  std::string model;    // the sample's name: "fashion_cnn"
  std::string weights;  // a .safetensors file of io::save or io::save_checkpoint
  std::string out;
  int64_t batch = 1;    // the example's batch size (the file's batch is dynamic)
};
CLI::App* add_export_onnx_command(CLI::App& app, ExportOnnxOptions& opts);
int run_export_onnx(const ExportOnnxOptions& opts);

// ember launch: N ranks of a distributed job on this machine, torchrun's environment.
struct LaunchOptions {
  int nproc_per_node = 1;
  int nnodes = 1;
  int node_rank = 0;
  std::string master_addr = "127.0.0.1";
  int master_port = 29500;
  double kill_grace_s = 5.0;          // SIGTERM -> SIGKILL when stopping the ranks
  std::vector<std::string> command;   // the program and its arguments
};
CLI::App* add_launch_command(CLI::App& app, LaunchOptions& opts);
int run_launch(const LaunchOptions& opts);

}  // namespace ember::cli
