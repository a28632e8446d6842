// Loss modules for the Trainer (ember::loss): each holds its options and maps
// (model output, target) to a loss tensor through the fused ops of core/ops.h.
#pragma once

#include <memory>
#include <string>
#include <type_traits>
#include <utility>

#include "ember/core/base/export.h"
#include "ember/core/ops.h"

namespace ember::loss {

class EMBER_API Loss {
 public:
  virtual ~Loss() = default;
  virtual Tensor operator()(const Tensor& output, const Tensor& target) const = 0;
  virtual std::string name() const = 0;
};

// Logits [N, C] against int64 class indices [N] (PyTorch's CrossEntropyLoss, Keras's
// sparse categorical cross-entropy from logits), or against class probabilities /
// one-hot rows [N, C] (categorical cross-entropy from logits). options.weight, one per
// class, works with both as in PyTorch: with indices 'mean' divides by the sum of the
// targets' weights, with probabilities by N. The class-index losses (CrossEntropy,
// SparseCategoricalCrossEntropy, NLL) throw ShapeError for labels outside [0, C), naming
// how many there are and the first few values and their rows.
class EMBER_API CrossEntropy : public Loss {
 public:
  explicit CrossEntropy(CrossEntropyOptions options = {}) : options_(options) {}
  Tensor operator()(const Tensor& output, const Tensor& target) const override;
  std::string name() const override { return "cross_entropy"; }

 private:
  CrossEntropyOptions options_;
};

struct CategoricalOptions {
  bool from_logits = false;  // Keras's default: the model ends in a softmax
};

// Keras's categorical cross-entropy: probabilities (or logits) [N, C] against one-hot
// or probability targets [N, C]: mean over rows of -sum(t * log p), each row of p first
// rescaled to sum to 1 and clipped to [1e-7, 1 - 1e-7] as Keras does.
class EMBER_API CategoricalCrossEntropy : public Loss {
 public:
  explicit CategoricalCrossEntropy(CategoricalOptions options = {}) : options_(options) {}
  Tensor operator()(const Tensor& output, const Tensor& target) const override;
  std::string name() const override { return "categorical_crossentropy"; }

 private:
  CategoricalOptions options_;
};

// Keras's sparse categorical cross-entropy: probabilities (or logits) [N, C] against
// int64 labels [N].
class EMBER_API SparseCategoricalCrossEntropy : public Loss {
 public:
  explicit SparseCategoricalCrossEntropy(CategoricalOptions options = {}) : options_(options) {}
  Tensor operator()(const Tensor& output, const Tensor& target) const override;
  std::string name() const override { return "sparse_categorical_crossentropy"; }

 private:
  CategoricalOptions options_;
};

// Log-probabilities [N, C] against int64 class indices [N] (PyTorch's NLLLoss; class
// weights in options.weight).
class EMBER_API NLL : public Loss {
 public:
  explicit NLL(CrossEntropyOptions options = {}) : options_(options) {}
  Tensor operator()(const Tensor& output, const Tensor& target) const override;
  std::string name() const override { return "nll"; }

 private:
  CrossEntropyOptions options_;
};

class EMBER_API MSE : public Loss {
 public:
  explicit MSE(Reduction r = Reduction::Mean) : r_(r) {}
  Tensor operator()(const Tensor& o, const Tensor& t) const override;
  std::string name() const override { return "mse"; }

 private:
  Reduction r_;
};

class EMBER_API L1 : public Loss {
 public:
  explicit L1(Reduction r = Reduction::Mean) : r_(r) {}
  Tensor operator()(const Tensor& o, const Tensor& t) const override;
  std::string name() const override { return "l1"; }

 private:
  Reduction r_;
};

// Probabilities (from a sigmoid) against 0/1 targets; [N, 1] outputs meet [N] targets.
class EMBER_API BinaryCrossEntropy : public Loss {
 public:
  explicit BinaryCrossEntropy(CategoricalOptions options = {}) : options_(options) {}
  Tensor operator()(const Tensor& o, const Tensor& t) const override;
  std::string name() const override { return "binary_crossentropy"; }

 private:
  CategoricalOptions options_;
};

// Logits against 0/1 (or probability) targets of the same shape: PyTorch's
// BCEWithLogitsLoss, with its pos_weight (e.g. [C] for [N, C] multi-label outputs);
// [N, 1] outputs meet [N] targets.
class EMBER_API BCEWithLogits : public Loss {
 public:
  explicit BCEWithLogits(BCEWithLogitsOptions options = {}) : options_(std::move(options)) {}
  Tensor operator()(const Tensor& o, const Tensor& t) const override;
  std::string name() const override { return "bce_with_logits"; }

 private:
  BCEWithLogitsOptions options_;
};

// Holds any loss; built implicitly from a loss value.
class EMBER_API AnyLoss {
 public:
  template <typename L, typename = std::enable_if_t<std::is_base_of_v<Loss, std::decay_t<L>>>>
  AnyLoss(L&& l) : ptr_(std::make_shared<std::decay_t<L>>(std::forward<L>(l))) {}  // NOLINT
  Tensor operator()(const Tensor& o, const Tensor& t) const { return (*ptr_)(o, t); }
  std::string name() const { return ptr_->name(); }

 private:
  std::shared_ptr<Loss> ptr_;
};

}  // namespace ember::loss
