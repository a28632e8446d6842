// Small pieces the raw-API samples share: shuffled mini-batches from CPU tensors, an
// Adam update written with tensor ops, and test accuracy. (The library's optimizers and
// data loader replace these in the Trainer-based samples.)
#pragma once

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <random>
#include <vector>

#include <ember/ember.h>

namespace samples {

using namespace ember;

// Copies the rows idx[begin, end) of a CPU tensor into one batch on `device`.
inline Tensor gather_rows(const Tensor& src, const std::vector<int64_t>& idx, size_t begin,
                          size_t end, Device device) {
  Shape shape = src.shape();
  shape[0] = static_cast<int64_t>(end - begin);
  Tensor batch = empty(shape, {.dtype = src.dtype()});
  const size_t row_bytes = src.nbytes() / static_cast<size_t>(src.size(0));
  const auto* from = static_cast<const char*>(src.data_ptr());
  auto* to = static_cast<char*>(batch.data_ptr());
  for (size_t i = begin; i < end; ++i) {
    std::memcpy(to + (i - begin) * row_bytes, from + idx[i] * row_bytes, row_bytes);
  }
  return batch.to(device);
}

// Adam (Kingma & Ba) with bias correction, as tensor ops under NoGradGuard.
class HandAdam {
 public:
  explicit HandAdam(std::vector<Tensor> params, double lr = 1e-3)
      : params_(std::move(params)), lr_(lr) {
    for (const Tensor& p : params_) {
      m_.push_back(zeros_like(p));
      v_.push_back(zeros_like(p));
    }
  }
  void zero_grad() {
    for (Tensor& p : params_) p.set_grad(Tensor());
  }
  void step() {
    NoGradGuard no_grad;  // p -= lr * m_hat / (sqrt(v_hat) + eps)
    ++t_;
    const double c1 = 1.0 - std::pow(kBeta1, static_cast<double>(t_));
    const double c2 = 1.0 - std::pow(kBeta2, static_cast<double>(t_));
    for (size_t k = 0; k < params_.size(); ++k) {
      Tensor g = params_[k].grad();
      if (!g.defined()) continue;
      m_[k].mul_(kBeta1).add_(g, 1.0 - kBeta1);
      v_[k].mul_(kBeta2).add_(g * g, 1.0 - kBeta2);
      params_[k].add_((m_[k] / c1) / (sqrt(v_[k] / c2) + kEps), -lr_);
    }
  }

 private:
  static constexpr double kBeta1 = 0.9, kBeta2 = 0.999, kEps = 1e-8;
  std::vector<Tensor> params_, m_, v_;
  double lr_;
  int64_t t_ = 0;
};

// Fraction of rows whose argmax of `predict(x)` equals the label.
template <typename Predict>
double accuracy(Predict predict, const Tensor& images, const Tensor& labels, Device device,
                int64_t batch_size = 1000) {
  NoGradGuard no_grad;
  const int64_t n = labels.numel();
  int64_t correct = 0;
  for (int64_t i = 0; i < n; i += batch_size) {
    const int64_t len = std::min(batch_size, n - i);
    Tensor x = images.narrow(0, i, len).to(device);
    Tensor y = labels.narrow(0, i, len).to(device);
    const Tensor logits = predict(x);
    correct += sum(eq(argmax(logits, 1), y)).item<int64_t>();
  }
  return static_cast<double>(correct) / static_cast<double>(n);
}

}  // namespace samples
