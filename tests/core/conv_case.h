// One conv2d problem (input and weight shapes, parameters, whether there is a bias) and
// the line that names it in a failure; shared by test_conv.cpp and test_conv_cuda.cpp.
#pragma once

#include <string>

#include "ember/core/base/error.h"
#include "ember/core/ops.h"
#include "ember/core/tensor.h"

namespace ember::testing {

struct ConvCase {
  Shape x, w;
  Conv2dParams p;
  bool bias = true;
};

inline std::string describe(const ConvCase& k) {
  return detail::str_cat("x ", shape_str(k.x), " w ", shape_str(k.w), " stride [", k.p.stride[0],
                         ", ", k.p.stride[1], "] pad [", k.p.padding[0], ", ", k.p.padding[1],
                         "] dil [", k.p.dilation[0], ", ", k.p.dilation[1], "] groups ", k.p.groups,
                         k.p.same ? " same" : "", k.bias ? " bias" : "");
}

}  // namespace ember::testing
