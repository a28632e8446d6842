// nn::Linear on CUDA tensors (a forward, and a training step: forward, then backward of a
// fixed upstream gradient into the input, weight and bias) against the same products made
// with raw library calls on the same stream: cuBLAS for float32, cuBLASLt with the
// algorithm ember's heuristic query picks for float16 and bfloat16. The ratio ember / raw
// is the framework's cost (target <= 1.05).
#include <cublasLt.h>
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
using bench::Json;
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

// Host copy as float (float16 and bfloat16 widen exactly).
std::vector<float> to_host(const Tensor& t) {
  return t.contiguous().cpu().to(kFloat32).to_vector<float>();
}

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

// --- the 16-bit baseline's own cuBLASLt objects ----------------------------------------------

// One cuBLASLt handle or descriptor, destroyed with its owner (a failure there is reported,
// not thrown: destructors also run while an exception unwinds).
template <typename T, cublasStatus_t (*kDestroy)(T)>
class LtObject {
 public:
  explicit LtObject(const char* destroy_name) : destroy_name_(destroy_name) {}
  LtObject(const LtObject&) = delete;
  LtObject& operator=(const LtObject&) = delete;
  ~LtObject() {
    if (p_ == nullptr) return;
    const cublasStatus_t st = kDestroy(p_);
    if (st != CUBLAS_STATUS_SUCCESS) {
      std::fprintf(stderr, "bench_linear warning: %s failed: %s\n", destroy_name_,
                   cublasGetStatusString(st));
    }
  }
  T* out() { return &p_; }
  T get() const { return p_; }

 private:
  T p_ = nullptr;
  const char* destroy_name_;
};

using LtHandle = LtObject<cublasLtHandle_t, cublasLtDestroy>;
using LtDesc = LtObject<cublasLtMatmulDesc_t, cublasLtMatmulDescDestroy>;
using LtLayout = LtObject<cublasLtMatrixLayout_t, cublasLtMatrixLayoutDestroy>;
using LtPreference = LtObject<cublasLtMatmulPreference_t, cublasLtMatmulPreferenceDestroy>;

// The workspace limit ember's cuBLASLt calls pass to the heuristic (kernels/cublas/gemm_lt.h:
// none), so that the heuristic's first answer is the algorithm ember runs.
constexpr uint64_t kLtWorkspaceBytes = 0;

// One column-major cuBLASLt matmul as a hand-written program makes it: D [m, n] =
// op_a(A) op_b(B) (+ epilogue), A/B/D and the bias in `type`, compute CUBLAS_COMPUTE_32F with
// float alpha and beta, the heuristic's first algorithm for no workspace. `bias` is the
// epilogue's vector (BIAS: read, one per row of D; BGRADB: written, the sums of op_b(B) over
// k, one per column of D), set once: the pointers never change.
struct LtMatmul {
  LtDesc desc{"cublasLtMatmulDescDestroy"};
  LtLayout a{"cublasLtMatrixLayoutDestroy"}, b{"cublasLtMatrixLayoutDestroy"},
      d{"cublasLtMatrixLayoutDestroy"};
  cublasLtMatmulAlgo_t algo{};
  std::string error;  // why there is no algorithm ("" when there is one)

