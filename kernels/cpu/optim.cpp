// CPU optimizer updates: plain loops over the shared rules of kernels/optim_math.h, one
// tensor after the other, with subnormals flushed to zero (Note [Subnormals]). A state
// array the update does not use may be null; a scratch value stands in for it.
#include "ember/kernels/cpu/optim.h"

#include "ember/kernels/cpu/denormal.h"

namespace ember::kernels::cpu {

namespace {

// One tensor's loops. All arrays hold n contiguous elements.

template <typename T>
void sgd_loop(const math::SgdParams<T>& h, T* param, const T* grad, T* momentum_buffer,
              int64_t n) {
  T unused = T(0);
  for (int64_t i = 0; i < n; ++i) {
    T& buf = momentum_buffer != nullptr ? momentum_buffer[i] : unused;
    math::sgd_update(h, param[i], grad[i], buf);
  }
}

template <typename T>
void adam_loop(const math::AdamParams<T>& h, T* param, const T* grad, T* exp_avg,
               T* exp_avg_sq, T* max_exp_avg_sq, int64_t n) {
  T unused = T(0);
  for (int64_t i = 0; i < n; ++i) {
    T& vmax = max_exp_avg_sq != nullptr ? max_exp_avg_sq[i] : unused;
    math::adam_update(h, param[i], grad[i], exp_avg[i], exp_avg_sq[i], vmax);
  }
}

template <typename T>
void rmsprop_loop(const math::RmspropParams<T>& h, T* param, const T* grad, T* square_avg,
                  T* momentum_buffer, T* grad_avg, int64_t n) {
  T unused_buf = T(0);
  T unused_avg = T(0);
  for (int64_t i = 0; i < n; ++i) {
    T& buf = momentum_buffer != nullptr ? momentum_buffer[i] : unused_buf;
    T& ga = grad_avg != nullptr ? grad_avg[i] : unused_avg;
    math::rmsprop_update(h, param[i], grad[i], square_avg[i], buf, ga);
  }
}

}  // namespace

template <typename T>
void sgd_multi_tensor(Context, const SgdEntry<T>* entries, int64_t count) {
  const FlushDenormals ftz;
  for (int64_t t = 0; t < count; ++t) {
    const SgdEntry<T>& e = entries[t];
    sgd_loop(e.hyper, e.param, e.grad, e.state[0], e.numel);
  }
}

template <typename T>
void adam_multi_tensor(Context, const AdamEntry<T>* entries, int64_t count) {
  const FlushDenormals ftz;
  for (int64_t t = 0; t < count; ++t) {
    const AdamEntry<T>& e = entries[t];
    adam_loop(e.hyper, e.param, e.grad, e.state[0], e.state[1], e.state[2], e.numel);
  }
}

template <typename T>
void rmsprop_multi_tensor(Context, const RmspropEntry<T>* entries, int64_t count) {
  const FlushDenormals ftz;
  for (int64_t t = 0; t < count; ++t) {
    const RmspropEntry<T>& e = entries[t];
    rmsprop_loop(e.hyper, e.param, e.grad, e.state[0], e.state[1], e.state[2], e.numel);
  }
}

template void sgd_multi_tensor<float>(Context, const SgdEntry<float>*, int64_t);
template void sgd_multi_tensor<double>(Context, const SgdEntry<double>*, int64_t);
template void adam_multi_tensor<float>(Context, const AdamEntry<float>*, int64_t);
template void adam_multi_tensor<double>(Context, const AdamEntry<double>*, int64_t);
template void rmsprop_multi_tensor<float>(Context, const RmspropEntry<float>*, int64_t);
template void rmsprop_multi_tensor<double>(Context, const RmspropEntry<double>*, int64_t);

}  // namespace ember::kernels::cpu
