// CPU optimizer updates: plain loops over the shared rules of kernels/optim_math.h, with
// subnormals flushed to zero (Note [Subnormals]). A state array the update does not use
// may be null; a scratch value stands in for it.
#include "ember/kernels/cpu/optim.h"

#include "ember/kernels/cpu/denormal.h"

namespace ember::kernels::cpu {

template <typename T>
void sgd_update(const math::SgdParams<T>& h, T* param, const T* grad, T* momentum_buffer,
                int64_t n) {
  const FlushDenormals ftz;
  T unused = T(0);
  for (int64_t i = 0; i < n; ++i) {
    T& buf = momentum_buffer != nullptr ? momentum_buffer[i] : unused;
    math::sgd_update(h, param[i], grad[i], buf);
  }
}

template <typename T>
void adam_update(const math::AdamParams<T>& h, T* param, const T* grad, T* exp_avg,
                 T* exp_avg_sq, T* max_exp_avg_sq, int64_t n) {
  const FlushDenormals ftz;
  T unused = T(0);
  for (int64_t i = 0; i < n; ++i) {
    T& vmax = max_exp_avg_sq != nullptr ? max_exp_avg_sq[i] : unused;
    math::adam_update(h, param[i], grad[i], exp_avg[i], exp_avg_sq[i], vmax);
  }
}

template <typename T>
void rmsprop_update(const math::RmspropParams<T>& h, T* param, const T* grad, T* square_avg,
                    T* momentum_buffer, T* grad_avg, int64_t n) {
  const FlushDenormals ftz;
  T unused_buf = T(0);
  T unused_avg = T(0);
  for (int64_t i = 0; i < n; ++i) {
    T& buf = momentum_buffer != nullptr ? momentum_buffer[i] : unused_buf;
    T& ga = grad_avg != nullptr ? grad_avg[i] : unused_avg;
    math::rmsprop_update(h, param[i], grad[i], square_avg[i], buf, ga);
  }
}

template void sgd_update<float>(const math::SgdParams<float>&, float*, const float*, float*,
                                int64_t);
template void sgd_update<double>(const math::SgdParams<double>&, double*, const double*,
                                 double*, int64_t);
template void adam_update<float>(const math::AdamParams<float>&, float*, const float*, float*,
                                 float*, float*, int64_t);
template void adam_update<double>(const math::AdamParams<double>&, double*, const double*,
                                  double*, double*, double*, int64_t);
template void rmsprop_update<float>(const math::RmspropParams<float>&, float*, const float*,
                                    float*, float*, float*, int64_t);
template void rmsprop_update<double>(const math::RmspropParams<double>&, double*,
                                     const double*, double*, double*, double*, int64_t);

}  // namespace ember::kernels::cpu
