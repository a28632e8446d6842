// ember's exception types and the check macros used everywhere (kernels included:
// this header depends on nothing else in ember).
//
// Two tiers, as in PyTorch's c10: EMBER_CHECK for errors a user can cause (bad shapes,
// dtypes, devices, files) and EMBER_INTERNAL_ASSERT for our own broken invariants.
// Messages are only built when a check fails.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>

#include "ember/core/base/export.h"

namespace ember {

class EMBER_API Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};
class EMBER_API ShapeError : public Error { using Error::Error; };
class EMBER_API DTypeError : public Error { using Error::Error; };
class EMBER_API DeviceError : public Error { using Error::Error; };
class EMBER_API IOError : public Error { using Error::Error; };
class EMBER_API CudaError : public Error { using Error::Error; };
class EMBER_API OutOfMemoryError : public Error { using Error::Error; };
// A value (a loss, a gradient) that is NaN or Inf where a finite one is required.
class EMBER_API ValueError : public Error { using Error::Error; };

namespace detail {

template <typename... Args>
std::string str_cat(Args&&... args) {
  std::ostringstream os;
  (os << ... << std::forward<Args>(args));
  return os.str();
}

[[noreturn]] EMBER_API void throw_internal(const char* cond, const char* file, int line,
                                           const std::string& msg);

}  // namespace detail

}  // namespace ember

// EMBER_CHECK(cond, "matmul: shapes ", a, " and ", b, " ...") throws ember::Error.
// EMBER_CHECK_T(ShapeError, cond, ...) throws the given subclass.
#define EMBER_CHECK_T(ExcType, cond, ...)                                     \
  do {                                                                        \
    if (!(cond)) {                                                            \
      throw ::ember::ExcType(::ember::detail::str_cat(__VA_ARGS__));          \
    }                                                                         \
  } while (0)
#define EMBER_CHECK(cond, ...) EMBER_CHECK_T(Error, cond, __VA_ARGS__)

#define EMBER_INTERNAL_ASSERT(cond, ...)                                      \
  do {                                                                        \
    if (!(cond)) {                                                            \
      ::ember::detail::throw_internal(#cond, __FILE__, __LINE__,              \
                                      ::ember::detail::str_cat("", ##__VA_ARGS__)); \
    }                                                                         \
  } while (0)
