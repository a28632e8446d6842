// The library's version and what it was built against, for programs and bug reports.
#pragma once

#include <string>

#include "ember/core/base/export.h"

namespace ember {

// "0.1.0": the version of the libember.so loaded at run time.
EMBER_API std::string version();
// The cuDNN version the library was compiled against ("9.x.y"); "" in a build without
// CUDA.
EMBER_API std::string cudnn_version_built();
// The cuDNN version loaded at run time ("9.x.y"); needs no GPU; "" in a build without
// CUDA. It may differ from cudnn_version_built() when the loader finds another libcudnn
// (a GPU machine's cuDNN often comes from a Python wheel).
EMBER_API std::string cudnn_version_runtime();

// The cuBLAS version built against and loaded at run time ("13.1.0"); "" without CUDA.
EMBER_API std::string cublas_version_built();
EMBER_API std::string cublas_version_runtime();

// cuDNN's own compatibility rule, the one PyTorch applies too: a different major version
// is never compatible; within a major version a library runs with any cuDNN of the same
// or a newer minor version (cuDNN keeps minor releases backward compatible).
EMBER_API bool cudnn_compatible(int built_major, int built_minor, int runtime_major,
                                int runtime_minor);
// Whether the cuDNN loaded at run time may be used by this build (true without CUDA).
EMBER_API bool cudnn_runtime_compatible();

}  // namespace ember
