// Device: where a tensor lives. "No GPU" is a normal state, detected once.
#pragma once

#include <cstddef>
#include <cstdint>
#include <ostream>
#include <string>

#include "ember/core/base/export.h"

namespace ember {

enum class DeviceType : uint8_t { CPU, CUDA };

class EMBER_API Device {
 public:
  constexpr Device() = default;
  constexpr Device(DeviceType type, int index) : type_(type), index_(index) {}
  // Parses "cpu", "cuda", "cuda:1".
  static Device parse(const std::string& spec);

  static constexpr Device cpu() { return Device(DeviceType::CPU, 0); }
  static Device cuda(int index = 0);  // throws DeviceError if that GPU is not present
  static Device best();               // cuda:0 when a usable GPU exists, else cpu

  DeviceType type() const { return type_; }
  int index() const { return index_; }
  bool is_cpu() const { return type_ == DeviceType::CPU; }
  bool is_cuda() const { return type_ == DeviceType::CUDA; }
  std::string str() const;  // "cpu", "cuda:0"

  bool operator==(const Device& o) const { return type_ == o.type_ && index_ == o.index_; }
  bool operator!=(const Device& o) const { return !(*this == o); }

 private:
  DeviceType type_ = DeviceType::CPU;
  int index_ = 0;
};

inline std::ostream& operator<<(std::ostream& os, const Device& d) { return os << d.str(); }

namespace cuda {
// Number of usable GPUs; 0 when there is no driver, no device or the driver is too old.
EMBER_API int device_count();
EMBER_API bool is_available();
// Why there is no GPU ("no CUDA driver found", "driver too old for the runtime", ...),
// or "" when there is one.
EMBER_API std::string unavailable_reason();
// Waits for all work queued by ember on `device`.
EMBER_API void synchronize(int device = 0);

// Note [Host syncs]
// How many times ember has made the host wait for a GPU in this process: every read of
// device memory into host memory (item(), cpu(), to_vector(), a device-to-host copy),
// every host-to-device copy that waits (to(device) without non_blocking), every stream or
// device synchronize (cuda::synchronize, a copy between GPUs, the pool's release of
// cached memory or its out-of-memory retry). A training step that performs none keeps
// the GPU fed without waiting for it; the GPU tests count them around a step. The
// synchronous launches of EMBER_LAUNCH_BLOCKING=1, a debugging mode, are not counted.
EMBER_API uint64_t host_sync_count();
// For core: records one such wait.
EMBER_API void note_host_sync();

// Note [Deferred checks]
// Some of an op's checks need values that live on the GPU: a class target outside
// [0, classes) in cross_entropy and nll_loss, an index outside the table in embedding.
// Reading them back at the op would make every training step wait for the GPU, so the
// kernel counts the bad values into a counter on the device and the check waits in a
// queue of the calling thread. It raises its typed error (the CPU raises the same one at
// the op) at that thread's next synchronization with the device: the next read of a value
// (item(), to_vector(), cpu()), cuda::synchronize(), or check_deferred_errors(), which
// the Trainer calls at the end of every epoch; at the latest after 1024 queued checks. The
// outputs for bad entries are NaN meanwhile, never a read outside the tensor.
// set_sync_checks(true), or EMBER_SYNC_CHECKS=1 in the environment, raises at the op
// instead, to find the failing call (at the price of a wait per check).
EMBER_API void check_deferred_errors();
EMBER_API void set_sync_checks(bool on);
EMBER_API bool sync_checks();

// What a GPU is (PyTorch's torch.cuda.get_device_properties).
struct DeviceProperties {
  std::string name;
  int major = 0, minor = 0;  // compute capability
  size_t total_memory = 0;   // bytes
  int multiprocessors = 0;
};
// Throws DeviceError when `device` is not a usable GPU.
EMBER_API DeviceProperties get_device_properties(int device = 0);
// The CUDA version the installed driver supports ("13.0"); "" with no driver, or in a
// build without CUDA.
EMBER_API std::string driver_version();
// The CUDA runtime loaded, and the one ember was built against ("13.0"; "" without CUDA).
EMBER_API std::string runtime_version();
EMBER_API std::string runtime_version_built();
}  // namespace cuda

}  // namespace ember
