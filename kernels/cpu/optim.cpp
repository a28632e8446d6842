// CPU optimizer updates: plain loops over the shared rules of kernels/optim_math.h, one
// tensor after the other, with subnormals flushed to zero (Note [Subnormals]). A state
// array the update does not use may be null; a scratch value stands in for it.
#include "ember/kernels/cpu/optim.h"

#include "ember/kernels/cpu/denormal.h"

namespace ember::kernels::cpu {

namespace {

// One tensor's loops. All arrays hold n contiguous elements. Each element and its state
// are loaded into acc_t<T> (float for Half and BFloat16), updated, and stored back.

template <typename T>
void sgd_loop(const math::SgdParams<acc_t<T>>& h, T* param, const T* grad, T* momentum_buffer,
              int64_t n) {
  using A = acc_t<T>;
  for (int64_t i = 0; i < n; ++i) {
    A p = static_cast<A>(param[i]);
    A buf = momentum_buffer != nullptr ? static_cast<A>(momentum_buffer[i]) : A(0);
    math::sgd_update(h, p, static_cast<A>(grad[i]), buf);
    param[i] = static_cast<T>(p);
    if (momentum_buffer != nullptr) momentum_buffer[i] = static_cast<T>(buf);
  }
}

template <typename T>
void adam_loop(const math::AdamParams<acc_t<T>>& h, T* param, const T* grad, T* exp_avg,
               T* exp_avg_sq, T* max_exp_avg_sq, int64_t n) {
  using A = acc_t<T>;
  for (int64_t i = 0; i < n; ++i) {
    A p = static_cast<A>(param[i]);
    A m = static_cast<A>(exp_avg[i]), v = static_cast<A>(exp_avg_sq[i]);
    A vmax = max_exp_avg_sq != nullptr ? static_cast<A>(max_exp_avg_sq[i]) : A(0);
    math::adam_update(h, p, static_cast<A>(grad[i]), m, v, vmax);
    param[i] = static_cast<T>(p);
    exp_avg[i] = static_cast<T>(m);
    exp_avg_sq[i] = static_cast<T>(v);
    if (max_exp_avg_sq != nullptr) max_exp_avg_sq[i] = static_cast<T>(vmax);
  }
}

template <typename T>
void rmsprop_loop(const math::RmspropParams<acc_t<T>>& h, T* param, const T* grad,
                  T* square_avg, T* momentum_buffer, T* grad_avg, int64_t n) {
  using A = acc_t<T>;
  for (int64_t i = 0; i < n; ++i) {
    A p = static_cast<A>(param[i]), sq = static_cast<A>(square_avg[i]);
    A buf = momentum_buffer != nullptr ? static_cast<A>(momentum_buffer[i]) : A(0);
    A ga = grad_avg != nullptr ? static_cast<A>(grad_avg[i]) : A(0);
    math::rmsprop_update(h, p, static_cast<A>(grad[i]), sq, buf, ga);
    param[i] = static_cast<T>(p);
    square_avg[i] = static_cast<T>(sq);
    if (momentum_buffer != nullptr) momentum_buffer[i] = static_cast<T>(buf);
    if (grad_avg != nullptr) grad_avg[i] = static_cast<T>(ga);
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

// float16 and bfloat16 (updated in float).
template void sgd_multi_tensor<Half>(Context, const SgdEntry<Half>*, int64_t);
template void adam_multi_tensor<Half>(Context, const AdamEntry<Half>*, int64_t);
template void rmsprop_multi_tensor<Half>(Context, const RmspropEntry<Half>*, int64_t);
template void sgd_multi_tensor<BFloat16>(Context, const SgdEntry<BFloat16>*, int64_t);
template void adam_multi_tensor<BFloat16>(Context, const AdamEntry<BFloat16>*, int64_t);
template void rmsprop_multi_tensor<BFloat16>(Context, const RmspropEntry<BFloat16>*, int64_t);

}  // namespace ember::kernels::cpu
