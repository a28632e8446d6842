#include "ember/core/version.h"

namespace ember {

std::string version() { return EMBER_VERSION; }
std::string cudnn_version_built() { return EMBER_CUDNN_VERSION_BUILT; }

}  // namespace ember
