// The cuDNN data type of an element type: float32, and float16 / bfloat16 (ember::Half and
// ember::BFloat16 are layout-identical to __half and __nv_bfloat16, Note [16-bit floats]
// in core/base/half.h), for descriptors and as part of every cache key.
#pragma once

#include <cudnn.h>

#include <type_traits>

#include "ember/core/base/half.h"

namespace ember::kernels::cudnn {

template <typename T>
inline constexpr cudnnDataType_t kDataType = std::is_same_v<T, Half>       ? CUDNN_DATA_HALF
                                             : std::is_same_v<T, BFloat16> ? CUDNN_DATA_BFLOAT16
                                                                           : CUDNN_DATA_FLOAT;


}  // namespace ember::kernels::cudnn
