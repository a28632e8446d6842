// A user's first program against an installed ember: a few Adam steps on a small
// regression, on the best device, checking that the loss falls; and a subclassed model with
// a held layer and "same" padding (types whose members live in libember.so, so a missing
// export fails to link here).
#include <ember/ember.h>

#include <cstdio>

using namespace ember;

struct Net : nn::Module {
  nn::ModuleHolder<nn::Conv2d> conv;
  Net() : conv(register_module("conv", nn::Conv2d(1, 2, 3, {.padding = "same"}))) {}
  Tensor forward(const Tensor& x) override { return conv(x); }
};

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
    Net net;
    net.to(device);
    const Tensor image = randn({1, 1, 5, 5}).to(device);
    if (net(image).shape() != Shape{1, 2, 5, 5} || net.name() != "Net") return 1;
    std::printf("ember %s on %s: loss %.4f -> %.4f\n", version().c_str(), device.str().c_str(),
                first, last);
    return last < 0.1 * first ? 0 : 1;
  } catch (const Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}
