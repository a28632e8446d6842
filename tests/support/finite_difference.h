// Central finite differences in double, for the kernel tests that check a backward loop
// without autograd (ember::gradcheck covers the ops).
#pragma once

#include <cstddef>
#include <functional>
#include <vector>

namespace ember::testing {

// The gradient of the scalar function f at x: (f(x + h e_j) - f(x - h e_j)) / 2h.
inline std::vector<double> numeric_gradient(
    const std::function<double(const std::vector<double>&)>& f, std::vector<double> x,
    double h = 1e-6) {
  std::vector<double> g(x.size());
  for (size_t j = 0; j < x.size(); ++j) {
    const double saved = x[j];
    x[j] = saved + h;
    const double up = f(x);
    x[j] = saved - h;
    const double down = f(x);
    x[j] = saved;
    g[j] = (up - down) / (2 * h);
  }
  return g;
}

}  // namespace ember::testing
