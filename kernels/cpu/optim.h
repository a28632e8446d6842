// CPU optimizer updates, and the entry type they share with their CUDA twins
// (kernels/cuda/optim.cuh): one call updates a list of parameter tensors in place with the
// shared rules of kernels/optim_math.h. The reference for kernels/cuda/optim.
#pragma once

#include <cstdint>

#include "ember/kernels/acc_type.h"
#include "ember/kernels/context.h"
#include "ember/kernels/optim_math.h"

namespace ember::kernels {

// One parameter tensor of a multi-tensor update: contiguous arrays of `numel` elements
// (`grad` is only read), and the tensor's own hyper-parameters (parameter groups differ,
// and so may the step count of each tensor). A state slot the update does not use is
// null. The arrays of distinct entries must not overlap. T: float, double, Half,
// BFloat16; the hyper-parameters and the update's arithmetic are in acc_t<T> (float for
// the 16-bit types, whose parameter and state are rounded once per step on store).
template <typename T, int NumState, template <typename> class Hyper>
struct MultiTensorEntry {
  static constexpr int kNumState = NumState;
  T* param = nullptr;
  const T* grad = nullptr;
  T* state[NumState] = {};
  int64_t numel = 0;
  Hyper<acc_t<T>> hyper{};
};

// state: {momentum_buffer} (null when momentum == 0).
template <typename T>
using SgdEntry = MultiTensorEntry<T, 1, math::SgdParams>;
// state: {exp_avg, exp_avg_sq, max_exp_avg_sq} (the last null unless amsgrad).
template <typename T>
using AdamEntry = MultiTensorEntry<T, 3, math::AdamParams>;
// state: {square_avg, momentum_buffer, grad_avg} (null unless momentum > 0 / centered).
template <typename T>
using RmspropEntry = MultiTensorEntry<T, 3, math::RmspropParams>;

namespace cpu {

// Updates entries[0..count) one tensor after the other, with subnormals flushed to zero
// (Note [Subnormals] in kernels/cpu/denormal.h). Entries with numel == 0 are skipped.
template <typename T>
void sgd_multi_tensor(Context ctx, const SgdEntry<T>* entries, int64_t count);
template <typename T>
void adam_multi_tensor(Context ctx, const AdamEntry<T>* entries, int64_t count);
template <typename T>
void rmsprop_multi_tensor(Context ctx, const RmspropEntry<T>* entries, int64_t count);

}  // namespace cpu
}  // namespace ember::kernels
