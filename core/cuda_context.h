// Per-device CUDA streams and library handles (internal). One compute stream per device
// (never the legacy default stream) with the cuBLAS handle bound to it, a cuDNN handle per
// thread and device bound to it too (Note [cuDNN handles per thread] in cuda_context.cpp),
// and a separate copy stream for host->device prefetch. The switches live in core/cuda_settings.h.
#pragma once

#include <cublas_v2.h>
#include <cudnn.h>
#include <cuda_runtime_api.h>

#include "ember/core/base/export.h"
#include "ember/core/cuda_settings.h"
#include "ember/kernels/context.h"

namespace ember::cuda {

EMBER_API cudaStream_t compute_stream(int device);
EMBER_API cudaStream_t copy_stream(int device);
EMBER_API cublasHandle_t cublas_handle(int device);
EMBER_API cudnnHandle_t cudnn_handle(int device);

// The kernel context of `device`: its compute stream and the handles bound to it.
EMBER_API kernels::cuda::Context kernel_context(int device);

}  // namespace ember::cuda
