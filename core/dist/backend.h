// The process group's backends (internal): what init_process_group builds once the
// ranks have met at the store, and the pieces Gloo and NCCL share.
#pragma once

#include <chrono>
#include <memory>
#include <string>

#include "ember/core/dist/dist.h"
#include "ember/core/dist/store.h"

namespace ember::dist {

// What a backend knows of its group.
struct GroupInfo {
  TcpStore* store = nullptr;
  int rank = 0;
  int world_size = 1;
  int local_rank = 0;
  std::string master_addr;
  std::chrono::milliseconds timeout{0};
};

// A collective's arguments are checked before they reach a backend: tensors defined,
// contiguous, on the backend's device, sizes consistent, dtype supported.
class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::string name() const = 0;
  virtual Work all_reduce(const Tensor& t, ReduceOp op) = 0;
  virtual Work broadcast(const Tensor& t, int src) = 0;
  virtual Work all_gather(const Tensor& output, const Tensor& input) = 0;
  virtual Work reduce_scatter(const Tensor& output, const Tensor& input, ReduceOp op) = 0;
  virtual Work barrier() = 0;
  // Waits for what is queued, then stops; collectives after it are refused.
  virtual void shutdown() = 0;
};

// Throws DistributedError("built without ...") when this build lacks the backend.
std::unique_ptr<Backend> make_gloo_backend(const GroupInfo& info);
std::unique_ptr<Backend> make_nccl_backend(const GroupInfo& info);

// The message of a failed collective: `what` ("all_reduce of float32 [1000]") on this
// rank, which ranks have exited as far as the store knows (Note [Process group]), and the
// backend's own words in `cause`.
std::string failure_message(const GroupInfo& info, const std::string& backend,
                            const std::string& what, const std::string& cause);

// A Work whose state is a thread's promise: done() or fail() once.
struct Work::State {
  virtual ~State() = default;
  virtual void wait() = 0;
  virtual bool completed() = 0;
};

}  // namespace ember::dist
