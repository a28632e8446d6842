// Out-of-line part of core/dispatch.h: the error for a dtype an op does not take.
#include "ember/core/dispatch.h"

#include <string>

#include "ember/core/ops/op_utils.h"

namespace ember::dispatch::detail {

void throw_unsupported_dtype(const char* op, const Tensor& t, const char* backend,
                             const DType* accepted, int n_accepted) {
  std::string list;
  for (int i = 0; i < n_accepted; ++i) {
    list += (i > 0 ? ", " : "");
    list += dtype_name(accepted[i]);
  }
  throw DTypeError(ember::detail::str_cat(op, ": ", dtype_name(t.dtype()),
                                          " is not supported on the ", backend,
                                          " (accepted there: ", list, "), got ",
                                          ember::detail::describe(t)));
}

}  // namespace ember::dispatch::detail
