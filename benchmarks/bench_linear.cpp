// nn::Linear on CUDA tensors (a forward, and a training step: forward, then backward of a
// fixed upstream gradient into the input, weight and bias) against the same products made
// with raw cuBLAS calls on the same stream. The ratio ember / raw is the framework's cost
// (target <= 1.05).
#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <string>
#include <utility>
#include <vector>

#include "ember/benchmarks/harness.h"
#include "ember/core/autograd.h"
#include "ember/core/base/cuda_check.h"
#include "ember/core/cuda_context.h"
#include "ember/core/ops.h"
#include "ember/core/tensor.h"
#include "ember/layers/layers.h"

namespace {

using namespace ember;
using bench::Ref;
using bench::Report;
using bench::Timing;

// The baseline's own cuBLAS handle, destroyed with its owner (a failure there is reported,
// not thrown: the destructor also runs while an exception unwinds).
class CublasHandle {
 public:
  CublasHandle() { EMBER_CUBLAS_CHECK(cublasCreate(&h_)); }
  ~CublasHandle() {
    const cublasStatus_t st = cublasDestroy(h_);
    if (st != CUBLAS_STATUS_SUCCESS) {
      std::fprintf(stderr, "bench_linear warning: cublasDestroy failed: %s\n",
                   cublasGetStatusString(st));
    }
  }
  CublasHandle(const CublasHandle&) = delete;
  CublasHandle& operator=(const CublasHandle&) = delete;
  cublasHandle_t get() const { return h_; }

 private:
  cublasHandle_t h_ = nullptr;
};

std::vector<float> to_host(const Tensor& t) { return t.contiguous().cpu().to_vector<float>(); }

// Host copies of one case's operands: x [n, in], w [out, in], b [out], dy [n, out].
struct HostLinear {
  int64_t n = 0, in = 0, out = 0;
  std::vector<float> x, w, b, dy;

  double at_x(int64_t i, int64_t k) const { return x[static_cast<size_t>(i * in + k)]; }
  double at_w(int64_t j, int64_t k) const { return w[static_cast<size_t>(j * in + k)]; }
  double at_dy(int64_t i, int64_t j) const { return dy[static_cast<size_t>(i * out + j)]; }

