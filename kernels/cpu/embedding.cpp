// CPU embedding forward (row gather) and backward (row scatter-add), float and double.
#include "ember/kernels/cpu/embedding.h"

#include <algorithm>
#include <cstring>

namespace ember::kernels::cpu {

template <typename T>
void embedding_forward(Context, const T* weight, const int64_t* indices, T* out, int64_t n,
                       int64_t dim) {
#pragma omp parallel for if (n * dim > (1 << 16))
  for (int64_t i = 0; i < n; ++i) {
    std::memcpy(out + i * dim, weight + indices[i] * dim, static_cast<size_t>(dim) * sizeof(T));
  }
}

template <typename T>
void embedding_backward(Context, const T* grad_out, const int64_t* indices, T* grad_weight,
                        int64_t n, int64_t dim, int64_t num_embeddings, int64_t padding_idx) {
  std::fill(grad_weight, grad_weight + num_embeddings * dim, T(0));
  // Serial over the rows of grad_out: rows sharing an index add in a fixed order.
  for (int64_t i = 0; i < n; ++i) {
    const int64_t r = indices[i];
    if (r == padding_idx) continue;
    T* dst = grad_weight + r * dim;
    const T* src = grad_out + i * dim;
    for (int64_t j = 0; j < dim; ++j) dst[j] += src[j];
  }
}

template void embedding_forward<float>(Context, const float*, const int64_t*, float*, int64_t,
                                       int64_t);
template void embedding_forward<double>(Context, const double*, const int64_t*, double*, int64_t,
                                        int64_t);
template void embedding_backward<float>(Context, const float*, const int64_t*, float*, int64_t,
                                        int64_t, int64_t, int64_t);
template void embedding_backward<double>(Context, const double*, const int64_t*, double*,
                                         int64_t, int64_t, int64_t, int64_t);

}  // namespace ember::kernels::cpu
