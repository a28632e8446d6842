// The benchmarks' shared harness: CUDA-event timing (median of repetitions after warm-up),
// one Markdown table row per measurement on stdout, and a JSON report with the device.
#pragma once

#include <cublas_api.h>
#include <cudnn.h>
#include <cuda_runtime_api.h>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <ctime>
#include <fstream>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "ember/core/base/cuda_check.h"
#include "ember/core/device.h"
#include "ember/kernels/cudnn/plan_cache.h"

namespace ember::bench {

using Json = nlohmann::json;

struct Options {
  std::string json_path;  // empty: no JSON file
  int warmup = 3;         // untimed calls before the repetitions
  int reps = 20;          // timed repetitions; the median is reported
};

// Parses --json PATH, --warmup N, --reps N. Returns false (after printing help or the
// error) when the program should exit with *exit_code.
inline bool parse_options(int argc, char** argv, const char* description, Options* opts,
                          int* exit_code) {
  CLI::App app{description};
  app.add_option("--json", opts->json_path, "write the results as JSON to this file");
  app.add_option("--warmup", opts->warmup, "untimed calls before timing")
      ->check(CLI::Range(0, 1000));
  app.add_option("--reps", opts->reps, "timed repetitions (the median is reported)")
      ->check(CLI::Range(1, 100000));
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    *exit_code = app.exit(e);
    return false;
  }
  return true;
}

// Runs `fn` `inner` times per repetition between two events on `stream` and returns the
// per-call time of each repetition, in ms. `fn` may do host work (an op's overhead):
// the start event runs on an idle stream at once, so host time before the launch counts.
// `inner` is chosen so that one repetition lasts about a millisecond: a single short
// kernel is near the events' resolution.
struct Timing {
  double median_ms = 0.0;
  double min_ms = 0.0;
  int inner = 1;  // calls per repetition
  int reps = 0;
};

inline double median(std::vector<double> v) {
  if (v.empty()) return std::nan("");
  std::sort(v.begin(), v.end());
  const size_t h = v.size() / 2;
  return v.size() % 2 ? v[h] : 0.5 * (v[h - 1] + v[h]);
}

inline Timing time_on_stream(cudaStream_t stream, const std::function<void()>& fn,
                             const Options& opts) {
  cudaEvent_t start = nullptr, stop = nullptr;
  EMBER_CUDA_CHECK(cudaEventCreate(&start));
  EMBER_CUDA_CHECK(cudaEventCreate(&stop));
  auto run = [&](int inner) {
    EMBER_CUDA_CHECK(cudaStreamSynchronize(stream));
    EMBER_CUDA_CHECK(cudaEventRecord(start, stream));
    for (int i = 0; i < inner; ++i) fn();
    EMBER_CUDA_CHECK(cudaEventRecord(stop, stream));
    EMBER_CUDA_CHECK(cudaEventSynchronize(stop));
    float ms = 0.0f;
    EMBER_CUDA_CHECK(cudaEventElapsedTime(&ms, start, stop));
    return static_cast<double>(ms) / inner;
  };
  for (int i = 0; i < opts.warmup; ++i) fn();
  const double probe = run(1);
  Timing t;
  t.inner = static_cast<int>(std::clamp(std::ceil(1.0 / std::max(probe, 1e-4)), 1.0, 1000.0));
  std::vector<double> times;
  for (int r = 0; r < opts.reps; ++r) times.push_back(run(t.inner));
  t.reps = opts.reps;
  t.median_ms = median(times);
  t.min_ms = *std::min_element(times.begin(), times.end());
  EMBER_CUDA_CHECK(cudaEventDestroy(start));
  EMBER_CUDA_CHECK(cudaEventDestroy(stop));
  return t;
}

