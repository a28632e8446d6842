// Checks of values that live on a device, raised without making the op wait for it
// (internal; Note [Deferred checks] in core/device.h).
//
//   detail::DeviceCheck check(x.device());
//   kernel(ctx, ..., check.counter());   // the kernel adds the number of bad values
//   check.commit([=](int64_t bad, bool deferred) { throw ShapeError(...); });
//
// On the CPU commit() reads the count at once (it costs nothing) and raises at the op. On
// a GPU it queues the check on the calling thread's list for that device; the list is
// read at the thread's next synchronization with the device, or when it fills.
#pragma once

#include <cstdint>
#include <functional>

#include "ember/core/device.h"

namespace ember::detail {

// Raises the check's typed error for `bad` (> 0) bad values; `deferred` says whether the
// op has returned since (the message then says where the error came from).
using CheckRaise = std::function<void(int64_t bad, bool deferred)>;

class DeviceCheck {
 public:
  explicit DeviceCheck(Device device);
  DeviceCheck(const DeviceCheck&) = delete;
  DeviceCheck& operator=(const DeviceCheck&) = delete;

  // Zero when the check starts; the kernel adds to it (on a GPU: on the compute stream).
  int64_t* counter() { return counter_; }
  // After the kernel: raise now (the CPU, or sync_checks() on), or at the next sync.
  void commit(CheckRaise raise);

 private:
  Device device_;
  int64_t host_count_ = 0;
  int64_t* counter_ = nullptr;
  size_t slot_ = 0;
};

// Reads the calling thread's queued checks for `device` and raises the first that found
// bad values. `waited`: the device's stream has just been waited for (a read of a value,
// a synchronize), so this adds no wait of its own and is not counted as one.
void run_deferred_checks(int device, bool waited);

}  // namespace ember::detail
