// dense_classifier: Keras's classic first classifier — Flatten → Dense 32 ReLU → Dense 10
// softmax, sparse categorical cross-entropy on the probabilities, Adam — trained with the
// Trainer on Fashion-MNIST, then its predictions and the test set's confusion matrix.
#include <algorithm>
#include <cstdio>
#include <iostream>
#include <string>
#include <vector>

#include "models.h"
#include "sample_utils.h"

using namespace ember;

namespace {

// The first `count` test images: true class, predicted class and its probability.
void print_predictions(const Tensor& probs, const Tensor& labels, int64_t count) {
  const auto& names = data::FashionMNIST::classes();
  const Tensor predicted = argmax(probs, 1);
  const auto pred = predicted.to_vector<int64_t>();
  const auto truth = labels.to_vector<int64_t>();
  const auto p = probs.contiguous().to_vector<float>();
  const int64_t classes = probs.size(1);
  std::printf("\nfirst %lld test predictions:\n", static_cast<long long>(count));
  std::printf("  %5s  %-12s %-12s %s\n", "image", "true", "predicted", "probability");
  for (int64_t i = 0; i < std::min<int64_t>(count, probs.size(0)); ++i) {
    std::printf("  %5lld  %-12s %-12s %.3f%s\n", static_cast<long long>(i),
                names[truth[i]].c_str(), names[pred[i]].c_str(), p[i * classes + pred[i]],
                pred[i] == truth[i] ? "" : "   <- wrong");
  }
}

// The confusion matrix with class names on the rows (true class) and class numbers on the
// columns (predicted class), plus each class's recall.
void print_confusion_matrix(const metrics::ConfusionMatrix& cm) {
  const auto& names = data::FashionMNIST::classes();
  const int64_t c = cm.num_classes();
  const auto m = cm.matrix().to_vector<int64_t>();
  const auto recall = cm.recall();
  size_t name_width = 0;
  for (const auto& n : names) name_width = std::max(name_width, n.size());
  const int width = static_cast<int>(name_width) + 3;  // "9 " before the name

  std::printf("\nconfusion matrix (rows: true class, columns: predicted class)\n");
  std::printf("%*s", width, "");
  for (int64_t j = 0; j < c; ++j) std::printf(" %5lld", static_cast<long long>(j));
  std::printf("   recall\n");
  for (int64_t i = 0; i < c; ++i) {
    std::printf("%lld %-*s", static_cast<long long>(i), width - 2, names[i].c_str());
    for (int64_t j = 0; j < c; ++j) std::printf(" %5lld", static_cast<long long>(m[i * c + j]));
    std::printf("   %5.1f%%\n", 100.0 * recall[i]);
  }
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Keras's classic dense classifier (Dense 32 ReLU -> Dense 10 softmax) on Fashion-MNIST"};
  samples::CommonOptions o;
  o.epochs = 5;
  o.batch_size = 32;
  samples::add_common_options(app, o, "train on 6000 examples for one epoch (a smoke test)");
  samples::add_precision_option(app, o);
  CLI11_PARSE(app, argc, argv);

  try {
    const Device device = samples::start(o);
    auto train = std::make_shared<data::FashionMNIST>(o.data, data::Split::Train);
    data::FashionMNIST test(o.data, data::Split::Test);
    const auto train_set = samples::first_n(train, o.quick ? 6000 : train->size());
    const int64_t epochs = o.quick ? 1 : o.epochs;
    std::printf("train: %lld examples, test: %lld examples\n",
                static_cast<long long>(train_set->size()), static_cast<long long>(test.size()));

    // Keras's Dense: Glorot-uniform kernel, zero bias (samples/models.h).
    nn::Sequential model = samples::dense_classifier_model();
    model.to(device);
    std::printf("%s", model.summary({1, 1, 28, 28}).c_str());
    optim::Adam opt(model.parameters(), {.lr = o.lr});
    Trainer trainer(model, opt, loss::SparseCategoricalCrossEntropy(), {metrics::Accuracy()},
                    device);
    trainer.fit(train_set, {.epochs = epochs, .batch_size = o.batch_size, .callbacks = samples::quick_check(o), .verbose = o.verbose, .precision = o.precision});

    const Logs result = trainer.evaluate(test, {.batch_size = 1000, .precision = o.precision});
    std::cout << "test: " << result << "\n";

    const Tensor probs = trainer.predict(test, 1000);  // [10000, 10] on the CPU
    print_predictions(probs, test.labels(), 10);
    metrics::ConfusionMatrix cm(10);
    cm.update(probs, test.labels());
    print_confusion_matrix(cm);

    std::printf("\ntest accuracy: %.2f%%\n", 100.0 * log_value(result, "accuracy"));
  } catch (const Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
