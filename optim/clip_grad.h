// Gradient clipping by total norm (torch.nn.utils.clip_grad_norm_).
#pragma once

#include <vector>

#include "ember/core/base/export.h"
#include "ember/core/tensor.h"

namespace ember::optim {

// Scales the gradients of `params` in place so that their total norm (the norm of all
// gradients concatenated) is at most max_norm: each is multiplied by
// min(1, max_norm / (total_norm + 1e-6)), as PyTorch does. norm_type is p > 0, or
// infinity (std::numeric_limits<double>::infinity()) for the max norm. Parameters without
// a gradient are skipped. Returns the total norm before clipping as a rank-0 tensor on
// the first gradient's device and dtype (0 when there is no gradient); it is computed on
// the device, with no host synchronisation (call item() to read it).
EMBER_API Tensor clip_grad_norm(const std::vector<Tensor>& params, double max_norm,
                                double norm_type = 2.0);

}  // namespace ember::optim
