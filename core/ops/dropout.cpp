// Dropout: a Philox mask (cuRAND on the GPU, the same counter-based generator family on
// the CPU) multiplied into the input; the backward is the multiplication's.
#include "ember/core/dispatch.h"
#include "ember/core/ops.h"
#include "ember/core/ops/op_utils.h"
#include "ember/core/random.h"
#include "ember/kernels/cpu/loss.h"
#include "ember/kernels/cuda/loss.cuh"

namespace ember {

Tensor dropout(const Tensor& x, double p, bool training) {
  detail::check_floating(x, "dropout");
  EMBER_CHECK_T(ValueError, p >= 0.0 && p <= 1.0, "dropout: probability must be in [0, 1], got ",
                p);
  if (!training || p == 0.0) return x;
  if (p == 1.0) return mul(x, 0.0);
  Tensor mask = detail::empty_on(x.shape(), x.dtype(), x.device());
  const int64_t n = mask.numel();
  const PhiloxState st = philox_reserve(x.device(), static_cast<uint64_t>(n));
  dispatch::run(mask, dispatch::kFloatingAndHalf, "dropout", [&]<typename T>(auto ctx) {
    dropout_mask(ctx, mask.data<T>(), n, p, st.seed, st.offset);
  });
  return mul(x, mask);
}

}  // namespace ember
