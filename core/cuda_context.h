// Per-device CUDA streams and library handles (internal). One compute stream per device
// (never the legacy default stream) with the cuBLAS handle bound to it, and a separate
// copy stream for host->device prefetch.
#pragma once

#include <cublas_v2.h>
#include <cudnn.h>
#include <cuda_runtime_api.h>

#include "ember/core/export.h"

namespace ember::cuda {

EMBER_API cudaStream_t compute_stream(int device);
EMBER_API cudaStream_t copy_stream(int device);
EMBER_API cublasHandle_t cublas_handle(int device);
EMBER_API cudnnHandle_t cudnn_handle(int device);

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
