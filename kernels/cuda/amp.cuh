// The gradient scaler's unscale and inf/NaN check on CUDA, the twin of kernels/cpu/amp.h:
// one launch over every gradient of one device and dtype (the multi-tensor launch tables of
// kernels/cuda/optim.cuh; defined in kernels/cuda/optim.cu beside the optimizers' kernels).
#pragma once

#include <cstdint>

#include "ember/kernels/context.h"
#include "ember/kernels/cpu/amp.h"

namespace ember::kernels::cuda {

// As kernels::cpu::unscale_and_check_multi_tensor, on ctx.stream; inv_scale and found_inf
// are one float each in device memory. T: float, Half, BFloat16.
template <typename T>
void unscale_and_check_multi_tensor(Context ctx, const UnscaleEntry<T>* entries, int64_t count,
                                    const float* inv_scale, float* found_inf);

}  // namespace ember::kernels::cuda
