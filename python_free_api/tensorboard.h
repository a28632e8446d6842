// A TensorBoard event-file writer for scalars: the record framing (length, masked
// CRC-32C) and the few protobuf fields an Event with a scalar Summary needs, written by
// hand (there is no small library for them).
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>

#include "ember/core/base/export.h"

namespace ember {

// CRC-32C (Castagnoli) and TensorFlow's masking of it.
EMBER_API uint32_t crc32c(const void* data, size_t n);
EMBER_API uint32_t masked_crc32c(const void* data, size_t n);

class EMBER_API EventWriter {
 public:
  // Creates `log_dir` (and parents) and the file events.out.tfevents.<unix_ts>.<host>,
  // whose first record carries file_version "brain.Event:2".
  explicit EventWriter(const std::string& log_dir);
  ~EventWriter();
  EventWriter(const EventWriter&) = delete;
  EventWriter& operator=(const EventWriter&) = delete;

  void add_scalar(const std::string& tag, float value, int64_t step);
  void flush();
  const std::string& path() const { return path_; }

  // The serialized Event message for a scalar (exposed for tests).
  static std::string scalar_event(const std::string& tag, float value, int64_t step,
                                  double wall_time);

 private:
  void write_record(const std::string& data);
  std::string path_;
  std::FILE* file_ = nullptr;
};

}  // namespace ember
