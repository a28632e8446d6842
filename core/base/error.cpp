// Out-of-line parts of core/base/error.h.
#include "ember/core/base/error.h"

namespace ember::detail {

void throw_internal(const char* cond, const char* file, int line, const std::string& msg) {
  throw Error(str_cat("ember internal error: ", cond, " failed at ", file, ":", line,
                      msg.empty() ? "" : ": ", msg,
                      " (this is a bug in ember; please report it)"));
}

}  // namespace ember::detail
