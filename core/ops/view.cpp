// View ops (share storage, differentiable): view/reshape, transpose, permute, narrow,
// slice, select, squeeze/unsqueeze, expand, flatten; and contiguous/clone, which copy.
#include <numeric>

#include "ember/core/autograd.h"
#include "ember/core/dispatch.h"
#include "ember/core/ops.h"
#include "ember/core/ops/op_utils.h"
#include "ember/kernels/cpu/elementwise.h"
#include "ember/kernels/cuda/elementwise.cuh"

namespace ember {

using detail::wrap_dim;

namespace {

Tensor make_view(const Tensor& base, Shape sizes, Shape strides, int64_t offset) {
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = base.impl().storage;
  impl->sizes = std::move(sizes);
  impl->strides = std::move(strides);
  impl->offset = offset;
  impl->dtype = base.dtype();
  return Tensor(std::move(impl));
}

// Backward of every view that only rearranges elements one-to-one into a new shape.
void record_reshape(const char* name, const Tensor& x, const Tensor& y) {
  if (!autograd::needs_grad({&x})) return;
  autograd::record(name, {x}, {y}, [shape = x.shape()](std::vector<Tensor>& g) {
    return std::vector<Tensor>{g[0].reshape(shape)};
  });
}

// Backward of views that pick a sub-region: the gradient lands in that region of zeros.
template <typename MakeRegion>
void record_region(const char* name, const Tensor& x, const Tensor& y, MakeRegion region) {
  if (!autograd::needs_grad({&x})) return;
  autograd::record(name, {x}, {y},
                   [shape = x.shape(), region](std::vector<Tensor>& g) {
                     Tensor full = zeros(shape, {.dtype = g[0].dtype(), .device = g[0].device()});
                     region(full).copy_(g[0]);
                     return std::vector<Tensor>{full};
                   });
}

// Resolves one -1 in `shape` against `numel`.
Shape infer_shape(const Shape& shape, int64_t numel, const char* op, const Shape& from) {
  Shape out = shape;
  int64_t infer = -1, known = 1;
  for (size_t i = 0; i < out.size(); ++i) {
    if (out[i] == -1) {
      EMBER_CHECK_T(ShapeError, infer < 0, op, ": only one dimension can be -1 in ",
                    shape_str(shape));
      infer = static_cast<int64_t>(i);
    } else {
      EMBER_CHECK_T(ShapeError, out[i] >= 0, op, ": invalid size ", out[i], " in ",
                    shape_str(shape));
      known *= out[i];
    }
  }
  if (infer >= 0) {
    EMBER_CHECK_T(ShapeError, known != 0 && numel % known == 0, op, ": shape ",
                  shape_str(shape), " is invalid for input of shape ", shape_str(from), " (",
                  numel, " elements)");
    out[infer] = numel / known;
  }
  EMBER_CHECK_T(ShapeError, shape_numel(out) == numel, op, ": shape ", shape_str(shape),
                " is invalid for input of shape ", shape_str(from), " (", numel, " elements)");
  return out;
}

// Puts in `out` the strides that let `new_shape` view a tensor of `sizes`/`strides`;
// false when the memory layout does not allow it (then reshape copies). Groups old dimensions into
// contiguous chunks and splits each chunk over the new dimensions that cover it.
bool view_strides(const Shape& sizes, const Shape& strides, const Shape& new_shape,
                  Shape* out) {
  const int64_t numel = shape_numel(sizes);
  out->assign(new_shape.size(), 1);
  // An empty tensor views as any shape of zero elements, and a rank-0 tensor (no strides
  // to group into chunks) as any shape of ones: both take contiguous strides.
  if (numel == 0 || sizes.empty()) {
    int64_t s = 1;
    for (int64_t i = static_cast<int64_t>(new_shape.size()) - 1; i >= 0; --i) {
      (*out)[i] = s;
      s *= std::max<int64_t>(new_shape[i], 1);
    }
    return true;
  }
  // A rank-0 tensor (one element) views as any all-ones shape; the walk below needs a dim.
  if (sizes.empty()) return true;
  int64_t view_d = static_cast<int64_t>(new_shape.size()) - 1;
  int64_t chunk_base_stride = strides.empty() ? 1 : strides.back();
  int64_t tensor_numel = 1, view_numel = 1;
  for (int64_t d = static_cast<int64_t>(sizes.size()) - 1; d >= 0; --d) {
    tensor_numel *= sizes[d];
    if (d == 0 || (sizes[d - 1] != 1 && strides[d - 1] != tensor_numel * chunk_base_stride)) {
      while (view_d >= 0 && (view_numel < tensor_numel || new_shape[view_d] == 1)) {
        (*out)[view_d] = view_numel * chunk_base_stride;
        view_numel *= new_shape[view_d];
        --view_d;
      }
      if (view_numel != tensor_numel) return false;
      if (d > 0) {
        chunk_base_stride = strides[d - 1];
        tensor_numel = 1;
        view_numel = 1;
      }
    }
  }
  return view_d == -1;
}

}  // namespace

Tensor Tensor::view(const Shape& shape) const {
  Shape target = infer_shape(shape, numel(), "view", this->shape());
  Shape strides;
  EMBER_CHECK_T(ShapeError, view_strides(this->shape(), this->strides(), target, &strides),
                "view: shape ", shape_str(target), " is not compatible with the input's size ",
                shape_str(this->shape()), " and strides ", shape_str(this->strides()),
                " (at least one dimension spans two contiguous subspaces); use reshape()");
  Tensor y = make_view(*this, target, strides, offset());
  record_reshape("view", *this, y);
  return y;
}

Tensor Tensor::reshape(const Shape& shape) const {
  Shape target = infer_shape(shape, numel(), "reshape", this->shape());
  Shape strides;
  if (view_strides(this->shape(), this->strides(), target, &strides)) {
    Tensor y = make_view(*this, target, strides, offset());
    record_reshape("reshape", *this, y);
    return y;
  }
  return contiguous().view(target);
}

Tensor Tensor::flatten(int64_t start_dim, int64_t end_dim) const {
  if (dim() == 0) return reshape({1});
  const int64_t s = wrap_dim(start_dim, dim(), "flatten");
  const int64_t e = wrap_dim(end_dim, dim(), "flatten");
  EMBER_CHECK_T(ShapeError, s <= e, "flatten: start_dim ", start_dim, " comes after end_dim ",
                end_dim, " (input ", shape_str(shape()), ")");
  Shape out(shape().begin(), shape().begin() + s);
  int64_t prod = 1;
  for (int64_t d = s; d <= e; ++d) prod *= size(d);
  out.push_back(prod);
  out.insert(out.end(), shape().begin() + e + 1, shape().end());
  return reshape(out);
}

Tensor Tensor::transpose(int64_t dim0, int64_t dim1) const {
  if (dim() == 0) return *this;
  const int64_t a = wrap_dim(dim0, dim(), "transpose");
  const int64_t b = wrap_dim(dim1, dim(), "transpose");
  Shape sz = shape(), st = strides();
  std::swap(sz[a], sz[b]);
  std::swap(st[a], st[b]);
  Tensor y = make_view(*this, sz, st, offset());
  if (autograd::needs_grad({this})) {
    autograd::record("transpose", {*this}, {y}, [a, b](std::vector<Tensor>& g) {
      return std::vector<Tensor>{g[0].transpose(a, b)};
    });
  }
  return y;
}

Tensor Tensor::t() const {
  EMBER_CHECK_T(ShapeError, dim() <= 2, "t(): expects a tensor of rank <= 2, got shape ",
                shape_str(shape()), " (use transpose(dim0, dim1))");
  return dim() < 2 ? *this : transpose(0, 1);
}

Tensor Tensor::permute(const std::vector<int64_t>& dims) const {
  EMBER_CHECK_T(ShapeError, static_cast<int64_t>(dims.size()) == dim(), "permute: got ",
                dims.size(), " dims for a tensor of shape ", shape_str(shape()));
  Shape sz(dims.size()), st(dims.size());
  std::vector<int64_t> inverse(dims.size(), -1);
  for (size_t i = 0; i < dims.size(); ++i) {
    const int64_t d = wrap_dim(dims[i], dim(), "permute");
    EMBER_CHECK_T(ShapeError, inverse[d] < 0, "permute: dimension ", d, " repeats in the order ",
                  shape_str(dims), " (input ", shape_str(shape()), ")");
    inverse[d] = static_cast<int64_t>(i);
    sz[i] = size(d);
    st[i] = stride(d);
  }
  Tensor y = make_view(*this, sz, st, offset());
  if (autograd::needs_grad({this})) {
    autograd::record("permute", {*this}, {y}, [inverse](std::vector<Tensor>& g) {
      return std::vector<Tensor>{g[0].permute(inverse)};
    });
  }
  return y;
}

Tensor Tensor::slice(int64_t dim_, int64_t start, int64_t end, int64_t step) const {
  const int64_t d = wrap_dim(dim_, dim(), "slice");
  EMBER_CHECK_T(ShapeError, dim() > 0, "slice: cannot slice a rank-0 tensor");
  EMBER_CHECK_T(ValueError, step > 0, "slice: step must be positive, got ", step);
  const int64_t n = size(d);
  auto clampi = [n](int64_t v) { return std::min(std::max(v < 0 ? v + n : v, int64_t{0}), n); };
  const int64_t s = clampi(start), e = std::max(clampi(end), clampi(start));
  Shape sz = shape(), st = strides();
  sz[d] = (e - s + step - 1) / step;
  st[d] *= step;
  Tensor y = make_view(*this, sz, st, offset() + s * stride(d));
  record_region("slice", *this, y, [d, s, e, step](const Tensor& full) {
    return full.slice(d, s, e, step);
  });
  return y;
}

Tensor Tensor::narrow(int64_t dim_, int64_t start, int64_t length) const {
  const int64_t d = wrap_dim(dim_, dim(), "narrow");
  const int64_t n = size(d);
  const int64_t s = start < 0 ? start + n : start;
  EMBER_CHECK_T(ShapeError, s >= 0 && length >= 0 && s + length <= n, "narrow: start ", start,
                " and length ", length, " are out of range for dimension ", d, " of size ", n,
                " (shape ", shape_str(shape()), ")");
  return slice(d, s, s + length);
}

Tensor Tensor::select(int64_t dim_, int64_t index) const {
  const int64_t d = wrap_dim(dim_, dim(), "select");
  const int64_t n = size(d);
  EMBER_CHECK_T(ShapeError, index >= -n && index < n, "select: index ", index,
                " is out of range for dimension ", d, " of size ", n);
  const int64_t i = index < 0 ? index + n : index;
  return narrow(d, i, 1).squeeze(d);
}

Tensor Tensor::squeeze() const {
  Shape sz, st;
  for (int64_t d = 0; d < dim(); ++d) {
    if (size(d) != 1) {
      sz.push_back(size(d));
      st.push_back(stride(d));
    }
  }
  Tensor y = make_view(*this, sz, st, offset());
  record_reshape("squeeze", *this, y);
  return y;
}

Tensor Tensor::squeeze(int64_t dim_) const {
  if (dim() == 0) return *this;
  const int64_t d = wrap_dim(dim_, dim(), "squeeze");
  if (size(d) != 1) return *this;
  Shape sz = shape(), st = strides();
  sz.erase(sz.begin() + d);
  st.erase(st.begin() + d);
  Tensor y = make_view(*this, sz, st, offset());
  record_reshape("squeeze", *this, y);
  return y;
}

Tensor Tensor::unsqueeze(int64_t dim_) const {
  const int64_t d = wrap_dim(dim_, dim() + 1, "unsqueeze");
  Shape sz = shape(), st = strides();
  const int64_t new_stride = d < dim() ? size(d) * stride(d) : 1;
  sz.insert(sz.begin() + d, 1);
  st.insert(st.begin() + d, new_stride);
  Tensor y = make_view(*this, sz, st, offset());
  record_reshape("unsqueeze", *this, y);
  return y;
}

Tensor Tensor::expand(const Shape& shape_) const {
  const int64_t nd = static_cast<int64_t>(shape_.size());
  EMBER_CHECK_T(ShapeError, nd >= dim(), "expand: the target shape ", shape_str(shape_),
                " has fewer dimensions than the tensor's ", shape_str(shape()));
  Shape sz(nd), st(nd);
  const int64_t lead = nd - dim();
  for (int64_t d = nd - 1; d >= 0; --d) {
    const int64_t td = d - lead;
    const int64_t want = shape_[d];
    if (td < 0) {
      EMBER_CHECK_T(ShapeError, want >= 0, "expand: size -1 is not allowed for a new leading "
                    "dimension (target ", shape_str(shape_), ")");
      sz[d] = want;
      st[d] = 0;
      continue;
    }
    const int64_t have = size(td);
    EMBER_CHECK_T(ShapeError, want >= -1, "expand: invalid size ", want, " at dimension ", d,
                  " (target ", shape_str(shape_), ")");
    if (want == -1 || want == have) {
      sz[d] = have;
      st[d] = stride(td);
    } else {
      EMBER_CHECK_T(ShapeError, have == 1, "expand: the expanded size ", want,
                    " must match the existing size ", have, " at dimension ", d,
                    " (tensor ", shape_str(shape()), ", target ", shape_str(shape_), ")");
      sz[d] = want;
      st[d] = 0;
    }
  }
  if (sz == shape()) return *this;
  Tensor y = make_view(*this, sz, st, offset());
  if (autograd::needs_grad({this})) {
    autograd::record("expand", {*this}, {y}, [shape = shape()](std::vector<Tensor>& g) {
      return std::vector<Tensor>{sum_to(g[0], shape)};
    });
  }
  return y;
}

Tensor Tensor::contiguous() const {
  if (is_contiguous()) return *this;
  return clone();
}

Tensor Tensor::contiguous(MemoryFormat format) const {
  if (format == MemoryFormat::Contiguous) return contiguous();
  EMBER_CHECK_T(ShapeError, dim() == 4, "contiguous(ChannelsLast): expected a 4-D [N, C, H, W] ",
                "tensor, got ", shape_str(shape()));
  if (is_contiguous(format)) return *this;
  // NHWC in memory is the row-major copy of the [N, H, W, C] permutation, seen back as
  // [N, C, H, W]; both permutes and the copy are differentiable.
  return permute({0, 2, 3, 1}).contiguous().permute({0, 3, 1, 2});
}

Tensor Tensor::clone() const {
  Tensor out = detail::empty_like(*this);
  const int64_t n = numel();
  if (is_contiguous()) {
    NoGradGuard no_grad;
    out.copy_(detach());
  } else {
    const kernels::StridedIndex idx = detail::strided_index(*this);
    dispatch::on_device(device(), [&](auto ctx) {
      strided_copy(ctx, element_size(), data_ptr(), idx, out.data_ptr(), n);
    });
  }
  if (autograd::needs_grad({this})) {
    autograd::record("clone", {*this}, {out}, [](std::vector<Tensor>& g) {
      return std::vector<Tensor>{g[0]};
    });
  }
  return out;
}

}  // namespace ember
