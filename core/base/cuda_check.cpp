// Out-of-line parts of core/base/cuda_check.h (built only with CUDA).
#include "ember/core/base/cuda_check.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace ember::detail {

static int current_device_or_minus_one() {
  int dev = -1;
  if (cudaGetDevice(&dev) != cudaSuccess) return -1;
  return dev;
}

void throw_cuda_error(cudaError_t err, const char* call, const char* file, int line) {
  std::string msg = str_cat("CUDA error ", cudaGetErrorName(err), ": ",
                            cudaGetErrorString(err), "\n  in ", call, " at ", file, ":",
                            line, " (device ", current_device_or_minus_one(), ")");
  if (err == cudaErrorMemoryAllocation) throw OutOfMemoryError(msg);
  msg += "\n  CUDA kernel errors may be reported at a later call; set "
         "EMBER_LAUNCH_BLOCKING=1 to make launches synchronous and find the failing one.";
  throw CudaError(msg);
}

void throw_cublas_error(cublasStatus_t st, const char* call, const char* file, int line) {
  std::string msg = str_cat("cuBLAS error ", cublasGetStatusName(st), ": ",
                            cublasGetStatusString(st), "\n  in ", call, " at ", file, ":",
                            line, " (device ", current_device_or_minus_one(), ")");
  if (st == CUBLAS_STATUS_ALLOC_FAILED) throw OutOfMemoryError(msg);
  throw CudaError(msg);
}

void throw_cudnn_error(cudnnStatus_t st, const char* call, const char* file, int line) {
  char detail[512] = {0};
  cudnnGetLastErrorString(detail, sizeof detail);
  std::string msg = str_cat("cuDNN error ", cudnnGetErrorString(st), "\n  in ", call, " at ",
                            file, ":", line, " (device ", current_device_or_minus_one(), ")",
                            detail[0] != '\0' ? "\n  cuDNN says: " : "", detail);
  if (st == CUDNN_STATUS_ALLOC_FAILED) throw OutOfMemoryError(msg);
  throw CudaError(msg);
}

void warn_cuda_error(cudaError_t err, const char* call, const char* file, int line) {
  std::fprintf(stderr, "ember warning: CUDA error %s: %s in %s at %s:%d\n",
               cudaGetErrorName(err), cudaGetErrorString(err), call, file, line);
}

bool launch_blocking() {
  static const bool blocking = [] {
    const char* v = std::getenv("EMBER_LAUNCH_BLOCKING");
    return v != nullptr && std::strcmp(v, "1") == 0;
  }();
  return blocking;
}

void check_launch(const char* file, int line) {
  cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess) throw_cuda_error(err, "kernel launch", file, line);
  if (launch_blocking()) {
    err = cudaDeviceSynchronize();
    if (err != cudaSuccess) throw_cuda_error(err, "kernel (EMBER_LAUNCH_BLOCKING)", file, line);
  }
}

}  // namespace ember::detail
