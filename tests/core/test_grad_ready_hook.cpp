// autograd::add_grad_ready_hook: called once per backward pass that reaches the leaf,
// after its .grad holds the new gradient (what DistributedDataParallel builds on).
#include <gtest/gtest.h>

#include "ember/ember.h"

using namespace ember;

TEST(GradReadyHook, RunsOncePerBackwardAfterTheGradientIsAccumulated) {
  Tensor w = Tensor::from_vector<float>({1, 2, 3}, {3}).requires_grad_();
  int calls = 0;
  std::vector<float> seen;
  auto keep = autograd::add_grad_ready_hook(w, [&](const Tensor& leaf) {
    ++calls;
    seen = leaf.grad().to_vector<float>();
  });
  // w used twice: the two contributions are summed before the hook runs.
  ((w * 2.0).sum() + (w * w).sum()).backward();
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(seen, (std::vector<float>{4, 6, 8}));
  // The hook stays with the accumulator across graphs, and sees accumulation.
  (w * 3.0).sum().backward();
  EXPECT_EQ(calls, 2);
  EXPECT_EQ(seen, (std::vector<float>{7, 9, 11}));
}

TEST(GradReadyHook, RefusesATensorThatIsNotALeafRequiringGrad) {
  Tensor plain = ones({2});
  EXPECT_THROW(autograd::add_grad_ready_hook(plain, [](const Tensor&) {}), Error);
  Tensor w = ones({2}).requires_grad_();
  EXPECT_THROW(autograd::add_grad_ready_hook(w * 2.0, [](const Tensor&) {}), Error);
}
