// cuDNN 2-D convolution: cached descriptors and algorithm choices per shape (see
// Note [cuDNN convolution plans] in conv.h), forward with bias, backward data and filter;
// then the CUDA twins of kernels/cpu/conv.h (kernels/cuda/conv.cuh) on top of them.
#include "ember/kernels/cudnn/conv.h"

#include <algorithm>
#include <climits>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "ember/core/base/cuda_check.h"
#include "ember/core/base/error.h"
#include "ember/kernels/cuda/conv.cuh"
#include "ember/kernels/cudnn/data_type.h"
#include "ember/kernels/cudnn/plan_cache.h"

namespace ember::kernels::cudnn {

namespace {

// Some algorithms (FFT, Winograd on large planes) ask for gigabytes of workspace, and
// cuDNN has been seen to report absurd sizes; an algorithm that needs more than this is
// not worth the memory it would pin, so neither the heuristic's list nor the measured
// search may pick it (the fallbacks need little or none).
constexpr size_t kMaxWorkspace = size_t(1) << 30;

int to_int(int64_t v, const char* what) {
  EMBER_CHECK(v >= 0 && v <= INT_MAX, "conv2d: ", what, " = ", v,
              " does not fit in cuDNN's int dimensions");
  return static_cast<int>(v);
}

enum Direction { kForward = 0, kBackwardData = 1, kBackwardFilter = 2, kDirections = 3 };

struct AlgoChoice {
  bool chosen = false;
  int algo = 0;          // the direction's cudnnConvolution*Algo_t
  size_t workspace = 0;  // bytes the run needs
};

// Everything cached for one (device, shape, policy). Each direction has its own
// convolution descriptor because the chosen algorithm may fix a different math type.
struct Plan {
  cudnnTensorDescriptor_t x = nullptr, y = nullptr, bias = nullptr;
  cudnnFilterDescriptor_t w = nullptr;
  cudnnConvolutionDescriptor_t conv[kDirections] = {nullptr, nullptr, nullptr};
  AlgoChoice choice[kDirections];

