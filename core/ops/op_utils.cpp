// Shared checks and index builders for core/ops/.
#include "ember/core/ops/op_utils.h"

namespace ember::detail {

std::string describe(const Tensor& t) {
  if (!t.defined()) return "(undefined)";
  return str_cat(shape_str(t.shape()), " ", dtype_name(t.dtype()), " ", t.device().str());
}

void check_defined(const Tensor& t, const char* op, const char* what) {
  EMBER_CHECK_T(ValueError, t.defined(), op, ": ", what, " is an undefined tensor");
}

void check_same_device(const Tensor& a, const Tensor& b, const char* op) {
  EMBER_CHECK_T(DeviceError, a.device() == b.device(), op,
                ": expected all tensors on the same device, got ", describe(a), " and ",
                describe(b), " (move one with .to(device))");
}

void check_same_dtype(const Tensor& a, const Tensor& b, const char* op) {
  EMBER_CHECK_T(DTypeError, a.dtype() == b.dtype(), op, ": dtypes differ: ", describe(a),
                " and ", describe(b), " (convert one with .to(dtype))");
}

void check_floating(const Tensor& t, const char* op) {
  check_defined(t, op);
  EMBER_CHECK_T(DTypeError, is_floating(t.dtype()), op,
                ": expected a floating-point tensor (float32, float64, float16 or bfloat16), "
                "got ", describe(t));
  EMBER_CHECK_T(DTypeError, !(t.dtype() == kFloat64 && t.is_cuda()), op,
                ": float64 is supported on the CPU only, got ", describe(t));
}

void check_dtype(const Tensor& t, DType expected, const char* op, const char* what) {
  check_defined(t, op, what);
  EMBER_CHECK_T(DTypeError, t.dtype() == expected, op, ": ", what, " must be ",
                dtype_name(expected), ", got ", describe(t));
}

void check_rank(const Tensor& t, int64_t rank, const char* op, const char* what) {
  check_defined(t, op, what);
  EMBER_CHECK_T(ShapeError, t.dim() == rank, op, ": ", what, " must have ", rank,
                " dimension(s), got shape ", shape_str(t.shape()));
}

int64_t wrap_dim(int64_t dim, int64_t rank, const char* op) {
  const int64_t r = rank == 0 ? 1 : rank;  // rank 0 accepts dim 0 and -1, like PyTorch
  EMBER_CHECK_T(ShapeError, dim >= -r && dim < r, op, ": dimension ", dim,
                " is out of range for a tensor of rank ", rank, " (expected [", -r, ", ",
                r - 1, "])");
  return dim < 0 ? dim + r : dim;
}

kernels::BroadcastIndex broadcast_index(const Shape& out_shape, const Tensor& a,
                                        const Tensor& b) {
  kernels::BroadcastIndex idx;
  if (a.shape() == out_shape && b.shape() == out_shape && a.is_contiguous() &&
      b.is_contiguous()) {
    idx.ndim = 1;
    idx.sizes[0] = shape_numel(out_shape);
    idx.stride_a[0] = 1;
    idx.stride_b[0] = 1;
    return idx;
  }
  const int64_t nd = static_cast<int64_t>(out_shape.size());
  EMBER_CHECK_T(ShapeError, nd <= kernels::kMaxDims, "elementwise op: rank ", nd,
                " exceeds the maximum of ", kernels::kMaxDims);
  idx.ndim = static_cast<int>(nd);
  auto fill = [&](const Tensor& t, int64_t* strides) {
    const int64_t lead = nd - t.dim();
    for (int64_t d = 0; d < nd; ++d) {
      const int64_t td = d - lead;
      strides[d] = (td < 0 || t.size(td) == 1) ? 0 : t.stride(td);
    }
  };
  for (int64_t d = 0; d < nd; ++d) idx.sizes[d] = out_shape[d];
  fill(a, idx.stride_a);
  fill(b, idx.stride_b);
  return idx;
}

kernels::StridedIndex strided_index(const Tensor& t) {
  kernels::StridedIndex idx;
  EMBER_CHECK_T(ShapeError, t.dim() <= kernels::kMaxDims, "copy: rank ", t.dim(),
                " exceeds the maximum of ", kernels::kMaxDims);
  idx.ndim = static_cast<int>(t.dim());
  for (int64_t d = 0; d < t.dim(); ++d) {
    idx.sizes[d] = t.size(d);
    idx.strides[d] = t.stride(d);
  }
  return idx;
}

ReduceLayout reduce_layout(const Shape& shape, int64_t dim) {
  ReduceLayout l;
  for (int64_t d = 0; d < static_cast<int64_t>(shape.size()); ++d) {
    if (d < dim) l.outer *= shape[d];
    else if (d == dim) l.n = shape[d];
    else l.inner *= shape[d];
  }
  return l;
}

Tensor empty_like(const Tensor& t) {
  return Tensor::empty(t.shape(), {.dtype = t.dtype(), .device = t.device()});
}

Tensor dense(const Tensor& t) {
  return t.suggest_memory_format() == MemoryFormat::ChannelsLast ? t : t.contiguous();
}

Tensor empty_dense_like(const Tensor& t) {
  if (t.suggest_memory_format() != MemoryFormat::ChannelsLast) return empty_like(t);
  return empty_on({t.size(0), t.size(2), t.size(3), t.size(1)}, t.dtype(), t.device())
      .permute({0, 3, 1, 2});
}

Tensor empty_on(const Shape& shape, DType dtype, Device device) {
  return Tensor::empty(shape, {.dtype = dtype, .device = device});
}

void prepare_inplace(const Tensor& t, const char* op) {
  EMBER_CHECK_T(ValueError, !(grad_mode_enabled() && t.requires_grad() && t.is_leaf()), op,
                ": a leaf tensor that requires grad cannot be modified in place while grad "
                "mode is on (wrap the update in NoGradGuard, as optimizers do)");
  EMBER_CHECK_T(ValueError, !(grad_mode_enabled() && t.requires_grad()), op,
                ": in-place ops on tensors that are part of a graph are not differentiable; "
                "use the out-of-place form");
  t.impl().storage->bump_version();
}

}  // namespace ember::detail
