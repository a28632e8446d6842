// sequence_lstm: Fashion-MNIST read as sequences: each image is 28 steps (its rows) of 28
// pixels, fed to a 2-layer LSTM (hidden 128, batch-first) whose output at the last step
// goes to a Dense 10 head. Defined by subclassing nn::Module and trained with the Trainer —
// cuDNN's RNN on the GPU when there is one, the LSTM composed of ops on the CPU otherwise.
#include <chrono>
#include <cstdio>
#include <iostream>

#include "models.h"
#include "sample_utils.h"

using namespace ember;

// RowLstm: samples/models.h.
using samples::RowLstm;

int main(int argc, char** argv) {
  CLI::App app{"Classify Fashion-MNIST with an LSTM that reads each image row by row"};
  samples::CommonOptions o;
  o.epochs = 10;
  o.batch_size = 128;
  o.lr = 2e-3;
  samples::add_common_options(app, o, "train on 6000 examples for one epoch (a smoke test)");
  samples::add_precision_option(app, o);
  CLI11_PARSE(app, argc, argv);

  try {
    const Device device = samples::start(o);
    auto train = std::make_shared<data::FashionMNIST>(o.data, data::Split::Train);
    auto test = std::make_shared<data::FashionMNIST>(o.data, data::Split::Test);
    const auto train_set = samples::first_n(train, o.quick ? 6000 : train->size());
    const int64_t epochs = o.quick ? 1 : o.epochs;

    RowLstm model;
    model.to(device);
    std::printf("%s", model.summary({1, 1, 28, 28}).c_str());
    optim::Adam opt(model.parameters(), {.lr = o.lr});
    Trainer trainer(model, opt, loss::CrossEntropy(), {metrics::Accuracy()}, device);
    const auto start = std::chrono::steady_clock::now();
    History history = trainer.fit(train_set, {.epochs = epochs, .batch_size = o.batch_size,
                                               .validation = test, .callbacks = samples::quick_check(o), .verbose = o.verbose, .precision = o.precision});
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    std::printf("%.1f s per epoch (training and validation)\n", seconds / static_cast<double>(epochs));
    const Logs result = trainer.evaluate(test, {.batch_size = 1000, .precision = o.precision});
    std::cout << "test: " << result << "\n";
    std::printf("test accuracy: %.2f%%\n", 100.0 * history["val_accuracy"].back());
  } catch (const Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
