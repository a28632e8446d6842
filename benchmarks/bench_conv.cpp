// nn::Conv2d on CUDA tensors (a forward, and a training step: forward, then backward of a
// fixed upstream gradient into the input, weight and bias) against the same cuDNN calls
// made directly with the benchmark's own handle and descriptors, the algorithms ember
// chose and a workspace allocated once; in float32, float16 and bfloat16. The ratio
// ember / raw is the framework's cost (target <= 1.05).
#include <cudnn.h>
#include <cuda_runtime_api.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "ember/benchmarks/harness.h"
#include "ember/core/autograd.h"
#include "ember/core/base/cuda_check.h"
#include "ember/core/cuda_context.h"
#include "ember/core/ops.h"
#include "ember/core/tensor.h"
#include "ember/kernels/conv_shape.h"
#include "ember/kernels/cudnn/conv.h"
#include "ember/layers/layers.h"

namespace {

using namespace ember;
using bench::Json;
using bench::Ref;
using bench::Report;
using bench::Timing;
using kernels::ConvShape;
namespace kcudnn = kernels::cudnn;


using bench::CudnnHandle;
using bench::TensorDesc;
using FilterDesc = bench::CudnnObject<cudnnFilterDescriptor_t, cudnnDestroyFilterDescriptor>;
using ConvDesc =
    bench::CudnnObject<cudnnConvolutionDescriptor_t, cudnnDestroyConvolutionDescriptor>;

enum Dir { kFwd = 0, kBwdData = 1, kBwdFilter = 2, kDirs = 3 };
constexpr kcudnn::ConvDirection kConvDirection[kDirs] = {
    kcudnn::ConvDirection::kForward, kcudnn::ConvDirection::kBackwardData,
    kcudnn::ConvDirection::kBackwardFilter};

// The cuDNN data type of a benchmarked dtype.
cudnnDataType_t cudnn_type(DType dtype) {
  if (dtype == kFloat16) return CUDNN_DATA_HALF;
  if (dtype == kBFloat16) return CUDNN_DATA_BFLOAT16;
  return CUDNN_DATA_FLOAT;
}

// Descriptors of one convolution as a hand-written cuDNN program would make them: NCHW data
// of type `dt` (float, half or bfloat16), cross-correlation with a float compute type (the
// 16-bit types accumulate in float), one convolution descriptor per direction carrying the
// math type ember runs that direction with (tensor-core math for the 16-bit types).
struct RawConv {
  TensorDesc x{"cudnnDestroyTensorDescriptor"}, y{"cudnnDestroyTensorDescriptor"},
      bias{"cudnnDestroyTensorDescriptor"};
  FilterDesc w{"cudnnDestroyFilterDescriptor"};
  ConvDesc conv[kDirs] = {ConvDesc{"cudnnDestroyConvolutionDescriptor"},
                          ConvDesc{"cudnnDestroyConvolutionDescriptor"},
                          ConvDesc{"cudnnDestroyConvolutionDescriptor"}};

