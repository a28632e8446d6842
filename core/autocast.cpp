// Autocast state, the per-region cache of weight casts, and the casting hooks the ops
// call (core/autocast.h, Note [Autocast]).
#include "ember/core/autocast.h"

#include <cstdint>
#include <algorithm>
#include <map>
#include <tuple>

#include "ember/core/base/error.h"

namespace ember {

namespace {

// A weight's identity for the cache: storage, version (an in-place update such as the
// optimizer's makes a new key), where its data starts, its shape, and the target dtype.
using CacheKey = std::tuple<const void*, uint64_t, const void*, Shape, DType>;

struct AutocastState {
  bool enabled = false;
  DType dtype = kBFloat16;
  int depth = 0;  // guards alive on this thread
  std::map<CacheKey, Tensor> cache;
};

thread_local AutocastState t_state;

bool is_16bit(const Tensor& t) { return t.defined() && is_reduced_float(t.dtype()); }

Tensor cast(const Tensor& t, DType dtype) {
  if (!t.defined() || !is_floating(t.dtype()) || t.dtype() == dtype) return t;
  const bool cacheable = t.requires_grad() && t.is_leaf();
  if (!cacheable) return t.to(dtype);
  const CacheKey key{t.impl().storage.get(), t.impl().storage->version(), t.data_ptr(),
                     t.shape(), dtype};
  auto it = t_state.cache.find(key);
  if (it != t_state.cache.end()) return it->second;
  Tensor c = t.to(dtype);
  t_state.cache.emplace(key, c);
  return c;
}

// The inputs cast to `dtype` where needed; nothing when none needs it.
std::optional<std::vector<Tensor>> cast_all(const std::vector<Tensor>& inputs, DType dtype,
                                            bool only_16bit) {
  bool any = false;
  for (const Tensor& t : inputs) {
    if (!t.defined() || !is_floating(t.dtype()) || t.dtype() == dtype) continue;
    if (only_16bit && !is_reduced_float(t.dtype())) continue;
    any = true;
  }
  if (!any) return std::nullopt;
  std::vector<Tensor> out;
  out.reserve(inputs.size());
  for (const Tensor& t : inputs) {
    out.push_back(only_16bit && !is_16bit(t) ? t : cast(t, dtype));
  }
  return out;
}

}  // namespace

AutocastGuard::AutocastGuard(DType dtype, bool enabled)
    : prev_enabled_(t_state.enabled), prev_dtype_(t_state.dtype) {
  EMBER_CHECK_T(DTypeError, dtype == kFloat16 || dtype == kBFloat16,
                "AutocastGuard: the dtype must be float16 or bfloat16, got ", dtype_name(dtype));
  t_state.enabled = enabled;
  t_state.dtype = dtype;
  ++t_state.depth;
}

AutocastGuard::~AutocastGuard() {
  t_state.enabled = prev_enabled_;
  t_state.dtype = prev_dtype_;
  if (--t_state.depth == 0) t_state.cache.clear();
}

bool autocast_enabled() { return t_state.enabled; }
DType autocast_dtype() { return t_state.dtype; }

namespace autocast {

std::optional<std::vector<Tensor>> to_lower(const std::vector<Tensor>& inputs) {
  if (!t_state.enabled) return std::nullopt;
  return cast_all(inputs, t_state.dtype, /*only_16bit=*/false);
}

std::optional<std::vector<Tensor>> to_float32(const std::vector<Tensor>& inputs) {
  if (!t_state.enabled) return std::nullopt;
  return cast_all(inputs, kFloat32, /*only_16bit=*/true);
}

std::optional<std::vector<Tensor>> to_widest(const std::vector<Tensor>& inputs) {
  if (!t_state.enabled) return std::nullopt;
  // Widest: float64 > float32 > float16 = bfloat16 (float16 with bfloat16 gives float32,
  // the smallest type holding both, as PyTorch's promotion does).
  int widest = -1;
  bool has_f16 = false, has_bf16 = false;
  for (const Tensor& t : inputs) {
    if (!t.defined() || !is_floating(t.dtype())) continue;
    const DType d = t.dtype();
    has_f16 = has_f16 || d == kFloat16;
    has_bf16 = has_bf16 || d == kBFloat16;
    widest = std::max(widest, d == kFloat64 ? 2 : d == kFloat32 ? 1 : 0);
  }
  if (widest < 0) return std::nullopt;
  DType target = widest == 2 ? kFloat64 : kFloat32;
  if (widest == 0) {
    if (!(has_f16 && has_bf16)) return std::nullopt;
    target = kFloat32;
  }
  return cast_all(inputs, target, /*only_16bit=*/false);
}

}  // namespace autocast

}  // namespace ember
