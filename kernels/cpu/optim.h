// CPU optimizer updates: one call updates one parameter tensor in place with the shared
// rules of kernels/optim_math.h. The reference for kernels/cuda/optim.
#pragma once

#include <cstdint>

#include "ember/kernels/optim_math.h"

namespace ember::kernels::cpu {

// All arrays hold n contiguous elements; `grad` is only read. T: float, double.

// momentum_buffer may be null when h.momentum == 0.
template <typename T>
void sgd_update(const math::SgdParams<T>& h, T* param, const T* grad, T* momentum_buffer,
                int64_t n);

// max_exp_avg_sq may be null unless h.amsgrad.
template <typename T>
void adam_update(const math::AdamParams<T>& h, T* param, const T* grad, T* exp_avg,
                 T* exp_avg_sq, T* max_exp_avg_sq, int64_t n);

// momentum_buffer may be null unless h.momentum > 0; grad_avg may be null unless h.centered.
template <typename T>
void rmsprop_update(const math::RmspropParams<T>& h, T* param, const T* grad, T* square_avg,
                    T* momentum_buffer, T* grad_avg, int64_t n);

}  // namespace ember::kernels::cpu
