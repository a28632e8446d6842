// The library's version and the versions of cuDNN it was built against and loads.
#include "ember/core/version.h"

#if EMBER_WITH_CUDA
#include <cublas_api.h>
#include <cudnn.h>
#endif

namespace ember {

std::string version() { return EMBER_VERSION; }

bool cudnn_compatible(int built_major, int built_minor, int runtime_major, int runtime_minor) {
  return runtime_major == built_major && runtime_minor >= built_minor;
}

#if EMBER_WITH_CUDA

std::string cudnn_version_built() { return EMBER_CUDNN_VERSION_BUILT; }

std::string cudnn_version_runtime() {
  const size_t v = cudnnGetVersion();  // cuDNN 9: major * 10000 + minor * 100 + patch
  return std::to_string(v / 10000) + "." + std::to_string((v / 100) % 100) + "." +
         std::to_string(v % 100);
}

std::string cublas_version_built() {
  return std::to_string(CUBLAS_VER_MAJOR) + "." + std::to_string(CUBLAS_VER_MINOR) + "." +
         std::to_string(CUBLAS_VER_PATCH);
}

std::string cublas_version_runtime() {
  int major = 0, minor = 0, patch = 0;
  if (cublasGetProperty(MAJOR_VERSION, &major) != CUBLAS_STATUS_SUCCESS ||
      cublasGetProperty(MINOR_VERSION, &minor) != CUBLAS_STATUS_SUCCESS ||
      cublasGetProperty(PATCH_LEVEL, &patch) != CUBLAS_STATUS_SUCCESS) {
    return "";
  }
  return std::to_string(major) + "." + std::to_string(minor) + "." + std::to_string(patch);
}

bool cudnn_runtime_compatible() {
  const size_t v = cudnnGetVersion();
  return cudnn_compatible(CUDNN_MAJOR, CUDNN_MINOR, static_cast<int>(v / 10000),
                          static_cast<int>((v / 100) % 100));
}

#else

std::string cudnn_version_built() { return ""; }
std::string cudnn_version_runtime() { return ""; }
std::string cublas_version_built() { return ""; }
std::string cublas_version_runtime() { return ""; }
bool cudnn_runtime_compatible() { return true; }

#endif

}  // namespace ember