  // y[i, j] = b[j] + sum_k x[i, k] w[j, k]
  Ref y(int64_t i, int64_t j) const {
    Ref r;
    r.add(b[static_cast<size_t>(j)]);
    for (int64_t k = 0; k < in; ++k) r.add(at_x(i, k) * at_w(j, k));
    return r;
  }
  // dx[i, k] = sum_j dy[i, j] w[j, k]
  Ref dx(int64_t i, int64_t k) const {
    Ref r;
    for (int64_t j = 0; j < out; ++j) r.add(at_dy(i, j) * at_w(j, k));
    return r;
  }
  // dw[j, k] = sum_i dy[i, j] x[i, k]
  Ref dw(int64_t j, int64_t k) const {
    Ref r;
    for (int64_t i = 0; i < n; ++i) r.add(at_dy(i, j) * at_x(i, k));
    return r;
  }
  // db[j] = sum_i dy[i, j]
  Ref db(int64_t j, int64_t /*unused*/) const {
    Ref r;
    for (int64_t i = 0; i < n; ++i) r.add(at_dy(i, j));
    return r;
  }
};

// Checks `got` ([rows, cols], C order) at 16 spread-out places and a corner against `ref`,
// each within rtol of the largest term-magnitude sum seen. Returns "" or what failed.
template <typename RefFn>
std::string spot_check(const char* what, const std::vector<float>& got, int64_t rows,
                       int64_t cols, double rtol, RefFn ref) {
  std::vector<std::pair<int64_t, int64_t>> places;
  for (int64_t t = 0; t < 16; ++t) places.emplace_back((t * 37) % rows, (t * 101 + 3) % cols);
  places.emplace_back(rows - 1, cols - 1);
  std::vector<Ref> refs;
  double scale = 1e-30;
  for (const auto& [i, j] : places) {
    refs.push_back(ref(i, j));
    scale = std::max(scale, refs.back().mag);
  }
  for (size_t k = 0; k < places.size(); ++k) {
    const auto [i, j] = places[k];
    const double g = got[static_cast<size_t>(i * cols + j)];
    if (!(std::abs(g - refs[k].value) <= rtol * scale)) {
      return std::string(what) + " " + shape_str({rows, cols}) + " is " + std::to_string(g) +
             " at [" + std::to_string(i) + ", " + std::to_string(j) + "], f64 reference " +
             std::to_string(refs[k].value);
    }
  }
  return "";
}

struct LinearCase {
  const char* label;
  int64_t n, in, out;
};

void run(Report& report) {
  report.begin();
  const bench::Options& opts = report.options();
  const int dev = 0;
  const Device gpu = Device::cuda(dev);
  const cudaStream_t stream = cuda::compute_stream(dev);
  // ember's cuBLAS math mode follows cuda::allow_tf32() (off by default); the baseline's
  // handle gets the same.
  const bool tf32 = cuda::allow_tf32();
  const double rtol = tf32 ? 3e-3 : 1e-5;

  CublasHandle raw;
  EMBER_CUBLAS_CHECK(cublasSetStream(raw.get(), stream));
  EMBER_CUBLAS_CHECK(
      cublasSetMathMode(raw.get(), tf32 ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_DEFAULT_MATH));
  EMBER_CUBLAS_CHECK(cublasSetPointerMode(raw.get(), CUBLAS_POINTER_MODE_HOST));

  report.set("target_ratio", bench::kTargetRatio);
  report.set("tf32", tf32);
  std::printf("# ember: nn::Linear (bias) on cuda:0; train step = zero_grad, forward, backward of "
              "a fixed dy into x, weight and bias\n");
  std::printf("# baseline: own cuBLAS handle on ember's stream, float32 (TF32 %s): forward = "
              "cublasSgemm b 1^T (k = 1) then cublasSgemm x W^T (beta = 1); backward = "
              "cublasSgemm dX = dY W, cublasSgemm dW = dY^T X, cublasSgemv db = dY^T 1\n",
              tf32 ? "on" : "off");
  report.table("TFLOP/s");

  // The seed models' dense layers (MLP 784-256-10; CNN flatten 64 * 5 * 5 = 1600 -> 128 -> 10)
  // at batch 32 and 128, and one large layer.
  const std::vector<LinearCase> cases = {
      {"seed MLP fc1", 32, 784, 256},   {"seed MLP fc1", 128, 784, 256},
      {"seed MLP fc2", 32, 256, 10},    {"seed MLP fc2", 128, 256, 10},
      {"seed CNN fc1", 32, 1600, 128},  {"seed CNN fc1", 128, 1600, 128},
      {"seed CNN fc2", 32, 128, 10},    {"seed CNN fc2", 128, 128, 10},
      {"large", 512, 4096, 4096},
  };
  for (const LinearCase& lc : cases) {
    const int n = static_cast<int>(lc.n), in = static_cast<int>(lc.in),
              out = static_cast<int>(lc.out);
    const std::string label = std::string(lc.label) + " x " + shape_str({lc.n, lc.in}) +
                              ", weight " + shape_str({lc.out, lc.in});

    // ember's side: the layer as a user builds it, an input that requires grad (so that
    // backward computes dx too) and a fixed upstream gradient.
    nn::Linear layer(lc.in, lc.out);
    layer.to(gpu);
    HostLinear host;
    host.n = lc.n;
    host.in = lc.in;
    host.out = lc.out;
    host.x = bench::host_values(lc.n * lc.in, 1, 1.0f);
    host.dy = bench::host_values(lc.n * lc.out, 2, 1.0f);
    host.w = to_host(layer.weight());
    host.b = to_host(layer.bias());
    Tensor x = Tensor::from_vector(host.x, {lc.n, lc.in}, gpu);
    x.requires_grad_();
    const Tensor dy = Tensor::from_vector(host.dy, {lc.n, lc.out}, gpu);

    auto ember_step = [&] {
      layer.zero_grad();
      x.set_grad(Tensor());
      Tensor y = layer.forward(x);
      y.backward(dy);
    };
    auto ember_forward = [&] {
      NoGradGuard no_grad;
      (void)layer.forward(x);
    };

    // The baseline reads x, dy and the layer's weight and bias in place and writes its own
    // outputs, all allocated before anything is timed.
    const Tensor ones = Tensor::from_vector(std::vector<float>(static_cast<size_t>(n), 1.0f),
                                            {lc.n}, gpu);
    const Tensor raw_y = empty({lc.n, lc.out}, {.device = gpu});
    const Tensor raw_dx = empty({lc.n, lc.in}, {.device = gpu});
    const Tensor raw_dw = empty({lc.out, lc.in}, {.device = gpu});
    const Tensor raw_db = empty({lc.out}, {.device = gpu});
    const float* xp = x.data<float>();
    const float* wp = layer.weight().data<float>();
    const float* bp = layer.bias().data<float>();
    const float* dyp = dy.data<float>();
    const float* onesp = ones.data<float>();
    const float one = 1.0f, zero = 0.0f;

    // Row-major [r, c] is column-major [c, r]: every product below is written for the
    // column-major transposes (y^T [out, n], x^T [in, n], w^T [in, out], dy^T [out, n]).
    auto raw_forward = [&] {
      // y^T = b 1^T: the bias in every column, as the rank-1 product [out, 1] [1, n].
      EMBER_CUBLAS_CHECK(cublasSgemm(raw.get(), CUBLAS_OP_N, CUBLAS_OP_N, out, n, 1, &one, bp,
                                     out, onesp, 1, &zero, raw_y.data<float>(), out));
      // y^T += W x^T: w^T stored [in, out] read transposed, x^T [in, n].
      EMBER_CUBLAS_CHECK(cublasSgemm(raw.get(), CUBLAS_OP_T, CUBLAS_OP_N, out, n, in, &one, wp,
                                     in, xp, in, &one, raw_y.data<float>(), out));
    };
    auto raw_step = [&] {
      raw_forward();
      // dx^T [in, n] = w^T [in, out] dy^T [out, n]
      EMBER_CUBLAS_CHECK(cublasSgemm(raw.get(), CUBLAS_OP_N, CUBLAS_OP_N, in, n, out, &one, wp,
                                     in, dyp, out, &zero, raw_dx.data<float>(), in));
      // dw^T [in, out] = x^T [in, n] (dy^T [out, n])^T
      EMBER_CUBLAS_CHECK(cublasSgemm(raw.get(), CUBLAS_OP_N, CUBLAS_OP_T, in, out, n, &one, xp,
                                     in, dyp, out, &zero, raw_dw.data<float>(), in));
      // db [out] = dy^T [out, n] 1
      EMBER_CUBLAS_CHECK(cublasSgemv(raw.get(), CUBLAS_OP_N, out, n, &one, dyp, out, onesp, 1,
                                     &zero, raw_db.data<float>(), 1));
    };

    // Correctness first: the baseline against f64 sums at a few places, then ember's
    // outputs and gradients against the baseline's everywhere.
    raw_step();
    EMBER_CUDA_CHECK(cudaStreamSynchronize(stream));
    const std::vector<float> ry = to_host(raw_y), rdx = to_host(raw_dx), rdw = to_host(raw_dw),
                             rdb = to_host(raw_db);
    std::string failed =
        spot_check("raw y", ry, lc.n, lc.out, rtol, [&](auto i, auto j) { return host.y(i, j); });
    if (failed.empty()) {
      failed = spot_check("raw dx", rdx, lc.n, lc.in, rtol,
                          [&](auto i, auto k) { return host.dx(i, k); });
    }
    if (failed.empty()) {
      failed = spot_check("raw dw", rdw, lc.out, lc.in, rtol,
                          [&](auto j, auto k) { return host.dw(j, k); });
    }
    if (failed.empty()) {
      failed = spot_check("raw db", rdb, lc.out, 1, rtol,
                          [&](auto j, auto k) { return host.db(j, k); });
    }
    if (!failed.empty()) {
      report.fail("Linear " + label + ": " + failed);
      continue;
    }
    layer.zero_grad();
    x.set_grad(Tensor());
    Tensor ember_y = layer.forward(x);
    ember_y.backward(dy);
    const Tensor ember_dx = x.grad(), ember_dw = layer.weight().grad(),
                 ember_db = layer.bias().grad();
    if (!ember_dx.defined() || !ember_dw.defined() || !ember_db.defined()) {
      report.fail("Linear " + label + ": ember's backward left a gradient undefined");
      continue;
    }
    const double diff_y = bench::max_relative_diff(to_host(ember_y), ry);
    const double diff_dx = bench::max_relative_diff(to_host(ember_dx), rdx);
    const double diff_dw = bench::max_relative_diff(to_host(ember_dw), rdw);
    const double diff_db = bench::max_relative_diff(to_host(ember_db), rdb);
    const double diff = std::max({diff_y, diff_dx, diff_dw, diff_db});
    if (!(diff <= rtol)) {
      report.fail("Linear " + label + ": ember differs from raw cuBLAS by " +
                  std::to_string(diff) + " (relative to the largest value; y " +
                  std::to_string(diff_y) + ", dx " + std::to_string(diff_dx) + ", dw " +
                  std::to_string(diff_dw) + ", db " + std::to_string(diff_db) + ")");
      continue;
    }

    auto add_row = [&](const std::string& what, const std::string& baseline, const Timing& t,
                       const Timing& base, double flops) {
      report.add(bench::ratio_row(
          label + ", " + what, baseline, t, base, flops, "",
          {{"case", lc.label},
           {"batch", lc.n},
           {"in_features", lc.in},
           {"out_features", lc.out},
           {"max_relative_diff", {{"y", diff_y}, {"dx", diff_dx}, {"dw", diff_dw}, {"db", diff_db}}}}));
    };
    const double gemm_flops = 2.0 * lc.n * lc.in * lc.out;
    add_row("forward", "cublasSgemm bias (k = 1) + cublasSgemm",
            bench::time_on_stream(stream, ember_forward, opts),
            bench::time_on_stream(stream, raw_forward, opts), gemm_flops);
    add_row("train step", "forward + cublasSgemm dX, dW + cublasSgemv db",
            bench::time_on_stream(stream, ember_step, opts),
            bench::time_on_stream(stream, raw_step, opts), 3.0 * gemm_flops);
  }
}

}  // namespace

int main(int argc, char** argv) {
  return ember::bench::run_benchmark(
      argc, argv, "bench_linear",
      "nn::Linear forward and training step against the same raw cuBLAS calls", run);
}
