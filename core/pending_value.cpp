// PendingValue (Note [Reading without waiting] in core/pending_value.h): a copy into a
// pinned staging block on the tensor's compute stream, and an event recorded after it.
#include "ember/core/pending_value.h"

#include <cstring>

#include "ember/core/base/error.h"
#include "ember/core/device.h"
#include "ember/core/memory/pinned_pool.h"

#if EMBER_WITH_CUDA
#include <cuda_runtime_api.h>

#include "ember/core/base/cuda_check.h"
#include "ember/core/cuda_context.h"
#endif

namespace ember {

namespace {

double as_double(const void* p, DType dtype) {
  switch (dtype) {
    case DType::Float32: return *static_cast<const float*>(p);
    case DType::Float64: return *static_cast<const double*>(p);
    case DType::Int32: return *static_cast<const int32_t*>(p);
    case DType::Int64: return static_cast<double>(*static_cast<const int64_t*>(p));
    case DType::UInt8: return *static_cast<const uint8_t*>(p);
    case DType::Bool: return *static_cast<const bool*>(p) ? 1.0 : 0.0;
    case DType::Float16: return static_cast<float>(*static_cast<const Half*>(p));
    case DType::BFloat16: return static_cast<float>(*static_cast<const BFloat16*>(p));
  }
  EMBER_CHECK_T(DTypeError, false, "PendingValue: cannot read a ", dtype_name(dtype), " value");
  return 0.0;
}

}  // namespace

struct PendingValue::State {
  double host_value = 0.0;  // the value, once known
  bool known = false;
  DType dtype = kFloat32;
  void* staging = nullptr;  // pinned block the copy lands in
#if EMBER_WITH_CUDA
  cudaEvent_t copied = nullptr;
#endif

  State() = default;
  State(const State&) = delete;
  State& operator=(const State&) = delete;
  ~State() {
#if EMBER_WITH_CUDA
    // The block goes back to the pool only once the copy into it is done.
    if (copied != nullptr) {
      EMBER_CUDA_WARN(cudaEventSynchronize(copied));
      EMBER_CUDA_WARN(cudaEventDestroy(copied));
    }
#endif
    memory::pinned_free(staging);
  }

  void settle() {
    if (known) return;
    host_value = as_double(staging, dtype);
    known = true;
  }
};

PendingValue::PendingValue(const Tensor& scalar) {
  EMBER_CHECK(scalar.defined(), "PendingValue: the tensor is undefined");
  EMBER_CHECK_T(ShapeError, scalar.numel() == 1, "PendingValue: needs a tensor of one element, got ",
                shape_str(scalar.shape()));
  auto s = std::make_shared<State>();
  s->dtype = scalar.dtype();
  if (scalar.device().is_cpu()) {
    s->host_value = scalar.item();
    s->known = true;
    state_ = std::move(s);
    return;
  }
#if EMBER_WITH_CUDA
  const Tensor src = scalar.contiguous();
  const int device = src.device().index();
  cuda::DeviceGuard guard(device);
  cudaStream_t stream = cuda::compute_stream(device);
  const size_t bytes = dtype_size(src.dtype());
  s->staging = memory::pinned_alloc(bytes);
  EMBER_CUDA_CHECK(cudaMemcpyAsync(s->staging, src.data_ptr(), bytes, cudaMemcpyDeviceToHost,
                                   stream));
  EMBER_CUDA_CHECK(cudaEventCreateWithFlags(&s->copied, cudaEventDisableTiming));
  EMBER_CUDA_CHECK(cudaEventRecord(s->copied, stream));
  // `src` may go back to the pool now: the pool hands its memory out again only to work
  // queued after this copy on the same stream.
#endif
  state_ = std::move(s);
}

bool PendingValue::ready() const {
  EMBER_CHECK(valid(), "PendingValue::ready: nothing pending");
  if (state_->known) return true;
#if EMBER_WITH_CUDA
  const cudaError_t st = cudaEventQuery(state_->copied);
  if (st == cudaErrorNotReady) return false;
  EMBER_CUDA_CHECK(st);
  state_->settle();
#endif
  return true;
}

double PendingValue::value() const {
  EMBER_CHECK(valid(), "PendingValue::value: nothing pending");
  if (state_->known) return state_->host_value;
#if EMBER_WITH_CUDA
  if (cudaEventQuery(state_->copied) == cudaErrorNotReady) cuda::note_host_sync();
  EMBER_CUDA_CHECK(cudaEventSynchronize(state_->copied));
  state_->settle();
#endif
  return state_->host_value;
}

}  // namespace ember
