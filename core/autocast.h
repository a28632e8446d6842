// Autocast (PyTorch's torch.autocast): inside an AutocastGuard region, matmul, linear,
// conv2d and the recurrent ops run in float16 or bfloat16 while the numerically sensitive
// ops run in float32, with the model's weights left in float32. See Note [Autocast].
#pragma once

#include <optional>
#include <vector>

#include "ember/core/base/export.h"
#include "ember/core/dtype.h"
#include "ember/core/tensor.h"

namespace ember {

// Note [Autocast]
// The state is per thread, as PyTorch's: a region covers the ops its thread runs (the
// forward pass and the loss; backward is run after the region ends, and each op's
// backward then runs in the dtypes its forward used). In a region of dtype D (kFloat16 or
// kBFloat16), on the CPU and on GPUs:
//  - matmul, linear, conv2d and rnn (the whole recurrent stack: input, states and
//    weights; on a GPU one cuDNN call for float16) cast their floating inputs to D;
//  - softmax, log_softmax, every loss, batch_norm, layer_norm, exp, log, pow, sum and
//    mean cast 16-bit inputs up to float32 and return float32;
//  - add, sub, mul, div, maximum, minimum and cat with inputs of different floating
//    dtypes cast them to the widest;
//  - every other op runs in its inputs' dtype.
// The casts are differentiable, so gradients reach float32 weights in float32. The cast
// of a tensor that requires grad and is a leaf (a weight) is cached for the region, keyed
// by its storage, version, offset and shape, so a weight used at every step of an RNN is
// converted once; the cache is cleared when the outermost guard ends. Regions nest: an
// inner guard may change the dtype or turn autocast off (enabled = false), and the
// previous state comes back when it ends.
class EMBER_API AutocastGuard {
 public:
  explicit AutocastGuard(DType dtype, bool enabled = true);
  ~AutocastGuard();
  AutocastGuard(const AutocastGuard&) = delete;
  AutocastGuard& operator=(const AutocastGuard&) = delete;

 private:
  bool prev_enabled_;
  DType prev_dtype_;
};

// Whether this thread is in an enabled autocast region, and its dtype.
EMBER_API bool autocast_enabled();
EMBER_API DType autocast_dtype();

// The hooks the ops call first (one call per op, Note [Autocast]): each returns the op's
// inputs cast as the policy says, or nothing when the op runs on its inputs as given
// (outside a region, or when no input needs a cast). Undefined and non-floating tensors
// pass through.
namespace autocast {
// To the region's dtype (matmul, linear, conv2d).
EMBER_API std::optional<std::vector<Tensor>> to_lower(const std::vector<Tensor>& inputs);
// float16/bfloat16 up to float32 (softmax, losses, norms, exp, log, pow, sum, mean).
EMBER_API std::optional<std::vector<Tensor>> to_float32(const std::vector<Tensor>& inputs);
// To the widest floating dtype among them, when they differ (binary ops, cat).
EMBER_API std::optional<std::vector<Tensor>> to_widest(const std::vector<Tensor>& inputs);
}  // namespace autocast

}  // namespace ember
