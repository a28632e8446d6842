// fashion_mlp: a 784-256-10 ReLU MLP trained on Fashion-MNIST with the raw API —
// tensors, autograd and a hand-written Adam update — on the GPU when there is one, else
// on the CPU.
#include <CLI/CLI.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <numeric>
#include <random>

#include <ember/ember.h>

using namespace ember;

namespace {

// PyTorch's default Linear init: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weight and bias.
Tensor uniform_param(const Shape& shape, int64_t fan_in, Device device) {
  const double bound = 1.0 / std::sqrt(static_cast<double>(fan_in));
  Tensor t = (rand(shape) * 2.0 - 1.0) * bound;
  return t.to(device).detach().requires_grad_();
}

// Copies the rows `idx[begin, end)` of a CPU tensor into one batch tensor on `device`.
Tensor gather_rows(const Tensor& src, const std::vector<int64_t>& idx, size_t begin, size_t end,
                   Device device) {
  Shape shape = src.shape();
  shape[0] = static_cast<int64_t>(end - begin);
  Tensor batch = empty(shape, {.dtype = src.dtype()});
  const size_t row_bytes = src.nbytes() / static_cast<size_t>(src.size(0));
  const auto* from = static_cast<const char*>(src.data_ptr());
  auto* to = static_cast<char*>(batch.data_ptr());
  for (size_t i = begin; i < end; ++i) {
    std::memcpy(to + (i - begin) * row_bytes, from + idx[i] * row_bytes, row_bytes);
  }
  return batch.to(device);
}

struct Mlp {
  Tensor w1, b1, w2, b2;
  std::vector<Tensor> params() const { return {w1, b1, w2, b2}; }
  Tensor forward(const Tensor& x) const {  // x: [N, 784] -> logits [N, 10]
    return linear(relu(linear(x, w1, b1)), w2, b2);
  }
};

double evaluate(const Mlp& m, const Tensor& images, const Tensor& labels, Device device,
                int64_t batch_size) {
  NoGradGuard no_grad;
  const int64_t n = labels.numel();
  int64_t correct = 0;
  for (int64_t i = 0; i < n; i += batch_size) {
    const int64_t len = std::min(batch_size, n - i);
    Tensor x = images.narrow(0, i, len).to(device);
    Tensor y = labels.narrow(0, i, len).to(device);
    correct += sum(eq(argmax(m.forward(x), 1), y)).item<int64_t>();
  }
  return static_cast<double>(correct) / static_cast<double>(n);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Train a 784-256-10 MLP on Fashion-MNIST with ember's raw tensor API"};
  int epochs = 3;
  int64_t batch_size = 32;
  double lr = 1e-3;
  std::string device_name = "best", data_dir = data::default_fashion_mnist_dir();
  bool quick = false;
  uint64_t seed = 0;
  app.add_option("--epochs", epochs, "passes over the training set")->check(CLI::PositiveNumber);
  app.add_option("--batch-size", batch_size, "examples per step")->check(CLI::PositiveNumber);
  app.add_option("--lr", lr, "learning rate");
  app.add_option("--device", device_name, "cpu, cuda, cuda:N or best");
  app.add_option("--data", data_dir, "folder with the Fashion-MNIST IDX files (.gz or not)");
  app.add_option("--seed", seed, "random seed");
  app.add_flag("--quick", quick, "train on 6000 examples for one epoch (a smoke test)");
  CLI11_PARSE(app, argc, argv);

  try {
    manual_seed(seed);
    const Device device = Device::parse(device_name);
    std::printf("device: %s%s\n", device.str().c_str(),
                device.is_cpu() && !cuda::is_available()
                    ? (" (no GPU: " + cuda::unavailable_reason() + ")").c_str()
                    : "");

    data::FashionMNIST train(data_dir, data::Split::Train);
    data::FashionMNIST test(data_dir, data::Split::Test);
    Tensor train_x = train.images().reshape({train.size(), 784});
    Tensor train_y = train.labels();
    Tensor test_x = test.images().reshape({test.size(), 784});
    int64_t n_train = train.size();
    if (quick) {
      epochs = 1;
      n_train = 6000;
    }
    std::printf("train: %lld examples, test: %lld examples\n", static_cast<long long>(n_train),
                static_cast<long long>(test.size()));

    Mlp model{uniform_param({256, 784}, 784, device), uniform_param({256}, 784, device),
              uniform_param({10, 256}, 256, device), uniform_param({10}, 256, device)};
    // Adam state: first and second moment estimates per parameter.
    const double beta1 = 0.9, beta2 = 0.999, eps = 1e-8;
    std::vector<Tensor> m1, m2;
    for (const Tensor& p : model.params()) {
      m1.push_back(zeros_like(p));
      m2.push_back(zeros_like(p));
    }
    int64_t t = 0;

    std::vector<int64_t> order(static_cast<size_t>(n_train));
    std::iota(order.begin(), order.end(), 0);
    std::mt19937_64 shuffle_gen(seed);

    for (int epoch = 1; epoch <= epochs; ++epoch) {
      const auto start = std::chrono::steady_clock::now();
      std::shuffle(order.begin(), order.end(), shuffle_gen);
      double loss_sum = 0;
      int64_t steps = 0;
      for (size_t i = 0; i < order.size(); i += static_cast<size_t>(batch_size)) {
        const size_t end = std::min(order.size(), i + static_cast<size_t>(batch_size));
        Tensor x = gather_rows(train_x, order, i, end, device);
        Tensor y = gather_rows(train_y, order, i, end, device);

        Tensor loss = cross_entropy(model.forward(x), y);
        for (Tensor& p : model.params()) p.set_grad(Tensor());  // zero_grad
        loss.backward();
        {
          NoGradGuard no_grad;  // Adam: p -= lr * m_hat / (sqrt(v_hat) + eps)
          ++t;
          const double c1 = 1.0 - std::pow(beta1, static_cast<double>(t));
          const double c2 = 1.0 - std::pow(beta2, static_cast<double>(t));
          auto params = model.params();
          for (size_t k = 0; k < params.size(); ++k) {
            Tensor g = params[k].grad();
            m1[k].mul_(beta1).add_(g, 1.0 - beta1);
            m2[k].mul_(beta2).add_(g * g, 1.0 - beta2);
            params[k].add_((m1[k] / c1) / (sqrt(m2[k] / c2) + eps), -lr);
          }
        }
        const double l = loss.item();
        if (!std::isfinite(l)) {
          std::fprintf(stderr, "error: the loss became %f at epoch %d step %lld; lower --lr\n", l,
                       epoch, static_cast<long long>(steps));
          return 1;
        }
        loss_sum += l;
        ++steps;
      }
      const double secs =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      const double acc = evaluate(model, test_x, test.labels(), device, 1000);
      std::printf("epoch %d/%d - %.1fs - loss: %.4f - test accuracy: %.4f\n", epoch, epochs, secs,
                  loss_sum / static_cast<double>(steps), acc);
    }
    const double acc = evaluate(model, test_x, test.labels(), device, 1000);
    std::printf("test accuracy: %.2f%%\n", acc * 100.0);
  } catch (const Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
