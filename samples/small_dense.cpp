// small_dense: Dense 64 ReLU (input dimension 100) → Dense 10 softmax on Fashion-MNIST
// images shrunk to 10x10 by adaptive average pooling once, up front, into in-memory
// TensorDatasets of 100 features each; trained with the Trainer and Adam.
#include <cstdio>
#include <iostream>
#include <memory>
#include <string>

#include "models.h"
#include "sample_utils.h"

using namespace ember;

namespace {

constexpr int64_t kSide = 10;  // images are pooled to kSide x kSide features

// images [N, 1, 28, 28] -> [N, 100]: the mean of each of PyTorch's adaptive 10x10 bins
// (3 or 4 pixels a side; neighbouring bins share a row or column where their edges fall
// between pixels).
Tensor downsample(const Tensor& images) {
  NoGradGuard no_grad;
  return adaptive_avg_pool2d(images, {kSide, kSide}).reshape({images.size(0), kSide * kSide});
}

// One Fashion-MNIST split as pooled features [N, 100] and labels [N]; the full-size images
// are dropped once pooled.
std::shared_ptr<data::TensorDataset> pooled_split(const std::string& root, data::Split split) {
  const data::FashionMNIST full(root, split);
  return std::make_shared<data::TensorDataset>(downsample(full.images()), full.labels());
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Dense 64 ReLU -> Dense 10 softmax on Fashion-MNIST shrunk to 10x10 (100 features)"};
  samples::CommonOptions o;
  o.epochs = 10;
  o.batch_size = 32;
  samples::add_common_options(app, o, "train on 6000 examples for one epoch (a smoke test)");
  samples::add_precision_option(app, o);
  CLI11_PARSE(app, argc, argv);

  try {
    const Device device = samples::start(o);
    const auto train = pooled_split(o.data, data::Split::Train);
    const auto test = pooled_split(o.data, data::Split::Test);
    const auto train_set = samples::first_n(train, o.quick ? 6000 : train->size());
    const int64_t epochs = o.quick ? 1 : o.epochs;
    std::printf("train: %lld examples, test: %lld examples, %lld features each\n",
                static_cast<long long>(train_set->size()), static_cast<long long>(test->size()),
                static_cast<long long>(test->x().size(1)));

    // Keras's Dense: Glorot-uniform kernel, zero bias (samples/models.h).
    nn::Sequential model = samples::small_dense_model(kSide * kSide);
    model.to(device);
    std::printf("%s", model.summary({1, kSide * kSide}).c_str());
    optim::Adam opt(model.parameters(), {.lr = o.lr});
    Trainer trainer(model, opt, loss::SparseCategoricalCrossEntropy(), {metrics::Accuracy()},
                    device);
    History history = trainer.fit(train_set, {.epochs = epochs, .batch_size = o.batch_size,
                                               .validation = test, .callbacks = samples::quick_check(o), .verbose = o.verbose, .precision = o.precision});
    const Logs result = trainer.evaluate(test, {.batch_size = 1000, .precision = o.precision});
    std::cout << "test: " << result << "\n";
    std::printf("test accuracy: %.2f%%\n", 100.0 * history["val_accuracy"].back());
  } catch (const Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
