// sequential_cnn: the Keras Sequential CNN — Conv 32 3x3 → ReLU → MaxPool 2 → Conv 64 3x3
// → ReLU → MaxPool 2 → Flatten → Dense 10 → Softmax — trained on Fashion-MNIST with
// categorical cross-entropy on one-hot labels by the Trainer, as Keras's
// model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"]).
#include <cstdio>
#include <memory>

#include "models.h"
#include "sample_utils.h"

using namespace ember;

namespace {

constexpr int64_t kClasses = 10;

// Fashion-MNIST with its int64 labels [N] turned into the one-hot rows [N, 10] that
// categorical cross-entropy takes (Keras's to_categorical).
std::shared_ptr<data::TensorDataset> with_one_hot_labels(const data::FashionMNIST& set) {
  return std::make_shared<data::TensorDataset>(set.images(),
                                               metrics::one_hot(set.labels(), kClasses));
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Train the Keras Sequential CNN (softmax output, categorical cross-entropy) "
               "on Fashion-MNIST"};
  samples::CommonOptions o;
  o.epochs = 10;
  o.batch_size = 32;
  samples::add_common_options(app, o, "train on 2000 examples for one epoch (a smoke test)");
  samples::add_precision_option(app, o);
  CLI11_PARSE(app, argc, argv);

  try {
    const Device device = samples::start(o);
    const data::FashionMNIST train_images(o.data, data::Split::Train);
    const data::FashionMNIST test_images(o.data, data::Split::Test);
    const auto train = samples::first_n(with_one_hot_labels(train_images),
                                        o.quick ? 2000 : train_images.size());
    const auto test = with_one_hot_labels(test_images);
    const int64_t epochs = o.quick ? 1 : o.epochs;
    std::printf("train: %lld examples, test: %lld examples\n",
                static_cast<long long>(train->size()), static_cast<long long>(test->size()));

    nn::Sequential model = samples::sequential_cnn_model(kClasses);  // samples/models.h
    model.to(device);
    std::printf("%s", model.summary({1, 1, 28, 28}).c_str());

    optim::Adam opt(model.parameters(), {.lr = o.lr});
    Trainer trainer(model, opt, loss::CategoricalCrossEntropy(), {metrics::Accuracy()}, device);
    const History history = trainer.fit(train, {.epochs = epochs, .batch_size = o.batch_size,
                                                 .validation = test, .callbacks = samples::quick_check(o), .verbose = o.verbose, .precision = o.precision});
    std::printf("test loss: %.4f\n", history["val_loss"].back());
    std::printf("test accuracy: %.2f%%\n", 100.0 * history["val_accuracy"].back());
  } catch (const Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