  Plan() = default;
  Plan(const Plan&) = delete;
  Plan& operator=(const Plan&) = delete;
  ~Plan() {
    if (x) warn_cudnn(cudnnDestroyTensorDescriptor(x), "cudnnDestroyTensorDescriptor");
    if (y) warn_cudnn(cudnnDestroyTensorDescriptor(y), "cudnnDestroyTensorDescriptor");
    if (bias) warn_cudnn(cudnnDestroyTensorDescriptor(bias), "cudnnDestroyTensorDescriptor");
    if (w) warn_cudnn(cudnnDestroyFilterDescriptor(w), "cudnnDestroyFilterDescriptor");
    for (auto c : conv) {
      if (c) warn_cudnn(cudnnDestroyConvolutionDescriptor(c), "cudnnDestroyConvolutionDescriptor");
    }
  }
};

struct Key {
  int device;  // algorithm choices are per GPU (Note [Bounded plan caches])
  ConvShape s;
  ConvPolicy p;
  bool operator==(const Key& k) const {
    return device == k.device && s == k.s && p.benchmark == k.p.benchmark &&
           p.deterministic == k.p.deterministic && p.allow_tf32 == k.p.allow_tf32 &&
           p.data_type == k.p.data_type;
  }
};

struct KeyHash {
  size_t operator()(const Key& k) const {
    size_t h = std::hash<int>()(k.device);
    auto mix = [&h](int64_t v) { hash_mix(h, v); };
    const ConvShape& s = k.s;
    for (int64_t v : {s.n, s.c, s.h, s.w, s.o, s.kh, s.kw, s.pad_h, s.pad_w, s.stride_h,
                      s.stride_w, s.dil_h, s.dil_w, s.groups, s.out_h, s.out_w,
                      static_cast<int64_t>(s.channels_last)}) {
      mix(v);
    }
    mix((k.p.benchmark ? 1 : 0) | (k.p.deterministic ? 2 : 0) | (k.p.allow_tf32 ? 4 : 0));
    mix(static_cast<int64_t>(k.p.data_type));
    return h;
  }
};

using PlanCache = KeyedPlanCache<Key, Plan, KeyHash>;

// See Note [cuDNN caches are never destroyed] in plan_cache.h.
PlanCache& plan_cache() {
  static auto* cache = new PlanCache();
  return *cache;
}

cudnnMathType_t policy_math(const ConvPolicy& p) {
  // float16 / bfloat16 data: tensor cores, accumulating in the float compute type.
  if (p.data_type != CUDNN_DATA_FLOAT) return CUDNN_TENSOR_OP_MATH;
  // FMA math keeps float32 convolutions exact to float32; default math lets cuDNN use
  // TF32 tensor cores on Ampere and later.
  return p.allow_tf32 ? CUDNN_DEFAULT_MATH : CUDNN_FMA_MATH;
}

std::shared_ptr<Plan> make_plan(const ConvShape& s, const ConvPolicy& p) {
  EMBER_INTERNAL_ASSERT(s.n > 0 && s.c > 0 && s.h > 0 && s.w > 0 && s.o > 0 && s.kh > 0 &&
                            s.kw > 0 && s.out_h > 0 && s.out_w > 0 && s.groups > 0,
                        "conv2d: empty shapes are handled before cuDNN is called");
  const int n = to_int(s.n, "batch"), c = to_int(s.c, "channels"), h = to_int(s.h, "height"),
            w = to_int(s.w, "width"), o = to_int(s.o, "output channels");
  const int groups = to_int(s.groups, "groups");
  const int oh = to_int(s.out_h, "output height"), ow = to_int(s.out_w, "output width");
  // The legacy convolution API indexes tensors with 32-bit integers.
  to_int(s.x_numel(), "the input's element count");
  to_int(s.y_numel(), "the output's element count");
  const cudnnDataType_t dt = p.data_type;
  // Input, output and filter in one layout: NCHW, or NHWC for channels-last tensors.
  const cudnnTensorFormat_t format = s.channels_last ? CUDNN_TENSOR_NHWC : CUDNN_TENSOR_NCHW;
  auto plan = std::make_unique<Plan>();
  EMBER_CUDNN_CHECK(cudnnCreateTensorDescriptor(&plan->x));
  EMBER_CUDNN_CHECK(cudnnSetTensor4dDescriptor(plan->x, format, dt, n, c, h, w));
  EMBER_CUDNN_CHECK(cudnnCreateTensorDescriptor(&plan->y));
  EMBER_CUDNN_CHECK(cudnnSetTensor4dDescriptor(plan->y, format, dt, n, o, oh, ow));
  EMBER_CUDNN_CHECK(cudnnCreateTensorDescriptor(&plan->bias));
  EMBER_CUDNN_CHECK(cudnnSetTensor4dDescriptor(plan->bias, CUDNN_TENSOR_NCHW, dt, 1, o, 1, 1));
  EMBER_CUDNN_CHECK(cudnnCreateFilterDescriptor(&plan->w));
  EMBER_CUDNN_CHECK(cudnnSetFilter4dDescriptor(plan->w, dt, format, o,
                                               c / groups, to_int(s.kh, "kernel height"),
                                               to_int(s.kw, "kernel width")));
  for (auto& cd : plan->conv) {
    EMBER_CUDNN_CHECK(cudnnCreateConvolutionDescriptor(&cd));
    EMBER_CUDNN_CHECK(cudnnSetConvolution2dDescriptor(
        cd, to_int(s.pad_h, "padding"), to_int(s.pad_w, "padding"), to_int(s.stride_h, "stride"),
        to_int(s.stride_w, "stride"), to_int(s.dil_h, "dilation"), to_int(s.dil_w, "dilation"),
        // The compute type is float for every data type (float16 / bfloat16 accumulate in
        // float, as acc_t does on the CPU).
        CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT));
    EMBER_CUDNN_CHECK(cudnnSetConvolutionGroupCount(cd, groups));
    EMBER_CUDNN_CHECK(cudnnSetConvolutionMathType(cd, policy_math(p)));
  }
  int dn = 0, dc = 0, dh = 0, dw = 0;
  EMBER_CUDNN_CHECK(cudnnGetConvolution2dForwardOutputDim(plan->conv[kForward], plan->x,
                                                          plan->w, &dn, &dc, &dh, &dw));
  EMBER_INTERNAL_ASSERT(dn == n && dc == o && dh == oh && dw == ow,
                        "conv2d: cuDNN's output size [", dn, ", ", dc, ", ", dh, ", ", dw,
                        "] differs from ConvShape's [", n, ", ", o, ", ", oh, ", ", ow, "]");
  return plan;
}

// The plan for a key, created on first use. Call with the cache's mutex held.
Plan& plan_for(PlanCache& cache, const ConvShape& s, const ConvPolicy& p) {
  const Key key{current_device(), s, p};
  std::shared_ptr<Plan> plan = cache.plans.find(key);
  if (!plan) plan = cache.plans.insert(key, make_plan(s, p));
  return *plan;
}

// --- the three directions as the algorithm chooser sees them -------------------------

struct ForwardCalls {
  using Perf = cudnnConvolutionFwdAlgoPerf_t;
  using Algo = cudnnConvolutionFwdAlgo_t;
  static constexpr Direction kDir = kForward;
  static constexpr int kAlgoCount = CUDNN_CONVOLUTION_FWD_ALGO_COUNT;
  static constexpr Algo kFallback = CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM;
  static cudnnStatus_t max_count(cudnnHandle_t h, int* n) {
    return cudnnGetConvolutionForwardAlgorithmMaxCount(h, n);
  }
  static cudnnStatus_t heuristic(cudnnHandle_t h, const Plan& pl, int req, int* ret, Perf* perf) {
    return cudnnGetConvolutionForwardAlgorithm_v7(h, pl.x, pl.w, pl.conv[kDir], pl.y, req, ret, perf);
  }
  // a = x, b = w, out = y
  static cudnnStatus_t find(cudnnHandle_t h, const Plan& pl, const void* a, const void* b,
                            void* out, int req, int* ret, Perf* perf, void* ws, size_t bytes) {
    return cudnnFindConvolutionForwardAlgorithmEx(h, pl.x, a, pl.w, b, pl.conv[kDir], pl.y, out,
                                                  req, ret, perf, ws, bytes);
  }
  static cudnnStatus_t workspace(cudnnHandle_t h, const Plan& pl, Algo algo, size_t* bytes) {
    return cudnnGetConvolutionForwardWorkspaceSize(h, pl.x, pl.w, pl.conv[kDir], pl.y, algo, bytes);
  }
};

struct BackwardDataCalls {
  using Perf = cudnnConvolutionBwdDataAlgoPerf_t;
  using Algo = cudnnConvolutionBwdDataAlgo_t;
  static constexpr Direction kDir = kBackwardData;
  static constexpr int kAlgoCount = CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT;
  static constexpr Algo kFallback = CUDNN_CONVOLUTION_BWD_DATA_ALGO_1;  // deterministic
  static cudnnStatus_t max_count(cudnnHandle_t h, int* n) {
    return cudnnGetConvolutionBackwardDataAlgorithmMaxCount(h, n);
  }
  static cudnnStatus_t heuristic(cudnnHandle_t h, const Plan& pl, int req, int* ret, Perf* perf) {
    return cudnnGetConvolutionBackwardDataAlgorithm_v7(h, pl.w, pl.y, pl.conv[kDir], pl.x, req,
                                                       ret, perf);
  }
  // a = w, b = dy, out = dx
  static cudnnStatus_t find(cudnnHandle_t h, const Plan& pl, const void* a, const void* b,
                            void* out, int req, int* ret, Perf* perf, void* ws, size_t bytes) {
    return cudnnFindConvolutionBackwardDataAlgorithmEx(h, pl.w, a, pl.y, b, pl.conv[kDir], pl.x,
                                                       out, req, ret, perf, ws, bytes);
  }
  static cudnnStatus_t workspace(cudnnHandle_t h, const Plan& pl, Algo algo, size_t* bytes) {
    return cudnnGetConvolutionBackwardDataWorkspaceSize(h, pl.w, pl.y, pl.conv[kDir], pl.x, algo,
                                                        bytes);
  }
};

struct BackwardFilterCalls {
  using Perf = cudnnConvolutionBwdFilterAlgoPerf_t;
  using Algo = cudnnConvolutionBwdFilterAlgo_t;
  static constexpr Direction kDir = kBackwardFilter;
  static constexpr int kAlgoCount = CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT;
  static constexpr Algo kFallback = CUDNN_CONVOLUTION_BWD_FILTER_ALGO_1;  // deterministic
  static cudnnStatus_t max_count(cudnnHandle_t h, int* n) {
    return cudnnGetConvolutionBackwardFilterAlgorithmMaxCount(h, n);
  }
  static cudnnStatus_t heuristic(cudnnHandle_t h, const Plan& pl, int req, int* ret, Perf* perf) {
    return cudnnGetConvolutionBackwardFilterAlgorithm_v7(h, pl.x, pl.y, pl.conv[kDir], pl.w, req,
                                                         ret, perf);
  }
  // a = x, b = dy, out = dw
  static cudnnStatus_t find(cudnnHandle_t h, const Plan& pl, const void* a, const void* b,
                            void* out, int req, int* ret, Perf* perf, void* ws, size_t bytes) {
    return cudnnFindConvolutionBackwardFilterAlgorithmEx(h, pl.x, a, pl.y, b, pl.conv[kDir], pl.w,
                                                         out, req, ret, perf, ws, bytes);
  }
  static cudnnStatus_t workspace(cudnnHandle_t h, const Plan& pl, Algo algo, size_t* bytes) {
    return cudnnGetConvolutionBackwardFilterWorkspaceSize(h, pl.x, pl.y, pl.conv[kDir], pl.w,
                                                          algo, bytes);
  }
};

template <typename Perf>
bool acceptable(const Perf& r, const ConvPolicy& p) {
  if (r.status != CUDNN_STATUS_SUCCESS) return false;
  if (p.deterministic && r.determinism == CUDNN_NON_DETERMINISTIC) return false;
  // Down-conversion to half precision is never wanted for float32 data; TF32 tensor-op
  // math only when allowed.
  if (r.mathType == CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION) return false;
  if (p.data_type == CUDNN_DATA_FLOAT && !p.allow_tf32 && r.mathType == CUDNN_TENSOR_OP_MATH) {
    return false;
  }
  return true;
}

// Chooses and caches the direction's algorithm (see Note [cuDNN convolution plans]).
// Call with the cache's mutex held.
template <typename Calls>
AlgoChoice choose(cudnnHandle_t h, Plan& plan, const ConvPolicy& p, const void* a,
                  const void* b, void* out, const ScratchFn& scratch) {
  AlgoChoice& choice = plan.choice[Calls::kDir];
  if (choice.chosen) return choice;
  cudnnConvolutionDescriptor_t cd = plan.conv[Calls::kDir];

  int max_count = 0;
  EMBER_CUDNN_CHECK(Calls::max_count(h, &max_count));
  std::vector<typename Calls::Perf> perf(static_cast<size_t>(std::max(max_count, 1)));
  int returned = 0;
  if (p.benchmark) {
    // Offer the search as much workspace as the hungriest algorithm asks for (capped).
    size_t want = 0;
    for (int algo = 0; algo < Calls::kAlgoCount; ++algo) {
      size_t bytes = 0;
      if (Calls::workspace(h, plan, static_cast<typename Calls::Algo>(algo), &bytes) ==
              CUDNN_STATUS_SUCCESS &&
          bytes <= kMaxWorkspace) {
        want = std::max(want, bytes);
      }
    }
    void* ws = want > 0 && scratch ? scratch(want) : nullptr;
    if (ws == nullptr) want = 0;
    EMBER_CUDNN_CHECK(Calls::find(h, plan, a, b, out, max_count, &returned, perf.data(), ws, want));
  } else {
    EMBER_CUDNN_CHECK(Calls::heuristic(h, plan, max_count, &returned, perf.data()));
  }

  for (int i = 0; i < returned && !choice.chosen; ++i) {
    const auto& r = perf[static_cast<size_t>(i)];
    if (!acceptable(r, p)) continue;
    // The algorithm runs with the math type it was ranked (or timed) with; without TF32
    // the descriptor stays at FMA math.
    if (p.allow_tf32) EMBER_CUDNN_CHECK(cudnnSetConvolutionMathType(cd, r.mathType));
    size_t bytes = 0;
    if (Calls::workspace(h, plan, r.algo, &bytes) != CUDNN_STATUS_SUCCESS ||
        bytes > kMaxWorkspace) {
      EMBER_CUDNN_CHECK(cudnnSetConvolutionMathType(cd, policy_math(p)));
      continue;
    }
    choice = AlgoChoice{true, static_cast<int>(r.algo), bytes};
  }
  if (!choice.chosen) {
    // Nothing acceptable was offered (e.g. every candidate was non-deterministic): the
    // fallbacks are deterministic and supported for every float32 NCHW convolution.
    EMBER_CUDNN_CHECK(cudnnSetConvolutionMathType(cd, policy_math(p)));
    size_t bytes = 0;
    EMBER_CUDNN_CHECK(Calls::workspace(h, plan, Calls::kFallback, &bytes));
    choice = AlgoChoice{true, static_cast<int>(Calls::kFallback), bytes};
  }
  return choice;
}

template <typename Calls>
size_t workspace_query(cudnnHandle_t h, const ConvShape& s, const ConvPolicy& p, const void* a,
                       const void* b, void* out, const ScratchFn& scratch) {
  PlanCache& cache = plan_cache();
  std::lock_guard<std::mutex> lock(cache.mu);
  Plan& plan = plan_for(cache, s, p);
  return choose<Calls>(h, plan, p, a, b, out, scratch).workspace;
}

// The cached plan and its choice for a direction whose workspace was queried before. It
// holds the plan, so an eviction by another thread meanwhile cannot destroy it.
struct Ready {
  std::shared_ptr<const Plan> plan;
  cudnnConvolutionDescriptor_t conv;
  AlgoChoice choice;
};

Ready ready_plan(const ConvShape& s, const ConvPolicy& p, Direction dir, size_t workspace_bytes,
                 void* workspace) {
  PlanCache& cache = plan_cache();
  std::lock_guard<std::mutex> lock(cache.mu);
  std::shared_ptr<const Plan> found = cache.plans.find(Key{current_device(), s, p});
  EMBER_INTERNAL_ASSERT(found != nullptr && found->choice[dir].chosen,
                        "conv2d: the workspace query must come before the cuDNN call");
  const Plan& plan = *found;
  const AlgoChoice choice = plan.choice[dir];
  EMBER_INTERNAL_ASSERT(workspace_bytes >= choice.workspace &&
                            (choice.workspace == 0 || workspace != nullptr),
                        "conv2d: workspace of ", workspace_bytes, " bytes, the algorithm needs ",
                        choice.workspace);
  return Ready{found, plan.conv[dir], choice};
}

// The policy with the data type of T.
template <typename T>
ConvPolicy typed(ConvPolicy p) {
  p.data_type = kDataType<T>;
  return p;
}

}  // namespace

template <typename T>
size_t conv2d_forward_workspace(cudnnHandle_t handle, const ConvShape& s, const ConvPolicy& policy,
                                const T* x, const T* w, T* y,
                                const ScratchFn& scratch) {
  const ConvPolicy p = typed<T>(policy);
  return workspace_query<ForwardCalls>(handle, s, p, x, w, y, scratch);
}

template <typename T>
void conv2d_forward(cudnnHandle_t handle, const ConvShape& s, const ConvPolicy& policy,
                    const T* x, const T* w, const T* bias, T* y,
                    void* workspace, size_t workspace_bytes) {
  const ConvPolicy p = typed<T>(policy);
  const Ready r = ready_plan(s, p, kForward, workspace_bytes, workspace);
  const float one = 1.0f, zero = 0.0f;
  EMBER_CUDNN_CHECK(cudnnConvolutionForward(
      handle, &one, r.plan->x, x, r.plan->w, w, r.conv,
      static_cast<cudnnConvolutionFwdAlgo_t>(r.choice.algo), workspace, workspace_bytes, &zero,
      r.plan->y, y));
  // Bias in place on y: one read-modify-write pass, where a broadcasting add would also
  // allocate a second output and leave the first for the pool.
  if (bias != nullptr) {
    EMBER_CUDNN_CHECK(cudnnAddTensor(handle, &one, r.plan->bias, bias, &one, r.plan->y, y));
  }
}

template <typename T>
size_t conv2d_backward_data_workspace(cudnnHandle_t handle, const ConvShape& s,
                                      const ConvPolicy& policy, const T* w, const T* dy,
                                      T* dx, const ScratchFn& scratch) {
  const ConvPolicy p = typed<T>(policy);
  return workspace_query<BackwardDataCalls>(handle, s, p, w, dy, dx, scratch);
}

template <typename T>
void conv2d_backward_data(cudnnHandle_t handle, const ConvShape& s, const ConvPolicy& policy,
                          const T* w, const T* dy, T* dx, void* workspace,
                          size_t workspace_bytes) {
  const ConvPolicy p = typed<T>(policy);
  const Ready r = ready_plan(s, p, kBackwardData, workspace_bytes, workspace);
  const float one = 1.0f, zero = 0.0f;
  EMBER_CUDNN_CHECK(cudnnConvolutionBackwardData(
      handle, &one, r.plan->w, w, r.plan->y, dy, r.conv,
      static_cast<cudnnConvolutionBwdDataAlgo_t>(r.choice.algo), workspace, workspace_bytes,
      &zero, r.plan->x, dx));
}

template <typename T>
size_t conv2d_backward_filter_workspace(cudnnHandle_t handle, const ConvShape& s,
                                        const ConvPolicy& policy, const T* x, const T* dy,
                                        T* dw, const ScratchFn& scratch) {
  const ConvPolicy p = typed<T>(policy);
  return workspace_query<BackwardFilterCalls>(handle, s, p, x, dy, dw, scratch);
}

template <typename T>
void conv2d_backward_filter(cudnnHandle_t handle, const ConvShape& s, const ConvPolicy& policy,
                            const T* x, const T* dy, T* dw, void* workspace,
                            size_t workspace_bytes) {
  const ConvPolicy p = typed<T>(policy);
  const Ready r = ready_plan(s, p, kBackwardFilter, workspace_bytes, workspace);
  const float one = 1.0f, zero = 0.0f;
  EMBER_CUDNN_CHECK(cudnnConvolutionBackwardFilter(
      handle, &one, r.plan->x, x, r.plan->y, dy, r.conv,
      static_cast<cudnnConvolutionBwdFilterAlgo_t>(r.choice.algo), workspace, workspace_bytes,
      &zero, r.plan->w, dw));
}

#define EMBER_CUDNN_CONV_INSTANTIATE(T)                                                        \
  template size_t conv2d_forward_workspace<T>(cudnnHandle_t, const ConvShape&,                \
                                              const ConvPolicy&, const T*, const T*, T*,      \
                                              const ScratchFn&);                              \
  template void conv2d_forward<T>(cudnnHandle_t, const ConvShape&, const ConvPolicy&,         \
                                  const T*, const T*, const T*, T*, void*, size_t);           \
  template size_t conv2d_backward_data_workspace<T>(cudnnHandle_t, const ConvShape&,          \
                                                    const ConvPolicy&, const T*, const T*,    \
                                                    T*, const ScratchFn&);                    \
  template void conv2d_backward_data<T>(cudnnHandle_t, const ConvShape&, const ConvPolicy&,   \
                                        const T*, const T*, T*, void*, size_t);               \
  template size_t conv2d_backward_filter_workspace<T>(cudnnHandle_t, const ConvShape&,        \
                                                      const ConvPolicy&, const T*, const T*,  \
                                                      T*, const ScratchFn&);                  \
  template void conv2d_backward_filter<T>(cudnnHandle_t, const ConvShape&, const ConvPolicy&, \
                                          const T*, const T*, T*, void*, size_t);
EMBER_CUDNN_CONV_INSTANTIATE(float)
EMBER_CUDNN_CONV_INSTANTIATE(Half)
EMBER_CUDNN_CONV_INSTANTIATE(BFloat16)
#undef EMBER_CUDNN_CONV_INSTANTIATE

bool conv2d_chosen_algorithm(cudnnHandle_t handle, const ConvShape& s, const ConvPolicy& p,
                             ConvDirection dir, ConvAlgorithm* out) {
  Direction d = kForward;
  switch (dir) {
    case ConvDirection::kForward: d = kForward; break;
    case ConvDirection::kBackwardData: d = kBackwardData; break;
    case ConvDirection::kBackwardFilter: d = kBackwardFilter; break;
  }
  (void)handle;
  PlanCache& cache = plan_cache();
  std::lock_guard<std::mutex> lock(cache.mu);
  std::shared_ptr<const Plan> found = cache.plans.find(Key{current_device(), s, p});
  if (found == nullptr || !found->choice[d].chosen) return false;
  const Plan& plan = *found;
  // The descriptor holds the math type `choose` settled on for this direction.
  cudnnMathType_t math = CUDNN_FMA_MATH;
  EMBER_CUDNN_CHECK(cudnnGetConvolutionMathType(plan.conv[d], &math));
  *out = ConvAlgorithm{plan.choice[d].algo, plan.choice[d].workspace, math};
  return true;
}

}  // namespace ember::kernels::cudnn

