// Tests over devices: one skip for "no GPU", a fixture parameterized over cpu and cuda
// (the role of PyTorch's instantiate_device_type_tests), and the NaN-poisoned CUDA pool.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "ember/core/device.h"
#include "ember/core/dtype.h"
#include "ember/core/ops.h"
#include "ember/core/tensor.h"

// Skips the current test, with the reason, when no usable GPU is present. CTest lists
// skipped tests, so a green run without a GPU is never read as "verified on a GPU".
#define EMBER_SKIP_WITHOUT_GPU()                                                 \
  do {                                                                           \
    if (!::ember::cuda::is_available()) {                                        \
      GTEST_SKIP() << "no CUDA device: " << ::ember::cuda::unavailable_reason(); \
    }                                                                            \
  } while (0)

namespace ember::testing {

// A test that runs once per device: `class MySuite : public OnDevice {};`, then
// TEST_P(MySuite, ...) using `device()`, and EMBER_INSTANTIATE_ON_DEVICES(MySuite) after the
// tests. The cuda instance skips without a GPU (a SetUp() override calls OnDevice::SetUp()
// first and returns if IsSkipped()).
class OnDevice : public ::testing::TestWithParam<Device> {
 protected:
  void SetUp() override {
    if (GetParam().is_cuda()) EMBER_SKIP_WITHOUT_GPU();
  }
  Device device() const { return GetParam(); }
};

// The floating dtypes an op computes in on `device`, widest first: float64 and float32 on
// the CPU, float32 on CUDA (its kernels have no float64 instantiation; Note [Dispatch]).
inline std::vector<DType> floating_dtypes(Device device) {
  if (device.is_cuda()) return {kFloat32};
  return {kFloat64, kFloat32};
}

inline std::string device_param_name(const ::testing::TestParamInfo<Device>& info) {
  return info.param.is_cpu() ? "cpu" : "cuda";
}

// Drops NaN-filled blocks of several sizes back into the CUDA pool, so the outputs the
// next ops allocate start as garbage and an element a kernel forgets to write shows up.
// The blocks up to 1 MiB land in the pool of small blocks; the 16 MiB one in the pool of
// large blocks, which serves every request over 1 MiB (the two pools never mix; Note
// [Caching allocator policy]).
inline void poison_cuda_pool(int device = 0) {
  for (int64_t n : {int64_t{1}, int64_t{64}, int64_t{1000}, int64_t{1} << 14, int64_t{1} << 18,
                    int64_t{1} << 22}) {
    full({n}, std::nan(""), {.device = Device::cuda(device)});
  }
}

}  // namespace ember::testing

#define EMBER_INSTANTIATE_ON_DEVICES(Suite)                                                     \
  INSTANTIATE_TEST_SUITE_P(                                                                     \
      Devices, Suite,                                                                           \
      ::testing::Values(::ember::Device::cpu(), ::ember::Device(::ember::DeviceType::CUDA, 0)), \
      ::ember::testing::device_param_name)
