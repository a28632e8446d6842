// Parameter initialisers.
#include "ember/layers/init.h"

#include <cmath>
#include <random>

#include "ember/core/autograd.h"
#include "ember/core/base/error.h"
#include "ember/core/random.h"

namespace ember::nn::init {

namespace {

int64_t receptive_field(const Tensor& t) {
  int64_t r = 1;
  for (int64_t d = 2; d < t.dim(); ++d) r *= t.size(d);
  return r;
}

template <typename Dist>
Tensor& fill_from(Tensor& t, Dist dist) {
  EMBER_CHECK_T(ValueError, t.defined(), "init: undefined tensor");
  std::vector<double> v(static_cast<size_t>(t.numel()));
  {
    std::lock_guard<std::mutex> lock(cpu_generator_mutex());
    auto& gen = cpu_generator();
    for (auto& x : v) x = dist(gen);
  }
  NoGradGuard no_grad;
  t.copy_(Tensor::from_vector(v, t.shape()));
  return t;
}

}  // namespace

int64_t fan_in(const Tensor& t) {
  EMBER_CHECK_T(ShapeError, t.dim() >= 2, "init: fan in/out needs a tensor of rank >= 2, got ",
                shape_str(t.shape()));
  return t.size(1) * receptive_field(t);
}

int64_t fan_out(const Tensor& t) {
  EMBER_CHECK_T(ShapeError, t.dim() >= 2, "init: fan in/out needs a tensor of rank >= 2, got ",
                shape_str(t.shape()));
  return t.size(0) * receptive_field(t);
}

Tensor& uniform_(Tensor& t, double low, double high) {
  return fill_from(t, std::uniform_real_distribution<double>(low, high));
}

Tensor& normal_(Tensor& t, double mean, double std) {
  return fill_from(t, std::normal_distribution<double>(mean, std));
}

Tensor& zeros_(Tensor& t) {
  NoGradGuard no_grad;
  t.zero_();
  return t;
}

Tensor& ones_(Tensor& t) {
  NoGradGuard no_grad;
  t.fill_(1.0);
  return t;
}

Tensor& kaiming_uniform_(Tensor& t, double a, bool fan_in_mode) {
  const double gain = std::sqrt(2.0 / (1.0 + a * a));
  const double fan = static_cast<double>(fan_in_mode ? fan_in(t) : fan_out(t));
  const double bound = gain * std::sqrt(3.0 / fan);
  return uniform_(t, -bound, bound);
}

Tensor& kaiming_normal_(Tensor& t, double a, bool fan_in_mode) {
  const double gain = std::sqrt(2.0 / (1.0 + a * a));
  const double fan = static_cast<double>(fan_in_mode ? fan_in(t) : fan_out(t));
  return normal_(t, 0.0, gain / std::sqrt(fan));
}

Tensor& xavier_uniform_(Tensor& t, double gain) {
  const double bound = gain * std::sqrt(6.0 / static_cast<double>(fan_in(t) + fan_out(t)));
  return uniform_(t, -bound, bound);
}

Tensor& xavier_normal_(Tensor& t, double gain) {
  return normal_(t, 0.0, gain * std::sqrt(2.0 / static_cast<double>(fan_in(t) + fan_out(t))));
}

Tensor& by_name(Tensor& t, const std::string& name) {
  if (name == "glorot_uniform" || name == "xavier_uniform") return xavier_uniform_(t);
  if (name == "glorot_normal" || name == "xavier_normal") return xavier_normal_(t);
  if (name == "he_uniform" || name == "kaiming_uniform") return kaiming_uniform_(t);
  if (name == "he_normal" || name == "kaiming_normal") return kaiming_normal_(t);
  if (name == "zeros") return zeros_(t);
  if (name == "ones") return ones_(t);
  // "default" is resolved by the layer itself, which knows PyTorch's rule for it.
  throw ValueError("init: unknown initializer '" + name +
                   "' (known: default, glorot_uniform, glorot_normal, he_uniform, he_normal, "
                   "xavier_uniform, xavier_normal, kaiming_uniform, kaiming_normal, zeros, ones)");
}

}  // namespace ember::nn::init
