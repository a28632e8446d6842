// Replacing a file atomically: the bytes go to a temporary file beside it, which is synced
// and renamed over it (see Note [Atomic write] in atomic_file.cpp). Internal to ember_api.
#pragma once

#include <cstddef>
#include <functional>
#include <string>

namespace ember::io::internal {

// Receives the new file's bytes, in as many pieces as the caller likes.
class AtomicFileWriter {
 public:
  virtual ~AtomicFileWriter() = default;
  virtual void write(const void* data, size_t n) = 0;
};

// Calls `fill` to write the new content of `path`, then replaces `path` with it. On any
// failure (in `fill` too) `path` is left as it was and no temporary file remains. Errors
// are ember::IOError "<op>: <path>: <the system's reason>".
void write_file_atomically(const std::string& op, const std::string& path,
                           const std::function<void(AtomicFileWriter&)>& fill);

}  // namespace ember::io::internal