  LtMatmul(cublasLtHandle_t lt, cudaDataType_t type, cublasOperation_t op_a,
           cublasOperation_t op_b, int64_t m, int64_t n, int64_t k, int64_t lda, int64_t ldb,
           int64_t ldd, cublasLtEpilogue_t epilogue, const void* bias) {
    EMBER_CUBLAS_CHECK(cublasLtMatmulDescCreate(desc.out(), CUBLAS_COMPUTE_32F, CUDA_R_32F));
    EMBER_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(desc.get(), CUBLASLT_MATMUL_DESC_TRANSA,
                                                      &op_a, sizeof(op_a)));
    EMBER_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(desc.get(), CUBLASLT_MATMUL_DESC_TRANSB,
                                                      &op_b, sizeof(op_b)));
    EMBER_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(
        desc.get(), CUBLASLT_MATMUL_DESC_EPILOGUE, &epilogue, sizeof(epilogue)));
    if (epilogue != CUBLASLT_EPILOGUE_DEFAULT) {
      EMBER_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(
          desc.get(), CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &type, sizeof(type)));
    }
    // Stored shapes: op(A) is [m, k], op(B) is [k, n].
    const auto u = [](int64_t v) { return static_cast<uint64_t>(v); };
    const bool ta = op_a != CUBLAS_OP_N, tb = op_b != CUBLAS_OP_N;
    EMBER_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(a.out(), type, u(ta ? k : m), u(ta ? m : k),
                                                  lda));
    EMBER_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(b.out(), type, u(tb ? n : k), u(tb ? k : n),
                                                  ldb));
    EMBER_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(d.out(), type, u(m), u(n), ldd));

    LtPreference pref{"cublasLtMatmulPreferenceDestroy"};
    EMBER_CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(pref.out()));
    const uint64_t ws = kLtWorkspaceBytes;
    EMBER_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(
        pref.get(), CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof(ws)));
    cublasLtMatmulHeuristicResult_t result{};
    int returned = 0;
    const cublasStatus_t st = cublasLtMatmulAlgoGetHeuristic(
        lt, desc.get(), a.get(), b.get(), d.get(), d.get(), pref.get(), 1, &result, &returned);
    if (st != CUBLAS_STATUS_SUCCESS || returned < 1) {
      error = std::string("cublasLtMatmulAlgoGetHeuristic found no algorithm for the "
                          "column-major [") +
              std::to_string(m) + ", " + std::to_string(k) + "] x [" + std::to_string(k) +
              ", " + std::to_string(n) + "] (epilogue " + std::to_string(epilogue) + ", " +
              std::to_string(kLtWorkspaceBytes) + " bytes of workspace): " +
              cublasGetStatusString(st) + ", " + std::to_string(returned) + " results";
      return;
    }
    algo = result.algo;
    // As ember does: the bias pointer is set after the heuristic's query.
    if (epilogue != CUBLASLT_EPILOGUE_DEFAULT) {
      EMBER_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(
          desc.get(), CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof(bias)));
    }
  }

  // D = op_a(A) op_b(B) (beta = 0), on `stream`.
  void run(cublasLtHandle_t lt, const void* a_data, const void* b_data, void* d_data,
           cudaStream_t stream) const {
    const float one = 1.0f, zero = 0.0f;
    EMBER_CUBLAS_CHECK(cublasLtMatmul(lt, desc.get(), &one, a_data, a.get(), b_data, b.get(),
                                      &zero, d_data, d.get(), d_data, d.get(), &algo, nullptr,
                                      kLtWorkspaceBytes, stream));
  }
};

// --- checks shared by every dtype ----------------------------------------------------------

// The raw outputs against the f64 reference at spread places. Returns "" or what failed.
std::string check_raw(const HostLinear& host, const std::vector<float>& ry,
                      const std::vector<float>& rdx, const std::vector<float>& rdw,
                      const std::vector<float>& rdb, double rtol) {
  std::string failed = spot_check("raw y", ry, host.n, host.out, rtol,
                                  [&](auto i, auto j) { return host.y(i, j); });
  if (failed.empty()) {
    failed = spot_check("raw dx", rdx, host.n, host.in, rtol,
                        [&](auto i, auto k) { return host.dx(i, k); });
  }
  if (failed.empty()) {
    failed = spot_check("raw dw", rdw, host.out, host.in, rtol,
                        [&](auto j, auto k) { return host.dw(j, k); });
  }
  if (failed.empty()) {
    failed = spot_check("raw db", rdb, host.out, 1, rtol,
                        [&](auto j, auto k) { return host.db(j, k); });
  }
  return failed;
}

