// ember::matmul and ember::linear on CUDA tensors against a raw cuBLAS call of the same
// shape on the same stream. The ratio ember / raw is the framework's cost (target <= 1.05).
#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "ember/benchmarks/harness.h"
#include "ember/core/base/cuda_check.h"
#include "ember/core/cuda_context.h"
#include "ember/core/ops.h"
#include "ember/core/tensor.h"

namespace {

using namespace ember;
using bench::Report;
using bench::Timing;


struct GemmShape {
  int64_t batch, m, k, n;  // [batch,] [m, k] @ [k, n]
};

// Reproducible values in [-1, 1).
std::vector<float> host_values(int64_t n, uint64_t seed) {
  std::vector<float> v(static_cast<size_t>(n));
  uint64_t s = seed * 0x9E3779B97F4A7C15ull + 7;
  for (auto& x : v) {
    s = s * 6364136223846793005ull + 1442695040888963407ull;
    x = static_cast<float>(static_cast<double>(s >> 40) / static_cast<double>(1ull << 24)) * 2.0f -
        1.0f;
  }
  return v;
}

std::string shape_label(const GemmShape& s) {
  if (s.batch == 1) return shape_str({s.m, s.k}) + " @ " + shape_str({s.k, s.n});
  return shape_str({s.batch, s.m, s.k}) + " @ " + shape_str({s.batch, s.k, s.n});
}

// Largest |got - want| over the whole output, relative to the largest |want|.
double max_relative_diff(const Tensor& got, const std::vector<float>& want) {
  const std::vector<float> g = got.contiguous().cpu().to_vector<float>();
  double diff = 0.0, scale = 1e-30;
  for (size_t i = 0; i < want.size(); ++i) {
    const double d = std::abs(static_cast<double>(g[i]) - want[i]);
    diff = std::isnan(d) ? INFINITY : std::max(diff, d);
    scale = std::max(scale, std::abs(static_cast<double>(want[i])));
  }
  return g.size() == want.size() ? diff / scale : INFINITY;
}

void run(Report& report) {
  report.begin();
  const bench::Options& opts = report.options();
  const cudaStream_t stream = cuda::compute_stream(0);
  const Device gpu = Device::cuda(0);

  // The baseline's own handle, on ember's stream, in cuBLAS's default (full float32) math
  // mode, which is ember's default too (TF32 off).
  cublasHandle_t raw = nullptr;
  EMBER_CUBLAS_CHECK(cublasCreate(&raw));
  EMBER_CUBLAS_CHECK(cublasSetStream(raw, stream));
  EMBER_CUBLAS_CHECK(cublasSetMathMode(raw, CUBLAS_DEFAULT_MATH));
  report.set("tf32", cuda::allow_tf32());
  report.set("target_ratio", bench::kTargetRatio);
  std::printf("# baseline: cuBLAS on ember's compute stream, float32 (TF32 %s in ember)\n",
              cuda::allow_tf32() ? "on" : "off");
  report.table("TFLOP/s");
  const float one = 1.0f, zero = 0.0f;

  auto add_row = [&](const std::string& name, const std::string& baseline, const Timing& t,
                     const Timing& base, double flops, double diff) {
    report.add(bench::ratio_row(name, baseline, t, base, flops, "", {{"max_relative_diff", diff}}));
  };

  const std::vector<GemmShape> shapes = {
      {1, 128, 784, 256}, {1, 4096, 4096, 4096}, {1, 64, 1024, 1024}, {32, 128, 64, 128}};
  for (const GemmShape& s : shapes) {
    const bool batched = s.batch > 1;
    const Shape a_shape = batched ? Shape{s.batch, s.m, s.k} : Shape{s.m, s.k};
    const Shape b_shape = batched ? Shape{s.batch, s.k, s.n} : Shape{s.k, s.n};
    const Shape c_shape = batched ? Shape{s.batch, s.m, s.n} : Shape{s.m, s.n};
    const std::vector<float> a = host_values(shape_numel(a_shape), 1);
    const std::vector<float> b = host_values(shape_numel(b_shape), 2);
    const Tensor A = Tensor::from_vector(a, a_shape, gpu);
    const Tensor B = Tensor::from_vector(b, b_shape, gpu);
    const Tensor C = empty(c_shape, {.device = gpu});
    const double flops = 2.0 * s.batch * s.m * s.n * s.k;

    // Row-major C = A B is column-major C^T = B^T A^T: B first, leading dimensions n, k.
    auto raw_matmul = [&] {
      if (!batched) {
        EMBER_CUBLAS_CHECK(cublasSgemm(raw, CUBLAS_OP_N, CUBLAS_OP_N, s.n, s.m, s.k, &one,
                                       B.data<float>(), s.n, A.data<float>(), s.k, &zero,
                                       C.data<float>(), s.n));
      } else {
        EMBER_CUBLAS_CHECK(cublasSgemmStridedBatched(
            raw, CUBLAS_OP_N, CUBLAS_OP_N, s.n, s.m, s.k, &one, B.data<float>(), s.n,
            s.k * s.n, A.data<float>(), s.k, s.m * s.k, &zero, C.data<float>(), s.n,
            s.m * s.n, s.batch));
      }
    };

    // Correctness first: the raw call against f64 dot products at a few places, then
    // ember's result against the raw one everywhere.
    raw_matmul();
    const std::vector<float> c = C.cpu().to_vector<float>();
    for (int t = 0; t < 16; ++t) {
      const int64_t bi = t % s.batch, i = (t * 37) % s.m, j = (t * 101) % s.n;
      double want = 0.0, mag = 0.0;
      for (int64_t kk = 0; kk < s.k; ++kk) {
        const double p = static_cast<double>(a[(bi * s.m + i) * s.k + kk]) *
                         b[(bi * s.k + kk) * s.n + j];
        want += p;
        mag += std::abs(p);
      }
      const double got = c[(bi * s.m + i) * s.n + j];
      if (!(std::abs(got - want) <= 1e-5 * mag + 1e-6)) {
        report.fail("raw cuBLAS " + shape_label(s) + " gives " + std::to_string(got) + " at [" +
                    std::to_string(bi) + ", " + std::to_string(i) + ", " + std::to_string(j) +
                    "], f64 reference " + std::to_string(want));
        break;
      }
    }
    const double diff = max_relative_diff(matmul(A, B), c);
    if (!(diff <= 1e-5)) {
      report.fail("matmul " + shape_label(s) + ": ember differs from raw cuBLAS by " +
                  std::to_string(diff) + " (relative to the largest output)");
      continue;
    }
    add_row("matmul " + shape_label(s), batched ? "cublasSgemmStridedBatched" : "cublasSgemm",
            bench::time_on_stream(stream, [&] { (void)matmul(A, B); }, opts),
            bench::time_on_stream(stream, raw_matmul, opts), flops, diff);

    if (batched) continue;
    // linear: x [m, k], weight [n, k], bias [n]; y = x weight^T (+ bias): [m, n].
    const std::vector<float> w = host_values(s.n * s.k, 3), bias = host_values(s.n, 4);
    const Tensor W = Tensor::from_vector(w, {s.n, s.k}, gpu);
    const Tensor Bias = Tensor::from_vector(bias, {s.n}, gpu);
    // Column-major y^T = W x^T: W is column-major [k, n] read transposed, x^T is [k, m].
    auto raw_linear = [&] {
      EMBER_CUBLAS_CHECK(cublasSgemm(raw, CUBLAS_OP_T, CUBLAS_OP_N, s.n, s.m, s.k, &one,
                                     W.data<float>(), s.k, A.data<float>(), s.k, &zero,
                                     C.data<float>(), s.n));
    };
    raw_linear();
    std::vector<float> y = C.cpu().to_vector<float>();
    const std::string label = "x " + shape_str({s.m, s.k}) + ", weight " + shape_str({s.n, s.k});
    const double diff_plain = max_relative_diff(linear(A, W), y);
    for (int64_t i = 0; i < s.m; ++i) {
      for (int64_t j = 0; j < s.n; ++j) y[i * s.n + j] += bias[j];
    }
    const double diff_bias = max_relative_diff(linear(A, W, Bias), y);
    if (!(diff_plain <= 1e-5) || !(diff_bias <= 1e-5)) {
      report.fail("linear " + label + ": ember differs from raw cuBLAS by " +
                  std::to_string(std::max(diff_plain, diff_bias)));
      continue;
    }
    const Timing base = bench::time_on_stream(stream, raw_linear, opts);
    add_row("linear " + label, "cublasSgemm (T, N)",
            bench::time_on_stream(stream, [&] { (void)linear(A, W); }, opts), base, flops,
            diff_plain);
    // The bias costs ember a broadcast copy before the GEMM; the baseline has none.
    add_row("linear + bias " + label, "cublasSgemm (T, N), no bias",
            bench::time_on_stream(stream, [&] { (void)linear(A, W, Bias); }, opts), base,
            flops, diff_bias);
  }
  EMBER_CUBLAS_CHECK(cublasDestroy(raw));
}

}  // namespace

int main(int argc, char** argv) {
  return ember::bench::run_benchmark(argc, argv, "bench_matmul",
                                     "ember::matmul and ember::linear against raw cuBLAS", run);
}
