// ember's CUDA caching pool (cuda::raw_alloc/raw_free and Tensor::empty) against
// cudaMalloc + cudaFree: host time per alloc/free pair, and the pool's figures.
#include <cuda_runtime_api.h>

#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "ember/benchmarks/harness.h"
#include "ember/core/base/cuda_check.h"
#include "ember/core/cuda_context.h"
#include "ember/core/memory/cuda_memory.h"
#include "ember/core/tensor.h"

namespace {

using namespace ember;
using bench::Json;
using bench::Report;
using bench::Row;
using bench::Timing;

constexpr int kPairs = 1000;  // alloc/free pairs per timed loop

std::string size_label(size_t bytes) {
  return bytes >= (size_t{1} << 20) ? std::to_string(bytes >> 20) + " MiB"
                                    : std::to_string(bytes >> 10) + " KiB";
}

Json stats_json(const memory::AllocatorStats& s) {
  return {{"allocated_bytes", s.allocated_bytes}, {"reserved_bytes", s.reserved_bytes},
          {"peak_allocated_bytes", s.peak_allocated_bytes},
          {"peak_reserved_bytes", s.peak_reserved_bytes}, {"segments", s.segments},
          {"device_allocs", s.device_allocs}, {"device_frees", s.device_frees},
          {"num_allocs", s.num_allocs}, {"cache_hits", s.cache_hits},
          {"oom_retries", s.oom_retries}, {"ooms", s.ooms}};
}

// Two live blocks are distinct, aligned and usable on the stream.
bool check_pool(Report& report, size_t bytes, cudaStream_t stream) {
  void* p = cuda::raw_alloc(bytes, 0, stream);
  void* q = cuda::raw_alloc(bytes, 0, stream);
  const auto at = [](void* ptr) { return reinterpret_cast<uintptr_t>(ptr); };
  bool ok = p && q && p != q && at(p) % 256 == 0 && at(q) % 256 == 0;
  if (ok) {
    EMBER_CUDA_CHECK(cudaMemsetAsync(p, 0xAB, bytes, stream));
    EMBER_CUDA_CHECK(cudaMemsetAsync(q, 0x00, bytes, stream));
    unsigned char first = 0, last = 0;
    EMBER_CUDA_CHECK(cudaMemcpyAsync(&first, p, 1, cudaMemcpyDeviceToHost, stream));
    EMBER_CUDA_CHECK(cudaMemcpyAsync(&last, static_cast<char*>(p) + bytes - 1, 1,
                                     cudaMemcpyDeviceToHost, stream));
    EMBER_CUDA_CHECK(cudaStreamSynchronize(stream));
    ok = first == 0xAB && last == 0xAB;
  }
  cuda::raw_free(p, 0);
  cuda::raw_free(q, 0);
  if (!ok) report.fail("raw_alloc(" + size_label(bytes) + "): blocks are not distinct, "
                       "256-byte aligned and writable");
  return ok;
}

void run(Report& report) {
  report.begin();
  const bench::Options& opts = report.options();
  const std::string backend = cuda::allocator_backend();
  const cudaStream_t stream = cuda::compute_stream(0);
  const Device gpu = Device::cuda(0);
  std::printf("# allocator backend: %s (EMBER_CUDA_ALLOC); %d alloc/free pairs per loop, "
              "host wall time, the stream synchronized at the end of each loop\n",
              backend.c_str(), kPairs);
  report.set("allocator_backend", backend);
  report.set("pairs_per_loop", kPairs);
  report.table("kpairs/s");

  Json per_size = Json::array();
  std::vector<std::string> steady_lines;
  for (const size_t bytes : {size_t{4} << 10, size_t{1} << 20, size_t{64} << 20}) {
    const std::string label = size_label(bytes);
    if (!check_pool(report, bytes, stream)) continue;

    auto pool_loop = [&] {
      for (int i = 0; i < kPairs; ++i) cuda::raw_free(cuda::raw_alloc(bytes, 0, stream), 0);
      EMBER_CUDA_CHECK(cudaStreamSynchronize(stream));
    };
    auto tensor_loop = [&] {
      const int64_t n = static_cast<int64_t>(bytes / sizeof(float));
      for (int i = 0; i < kPairs; ++i) (void)Tensor::empty({n}, {.device = gpu});
      EMBER_CUDA_CHECK(cudaStreamSynchronize(stream));
    };
    auto cuda_loop = [&] {
      for (int i = 0; i < kPairs; ++i) {
        void* p = nullptr;
        EMBER_CUDA_CHECK(cudaMalloc(&p, bytes));
        EMBER_CUDA_CHECK(cudaFree(p));
      }
      EMBER_CUDA_CHECK(cudaStreamSynchronize(stream));
    };

    EMBER_CUDA_CHECK(cudaDeviceSynchronize());
    pool_loop();  // the segment this size needs is taken from the driver here, once
    const memory::AllocatorStats before = cuda::memory_stats(0);
    const Timing pool = bench::time_on_host(pool_loop, kPairs, opts);
    const Timing tensor = bench::time_on_host(tensor_loop, kPairs, opts);
    const memory::AllocatorStats after = cuda::memory_stats(0);
    const Timing base = bench::time_on_host(cuda_loop, kPairs, opts);

    const int64_t steady_mallocs = after.device_allocs - before.device_allocs;
    const int64_t allocs = after.num_allocs - before.num_allocs;
    const int64_t hits = after.cache_hits - before.cache_hits;
    char line[200];
    std::snprintf(line, sizeof line,
                  "# %s: cudaMalloc calls in steady state: %lld (of %lld pool allocations, "
                  "%lld cache hits)",
                  label.c_str(), static_cast<long long>(steady_mallocs),
                  static_cast<long long>(allocs), static_cast<long long>(hits));
    steady_lines.push_back(line);
    per_size.push_back({{"bytes", bytes},
                        {"steady_state_cuda_mallocs", steady_mallocs},
                        {"pool_allocations", allocs},
                        {"cache_hits", hits}});
    if (backend == "pool" && steady_mallocs != 0) {
      report.fail(label + ": the pool called cudaMalloc " + std::to_string(steady_mallocs) +
                  " times in steady state (expected 0)");
    }

    auto add_row = [&](const std::string& name, const Timing& t) {
      Row r;
      r.name = name + " " + label;
      r.ember = t;
      r.baseline = "cudaMalloc + cudaFree";
      r.baseline_ms = base.median_ms;
      r.unit = "kpairs/s";
      r.throughput = 1.0 / t.median_ms;  // pairs per ms = thousands per second
      char note[64];
      std::snprintf(note, sizeof note, "cudaMalloc %.1f", 1.0 / base.median_ms);
      r.note = note;
      r.extra = {{"bytes", bytes}, {"steady_state_cuda_mallocs", steady_mallocs}};
      report.add(std::move(r));
    };
    add_row("raw_alloc/raw_free", pool);
    add_row("Tensor::empty", tensor);
  }

  const memory::AllocatorStats s = cuda::memory_stats(0);
  for (const std::string& l : steady_lines) std::printf("%s\n", l.c_str());
  std::printf("# pool figures: %lld cudaMalloc and %lld cudaFree calls in all, %lld segments, "
              "%s reserved, %lld allocations, %lld cache hits\n",
              static_cast<long long>(s.device_allocs), static_cast<long long>(s.device_frees),
              static_cast<long long>(s.segments), memory::format_size(s.reserved_bytes).c_str(),
              static_cast<long long>(s.num_allocs), static_cast<long long>(s.cache_hits));
  report.set("steady_state", per_size);
  report.set("pool_stats", stats_json(s));
}

}  // namespace

int main(int argc, char** argv) {
  return ember::bench::run_benchmark(argc, argv, "bench_memory_pool",
                                     "ember's CUDA caching pool against cudaMalloc/cudaFree",
                                     run);
}
