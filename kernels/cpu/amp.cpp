// CPU unscale-and-check for the gradient scaler (kernels/cpu/amp.h).
#include "ember/kernels/cpu/amp.h"

#include <cmath>

#include "ember/core/base/half.h"
#include "ember/kernels/acc_type.h"

namespace ember::kernels::cpu {

template <typename T>
void unscale_and_check_multi_tensor(Context, const UnscaleEntry<T>* entries, int64_t count,
                                    const float* inv_scale, float* found_inf) {
  using A = acc_t<T>;
  const A s = static_cast<A>(*inv_scale);
  bool any = false;
  for (int64_t t = 0; t < count; ++t) {
    T* x = entries[t].data;
    const int64_t n = entries[t].numel;
    bool bad = false;
#pragma omp parallel for reduction(|| : bad) if (n > (1 << 16))
    for (int64_t i = 0; i < n; ++i) {
      const A v = static_cast<A>(x[i]);
      bad = bad || !std::isfinite(v);
      x[i] = static_cast<T>(v * s);
    }
    any = any || bad;
  }
  if (any) *found_inf = 1.0f;
}

template void unscale_and_check_multi_tensor<float>(Context, const UnscaleEntry<float>*, int64_t,
                                                    const float*, float*);
template void unscale_and_check_multi_tensor<double>(Context, const UnscaleEntry<double>*,
                                                     int64_t, const float*, float*);
template void unscale_and_check_multi_tensor<Half>(Context, const UnscaleEntry<Half>*, int64_t,
                                                   const float*, float*);
template void unscale_and_check_multi_tensor<BFloat16>(Context, const UnscaleEntry<BFloat16>*,
                                                       int64_t, const float*, float*);

}  // namespace ember::kernels::cpu
