// `ember info`: ember's version and build options, the CUDA libraries loaded at run time,
// and each GPU, or why there is none. Works without any NVIDIA driver.
#include <cctype>
#include <cstdio>
#include <exception>
#include <sstream>
#include <string>

#include "commands.h"
#include "ember/core/device.h"
#include "ember/core/memory/cuda_memory.h"
#include "ember/core/memory/host_memory.h"
#include "ember/core/version.h"

#if EMBER_WITH_CUDA
#include <cublas_api.h>
#include <cuda_runtime_api.h>

#include "ember/core/base/cuda_check.h"
#endif

namespace ember::cli {

namespace {

void line(const char* key, const std::string& value) {
  std::printf("  %-20s %s\n", key, value.c_str());
}

// One failed query (a broken driver, a library that will not load) should not hide the
// rest of the report: the line says what went wrong and the command exits 1 at the end.
class Report {
 public:
  template <typename Query>
  void line(const char* key, Query&& query) {
    std::string value;
    try {
      value = query();
    } catch (const std::exception& e) {
      value = std::string("unknown: ") + e.what();
      failed_ = true;
    }
    ::ember::cli::line(key, value);
  }
  bool failed() const { return failed_; }

 private:
  bool failed_ = false;
};

#if EMBER_WITH_CUDA
// CUDA encodes versions as major * 1000 + minor * 10: 13000 -> "13.0".
std::string cuda_version(int v) {
  return std::to_string(v / 1000) + "." + std::to_string((v % 1000) / 10);
}

std::string gib(size_t bytes) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f GiB", static_cast<double>(bytes) / (1ull << 30));
  return buf;
}

std::string driver_version() {
  int v = 0;
  // Succeeds with 0 when no driver is installed.
  EMBER_CUDA_CHECK(cudaDriverGetVersion(&v));
  if (v == 0) return "not installed";
  return "supports CUDA " + cuda_version(v);
}

std::string runtime_version() {
  int v = 0;
  EMBER_CUDA_CHECK(cudaRuntimeGetVersion(&v));
  std::string s = cuda_version(v);
  if (v != CUDART_VERSION) s += " (built against " + cuda_version(CUDART_VERSION) + ")";
  return s;
}

std::string cublas_version() {
  int major = 0, minor = 0, patch = 0;
  EMBER_CUBLAS_CHECK(cublasGetProperty(MAJOR_VERSION, &major));
  EMBER_CUBLAS_CHECK(cublasGetProperty(MINOR_VERSION, &minor));
  EMBER_CUBLAS_CHECK(cublasGetProperty(PATCH_LEVEL, &patch));
  std::string s = std::to_string(major) + "." + std::to_string(minor) + "." + std::to_string(patch);
  if (major != CUBLAS_VER_MAJOR || minor != CUBLAS_VER_MINOR) {
    s += " (built against " + std::to_string(CUBLAS_VER_MAJOR) + "." +
         std::to_string(CUBLAS_VER_MINOR) + "." + std::to_string(CUBLAS_VER_PATCH) + ")";
  }
  return s;
}

std::string cudnn_version() {
  std::string s = cudnn_version_runtime();
  if (s != cudnn_version_built()) s += " (built against " + cudnn_version_built() + ")";
  return s;
}

// Note [Architecture check]
// CMake's "86" builds SASS for sm_86 and PTX for compute_86, "86-real" only the SASS and
// "86-virtual" only the PTX. SASS runs on GPUs of the same major version with an equal or
// higher minor; PTX is compiled by the driver, at first use, for any GPU at least as new.
// Arch-specific targets ("90a") run on that exact compute capability only. "all",
// "all-major" and "native" cannot be judged from here, so nothing is said.
std::string architecture_support(int major, int minor) {
  const int cc = major * 10 + minor;
  bool sass = false, ptx = false;
  std::stringstream archs(EMBER_CLI_CUDA_ARCHITECTURES);
  std::string entry;
  while (std::getline(archs, entry, ';')) {
    size_t digits = 0;
    while (digits < entry.size() && std::isdigit(static_cast<unsigned char>(entry[digits]))) {
      ++digits;
    }
    if (digits == 0 || digits > 4) return "";
    const int arch = std::stoi(entry.substr(0, digits));
    const std::string rest = entry.substr(digits);
    const bool specific = !rest.empty() && std::isalpha(static_cast<unsigned char>(rest[0]));
    const bool real = rest.find("-virtual") == std::string::npos;
    const bool virt = rest.find("-real") == std::string::npos;
    if (real && (specific ? arch == cc : arch / 10 == major && arch <= cc)) sass = true;
    if (virt && (specific ? arch == cc : arch <= cc)) ptx = true;
  }
  if (sass) return "built for it";
  if (ptx) return "PTX only: compiled by the driver at first use";
  return "NOT built for it: rebuild with -DCMAKE_CUDA_ARCHITECTURES=" + std::to_string(cc);
}

std::string device_summary(int device) {
  cudaDeviceProp p{};
  EMBER_CUDA_CHECK(cudaGetDeviceProperties(&p, device));
  std::string s = std::string(p.name) + ", compute capability " + std::to_string(p.major) +
                  "." + std::to_string(p.minor) + ", " + gib(p.totalGlobalMem) + ", " +
                  std::to_string(p.multiProcessorCount) + " SMs";
  const std::string support = architecture_support(p.major, p.minor);
  if (!support.empty()) s += " (" + support + ")";
  return s;
}
#endif

}  // namespace

CLI::App* add_info_command(CLI::App& app) {
  return app.add_subcommand(
      "info", "print ember's version and build options, the CUDA libraries and each GPU");
}

int run_info() {
  std::printf("ember %s\n\nbuild\n", version().c_str());
  line("type", EMBER_CLI_BUILD_TYPE);
#if EMBER_WITH_CUDA
  line("CUDA architectures", EMBER_CLI_CUDA_ARCHITECTURES);
  line("CUDA toolkit", EMBER_CLI_CUDA_TOOLKIT_VERSION);
  line("cuDNN", cudnn_version_built());
#else
  line("CUDA", "not built (EMBER_CUDA=OFF): CPU only");
#endif
  line("BLAS", EMBER_CLI_BLAS);
  line("OpenMP", EMBER_CLI_OPENMP);
  line("compiler", EMBER_CLI_COMPILER);

  Report report;
  std::printf("\nrun time\n");
#if EMBER_WITH_CUDA
  report.line("NVIDIA driver", driver_version);
  report.line("CUDA runtime", runtime_version);
  report.line("cuBLAS", cublas_version);
  report.line("cuDNN", cudnn_version);
#endif
  report.line("CPU allocator", [] { return cpu::allocator_backend() + " (EMBER_CPU_ALLOC)"; });
#if EMBER_WITH_CUDA
  report.line("CUDA allocator", [] { return cuda::allocator_backend() + " (EMBER_CUDA_ALLOC)"; });
#endif

  std::printf("\ndevices\n");
  if (!cuda::is_available()) {
    std::printf("  no GPU: %s; ember runs on the CPU\n", cuda::unavailable_reason().c_str());
  } else {
#if EMBER_WITH_CUDA
    for (int i = 0; i < cuda::device_count(); ++i) {
      const std::string key = "cuda:" + std::to_string(i);
      report.line(key.c_str(), [i] { return device_summary(i); });
    }
#endif
  }
  return report.failed() ? 1 : 0;
}

}  // namespace ember::cli