// ember's y, dx, dw and db against the raw ones everywhere (relative to the largest value).
struct EmberDiff {
  double y = 0, dx = 0, dw = 0, db = 0;
  double max() const { return std::max({y, dx, dw, db}); }
  Json json() const { return {{"y", y}, {"dx", dx}, {"dw", dw}, {"db", db}}; }
  std::string str() const {
    return "y " + std::to_string(y) + ", dx " + std::to_string(dx) + ", dw " +
           std::to_string(dw) + ", db " + std::to_string(db);
  }
};

// One training step of ember's layer (forward, backward of dy), compared with the raw
// outputs. Returns "" or what failed; *diff gets the differences.
std::string check_ember(nn::Linear& layer, Tensor& x, const Tensor& dy,
                        const std::vector<float>& ry, const std::vector<float>& rdx,
                        const std::vector<float>& rdw, const std::vector<float>& rdb,
                        double rtol, const char* raw_name, EmberDiff* diff) {
  layer.zero_grad();
  x.set_grad(Tensor());
  Tensor ember_y = layer.forward(x);
  ember_y.backward(dy);
  const Tensor ember_dx = x.grad(), ember_dw = layer.weight().grad(),
               ember_db = layer.bias().grad();
  if (!ember_dx.defined() || !ember_dw.defined() || !ember_db.defined()) {
    return "ember's backward left a gradient undefined";
  }
  diff->y = bench::max_relative_diff(to_host(ember_y), ry);
  diff->dx = bench::max_relative_diff(to_host(ember_dx), rdx);
  diff->dw = bench::max_relative_diff(to_host(ember_dw), rdw);
  diff->db = bench::max_relative_diff(to_host(ember_db), rdb);
  if (!(diff->max() <= rtol)) {
    return std::string("ember differs from ") + raw_name + " by " +
           std::to_string(diff->max()) + " (relative to the largest value; " + diff->str() +
           ")";
  }
  return "";
}

// The layer, its operands (x requires grad, so that backward computes dx too; a fixed
// upstream gradient dy) and their host copies, in `dtype`: values are rounded to it
// before the host reads them back, so the f64 reference sums exactly what the GPU sees.
struct LinearSetup {
  nn::Linear layer;
  HostLinear host;
  Tensor x, dy;

  LinearSetup(const LinearCase& lc, DType dtype, Device gpu) : layer(lc.in, lc.out) {
    layer.to(gpu);
    if (dtype != kFloat32) layer.to(dtype);
    host.n = lc.n;
    host.in = lc.in;
    host.out = lc.out;
    x = Tensor::from_vector(bench::host_values(lc.n * lc.in, 1, 1.0f), {lc.n, lc.in}, gpu)
            .to(dtype)
            .detach();
    x.requires_grad_();
    dy = Tensor::from_vector(bench::host_values(lc.n * lc.out, 2, 1.0f), {lc.n, lc.out}, gpu)
             .to(dtype)
             .detach();
    host.x = to_host(x);
    host.dy = to_host(dy);
    host.w = to_host(layer.weight());
    host.b = to_host(layer.bias());
  }

  void step() {
    layer.zero_grad();
    x.set_grad(Tensor());
    Tensor y = layer.forward(x);
    y.backward(dy);
  }
  void forward() {
    NoGradGuard no_grad;
    (void)layer.forward(x);
  }
};

std::string case_label(const LinearCase& lc, DType dtype) {
  return std::string(lc.label) + " x " + shape_str({lc.n, lc.in}) + ", weight " +
         shape_str({lc.out, lc.in}) + ", " + dtype_name(dtype);
}

