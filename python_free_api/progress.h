// Keras-style training output: a progress line per epoch, redrawn in place on a
// terminal, or one plain line per epoch otherwise (see the Keras section of the
// conventions: values .4f, or .4e when |v| < 1e-3; time per step in s, ms or us).
#pragma once

#include <chrono>
#include <cstdio>
#include <string>
#include <utility>
#include <vector>

#include "ember/core/base/export.h"

namespace ember {

using Logs = std::vector<std::pair<std::string, double>>;

// The value named `name` in `logs` ("loss", "accuracy", "val_loss", ...); throws a ValueError
// listing the names present when there is none.
EMBER_API double log_value(const Logs& logs, const std::string& name);

// "0.2905", "1.2346e-04"
EMBER_API std::string format_metric(double v);
// "4ms/step", "2s/step", "85us/step"
EMBER_API std::string format_time_per_step(double seconds);

class EMBER_API ProgressBar {
 public:
  // verbose: 0 silent, 1 bar (redrawn only on a terminal), 2 one line per epoch.
  // `out` defaults to stdout; `is_terminal` is detected from it unless forced.
  ProgressBar(int64_t steps, int verbose, std::FILE* out = stdout, int force_terminal = -1);

  // Whether update(step, ...) would draw now (so callers read values only when needed).
  bool due(int64_t step) const;
  // After each step, with the running means of the epoch so far.
  void update(int64_t step, const Logs& logs);
  // At the end of the epoch, with the final values (validation included).
  void finish(const Logs& logs);
  // At the end of an epoch stopped after `step` steps, with the reason appended:
  // "3/4 [======================>.......] - 0s 2ms/step - loss: nan - stopped: ...".
  void finish_stopped(int64_t step, const Logs& logs, const std::string& reason);

  // The bar text for `step` of `steps` (exposed for tests): "[=====>........]".
  static std::string bar(int64_t step, int64_t steps, int width = 30);
  static std::string logs_text(const Logs& logs);

 private:
  std::string line(int64_t step, const Logs& logs, bool final) const;
  int64_t steps_;
  int verbose_;
  std::FILE* out_;
  bool terminal_;
  std::chrono::steady_clock::time_point start_;
  std::chrono::steady_clock::time_point last_draw_;
  size_t last_width_ = 0;
};

}  // namespace ember
