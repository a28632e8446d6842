// PendingValue: a tensor's single value read without making the host wait for the GPU.
#pragma once

#include <memory>

#include "ember/core/base/export.h"
#include "ember/core/tensor.h"

namespace ember {

// Note [Reading without waiting]
// item() on a GPU tensor waits for every op queued before it: a progress line that calls
// it at each refresh empties the GPU's queue each time. PendingValue(t) queues the copy of
// a one-element tensor into page-locked host memory behind the work queued so far and
// returns at once; ready() says, without waiting, whether it has arrived; value() returns
// it, waiting (a counted host sync, Note [Host syncs]) only if it had not. A CPU tensor
// is read at once. The Trainer's progress line shows its running loss this way: the
// figure shown is the latest that has arrived, a refresh or so behind the GPU.
class EMBER_API PendingValue {
 public:
  PendingValue() = default;  // nothing pending: valid() is false
  // `scalar`: one element, any dtype (read as double). Throws ShapeError otherwise.
  explicit PendingValue(const Tensor& scalar);

  bool valid() const { return state_ != nullptr; }
  bool ready() const;
  double value() const;

 private:
  struct State;
  std::shared_ptr<State> state_;
};

}  // namespace ember
