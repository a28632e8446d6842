// fashion_cnn: the seed CNN (Conv 32 3x3 → MaxPool 2 → Conv 64 3x3 → MaxPool 2 → Flatten
// → Dense 128 ReLU → Dense 10), defined by subclassing nn::Module and trained with the
// Keras-style Trainer on Fashion-MNIST — on the GPU when there is one, else the CPU.
// Adam (lr 1e-3) with the learning rate annealed along a cosine over the epochs.
#include <cstdio>
#include <iostream>

#include "models.h"
#include "sample_utils.h"

using namespace ember;

// FashionCnn: samples/models.h.
using samples::FashionCnn;

int main(int argc, char** argv) {
  CLI::App app{"Train the Fashion-MNIST CNN with ember's Trainer"};
  samples::CommonOptions o;
  o.epochs = 10;
  o.batch_size = 64;
  std::string save_path;
  samples::add_common_options(app, o, "train on 2000 examples for one epoch (a smoke test)");
  samples::add_precision_option(app, o);
  app.add_option("--save", save_path, "write the trained weights to this .safetensors file");
  std::string schedule = "cosine";
  app.add_option("--lr-schedule", schedule,
                 "cosine: anneal the learning rate to 0 over the epochs; none: keep it constant")
      ->check(samples::one_of({"cosine", "none"}));
  CLI11_PARSE(app, argc, argv);

  try {
    const Device device = samples::start(o);
    auto train = std::make_shared<data::FashionMNIST>(o.data, data::Split::Train);
    auto test = std::make_shared<data::FashionMNIST>(o.data, data::Split::Test);
    const auto train_set = samples::first_n(train, o.quick ? 2000 : train->size());
    const int64_t epochs = o.quick ? 1 : o.epochs;

    FashionCnn model;
    model.to(device);
    std::printf("%s", model.summary({1, 1, 28, 28}).c_str());
    optim::Adam opt(model.parameters(), {.lr = o.lr});
    std::vector<std::shared_ptr<callbacks::Callback>> cbs = samples::quick_check(o);
    if (schedule == "cosine") {  // PyTorch's CosineAnnealingLR stepped once per epoch
      cbs.push_back(std::make_shared<callbacks::LearningRateScheduler>(
          std::make_shared<optim::CosineAnnealingLR>(opt, epochs)));
    }
    Trainer trainer(model, opt, loss::CrossEntropy(), {metrics::Accuracy()}, device);
    History history = trainer.fit(train_set, {.epochs = epochs, .batch_size = o.batch_size,
                                              .validation = test, .callbacks = cbs,
                                               .verbose = o.verbose, .precision = o.precision});
    const Logs result = trainer.evaluate(test, {.batch_size = 1000, .precision = o.precision});
    std::cout << "test: " << result << "\n";
    std::printf("test accuracy: %.2f%%\n", 100.0 * history["val_accuracy"].back());
    if (!save_path.empty()) {
      io::save(model, save_path);
      std::printf("saved weights to %s\n", save_path.c_str());
    }
  } catch (const Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
