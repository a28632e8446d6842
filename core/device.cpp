// Device parsing and the one-time GPU probe.
#include "ember/core/device.h"

#include <atomic>
#include <mutex>

#include "ember/core/base/error.h"
#include "ember/core/deferred_check.h"

#if EMBER_WITH_CUDA
#include <cuda_runtime_api.h>
#include <dlfcn.h>

#include "ember/core/base/cuda_check.h"
#endif

namespace ember {

namespace {

struct GpuProbe {
  int count = 0;
  std::string reason;
};

// Note [GPU probe]
// cudaGetDeviceCount is the one call that tells "no driver", "no device" and "driver
// too old" apart without aborting. Its result is cached for the life of the process:
// devices do not come and go under a running program, and asking again would pay the
// driver's initialisation cost each time. A failed probe leaves a sticky error in the
// runtime's last-error slot, which we clear so later launch checks are not confused.
// The runtime answers cudaErrorInsufficientDriver both for an old driver and for none at
// all (libcuda missing), so a failed probe asks the loader whether the driver is there.
// A build without CUDA has no GPU to find, and says why.
#if EMBER_WITH_CUDA
bool driver_installed() {
  void* handle = dlopen("libcuda.so.1", RTLD_LAZY);
  if (handle == nullptr) return false;
  dlclose(handle);
  return true;
}

const GpuProbe& probe() {
  static const GpuProbe result = [] {
    GpuProbe p;
    int n = 0;
    cudaError_t err = cudaGetDeviceCount(&n);
    if (err != cudaSuccess) {
      (void)cudaGetLastError();
      if (!driver_installed()) {
        p.reason = "no NVIDIA driver found (libcuda.so.1 is not installed)";
        return p;
      }
      switch (err) {
        case cudaErrorNoDevice: p.reason = "no CUDA-capable device is present"; break;
        case cudaErrorInsufficientDriver:
          p.reason = "the NVIDIA driver is older than the CUDA runtime ember was built with";
          break;
        default:
          p.reason = std::string("no usable CUDA driver (") + cudaGetErrorName(err) + ": " +
                     cudaGetErrorString(err) + ")";
      }
      return p;
    }
    p.count = n;
    if (n == 0) p.reason = "no CUDA-capable device is present";
    return p;
  }();
  return result;
}
#else
const GpuProbe& probe() {
  static const GpuProbe result{0, "ember was built without CUDA (EMBER_CUDA=OFF)"};
  return result;
}
#endif

}  // namespace

namespace cuda {
namespace {
std::atomic<uint64_t> g_host_syncs{0};
}  // namespace

uint64_t host_sync_count() { return g_host_syncs.load(std::memory_order_relaxed); }
void note_host_sync() { g_host_syncs.fetch_add(1, std::memory_order_relaxed); }

int device_count() { return probe().count; }
bool is_available() { return probe().count > 0; }
std::string unavailable_reason() { return probe().reason; }
void synchronize(int device) {
  if (!is_available()) return;
#if EMBER_WITH_CUDA
  int prev = 0;
  EMBER_CUDA_CHECK(cudaGetDevice(&prev));
  EMBER_CUDA_CHECK(cudaSetDevice(device));
  note_host_sync();
  EMBER_CUDA_CHECK(cudaDeviceSynchronize());
  EMBER_CUDA_CHECK(cudaSetDevice(prev));
  detail::run_deferred_checks(device, true);
#else
  (void)device;
#endif
}

#if EMBER_WITH_CUDA
namespace {
// CUDA encodes versions as major * 1000 + minor * 10: 13000 -> "13.0".
std::string cuda_version_str(int v) {
  return std::to_string(v / 1000) + "." + std::to_string((v % 1000) / 10);
}
}  // namespace

DeviceProperties get_device_properties(int device) {
  EMBER_CHECK_T(DeviceError, device >= 0 && device < device_count(), "get_device_properties(",
                device, "): there are ", device_count(), " CUDA device(s)",
                is_available() ? std::string() : " (" + unavailable_reason() + ")");
  cudaDeviceProp p{};
  EMBER_CUDA_CHECK(cudaGetDeviceProperties(&p, device));
  return {p.name, p.major, p.minor, p.totalGlobalMem, p.multiProcessorCount};
}

std::string driver_version() {
  int v = 0;
  // Succeeds with 0 when no driver is installed.
  if (cudaDriverGetVersion(&v) != cudaSuccess) {
    (void)cudaGetLastError();
    return "";
  }
  return v == 0 ? "" : cuda_version_str(v);
}

std::string runtime_version() {
  int v = 0;
  EMBER_CUDA_CHECK(cudaRuntimeGetVersion(&v));
  return cuda_version_str(v);
}

std::string runtime_version_built() { return cuda_version_str(CUDART_VERSION); }
#else
DeviceProperties get_device_properties(int device) {
  throw DeviceError(detail::str_cat("get_device_properties(", device,
                                    "): ember was built without CUDA (EMBER_CUDA=OFF)"));
}
std::string driver_version() { return ""; }
std::string runtime_version() { return ""; }
std::string runtime_version_built() { return ""; }
#endif
}  // namespace cuda

Device Device::cuda(int index) {
  EMBER_CHECK_T(DeviceError, cuda::is_available(),
                "Device::cuda(", index, "): CUDA is not available: ", cuda::unavailable_reason(),
                ". Use Device::best() to fall back to the CPU.");
  EMBER_CHECK_T(DeviceError, index >= 0 && index < cuda::device_count(), "Device::cuda(", index,
                "): there are ", cuda::device_count(), " CUDA device(s)");
  return Device(DeviceType::CUDA, index);
}

Device Device::best() { return cuda::is_available() ? Device(DeviceType::CUDA, 0) : cpu(); }

Device Device::parse(const std::string& spec) {
  if (spec == "cpu") return cpu();
  if (spec == "cuda") return cuda(0);
  if (spec == "best" || spec == "auto") return best();
  if (spec.rfind("cuda:", 0) == 0) {
    const std::string num = spec.substr(5);
    // At most 9 digits, so the index always fits in an int.
    EMBER_CHECK_T(DeviceError, !num.empty() && num.size() <= 9 &&
                  num.find_first_not_of("0123456789") == std::string::npos,
                  "Device::parse: '", spec, "' is not a device (expected cpu, cuda, cuda:N or best)");
    return cuda(std::stoi(num));
  }
  throw DeviceError("Device::parse: '" + spec + "' is not a device (expected cpu, cuda, cuda:N or best)");
}

std::string Device::str() const {
  return is_cpu() ? std::string("cpu") : "cuda:" + std::to_string(index_);
}

}  // namespace ember
