// TensorBoard scalar events: records are u64 length, masked CRC of the length, the data,
// masked CRC of the data (little-endian), each data an Event protobuf.
#include "ember/python_free_api/tensorboard.h"

#include <unistd.h>

#include <array>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>

#include "ember/core/base/error.h"

namespace ember {

namespace {

std::array<uint32_t, 256> make_crc32c_table() {
  std::array<uint32_t, 256> t{};
  for (uint32_t i = 0; i < 256; ++i) {
    uint32_t c = i;
    for (int k = 0; k < 8; ++k) c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
    t[i] = c;
  }
  return t;
}

// Protobuf wire format: varints, fixed64/fixed32 and length-delimited fields.
void put_varint(std::string* out, uint64_t v) {
  while (v >= 0x80) {
    out->push_back(static_cast<char>((v & 0x7F) | 0x80));
    v >>= 7;
  }
  out->push_back(static_cast<char>(v));
}
void put_key(std::string* out, int field, int wire_type) {
  put_varint(out, (static_cast<uint64_t>(field) << 3) | static_cast<uint64_t>(wire_type));
}
void put_bytes(std::string* out, int field, const std::string& bytes) {
  put_key(out, field, 2);
  put_varint(out, bytes.size());
  out->append(bytes);
}
template <typename T>
void put_fixed(std::string* out, int field, T value) {
  static_assert(sizeof(T) == 4 || sizeof(T) == 8);
  put_key(out, field, sizeof(T) == 8 ? 1 : 5);
  char buf[sizeof(T)];
  std::memcpy(buf, &value, sizeof(T));  // little-endian hosts only, as x86-64 and arm64 are
  out->append(buf, sizeof(T));
}

double now_seconds() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

}  // namespace

uint32_t crc32c(const void* data, size_t n) {
  static const std::array<uint32_t, 256> table = make_crc32c_table();
  uint32_t c = 0xFFFFFFFFu;
  const auto* p = static_cast<const uint8_t*>(data);
  for (size_t i = 0; i < n; ++i) c = table[(c ^ p[i]) & 0xFF] ^ (c >> 8);
  return c ^ 0xFFFFFFFFu;
}

uint32_t masked_crc32c(const void* data, size_t n) {
  const uint32_t crc = crc32c(data, n);
  return ((crc >> 15) | (crc << 17)) + 0xa282ead8u;
}

std::string EventWriter::scalar_event(const std::string& tag, float value, int64_t step,
                                      double wall_time) {
  std::string value_msg;  // Summary.Value {tag = 1, simple_value = 2}
  put_bytes(&value_msg, 1, tag);
  put_fixed(&value_msg, 2, value);
  std::string summary;  // Summary {value = 1 (repeated)}
  put_bytes(&summary, 1, value_msg);
  std::string event;  // Event {wall_time = 1, step = 2, summary = 5}
  put_fixed(&event, 1, wall_time);
  put_key(&event, 2, 0);
  put_varint(&event, static_cast<uint64_t>(step));
  put_bytes(&event, 5, summary);
  return event;
}

EventWriter::EventWriter(const std::string& log_dir) {
  std::error_code ec;
  std::filesystem::create_directories(log_dir, ec);
  EMBER_CHECK_T(IOError, !ec, "TensorBoard: cannot create log directory '", log_dir, "': ",
                ec.message());
  char host[256] = "localhost";
  gethostname(host, sizeof host - 1);
  const auto ts = static_cast<long long>(now_seconds());
  path_ = log_dir + "/events.out.tfevents." + std::to_string(ts) + "." + host;
  // Appending: a second writer in the same second and directory (two quick fits) adds
  // its records after the first one's instead of truncating them; TensorBoard reads both.
  file_ = std::fopen(path_.c_str(), "ab");
  EMBER_CHECK_T(IOError, file_ != nullptr, "TensorBoard: cannot open '", path_, "' for writing: ",
                std::strerror(errno));
  std::string first;  // Event {wall_time = 1, file_version = 3}
  put_fixed(&first, 1, now_seconds());
  put_bytes(&first, 3, "brain.Event:2");
  write_record(first);
  flush();
}

EventWriter::~EventWriter() {
  if (file_ != nullptr) std::fclose(file_);
}

void EventWriter::write_record(const std::string& data) {
  const uint64_t len = data.size();
  char header[12];
  std::memcpy(header, &len, 8);
  const uint32_t len_crc = masked_crc32c(header, 8);
  std::memcpy(header + 8, &len_crc, 4);
  const uint32_t data_crc = masked_crc32c(data.data(), data.size());
  const bool ok = std::fwrite(header, 1, 12, file_) == 12 &&
                  std::fwrite(data.data(), 1, data.size(), file_) == data.size() &&
                  std::fwrite(&data_crc, 1, 4, file_) == 4;
  EMBER_CHECK_T(IOError, ok, "TensorBoard: write to '", path_, "' failed: ", std::strerror(errno));
}

void EventWriter::add_scalar(const std::string& tag, float value, int64_t step) {
  write_record(scalar_event(tag, value, step, now_seconds()));
}

void EventWriter::flush() {
  if (file_ != nullptr) std::fflush(file_);
}

}  // namespace ember
