// Fused optimizer updates over lists of tensors (the role of ATen's _fused_adam_): each
// call updates every parameter in place from its gradient and state, with one kernel call
// per device and dtype (on a GPU, one multi-tensor launch for up to several hundred
// tensors). optim::SGD, Adam/AdamW and RMSprop step through them.
#pragma once

#include <vector>

#include "ember/core/base/export.h"
#include "ember/core/tensor.h"

namespace ember {

// Note [Fused optimizer updates]
// The lists run in parallel: params[i], grads[i], the state tensors [i] and
// hyper_params[i] belong to one parameter tensor. Every list has as many entries as
// params. For each i the gradient and every state tensor the update uses have the
// parameter's device, dtype (float32, float16 or bfloat16, or float64 on the CPU) and
// shape; the parameter and its state tensors are contiguous (a non-contiguous gradient is
// read through a contiguous copy). A state tensor the update does not use (e.g. SGD's momentum buffer
// when momentum == 0) may be undefined and is ignored. The tensors of distinct entries
// must not overlap. The parameter and the state tensors the update uses are written in
// place (their version counters are bumped); nothing is recorded for autograd.
// The hyper-parameters are per tensor (groups differ in lr, and Adam's bias corrections
// depend on each tensor's step count), given in double and rounded once to the tensor's
// dtype (to float for float16 and bfloat16 tensors, which are updated in float and
// rounded once on store), as the update rules of optim/ describe.

// SGD (optim/sgd.h). momentum_buffer is used when momentum != 0.
struct FusedSgdParams {
  double lr = 0.0;
  double momentum = 0.0;
  double dampening = 0.0;
  double weight_decay = 0.0;
  bool nesterov = false;
  // The step that creates the momentum buffer: it starts at the gradient (PyTorch's
  // rule), so the buffer's previous contents are not read.
  bool first_step = false;
};

// Adam / AdamW (optim/adam.h). max_exp_avg_sq is used when amsgrad.
struct FusedAdamParams {
  double lr = 0.0;
  double beta1 = 0.0;
  double beta2 = 0.0;
  double eps = 0.0;
  double weight_decay = 0.0;
  double step_size = 0.0;              // lr / (1 - beta1^step)
  double bias_correction2_sqrt = 1.0;  // sqrt(1 - beta2^step)
  bool amsgrad = false;
  bool decoupled_weight_decay = false;  // AdamW
};

// RMSprop (optim/rmsprop.h). momentum_buffer is used when momentum > 0, grad_avg when
// centered.
struct FusedRmspropParams {
  double lr = 0.0;
  double alpha = 0.0;
  double eps = 0.0;
  double weight_decay = 0.0;
  double momentum = 0.0;
  bool centered = false;
};

// See Note [Fused optimizer updates].
EMBER_API void fused_sgd_(const std::vector<Tensor>& params, const std::vector<Tensor>& grads,
                          const std::vector<Tensor>& momentum_buffers,
                          const std::vector<FusedSgdParams>& hyper_params);

EMBER_API void fused_adam_(const std::vector<Tensor>& params, const std::vector<Tensor>& grads,
                           const std::vector<Tensor>& exp_avgs,
                           const std::vector<Tensor>& exp_avg_sqs,
                           const std::vector<Tensor>& max_exp_avg_sqs,
                           const std::vector<FusedAdamParams>& hyper_params);

EMBER_API void fused_rmsprop_(const std::vector<Tensor>& params,
                              const std::vector<Tensor>& grads,
                              const std::vector<Tensor>& square_avgs,
                              const std::vector<Tensor>& momentum_buffers,
                              const std::vector<Tensor>& grad_avgs,
                              const std::vector<FusedRmspropParams>& hyper_params);

// Note [Gradient unscaling]
// For the gradient scaler (optim/grad_scaler.h), PyTorch's
// _amp_foreach_non_finite_check_and_unscale_: every gradient g (floating, contiguous; any
// mix of dtypes) becomes g * inv_scale in place, and found_inf (a float32 tensor of one
// element on the gradients' device) is set to 1 when any gradient held an inf or NaN (left
// as it was otherwise). inv_scale is a float32 tensor of one element on that device, so
// nothing waits for a GPU. One multi-tensor kernel call per device and dtype does it
// (kernels/cpu/amp.h; on a GPU its twin kernels/cuda/amp.cuh, one launch for up to
// hundreds of tensors).
EMBER_API void amp_unscale_and_check_(const std::vector<Tensor>& grads, const Tensor& found_inf,
                                      const Tensor& inv_scale);

}  // namespace ember
