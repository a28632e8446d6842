// The library's version and what it was built against, for programs and bug reports.
#pragma once

#include <string>

#include "ember/core/export.h"

namespace ember {

// "0.1.0": the version of the libember.so loaded at run time.
EMBER_API std::string version();
// The cuDNN version the library was compiled against ("9.x.y").
EMBER_API std::string cudnn_version_built();

}  // namespace ember
