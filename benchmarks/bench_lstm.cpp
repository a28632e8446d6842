// nn::LSTM on CUDA tensors (a forward, and a training step: forward, then backward of a
// fixed upstream gradient into the input and every weight) against the same cuDNN calls
// made directly: the benchmark's own handle (on ember's stream), its own RNN, dropout and
// data descriptors with the settings of ember's plans (kernels/cudnn/rnn.h: standard
// algorithm, the same math type), ember's weight buffer read in place, and workspace,
// reserve space, device lengths and weight-gradient buffer allocated once. The ratio
// ember / raw is the framework's cost (target <= 1.05).
#include <cudnn.h>
#include <cuda_runtime_api.h>

#include <algorithm>
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
#include "ember/kernels/cudnn/rnn.h"
#include "ember/layers/rnn.h"

namespace {

using namespace ember;
using bench::Json;
using bench::Report;
using bench::Timing;
namespace kcudnn = kernels::cudnn;

using bench::CudnnHandle;
using RnnDesc = bench::CudnnObject<cudnnRNNDescriptor_t, cudnnDestroyRNNDescriptor>;
using DropoutDesc = bench::CudnnObject<cudnnDropoutDescriptor_t, cudnnDestroyDropoutDescriptor>;
using DataDesc = bench::CudnnObject<cudnnRNNDataDescriptor_t, cudnnDestroyRNNDataDescriptor>;
using bench::TensorDesc;

struct LstmCase {
  const char* label;
  int64_t input, hidden, layers;
  bool bidirectional, batch_first, varied_lengths;
  int64_t seq_len, batch;
};

// Nominal multiply-adds of the forward (input and recurrent GEMMs of every gate), times two.
double lstm_flops(const LstmCase& c) {
  const double dirs = c.bidirectional ? 2.0 : 1.0;
  double per_step = 0.0;
  for (int64_t l = 0; l < c.layers; ++l) {
    const double in = l == 0 ? static_cast<double>(c.input) : dirs * c.hidden;
    per_step += dirs * 4.0 * c.hidden * (in + c.hidden);
  }
  return 2.0 * per_step * c.batch * c.seq_len;
}

std::vector<float> to_host(const Tensor& t) { return t.contiguous().cpu().to_vector<float>(); }

void run(Report& report) {
  report.begin();
  const bench::Options& opts = report.options();
  const int dev = 0;
  const Device gpu = Device::cuda(dev);
  const cudaStream_t stream = cuda::compute_stream(dev);
  // Float sums in a different order on the two paths are all that may differ (the same
  // cuDNN kernels run on both sides).
  const double rtol = 1e-5;

  CudnnHandle raw{"cudnnDestroy"};
  EMBER_CUDNN_CHECK(cudnnCreate(raw.out()));
  EMBER_CUDNN_CHECK(cudnnSetStream(raw.get(), stream));

  report.set("target_ratio", bench::kTargetRatio);
  report.set("tf32", cuda::allow_tf32());
  std::printf("# ember: nn::LSTM on cuda:0; train step = zero_grad, forward, backward of a fixed "
              "dy into x and every weight\n");
  std::printf("# baseline: cudnnRNNForward (training), cudnnRNNBackwardData_v8, memset + "
              "cudnnRNNBackwardWeights_v8; own handle and descriptors with ember's settings, "
              "ember's weight buffer, buffers allocated once\n");
  report.table("TFLOP/s (nominal)");

  const std::vector<LstmCase> cases = {
      {"sequence_lstm sample", 28, 128, 2, false, true, false, 28, 128},
      {"1 layer", 256, 512, 1, false, false, false, 100, 64},
      {"2 layers bidirectional", 512, 512, 2, true, false, false, 50, 32},
      {"varied lengths, batch-first", 128, 256, 2, false, true, true, 64, 64},
  };
  for (const LstmCase& cc : cases) {
    const int64_t dirs = cc.bidirectional ? 2 : 1;
    const Shape x_shape = cc.batch_first ? Shape{cc.batch, cc.seq_len, cc.input}
                                         : Shape{cc.seq_len, cc.batch, cc.input};
    const Shape y_shape = cc.batch_first ? Shape{cc.batch, cc.seq_len, dirs * cc.hidden}
                                         : Shape{cc.seq_len, cc.batch, dirs * cc.hidden};
    const std::string label = std::string(cc.label) + " " + shape_str(x_shape) + " -> " +
                              shape_str(y_shape) + ", hidden " + std::to_string(cc.hidden) +
                              ", " + std::to_string(cc.layers) + " layer(s)";
    std::vector<int64_t> lengths;
    std::vector<int32_t> lengths32(static_cast<size_t>(cc.batch), static_cast<int32_t>(cc.seq_len));
    if (cc.varied_lengths) {
      for (int64_t b = 0; b < cc.batch; ++b) {
        lengths.push_back(1 + (b * 37) % cc.seq_len);  // unsorted, 1 to seq_len
        lengths32[static_cast<size_t>(b)] = static_cast<int32_t>(lengths.back());
      }
    }

    // ember's side: the layer as a user builds it.
    nn::LSTM layer(cc.input, cc.hidden, {.num_layers = cc.layers, .batch_first = cc.batch_first,
                                         .bidirectional = cc.bidirectional});
    layer.to(gpu);
    Tensor x = Tensor::from_vector(bench::host_values(shape_numel(x_shape), 1, 1.0f), x_shape, gpu);
    x.requires_grad_();
    const Tensor dy = Tensor::from_vector(bench::host_values(shape_numel(y_shape), 2, 1.0f), y_shape, gpu);
    auto ember_step = [&] {
      layer.zero_grad();
      x.set_grad(Tensor());
      Tensor y = layer.forward(x, {}, lengths).output;
      y.backward(dy);
    };
    auto ember_forward = [&] {
      NoGradGuard no_grad;
      (void)layer.forward(x, {}, lengths);
    };
    // One step first: it flattens the weights into cuDNN's buffer and makes the plan.
    layer.zero_grad();
    Tensor ember_y = layer.forward(x, {}, lengths).output;
    ember_y.backward(dy);
    const Tensor ember_dx = x.grad();
    const auto params = layer.parameters();
    for (const Tensor& p : params) {
      if (p.impl().storage != params[0].impl().storage) {
        report.fail("LSTM " + label + ": the weights are not views of one buffer");
      }
    }

    // The baseline's descriptors, with the settings of ember's plan.
    kcudnn::RnnConfig cfg;
    cfg.cell = kcudnn::RnnCell::kLstm;
    cfg.input_size = cc.input;
    cfg.hidden_size = cc.hidden;
    cfg.num_layers = cc.layers;
    cfg.bidirectional = cc.bidirectional;
    cfg.allow_tf32 = cuda::allow_tf32();
    const auto i32 = [](int64_t v) { return static_cast<int32_t>(v); };
    DropoutDesc dropout{"cudnnDestroyDropoutDescriptor"};
    EMBER_CUDNN_CHECK(cudnnCreateDropoutDescriptor(dropout.out()));
    EMBER_CUDNN_CHECK(cudnnSetDropoutDescriptor(dropout.get(), raw.get(), 0.0f, nullptr, 0, 0));
    RnnDesc rnn{"cudnnDestroyRNNDescriptor"};
    EMBER_CUDNN_CHECK(cudnnCreateRNNDescriptor(rnn.out()));
    EMBER_CUDNN_CHECK(cudnnSetRNNDescriptor_v8(
        rnn.get(), CUDNN_RNN_ALGO_STANDARD, kcudnn::rnn_cell_mode(cfg.cell), CUDNN_RNN_DOUBLE_BIAS,
        cc.bidirectional ? CUDNN_BIDIRECTIONAL : CUDNN_UNIDIRECTIONAL, CUDNN_LINEAR_INPUT,
        CUDNN_DATA_FLOAT, CUDNN_DATA_FLOAT, kcudnn::rnn_math_type(cfg), i32(cc.input),
        i32(cc.hidden), i32(cc.hidden), i32(cc.layers), dropout.get(),
        CUDNN_RNN_PADDED_IO_ENABLED));
    const cudnnRNNDataLayout_t layout = cc.batch_first ? CUDNN_RNN_DATA_LAYOUT_BATCH_MAJOR_UNPACKED
                                                       : CUDNN_RNN_DATA_LAYOUT_SEQ_MAJOR_UNPACKED;
    float fill = 0.0f;
    DataDesc xd{"cudnnDestroyRNNDataDescriptor"}, yd{"cudnnDestroyRNNDataDescriptor"};
    EMBER_CUDNN_CHECK(cudnnCreateRNNDataDescriptor(xd.out()));
    EMBER_CUDNN_CHECK(cudnnSetRNNDataDescriptor(xd.get(), CUDNN_DATA_FLOAT, layout, i32(cc.seq_len),
                                                i32(cc.batch), i32(cc.input), lengths32.data(), &fill));
    EMBER_CUDNN_CHECK(cudnnCreateRNNDataDescriptor(yd.out()));
    EMBER_CUDNN_CHECK(cudnnSetRNNDataDescriptor(yd.get(), CUDNN_DATA_FLOAT, layout, i32(cc.seq_len),
                                                i32(cc.batch), i32(dirs * cc.hidden),
                                                lengths32.data(), &fill));
    TensorDesc hd{"cudnnDestroyTensorDescriptor"};
    EMBER_CUDNN_CHECK(cudnnCreateTensorDescriptor(hd.out()));
    const int hdims[3] = {i32(cc.layers * dirs), i32(cc.batch), i32(cc.hidden)};
    const int hstrides[3] = {i32(cc.batch * cc.hidden), i32(cc.hidden), 1};
    EMBER_CUDNN_CHECK(cudnnSetTensorNdDescriptor(hd.get(), CUDNN_DATA_FLOAT, 3, hdims, hstrides));
    size_t w_bytes = 0, ws_bytes = 0, rs_bytes = 0;
    EMBER_CUDNN_CHECK(cudnnGetRNNWeightSpaceSize(raw.get(), rnn.get(), &w_bytes));
    EMBER_CUDNN_CHECK(cudnnGetRNNTempSpaceSizes(raw.get(), rnn.get(), CUDNN_FWD_MODE_TRAINING,
                                                xd.get(), &ws_bytes, &rs_bytes));
    const auto& storage = params[0].impl().storage;
    if (storage->nbytes() < w_bytes) {
      report.fail("LSTM " + label + ": ember's weight buffer is smaller than cuDNN's weight space");
      continue;
    }
    const void* w = storage->data();
    // Buffers allocated once, before anything is timed.
    auto bytes_tensor = [&](size_t bytes) {
      return empty({static_cast<int64_t>(std::max<size_t>(bytes, 1))}, {.dtype = kUInt8, .device = gpu});
    };
    const Tensor ws = bytes_tensor(ws_bytes), rs = bytes_tensor(rs_bytes);
    const Tensor dw = empty({static_cast<int64_t>(w_bytes / sizeof(float))}, {.device = gpu});
    const Tensor raw_y = empty(y_shape, {.device = gpu}), raw_dx = empty(x_shape, {.device = gpu});
    const Tensor dev_lengths = Tensor::from_vector(lengths32, {cc.batch}, gpu);
    const float* xp = x.data<float>();
    const float* dyp = dy.data<float>();

    auto raw_forward_mode = [&](cudnnForwardMode_t mode) {
      const bool training = mode == CUDNN_FWD_MODE_TRAINING;
      EMBER_CUDNN_CHECK(cudnnRNNForward(raw.get(), rnn.get(), mode, dev_lengths.data<int32_t>(),
                                        xd.get(), xp, yd.get(), raw_y.data<float>(), hd.get(),
                                        nullptr, nullptr, hd.get(), nullptr, nullptr, w_bytes, w,
                                        ws_bytes, ws.data_ptr(), training ? rs_bytes : 0,
                                        training ? rs.data_ptr() : nullptr));
    };
    auto raw_forward = [&] { raw_forward_mode(CUDNN_FWD_MODE_INFERENCE); };
    auto raw_step = [&] {
      raw_forward_mode(CUDNN_FWD_MODE_TRAINING);
      EMBER_CUDNN_CHECK(cudnnRNNBackwardData_v8(
          raw.get(), rnn.get(), dev_lengths.data<int32_t>(), yd.get(), raw_y.data<float>(), dyp,
          xd.get(), raw_dx.data<float>(), hd.get(), nullptr, nullptr, nullptr, hd.get(), nullptr,
          nullptr, nullptr, w_bytes, w, ws_bytes, ws.data_ptr(), rs_bytes, rs.data_ptr()));
      EMBER_CUDA_CHECK(cudaMemsetAsync(dw.data_ptr(), 0, w_bytes, stream));
      EMBER_CUDNN_CHECK(cudnnRNNBackwardWeights_v8(
          raw.get(), rnn.get(), CUDNN_WGRAD_MODE_ADD, dev_lengths.data<int32_t>(), xd.get(), xp,
          hd.get(), nullptr, yd.get(), raw_y.data<float>(), w_bytes, dw.data<float>(), ws_bytes,
          ws.data_ptr(), rs_bytes, rs.data_ptr()));
    };

    // Correctness first: ember's output and gradients against the baseline's.
    raw_step();
    EMBER_CUDA_CHECK(cudaStreamSynchronize(stream));
    const double diff_y = bench::max_relative_diff(to_host(ember_y), to_host(raw_y));
    const double diff_dx = bench::max_relative_diff(to_host(ember_dx), to_host(raw_dx));
    // Each parameter's gradient against its view of the baseline's weight gradient: the
    // parameter's offset into ember's buffer is its place in cuDNN's weight space.
    double diff_dw = 0.0;
    for (const Tensor& p : params) {
      const Tensor raw_g = dw.narrow(0, p.offset(), p.numel()).view(p.shape());
      diff_dw = std::max(diff_dw, bench::max_relative_diff(to_host(p.grad()), to_host(raw_g)));
    }
    const double diff = std::max({diff_y, diff_dx, diff_dw});
    if (!(diff <= rtol)) {
      report.fail("LSTM " + label + ": ember differs from raw cuDNN by " + std::to_string(diff) +
                  " (y " + std::to_string(diff_y) + ", dx " + std::to_string(diff_dx) + ", dw " +
                  std::to_string(diff_dw) + ")");
      continue;
    }

    auto add_row = [&](const std::string& what, const std::string& baseline, const Timing& t,
                       const Timing& base, double flops) {
      report.add(bench::ratio_row(
          label + ", " + what, baseline, t, base, flops, "CUDNN_RNN_ALGO_STANDARD",
          {{"case", cc.label},
           {"x_shape", x_shape},
           {"hidden", cc.hidden},
           {"layers", cc.layers},
           {"bidirectional", cc.bidirectional},
           {"batch_first", cc.batch_first},
           {"varied_lengths", cc.varied_lengths},
           {"weight_space_bytes", w_bytes},
           {"workspace_bytes", ws_bytes},
           {"reserve_bytes", rs_bytes},
           {"max_relative_diff", {{"y", diff_y}, {"dx", diff_dx}, {"dw", diff_dw}}}}));
    };
    const double fwd_flops = lstm_flops(cc);
    add_row("forward", "cudnnRNNForward (inference)",
            bench::time_on_stream(stream, ember_forward, opts),
            bench::time_on_stream(stream, raw_forward, opts), fwd_flops);
    add_row("train step", "cudnnRNNForward (training), BackwardData_v8, BackwardWeights_v8",
            bench::time_on_stream(stream, ember_step, opts),
            bench::time_on_stream(stream, raw_step, opts), 3.0 * fwd_flops);
  }
}

}  // namespace

int main(int argc, char** argv) {
  return ember::bench::run_benchmark(
      argc, argv, "bench_lstm",
      "nn::LSTM forward and training step against the same raw cuDNN calls", run);
}
