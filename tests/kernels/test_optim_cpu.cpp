// The CPU optimizer kernels flush subnormals to zero while they run and leave the
// thread's floating-point control as they found it (Note [Subnormals]).
#include "ember/kernels/cpu/optim.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "ember/kernels/cpu/denormal.h"

namespace {

using namespace ember::kernels;

math::AdamParams<float> adam_step_one() {
  math::AdamParams<float> h;
  h.lr = 1e-3f;
  h.beta1 = 0.9f;
  h.beta2 = 0.999f;
  h.eps = 1e-8f;
  h.step_size = h.lr / (1.0f - h.beta1);
  h.bias_correction2_sqrt = std::sqrt(1.0f - h.beta2);
  return h;
}

// One step of the CPU twin over one tensor of n elements (no amsgrad maximum).
void adam_step(float* param, const float* grad, float* m, float* v, int64_t n) {
  AdamEntry<float> e;
  e.param = param;
  e.grad = grad;
  e.state[0] = m;
  e.state[1] = v;
  e.numel = n;
  e.hyper = adam_step_one();
  cpu::adam_multi_tensor(cpu::Context{}, &e, 1);
}

TEST(OptimCpu, AdamFlushesSubnormalMomentsToZero) {
  // grad^2 = 1e-40 is subnormal: flushed, the second moment stays exactly 0 (kept, it
  // would be about 1e-43). The first moment, 1e-21, is normal and kept.
  float param = 1.0f, grad = 1e-20f, m = 0.0f, v = 0.0f;
  adam_step(&param, &grad, &m, &v, 1);
  EXPECT_EQ(v, 0.0f);
  EXPECT_FLOAT_EQ(m, 1e-21f);
  EXPECT_TRUE(std::isfinite(param));

  // A subnormal state read as zero: the decay of 1e-39 gives 0, not 9.99e-40.
  float v_sub = 1e-39f, m2 = 0.0f, p2 = 1.0f, g2 = 0.0f;
  ASSERT_EQ(std::fpclassify(v_sub), FP_SUBNORMAL);
  adam_step(&p2, &g2, &m2, &v_sub, 1);
  EXPECT_EQ(v_sub, 0.0f);
}

TEST(OptimCpu, SubnormalsAreKeptOutsideTheKernels) {
  // The flag is restored: plain arithmetic on this thread still makes subnormals.
  volatile float tiny = std::numeric_limits<float>::min();  // smallest normal
  float before = tiny / 4.0f;
  float p = 1.0f, g = 1e-20f, m = 0.0f, v = 0.0f;
  adam_step(&p, &g, &m, &v, 1);
  float after = tiny / 4.0f;
  EXPECT_EQ(std::fpclassify(before), FP_SUBNORMAL);
  EXPECT_EQ(std::fpclassify(after), FP_SUBNORMAL);
  {
    const cpu::FlushDenormals ftz;
    volatile float inside = tiny / 4.0f;
#if EMBER_HAS_MXCSR
    EXPECT_EQ(inside, 0.0f);
#else
    (void)inside;
#endif
  }
  volatile float again = tiny / 4.0f;
  EXPECT_EQ(std::fpclassify(again), FP_SUBNORMAL);
}

}  // namespace
