// Loss modules over the fused loss ops.
#include "ember/layers/losses.h"

namespace ember::loss {

namespace {

// A [N, 1] output meets [N] targets (and vice versa) as Keras allows.
Tensor match_target(const Tensor& output, const Tensor& target) {
  if (output.shape() == target.shape()) return target;
  if (output.numel() == target.numel() && output.dim() >= 1 && target.dim() >= 1 &&
      output.size(0) == target.size(0)) {
    return target.reshape(output.shape());
  }
  return target;
}

Tensor soft_target_cross_entropy(const Tensor& log_probs, const Tensor& target, const char* who) {
  EMBER_CHECK_T(ShapeError, log_probs.dim() == 2 && target.shape() == log_probs.shape(), who,
                ": output ", shape_str(log_probs.shape()), " and target ", shape_str(target.shape()),
                " must both be [N, C] (use integer labels [N] with the sparse form)");
  // mean over rows of -sum_c t * log p
  return neg(mean(sum(mul(target.to(log_probs.dtype()), log_probs), {1})));
}

}  // namespace

Tensor CrossEntropy::operator()(const Tensor& output, const Tensor& target) const {
  if (target.defined() && is_floating(target.dtype()) && target.dim() == 2) {
    EMBER_CHECK(options_.label_smoothing == 0.0 && options_.ignore_index == -100,
                "CrossEntropy: label_smoothing and ignore_index apply to class-index targets only");
    return soft_target_cross_entropy(log_softmax(output, 1), target, "CrossEntropy");
  }
  return cross_entropy(output, target, options_);
}

Tensor CategoricalCrossEntropy::operator()(const Tensor& output, const Tensor& target) const {
  const char* who = "CategoricalCrossEntropy";
  if (options_.from_logits) return soft_target_cross_entropy(log_softmax(output, 1), target, who);
  EMBER_CHECK_T(ShapeError, output.dim() == 2, who, ": expected probabilities [N, C], got ",
                shape_str(output.shape()));
  // As Keras: rows are rescaled to sum to 1, then clipped away from 0 (epsilon 1e-7) before the log.
  Tensor probs = div(output, sum(output, {1}, true));
  Tensor logp = log(clamp(probs, 1e-7, 1.0 - 1e-7));
  return soft_target_cross_entropy(logp, target, who);
}

Tensor SparseCategoricalCrossEntropy::operator()(const Tensor& output, const Tensor& target) const {
  if (options_.from_logits) return cross_entropy(output, target);
  return nll_loss(log(clamp(output, 1e-7, 1.0 - 1e-7)), target);
}

Tensor MSE::operator()(const Tensor& o, const Tensor& t) const {
  return mse_loss(o, match_target(o, t).to(o.dtype()), r_);
}

Tensor L1::operator()(const Tensor& o, const Tensor& t) const {
  return l1_loss(o, match_target(o, t).to(o.dtype()), r_);
}

Tensor BinaryCrossEntropy::operator()(const Tensor& o, const Tensor& t) const {
  Tensor target = match_target(o, t).to(o.dtype());
  return options_.from_logits ? binary_cross_entropy_with_logits(o, target)
                              : binary_cross_entropy(o, target);
}

}  // namespace ember::loss
