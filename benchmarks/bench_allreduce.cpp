// ember's NCCL all-reduce (dist::all_reduce on the default group, one rank on GPU 0)
// against ncclAllReduce called directly on a communicator of its own, same size, same
// stream order: what the process group, its stream and its event ordering cost on top of
// the library. Algorithm bandwidth (bytes / time); with one rank NCCL copies in place, so
// this measures overhead, not the network. Built when NCCL is (EMBER_WITH_NCCL).
#include <cuda_runtime_api.h>
#include <nccl.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "ember/benchmarks/harness.h"
#include "ember/core/base/cuda_check.h"
#include "ember/core/cuda_context.h"
#include "ember/core/dist/dist.h"
#include "ember/core/tensor.h"

namespace {

using namespace ember;
using bench::Report;
using bench::Row;
using bench::Timing;

void check_nccl(ncclResult_t r, const char* what) {
  if (r != ncclSuccess) {
    throw Error(std::string(what) + " failed: " + ncclGetErrorString(r));
  }
}

// The raw library's own one-rank communicator on the current device.
class RawComm {
 public:
  RawComm() {
    ncclUniqueId id;
    check_nccl(ncclGetUniqueId(&id), "ncclGetUniqueId");
    check_nccl(ncclCommInitRank(&comm_, 1, id, 0), "ncclCommInitRank");
  }
  ~RawComm() { ncclCommDestroy(comm_); }
  RawComm(const RawComm&) = delete;
  RawComm& operator=(const RawComm&) = delete;
  ncclComm_t get() const { return comm_; }

 private:
  ncclComm_t comm_ = nullptr;
};

void run(Report& report) {
  report.begin();
  const bench::Options& opts = report.options();
  // The store of a one-rank group still listens: EMBER_BENCH_PORT picks its port.
  const char* port = std::getenv("EMBER_BENCH_PORT");
  dist::init_process_group({.backend = "nccl", .rank = 0, .world_size = 1,
                            .master_addr = "127.0.0.1",
                            .master_port = port != nullptr ? std::atoi(port) : 29541});
  int version = 0;
  ncclGetVersion(&version);
  std::printf("# NCCL %d, one rank on GPU 0; algorithm bandwidth = bytes / time\n", version);
  report.set("nccl_version", version);
  report.table("GB/s");
  const cudaStream_t stream = cuda::compute_stream(0);
  RawComm raw;
  for (const int64_t mib : {1, 16, 128}) {
    const int64_t n = mib * (int64_t{1} << 20) / 4;
    Tensor t = full({n}, 2.0, {.device = Device::cuda(0)});
    Tensor u = full({n}, 2.0, {.device = Device::cuda(0)});
    auto ember_call = [&] { dist::all_reduce(t, dist::ReduceOp::Sum).wait(); };
    auto raw_call = [&] {
      check_nccl(ncclAllReduce(u.data_ptr(), u.data_ptr(), static_cast<size_t>(n), ncclFloat,
                               ncclSum, raw.get(), stream),
                 "ncclAllReduce");
    };
    const Timing e = bench::time_on_stream(stream, ember_call, opts);
    const Timing b = bench::time_on_stream(stream, raw_call, opts);
    // One rank: a sum leaves the values as they were.
    EMBER_CUDA_CHECK(cudaStreamSynchronize(stream));
    if (t.narrow(0, n - 1, 1).cpu().item() != 2.0) {
      report.fail("all_reduce of " + std::to_string(mib) + " MiB changed the values");
    }
    const double bytes = static_cast<double>(n) * 4.0;
    Row r;
    r.name = "all_reduce float32 " + std::to_string(mib) + " MiB";
    r.ember = e;
    r.baseline = "ncclAllReduce";
    r.baseline_ms = b.median_ms;
    r.unit = "GB/s";
    r.throughput = bytes / (e.median_ms * 1e-3) / 1e9;
    r.note = bench::fmt("raw %.1f", bytes / (b.median_ms * 1e-3) / 1e9);
    r.extra = {{"bytes", bytes}};
    report.add(std::move(r));
  }
  dist::destroy_process_group();
}

}  // namespace

int main(int argc, char** argv) {
  return ember::bench::run_benchmark(argc, argv, "bench_allreduce",
                                     "ember's NCCL all-reduce against ncclAllReduce", run);
}
