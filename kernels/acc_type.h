// acc_t<T>: the type a kernel computes and accumulates in for element type T. float16 and
// bfloat16 load as T, compute in float and round once on store (Note [16-bit floats] in
// core/base/half.h); every other type computes in itself.
#pragma once

#include "ember/core/base/half.h"

namespace ember::kernels {

template <typename T>
struct AccType {
  using type = T;
};
template <>
struct AccType<Half> {
  using type = float;
};
template <>
struct AccType<BFloat16> {
  using type = float;
};

template <typename T>
using acc_t = typename AccType<T>::type;

}  // namespace ember::kernels
