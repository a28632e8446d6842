// fashion_mlp: a 784-256-10 ReLU MLP trained on Fashion-MNIST with Adam (lr 1e-3) and
// softmax cross-entropy on the logits, on the GPU when there is one, else on the CPU.
// By default it is written with the raw API — tensors, autograd, linear/relu/cross_entropy
// ops and a hand-written Adam in a forward/loss/zero_grad/backward/step loop; with
// --trainer the same model is an nn::Sequential trained by the Keras-style Trainer.
#include <CLI/CLI.hpp>

#include <chrono>
#include <cstdio>
#include <iostream>

#include "models.h"
#include "sample_utils.h"

using namespace ember;

namespace {

// PyTorch's default Linear init: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weight and bias.
Tensor uniform_param(const Shape& shape, int64_t fan_in, Device device) {
  const double bound = 1.0 / std::sqrt(static_cast<double>(fan_in));
  Tensor t = (rand(shape) * 2.0 - 1.0) * bound;
  return t.to(device).detach().requires_grad_();
}

struct Mlp {
  Tensor w1, b1, w2, b2;
  std::vector<Tensor> params() const { return {w1, b1, w2, b2}; }
  Tensor forward(const Tensor& x) const {  // x: [N, 784] -> logits [N, 10]
    return linear(relu(linear(x, w1, b1)), w2, b2);
  }
};

// The same model and optimizer through the library's front door: nn::Sequential,
// optim::Adam and Trainer::fit, with the test set as validation data.
int train_with_trainer(std::shared_ptr<const data::Dataset> train,
                       std::shared_ptr<const data::Dataset> test,
                       const samples::CommonOptions& o, int64_t epochs, Device device) {
  nn::Sequential model = samples::fashion_mlp_model();  // samples/models.h
  optim::Adam opt(model.parameters(), {.lr = o.lr});
  Trainer trainer(model, opt, loss::CrossEntropy(), {metrics::Accuracy()}, device);
  const History history = trainer.fit(train, {.epochs = epochs, .batch_size = o.batch_size,
                                              .validation = test,
                                              .callbacks = samples::quick_check(o),
                                              .verbose = o.verbose, .precision = o.precision});
  std::printf("test accuracy: %.2f%%\n", 100.0 * history["val_accuracy"].back());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Train a 784-256-10 MLP on Fashion-MNIST with ember's raw tensor API"};
  samples::CommonOptions o;
  o.epochs = 12;
  o.batch_size = 64;
  bool use_trainer = false;
  samples::add_common_options(app, o, "train on 6000 examples for one epoch (a smoke test)");
  samples::add_precision_option(app, o);
  app.add_flag("--trainer", use_trainer, "train with nn::Sequential and the Trainer");
  CLI11_PARSE(app, argc, argv);

  try {
    o.data_parallel = use_trainer;  // the raw loop: under ember launch each rank trains alone
    const Device device = samples::start(o);
    const auto train = std::make_shared<data::FashionMNIST>(o.data, data::Split::Train);
    const auto test_set = std::make_shared<data::FashionMNIST>(o.data, data::Split::Test);
    const data::FashionMNIST& test = *test_set;
    const auto train_set = samples::first_n(train, o.quick ? 6000 : train->size());
    const int64_t epochs = o.quick ? 1 : o.epochs;
    const int64_t n_train = train_set->size();
    std::printf("train: %lld examples, test: %lld examples\n", static_cast<long long>(n_train),
                static_cast<long long>(test.size()));
    if (use_trainer) return train_with_trainer(train_set, test_set, o, epochs, device);

    Tensor train_x = train->images().reshape({train->size(), 784});
    Tensor test_x = test.images().reshape({test.size(), 784});
    Mlp model{uniform_param({256, 784}, 784, device), uniform_param({256}, 784, device),
              uniform_param({10, 256}, 256, device), uniform_param({10}, 256, device)};
    samples::HandAdam opt(model.params(), o.lr);
    auto predict = [&](const Tensor& x) { return model.forward(x); };

    std::vector<int64_t> order(static_cast<size_t>(n_train));
    std::iota(order.begin(), order.end(), 0);
    std::mt19937_64 shuffle_gen(o.seed);
    double first_loss = 0, last_loss = 0;
    for (int64_t epoch = 1; epoch <= epochs; ++epoch) {
      const auto start = std::chrono::steady_clock::now();
      std::shuffle(order.begin(), order.end(), shuffle_gen);
      double loss_sum = 0;
      int64_t steps = 0;
      for (size_t i = 0; i < order.size(); i += static_cast<size_t>(o.batch_size)) {
        const size_t end = std::min(order.size(), i + static_cast<size_t>(o.batch_size));
        Tensor x = samples::gather_rows(train_x, order, i, end, device);
        Tensor y = samples::gather_rows(train->labels(), order, i, end, device);
        Tensor loss = cross_entropy(model.forward(x), y);
        opt.zero_grad();
        loss.backward();
        opt.step();
        const double l = loss.item();
        if (!std::isfinite(l)) {
          std::fprintf(stderr, "error: the loss became %f at epoch %lld step %lld; lower --lr\n", l,
                       static_cast<long long>(epoch), static_cast<long long>(steps));
          return 1;
        }
        if (epoch == 1 && steps == 0) first_loss = l;
        loss_sum += l;
        ++steps;
      }
      last_loss = loss_sum / static_cast<double>(steps);
      const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      std::printf("epoch %lld/%lld - %.1fs - loss: %.4f - test accuracy: %.4f\n",
                  static_cast<long long>(epoch), static_cast<long long>(epochs), secs, last_loss,
                  samples::accuracy(predict, test_x, test.labels(), device));
    }
    if (o.quick) samples::print_loss_check(first_loss, last_loss);
    std::printf("test accuracy: %.2f%%\n",
                100.0 * samples::accuracy(predict, test_x, test.labels(), device));
  } catch (const Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
