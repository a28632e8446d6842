// Metrics for the Trainer (Keras's names): each accumulates on the tensor's device
// during an epoch — nothing of the batch is copied back — and result() reads the total.
#pragma once

#include <memory>
#include <string>
#include <type_traits>
#include <vector>

#include "ember/core/base/export.h"
#include "ember/core/tensor.h"

namespace ember::metrics {

class EMBER_API Metric {
 public:
  virtual ~Metric() = default;
  virtual std::string name() const = 0;
  virtual void reset() = 0;
  // output: the model's output for a batch; target: the batch's labels.
  virtual void update(const Tensor& output, const Tensor& target) = 0;
  virtual double result() const = 0;
  // A fresh metric of the same kind and options (the Trainer keeps one for validation).
  virtual std::unique_ptr<Metric> clone() const = 0;
};

// float [N, C] with a 1 at each label (labels int64 [N], on the labels' device).
EMBER_API Tensor one_hot(const Tensor& labels, int64_t num_classes);

struct AccuracyOptions {
  double threshold = 0.5;  // binary outputs: predicted positive when output > threshold
};

// Keras's "accuracy", choosing the rule from the shapes: class scores [N, C] against
// int64 labels [N] or one-hot/probability targets [N, C] (argmax of each); a binary
// output [N] or [N, 1] against 0/1 targets (output > threshold).
class EMBER_API Accuracy : public Metric {
 public:
  explicit Accuracy(AccuracyOptions options = {}) : options_(options) {}
  std::string name() const override { return "accuracy"; }
  void reset() override;
  void update(const Tensor& output, const Tensor& target) override;
  double result() const override;
  std::unique_ptr<Metric> clone() const override { return std::make_unique<Accuracy>(options_); }

 private:
  AccuracyOptions options_;
  Tensor correct_;  // int64 scalar on the device
  int64_t total_ = 0;
};

// The label is among the k highest scores (ties counted in the label's favour).
class EMBER_API TopKAccuracy : public Metric {
 public:
  explicit TopKAccuracy(int64_t k = 5);
  std::string name() const override { return "top_" + std::to_string(k_) + "_accuracy"; }
  void reset() override;
  void update(const Tensor& output, const Tensor& target) override;
  double result() const override;
  std::unique_ptr<Metric> clone() const override { return std::make_unique<TopKAccuracy>(k_); }

 private:
  int64_t k_;
  Tensor correct_;
  int64_t total_ = 0;
};

// counts[true class][predicted class]. Binary outputs ([N] or [N, 1]) use 2 classes and
// the threshold.
class EMBER_API ConfusionMatrix : public Metric {
 public:
  explicit ConfusionMatrix(int64_t num_classes, double threshold = 0.5)
      : ConfusionMatrix(num_classes, threshold, "ConfusionMatrix") {}
  std::string name() const override { return "confusion_matrix"; }
  void reset() override;
  void update(const Tensor& output, const Tensor& target) override;
  // Trace / total (the accuracy), so it can sit in a metric list.
  double result() const override;
  std::unique_ptr<Metric> clone() const override {
    return std::make_unique<ConfusionMatrix>(classes_, threshold_);
  }
  // The matrix as int64 [C, C] on the CPU.
  Tensor matrix() const;
  int64_t num_classes() const { return classes_; }
  // Per-class precision, recall and F1 (0 where undefined, as scikit-learn's zero_division=0).
  std::vector<double> precision() const;
  std::vector<double> recall() const;
  std::vector<double> f1() const;

 private:
  // Precision, Recall and F1Score count through a ConfusionMatrix; their errors name them.
  friend class Precision;
  friend class Recall;
  friend class F1Score;
  ConfusionMatrix(int64_t num_classes, double threshold, const char* owner);

  int64_t classes_;
  double threshold_;
  const char* owner_;  // the metric named in error messages
  Tensor counts_;  // float [C, C] on the device (exact for counts below 2^24 per cell)
};

enum class Average { Macro, Binary };

// Precision, recall and F1: macro-averaged over classes, or of class 1 for binary tasks.
class EMBER_API Precision : public Metric {
 public:
  explicit Precision(int64_t num_classes = 2, Average average = Average::Macro)
      : cm_(num_classes, 0.5, "Precision"), average_(average) {}
  std::string name() const override { return "precision"; }
  void reset() override { cm_.reset(); }
  void update(const Tensor& o, const Tensor& t) override { cm_.update(o, t); }
  double result() const override;
  std::unique_ptr<Metric> clone() const override {
    return std::make_unique<Precision>(cm_.num_classes(), average_);
  }

 private:
  ConfusionMatrix cm_;
  Average average_;
};

class EMBER_API Recall : public Metric {
 public:
  explicit Recall(int64_t num_classes = 2, Average average = Average::Macro)
      : cm_(num_classes, 0.5, "Recall"), average_(average) {}
  std::string name() const override { return "recall"; }
  void reset() override { cm_.reset(); }
  void update(const Tensor& o, const Tensor& t) override { cm_.update(o, t); }
  double result() const override;
  std::unique_ptr<Metric> clone() const override {
    return std::make_unique<Recall>(cm_.num_classes(), average_);
  }

 private:
  ConfusionMatrix cm_;
  Average average_;
};

class EMBER_API F1Score : public Metric {
 public:
  explicit F1Score(int64_t num_classes = 2, Average average = Average::Macro)
      : cm_(num_classes, 0.5, "F1Score"), average_(average) {}
  std::string name() const override { return "f1"; }
  void reset() override { cm_.reset(); }
  void update(const Tensor& o, const Tensor& t) override { cm_.update(o, t); }
  double result() const override;
  std::unique_ptr<Metric> clone() const override {
    return std::make_unique<F1Score>(cm_.num_classes(), average_);
  }

 private:
  ConfusionMatrix cm_;
  Average average_;
};

// Area under the ROC curve for a binary output of probabilities [N] or [N, 1] against
// 0/1 targets, from histograms over `num_thresholds` equal bins (Keras's AUC method).
class EMBER_API AUC : public Metric {
 public:
  explicit AUC(int64_t num_thresholds = 200);
  std::string name() const override { return "auc"; }
  void reset() override;
  void update(const Tensor& output, const Tensor& target) override;
  double result() const override;
  std::unique_ptr<Metric> clone() const override { return std::make_unique<AUC>(bins_); }

 private:
  int64_t bins_;
  Tensor positives_, negatives_;  // float [bins] on the device
};

// Holds any metric; built implicitly from a metric value so {metrics::Accuracy()} works.
class EMBER_API AnyMetric {
 public:
  template <typename M, typename = std::enable_if_t<std::is_base_of_v<Metric, std::decay_t<M>>>>
  AnyMetric(M&& m) : ptr_(std::make_shared<std::decay_t<M>>(std::forward<M>(m))) {}  // NOLINT
  const std::shared_ptr<Metric>& ptr() const { return ptr_; }

 private:
  std::shared_ptr<Metric> ptr_;
};

}  // namespace ember::metrics
