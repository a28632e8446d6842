// Scratch: memory a kernel borrows from its caller for one call (cuDNN's workspaces, and
// stand-ins for optional arguments a library cannot take as null), so that kernels need no
// allocator of their own. Core backs it with ember's memory pool on the op's device
// (core/ops/scratch.h), so these bytes show in the pool's figures like any tensor's.
#pragma once

#include <cstddef>
#include <functional>

namespace ember::kernels {

// scratch(bytes): at least `bytes` bytes on the kernel's device, aligned for any element
// type (nullptr for 0). One buffer at a time: each call hands back the buffer the previous
// call gave. The last one stays valid until the kernel returns, and on a GPU for the work
// the kernel enqueued on its stream (the pool reuses memory in stream order). Throws
// ember::OutOfMemoryError when the bytes cannot be had.
using Scratch = std::function<void*(size_t bytes)>;

}  // namespace ember::kernels
