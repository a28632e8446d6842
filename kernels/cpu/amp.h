// CPU mixed-precision helper for the gradient scaler: one pass over a list of gradient
// tensors that divides them by the loss scale and flags any inf or NaN (PyTorch's
// _amp_foreach_non_finite_check_and_unscale_).
#pragma once

#include <cstdint>

#include "ember/kernels/context.h"

namespace ember::kernels {

// One gradient tensor: `numel` contiguous elements, updated in place.
template <typename T>
struct UnscaleEntry {
  T* data = nullptr;
  int64_t numel = 0;
};

namespace cpu {

// Every element x of every entry becomes x * *inv_scale (computed in float, rounded once
// for Half and BFloat16); *found_inf is set to 1 when any element was inf or NaN (and left
// as it was otherwise, so one flag collects several calls). inv_scale and found_inf are
// one float each, in host memory here (device memory for a GPU twin). T: float, double,
// Half, BFloat16.
template <typename T>
void unscale_and_check_multi_tensor(Context ctx, const UnscaleEntry<T>* entries, int64_t count,
                                    const float* inv_scale, float* found_inf);

}  // namespace cpu
}  // namespace ember::kernels
