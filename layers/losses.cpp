// Loss modules over the fused loss ops.
#include "ember/layers/losses.h"

#include <sstream>
#include <vector>

#include "ember/core/autograd.h"

namespace ember::loss {

namespace {

// "3 of 64 labels are outside ...: 10 at row 5, -1 at row 17, 12 at row 40", or "" when
// every label is a class of `output` (or ignore_index), so the op's own error stands.
std::string describe_bad_labels(const Tensor& output, const Tensor& target, int64_t ignore_index) {
  if (!output.defined() || !target.defined() || output.dim() != 2 || target.dim() != 1 ||
      target.dtype() != kInt64 || target.size(0) != output.size(0)) {
    return "";
  }
  constexpr size_t kShown = 5;
  const int64_t classes = output.size(1);
  const std::vector<int64_t> labels = target.detach().cpu().contiguous().to_vector<int64_t>();
  std::vector<size_t> bad;
  for (size_t i = 0; i < labels.size(); ++i) {
    const int64_t l = labels[i];
    if (l != ignore_index && (l < 0 || l >= classes)) bad.push_back(i);
  }
  if (bad.empty()) return "";
  std::ostringstream os;
  os << bad.size() << " of " << labels.size() << " labels are outside the class range [0, "
     << classes << ") of output " << shape_str(output.shape()) << ": ";
  for (size_t k = 0; k < bad.size() && k < kShown; ++k) {
    os << (k ? ", " : "") << "label " << labels[bad[k]] << " at row " << bad[k];
  }
  if (bad.size() > kShown) os << ", ... (the first " << kShown << " shown)";
  os << " (rows of the batch; a label is a class index 0 to " << classes - 1;
  if (ignore_index < 0 || ignore_index >= classes) os << ", or ignore_index " << ignore_index;
  os << ")";
  return os.str();
}

// Runs a class-index loss; when the op refuses the labels, names the bad ones (the op only
// counts them on the device; reading them back happens on this error path alone).
template <typename Loss>
Tensor with_label_details(const char* who, const Tensor& output, const Tensor& target,
                          int64_t ignore_index, Loss loss) {
  try {
    return loss();
  } catch (const ShapeError&) {
    const std::string details = describe_bad_labels(output, target, ignore_index);
    if (details.empty()) throw;
    throw ShapeError(std::string(who) + ": " + details);
  }
}

// A [N, 1] output meets [N] targets (and vice versa) as Keras allows.
Tensor match_target(const Tensor& output, const Tensor& target) {
  if (output.shape() == target.shape()) return target;
  if (output.numel() == target.numel() && output.dim() >= 1 && target.dim() >= 1 &&
      output.size(0) == target.size(0)) {
    return target.reshape(output.shape());
  }
  return target;
}

// `weight` (one per class, optional) scales each class's term, as PyTorch does for
// probability targets; the mean is still over the N rows.
Tensor soft_target_cross_entropy(const Tensor& log_probs, const Tensor& target, const char* who,
                                 const Tensor& weight = Tensor()) {
  EMBER_CHECK_T(ShapeError, log_probs.dim() == 2 && target.shape() == log_probs.shape(), who,
                ": output ", shape_str(log_probs.shape()), " and target ",
                shape_str(target.shape()),
                " must both be [N, C] (use integer labels [N] with the sparse form)");
  Tensor t = target.to(log_probs.dtype());
  if (weight.defined()) {
    const int64_t C = log_probs.size(1);
    EMBER_CHECK_T(DTypeError, weight.dtype() == log_probs.dtype(), who,
                  ": weight must have the output's dtype, got weight ",
                  dtype_name(weight.dtype()), " and output ", dtype_name(log_probs.dtype()),
                  " (convert with .to(", dtype_name(log_probs.dtype()), "))");
    EMBER_CHECK_T(DeviceError, weight.device() == log_probs.device(), who,
                  ": weight must be on the output's device, got weight on ",
                  weight.device().str(), " and output on ", log_probs.device().str(),
                  " (move it with .to(device))");
    EMBER_CHECK_T(ValueError, !(weight.requires_grad() && grad_mode_enabled()), who,
                  ": weight requires grad, but no gradient flows into it (as in PyTorch); pass "
                  "weight.detach()");
    EMBER_CHECK_T(ShapeError, weight.dim() == 1 && weight.size(0) == C, who, ": weight ",
                  shape_str(weight.shape()), " must be [", C, "], one per class of output ",
                  shape_str(log_probs.shape()));
    t = mul(t, weight.detach());
  }
  // mean over rows of -sum_c w_c t * log p
  return neg(mean(sum(mul(t, log_probs), {1})));
}

}  // namespace

Tensor CrossEntropy::operator()(const Tensor& output, const Tensor& target) const {
  if (target.defined() && is_floating(target.dtype()) && target.dim() == 2) {
    EMBER_CHECK_T(
        ValueError, options_.label_smoothing == 0.0 && options_.ignore_index == -100,
        "CrossEntropy: label_smoothing and ignore_index apply to class-index targets only");
    return soft_target_cross_entropy(log_softmax(output, 1), target, "CrossEntropy",
                                     options_.weight);
  }
  return with_label_details("CrossEntropy", output, target, options_.ignore_index,
                            [&] { return cross_entropy(output, target, options_); });
}

Tensor NLL::operator()(const Tensor& output, const Tensor& target) const {
  return with_label_details("NLL", output, target, options_.ignore_index,
                            [&] { return nll_loss(output, target, options_); });
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
  const char* who = "SparseCategoricalCrossEntropy";
  const int64_t ignore_index = CrossEntropyOptions{}.ignore_index;
  if (options_.from_logits) {
    return with_label_details(who, output, target, ignore_index,
                              [&] { return cross_entropy(output, target); });
  }
  return with_label_details(who, output, target, ignore_index,
                            [&] { return nll_loss(log(clamp(output, 1e-7, 1.0 - 1e-7)), target); });
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

Tensor BCEWithLogits::operator()(const Tensor& o, const Tensor& t) const {
  return binary_cross_entropy_with_logits(o, match_target(o, t).to(o.dtype()), options_);
}

}  // namespace ember::loss
