// The NCCL backend: CUDA tensors on the GPU of LOCAL_RANK, one communicator shared
// through the store's copy of NCCL's unique id, and a stream of its own.
//
// Note [NCCL streams]
// A collective runs on the group's NCCL stream, ordered after the work already queued on
// the device's compute stream by an event (the tensor's producer), and the compute stream
// is ordered after the collective by a second event when Work::wait() is called, so the
// host never blocks on the GPU except to enforce the timeout: wait() polls the done event
// and the communicator's asynchronous error, and aborts the communicator (which unblocks
// the kernels of every rank) when the timeout passes. The tensors a collective uses are
// held by its Work until it is done, so the memory pool cannot hand them out too early.
#include "ember/core/dist/backend.h"

#if EMBER_WITH_NCCL

#include <cuda_runtime.h>
#include <nccl.h>

#include <atomic>
#include <thread>

#include "ember/core/base/cuda_check.h"
#include "ember/core/cuda_context.h"

namespace ember::dist {
namespace {

using Clock = std::chrono::steady_clock;

#define EMBER_NCCL_CHECK(call, what)                                                    \
  do {                                                                                  \
    const ncclResult_t _st = (call);                                                    \
    EMBER_CHECK_T(dist::DistributedError, _st == ncclSuccess, what, ": ", #call, " failed: ", \
                  ncclGetErrorString(_st), " (", __FILE__, ":", __LINE__, ")");         \
  } while (0)

ncclDataType_t nccl_type(DType d) {
  switch (d) {
    case kFloat32: return ncclFloat32;
    case kFloat64: return ncclFloat64;
    case kFloat16: return ncclFloat16;
    case kBFloat16: return ncclBfloat16;
    case kInt32: return ncclInt32;
    case kInt64: return ncclInt64;
    default: return ncclUint8;  // byte moves only (broadcast, all_gather)
  }
}

ncclRedOp_t nccl_op(ReduceOp op) {
  switch (op) {
    case ReduceOp::Sum: return ncclSum;
    case ReduceOp::Avg: return ncclAvg;
    case ReduceOp::Max: return ncclMax;
    case ReduceOp::Min: return ncclMin;
  }
  return ncclSum;
}

class NcclBackend;

struct NcclWork : Work::State {
  NcclBackend* backend = nullptr;
  std::string what;
  cudaEvent_t done = nullptr;
  int device = 0;
  std::vector<Tensor> keep_alive;
  std::atomic<bool> finished{false};
  ~NcclWork() override {
    if (done != nullptr) cudaEventDestroy(done);
  }
  void wait() override;
  bool completed() override {
    return finished || cudaEventQuery(done) == cudaSuccess;
  }
};

class NcclBackend : public Backend {
 public:
  explicit NcclBackend(const GroupInfo& info) : info_(info) {
    int count = 0;
    EMBER_CUDA_CHECK(cudaGetDeviceCount(&count));
    EMBER_CHECK_T(dist::DistributedError, count > 0,
                  "init_process_group: backend \"nccl\" on rank ", info.rank, " found no GPU");
    device_ = info.local_rank % count;
    EMBER_CUDA_CHECK(cudaSetDevice(device_));
    ncclUniqueId id;
    if (info.rank == 0) {
      EMBER_NCCL_CHECK(ncclGetUniqueId(&id), "init_process_group");
      info.store->set("nccl/unique_id",
                      std::vector<char>(id.internal, id.internal + NCCL_UNIQUE_ID_BYTES));
    } else {
      const std::vector<char> bytes = info.store->get("nccl/unique_id");
      EMBER_INTERNAL_ASSERT(bytes.size() == NCCL_UNIQUE_ID_BYTES, "NCCL unique id of ",
                            bytes.size(), " bytes");
      std::copy(bytes.begin(), bytes.end(), id.internal);
    }
    EMBER_NCCL_CHECK(ncclCommInitRank(&comm_, info.world_size, id, info.rank),
                     detail::str_cat("init_process_group (rank ", info.rank, " of ",
                                     info.world_size, ", GPU ", device_, ")"));
    EMBER_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
  }

  ~NcclBackend() override { shutdown(); }

  std::string name() const override { return "nccl"; }

  Work all_reduce(const Tensor& t, ReduceOp op) override {
    return launch(detail::str_cat("all_reduce of ", dtype_name(t.dtype()), " ",
                                  shape_str(t.shape()), " (", reduce_op_name(op), ")"),
                  {t}, [&] {
      return ncclAllReduce(t.data_ptr(), t.data_ptr(), t.numel(), nccl_type(t.dtype()),
                           nccl_op(op), comm_, stream_);
    });
  }

  Work broadcast(const Tensor& t, int src) override {
    const bool typed = t.dtype() != kBool && t.dtype() != kUInt8;
    return launch(detail::str_cat("broadcast of ", dtype_name(t.dtype()), " ",
                                  shape_str(t.shape()), " from rank ", src), {t}, [&] {
      return ncclBroadcast(t.data_ptr(), t.data_ptr(),
                           typed ? static_cast<size_t>(t.numel()) : t.nbytes(),
                           typed ? nccl_type(t.dtype()) : ncclUint8, src, comm_, stream_);
    });
  }

