// Helpers shared by the op definitions in core/ops/ (internal): input checks with
// messages naming the op, and kernel index structs built from tensors. No CUDA header:
// ops reach the device through core/dispatch.h.
#pragma once

#include <string>

#include "ember/core/autograd.h"
#include "ember/core/base/error.h"
#include "ember/core/tensor.h"
#include "ember/kernels/op_kinds.h"

namespace ember::detail {

// "[32, 3] float32 cpu"
std::string describe(const Tensor& t);

void check_defined(const Tensor& t, const char* op, const char* what = "input");
void check_same_device(const Tensor& a, const Tensor& b, const char* op);
void check_same_dtype(const Tensor& a, const Tensor& b, const char* op);
// f32 anywhere, f64 on the CPU only.
void check_floating(const Tensor& t, const char* op);
void check_dtype(const Tensor& t, DType expected, const char* op, const char* what);
void check_rank(const Tensor& t, int64_t rank, const char* op, const char* what);

// Wraps a possibly negative dim into [0, rank), or ShapeError naming the op.
int64_t wrap_dim(int64_t dim, int64_t rank, const char* op);

// Indexing for `a` and `b` read at their strides, broadcast to `out_shape`. Collapses to
// a flat 1-D index when both are contiguous with the output's shape.
kernels::BroadcastIndex broadcast_index(const Shape& out_shape, const Tensor& a,
                                        const Tensor& b);
kernels::StridedIndex strided_index(const Tensor& t);

// [outer, n, inner] around `dim` of a contiguous shape.
struct ReduceLayout {
  int64_t outer = 1, n = 1, inner = 1;
};
ReduceLayout reduce_layout(const Shape& shape, int64_t dim);

// Empty tensor like `t` (same shape, dtype, device) and variants.
Tensor empty_like(const Tensor& t);
// Elementwise ops run over memory in order: `t` itself when it is dense row-major or dense
// channels-last, else a row-major copy; and an uninitialized tensor laid out like such a
// dense `t` (so a channels-last input gives a channels-last output).
Tensor dense(const Tensor& t);
Tensor empty_dense_like(const Tensor& t);
Tensor empty_on(const Shape& shape, DType dtype, Device device);

// Runs a UnaryOp (float32, or float64 on the CPU) and records its backward rule.
Tensor unary(const Tensor& x, kernels::UnaryOp op, kernels::UnaryParams p, const char* name);

// Refuses an in-place change to a leaf that requires grad while grad mode is on, and
// bumps the version counter (see Note [Saved tensors and versions]).
void prepare_inplace(const Tensor& t, const char* op);

}  // namespace ember::detail