namespace ember::kernels::cuda {

namespace {

cudnn::ConvPolicy policy_of(const Context& ctx) {
  EMBER_INTERNAL_ASSERT(ctx.cudnn != nullptr, "conv2d (CUDA): the context has no cuDNN handle");
  return {ctx.cudnn_benchmark, ctx.deterministic, ctx.allow_tf32};
}

// The measured search's workspace: it may ask for more than is free, and then searches
// without one rather than fail.
cudnn::ScratchFn search_scratch(const Scratch& scratch) {
  return [&scratch](size_t bytes) -> void* {
    try {
      return scratch(bytes);
    } catch (const OutOfMemoryError&) {
      return nullptr;
    }
  };
}

}  // namespace

template <typename T>
void conv2d_forward(Context ctx, const ConvShape& s, const T* x, const T* w,
                    const T* bias, T* y, const Scratch& scratch) {
  const cudnn::ConvPolicy p = policy_of(ctx);
  const size_t bytes =
      cudnn::conv2d_forward_workspace(ctx.cudnn, s, p, x, w, y, search_scratch(scratch));
  cudnn::conv2d_forward(ctx.cudnn, s, p, x, w, bias, y, scratch(bytes), bytes);
}

template <typename T>
void conv2d_backward_data(Context ctx, const ConvShape& s, const T* w, const T* dy,
                          T* dx, const Scratch& scratch) {
  const cudnn::ConvPolicy p = policy_of(ctx);
  const size_t bytes =
      cudnn::conv2d_backward_data_workspace(ctx.cudnn, s, p, w, dy, dx, search_scratch(scratch));
  cudnn::conv2d_backward_data(ctx.cudnn, s, p, w, dy, dx, scratch(bytes), bytes);
}

template <typename T>
void conv2d_backward_filter(Context ctx, const ConvShape& s, const T* x, const T* dy,
                            T* dw, const Scratch& scratch) {
  const cudnn::ConvPolicy p = policy_of(ctx);
  const size_t bytes = cudnn::conv2d_backward_filter_workspace(ctx.cudnn, s, p, x, dy, dw,
                                                               search_scratch(scratch));
  cudnn::conv2d_backward_filter(ctx.cudnn, s, p, x, dy, dw, scratch(bytes), bytes);
}

#define EMBER_CONV_INSTANTIATE(T)                                                            \
  template void conv2d_forward<T>(Context, const ConvShape&, const T*, const T*, const T*, T*, \
                                  const Scratch&);                                            \
  template void conv2d_backward_data<T>(Context, const ConvShape&, const T*, const T*, T*,    \
                                        const Scratch&);                                      \
  template void conv2d_backward_filter<T>(Context, const ConvShape&, const T*, const T*, T*,  \
                                          const Scratch&);
EMBER_CONV_INSTANTIATE(float)
EMBER_CONV_INSTANTIATE(Half)
EMBER_CONV_INSTANTIATE(BFloat16)
#undef EMBER_CONV_INSTANTIATE

}  // namespace ember::kernels::cuda
