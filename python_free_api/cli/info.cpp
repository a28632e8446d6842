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
std::string gib(size_t bytes) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f GiB", static_cast<double>(bytes) / (1ull << 30));
  return buf;
}

// "<loaded>", or "<loaded> (built against <built>)" when they differ.
std::string loaded_vs_built(const std::string& loaded, const std::string& built) {
  return loaded == built ? loaded : loaded + " (built against " + built + ")";
}

std::string driver_version() {
  const std::string v = cuda::driver_version();
  return v.empty() ? "not installed" : "supports CUDA " + v;
}

std::string runtime_version() {
  return loaded_vs_built(cuda::runtime_version(), cuda::runtime_version_built());
}

std::string cublas_version() {
  return loaded_vs_built(cublas_version_runtime(), cublas_version_built());
}

std::string cudnn_version() {
  return loaded_vs_built(cudnn_version_runtime(), cudnn_version_built());
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
  const cuda::DeviceProperties p = cuda::get_device_properties(device);
  std::string s = p.name + ", compute capability " + std::to_string(p.major) + "." +
                  std::to_string(p.minor) + ", " + gib(p.total_memory) + ", " +
                  std::to_string(p.multiprocessors) + " SMs";
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
  line("CUDA architectures", EMBER_CLI_CUDA_ARCHITECTURES);
  line("CUDA toolkit", EMBER_CLI_CUDA_TOOLKIT_VERSION);
  line("cuDNN", EMBER_WITH_CUDA ? cudnn_version_built() : "none (built without CUDA)");
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