void add_rows(Report& report, const LinearCase& lc, DType dtype, const std::string& label,
              const EmberDiff& diff, const char* fwd_baseline, const Timing& fwd,
              const Timing& raw_fwd, const char* step_baseline, const Timing& step,
              const Timing& raw_step) {
  const Json extra = {{"case", lc.label},
                      {"dtype", dtype_name(dtype)},
                      {"batch", lc.n},
                      {"in_features", lc.in},
                      {"out_features", lc.out},
                      {"max_relative_diff", diff.json()}};
  const double gemm_flops = 2.0 * lc.n * lc.in * lc.out;
  report.add(bench::ratio_row(label + ", forward", fwd_baseline, fwd, raw_fwd, gemm_flops, "",
                              extra));
  report.add(bench::ratio_row(label + ", train step", step_baseline, step, raw_step,
                              3.0 * gemm_flops, "", extra));
}

// float32: raw cublasSgemm / cublasSgemv in ember's math mode.
void float32_case(Report& report, const CublasHandle& raw, const LinearCase& lc, bool tf32,
                  Device gpu, cudaStream_t stream) {
  const bench::Options& opts = report.options();
  const int n = static_cast<int>(lc.n), in = static_cast<int>(lc.in),
            out = static_cast<int>(lc.out);
  const std::string label = case_label(lc, kFloat32);
  const double rtol = tf32 ? 3e-3 : 1e-5;
  LinearSetup su(lc, kFloat32, gpu);

  // The baseline reads x, dy and the layer's weight and bias in place and writes its own
  // outputs, all allocated before anything is timed.
  const Tensor ones = Tensor::from_vector(std::vector<float>(static_cast<size_t>(n), 1.0f),
                                          {lc.n}, gpu);
  const Tensor raw_y = empty({lc.n, lc.out}, {.device = gpu});
  const Tensor raw_dx = empty({lc.n, lc.in}, {.device = gpu});
  const Tensor raw_dw = empty({lc.out, lc.in}, {.device = gpu});
  const Tensor raw_db = empty({lc.out}, {.device = gpu});
  const float* xp = su.x.data<float>();
  const float* wp = su.layer.weight().data<float>();
  const float* bp = su.layer.bias().data<float>();
  const float* dyp = su.dy.data<float>();
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
  std::string failed = check_raw(su.host, ry, rdx, rdw, rdb, rtol);
  EmberDiff diff;
  if (failed.empty()) {
    failed = check_ember(su.layer, su.x, su.dy, ry, rdx, rdw, rdb, rtol, "raw cuBLAS", &diff);
  }
  if (!failed.empty()) {
    report.fail("Linear " + label + ": " + failed);
    return;
  }
  add_rows(report, lc, kFloat32, label, diff, "cublasSgemm bias (k = 1) + cublasSgemm",
           bench::time_on_stream(stream, [&] { su.forward(); }, opts),
           bench::time_on_stream(stream, raw_forward, opts),
           "forward + cublasSgemm dX, dW + cublasSgemv db",
           bench::time_on_stream(stream, [&] { su.step(); }, opts),
           bench::time_on_stream(stream, raw_step, opts));
}