  Work all_gather(const Tensor& output, const Tensor& input) override {
    return launch(detail::str_cat("all_gather of ", dtype_name(input.dtype()), " ",
                                  shape_str(input.shape())), {output, input}, [&] {
      return ncclAllGather(input.data_ptr(), output.data_ptr(), input.nbytes(), ncclUint8,
                           comm_, stream_);
    });
  }

  Work reduce_scatter(const Tensor& output, const Tensor& input, ReduceOp op) override {
    return launch(detail::str_cat("reduce_scatter of ", dtype_name(input.dtype()), " ",
                                  shape_str(input.shape()), " (", reduce_op_name(op), ")"),
                  {output, input}, [&] {
      return ncclReduceScatter(input.data_ptr(), output.data_ptr(), output.numel(),
                               nccl_type(input.dtype()), nccl_op(op), comm_, stream_);
    });
  }

  // NCCL has no barrier: an all-reduce of one element, waited for on the host.
  Work barrier() override {
    Tensor one = zeros({1}, {.device = Device::cuda(device_)});
    Work w = all_reduce(one, ReduceOp::Sum);
    w.wait();
    EMBER_CUDA_CHECK(cudaStreamSynchronize(ember::cuda::compute_stream(device_)));
    return w;
  }

  void shutdown() override {
    if (comm_ != nullptr) {
      if (aborted_) {
        ncclCommAbort(comm_);
      } else {
        cudaStreamSynchronize(stream_);
        ncclCommDestroy(comm_);
      }
      comm_ = nullptr;
    }
    if (stream_ != nullptr) {
      cudaStreamDestroy(stream_);
      stream_ = nullptr;
    }
  }

  // See Note [NCCL streams].
  void wait(NcclWork& w) {
    const auto deadline = Clock::now() + info_.timeout;
    while (!w.finished) {
      const cudaError_t q = cudaEventQuery(w.done);
      if (q == cudaSuccess) break;
      if (q != cudaErrorNotReady) {
        ember::detail::throw_cuda_error(q, "cudaEventQuery", __FILE__, __LINE__);
      }
      ncclResult_t async = ncclSuccess;
      if (comm_ != nullptr) ncclCommGetAsyncError(comm_, &async);
      const bool late = Clock::now() >= deadline;
      if (async != ncclSuccess || late) {
        aborted_ = true;
        if (comm_ != nullptr) {
          ncclCommAbort(comm_);
          comm_ = nullptr;
        }
        throw DistributedError(failure_message(
            info_, "nccl", w.what,
            late ? detail::str_cat("not done after ", info_.timeout.count(),
                                   " ms; the communicator was aborted")
                 : std::string(ncclGetErrorString(async))));
      }
      std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
    w.finished = true;
    w.keep_alive.clear();
    EMBER_CUDA_CHECK(cudaStreamWaitEvent(ember::cuda::compute_stream(w.device), w.done, 0));
  }

 private:
  template <typename Call>
  Work launch(std::string what, std::vector<Tensor> tensors, Call&& call) {
    EMBER_CHECK_T(dist::DistributedError, comm_ != nullptr, what,
                  ": the NCCL communicator of rank ", info_.rank,
                  " was aborted after an earlier failure; destroy the process group");
    for (const Tensor& t : tensors) {
      EMBER_CHECK_T(DeviceError, t.device().index() == device_, what, ": tensor on ",
                    t.device().str(), " but rank ", info_.rank, "'s NCCL communicator is on "
                    "cuda:", device_, " (LOCAL_RANK picks the GPU)");
    }
    auto w = std::make_shared<NcclWork>();
    w->backend = this;
    w->what = std::move(what);
    w->device = device_;
    w->keep_alive = std::move(tensors);
    EMBER_CUDA_CHECK(cudaSetDevice(device_));
    cudaEvent_t ready = nullptr;
    EMBER_CUDA_CHECK(cudaEventCreateWithFlags(&ready, cudaEventDisableTiming));
    EMBER_CUDA_CHECK(cudaEventRecord(ready, ember::cuda::compute_stream(device_)));
    EMBER_CUDA_CHECK(cudaStreamWaitEvent(stream_, ready, 0));
    cudaEventDestroy(ready);
    if (w->keep_alive.front().numel() > 0) {
      EMBER_NCCL_CHECK(call(), w->what);
    }
    EMBER_CUDA_CHECK(cudaEventCreateWithFlags(&w->done, cudaEventDisableTiming));
    EMBER_CUDA_CHECK(cudaEventRecord(w->done, stream_));
    return Work(w);
  }

  GroupInfo info_;
  int device_ = 0;
  ncclComm_t comm_ = nullptr;
  cudaStream_t stream_ = nullptr;
  bool aborted_ = false;
};

void NcclWork::wait() { backend->wait(*this); }

}  // namespace

std::unique_ptr<Backend> make_nccl_backend(const GroupInfo& info) {
  return std::make_unique<NcclBackend>(info);
}

}  // namespace ember::dist

#else  // !EMBER_WITH_NCCL

namespace ember::dist {

std::unique_ptr<Backend> make_nccl_backend(const GroupInfo& info) {
  throw DistributedError(detail::str_cat(
      "init_process_group: rank ", info.rank, " asked for backend \"nccl\" but ember was "
      "built without NCCL (it needs EMBER_CUDA=ON and NCCL's nccl.h and libnccl)"));
}

}  // namespace ember::dist

#endif  // EMBER_WITH_NCCL
