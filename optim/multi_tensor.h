// Internal to optim/: gathers the CUDA parameters of one optimizer step per device, then
// updates each device's list with one multi-tensor call (see Note [Multi-tensor apply]
// in kernels/cuda/optim.cu).
#pragma once

#include <cstdint>
#include <utility>
#include <vector>

#include "ember/core/cuda_context.h"

namespace ember::optim::detail {

template <typename Entry>
class DeviceBatches {
 public:
  void add(int device, const Entry& entry) {
    for (auto& [d, list] : batches_) {
      if (d == device) {
        list.push_back(entry);
        return;
      }
    }
    batches_.push_back({device, {entry}});
  }

  // fn(cudaStream_t, const Entry*, int64_t) for each device, on its compute stream.
  template <typename Fn>
  void launch(Fn fn) const {
    for (const auto& [device, list] : batches_) {
      cuda::DeviceGuard guard(device);
      fn(cuda::compute_stream(device), list.data(), static_cast<int64_t>(list.size()));
    }
  }

 private:
  std::vector<std::pair<int, std::vector<Entry>>> batches_;
};

}  // namespace ember::optim::detail