// float16 / bfloat16: what ember's Linear runs on CUDA, written directly against cuBLASLt:
// forward one matmul with the BIAS epilogue, backward dX by a plain matmul and dW by a
// matmul whose BGRADB epilogue writes db in the same call.
void reduced_case(Report& report, cublasLtHandle_t lt, const LinearCase& lc, DType dtype,
                  Device gpu, cudaStream_t stream) {
  const bench::Options& opts = report.options();
  const std::string label = case_label(lc, dtype);
  const cudaDataType_t type = dtype == kFloat16 ? CUDA_R_16F : CUDA_R_16BF;
  // Raw against the f64 reference, relative to the largest term-magnitude sum: the
  // products accumulate in float, the outputs are rounded to the dtype (float16 keeps 11
  // significant bits, bfloat16 8). ember against raw, relative to the largest value: the
  // same products, perhaps summed in another order, each output rounded once.
  const double raw_rtol = dtype == kFloat16 ? 5e-3 : 2e-2;
  const double ember_rtol = 2e-2;
  LinearSetup su(lc, dtype, gpu);

  const TensorOptions o{.dtype = dtype, .device = gpu};
  const Tensor raw_y = empty({lc.n, lc.out}, o), raw_dx = empty({lc.n, lc.in}, o),
               raw_dw = empty({lc.out, lc.in}, o), raw_db = empty({lc.out}, o);
  const void* xp = su.x.data_ptr();
  const void* wp = su.layer.weight().data_ptr();
  const void* bp = su.layer.bias().data_ptr();
  const void* dyp = su.dy.data_ptr();

  // Row-major [r, c] is column-major [c, r] (as in kernels/cublas/gemm_lt.cpp, C^T =
  // op(B)^T op(A)^T): x^T [in, n], w^T [in, out], y^T [out, n], dy^T [out, n].
  // y^T [out, n] = (w^T)^T x^T + b: the bias per row of D, one per output feature.
  const LtMatmul fwd(lt, type, CUBLAS_OP_T, CUBLAS_OP_N, lc.out, lc.n, lc.in, lc.in, lc.in,
                     lc.out, CUBLASLT_EPILOGUE_BIAS, bp);
  // dx^T [in, n] = w^T [in, out] dy^T [out, n]
  const LtMatmul bwd_data(lt, type, CUBLAS_OP_N, CUBLAS_OP_N, lc.in, lc.n, lc.out, lc.in,
                          lc.out, lc.in, CUBLASLT_EPILOGUE_DEFAULT, nullptr);
  // dw^T [in, out] = x^T [in, n] (dy^T)^T [n, out], k = n; BGRADB sums op(B) = dy over k
  // into db [out], one per column of D.
  const LtMatmul bwd_weight(lt, type, CUBLAS_OP_N, CUBLAS_OP_T, lc.in, lc.out, lc.n, lc.in,
                            lc.out, lc.in, CUBLASLT_EPILOGUE_BGRADB, raw_db.data_ptr());
  for (const LtMatmul* mm : {&fwd, &bwd_data, &bwd_weight}) {
    if (!mm->error.empty()) {
      report.fail("Linear " + label + ": " + mm->error);
      return;
    }
  }
  auto raw_forward = [&] { fwd.run(lt, wp, xp, raw_y.data_ptr(), stream); };
  auto raw_step = [&] {
    raw_forward();
    bwd_data.run(lt, wp, dyp, raw_dx.data_ptr(), stream);
    bwd_weight.run(lt, xp, dyp, raw_dw.data_ptr(), stream);
  };

  // Correctness first, as for float32. A cuBLASLt call that refuses this layout or epilogue
  // fails the case, not the run.
  try {
    raw_step();
    EMBER_CUDA_CHECK(cudaStreamSynchronize(stream));
  } catch (const Error& e) {
    report.fail("Linear " + label + ": the raw cuBLASLt calls failed: " + e.what());
    return;
  }
  const std::vector<float> ry = to_host(raw_y), rdx = to_host(raw_dx), rdw = to_host(raw_dw),
                           rdb = to_host(raw_db);
  std::string failed = check_raw(su.host, ry, rdx, rdw, rdb, raw_rtol);
  EmberDiff diff;
  if (failed.empty()) {
    failed = check_ember(su.layer, su.x, su.dy, ry, rdx, rdw, rdb, ember_rtol, "raw cuBLASLt",
                         &diff);
  }
  if (!failed.empty()) {
    report.fail("Linear " + label + ": " + failed);
    return;
  }
  add_rows(report, lc, dtype, label, diff, "cuBLASLt matmul, BIAS epilogue",
           bench::time_on_stream(stream, [&] { su.forward(); }, opts),
           bench::time_on_stream(stream, raw_forward, opts),
           "forward + cuBLASLt dX, dW with BGRADB (db)",
           bench::time_on_stream(stream, [&] { su.step(); }, opts),
           bench::time_on_stream(stream, raw_step, opts));
}

