// embedding: rows of a table looked up by int64 index, with the backward that scatters
// the rows' gradients back into the table (none into the padding row).
#include "ember/core/autograd.h"
#include "ember/core/deferred_check.h"
#include "ember/core/dispatch.h"
#include "ember/core/ops.h"
#include "ember/core/ops/op_utils.h"
#include "ember/core/ops/scratch.h"
#include "ember/kernels/cpu/embedding.h"
#include "ember/kernels/cuda/embedding.cuh"

namespace ember {

namespace {

constexpr const char* kOp = "embedding";

// The error for `bad` indices outside the table; on a GPU it is raised later (Note
// [Deferred checks] in core/device.h). It keeps the indices to name the first bad one:
// small, and read back only when there is an error.
detail::CheckRaise bad_indices_error(const Tensor& idx, int64_t rows, const Shape& weight_shape) {
  return [idx, rows, weight = shape_str(weight_shape)](int64_t bad, bool deferred) {
    int64_t first = -1;
    for (int64_t v : idx.cpu().to_vector<int64_t>()) {
      if (v < 0 || v >= rows) {
        first = v;
        break;
      }
    }
    throw ShapeError(detail::str_cat(
        kOp, ": index ", first, " is out of range for a table of ", rows, " rows (weight ",
        weight, "; ", bad, " of ", idx.numel(), " indices are); indices must be in [0, ", rows,
        ")",
        deferred ? "; found at the device's next synchronization after the call (set "
                   "EMBER_SYNC_CHECKS=1 to raise at the call)"
                 : ""));
  };
}

// grad_out: [n, dim] contiguous -> grad_weight: [rows, dim]
Tensor backward_rows(const Tensor& grad_out, const Tensor& idx, int64_t rows, int64_t dim,
                     int64_t padding_idx) {
  Tensor gw = detail::empty_on({rows, dim}, grad_out.dtype(), grad_out.device());
  const int64_t n = idx.numel();
  if (gw.numel() == 0) return gw;
  Tensor held;
  const kernels::Scratch scratch = detail::pool_scratch(gw.device(), held);
  dispatch::run(gw, dispatch::kFloatingAndHalf, kOp, [&]<typename T>(auto ctx) {
    embedding_backward(ctx, grad_out.data<T>(), idx.data<int64_t>(), gw.data<T>(), n, dim, rows,
                       padding_idx, scratch);
  });
  return gw;
}

}  // namespace

Tensor embedding(const Tensor& weight, const Tensor& indices, int64_t padding_idx) {
  detail::check_defined(weight, kOp, "weight");
  detail::check_floating(weight, kOp);
  detail::check_dtype(indices, kInt64, kOp, "indices");
  detail::check_same_device(weight, indices, kOp);
  EMBER_CHECK_T(ShapeError, weight.dim() == 2, kOp,
                ": weight must be [num_embeddings, embedding_dim], got ",
                shape_str(weight.shape()));
  const int64_t rows = weight.size(0), dim = weight.size(1);
  EMBER_CHECK_T(ValueError, padding_idx >= -1 && padding_idx < rows, kOp, ": padding_idx ",
                padding_idx, " is out of range for a table of ", rows, " rows (use -1 for none)");
  const Tensor idx = indices.contiguous();

  Shape out_shape = indices.shape();
  out_shape.push_back(dim);
  Tensor out = detail::empty_on(out_shape, weight.dtype(), weight.device());
  const int64_t n = idx.numel();
  if (n > 0) {
    // Bad indices are an error, checked by the lookup itself: on a GPU without a wait here.
    const Tensor w = weight.detach().contiguous();
    detail::DeviceCheck bad(w.device());
    dispatch::run(w, dispatch::kFloatingAndHalf, kOp, [&]<typename T>(auto ctx) {
      embedding_forward(ctx, w.data<T>(), idx.data<int64_t>(), out.data<T>(), n, dim, rows,
                        bad.counter());
    });
    bad.commit(bad_indices_error(idx, rows, weight.shape()));
  }
  if (autograd::needs_grad({&weight})) {
    autograd::record(kOp, {weight}, {out},
                     [rows, dim, n, padding_idx, si = autograd::SavedTensor(idx, kOp)](
                         std::vector<Tensor>& g) {
                       // g: [*indices, dim] -> weight: [rows, dim]
                       Tensor go = g[0].contiguous().reshape({n, dim});
                       return std::vector<Tensor>{
                           backward_rows(go, si.unpack(), rows, dim, padding_idx)};
                     });
  }
  return out;
}

}  // namespace ember
