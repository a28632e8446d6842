// CPU embedding forward (row gather) and backward (row scatter-add): float, double, float16
// and bfloat16.
#include "ember/kernels/cpu/embedding.h"

#include <algorithm>
#include <cstring>
#include <limits>

#include "ember/kernels/acc_type.h"
#include "ember/kernels/cpu/widen.h"

namespace ember::kernels::cpu {

template <typename T>
void embedding_forward(Context, const T* weight, const int64_t* indices, T* out, int64_t n,
                       int64_t dim, int64_t num_embeddings, int64_t* bad_count) {
  int64_t bad = 0;
#pragma omp parallel for reduction(+ : bad) if (n * dim > (1 << 16))
  for (int64_t i = 0; i < n; ++i) {
    const int64_t r = indices[i];
    if (r < 0 || r >= num_embeddings) {
      std::fill(out + i * dim, out + (i + 1) * dim,
                static_cast<T>(std::numeric_limits<acc_t<T>>::quiet_NaN()));
      ++bad;
      continue;
    }
    std::memcpy(out + i * dim, weight + r * dim, static_cast<size_t>(dim) * sizeof(T));
  }
  *bad_count += bad;
}

template <typename T>
void embedding_backward(Context ctx, const T* grad_out, const int64_t* indices, T* grad_weight,
                        int64_t n, int64_t dim, int64_t num_embeddings, int64_t padding_idx,
                        const Scratch& scratch) {
  if constexpr (is_reduced_float_v<T>) {
    // 16-bit: rows sharing an index are summed in float, then rounded once.
    FloatCopy gof = widen(grad_out, n * dim);
    FloatCopy gwf = float_output(grad_weight, num_embeddings * dim);
    embedding_backward<float>(ctx, gof.get(), indices, gwf.get(), n, dim, num_embeddings,
                              padding_idx, scratch);
    narrow(gwf, grad_weight, num_embeddings * dim);
  } else {
    std::fill(grad_weight, grad_weight + num_embeddings * dim, T(0));
    // Serial over the rows of grad_out: rows sharing an index add in a fixed order.
    for (int64_t i = 0; i < n; ++i) {
      const int64_t r = indices[i];
      if (r == padding_idx || r < 0 || r >= num_embeddings) continue;
      T* dst = grad_weight + r * dim;
      const T* src = grad_out + i * dim;
      for (int64_t j = 0; j < dim; ++j) dst[j] += src[j];
    }
  }
}

template void embedding_forward<float>(Context, const float*, const int64_t*, float*, int64_t,
                                       int64_t, int64_t, int64_t*);
template void embedding_forward<double>(Context, const double*, const int64_t*, double*, int64_t,
                                        int64_t, int64_t, int64_t*);
template void embedding_backward<float>(Context, const float*, const int64_t*, float*, int64_t,
                                        int64_t, int64_t, int64_t, const Scratch&);
template void embedding_backward<double>(Context, const double*, const int64_t*, double*,
                                         int64_t, int64_t, int64_t, int64_t, const Scratch&);

// float16 and bfloat16.
template void embedding_forward<Half>(Context, const Half*, const int64_t*, Half*, int64_t, int64_t,
                                      int64_t, int64_t*);
template void embedding_backward<Half>(Context, const Half*, const int64_t*, Half*, int64_t,
                                       int64_t, int64_t, int64_t, const Scratch&);
template void embedding_forward<BFloat16>(Context, const BFloat16*, const int64_t*, BFloat16*,
                                          int64_t, int64_t, int64_t, int64_t*);
template void embedding_backward<BFloat16>(Context, const BFloat16*, const int64_t*, BFloat16*,
                                           int64_t, int64_t, int64_t, int64_t, const Scratch&);

}  // namespace ember::kernels::cpu
