// The per-element update rules of SGD, Adam/AdamW and RMSprop, written once for the CPU
// loops (kernels/cpu/optim.cpp) and the multi-tensor CUDA kernel (kernels/cuda/optim.cu).
// They follow PyTorch's torch.optim update rules operation for operation.
#pragma once

#include "ember/kernels/elementwise_math.h"
#include "ember/kernels/hd.h"

namespace ember::kernels::math {

// Hyper-parameters of one parameter tensor's update. Everything that depends on the
// step count (Adam's bias corrections, SGD's first step) is computed on the host and
// passed in, so the kernels hold no step counter. T: float or double. Core's public
// twins (FusedSgdParams, ... in core/fused_optim.h) carry the same fields in double;
// core/ops/fused_optim.cpp rounds each to T.

template <typename T>
struct SgdParams {
  T lr = T(0);
  T momentum = T(0);
  T dampening = T(0);
  T weight_decay = T(0);
  bool nesterov = false;
  // True on the step that creates the momentum buffer: PyTorch starts it at the
  // gradient itself (no dampening), not at zero.
  bool first_step = false;
};

template <typename T>
struct AdamParams {
  T lr = T(0);
  T beta1 = T(0);
  T beta2 = T(0);
  T eps = T(0);
  T weight_decay = T(0);
  T step_size = T(0);              // lr / (1 - beta1^step)
  T bias_correction2_sqrt = T(1);  // sqrt(1 - beta2^step)
  bool amsgrad = false;
  bool decoupled_weight_decay = false;  // AdamW
};

template <typename T>
struct RmspropParams {
  T lr = T(0);
  T alpha = T(0);
  T eps = T(0);
  T weight_decay = T(0);
  T momentum = T(0);
  bool centered = false;
};

// torch.maximum: NaN wins, so a NaN second moment is not hidden by amsgrad.
template <typename T>
EMBER_HD inline T nan_max(T a, T b) {
  return (a != a || a > b) ? a : b;
}

// SGD: g += wd * p; buf = first ? g : momentum * buf + (1 - dampening) * g;
// g = nesterov ? g + momentum * buf : buf; p -= lr * g.
// momentum_buffer is only read or written when momentum != 0.
template <typename T>
EMBER_HD inline void sgd_update(const SgdParams<T>& h, T& param, T grad, T& momentum_buffer) {
  if (h.weight_decay != T(0)) grad = grad + h.weight_decay * param;
  if (h.momentum != T(0)) {
    momentum_buffer = h.first_step ? grad
                                   : h.momentum * momentum_buffer + (T(1) - h.dampening) * grad;
    grad = h.nesterov ? grad + h.momentum * momentum_buffer : momentum_buffer;
  }
  param = param - h.lr * grad;
}

// Adam / AdamW (PyTorch's fused formulation):
//   AdamW: p *= 1 - lr * wd          Adam: g += wd * p
//   m = beta1 * m + (1 - beta1) * g
//   v = beta2 * v + (1 - beta2) * g * g
//   v_hat = amsgrad ? (v_max = max(v_max, v)) : v
//   p -= step_size * m / (sqrt(v_hat) / sqrt(1 - beta2^t) + eps)
// max_exp_avg_sq is only read or written when amsgrad is set.
template <typename T>
EMBER_HD inline void adam_update(const AdamParams<T>& h, T& param, T grad, T& exp_avg,
                                 T& exp_avg_sq, T& max_exp_avg_sq) {
  if (h.weight_decay != T(0)) {
    if (h.decoupled_weight_decay) {
      param = param * (T(1) - h.lr * h.weight_decay);
    } else {
      grad = grad + h.weight_decay * param;
    }
  }
  exp_avg = h.beta1 * exp_avg + (T(1) - h.beta1) * grad;
  exp_avg_sq = h.beta2 * exp_avg_sq + (T(1) - h.beta2) * grad * grad;
  T second = exp_avg_sq;
  if (h.amsgrad) {
    max_exp_avg_sq = nan_max(max_exp_avg_sq, exp_avg_sq);
    second = max_exp_avg_sq;
  }
  const T denom = hd_sqrt(second) / h.bias_correction2_sqrt + h.eps;
  param = param - h.step_size * exp_avg / denom;
}

// RMSprop:
//   g += wd * p
//   sq = alpha * sq + (1 - alpha) * g * g
//   centered: ga = alpha * ga + (1 - alpha) * g;  avg = sqrt(sq - ga * ga) + eps
//   else:                                          avg = sqrt(sq) + eps
//   momentum > 0: buf = momentum * buf + g / avg;  p -= lr * buf
//   else:         p -= lr * g / avg
// momentum_buffer is only touched when momentum > 0, grad_avg only when centered.
template <typename T>
EMBER_HD inline void rmsprop_update(const RmspropParams<T>& h, T& param, T grad, T& square_avg,
                                    T& momentum_buffer, T& grad_avg) {
  if (h.weight_decay != T(0)) grad = grad + h.weight_decay * param;
  square_avg = h.alpha * square_avg + (T(1) - h.alpha) * grad * grad;
  T avg;
  if (h.centered) {
    grad_avg = h.alpha * grad_avg + (T(1) - h.alpha) * grad;
    avg = hd_sqrt(square_avg - grad_avg * grad_avg) + h.eps;
  } else {
    avg = hd_sqrt(square_avg) + h.eps;
  }
  if (h.momentum > T(0)) {
    momentum_buffer = h.momentum * momentum_buffer + grad / avg;
    param = param - h.lr * momentum_buffer;
  } else {
    param = param - h.lr * grad / avg;
  }
}

}  // namespace ember::kernels::math