// Host wall time of `fn` (which synchronizes as its measurement needs), per call of
// `fn` divided by `per_call` (e.g. the number of alloc/free pairs it performs).
inline Timing time_on_host(const std::function<void()>& fn, double per_call,
                           const Options& opts) {
  for (int i = 0; i < opts.warmup; ++i) fn();
  std::vector<double> times;
  for (int r = 0; r < opts.reps; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    fn();
    const auto t1 = std::chrono::steady_clock::now();
    times.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count() / per_call);
  }
  Timing t;
  t.reps = opts.reps;
  t.median_ms = median(times);
  t.min_ms = *std::min_element(times.begin(), times.end());
  return t;
}

// One measurement: ember against its baseline (baseline_ms NaN when there is none).
struct Row {
  std::string name;
  Timing ember;
  std::string baseline;  // what the baseline is, e.g. "cublasSgemm"
  double baseline_ms = std::nan("");
  double throughput = std::nan("");  // in `unit`
  std::string unit;                   // "GB/s", "TFLOP/s", "Mpairs/s"
  std::string note;                   // printed after the throughput, e.g. "87% of copy"
  Json extra = Json::object();        // more fields for the JSON row
};

inline std::string fmt(const char* f, double v) {
  if (std::isnan(v)) return "-";
  char buf[64];
  std::snprintf(buf, sizeof buf, f, v);
  return buf;
}

// Every ember-vs-raw comparison aims at ember/raw <= this.
constexpr double kTargetRatio = 1.05;

// A row comparing ember's time `t` with the raw library's `base` for `flops` of work:
// throughput in TFLOP/s, a note with the raw throughput (and `detail`), and the JSON
// fields every such row has (`extra` adds the case's own).
inline Row ratio_row(std::string name, std::string baseline, const Timing& t, const Timing& base,
                     double flops, const std::string& detail = "", Json extra = Json::object()) {
  Row r;
  r.name = std::move(name);
  r.ember = t;
  r.baseline = std::move(baseline);
  r.baseline_ms = base.median_ms;
  r.unit = "TFLOP/s";
  r.throughput = flops / (t.median_ms * 1e-3) / 1e12;
  const double raw_tflops = flops / (base.median_ms * 1e-3) / 1e12;
  const double ratio = t.median_ms / base.median_ms;
  r.note = fmt("raw %.2f", raw_tflops) + (detail.empty() ? "" : "; " + detail) +
           (ratio > kTargetRatio ? "; above the 1.05 target" : "");
  r.extra = std::move(extra);
  r.extra["flops"] = flops;
  r.extra["baseline_tflops"] = raw_tflops;
  r.extra["within_target"] = ratio <= kTargetRatio;
  return r;
}

// --- the baselines' own cuDNN objects ------------------------------------------------------

using kernels::cudnn::warn_cudnn;

// One cuDNN handle or descriptor, destroyed with its owner (a failure there is reported,
// not thrown: destructors also run while an exception unwinds).
template <typename T, cudnnStatus_t (*kDestroy)(T)>
class CudnnObject {
 public:
  explicit CudnnObject(const char* destroy_name) : destroy_name_(destroy_name) {}
  CudnnObject(const CudnnObject&) = delete;
  CudnnObject& operator=(const CudnnObject&) = delete;
  ~CudnnObject() {
    if (p_ != nullptr) warn_cudnn(kDestroy(p_), destroy_name_);
  }
  T* out() { return &p_; }
  T get() const { return p_; }

 private:
  T p_ = nullptr;
  const char* destroy_name_;
};

using CudnnHandle = CudnnObject<cudnnHandle_t, cudnnDestroy>;
using TensorDesc = CudnnObject<cudnnTensorDescriptor_t, cudnnDestroyTensorDescriptor>;

// --- checking ember's results against the raw library's ---------------------------------

// Reproducible values in [-scale, scale).
inline std::vector<float> host_values(int64_t n, uint64_t seed, float scale) {
  std::vector<float> v(static_cast<size_t>(n));
  uint64_t s = seed * 0x9E3779B97F4A7C15ull + 7;
  for (auto& x : v) {
    s = s * 6364136223846793005ull + 1442695040888963407ull;
    const double u = static_cast<double>(s >> 40) / static_cast<double>(1ull << 24);
    x = static_cast<float>((2.0 * u - 1.0) * scale);
  }
  return v;
}

