// clip_grad_norm: per-gradient partial norms reduced on the device, one clip coefficient,
// every gradient scaled by it — ember ops only, so it runs wherever the gradients live.
#include "ember/optim/clip_grad.h"

#include <cmath>
#include <optional>

#include "ember/core/autograd.h"
#include "ember/core/base/error.h"
#include "ember/core/ops.h"

namespace ember::optim {

namespace {

// `t` on `device` with `dtype` (float64 never goes to a GPU: the target is then float32).
Tensor to_target(const Tensor& t, Device device, DType dtype) {
  if (t.device() == device) return t.to(dtype);
  return t.cpu().to(dtype).to(device);
}

}  // namespace

Tensor clip_grad_norm(const std::vector<Tensor>& params, double max_norm, double norm_type) {
  EMBER_CHECK_T(ValueError, !std::isnan(max_norm), "clip_grad_norm: max_norm is NaN");
  const bool inf_norm = std::isinf(norm_type) && norm_type > 0;
  EMBER_CHECK_T(ValueError, inf_norm || (std::isfinite(norm_type) && norm_type > 0.0),
                "clip_grad_norm: norm_type must be > 0 or infinity, got ", norm_type);
  NoGradGuard no_grad;

  std::vector<Tensor> owners;
  for (const Tensor& p : params) {
    if (p.defined() && p.grad().defined()) owners.push_back(p);
  }
  if (owners.empty()) return scalar_tensor(0.0);
  const Device device = owners[0].grad().device();
  const DType dtype = owners[0].grad().dtype();

  // sum |g|^p over all gradients (max |g| for the infinity norm), one partial per tensor.
  Tensor total;
  for (const Tensor& p : owners) {
    const Tensor g = p.grad();
    if (g.numel() == 0) continue;
    Tensor part;
    if (inf_norm) {
      part = max(abs(g));
    } else if (norm_type == 1.0) {
      part = sum(abs(g));
    } else if (norm_type == 2.0) {
      part = sum(mul(g, g));
    } else {
      part = sum(pow(abs(g), norm_type));
    }
    part = to_target(part, device, dtype);
    total = !total.defined() ? part : (inf_norm ? maximum(total, part) : add(total, part));
  }
  if (!total.defined()) return zeros({}, {.dtype = dtype, .device = device});
  if (!inf_norm && norm_type == 2.0) {
    total = sqrt(total);
  } else if (!inf_norm && norm_type != 1.0) {
    total = pow(total, 1.0 / norm_type);
  }

  // min(1, max_norm / (total + 1e-6)); NaN stays NaN, as in PyTorch.
  const Tensor coef =
      clamp(div(full_like(total, max_norm), add(total, 1e-6)), std::nullopt, 1.0);
  for (const Tensor& p : owners) {
    Tensor g = p.grad();
    const Tensor scaled = mul(g, to_target(coef, g.device(), g.dtype()));
    if (g.is_contiguous()) {
      g.copy_(scaled);
    } else {
      // A broadcast (stride-0) gradient cannot be scaled in place element by element.
      Tensor(p).set_grad(scaled);
    }
  }
  return total;
}

}  // namespace ember::optim
