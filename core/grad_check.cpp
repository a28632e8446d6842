// The finite-difference gradient checker.
#include "ember/core/grad_check.h"

#include <cmath>
#include <random>
#include <sstream>

#include "ember/core/autograd.h"
#include "ember/core/ops.h"

namespace ember {

GradCheckResult gradcheck(const std::function<Tensor(const std::vector<Tensor>&)>& fn,
                          const std::vector<Tensor>& inputs, GradCheckOptions opts) {
  for (size_t i = 0; i < inputs.size(); ++i) {
    const Tensor& t = inputs[i];
    EMBER_CHECK(t.defined() && t.dtype() == kFloat64 && t.device().is_cpu() && t.is_contiguous(),
                "gradcheck: input ", i, " must be a contiguous float64 CPU tensor");
  }
  GradCheckResult result;
  std::ostringstream report;
  int mismatches = 0;

  // Fixed random weights make the scalar objective sensitive to every output element.
  Tensor w;
  {
    NoGradGuard no_grad;
    Tensor y0 = fn(inputs);
    std::mt19937_64 gen(opts.seed);
    std::uniform_real_distribution<double> dist(0.5, 1.5);
    std::vector<double> wv(static_cast<size_t>(y0.numel()));
    for (auto& v : wv) v = dist(gen);
    w = Tensor::from_vector(wv, y0.shape());
  }
  auto objective = [&](const std::vector<Tensor>& in) { return sum(mul(fn(in), w)); };

  for (const Tensor& t : inputs) {
    if (t.requires_grad()) const_cast<Tensor&>(t).set_grad(Tensor());
  }
  Tensor loss = objective(inputs);
  if (!loss.requires_grad()) {
    result.ok = false;
    result.report = "gradcheck: the output does not depend on any input that requires grad";
    return result;
  }
  loss.backward();

  NoGradGuard no_grad;
  for (size_t i = 0; i < inputs.size(); ++i) {
    const Tensor& t = inputs[i];
    if (!t.requires_grad()) continue;
    Tensor analytic = t.grad();
    std::vector<double> ga = analytic.defined() ? analytic.contiguous().to_vector<double>()
                                                : std::vector<double>(t.numel(), 0.0);
    double* p = t.data<double>();
    for (int64_t k = 0; k < t.numel(); ++k) {
      const double orig = p[k];
      p[k] = orig + opts.eps;
      const double plus = objective(inputs).item();
      p[k] = orig - opts.eps;
      const double minus = objective(inputs).item();
      p[k] = orig;
      const double numeric = (plus - minus) / (2 * opts.eps);
      const double diff = std::fabs(numeric - ga[k]);
      if (!(diff <= opts.atol + opts.rtol * std::fabs(numeric))) {
        result.ok = false;
        if (mismatches++ < 10) {
          report << "input " << i << " element " << k << ": analytic " << ga[k] << ", numeric "
                 << numeric << " (diff " << diff << ")\n";
        }
      }
    }
  }
  if (mismatches > 10) report << "... " << mismatches - 10 << " more mismatches\n";
  result.report = report.str();
  return result;
}

}  // namespace ember
