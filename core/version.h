// The library's version and what it was built against, for programs and bug reports.
#pragma once

#include <string>

#include "ember/core/base/export.h"

namespace ember {

// "0.1.0": the version of the libember.so loaded at run time.
EMBER_API std::string version();
// The cuDNN version the library was compiled against ("9.x.y").
EMBER_API std::string cudnn_version_built();
// The cuDNN version loaded at run time ("9.x.y"); needs no GPU. It may differ from
// cudnn_version_built() when the loader finds another libcudnn.
EMBER_API std::string cudnn_version_runtime();

}  // namespace ember
