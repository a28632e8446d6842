// Metrics: device-side accumulation with ops, host-side totals at result().
#include "ember/python_free_api/metrics.h"

#include "ember/core/autograd.h"
#include "ember/core/ops.h"

namespace ember::metrics {

namespace {

Tensor scalar_like(double v, const Tensor& like) {
  return full({}, v, {.dtype = like.dtype(), .device = like.device()});
}

bool is_binary_output(const Tensor& out) {
  return out.dim() == 1 || (out.dim() == 2 && out.size(1) == 1);
}

// Predicted and true class indices (int64 [N]) for class scores or a binary output.
void classes_of(const Tensor& output, const Tensor& target, double threshold, const char* who,
                Tensor* pred, Tensor* truth) {
  EMBER_CHECK_T(ValueError, output.defined() && target.defined(), who,
                ": undefined output or target");
  EMBER_CHECK_T(ShapeError, output.dim() >= 1 && target.dim() >= 1 && output.size(0) == target.size(0),
                who, ": output ", shape_str(output.shape()), " and target ", shape_str(target.shape()),
                " must have the same batch size");
  Tensor out = output.detach();
  if (is_binary_output(out)) {
    EMBER_CHECK_T(ShapeError, target.numel() == out.size(0), who, ": a binary output ",
                  shape_str(out.shape()), " needs targets [N] or [N, 1], got ", shape_str(target.shape()));
    Tensor o = out.reshape({-1});
    *pred = gt(o, scalar_like(threshold, o)).to(kInt64);
    Tensor t = target.reshape({-1});
    *truth = is_floating(t.dtype()) ? gt(t, scalar_like(0.5, t)).to(kInt64) : t.to(kInt64);
    return;
  }
  EMBER_CHECK_T(ShapeError, out.dim() == 2, who, ": expected class scores [N, C] or a binary output [N], got ",
                shape_str(out.shape()));
  *pred = argmax(out, 1);
  if (target.dim() == 2 && target.size(1) == 1 && !is_floating(target.dtype())) {
    *truth = target.reshape({-1}).to(kInt64);  // labels [N, 1], as Keras's sparse form allows
  } else if (target.dim() == 2) {
    EMBER_CHECK_T(ShapeError, target.shape() == out.shape(), who, ": one-hot target ",
                  shape_str(target.shape()), " must match the output ", shape_str(out.shape()));
    *truth = argmax(target, 1);
  } else {
    EMBER_CHECK_T(DTypeError, !is_floating(target.dtype()), who,
                  ": class-index targets must be integers, got ", dtype_name(target.dtype()));
    *truth = target.to(kInt64);
  }
}

Tensor accumulate(const Tensor& acc, const Tensor& add_this) {
  return acc.defined() ? add(acc, add_this) : add_this;
}

}  // namespace

Tensor one_hot(const Tensor& labels, int64_t num_classes) {
  EMBER_CHECK_T(ShapeError, labels.dim() == 1, "one_hot: labels must be [N], got ",
                shape_str(labels.shape()));
  Tensor classes = arange(num_classes, {.dtype = kInt64, .device = labels.device()});
  return eq(labels.to(kInt64).unsqueeze(1), classes.unsqueeze(0)).to(kFloat32);
}

// --- Accuracy ---------------------------------------------------------------------------

void Accuracy::reset() {
  correct_ = Tensor();
  total_ = 0;
}

void Accuracy::update(const Tensor& output, const Tensor& target) {
  NoGradGuard no_grad;
  Tensor pred, truth;
  classes_of(output, target, options_.threshold, "Accuracy", &pred, &truth);
  correct_ = accumulate(correct_, sum(eq(pred, truth)));
  total_ += pred.numel();
}

double Accuracy::result() const {
  return total_ == 0 ? 0.0 : correct_.item() / static_cast<double>(total_);
}

// --- TopKAccuracy ---------------------------------------------------------------------------

TopKAccuracy::TopKAccuracy(int64_t k) : k_(k) {
  EMBER_CHECK_T(ValueError, k >= 1, "TopKAccuracy: k must be at least 1, got ", k);
}

void TopKAccuracy::reset() {
  correct_ = Tensor();
  total_ = 0;
}

void TopKAccuracy::update(const Tensor& output, const Tensor& target) {
  NoGradGuard no_grad;
  EMBER_CHECK_T(ShapeError, output.dim() == 2 && target.dim() == 1 && target.size(0) == output.size(0),
                "TopKAccuracy: expected scores [N, C] and labels [N], got ", shape_str(output.shape()),
                " and ", shape_str(target.shape()));
  Tensor out = output.detach().to(kFloat32);
  // The label's score, then how many classes score strictly higher.
  Tensor target_score = sum(mul(out, one_hot(target, out.size(1))), {1}, true);
  Tensor higher = sum(gt(out, target_score), {1});
  correct_ = accumulate(correct_, sum(lt(higher, full({}, static_cast<double>(k_), {.dtype = kInt64, .device = out.device()}))));
  total_ += target.numel();
}

double TopKAccuracy::result() const {
  return total_ == 0 ? 0.0 : correct_.item() / static_cast<double>(total_);
}

// --- ConfusionMatrix -----------------------------------------------------------------------

ConfusionMatrix::ConfusionMatrix(int64_t num_classes, double threshold, const char* owner)
    : classes_(num_classes), threshold_(threshold), owner_(owner) {
  EMBER_CHECK_T(ValueError, num_classes >= 2, owner_, ": num_classes must be at least 2, got ",
                num_classes);
}

void ConfusionMatrix::reset() { counts_ = Tensor(); }

void ConfusionMatrix::update(const Tensor& output, const Tensor& target) {
  NoGradGuard no_grad;
  Tensor pred, truth;
  classes_of(output, target, threshold_, owner_, &pred, &truth);
  if (!is_binary_output(output)) {
    EMBER_CHECK_T(ShapeError, output.size(1) == classes_, owner_, ": output ",
                  shape_str(output.shape()), " has ", output.size(1), " classes, expected ", classes_);
  }
  // counts[t][p] += 1 for each row: one_hot(truth)^T @ one_hot(pred).
  Tensor batch = matmul(one_hot(truth, classes_).t(), one_hot(pred, classes_));
  counts_ = accumulate(counts_, batch);
}

Tensor ConfusionMatrix::matrix() const {
  if (!counts_.defined()) return zeros({classes_, classes_}, {.dtype = kInt64});
  return counts_.cpu().to(kInt64);
}

double ConfusionMatrix::result() const {
  auto m = matrix().to_vector<int64_t>();
  int64_t trace = 0, total = 0;
  for (int64_t i = 0; i < classes_; ++i) {
    for (int64_t j = 0; j < classes_; ++j) {
      total += m[i * classes_ + j];
      if (i == j) trace += m[i * classes_ + j];
    }
  }
  return total == 0 ? 0.0 : static_cast<double>(trace) / static_cast<double>(total);
}

std::vector<double> ConfusionMatrix::precision() const {
  auto m = matrix().to_vector<int64_t>();
  std::vector<double> out(classes_);
  for (int64_t c = 0; c < classes_; ++c) {
    int64_t predicted = 0;
    for (int64_t t = 0; t < classes_; ++t) predicted += m[t * classes_ + c];
    out[c] = predicted == 0 ? 0.0 : static_cast<double>(m[c * classes_ + c]) / static_cast<double>(predicted);
  }
  return out;
}

std::vector<double> ConfusionMatrix::recall() const {
  auto m = matrix().to_vector<int64_t>();
  std::vector<double> out(classes_);
  for (int64_t c = 0; c < classes_; ++c) {
    int64_t actual = 0;
    for (int64_t p = 0; p < classes_; ++p) actual += m[c * classes_ + p];
    out[c] = actual == 0 ? 0.0 : static_cast<double>(m[c * classes_ + c]) / static_cast<double>(actual);
  }
  return out;
}

std::vector<double> ConfusionMatrix::f1() const {
  auto p = precision(), r = recall();
  std::vector<double> out(classes_);
  for (int64_t c = 0; c < classes_; ++c) out[c] = p[c] + r[c] == 0 ? 0.0 : 2 * p[c] * r[c] / (p[c] + r[c]);
  return out;
}

namespace {
double reduce_average(const std::vector<double>& v, Average average) {
  if (average == Average::Binary) return v.size() > 1 ? v[1] : 0.0;
  double s = 0;
  for (double x : v) s += x;
  return v.empty() ? 0.0 : s / static_cast<double>(v.size());
}
}  // namespace

double Precision::result() const { return reduce_average(cm_.precision(), average_); }
double Recall::result() const { return reduce_average(cm_.recall(), average_); }
double F1Score::result() const { return reduce_average(cm_.f1(), average_); }

// --- AUC -----------------------------------------------------------------------------------

AUC::AUC(int64_t num_thresholds) : bins_(num_thresholds) {
  EMBER_CHECK_T(ValueError, num_thresholds >= 2, "AUC: num_thresholds must be at least 2, got ",
                num_thresholds);
}

void AUC::reset() {
  positives_ = Tensor();
  negatives_ = Tensor();
}

void AUC::update(const Tensor& output, const Tensor& target) {
  NoGradGuard no_grad;
  EMBER_CHECK_T(ValueError, output.defined() && target.defined(),
                "AUC: undefined output or target");
  EMBER_CHECK_T(ShapeError, is_binary_output(output) && target.dim() >= 1 && target.numel() == output.size(0),
                "AUC: expected a binary output [N] or [N, 1] and targets [N], got ",
                shape_str(output.shape()), " and ", shape_str(target.shape()));
  Tensor o = output.detach().reshape({-1}).to(kFloat32);
  Tensor t = target.reshape({-1}).to(kFloat32);
  // Bin index of each score: floor(clamp(score, 0, 1) * bins), the top edge in the last bin.
  Tensor bin = clamp(mul(clamp(o, 0.0, 1.0), static_cast<double>(bins_)), 0.0,
                     static_cast<double>(bins_ - 1)).to(kInt64);
  Tensor oh = one_hot(bin, bins_);                      // [N, bins]
  Tensor pos = matmul(t.unsqueeze(0), oh).reshape({-1});  // [bins]
  Tensor negatives = matmul(add(ember::neg(t), 1.0).unsqueeze(0), oh).reshape({-1});
  positives_ = accumulate(positives_, pos);
  negatives_ = accumulate(negatives_, negatives);
}

double AUC::result() const {
  if (!positives_.defined()) return 0.0;
  auto pos = positives_.cpu().to(kFloat64).to_vector<double>();
  auto neg = negatives_.cpu().to(kFloat64).to_vector<double>();
  double total_pos = 0, total_neg = 0;
  for (int64_t b = 0; b < bins_; ++b) {
    total_pos += pos[b];
    total_neg += neg[b];
  }
  if (total_pos == 0 || total_neg == 0) return 0.0;
  // Sweep the threshold from above the top bin down: each bin adds a trapezoid.
  double tp = 0, fp = 0, area = 0;
  for (int64_t b = bins_ - 1; b >= 0; --b) {
    const double tpr0 = tp / total_pos, fpr0 = fp / total_neg;
    tp += pos[b];
    fp += neg[b];
    area += (fp / total_neg - fpr0) * (tp / total_pos + tpr0) / 2.0;
  }
  return area;
}

}  // namespace ember::metrics