// What the fused epilogue buys (Note [Fused linear] in core/ops/linalg.cpp): nn::Linear with
// {.activation = "relu"} (one cuBLASLt call with RELU_BIAS forward; dW with BGRADB backward)
// against the same weights as nn::Linear followed by nn::ReLU (GEMM with the bias epilogue,
// then the ReLU kernel each way), both ember, same run. The outputs and gradients must agree
// (the same products; the ReLU only moves into the epilogue).
void fused_relu_case(Report& report, const LinearCase& lc, DType dtype, const Device& gpu,
                     cudaStream_t stream) {
  const bench::Options& opts = report.options();
  const std::string label = case_label(lc, dtype) + ", ReLU";
  nn::Linear fused(lc.in, lc.out, {.activation = "relu"});
  nn::Linear plain(lc.in, lc.out);
  nn::ReLU relu;
  fused.to(gpu);
  fused.to(dtype);
  plain.to(gpu);
  plain.to(dtype);
  {
    NoGradGuard no_grad;
    plain.weight().copy_(fused.weight());
    plain.bias().copy_(fused.bias());
  }
  Tensor x = Tensor::from_vector(bench::host_values(lc.n * lc.in, 1, 1.0f), {lc.n, lc.in}, gpu)
                 .to(dtype);
  x.requires_grad_();
  const Tensor dy =
      Tensor::from_vector(bench::host_values(lc.n * lc.out, 2, 1.0f), {lc.n, lc.out}, gpu)
          .to(dtype);
  auto step = [&](nn::Module& layer, bool composed) {
    layer.zero_grad();
    x.set_grad(Tensor());
    Tensor y = layer.forward(x);
    if (composed) y = relu.forward(y);
    y.backward(dy);
    return y;
  };
  const Tensor y_fused = step(fused, false);
  const Tensor dx_fused = x.grad(), dw_fused = fused.weight().grad(), db_fused = fused.bias().grad();
  const Tensor y_plain = step(plain, true);
  const Tensor dx_plain = x.grad(), dw_plain = plain.weight().grad(), db_plain = plain.bias().grad();
  const double diff = std::max({bench::max_relative_diff(to_host(y_fused), to_host(y_plain)),
                                bench::max_relative_diff(to_host(dx_fused), to_host(dx_plain)),
                                bench::max_relative_diff(to_host(dw_fused), to_host(dw_plain)),
                                bench::max_relative_diff(to_host(db_fused), to_host(db_plain))});
  const double rtol = dtype == kFloat32 ? 1e-4 : 2e-2;
  if (!(diff <= rtol)) {
    report.fail("Linear " + label + ": the fused layer differs from Linear + ReLU by " +
                std::to_string(diff));
    return;
  }
  auto forward = [&](nn::Module& layer, bool composed) {
    NoGradGuard no_grad;
    Tensor y = layer.forward(x);
    if (composed) y = relu.forward(y);
  };
  const double gemm_flops = 2.0 * lc.n * lc.in * lc.out;
  const Json extra{{"case", lc.label}, {"dtype", dtype_name(dtype)}, {"batch", lc.n},
                   {"in_features", lc.in}, {"out_features", lc.out},
                   {"max_relative_diff", diff}};
  const std::string detail = "baseline: ember's nn::Linear then nn::ReLU";
  report.add(bench::ratio_row(
      label + " fused, forward", "ember Linear + ReLU",
      bench::time_on_stream(stream, [&] { forward(fused, false); }, opts),
      bench::time_on_stream(stream, [&] { forward(plain, true); }, opts), gemm_flops, detail,
      extra));
  report.add(bench::ratio_row(
      label + " fused, train step", "ember Linear + ReLU",
      bench::time_on_stream(stream, [&] { (void)step(fused, false); }, opts),
      bench::time_on_stream(stream, [&] { (void)step(plain, true); }, opts), 3.0 * gemm_flops,
      detail, extra));
}

