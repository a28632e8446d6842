// The host-sync counter (Note [Host syncs] in core/device.h): CPU work never counts, a read
// of device memory does, and a training step of an MLP or a CNN after warm-up performs none.
#include <gtest/gtest.h>

#include <ember/ember.h>

#include "support/device.h"

namespace ember {
namespace {

TEST(HostSync, CpuWorkNeverCounts) {
  const uint64_t before = cuda::host_sync_count();
  Tensor x = randn({8, 4});
  Tensor y = relu(matmul(x, x.t())).sum();
  (void)y.item();
  (void)x.to_vector<float>();
  EXPECT_EQ(cuda::host_sync_count(), before);
}

TEST(HostSync, ReadingAGpuValueCounts) {
  EMBER_SKIP_WITHOUT_GPU();
  Tensor x = ones({4}).cuda();
  const uint64_t before = cuda::host_sync_count();
  (void)x.sum().item();
  EXPECT_GE(cuda::host_sync_count(), before + 1);
}

// forward, loss, zero_grad, backward and step, as a hand-written loop does them, with
// cross-entropy: its target check waits for no value (Note [Deferred checks]).
uint64_t syncs_of_steps(nn::Module& model, const Tensor& x, const Tensor& y, int steps) {
  optim::Adam opt(model.parameters(), {.lr = 1e-3});
  auto step = [&] {
    opt.zero_grad();
    Tensor loss = cross_entropy(model.forward(x), y);
    loss.backward();
    opt.step();
  };
  for (int i = 0; i < 2; ++i) step();  // warm-up: the pool and the cuDNN plans fill
  const uint64_t before = cuda::host_sync_count();
  for (int i = 0; i < steps; ++i) step();
  return cuda::host_sync_count() - before;
}

Tensor labels(int64_t n) {
  std::vector<int64_t> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) v[static_cast<size_t>(i)] = (i * 7) % 10;
  return Tensor::from_vector(v, {n}).cuda();
}

TEST(HostSync, AnMlpTrainingStepAfterWarmUpPerformsNone) {
  EMBER_SKIP_WITHOUT_GPU();
  manual_seed(0);
  nn::Sequential model{nn::Linear(784, 256), nn::ReLU(), nn::Linear(256, 10)};
  model.to(Device::cuda());
  const Tensor x = randn({64, 784}).cuda();
  EXPECT_EQ(syncs_of_steps(model, x, labels(64), 3), 0u);
}

TEST(HostSync, ACnnTrainingStepAfterWarmUpPerformsNone) {
  EMBER_SKIP_WITHOUT_GPU();
  manual_seed(0);
  nn::Sequential model{nn::Conv2d(1, 32, 3), nn::ReLU(),          nn::MaxPool2d(2),
                       nn::Conv2d(32, 64, 3), nn::ReLU(),         nn::MaxPool2d(2),
                       nn::Flatten(),         nn::Linear(64 * 5 * 5, 128), nn::ReLU(),
                       nn::Linear(128, 10)};
  model.to(Device::cuda());
  const Tensor x = randn({64, 1, 28, 28}).cuda();
  EXPECT_EQ(syncs_of_steps(model, x, labels(64), 3), 0u);
}

}  // namespace
}  // namespace ember