// Largest |got - want| over the whole output, relative to the largest |want|.
inline double max_relative_diff(const std::vector<float>& got, const std::vector<float>& want) {
  if (got.size() != want.size()) return INFINITY;
  double diff = 0.0, scale = 1e-30;
  for (size_t i = 0; i < want.size(); ++i) {
    const double d = std::abs(static_cast<double>(got[i]) - want[i]);
    diff = std::isnan(d) ? INFINITY : std::max(diff, d);
    scale = std::max(scale, std::abs(static_cast<double>(want[i])));
  }
  return diff / scale;
}

// An f64 reference value and the sum of the magnitudes of its terms.
struct Ref {
  double value = 0.0, mag = 0.0;
  void add(double term) {
    value += term;
    mag += std::abs(term);
  }
};


// The device, driver and library versions, for the JSON report.
inline Json device_info(int device = 0) {
  cudaDeviceProp p{};
  EMBER_CUDA_CHECK(cudaGetDeviceProperties(&p, device));
  int driver = 0, runtime = 0;
  EMBER_CUDA_CHECK(cudaDriverGetVersion(&driver));
  EMBER_CUDA_CHECK(cudaRuntimeGetVersion(&runtime));
  int cublas_major = 0, cublas_minor = 0, cublas_patch = 0;
  EMBER_CUBLAS_CHECK(cublasGetProperty(MAJOR_VERSION, &cublas_major));
  EMBER_CUBLAS_CHECK(cublasGetProperty(MINOR_VERSION, &cublas_minor));
  EMBER_CUBLAS_CHECK(cublasGetProperty(PATCH_LEVEL, &cublas_patch));
  auto version = [](int v) {  // 13000 -> "13.0"
    return std::to_string(v / 1000) + "." + std::to_string((v % 1000) / 10);
  };
  const size_t cudnn = cudnnGetVersion();  // 9.x: major * 10000 + minor * 100 + patch
  return Json{
      {"name", p.name},
      {"compute_capability", std::to_string(p.major) + "." + std::to_string(p.minor)},
      {"sm_count", p.multiProcessorCount},
      {"memory_bytes", p.totalGlobalMem},
      {"l2_bytes", p.l2CacheSize},
      {"driver_api_version", version(driver)},
      {"runtime_version", version(runtime)},
      {"cublas_version", std::to_string(cublas_major) + "." + std::to_string(cublas_minor) +
                             "." + std::to_string(cublas_patch)},
      {"cudnn_version", std::to_string(cudnn / 10000) + "." +
                            std::to_string((cudnn / 100) % 100) + "." +
                            std::to_string(cudnn % 100)},
  };
}

