// Storage: a device buffer shared by a tensor and all its views, with the version
// counter that in-place ops bump (see Note [Saved tensors and versions] in autograd.h).
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>

#include "ember/core/device.h"
#include "ember/core/base/export.h"

namespace ember {

class EMBER_API StorageImpl {
 public:
  using Deleter = std::function<void(void*)>;

  StorageImpl(void* data, size_t nbytes, Device device, Deleter deleter)
      : data_(data), nbytes_(nbytes), device_(device), deleter_(std::move(deleter)) {}
  ~StorageImpl();
  StorageImpl(const StorageImpl&) = delete;
  StorageImpl& operator=(const StorageImpl&) = delete;

  // Fresh, uninitialised bytes: aligned host memory on the CPU, the caching pool on CUDA.
  static std::shared_ptr<StorageImpl> allocate(size_t nbytes, Device device);

  void* data() const { return data_; }
  size_t nbytes() const { return nbytes_; }
  Device device() const { return device_; }

  uint64_t version() const { return version_.load(std::memory_order_relaxed); }
  void bump_version() { version_.fetch_add(1, std::memory_order_relaxed); }

 private:
  void* data_;
  size_t nbytes_;
  Device device_;
  Deleter deleter_;
  std::atomic<uint64_t> version_{0};
};

}  // namespace ember