  // The shapes here are small: every size fits in int.
  RawConv(const ConvShape& s, cudnnDataType_t dt,
          const kcudnn::ConvAlgorithm (&algos)[kDirs]) {
    const auto i = [](int64_t v) { return static_cast<int>(v); };
    EMBER_CUDNN_CHECK(cudnnCreateTensorDescriptor(x.out()));
    EMBER_CUDNN_CHECK(cudnnSetTensor4dDescriptor(x.get(), CUDNN_TENSOR_NCHW, dt, i(s.n),
                                                 i(s.c), i(s.h), i(s.w)));
    EMBER_CUDNN_CHECK(cudnnCreateTensorDescriptor(y.out()));
    EMBER_CUDNN_CHECK(cudnnSetTensor4dDescriptor(y.get(), CUDNN_TENSOR_NCHW, dt, i(s.n),
                                                 i(s.o), i(s.out_h), i(s.out_w)));
    EMBER_CUDNN_CHECK(cudnnCreateTensorDescriptor(bias.out()));
    EMBER_CUDNN_CHECK(
        cudnnSetTensor4dDescriptor(bias.get(), CUDNN_TENSOR_NCHW, dt, 1, i(s.o), 1, 1));
    EMBER_CUDNN_CHECK(cudnnCreateFilterDescriptor(w.out()));
    EMBER_CUDNN_CHECK(cudnnSetFilter4dDescriptor(w.get(), dt, CUDNN_TENSOR_NCHW,
                                                 i(s.o), i(s.c / s.groups), i(s.kh), i(s.kw)));
    for (int d = 0; d < kDirs; ++d) {
      EMBER_CUDNN_CHECK(cudnnCreateConvolutionDescriptor(conv[d].out()));
      EMBER_CUDNN_CHECK(cudnnSetConvolution2dDescriptor(
          conv[d].get(), i(s.pad_h), i(s.pad_w), i(s.stride_h), i(s.stride_w), i(s.dil_h),
          i(s.dil_w), CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT));
      EMBER_CUDNN_CHECK(cudnnSetConvolutionGroupCount(conv[d].get(), i(s.groups)));
      EMBER_CUDNN_CHECK(cudnnSetConvolutionMathType(conv[d].get(), algos[d].math));
    }
  }

  // The workspace each direction's algorithm asks for with these descriptors.
  size_t workspace(cudnnHandle_t h, const kcudnn::ConvAlgorithm (&algos)[kDirs], Dir d) const {
    size_t bytes = 0;
    switch (d) {
      case kFwd:
        EMBER_CUDNN_CHECK(cudnnGetConvolutionForwardWorkspaceSize(
            h, x.get(), w.get(), conv[d].get(), y.get(),
            static_cast<cudnnConvolutionFwdAlgo_t>(algos[d].algo), &bytes));
        break;
      case kBwdData:
        EMBER_CUDNN_CHECK(cudnnGetConvolutionBackwardDataWorkspaceSize(
            h, w.get(), y.get(), conv[d].get(), x.get(),
            static_cast<cudnnConvolutionBwdDataAlgo_t>(algos[d].algo), &bytes));
        break;
      case kBwdFilter:
        EMBER_CUDNN_CHECK(cudnnGetConvolutionBackwardFilterWorkspaceSize(
            h, x.get(), y.get(), conv[d].get(), w.get(),
            static_cast<cudnnConvolutionBwdFilterAlgo_t>(algos[d].algo), &bytes));
        break;
      case kDirs:
        break;
    }
    return bytes;
  }
};

const char* algo_name(Dir d, int algo) {
  static const char* const kFwdNames[] = {"IMPLICIT_GEMM", "IMPLICIT_PRECOMP_GEMM", "GEMM",
                                          "DIRECT", "FFT", "FFT_TILING", "WINOGRAD",
                                          "WINOGRAD_NONFUSED"};
  static const char* const kDataNames[] = {"ALGO_0", "ALGO_1", "FFT", "FFT_TILING",
                                           "WINOGRAD", "WINOGRAD_NONFUSED"};
  static const char* const kFilterNames[] = {"ALGO_0", "ALGO_1", "FFT", "ALGO_3",
                                             "WINOGRAD", "WINOGRAD_NONFUSED", "FFT_TILING"};
  switch (d) {
    case kFwd:
      if (algo >= 0 && algo < 8) return kFwdNames[algo];
      break;
    case kBwdData:
      if (algo >= 0 && algo < 6) return kDataNames[algo];
      break;
    case kBwdFilter:
      if (algo >= 0 && algo < 7) return kFilterNames[algo];
      break;
    case kDirs:
      break;
  }
  return "unknown";
}

const char* math_name(cudnnMathType_t m) {
  switch (m) {
    case CUDNN_DEFAULT_MATH: return "DEFAULT";
    case CUDNN_TENSOR_OP_MATH: return "TENSOR_OP";
    case CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION: return "TENSOR_OP_ALLOW_CONVERSION";
    case CUDNN_FMA_MATH: return "FMA";
  }
  return "unknown";
}

// --- data and references ---------------------------------------------------------------------

// Host copy as float (float16 and bfloat16 widen exactly).
std::vector<float> to_host(const Tensor& t) {
  return t.contiguous().cpu().to(kFloat32).to_vector<float>();
}

// Host copies of one case's operands; the references below assume stride 1, dilation 1
// and one group (every case of this benchmark).
struct HostConv {
  ConvShape s;
  std::vector<float> x, w, b, dy;

