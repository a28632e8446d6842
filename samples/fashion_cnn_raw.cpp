// fashion_cnn_raw: the seed CNN — Conv 32 3x3 → ReLU → MaxPool 2 → Conv 64 3x3 → ReLU →
// MaxPool 2 → Flatten → Dense 128 ReLU → Dense 10 — built as an nn::Sequential and trained
// on Fashion-MNIST with a hand-written loop over the library's pieces: a DataLoader,
// forward, cross_entropy, zero_grad, backward, optim::Adam's step and a cosine learning
// rate schedule stepped per epoch; --precision by hand (an autocast region and a loss
// scaler). On the GPU when there is one, else on the CPU.
#include <chrono>
#include <cstdio>

#include "models.h"
#include "sample_utils.h"

using namespace ember;

int main(int argc, char** argv) {
  CLI::App app{"Train the Fashion-MNIST CNN with ember's layers and a hand-written loop"};
  samples::CommonOptions o;
  o.epochs = 8;
  o.batch_size = 64;
  samples::add_common_options(app, o, "train on 3000 examples for one epoch (a smoke test)");
  samples::add_precision_option(app, o);
  CLI11_PARSE(app, argc, argv);

  try {
    o.data_parallel = false;  // its own loop: under ember launch each rank trains alone
    const Device device = samples::start(o);
    auto train = std::make_shared<data::FashionMNIST>(o.data, data::Split::Train);
    data::FashionMNIST test(o.data, data::Split::Test);
    const auto train_set = samples::first_n(train, o.quick ? 3000 : train->size());
    const int64_t epochs = o.quick ? 1 : o.epochs;

    nn::Sequential model = samples::fashion_cnn_raw_model();  // samples/models.h
    model.to(device);
    std::printf("%s", model.summary({1, 1, 28, 28}).c_str());
    std::printf("train: %lld examples, test: %lld examples\n",
                static_cast<long long>(train_set->size()), static_cast<long long>(test.size()));

    optim::Adam opt(model.parameters(), {.lr = o.lr});
    optim::CosineAnnealingLR schedule(opt, epochs);
    data::DataLoader loader(train_set, {.batch_size = o.batch_size, .shuffle = true,
                                        .seed = o.seed, .device = device});
    samples::MixedPrecision mp(o.precision);
    auto predict = [&](const Tensor& x) {
      const auto region = mp.autocast();
      return model(x);
    };

    double first_loss = 0, mean_loss = 0;
    for (int64_t epoch = 1; epoch <= epochs; ++epoch) {
      model.train();
      const auto start = std::chrono::steady_clock::now();
      Tensor loss_sum = zeros({}, {.device = device});  // summed on the device: no sync per step
      for (const data::Batch& batch : loader) {
        Tensor loss;
        {
          const auto region = mp.autocast();
          loss = cross_entropy(model(batch.x), batch.y);
        }
        opt.zero_grad();
        mp.backward_and_step(loss, opt);
        if (epoch == 1 && first_loss == 0) first_loss = loss.item();  // for --quick's check
        NoGradGuard no_grad;
        loss_sum.add_(loss.detach());
      }
      mean_loss = loss_sum.item() / static_cast<double>(loader.size());
      if (!std::isfinite(mean_loss)) {
        std::fprintf(stderr, "error: the loss became %f in epoch %lld; lower --lr\n", mean_loss,
                     static_cast<long long>(epoch));
        return 1;
      }
      schedule.step();
      const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      model.eval();
      std::printf("epoch %lld/%lld - %.1fs - loss: %.4f - test accuracy: %.4f\n",
                  static_cast<long long>(epoch), static_cast<long long>(epochs), secs, mean_loss,
                  samples::accuracy(predict, test.images(), test.labels(), device));
      std::fflush(stdout);
    }
    if (o.quick) samples::print_loss_check(first_loss, mean_loss);
    std::printf("test accuracy: %.2f%%\n",
                100.0 * samples::accuracy(predict, test.images(), test.labels(), device));
  } catch (const Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
