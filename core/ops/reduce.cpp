// Reductions: sum, mean (all elements or over dims), max/min (values and indices),
// argmax/argmin.
#include <algorithm>
#include <string>

#include "ember/core/autocast.h"
#include "ember/core/autograd.h"
#include "ember/core/dispatch.h"
#include "ember/core/ops.h"
#include "ember/core/ops/op_utils.h"
#include "ember/kernels/cpu/reduce.h"
#include "ember/kernels/cuda/reduce.cuh"

namespace ember {

using kernels::ReduceOp;

namespace {

// The element types the reduce kernels compute in: floats in their own dtype, integers and
// bools as int64 (see reducible).
constexpr dispatch::Types<float, double, int64_t, Half, BFloat16> kReducible{};

// Runs one reduction kernel over the middle axis of `xc` (contiguous) viewed as
// [outer, n, inner]; returns values with `out_shape` (and indices when asked).
Tensor run_reduce(const Tensor& xc, ReduceOp op, detail::ReduceLayout l, const Shape& out_shape,
                  Tensor* indices, const char* name) {
  Tensor out = detail::empty_on(out_shape, xc.dtype(), xc.device());
  int64_t* idx = nullptr;
  if (indices != nullptr) {
    *indices = detail::empty_on(out_shape, kInt64, xc.device());
    idx = indices->data<int64_t>();
  }
  dispatch::run(xc, kReducible, name, [&]<typename T>(auto ctx) {
    reduce(ctx, op, xc.data<T>(), out.data<T>(), idx, l.outer, l.n, l.inner);
  });
  return out;
}

// Floats reduce in their own dtype; integers and bools are summed as int64.
Tensor reducible(const Tensor& x, const char* op, bool allow_int) {
  detail::check_defined(x, op);
  if (is_floating(x.dtype())) {
    detail::check_floating(x, op);
    return x;
  }
  EMBER_CHECK_T(DTypeError, allow_int, op, ": expected a floating-point tensor, got ",
                detail::describe(x));
  return x.to(kInt64);
}

std::vector<int64_t> normalize_dims(const std::vector<int64_t>& dims, int64_t rank,
                                    const char* op) {
  std::vector<int64_t> out;
  for (int64_t d : dims) out.push_back(detail::wrap_dim(d, rank, op));
  std::sort(out.begin(), out.end());
  const auto twice = std::adjacent_find(out.begin(), out.end());
  if (twice != out.end()) {
    std::string list;
    for (int64_t d : dims) list += (list.empty() ? "" : ", ") + std::to_string(d);
    throw ShapeError(detail::str_cat(op, ": dimension ", *twice, " appears more than once in [",
                                     list, "] (a tensor of rank ", rank, ")"));
  }
  return out;
}

Shape reduced_shape(const Shape& shape, const std::vector<int64_t>& dims, bool keepdim) {
  Shape out;
  for (int64_t d = 0; d < static_cast<int64_t>(shape.size()); ++d) {
    const bool reduced = std::find(dims.begin(), dims.end(), d) != dims.end();
    if (!reduced) out.push_back(shape[d]);
    else if (keepdim) out.push_back(1);
  }
  return out;
}

// Sum or mean over `dims` (sorted) without recording: one kernel per run of adjacent
// reduced dims (merged into one, as the input is contiguous), last run first.
Tensor sum_mean_forward(const Tensor& x, const std::vector<int64_t>& dims_in, bool mean,
                        const char* name) {
  Tensor cur = x.contiguous();
  Shape merged;
  std::vector<int64_t> dims;
  for (int64_t d = 0; d < cur.dim(); ++d) {
    const bool reduced = std::binary_search(dims_in.begin(), dims_in.end(), d);
    if (reduced && d > 0 && std::binary_search(dims_in.begin(), dims_in.end(), d - 1)) {
      merged.back() *= cur.size(d);
      continue;
    }
    if (reduced) dims.push_back(static_cast<int64_t>(merged.size()));
    merged.push_back(cur.size(d));
  }
  cur = cur.view(merged);
  for (auto it = dims.rbegin(); it != dims.rend(); ++it) {
    const auto l = detail::reduce_layout(cur.shape(), *it);
    Shape keep = cur.shape();
    keep[*it] = 1;
    cur = run_reduce(cur, mean ? ReduceOp::Mean : ReduceOp::Sum, l, keep, nullptr, name);
  }
  return cur;
}

Tensor sum_mean(const Tensor& x_in, const std::vector<int64_t>& dims_in, bool keepdim, bool mean,
                bool all) {
  if (auto c = autocast::to_float32({x_in})) return sum_mean((*c)[0], dims_in, keepdim, mean, all);
  const char* name = mean ? "mean" : "sum";
  // An empty dim list reduces everything, as PyTorch's sum(x, dim=[]) does (reducing
  // nothing would make the result an alias of x's storage).
  all = all || dims_in.empty();
  Tensor x = reducible(x_in, name, !mean);
  std::vector<int64_t> dims;
  if (all) {
    for (int64_t d = 0; d < x.dim(); ++d) dims.push_back(d);
  } else {
    dims = normalize_dims(dims_in, x.dim(), name);
  }
  Tensor out;
  if (x.dim() == 0) {
    out = x.clone().detach();
  } else if (all) {
    const int64_t n = x.numel();
    out = run_reduce(x.contiguous(), mean ? ReduceOp::Mean : ReduceOp::Sum, {1, n, 1},
                     keepdim ? Shape(x.dim(), 1) : Shape{}, nullptr, name);
  } else {
    out = sum_mean_forward(x, dims, mean, name)
              .reshape(reduced_shape(x.shape(), dims, keepdim));
  }
  if (autograd::needs_grad({&x})) {
    int64_t count = 1;
    for (int64_t d : dims) count *= x.size(d);
    autograd::record(name, {x}, {out},
                     [mean, count, shape = x.shape(),
                      keep_shape = reduced_shape(x.shape(), dims, true)](std::vector<Tensor>& g) {
                       // g: reduced shape -> broadcast back over the reduced dims
                       Tensor gx = g[0].reshape(keep_shape).expand(shape);
                       if (mean) gx = mul(gx.contiguous(), 1.0 / static_cast<double>(count));
                       return std::vector<Tensor>{gx};
                     });
  }
  return out;
}

// Max/min over one dim (or everything, when dim < 0 and `all`): values and indices.
ValuesIndices extremum(const Tensor& x_in, int64_t dim, bool keepdim, bool is_max, bool all,
                       bool want_grad) {
  // argmax/argmin (no values wanted) name themselves in their errors.
  const char* name = want_grad ? (is_max ? "max" : "min") : (is_max ? "argmax" : "argmin");
  Tensor x = reducible(x_in, name, true);
  if (!is_floating(x_in.dtype())) x = x_in.to(kInt64);
  Tensor xc = x.contiguous();
  detail::ReduceLayout l;
  Shape out_shape;
  // A rank-0 input still has its dim checked (0 and -1 are valid, as in PyTorch).
  if (!all) detail::wrap_dim(dim, x.dim(), name);
  if (all || x.dim() == 0) {
    l = {1, x.numel(), 1};
    out_shape = keepdim ? Shape(x.dim(), 1) : Shape{};
  } else {
    const int64_t d = detail::wrap_dim(dim, x.dim(), name);
    l = detail::reduce_layout(x.shape(), d);
    out_shape = reduced_shape(x.shape(), {d}, keepdim);
  }
  EMBER_CHECK_T(ShapeError, l.n > 0, name, "(): cannot reduce over an empty dimension (input ",
                detail::describe(x_in), ")");
  ValuesIndices r;
  r.values =
      run_reduce(xc, is_max ? ReduceOp::Max : ReduceOp::Min, l, out_shape, &r.indices, name);
  if (!is_floating(x_in.dtype())) r.values = r.values.to(x_in.dtype());
  if (want_grad && autograd::needs_grad({&x_in})) {
    autograd::record(name, {x_in}, {r.values},
                     [l, name, shape = x.shape(), si = autograd::SavedTensor(r.indices, name)](
                         std::vector<Tensor>& g) {
                       // g: reduced shape; the gradient goes to the chosen index only
                       Tensor idx = si.unpack();
                       Tensor gy = g[0].contiguous();
                       Tensor gx = detail::empty_on(shape, gy.dtype(), gy.device());
                       constexpr auto kTypes = dispatch::kFloatingAndHalf;
                       dispatch::run(gy, kTypes, name, [&]<typename T>(auto ctx) {
                         reduce_index_backward(ctx, idx.data<int64_t>(), gy.data<T>(),
                                               gx.data<T>(), l.outer, l.n, l.inner);
                       });
                       return std::vector<Tensor>{gx};
                     });
  }
  return r;
}

}  // namespace

Tensor sum(const Tensor& x) { return sum_mean(x, {}, false, false, true); }
Tensor sum(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim) {
  return sum_mean(x, dims, keepdim, false, false);
}
Tensor mean(const Tensor& x) { return sum_mean(x, {}, false, true, true); }
Tensor mean(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim) {
  return sum_mean(x, dims, keepdim, true, false);
}

Tensor max(const Tensor& x) { return extremum(x, 0, false, true, true, true).values; }
Tensor min(const Tensor& x) { return extremum(x, 0, false, false, true, true).values; }
ValuesIndices max(const Tensor& x, int64_t dim, bool keepdim) {
  return extremum(x, dim, keepdim, true, false, true);
}
ValuesIndices min(const Tensor& x, int64_t dim, bool keepdim) {
  return extremum(x, dim, keepdim, false, false, true);
}
Tensor argmax(const Tensor& x, int64_t dim, bool keepdim) {
  return extremum(x, dim, keepdim, true, false, false).indices;
}
Tensor argmin(const Tensor& x, int64_t dim, bool keepdim) {
  return extremum(x, dim, keepdim, false, false, false).indices;
}

}  // namespace ember
