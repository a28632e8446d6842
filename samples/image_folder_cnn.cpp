// image_folder_cnn: Keras's flow_from_directory CNN — three blocks of Conv 3x3 (32, 64,
// 128 filters) → ReLU → MaxPool 2, then Flatten → Dense 512 ReLU → Dense softmax —
// trained with Adam (learning rate annealed along a cosine over the epochs) and
// categorical cross-entropy on 150x150 RGB images read from a class-per-folder tree
// (<dir>/train, <dir>/test). When <dir>/train does not exist it is
// first filled with Fashion-MNIST written out as PNGs.
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include "models.h"
#include "sample_utils.h"

using namespace ember;
namespace fs = std::filesystem;

namespace {

constexpr int64_t kSide = 150;  // images are resized to kSide x kSide RGB

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// Writes the first `limit` images of a Fashion-MNIST split as dir/<class>/<index>.png.
// The PNGs go to a sibling ".partial" folder renamed at the end, so an interrupted export
// is never mistaken for a finished one.
void export_split(const std::string& data_dir, data::Split split, const fs::path& dir,
                  int64_t limit) {
  const data::FashionMNIST images(data_dir, split);
  const fs::path partial = dir.string() + ".partial";
  std::error_code ec;
  fs::remove_all(partial, ec);
  data::export_fashion_mnist_images(images, partial.string(), limit);
  fs::rename(partial, dir, ec);
  EMBER_CHECK_T(IOError, !ec, "cannot rename '", partial.string(), "' to '", dir.string(),
                "': ", ec.message());
  std::printf("wrote %lld images to %s\n",
              static_cast<long long>(std::min(limit, images.size())), dir.string().c_str());
}

// Removes a folder and its contents when it goes out of scope (also on an error).
class RemoveOnExit {
 public:
  explicit RemoveOnExit(fs::path dir) : dir_(std::move(dir)) {}
  ~RemoveOnExit() {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  RemoveOnExit(const RemoveOnExit&) = delete;
  RemoveOnExit& operator=(const RemoveOnExit&) = delete;

 private:
  fs::path dir_;
};

// Up to `limit` images of dir, resized to 150x150 RGB and scaled to [0, 1], with the
// labels as one-hot rows [N, classes] (Keras's class_mode="categorical").
std::shared_ptr<data::ImageFolder> read_split(const fs::path& dir, int64_t limit) {
  const auto start = std::chrono::steady_clock::now();
  auto folder = std::make_shared<data::ImageFolder>(
      dir.string(),
      data::ImageFolderOptions{.height = kSide, .width = kSide, .channels = 3,
                               .rescale = 1.0 / 255.0, .max_images = limit,
                               .label_mode = data::LabelMode::kCategorical});
  std::printf("%s: %lld images in %zu classes (decoded in %.1f s)\n", dir.string().c_str(),
              static_cast<long long>(folder->size()), folder->classes().size(),
              seconds_since(start));
  return folder;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Train Keras's flow_from_directory CNN on 150x150 RGB images read from "
               "class folders (by default Fashion-MNIST written out as PNGs)"};
  samples::CommonOptions o;
  o.epochs = 5;
  o.batch_size = 32;
  std::string images_dir = "fashion-mnist-images";
  int64_t train_limit = 30000;
  int64_t test_limit = 10000;
  samples::add_common_options(
      app, o,
      "train for one epoch on 1000 training images, test on 500, in a temporary folder "
      "removed afterwards (a smoke test)");
  samples::add_precision_option(app, o);
  app.add_option("--images", images_dir,
                 "folder holding train/<class>/<image> and test/<class>/<image>; when "
                 "DIR/train does not exist, Fashion-MNIST from --data is written there as PNGs");
  app.add_option("--train-limit", train_limit,
                 "training images to write and read (each takes 67.5 KB as 3x150x150 bytes: "
                 "10000 need 675 MB, all 60000 need 4 GB); taken evenly across the "
                 "class folders when DIR/train holds more")
      ->check(samples::whole_number(1));
  app.add_option("--test-limit", test_limit,
                 "test images to write and read (at most 10000, the whole test set: 675 MB)")
      ->check(samples::whole_number(1));
  std::string schedule = "cosine";
  app.add_option("--lr-schedule", schedule,
                 "cosine: anneal the learning rate to 0 over the epochs; none: keep it constant")
      ->check(samples::one_of({"cosine", "none"}));
  CLI11_PARSE(app, argc, argv);

  try {
    const Device device = samples::start(o);
    fs::path root = images_dir;
    std::unique_ptr<RemoveOnExit> cleanup;
    int64_t epochs = o.epochs;
    if (o.quick) {
      root = fs::temp_directory_path() /
             ("ember-image-folder-cnn-" + std::to_string(static_cast<long long>(getpid())));
      cleanup = std::make_unique<RemoveOnExit>(root);
      train_limit = 1000;
      test_limit = 500;
      epochs = 1;
    }

    if (!fs::exists(root / "train")) {
      std::printf("%s not found: writing Fashion-MNIST from %s there as PNGs "
                  "(%lld training and %lld test images)\n",
                  (root / "train").string().c_str(), o.data.c_str(),
                  static_cast<long long>(train_limit), static_cast<long long>(test_limit));
      if (!fs::exists(root / "test")) {
        export_split(o.data, data::Split::Test, root / "test", test_limit);
      }
      export_split(o.data, data::Split::Train, root / "train", train_limit);
    }
    const auto train_folder = read_split(root / "train", train_limit);
    const auto test_folder = read_split(root / "test", test_limit);
    const std::vector<std::string>& classes = train_folder->classes();
    EMBER_CHECK(test_folder->classes() == classes, "the class folders of ",
                (root / "test").string(), " (", test_folder->classes().size(),
                ") differ from those of ", (root / "train").string(), " (", classes.size(),
                "): both must hold the same class names");
    const auto num_classes = static_cast<int64_t>(classes.size());

    // Conv 32/64/128 → ReLU → MaxPool 2 blocks, Dense 512, softmax (samples/models.h).
    nn::Sequential model = samples::image_folder_cnn_model(num_classes);
    model.to(device);
    std::printf("%s", model.summary({1, 3, kSide, kSide}).c_str());

    optim::Adam opt(model.parameters(), {.lr = o.lr});
    Trainer trainer(model, opt, loss::CategoricalCrossEntropy(), {metrics::Accuracy()}, device);
    const auto start = std::chrono::steady_clock::now();
    std::vector<std::shared_ptr<callbacks::Callback>> cbs = samples::quick_check(o);
    if (schedule == "cosine") {  // PyTorch's CosineAnnealingLR stepped once per epoch
      cbs.push_back(std::make_shared<callbacks::LearningRateScheduler>(
          std::make_shared<optim::CosineAnnealingLR>(opt, epochs)));
    }
    const History history =
        trainer.fit(train_folder, {.epochs = epochs, .batch_size = o.batch_size,
                                    .validation = test_folder, .callbacks = cbs,
                                    .verbose = o.verbose, .precision = o.precision});
    std::printf("%.1f s per epoch (training and validation)\n",
                seconds_since(start) / static_cast<double>(history.epochs()));
    std::printf("test loss: %.4f\n", history["val_loss"].back());
    std::printf("test accuracy: %.2f%%\n", 100.0 * history["val_accuracy"].back());
  } catch (const Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  } catch (const fs::filesystem_error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
