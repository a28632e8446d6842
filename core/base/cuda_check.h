// Checks for every CUDA runtime, cuBLAS and cuRAND call, and for kernel launches.
// A failure throws ember::CudaError (or OutOfMemoryError) carrying the call text, the
// library's error name and string, the current device and file:line.
#pragma once

#include <cublas_v2.h>
#include <cudnn.h>
#include <cuda_runtime_api.h>

#include "ember/core/base/error.h"

namespace ember::detail {

[[noreturn]] EMBER_API void throw_cuda_error(cudaError_t err, const char* call,
                                             const char* file, int line);
[[noreturn]] EMBER_API void throw_cublas_error(cublasStatus_t st, const char* call,
                                               const char* file, int line);
[[noreturn]] EMBER_API void throw_cudnn_error(cudnnStatus_t st, const char* call,
                                              const char* file, int line);
// For destructors: logs to stderr instead of throwing.
EMBER_API void warn_cuda_error(cudaError_t err, const char* call, const char* file,
                               int line);
// True when EMBER_LAUNCH_BLOCKING=1: every launch check also synchronizes.
EMBER_API bool launch_blocking();
EMBER_API void check_launch(const char* file, int line);

}  // namespace ember::detail

#define EMBER_CUDA_CHECK(call)                                                 \
  do {                                                                         \
    cudaError_t ember_err_ = (call);                                           \
    if (ember_err_ != cudaSuccess) {                                           \
      ::ember::detail::throw_cuda_error(ember_err_, #call, __FILE__, __LINE__); \
    }                                                                          \
  } while (0)

#define EMBER_CUDA_WARN(call)                                                  \
  do {                                                                         \
    cudaError_t ember_err_ = (call);                                           \
    if (ember_err_ != cudaSuccess) {                                           \
      ::ember::detail::warn_cuda_error(ember_err_, #call, __FILE__, __LINE__); \
    }                                                                          \
  } while (0)

#define EMBER_CUBLAS_CHECK(call)                                                   \
  do {                                                                             \
    cublasStatus_t ember_st_ = (call);                                             \
    if (ember_st_ != CUBLAS_STATUS_SUCCESS) {                                      \
      ::ember::detail::throw_cublas_error(ember_st_, #call, __FILE__, __LINE__);   \
    }                                                                              \
  } while (0)

#define EMBER_CUDNN_CHECK(call)                                                    \
  do {                                                                             \
    cudnnStatus_t ember_st_ = (call);                                              \
    if (ember_st_ != CUDNN_STATUS_SUCCESS) {                                       \
      ::ember::detail::throw_cudnn_error(ember_st_, #call, __FILE__, __LINE__);    \
    }                                                                              \
  } while (0)

// Directly after every kernel launch.
#define EMBER_KERNEL_LAUNCH_CHECK() ::ember::detail::check_launch(__FILE__, __LINE__)
