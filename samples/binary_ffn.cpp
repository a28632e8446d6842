// binary_ffn: "is it footwear?" on Fashion-MNIST — Sandal, Sneaker and Ankle boot are 1,
// the other classes 0 — with Flatten → Dense 10 ReLU → Dense 1 sigmoid, binary
// cross-entropy and Adam, tracking accuracy, precision, recall, F1 and ROC AUC.
#include <cstdio>
#include <iostream>
#include <string>
#include <vector>

#include "models.h"
#include "sample_utils.h"

using namespace ember;

namespace {

// Fashion-MNIST's footwear classes: Sandal, Sneaker, Ankle boot.
bool is_footwear(int64_t label) { return label == 5 || label == 7 || label == 9; }

// The images with float 0/1 targets [N]: 1 for footwear.
std::shared_ptr<data::TensorDataset> footwear_dataset(const data::FashionMNIST& source) {
  const auto labels = source.labels().to_vector<int64_t>();
  std::vector<float> targets(labels.size());
  for (size_t i = 0; i < labels.size(); ++i) targets[i] = is_footwear(labels[i]) ? 1.0f : 0.0f;
  return std::make_shared<data::TensorDataset>(
      source.images(), Tensor::from_vector(targets, {static_cast<int64_t>(targets.size())}));
}

double positive_fraction(const data::TensorDataset& d) {
  return sum(d.y()).item() / static_cast<double>(d.size());
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Is it footwear? Dense 10 ReLU -> Dense 1 sigmoid on Fashion-MNIST"};
  samples::CommonOptions o;
  o.epochs = 5;
  o.batch_size = 32;
  samples::add_common_options(app, o, "train on 6000 examples for one epoch (a smoke test)");
  samples::add_precision_option(app, o);
  CLI11_PARSE(app, argc, argv);

  try {
    const Device device = samples::start(o);
    const auto train = footwear_dataset(data::FashionMNIST(o.data, data::Split::Train));
    const auto test = footwear_dataset(data::FashionMNIST(o.data, data::Split::Test));
    const auto train_set = samples::first_n(train, o.quick ? 6000 : train->size());
    const int64_t epochs = o.quick ? 1 : o.epochs;
    std::printf("train: %lld examples, test: %lld examples (%.1f%% footwear: always answering "
                "\"no\" scores %.1f%%)\n",
                static_cast<long long>(train_set->size()), static_cast<long long>(test->size()),
                100.0 * positive_fraction(*test), 100.0 * (1.0 - positive_fraction(*test)));

    // Keras's Dense: Glorot-uniform kernel, zero bias (samples/models.h).
    nn::Sequential model = samples::binary_ffn_model();
    model.to(device);
    std::printf("%s", model.summary({1, 1, 28, 28}).c_str());
    optim::Adam opt(model.parameters(), {.lr = o.lr});
    using metrics::Average;
    Trainer trainer(model, opt, loss::BinaryCrossEntropy(),
                    {metrics::Accuracy(), metrics::Precision(2, Average::Binary),
                     metrics::Recall(2, Average::Binary), metrics::F1Score(2, Average::Binary),
                     metrics::AUC()},
                    device);
    trainer.fit(train_set, {.epochs = epochs, .batch_size = o.batch_size, .callbacks = samples::quick_check(o), .verbose = o.verbose, .precision = o.precision});

    const Logs result = trainer.evaluate(test, {.batch_size = 1000, .precision = o.precision});
    std::cout << "test: " << result << "\n";
    std::printf("\ntest set (%lld images, footwear = positive class)\n",
                static_cast<long long>(test->size()));
    std::printf("  accuracy:  %.4f\n", log_value(result, "accuracy"));
    std::printf("  precision: %.4f\n", log_value(result, "precision"));
    std::printf("  recall:    %.4f\n", log_value(result, "recall"));
    std::printf("  F1:        %.4f\n", log_value(result, "f1"));
    std::printf("  AUC (ROC): %.4f\n", log_value(result, "auc"));
    std::printf("test accuracy: %.2f%%\n", 100.0 * log_value(result, "accuracy"));
  } catch (const Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
