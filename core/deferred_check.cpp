// Deferred device checks (Note [Deferred checks] in core/device.h): per thread and device,
// a ring of counters on the device and the list of checks waiting to read them.
#include "ember/core/deferred_check.h"

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <utility>
#include <vector>

#include "ember/core/base/error.h"
#include "ember/core/ops.h"
#include "ember/core/tensor.h"

#if EMBER_WITH_CUDA
#include <cuda_runtime_api.h>

#include "ember/core/base/cuda_check.h"
#include "ember/core/cuda_context.h"
#endif

namespace ember {

namespace {

bool sync_checks_from_env() {
  const char* v = std::getenv("EMBER_SYNC_CHECKS");
  return v != nullptr && std::strcmp(v, "") != 0 && std::strcmp(v, "0") != 0;
}

std::atomic<bool>& sync_checks_flag() {
  static std::atomic<bool> flag{sync_checks_from_env()};
  return flag;
}

// How many checks a thread queues per device before it reads them all: one wait per this
// many checks, at worst (a training loop reads its loss far more often).
constexpr size_t kRingSlots = 1024;

struct Pending {
  size_t slot;
  detail::CheckRaise raise;
};

// One thread's checks on one device. Only its thread touches it, so it needs no lock, and
// a check is always raised on the thread whose op failed.
struct Ring {
  Tensor counters;  // int64 [kRingSlots] on the device, zero where unused
  size_t next = 0;  // slots [0, next) are handed out since the last read
  std::vector<Pending> pending;
};

std::vector<std::unique_ptr<Ring>>& thread_rings() {
  thread_local std::vector<std::unique_ptr<Ring>> rings;  // per device
  return rings;
}

// The calling thread's ring for `device`, made on its first check there.
Ring& ring_of(int device) {
  auto& rings = thread_rings();
  if (rings.size() <= static_cast<size_t>(device)) rings.resize(device + 1);
  auto& r = rings[device];
  if (!r) {
    auto made = std::make_unique<Ring>();
    made->counters = zeros({static_cast<int64_t>(kRingSlots)},
                           {.dtype = kInt64, .device = Device::cuda(device)});
    r = std::move(made);
  }
  return *r;
}

// Reads the ring's used counters, zeroes them for reuse, and raises the first failed
// check in the order the ops ran.
void drain(Ring& r, int device, bool waited) {
  if (r.next == 0) return;
  std::vector<int64_t> counts(r.next, 0);
  std::vector<Pending> pending = std::move(r.pending);
  r.pending.clear();
  const size_t used = r.next;
  r.next = 0;
#if EMBER_WITH_CUDA
  cuda::DeviceGuard guard(device);
  cudaStream_t stream = cuda::compute_stream(device);
  EMBER_CUDA_CHECK(cudaMemcpyAsync(counts.data(), r.counters.data_ptr(), used * sizeof(int64_t),
                                   cudaMemcpyDeviceToHost, stream));
  if (!waited) cuda::note_host_sync();
  EMBER_CUDA_CHECK(cudaStreamSynchronize(stream));
  EMBER_CUDA_CHECK(cudaMemsetAsync(r.counters.data_ptr(), 0, used * sizeof(int64_t), stream));
#else
  (void)device;
  (void)waited;
  (void)used;
#endif
  for (const Pending& p : pending) {
    if (counts[p.slot] != 0) p.raise(counts[p.slot], true);
  }
}

}  // namespace

namespace cuda {

void set_sync_checks(bool on) { sync_checks_flag() = on; }
bool sync_checks() { return sync_checks_flag(); }

void check_deferred_errors() {
  for (int d = 0; d < device_count(); ++d) detail::run_deferred_checks(d, false);
}

}  // namespace cuda

namespace detail {

DeviceCheck::DeviceCheck(Device device) : device_(device) {
  if (device.is_cpu()) {
    counter_ = &host_count_;
    return;
  }
  Ring& r = ring_of(device.index());
  if (r.next == kRingSlots) drain(r, device.index(), false);
  slot_ = r.next++;
  counter_ = r.counters.data<int64_t>() + slot_;
}

void DeviceCheck::commit(CheckRaise raise) {
  if (device_.is_cpu()) {
    if (host_count_ != 0) raise(host_count_, false);
    return;
  }
  Ring& r = ring_of(device_.index());
  r.pending.push_back({slot_, std::move(raise)});
  if (cuda::sync_checks()) drain(r, device_.index(), false);
}

void run_deferred_checks(int device, bool waited) {
  // A thread that never queued a check on the device has nothing to read.
  auto& rings = thread_rings();
  if (device < 0 || static_cast<size_t>(device) >= rings.size() || !rings[device]) return;
  drain(*rings[device], device, waited);
}

}  // namespace detail

}  // namespace ember