void run(Report& report) {
  report.begin();
  const int dev = 0;
  const Device gpu = Device::cuda(dev);
  const cudaStream_t stream = cuda::compute_stream(dev);
  // ember's cuBLAS math mode follows cuda::allow_tf32() (off by default); the baseline's
  // handle gets the same.
  const bool tf32 = cuda::allow_tf32();

  CublasHandle raw;
  EMBER_CUBLAS_CHECK(cublasSetStream(raw.get(), stream));
  EMBER_CUBLAS_CHECK(
      cublasSetMathMode(raw.get(), tf32 ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_DEFAULT_MATH));
  EMBER_CUBLAS_CHECK(cublasSetPointerMode(raw.get(), CUBLAS_POINTER_MODE_HOST));
  LtHandle lt{"cublasLtDestroy"};
  EMBER_CUBLAS_CHECK(cublasLtCreate(lt.out()));

  report.set("target_ratio", bench::kTargetRatio);
  report.set("tf32", tf32);
  report.set("lt_workspace_bytes", kLtWorkspaceBytes);
  std::printf("# ember: nn::Linear (bias) on cuda:0; train step = zero_grad, forward, backward of "
              "a fixed dy into x, weight and bias\n");
  std::printf("# baseline float32: own cuBLAS handle on ember's stream (TF32 %s): forward = "
              "cublasSgemm b 1^T (k = 1) then cublasSgemm x W^T (beta = 1); backward = "
              "cublasSgemm dX = dY W, cublasSgemm dW = dY^T X, cublasSgemv db = dY^T 1\n",
              tf32 ? "on" : "off");
  std::printf("# baseline float16 / bfloat16: own cuBLASLt handle on ember's stream, "
              "CUBLAS_COMPUTE_32F, heuristic's first algorithm for %llu bytes of workspace: "
              "forward = one matmul with the BIAS epilogue; backward = matmul dX = dY W, "
              "matmul dW = dY^T X with the BGRADB epilogue writing db\n",
              static_cast<unsigned long long>(kLtWorkspaceBytes));
  report.table("TFLOP/s");

  // The seed models' dense layers (MLP 784-256-10; CNN flatten 64 * 5 * 5 = 1600 -> 128 -> 10)
  // at batch 32 and 128, and one large layer; each in float32, float16 and bfloat16.
  const std::vector<LinearCase> cases = {
      {"seed MLP fc1", 32, 784, 256},   {"seed MLP fc1", 128, 784, 256},
      {"seed MLP fc2", 32, 256, 10},    {"seed MLP fc2", 128, 256, 10},
      {"seed CNN fc1", 32, 1600, 128},  {"seed CNN fc1", 128, 1600, 128},
      {"seed CNN fc2", 32, 128, 10},    {"seed CNN fc2", 128, 128, 10},
      {"large", 512, 4096, 4096},
  };
  for (const LinearCase& lc : cases) {
    for (const DType dtype : {kFloat32, kFloat16, kBFloat16}) {
      // A case that throws (a dtype a library refuses) fails alone; the others still run.
      try {
        if (dtype == kFloat32) {
          float32_case(report, raw, lc, tf32, gpu, stream);
        } else {
          reduced_case(report, lt.get(), lc, dtype, gpu, stream);
        }
      } catch (const Error& e) {
        report.fail("Linear " + case_label(lc, dtype) + ": " + e.what());
      }
    }
  }
  for (const LinearCase& lc : {LinearCase{"seed CNN fc1", 128, 1600, 128},
                               LinearCase{"large", 512, 4096, 4096}}) {
    for (const DType dtype : {kFloat32, kBFloat16}) {
      try {
        fused_relu_case(report, lc, dtype, gpu, stream);
      } catch (const Error& e) {
        report.fail("Linear " + case_label(lc, dtype) + ", ReLU: " + e.what());
      }
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  return ember::bench::run_benchmark(
      argc, argv, "bench_linear",
      "nn::Linear forward and training step against the same raw cuBLAS / cuBLASLt calls", run);
}
