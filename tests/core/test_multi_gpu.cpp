// Two GPUs: every op runs on its tensors' device whichever device is current (the
// dispatch seam makes it current), and a copy between GPUs is ordered against the
// source's pool (Note [Copies between GPUs]). Skipped unless two CUDA devices exist.
#include <gtest/gtest.h>

#include <ember/ember.h>

#include <string>
#include <vector>

#include "support/allclose.h"
#include "support/device.h"

namespace ember {
namespace {

#define EMBER_SKIP_WITHOUT_TWO_GPUS()                                                   \
  do {                                                                                  \
    if (cuda::device_count() < 2) {                                                     \
      GTEST_SKIP() << "needs two CUDA devices, found " << cuda::device_count()          \
                   << (cuda::is_available() ? "" : ": " + cuda::unavailable_reason());  \
    }                                                                                   \
  } while (0)

TEST(MultiGpu, OpsOnTheSecondDeviceMatchTheCpuWhileTheFirstIsCurrent) {
  EMBER_SKIP_WITHOUT_TWO_GPUS();
  cuda::DeviceGuard current(0);
  const Device second = Device::cuda(1);
  manual_seed(1);
  nn::Sequential model{nn::Conv2d(1, 4, 3), nn::ReLU(), nn::MaxPool2d(2), nn::Flatten(),
                       nn::Linear(4 * 3 * 3, 5)};
  const Tensor x = randn({6, 1, 8, 8});
  std::vector<int64_t> y{0, 1, 2, 3, 4, 0};
  const Tensor t = Tensor::from_vector(y, {6});
  Tensor cpu_loss = cross_entropy(model(x), t);
  cpu_loss.backward();
  std::vector<Tensor> cpu_grads;
  for (const Tensor& p : model.parameters()) cpu_grads.push_back(p.grad().clone());
  model.zero_grad();
  model.to(second);
  Tensor gpu_loss = cross_entropy(model(x.to(second)), t.to(second));
  gpu_loss.backward();
  EXPECT_NEAR(gpu_loss.item(), cpu_loss.item(), 1e-5);
  size_t i = 0;
  for (const Tensor& p : model.parameters()) {
    EXPECT_EQ(p.grad().device(), second);
    EXPECT_TRUE(testing::allclose_to_largest(p.grad().cpu(), cpu_grads[i++], 1e-5));
  }
}

TEST(MultiGpu, ACopyBetweenGpusSurvivesTheSourceBeingFreedAndReused) {
  EMBER_SKIP_WITHOUT_TWO_GPUS();
  const int64_t n = int64_t{1} << 22;
  for (int round = 0; round < 5; ++round) {
    Tensor dst;
    {
      Tensor src = full({n}, static_cast<double>(round + 1), {.device = Device::cuda(0)});
      dst = src.to(Device::cuda(1));
    }  // src goes back to cuda:0's pool; the next allocation may take its memory at once
    Tensor overwrite = full({n}, -1.0, {.device = Device::cuda(0)});
    const std::vector<float> got = dst.cpu().to_vector<float>();
    EXPECT_EQ(got.front(), round + 1.0f);
    EXPECT_EQ(got.back(), round + 1.0f);
    (void)overwrite;
  }
}

}  // namespace
}  // namespace ember
