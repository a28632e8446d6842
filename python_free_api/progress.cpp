// The Keras-style progress line.
#include "ember/python_free_api/progress.h"

#include "ember/core/base/error.h"

#include <unistd.h>

#include <algorithm>
#include <cmath>

namespace ember {

double log_value(const Logs& logs, const std::string& name) {
  std::string present;
  for (const auto& [key, value] : logs) {
    if (key == name) return value;
    present += (present.empty() ? "" : ", ") + key;
  }
  throw ValueError("no value named '" + name + "' in the logs (present: " + present + ")");
}

std::string format_metric(double v) {
  char buf[64];
  // A NaN's sign bit means nothing (a NaN loss is often "-nan" to printf): print "nan".
  if (std::isnan(v)) return "nan";
  // Keras's rule, zero included: "0.0000e+00" (Inf falls to %.4f: "inf", "-inf").
  std::snprintf(buf, sizeof buf, std::fabs(v) < 1e-3 ? "%.4e" : "%.4f", v);
  return buf;
}

std::string format_time_per_step(double seconds) {
  char buf[64];
  if (seconds >= 1.0 || seconds <= 0.0) {  // Keras prints a zero time as "0s/step"
    std::snprintf(buf, sizeof buf, "%.0fs/step", seconds);
  } else if (seconds >= 1e-3) {
    std::snprintf(buf, sizeof buf, "%.0fms/step", seconds * 1e3);
  } else {
    std::snprintf(buf, sizeof buf, "%.0fus/step", seconds * 1e6);
  }
  return buf;
}

ProgressBar::ProgressBar(int64_t steps, int verbose, std::FILE* out, int force_terminal)
    : steps_(steps), verbose_(verbose), out_(out) {
  terminal_ = force_terminal >= 0 ? force_terminal != 0 : isatty(fileno(out_)) != 0;
  start_ = last_draw_ = std::chrono::steady_clock::now();
}

std::string ProgressBar::bar(int64_t step, int64_t steps, int width) {
  // Appended piece by piece: GCC 12 warns falsely (-Wrestrict) about "[" + std::string
  // once this is inlined into a caller whose step is not a constant.
  std::string b = "[";
  if (steps <= 0 || step >= steps) {
    b.append(static_cast<size_t>(std::max(width, 0)), '=');
    return b += ']';
  }
  const int done = static_cast<int>(static_cast<double>(width) * static_cast<double>(step) /
                                    static_cast<double>(steps));
  if (done > 0) {
    b.append(static_cast<size_t>(done - 1), '=');
    b += '>';
  }
  b.append(static_cast<size_t>(std::max(width - done, 0)), '.');
  return b += ']';
}

std::string ProgressBar::logs_text(const Logs& logs) {
  std::string s;
  for (const auto& [name, v] : logs) s += " - " + name + ": " + format_metric(v);
  return s;
}

std::string ProgressBar::line(int64_t step, const Logs& logs, bool final) const {
  const double elapsed =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  const std::string counter = std::to_string(step) + "/" + std::to_string(steps_);
  const int pad = static_cast<int>(std::to_string(steps_).size() * 2 + 1 - counter.size());
  std::string s = std::string(std::max(pad, 0), ' ') + counter + " " + bar(step, steps_);
  const double per_step = step > 0 ? elapsed / static_cast<double>(step) : 0.0;
  if (final) {
    s += " - " + std::to_string(static_cast<int64_t>(std::lround(elapsed))) + "s " +
         format_time_per_step(per_step);
  } else {
    const double eta = per_step * static_cast<double>(steps_ - step);
    s += " - ETA: " + std::to_string(static_cast<int64_t>(std::lround(eta))) + "s";
  }
  return s + logs_text(logs);
}

bool ProgressBar::due(int64_t step) const {
  if (verbose_ != 1 || !terminal_) return false;
  // Redrawing every step would cost more than a small step itself: about 20 times a second.
  return step >= steps_ || std::chrono::steady_clock::now() - last_draw_ >= std::chrono::milliseconds(50);
}

void ProgressBar::update(int64_t step, const Logs& logs) {
  if (!due(step)) return;
  last_draw_ = std::chrono::steady_clock::now();
  const std::string s = line(step, logs, false);
  std::fprintf(out_, "\r%s", s.c_str());
  if (s.size() < last_width_) std::fprintf(out_, "%s", std::string(last_width_ - s.size(), ' ').c_str());
  last_width_ = s.size();
  std::fflush(out_);
}

void ProgressBar::finish(const Logs& logs) { finish_stopped(steps_, logs, ""); }

void ProgressBar::finish_stopped(int64_t step, const Logs& logs, const std::string& reason) {
  if (verbose_ == 0) return;
  const std::string s =
      line(step, logs, true) + (reason.empty() ? std::string() : " - stopped: " + reason);
  if (verbose_ == 1 && terminal_) {
    std::fprintf(out_, "\r%s", s.c_str());
    if (s.size() < last_width_) std::fprintf(out_, "%s", std::string(last_width_ - s.size(), ' ').c_str());
    std::fprintf(out_, "\n");
  } else {
    std::fprintf(out_, "%s\n", s.c_str());
  }
  std::fflush(out_);
}

}  // namespace ember
