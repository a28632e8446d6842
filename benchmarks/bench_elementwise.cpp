// Elementwise ops on the GPU, through the public ops (op overhead included) and through
// the CUDA kernels directly, for 1M and 64M floats, against the device's copy bandwidth.
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "ember/benchmarks/harness.h"
#include "ember/core/autograd.h"
#include "ember/core/base/cuda_check.h"
#include "ember/core/cuda_context.h"
#include "ember/core/ops.h"
#include "ember/core/ops/op_utils.h"
#include "ember/core/tensor.h"
#include "ember/kernels/cuda/elementwise.cuh"

namespace {

using namespace ember;
using bench::Report;
using bench::Row;
using bench::Timing;
using kernels::BinaryOp;
using kernels::UnaryOp;

constexpr size_t kCopyBytes = size_t{256} << 20;
constexpr int64_t kRowLength = 1024;  // the broadcast row vector's length
constexpr int kSamples = 4096;        // outputs compared with the CPU op per check

// Reproducible values in [-4, 4): both signs, and the region where sigmoid/gelu curve.
std::vector<float> host_values(int64_t n, uint64_t seed) {
  std::vector<float> v(static_cast<size_t>(n));
  uint64_t s = seed * 0x9E3779B97F4A7C15ull + 1;
  for (auto& x : v) {
    s = s * 6364136223846793005ull + 1442695040888963407ull;
    x = static_cast<float>(static_cast<double>(s >> 40) / static_cast<double>(1ull << 24)) * 8.0f -
        4.0f;
  }
  return v;
}

std::vector<int64_t> sample_indices(int64_t n) {
  std::vector<int64_t> idx = {0, n - 1};
  for (int64_t k = 0; k < kSamples; ++k) {
    idx.push_back(static_cast<int64_t>((static_cast<uint64_t>(k) * 2654435761ull) %
                                       static_cast<uint64_t>(n)));
  }
  return idx;
}

std::vector<float> gather(const std::vector<float>& v, const std::vector<int64_t>& idx,
                          int64_t modulo = 0) {
  std::vector<float> out;
  out.reserve(idx.size());
  for (int64_t i : idx) out.push_back(v[static_cast<size_t>(modulo ? i % modulo : i)]);
  return out;
}

Tensor cpu_tensor(const std::vector<float>& v) {
  return Tensor::from_vector(v, {static_cast<int64_t>(v.size())});
}

// One op measured two ways. `bytes_per_elem` is the least DRAM traffic per output
// element (reads + writes); `extra_bytes` is traffic that does not scale with n.
struct Case {
  std::string name;
  double bytes_per_elem = 8.0;
  double extra_bytes = 0.0;
  std::function<Tensor()> public_op;   // ember's op, returns its output
  std::function<void()> kernel;        // the kernel entry point, writes kernel_out
  Tensor kernel_out;
  // The CPU op on the inputs at `idx`: the expected outputs there.
  std::function<std::vector<float>(const std::vector<int64_t>&)> reference;
  double tolerance = 1e-5;  // |got - want| <= tol * (1 + |want|)
};

bool check_sample(Report& report, const std::string& what, const Tensor& out,
                  const std::vector<int64_t>& idx, const std::vector<float>& want,
                  double tol) {
  const Tensor host = out.contiguous().cpu();
  const float* got = host.data<float>();
  double worst = 0.0;
  int64_t worst_at = -1;
  for (size_t k = 0; k < idx.size(); ++k) {
    const double g = got[idx[k]], w = want[k];
    const double err = std::abs(g - w) / (1.0 + std::abs(w));
    if (!(err <= worst)) {  // also catches NaN
      worst = std::isnan(err) ? INFINITY : err;
      worst_at = idx[k];
    }
  }
  if (worst <= tol) return true;
  report.fail(what + ": output differs from the CPU op (relative error " + std::to_string(worst) +
              " at element " + std::to_string(worst_at) + ", tolerance " + std::to_string(tol) +
              ")");
  return false;
}

std::string size_label(int64_t n) { return std::to_string(n >> 20) + "M"; }

void run(Report& report) {
  report.begin();
  const cudaStream_t stream = cuda::compute_stream(0);
  const bench::Options& opts = report.options();

  // Scratch for the copy baselines: the largest case moves 12 bytes per element of 64M
  // floats, so its copy moves 6 bytes per element each way.
  const size_t scratch_bytes = std::max<size_t>(kCopyBytes, size_t{6} * (size_t{64} << 20));
  void* copy_src = nullptr;
  void* copy_dst = nullptr;
  EMBER_CUDA_CHECK(cudaMalloc(&copy_src, scratch_bytes));
  EMBER_CUDA_CHECK(cudaMalloc(&copy_dst, scratch_bytes));
  EMBER_CUDA_CHECK(cudaMemsetAsync(copy_src, 0, scratch_bytes, stream));
  auto time_copy = [&](size_t bytes) {
    return bench::time_on_stream(
        stream,
        [&] {
          EMBER_CUDA_CHECK(
              cudaMemcpyAsync(copy_dst, copy_src, bytes, cudaMemcpyDeviceToDevice, stream));
        },
        opts);
  };
  const Timing copy = time_copy(kCopyBytes);
  const double copy_gbps = 2.0 * kCopyBytes / (copy.median_ms * 1e-3) / 1e9;
  std::printf("# copy bandwidth: %.1f GB/s (cudaMemcpyAsync device-to-device of 256 MiB in "
              "%.4g ms, read + write bytes)\n",
              copy_gbps, copy.median_ms);
  std::printf("# baseline: a device-to-device copy moving the same bytes; %% = share of the "
              "256 MiB copy bandwidth\n");
  report.set("copy_bandwidth", {{"bytes", kCopyBytes},
                                {"ms", copy.median_ms},
                                {"gbps", copy_gbps},
                                {"method", "cudaMemcpyAsync device-to-device, read + write"}});
  report.table("GB/s (share of copy)");

  std::map<size_t, double> copy_ms;  // baseline per traffic size
  for (const int64_t n : {int64_t{1} << 20, int64_t{64} << 20}) {
    const std::string label = size_label(n);
    const std::vector<float> x = host_values(n, 1), other = host_values(n, 2),
                             grad_y = host_values(n, 3), row = host_values(kRowLength, 4);
    const Device gpu = Device::cuda(0);
    const Tensor X = Tensor::from_vector(x, {n}, gpu);
    const Tensor B = Tensor::from_vector(other, {n}, gpu);
    const Tensor GY = Tensor::from_vector(grad_y, {n}, gpu);
    const Tensor R = Tensor::from_vector(row, {kRowLength}, gpu);
    const Tensor X2 = X.view({n / kRowLength, kRowLength});
    const Tensor relu_y = relu(X);
    Tensor XG = X.detach();
    XG.requires_grad_();
    const Tensor YG = relu(XG);  // the graph the public backward runs over
    const auto idx = sample_indices(n);

    auto out = [&] { return empty({n}, {.device = gpu}); };
    auto unary_case = [&](const std::string& name, UnaryOp op, kernels::UnaryParams p,
                          std::function<Tensor(const Tensor&)> fn, double tol) {
      Case c;
      c.name = name;
      c.public_op = [fn, &X] { return fn(X); };
      c.kernel_out = out();
      c.kernel = [op, p, &X, y = c.kernel_out, stream, n] {
        kernels::cuda::unary_forward(stream, op, X.data<float>(), y.data<float>(), n, p);
      };
      c.reference = [fn, &x](const std::vector<int64_t>& i) {
        return fn(cpu_tensor(gather(x, i))).to_vector<float>();
      };
      c.tolerance = tol;
      return c;
    };

    std::vector<Case> cases;
    cases.push_back(unary_case("relu fwd", UnaryOp::Relu, {},
                               [](const Tensor& t) { return relu(t); }, 0.0));
    {
      Case c;
      c.name = "relu bwd";
      c.bytes_per_elem = 12.0;  // reads x and grad_y, writes grad_x
      c.public_op = [&] { return autograd::grad({YG}, {XG}, {GY}, /*retain_graph=*/true)[0]; };
      c.kernel_out = out();
      c.kernel = [&, gx = c.kernel_out] {
        kernels::cuda::unary_backward(stream, UnaryOp::Relu, X.data<float>(),
                                      relu_y.data<float>(), GY.data<float>(),
                                      gx.data<float>(), n, {});
      };
      c.reference = [&](const std::vector<int64_t>& i) {
        Tensor xs = cpu_tensor(gather(x, i));
        xs.requires_grad_();
        return autograd::grad({relu(xs)}, {xs}, {cpu_tensor(gather(grad_y, i))})[0]
            .to_vector<float>();
      };
      c.tolerance = 0.0;
      cases.push_back(std::move(c));
    }
    cases.push_back(unary_case("sigmoid", UnaryOp::Sigmoid, {},
                               [](const Tensor& t) { return sigmoid(t); }, 1e-5));
    cases.push_back(unary_case("gelu", UnaryOp::Gelu, {},
                               [](const Tensor& t) { return gelu(t); }, 1e-5));
    {
      Case c;
      c.name = "add";
      c.bytes_per_elem = 12.0;
      c.public_op = [&] { return add(X, B); };
      c.kernel_out = out();
      c.kernel = [&, y = c.kernel_out, bi = detail::broadcast_index({n}, X, B)] {
        kernels::cuda::binary<float>(stream, BinaryOp::Add, X.data<float>(), B.data<float>(),
                                     y.data<float>(), bi, n);
      };
      c.reference = [&](const std::vector<int64_t>& i) {
        return add(cpu_tensor(gather(x, i)), cpu_tensor(gather(other, i))).to_vector<float>();
      };
      c.tolerance = 0.0;
      cases.push_back(std::move(c));
    }
    {
      Case c;
      c.name = "add row [" + std::to_string(n / kRowLength) + ", " +
               std::to_string(kRowLength) + "] + [" + std::to_string(kRowLength) + "]";
      c.extra_bytes = 4.0 * kRowLength;
      c.public_op = [&] { return add(X2, R); };
      c.kernel_out = out();
      c.kernel = [&, y = c.kernel_out,
                  bi = detail::broadcast_index({n / kRowLength, kRowLength}, X2, R)] {
        kernels::cuda::binary<float>(stream, BinaryOp::Add, X2.data<float>(), R.data<float>(),
                                     y.data<float>(), bi, n);
      };
      c.reference = [&](const std::vector<int64_t>& i) {
        return add(cpu_tensor(gather(x, i)), cpu_tensor(gather(row, i, kRowLength)))
            .to_vector<float>();
      };
      c.tolerance = 0.0;
      cases.push_back(std::move(c));
    }
    cases.push_back(unary_case("mul scalar", UnaryOp::MulScalar, {0.5, 0.0},
                               [](const Tensor& t) { return mul(t, 0.5); }, 0.0));

    for (Case& c : cases) {
      const std::string name = c.name + " " + label;
      const double bytes = c.bytes_per_elem * static_cast<double>(n) + c.extra_bytes;
      // Correctness first: both paths against the CPU op on a sample of elements.
      const std::vector<float> want = c.reference(idx);
      const Tensor got = c.public_op();
      c.kernel();
      EMBER_CUDA_CHECK(cudaStreamSynchronize(stream));
      const bool ok = check_sample(report, name + " (ember op)", got, idx, want, c.tolerance) &&
                      check_sample(report, name + " (kernel)", c.kernel_out, idx, want,
                                   c.tolerance);
      if (!ok) continue;

      // The baseline moves the same bytes (half read, half written) with the copy engine.
      const size_t copy_bytes = static_cast<size_t>(bytes / 2.0) / 256 * 256;
      if (!copy_ms.count(copy_bytes)) copy_ms[copy_bytes] = time_copy(copy_bytes).median_ms;
      const double base_ms = copy_ms[copy_bytes];

      auto add_row = [&](const std::string& path, const Timing& t) {
        Row r;
        r.name = name + " (" + path + ")";
        r.ember = t;
        r.baseline = "cudaMemcpyAsync D2D of the same bytes";
        r.baseline_ms = base_ms;
        r.unit = "GB/s";
        r.throughput = bytes / (t.median_ms * 1e-3) / 1e9;
        char share[32];
        std::snprintf(share, sizeof share, "%.0f%% of copy", 100.0 * r.throughput / copy_gbps);
        r.note = share;
        r.extra = {{"elements", n},
                   {"bytes", bytes},
                   {"path", path},
                   {"fraction_of_copy_bandwidth", r.throughput / copy_gbps}};
        report.add(std::move(r));
      };
      add_row("ember op", bench::time_on_stream(stream, [&] { (void)c.public_op(); }, opts));
      add_row("kernel", bench::time_on_stream(stream, c.kernel, opts));
    }
  }
  EMBER_CUDA_CHECK(cudaFree(copy_src));
  EMBER_CUDA_CHECK(cudaFree(copy_dst));
}

}  // namespace

int main(int argc, char** argv) {
  return ember::bench::run_benchmark(
      argc, argv, "bench_elementwise",
      "ember's elementwise ops and kernels against the device's copy bandwidth", run);
}
