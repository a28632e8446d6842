// One pooling problem (input shape and parameters) and the line that names it in a
// failure; shared by test_pool_norm.cpp and test_pool_norm_cuda.cpp.
#pragma once

#include <string>

#include "ember/core/base/error.h"
#include "ember/core/ops.h"
#include "ember/core/tensor.h"

namespace ember::testing {

struct PoolCase {
  Shape x;
  Pool2dParams p;
};

inline std::string describe(const Shape& x, const Pool2dParams& p) {
  return detail::str_cat(shape_str(x), " k[", p.kernel[0], ",", p.kernel[1], "] s[", p.stride[0],
                         ",", p.stride[1], "] p[", p.padding[0], ",", p.padding[1],
                         "] ceil=", p.ceil_mode, " include_pad=", p.count_include_pad);
}

inline std::string describe(const PoolCase& c) { return describe(c.x, c.p); }

}  // namespace ember::testing
