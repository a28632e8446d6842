// `ember export-images`: Fashion-MNIST written out as PNG files in the class-per-folder
// layout that data::ImageFolder (and Keras, and torchvision) read: OUT/train, OUT/test.
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "commands.h"
#include "ember/python_free_api/data/fashion_mnist.h"
#include "ember/python_free_api/data/image_folder.h"

namespace ember::cli {

CLI::App* add_export_images_command(CLI::App& app, ExportImagesOptions& opts) {
  CLI::App* cmd = app.add_subcommand(
      "export-images", "write Fashion-MNIST as PNG files, one sub-folder per class");
  opts.data_dir = data::default_fashion_mnist_dir();
  cmd->add_option("--data", opts.data_dir, "folder with the Fashion-MNIST IDX files")
      ->type_name("DIR")
      ->capture_default_str();
  cmd->add_option("--out", opts.out_dir, "output folder; gets train/ and test/ sub-folders")
      ->type_name("DIR")
      ->required();
  cmd->add_option("--split", opts.split, "which part to write: train, test or both")
      ->type_name("SPLIT")
      ->check(CLI::IsMember({"train", "test", "both"}))
      ->capture_default_str();
  cmd->add_option("--limit", opts.limit,
                  "write only the first N images of each part (default: all)")
      ->type_name("N")
      ->check(CLI::Validator(
          [](std::string& v) { return v.rfind('-', 0) == 0 ? "must be 0 or more" : ""; }, ""));
  return cmd;
}

int run_export_images(const ExportImagesOptions& opts) {
  std::vector<std::pair<data::Split, std::string>> parts;
  if (opts.split != "test") parts.emplace_back(data::Split::Train, "train");
  if (opts.split != "train") parts.emplace_back(data::Split::Test, "test");
  for (const auto& [split, name] : parts) {
    const data::FashionMNIST dataset(opts.data_dir, split);
    const std::string out = (std::filesystem::path(opts.out_dir) / name).string();
    data::export_fashion_mnist_images(dataset, out, opts.limit);
    const int64_t written = opts.limit < 0 ? dataset.size() : std::min(opts.limit, dataset.size());
    std::printf("%s: wrote %lld images to %s\n", name.c_str(), static_cast<long long>(written),
                out.c_str());
  }
  return 0;
}

}  // namespace ember::cli