  float at_x(int64_t n, int64_t c, int64_t h, int64_t w_) const {
    return x[static_cast<size_t>(((n * s.c + c) * s.h + h) * s.w + w_)];
  }
  float at_w(int64_t o, int64_t c, int64_t i, int64_t j) const {
    return w[static_cast<size_t>(((o * s.c + c) * s.kh + i) * s.kw + j)];
  }
  float at_dy(int64_t n, int64_t o, int64_t i, int64_t j) const {
    return dy[static_cast<size_t>(((n * s.o + o) * s.out_h + i) * s.out_w + j)];
  }
  bool in_x(int64_t h, int64_t w_) const { return h >= 0 && h < s.h && w_ >= 0 && w_ < s.w; }

  // y[n, o, i, j] = b[o] + sum_{c, ki, kj} x[n, c, i - pad + ki, j - pad + kj] w[o, c, ki, kj]
  Ref y(int64_t n, int64_t o, int64_t i, int64_t j) const {
    Ref r;
    r.add(b[static_cast<size_t>(o)]);
    for (int64_t c = 0; c < s.c; ++c) {
      for (int64_t ki = 0; ki < s.kh; ++ki) {
        for (int64_t kj = 0; kj < s.kw; ++kj) {
          const int64_t h = i - s.pad_h + ki, w_ = j - s.pad_w + kj;
          if (in_x(h, w_)) r.add(static_cast<double>(at_x(n, c, h, w_)) * at_w(o, c, ki, kj));
        }
      }
    }
    return r;
  }
  // dx[n, c, h, w] = sum_{o, ki, kj} dy[n, o, h + pad - ki, w + pad - kj] w[o, c, ki, kj]
  Ref dx(int64_t n, int64_t c, int64_t h, int64_t w_) const {
    Ref r;
    for (int64_t o = 0; o < s.o; ++o) {
      for (int64_t ki = 0; ki < s.kh; ++ki) {
        for (int64_t kj = 0; kj < s.kw; ++kj) {
          const int64_t i = h + s.pad_h - ki, j = w_ + s.pad_w - kj;
          if (i >= 0 && i < s.out_h && j >= 0 && j < s.out_w) {
            r.add(static_cast<double>(at_dy(n, o, i, j)) * at_w(o, c, ki, kj));
          }
        }
      }
    }
    return r;
  }
  // dw[o, c, ki, kj] = sum_{n, i, j} dy[n, o, i, j] x[n, c, i - pad + ki, j - pad + kj]
  Ref dw(int64_t o, int64_t c, int64_t ki, int64_t kj) const {
    Ref r;
    for (int64_t n = 0; n < s.n; ++n) {
      for (int64_t i = 0; i < s.out_h; ++i) {
        for (int64_t j = 0; j < s.out_w; ++j) {
          const int64_t h = i - s.pad_h + ki, w_ = j - s.pad_w + kj;
          if (in_x(h, w_)) r.add(static_cast<double>(at_dy(n, o, i, j)) * at_x(n, c, h, w_));
        }
      }
    }
    return r;
  }
  // db[o] = sum_{n, i, j} dy[n, o, i, j]
  Ref db(int64_t o) const {
    Ref r;
    for (int64_t n = 0; n < s.n; ++n) {
      for (int64_t i = 0; i < s.out_h; ++i) {
        for (int64_t j = 0; j < s.out_w; ++j) r.add(at_dy(n, o, i, j));
      }
    }
    return r;
  }
};

// Checks `got` (4-D, dims `dims`, C order) at 16 spread-out places against `ref`, each within
// rtol of the largest term-magnitude sum seen (FFT and Winograd algorithms round
// differently from the direct sum, so a per-place bound would be too tight where the terms
// cancel). Returns an empty string or what failed.
template <typename RefFn>
std::string spot_check(const char* what, const std::vector<float>& got, const Shape& dims,
                       double rtol, RefFn ref) {
  std::vector<std::array<int64_t, 4>> places;
  for (int64_t t = 0; t < 16; ++t) {
    places.push_back({(t * 7) % dims[0], (t * 13 + 3) % dims[1], (t * 5 + 1) % dims[2],
                      (t * 11 + 2) % dims[3]});
  }
  places.push_back({dims[0] - 1, dims[1] - 1, dims[2] - 1, dims[3] - 1});  // a corner
  std::vector<Ref> refs;
  double scale = 1e-30;
  for (const auto& p : places) {
    refs.push_back(ref(p[0], p[1], p[2], p[3]));
    scale = std::max(scale, refs.back().mag);
  }
  for (size_t k = 0; k < places.size(); ++k) {
    const auto& p = places[k];
    const int64_t idx = ((p[0] * dims[1] + p[1]) * dims[2] + p[2]) * dims[3] + p[3];
    const double g = got[static_cast<size_t>(idx)];
    if (!(std::abs(g - refs[k].value) <= rtol * scale)) {
      return std::string(what) + " " + shape_str(dims) + " is " + std::to_string(g) + " at [" +
             std::to_string(p[0]) + ", " + std::to_string(p[1]) + ", " + std::to_string(p[2]) +
             ", " + std::to_string(p[3]) + "], f64 reference " + std::to_string(refs[k].value);
    }
  }
  return "";
}

// --- the benchmark ---------------------------------------------------------------------------

struct ConvCase {
  const char* label;
  int64_t n, c, h, w, o, k, pad;
};

// Nominal multiply-adds of one direction (direct convolution), times two.
double conv_flops(const ConvShape& s) {
  return 2.0 * s.n * s.o * s.out_h * s.out_w * (s.c / s.groups) * s.kh * s.kw;
}

// One case in one dtype: correctness, then the forward and training-step rows.
void conv_case(Report& report, cudnnHandle_t raw, const ConvCase& cc, DType dtype,
               const kcudnn::ConvPolicy& base_policy, Device gpu, cudaStream_t stream) {
  const bench::Options& opts = report.options();
  ConvShape s;
  s.n = cc.n;
  s.c = cc.c;
  s.h = cc.h;
  s.w = cc.w;
  s.o = cc.o;
  s.kh = s.kw = cc.k;
  s.pad_h = s.pad_w = cc.pad;
  s.out_h = kernels::conv_out_size(s.h, s.kh, s.pad_h, s.stride_h, s.dil_h);
  s.out_w = kernels::conv_out_size(s.w, s.kw, s.pad_w, s.stride_w, s.dil_w);
  const Shape x_shape{s.n, s.c, s.h, s.w}, y_shape{s.n, s.o, s.out_h, s.out_w};
  const Shape w_shape{s.o, s.c, s.kh, s.kw};
  const std::string label = std::string(cc.label) + " " + shape_str(x_shape) + " -> " +
                            shape_str(y_shape) + ", " + dtype_name(dtype);
  // The plan cache's key names the data type (conv2d's CUDA twin sets it from T).
  kcudnn::ConvPolicy policy = base_policy;
  policy.data_type = cudnn_type(dtype);
  // float32: TF32 rounds inputs to 10 mantissa bits, FMA math keeps float32 sums. The 16-bit
  // types: raw against the f64 reference relative to the largest term-magnitude sum (float
  // accumulation, outputs rounded to 11 or 8 significant bits); ember against raw relative
  // to the largest value (the same algorithms; ember's bias gradient is its own reduction).
  const double raw_rtol = dtype == kFloat16    ? 5e-3
                          : dtype == kBFloat16 ? 2e-2
                          : policy.allow_tf32  ? 3e-3
                                               : 1e-4;
  const double ember_rtol = dtype == kFloat32 ? raw_rtol : 2e-2;

  // ember's side: the layer as a user builds it (converted with .to(dtype)), an input that
  // requires grad (so that backward computes dx too) and a fixed upstream gradient, both
  // rounded to the dtype before the host reads them back for the reference.
  nn::Conv2d layer(s.c, s.o, {s.kh, s.kw}, {.padding = {s.pad_h, s.pad_w}});
  layer.to(gpu);
  if (dtype != kFloat32) layer.to(dtype);
  Tensor x = Tensor::from_vector(bench::host_values(shape_numel(x_shape), 1, 1.0f), x_shape, gpu)
                 .to(dtype)
                 .detach();
  x.requires_grad_();
  const Tensor dy =
      Tensor::from_vector(bench::host_values(shape_numel(y_shape), 2, 1.0f), y_shape, gpu)
          .to(dtype)
          .detach();
  HostConv host;
  host.s = s;
  host.x = to_host(x);
  host.dy = to_host(dy);
  host.w = to_host(layer.weight());
  host.b = to_host(layer.bias());

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

  // One step first: it makes ember choose (and cache) the three algorithms.
  layer.zero_grad();
  x.set_grad(Tensor());
  Tensor ember_y = layer.forward(x);
  ember_y.backward(dy);
  const Tensor ember_dx = x.grad(), ember_dw = layer.weight().grad(),
               ember_db = layer.bias().grad();
  if (!ember_dx.defined() || !ember_dw.defined() || !ember_db.defined()) {
    report.fail("Conv2d " + label + ": ember's backward left a gradient undefined");
    return;
  }

  kcudnn::ConvAlgorithm algos[kDirs];
  bool chosen = true;
  for (int d = 0; d < kDirs; ++d) {
    chosen = chosen && kcudnn::conv2d_chosen_algorithm(cuda::cudnn_handle(gpu.index()), s,
                                                       policy, kConvDirection[d], &algos[d]);
  }
  if (!chosen) {
    report.fail("Conv2d " + label + ": ember's plan cache has no algorithm for this shape "
                "(the benchmark's ConvShape or policy differs from conv2d's)");
    return;
  }

  // The baseline: its own descriptors, ember's algorithm and math type per direction,
  // and one workspace for the largest of the three, allocated before anything is timed.
  const RawConv rc(s, policy.data_type, algos);
  size_t ws_bytes = 0;
  Json algo_json = Json::object();
  std::string algo_note;
  for (int d = 0; d < kDirs; ++d) {
    const size_t raw_bytes = rc.workspace(raw, algos, static_cast<Dir>(d));
    ws_bytes = std::max({ws_bytes, raw_bytes, algos[d].workspace_bytes});
    static const char* const kKeys[kDirs] = {"forward", "backward_data", "backward_filter"};
    algo_json[kKeys[d]] = {{"algo", algos[d].algo},
                           {"name", algo_name(static_cast<Dir>(d), algos[d].algo)},
                           {"math", math_name(algos[d].math)},
                           {"ember_workspace_bytes", algos[d].workspace_bytes},
                           {"raw_workspace_bytes", raw_bytes}};
    algo_note += std::string(d ? "/" : "") + algo_name(static_cast<Dir>(d), algos[d].algo);
  }
  const Tensor raw_ws = ws_bytes > 0 ? empty({static_cast<int64_t>(ws_bytes)},
                                             {.dtype = kUInt8, .device = gpu})
                                     : Tensor();
  void* ws = raw_ws.defined() ? raw_ws.data_ptr() : nullptr;
  // Outputs of the baseline; it reads x, dy and the layer's weight and bias in place.
  const TensorOptions o{.dtype = dtype, .device = gpu};
  const Tensor raw_y = empty(y_shape, o);
  const Tensor raw_dx = empty(x_shape, o);
  const Tensor raw_dw = empty(w_shape, o);
  const Tensor raw_db = empty({s.o}, o);
  const void* xp = x.data_ptr();
  const void* wp = layer.weight().data_ptr();
  const void* bp = layer.bias().data_ptr();
  const void* dyp = dy.data_ptr();
  // Scaling factors are float for float, half and bfloat16 data alike.
  const float one = 1.0f, zero = 0.0f;

  auto raw_forward = [&] {
    EMBER_CUDNN_CHECK(cudnnConvolutionForward(
        raw, &one, rc.x.get(), xp, rc.w.get(), wp, rc.conv[kFwd].get(),
        static_cast<cudnnConvolutionFwdAlgo_t>(algos[kFwd].algo), ws, ws_bytes, &zero,
        rc.y.get(), raw_y.data_ptr()));
    EMBER_CUDNN_CHECK(
        cudnnAddTensor(raw, &one, rc.bias.get(), bp, &one, rc.y.get(), raw_y.data_ptr()));
  };
  auto raw_step = [&] {
    raw_forward();
    EMBER_CUDNN_CHECK(cudnnConvolutionBackwardData(
        raw, &one, rc.w.get(), wp, rc.y.get(), dyp, rc.conv[kBwdData].get(),
        static_cast<cudnnConvolutionBwdDataAlgo_t>(algos[kBwdData].algo), ws, ws_bytes, &zero,
        rc.x.get(), raw_dx.data_ptr()));
    EMBER_CUDNN_CHECK(cudnnConvolutionBackwardFilter(
        raw, &one, rc.x.get(), xp, rc.y.get(), dyp, rc.conv[kBwdFilter].get(),
        static_cast<cudnnConvolutionBwdFilterAlgo_t>(algos[kBwdFilter].algo), ws, ws_bytes,
        &zero, rc.w.get(), raw_dw.data_ptr()));
    EMBER_CUDNN_CHECK(cudnnConvolutionBackwardBias(raw, &one, rc.y.get(), dyp, &zero,
                                                   rc.bias.get(), raw_db.data_ptr()));
  };

  // Correctness first: the baseline against f64 sums at a few places, then ember's
  // outputs and gradients against the baseline's everywhere. A cuDNN call that refuses
  // this dtype fails the case, not the run.
  try {
    raw_step();
    EMBER_CUDA_CHECK(cudaStreamSynchronize(stream));
  } catch (const Error& e) {
    report.fail("Conv2d " + label + ": the raw cuDNN calls failed: " + e.what());
    return;
  }
  const std::vector<float> ry = to_host(raw_y), rdx = to_host(raw_dx), rdw = to_host(raw_dw),
                           rdb = to_host(raw_db);
  std::string failed = spot_check("raw y", ry, y_shape, raw_rtol, [&](auto n, auto o_, auto i,
                                                                      auto j) {
    return host.y(n, o_, i, j);
  });
  if (failed.empty()) {
    failed = spot_check("raw dx", rdx, x_shape, raw_rtol,
                        [&](auto n, auto c, auto h, auto w_) { return host.dx(n, c, h, w_); });
  }
  if (failed.empty()) {
    failed = spot_check("raw dw", rdw, w_shape, raw_rtol,
                        [&](auto o_, auto c, auto i, auto j) { return host.dw(o_, c, i, j); });
  }
  if (failed.empty()) {
    failed = spot_check("raw db", rdb, {s.o, 1, 1, 1}, raw_rtol,
                        [&](auto o_, auto, auto, auto) { return host.db(o_); });
  }
  if (!failed.empty()) {
    report.fail("Conv2d " + label + ": " + failed);
    return;
  }
  const double diff_y = bench::max_relative_diff(to_host(ember_y), ry);
  const double diff_dx = bench::max_relative_diff(to_host(ember_dx), rdx);
  const double diff_dw = bench::max_relative_diff(to_host(ember_dw), rdw);
  const double diff_db = bench::max_relative_diff(to_host(ember_db), rdb);
  const double diff = std::max({diff_y, diff_dx, diff_dw, diff_db});
  if (!(diff <= ember_rtol)) {
    report.fail("Conv2d " + label + ": ember differs from raw cuDNN by " + std::to_string(diff) +
                " (relative to the largest value; y " + std::to_string(diff_y) + ", dx " +
                std::to_string(diff_dx) + ", dw " + std::to_string(diff_dw) + ", db " +
                std::to_string(diff_db) + ")");
    return;
  }

  const Json extra = {
      {"case", cc.label},
      {"dtype", dtype_name(dtype)},
      {"x_shape", x_shape},
      {"weight_shape", w_shape},
      {"padding", cc.pad},
      {"algorithms", algo_json},
      {"raw_workspace_bytes", ws_bytes},
      {"max_relative_diff", {{"y", diff_y}, {"dx", diff_dx}, {"dw", diff_dw}, {"db", diff_db}}}};
  const double fwd_flops = conv_flops(s);
  report.add(bench::ratio_row(label + ", forward", "cudnnConvolutionForward + cudnnAddTensor",
                              bench::time_on_stream(stream, ember_forward, opts),
                              bench::time_on_stream(stream, raw_forward, opts), fwd_flops,
                              algo_note, extra));
  report.add(bench::ratio_row(label + ", train step",
                              "cuDNN forward + bias, backward data, filter and bias",
                              bench::time_on_stream(stream, ember_step, opts),
                              bench::time_on_stream(stream, raw_step, opts), 3.0 * fwd_flops,
                              algo_note, extra));
}

void run(Report& report) {
  report.begin();
  const int dev = 0;
  const Device gpu = Device::cuda(dev);
  const cudaStream_t stream = cuda::compute_stream(dev);
  // The policy conv2d's CUDA twin passes to the plan cache (policy_of in
  // kernels/cudnn/conv.cpp, from the kernel context's switches): ember's defaults unless
  // the process changed them, so heuristic choice and no TF32. Each case sets the data type.
  const kcudnn::ConvPolicy policy{cuda::cudnn_benchmark(), cuda::deterministic(),
                                  cuda::allow_tf32()};

  CudnnHandle raw{"cudnnDestroy"};
  EMBER_CUDNN_CHECK(cudnnCreate(raw.out()));
  EMBER_CUDNN_CHECK(cudnnSetStream(raw.get(), stream));

  report.set("target_ratio", bench::kTargetRatio);
  report.set("tf32", policy.allow_tf32);
  report.set("cudnn_benchmark", policy.benchmark);
  report.set("deterministic", policy.deterministic);
  std::printf("# ember: nn::Conv2d (bias) on cuda:0, converted with .to(dtype); train step = "
              "zero_grad, forward, backward of a fixed dy into x, weight and bias\n");
  std::printf("# baseline: cudnnConvolutionForward + cudnnAddTensor; train step adds "
              "cudnnConvolutionBackwardData, BackwardFilter and BackwardBias; own handle on "
              "ember's stream, ember's algorithms, one preallocated workspace; float16 and "
              "bfloat16 with a float compute type and ember's (tensor-core) math type\n");
  std::printf("# policy: %s choice, deterministic %s, TF32 %s (float32)\n",
              policy.benchmark ? "measured" : "heuristic", policy.deterministic ? "on" : "off",
              policy.allow_tf32 ? "on" : "off");
  report.table("TFLOP/s (nominal)");

  const std::vector<ConvCase> cases = {
      {"seed CNN conv1", 32, 1, 28, 28, 32, 3, 0},
      {"seed CNN conv1", 128, 1, 28, 28, 32, 3, 0},
      {"seed CNN conv2", 32, 32, 13, 13, 64, 3, 0},
      {"seed CNN conv2", 128, 32, 13, 13, 64, 3, 0},
      {"ResNet 3x3", 32, 64, 56, 56, 64, 3, 1},
  };
  for (const ConvCase& cc : cases) {
    for (const DType dtype : {kFloat32, kFloat16, kBFloat16}) {
      // A case that throws (a dtype a library refuses) fails alone; the others still run.
      try {
        conv_case(report, raw.get(), cc, dtype, policy, gpu, stream);
      } catch (const Error& e) {
        report.fail(std::string("Conv2d ") + cc.label + " batch " + std::to_string(cc.n) +
                    ", " + dtype_name(dtype) + ": " + e.what());
      }
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  return ember::bench::run_benchmark(
      argc, argv, "bench_conv",
      "nn::Conv2d forward and training step against the same raw cuDNN calls", run);
}
