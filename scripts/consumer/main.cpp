// A user's first program against an installed ember: a few Adam steps on a small
// regression, on the best device, checking that the loss falls.
#include <ember/ember.h>

#include <cstdio>

using namespace ember;

int main() {
  try {
    manual_seed(0);
    const Device device = Device::best();
    nn::Sequential model{nn::Linear(4, 16), nn::ReLU(), nn::Linear(16, 1)};
    model.to(device);
    optim::Adam opt(model.parameters(), {.lr = 1e-2});
    const Tensor x = randn({64, 4}).to(device);
    const Tensor y = sum(x, {1}, true);  // learn the sum of the features
    double first = 0, last = 0;
    for (int step = 0; step < 200; ++step) {
      opt.zero_grad();
      Tensor loss = mse_loss(model(x), y);
      loss.backward();
      opt.step();
      last = loss.item();
      if (step == 0) first = last;
    }
    std::printf("ember %s on %s: loss %.4f -> %.4f\n", version().c_str(), device.str().c_str(),
                first, last);
    return last < 0.1 * first ? 0 : 1;
  } catch (const Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}