inline std::string utc_now() {
  const std::time_t now = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&now, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

// Collects a benchmark's rows: prints each as it comes and writes the JSON at the end.
class Report {
 public:
  Report(std::string benchmark, Options opts) : benchmark_(std::move(benchmark)),
                                                opts_(std::move(opts)) {}

  const Options& options() const { return opts_; }

  // Prints the device line; call before anything is measured.
  void begin() {
    device_ = device_info();
    std::printf("# %s on %s (sm_%s), driver API %s, runtime %s, cuBLAS %s, cuDNN %s\n",
                benchmark_.c_str(), device_["name"].get<std::string>().c_str(),
                device_["compute_capability"].get<std::string>().c_str(),
                device_["driver_api_version"].get<std::string>().c_str(),
                device_["runtime_version"].get<std::string>().c_str(),
                device_["cublas_version"].get<std::string>().c_str(),
                device_["cudnn_version"].get<std::string>().c_str());
    std::printf("# median of %d repetitions after %d warm-up calls; ratio = ember / baseline\n",
                opts_.reps, opts_.warmup);
    std::fflush(stdout);
  }

  // Prints the table header; rows follow.
  void table(const std::string& throughput_title = "GB/s or TFLOP/s") {
    std::printf("| name | ember ms | baseline ms | ratio | %s |\n", throughput_title.c_str());
    std::printf("|---|---:|---:|---:|---:|\n");
    std::fflush(stdout);
  }

  void add(Row row) {
    const double ratio = row.ember.median_ms / row.baseline_ms;
    std::string tp = fmt("%.1f", row.throughput);
    if (tp != "-") tp += " " + row.unit;
    if (!row.note.empty()) tp += " (" + row.note + ")";
    std::printf("| %s | %s | %s | %s | %s |\n", row.name.c_str(),
                fmt("%.4g", row.ember.median_ms).c_str(), fmt("%.4g", row.baseline_ms).c_str(),
                fmt("%.3f", ratio).c_str(), tp.c_str());
    std::fflush(stdout);
    Json j = {
        {"name", row.name},
        {"ember_ms", row.ember.median_ms},
        {"ember_min_ms", row.ember.min_ms},
        {"calls_per_rep", row.ember.inner},
        {"reps", row.ember.reps},
        {"baseline", row.baseline},
        {"baseline_ms", std::isnan(row.baseline_ms) ? Json() : Json(row.baseline_ms)},
        {"ratio", std::isnan(ratio) ? Json() : Json(ratio)},
        {"throughput", std::isnan(row.throughput) ? Json() : Json(row.throughput)},
        {"unit", row.unit},
    };
    if (!row.note.empty()) j["note"] = row.note;
    for (auto& [k, v] : row.extra.items()) j[k] = v;
    rows_.push_back(std::move(j));
  }

  // A top-level field of the JSON report (copy bandwidth, allocator figures...).
  void set(const std::string& key, Json value) { extra_[key] = std::move(value); }

  // Records a failed correctness check: printed at once, and the run exits non-zero.
  void fail(const std::string& what) {
    std::printf("FAILED: %s\n", what.c_str());
    std::fflush(stdout);
    failures_.push_back(what);
  }

  // Writes the JSON (when --json was given). Returns the process exit code.
  int finish() {
    Json doc = {{"benchmark", benchmark_}, {"time_utc", utc_now()},
                {"device", device_},       {"warmup", opts_.warmup},
                {"reps", opts_.reps},      {"rows", rows_},
                {"failures", failures_}};
    for (auto& [k, v] : extra_.items()) doc[k] = v;
    write_json(opts_.json_path, doc);
    return failures_.empty() ? 0 : 1;
  }

  static void write_json(const std::string& path, const Json& doc) {
    if (path.empty()) return;
    std::ofstream out(path);
    if (!out) {
      std::fprintf(stderr, "cannot write %s\n", path.c_str());
      return;
    }
    out << doc.dump(2) << "\n";
  }

 private:
  std::string benchmark_;
  Options opts_;
  Json device_ = Json::object();
  Json rows_ = Json::array();
  Json extra_ = Json::object();
  std::vector<std::string> failures_;
};

// Without a usable GPU: one line saying why, a JSON file that says the same (when asked
// for), and true, so the caller returns 0. A machine without a GPU is a normal state.
inline bool skip_without_gpu(const std::string& benchmark, const Options& opts) {
  if (cuda::is_available()) return false;
  const std::string reason = cuda::unavailable_reason();
  std::printf("%s: skipped, no CUDA device (%s)\n", benchmark.c_str(), reason.c_str());
  Report::write_json(opts.json_path,
                     Json{{"benchmark", benchmark}, {"time_utc", utc_now()},
                          {"skipped", reason}, {"rows", Json::array()}});
  return true;
}

// A main() body: parses the options, skips without a GPU, runs `body(report)` and turns
// an exception into a message and exit code 1.
inline int run_benchmark(int argc, char** argv, const std::string& name,
                         const char* description,
                         const std::function<void(Report&)>& body) {
  Options opts;
  int code = 0;
  if (!parse_options(argc, argv, description, &opts, &code)) return code;
  if (skip_without_gpu(name, opts)) return 0;
  try {
    Report report(name, opts);
    body(report);
    return report.finish();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s: error: %s\n", name.c_str(), e.what());
    return 1;
  }
}

}  // namespace ember::bench
