// fashion_cnn_raw: the seed CNN — Conv 32 3x3 → ReLU → MaxPool 2 → Conv 64 3x3 → ReLU →
// MaxPool 2 → Flatten → Dense 128 ReLU → Dense 10 — built from nn layers and trained on
// Fashion-MNIST with the raw loop (forward, loss, zero_grad, backward, step), on the GPU
// when there is one, else on the CPU.
#include <CLI/CLI.hpp>

#include <chrono>
#include <cstdio>

#include "sample_utils.h"

using namespace ember;

int main(int argc, char** argv) {
  CLI::App app{"Train the Fashion-MNIST CNN with ember's layers and a raw training loop"};
  int epochs = 4;
  int64_t batch_size = 64;
  double lr = 1e-3;
  std::string device_name = "best", data_dir = data::default_fashion_mnist_dir();
  bool quick = false;
  uint64_t seed = 0;
  app.add_option("--epochs", epochs, "passes over the training set")->check(CLI::PositiveNumber);
  app.add_option("--batch-size", batch_size, "examples per step")->check(CLI::PositiveNumber);
  app.add_option("--lr", lr, "Adam learning rate");
  app.add_option("--device", device_name, "cpu, cuda, cuda:N or best");
  app.add_option("--data", data_dir, "folder with the Fashion-MNIST IDX files (.gz or not)");
  app.add_option("--seed", seed, "random seed");
  app.add_flag("--quick", quick, "train on 3000 examples for one epoch (a smoke test)");
  CLI11_PARSE(app, argc, argv);

  try {
    manual_seed(seed);
    const Device device = Device::parse(device_name);
    std::printf("device: %s%s\n", device.str().c_str(),
                cuda::is_available() ? "" : (" (no GPU: " + cuda::unavailable_reason() + ")").c_str());

    data::FashionMNIST train(data_dir, data::Split::Train);
    data::FashionMNIST test(data_dir, data::Split::Test);
    int64_t n_train = train.size();
    if (quick) {
      epochs = 1;
      n_train = 3000;
    }

    nn::Sequential model{
        nn::Conv2d(1, 32, 3), nn::ReLU(), nn::MaxPool2d(2),
        nn::Conv2d(32, 64, 3), nn::ReLU(), nn::MaxPool2d(2),
        nn::Flatten(), nn::Linear(64 * 5 * 5, 128), nn::ReLU(), nn::Linear(128, 10)};
    model.to(device);
    std::printf("%s", model.summary({1, 1, 28, 28}).c_str());
    std::printf("train: %lld examples, test: %lld examples\n", static_cast<long long>(n_train),
                static_cast<long long>(test.size()));

    samples::HandAdam opt(model.parameters(), lr);
    auto predict = [&](const Tensor& x) { return model(x); };

    std::vector<int64_t> order(static_cast<size_t>(n_train));
    std::iota(order.begin(), order.end(), 0);
    std::mt19937_64 shuffle_gen(seed);
    for (int epoch = 1; epoch <= epochs; ++epoch) {
      model.train();
      const auto start = std::chrono::steady_clock::now();
      std::shuffle(order.begin(), order.end(), shuffle_gen);
      double loss_sum = 0;
      int64_t steps = 0;
      for (size_t i = 0; i < order.size(); i += static_cast<size_t>(batch_size)) {
        const size_t end = std::min(order.size(), i + static_cast<size_t>(batch_size));
        Tensor x = samples::gather_rows(train.images(), order, i, end, device);
        Tensor y = samples::gather_rows(train.labels(), order, i, end, device);
        Tensor loss = cross_entropy(model(x), y);
        opt.zero_grad();
        loss.backward();
        opt.step();
        const double l = loss.item();
        if (!std::isfinite(l)) {
          std::fprintf(stderr, "error: the loss became %f at epoch %d step %lld; lower --lr\n", l,
                       epoch, static_cast<long long>(steps));
          return 1;
        }
        loss_sum += l;
        ++steps;
      }
      const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      model.eval();
      std::printf("epoch %d/%d - %.1fs - loss: %.4f - test accuracy: %.4f\n", epoch, epochs, secs,
                  loss_sum / static_cast<double>(steps),
                  samples::accuracy(predict, test.images(), test.labels(), device));
      std::fflush(stdout);
    }
    model.eval();
    std::printf("test accuracy: %.2f%%\n",
                100.0 * samples::accuracy(predict, test.images(), test.labels(), device));
  } catch (const Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
