// Switches for the CUDA libraries' numerics and the device guard: public, and free of CUDA
// headers, so a user's program sets them without the CUDA toolkit. In a build without
// CUDA the switches are kept and read back but change nothing.
#pragma once

#include "ember/core/base/export.h"

namespace ember::cuda {

// cuDNN algorithm choice: heuristics by default; measured search (cudnnFind*) when
// benchmark mode is on, the result cached per shape (like torch.backends.cudnn.benchmark).
EMBER_API void set_cudnn_benchmark(bool on);
EMBER_API bool cudnn_benchmark();
// Deterministic mode: deterministic cuDNN algorithms only.
EMBER_API void set_deterministic(bool on);
EMBER_API bool deterministic();

// TF32 for float GEMMs: off by default (exact float32 results), switchable.
EMBER_API void set_allow_tf32(bool allow);
EMBER_API bool allow_tf32();

// Makes `device` current for the guard's lifetime.
class EMBER_API DeviceGuard {
 public:
  explicit DeviceGuard(int device);
  ~DeviceGuard();
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;

 private:
  int prev_ = -1;
};

}  // namespace ember::cuda
