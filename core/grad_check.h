// Finite-difference gradient checker (f64 on the CPU), used by the tests to verify every
// op's backward rule.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "ember/core/base/export.h"
#include "ember/core/tensor.h"

namespace ember {

struct GradCheckOptions {
  double eps = 1e-6;   // central-difference step
  double atol = 1e-6;
  double rtol = 1e-4;
  uint64_t seed = 0;   // for the random output weights
};

struct GradCheckResult {
  bool ok = true;
  std::string report;  // the first mismatches, with input index, element and both values
};

// Checks d(sum(w * fn(inputs)))/d(inputs) from backward() against central differences,
// with w a fixed random weight per output element (one backward pass checks the whole
// vector-Jacobian product). Inputs must be float64 CPU tensors; those that require grad
// are checked. fn must be deterministic.
EMBER_API GradCheckResult gradcheck(
    const std::function<Tensor(const std::vector<Tensor>&)>& fn,
    const std::vector<Tensor>& inputs, GradCheckOptions opts = {});

}  // namespace ember
