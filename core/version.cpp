// The library's version and the versions of cuDNN it was built against and loads.
#include "ember/core/version.h"

#include <cudnn.h>

namespace ember {

std::string version() { return EMBER_VERSION; }
std::string cudnn_version_built() { return EMBER_CUDNN_VERSION_BUILT; }

std::string cudnn_version_runtime() {
  const size_t v = cudnnGetVersion();  // cuDNN 9: major * 10000 + minor * 100 + patch
  return std::to_string(v / 10000) + "." + std::to_string((v / 100) % 100) + "." +
         std::to_string(v % 100);
}

}  // namespace ember
