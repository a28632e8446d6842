// Joining and splitting along a dimension: cat and stack (one copy per input, through the
// strided copy kernels of Tensor::copy_), split and chunk (views, with one backward node
// for all the pieces, so the gradient is assembled by one cat instead of a zero-filled
// tensor per piece).
#include <numeric>

#include "ember/core/autocast.h"
#include "ember/core/autograd.h"
#include "ember/core/ops.h"
#include "ember/core/ops/op_utils.h"

namespace ember {

namespace {

// The dim of `t` a join along `dim` uses, wrapped against the rank the result has.
int64_t join_dim(const std::vector<Tensor>& tensors, int64_t dim, int64_t extra_rank,
                 const char* op) {
  EMBER_CHECK_T(ValueError, !tensors.empty(), op, ": expected a non-empty list of tensors");
  for (size_t i = 0; i < tensors.size(); ++i) {
    EMBER_CHECK_T(ValueError, tensors[i].defined(), op, ": tensor ", i, " is undefined");
  }
  return detail::wrap_dim(dim, tensors[0].dim() + extra_rank, op);
}

}  // namespace

Tensor cat(const std::vector<Tensor>& tensors, int64_t dim) {
  if (auto c = autocast::to_widest(tensors)) return cat(*c, dim);
  constexpr const char* kOp = "cat";
  const int64_t d = join_dim(tensors, dim, 0, kOp);
  const Tensor& first = tensors[0];
  EMBER_CHECK_T(ShapeError, first.dim() > 0, kOp, ": zero-dimensional tensors cannot be "
                "concatenated (use stack)");
  Shape out_shape = first.shape();
  out_shape[d] = 0;
  std::vector<int64_t> sizes;
  for (size_t i = 0; i < tensors.size(); ++i) {
    const Tensor& t = tensors[i];
    detail::check_same_device(first, t, kOp);
    detail::check_same_dtype(first, t, kOp);
    bool same = t.dim() == first.dim();
    for (int64_t k = 0; same && k < t.dim(); ++k) same = k == d || t.size(k) == first.size(k);
    EMBER_CHECK_T(ShapeError, same, kOp, ": tensor ", i, " has shape ", shape_str(t.shape()),
                  ", tensor 0 has ", shape_str(first.shape()),
                  "; all sizes but dimension ", d, " must match");
    sizes.push_back(t.size(d));
    out_shape[d] += t.size(d);
  }
  Tensor out = detail::empty_on(out_shape, first.dtype(), first.device());
  {
    NoGradGuard no_grad;
    int64_t offset = 0;
    for (size_t i = 0; i < tensors.size(); ++i) {
      if (sizes[i] > 0) out.narrow(d, offset, sizes[i]).copy_(tensors[i].detach());
      offset += sizes[i];
    }
  }
  if (autograd::needs_grad(tensors)) {
    std::vector<bool> wants;
    for (const Tensor& t : tensors) wants.push_back(t.requires_grad());
    autograd::record(kOp, tensors, {out}, [d, sizes, wants](std::vector<Tensor>& g) {
      // g: the joined shape; each input gets its slab along d (a view)
      std::vector<Tensor> grads(sizes.size());
      int64_t offset = 0;
      for (size_t i = 0; i < sizes.size(); ++i) {
        if (wants[i]) grads[i] = g[0].narrow(d, offset, sizes[i]);
        offset += sizes[i];
      }
      return grads;
    });
  }
  return out;
}

Tensor stack(const std::vector<Tensor>& tensors, int64_t dim) {
  if (auto c = autocast::to_widest(tensors)) return stack(*c, dim);
  constexpr const char* kOp = "stack";
  const int64_t d = join_dim(tensors, dim, 1, kOp);
  for (size_t i = 1; i < tensors.size(); ++i) {
    // Checked here so that the error names stack, not the cat it is made of.
    detail::check_same_device(tensors[0], tensors[i], kOp);
    detail::check_same_dtype(tensors[0], tensors[i], kOp);
    EMBER_CHECK_T(ShapeError, tensors[i].shape() == tensors[0].shape(), kOp, ": tensor ", i,
                  " has shape ", shape_str(tensors[i].shape()), ", tensor 0 has ",
                  shape_str(tensors[0].shape()), "; all must have the same shape");
  }
  std::vector<Tensor> expanded;
  expanded.reserve(tensors.size());
  for (const Tensor& t : tensors) expanded.push_back(t.unsqueeze(d));
  return cat(expanded, d);
}

std::vector<Tensor> split(const Tensor& x, const std::vector<int64_t>& sizes, int64_t dim) {
  constexpr const char* kOp = "split";
  detail::check_defined(x, kOp);
  EMBER_CHECK_T(ShapeError, x.dim() > 0, kOp, ": cannot split a zero-dimensional tensor");
  const int64_t d = detail::wrap_dim(dim, x.dim(), kOp);
  int64_t total = 0;
  for (int64_t s : sizes) {
    EMBER_CHECK_T(ShapeError, s >= 0, kOp, ": negative size ", s, " in the split sizes");
    total += s;
  }
  EMBER_CHECK_T(ShapeError, total == x.size(d), kOp, ": sizes adding up to ", total,
                " cannot split dimension ", d, " of size ", x.size(d), " (shape ",
                shape_str(x.shape()), ")");
  std::vector<Tensor> pieces;
  {
    NoGradGuard no_grad;
    const Tensor base = x.detach();
    int64_t offset = 0;
    for (int64_t s : sizes) {
      pieces.push_back(base.narrow(d, offset, s));
      offset += s;
    }
  }
  if (autograd::needs_grad({&x})) {
    autograd::record(kOp, {x}, pieces, [d](std::vector<Tensor>& g) {
      // g[i]: piece i's shape (zeros where no gradient flowed) -> x: their join along d
      return std::vector<Tensor>{cat(g, d)};
    });
  }
  return pieces;
}

std::vector<Tensor> chunk(const Tensor& x, int64_t chunks, int64_t dim) {
  detail::check_defined(x, "chunk");
  EMBER_CHECK_T(ValueError, chunks > 0, "chunk: the number of chunks must be positive, got ",
                chunks);
  EMBER_CHECK_T(ShapeError, x.dim() > 0, "chunk: cannot chunk a zero-dimensional tensor");
  const int64_t d = detail::wrap_dim(dim, x.dim(), "chunk");
  const int64_t n = x.size(d);
  // PyTorch's rule: pieces of ceil(n / chunks), the last one smaller (so there may be
  // fewer than `chunks` pieces).
  const int64_t each = std::max<int64_t>((n + chunks - 1) / chunks, 1);
  std::vector<int64_t> sizes;
  for (int64_t off = 0; off < n; off += each) sizes.push_back(std::min(each, n - off));
  if (sizes.empty()) sizes.push_back(0);
  return split(x, sizes, d);
}

}  // namespace ember
