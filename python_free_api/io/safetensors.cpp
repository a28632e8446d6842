// safetensors reading and writing: a header validated against the file before any data is
// trusted, an atomic write, and the module / optimizer / training-checkpoint wrappers.
#include "ember/python_free_api/io/safetensors.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <limits>
#include <map>
#include <optional>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "ember/core/base/error.h"
#include "ember/core/random.h"
#include "ember/python_free_api/io/atomic_file.h"

namespace ember::io {

namespace {

using Json = nlohmann::json;

// Loaders refuse larger headers (the limit the reference implementation uses), so the
// writer refuses to produce one.
constexpr uint64_t kMaxHeaderBytes = 100'000'000;
// What a header may hold beyond that (Note [Header limits]); the writer refuses to go
// past them too.
constexpr size_t kMaxHeaderDepth = 16;
constexpr size_t kMaxTensors = 100'000;
constexpr size_t kMaxMetadataEntries = 65'536;
constexpr size_t kMaxRank = 64;
// Names and values from a file are quoted in messages cut to this many bytes.
constexpr size_t kQuoteBytes = 64;
constexpr uint64_t kLengthBytes = 8;
constexpr const char* kFormatVersion = "1";
constexpr const char* kMetadataKey = "__metadata__";
constexpr bool kLittleEndian = __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__;
// One read() or write() call moves at most this much (Linux moves at most ~2 GiB anyway).
constexpr size_t kMaxIoChunk = size_t{1} << 30;

// --- dtypes -----------------------------------------------------------------------------

const char* safetensors_dtype_name(DType t) {
  switch (t) {
    case DType::Float32: return "F32";
    case DType::Float64: return "F64";
    case DType::Int32: return "I32";
    case DType::Int64: return "I64";
    case DType::UInt8: return "U8";
    case DType::Bool: return "BOOL";
    case DType::Float16: return "F16";
    case DType::BFloat16: return "BF16";
  }
  EMBER_INTERNAL_ASSERT(false, "no safetensors name for dtype ", static_cast<int>(t));
}

bool parse_supported_dtype(const std::string& name, DType* out) {
  static const std::pair<const char*, DType> kSupported[] = {
      {"F32", kFloat32}, {"F64", kFloat64}, {"I32", kInt32},  {"I64", kInt64},
      {"U8", kUInt8},    {"BOOL", kBool},   {"F16", kFloat16}, {"BF16", kBFloat16}};
  for (const auto& [n, t] : kSupported) {
    if (name == n) {
      *out = t;
      return true;
    }
  }
  return false;
}

// Valid safetensors dtypes that ember has no tensor type for.
bool is_rejected_dtype(const std::string& name) {
  static const char* const kRejected[] = {"I8",  "I16", "U16",     "U32",
                                          "U64", "C64", "F8_E5M2", "F8_E4M3"};
  for (const char* n : kRejected) {
    if (name == n) return true;
  }
  return false;
}

// --- small helpers ------------------------------------------------------------------------

std::string errno_text(int err) { return std::strerror(err); }

// The longest prefix of `s` of at most `n` bytes that does not split a UTF-8 character.
std::string_view utf8_prefix(std::string_view s, size_t n) {
  if (s.size() <= n) return s;
  while (n > 0 && (static_cast<unsigned char>(s[n]) & 0xC0) == 0x80) --n;
  return s.substr(0, n);
}

// 'name' for a message, cut after kQuoteBytes: a name read from a file may be megabytes.
std::string in_quotes(std::string_view s) {
  const std::string_view head = utf8_prefix(s, kQuoteBytes);
  return "'" + std::string(head) + (head.size() < s.size() ? "...'" : "'");
}

// "[2,3]": the compact form the header uses.
std::string compact_list(const Shape& v) {
  std::string s = "[";
  for (size_t i = 0; i < v.size(); ++i) s += (i ? "," : "") + std::to_string(v[i]);
  return s + "]";
}

std::string hex_byte(unsigned char b) {
  char buf[8];
  std::snprintf(buf, sizeof(buf), "0x%02X", b);
  return buf;
}

// Returns the offset of the first byte that breaks UTF-8 (overlong forms, surrogates and
// code points past U+10FFFF included), or npos when `s` is valid.
size_t first_invalid_utf8(const std::string& s) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const size_t n = s.size();
  size_t i = 0;
  while (i < n) {
    const unsigned char c = p[i];
    size_t len;
    unsigned char lo = 0x80, hi = 0xBF;  // allowed range of the second byte
    if (c < 0x80) {
      ++i;
      continue;
    } else if (c >= 0xC2 && c <= 0xDF) {
      len = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
      len = 3;
      if (c == 0xE0) lo = 0xA0;  // overlong
      if (c == 0xED) hi = 0x9F;  // surrogates
    } else if (c >= 0xF0 && c <= 0xF4) {
      len = 4;
      if (c == 0xF0) lo = 0x90;  // overlong
      if (c == 0xF4) hi = 0x8F;  // past U+10FFFF
    } else {
      return i;
    }
    if (i + len > n) return i;
    if (p[i + 1] < lo || p[i + 1] > hi) return i;
    for (size_t k = 2; k < len; ++k) {
      if (p[i + k] < 0x80 || p[i + k] > 0xBF) return i;
    }
    i += len;
  }
  return std::string::npos;
}

// Swaps each element's bytes in place (only on big-endian hosts: the format is
// little-endian).
void swap_bytes(void* data, size_t count, size_t elem_size) {
  auto* p = static_cast<unsigned char*>(data);
  for (size_t i = 0; i < count; ++i, p += elem_size) std::reverse(p, p + elem_size);
}

// A file descriptor closed on scope exit.
class Fd {
 public:
  explicit Fd(int fd = -1) : fd_(fd) {}
  ~Fd() { reset(); }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }
  // Closes now and reports close()'s error (0 when it succeeded).
  int close_now() {
    if (fd_ < 0) return 0;
    const int rc = ::close(fd_);
    fd_ = -1;
    return rc == 0 ? 0 : errno;
  }
  void reset() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

 private:
  int fd_;
};

// =========================================================================================
// Loading
// =========================================================================================

[[noreturn]] void load_fail(const std::string& path, const std::string& what) {
  throw IOError(detail::str_cat("load_safetensors: ", path, ": ", what));
}

// Reads exactly `n` bytes at `offset`. A short read means the file shrank after it was
// measured (every size was checked against fstat first).
void read_at(int fd, const std::string& path, void* dst, uint64_t n, uint64_t offset) {
  auto* out = static_cast<char*>(dst);
  uint64_t done = 0;
  while (done < n) {
    const size_t want = static_cast<size_t>(std::min<uint64_t>(n - done, kMaxIoChunk));
    const ssize_t got = ::pread(fd, out + done, want, static_cast<off_t>(offset + done));
    if (got < 0) {
      if (errno == EINTR) continue;
      load_fail(path, detail::str_cat("cannot read ", n, " bytes at byte ", offset, ": ",
                                      errno_text(errno)));
    }
    if (got == 0) {
      load_fail(path, detail::str_cat("file is truncated: expected ", n, " bytes at byte ", offset,
                                      ", found only ", done, " (did it change while being read?)"));
    }
    done += static_cast<uint64_t>(got);
  }
}

// Note [Header limits]
// The header is untrusted text of up to 100 MB, and reading it must cost neither the stack
// nor much more memory than the header itself:
//  - Depth. JSON nests without bound, and whatever recurses over a parsed value (a DOM's
//    dump(), a recursive check) overflows the stack on a shape nested 100,000 levels deep.
//    A linear pre-scan (nesting_depth) measures the nesting outside strings before the
//    parser sees a byte and refuses more than kMaxHeaderDepth levels (a valid header needs
//    3); HeaderParser enforces the same bound as it goes (nlohmann's SAX parser itself is
//    iterative). Messages never dump() parsed JSON: BoundedText rebuilds a bounded prefix
//    of a value's text from the parse events.
//  - Memory. A DOM costs 12-56 times the text it parses (a 2-byte "0," becomes a 16-byte
//    value in a vector). HeaderParser is a SAX handler that keeps only what loading needs,
//    checking each entry as it closes: per tensor its name, dtype, shape and offsets, plus
//    the metadata strings; values the format ignores (unknown keys in an entry) are
//    skipped, never stored. Counts are capped so what is kept stays bounded: kMaxRank
//    dimensions per shape, kMaxMetadataEntries metadata entries (a 7-byte "k":"", costs a
//    ~100-byte map node: at most ~7 MB in all), and kMaxTensors entries. A tensor costs
//    ~700 bytes once made, even an empty one, and StateDict::insert is linear, so loading
//    n tensors takes O(n^2) time (100,000 take ~10 s): the cap keeps a crafted file of
//    empty tensors from costing minutes, and is far above what real checkpoints hold
//    (thousands). Past a cap the parser counts without storing, so the error says how many.
// Measured on a 16 MB header (60,000 metadata entries and an ignored 8M-element list): the
// DOM parse peaked at 324 MB, this one at 24 MB.
// save_safetensors refuses to write what these limits refuse.

// How deeply '{' and '[' nest in `text`, outside strings: one pass, no allocation.
size_t nesting_depth(std::string_view text) {
  size_t depth = 0;
  size_t deepest = 0;
  bool in_string = false;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_string) {
      if (c == '\\') {
        ++i;  // an escaped character cannot end the string
      } else if (c == '"') {
        in_string = false;
      }
    } else if (c == '"') {
      in_string = true;
    } else if (c == '{' || c == '[') {
      deepest = std::max(deepest, ++depth);
    } else if ((c == '}' || c == ']') && depth > 0) {
      --depth;
    }
  }
  return deepest;
}

// A JSON value's text rebuilt from parse events and cut after kQuoteBytes: what messages
// quote ("shape [2, -1] has a negative dimension") instead of dump()ing untrusted JSON,
// which recurses and has no size bound.
class BoundedText {
 public:
  void scalar(std::string_view token) {
    separate();
    put(token);
  }
  void string(std::string_view s) {
    separate();
    put_string(s);
  }
  void key(std::string_view k) {
    separate();
    put_string(k);
    put(": ");
    after_key_ = true;
  }
  void open(char bracket) {
    separate();
    put(std::string_view(&bracket, 1));
    empty_.push_back(true);
  }
  void close(char bracket) {
    put(std::string_view(&bracket, 1));
    if (!empty_.empty()) empty_.pop_back();
  }
  std::string str() const { return cut_ ? text_ + "..." : text_; }

 private:
  // ", " between two elements of a container.
  void separate() {
    if (after_key_) {
      after_key_ = false;
    } else if (!empty_.empty()) {
      if (!empty_.back()) put(", ");
      empty_.back() = false;
    }
  }
  void put(std::string_view s) {
    if (cut_) return;
    const std::string_view head = utf8_prefix(s, kQuoteBytes - text_.size());
    text_.append(head);
    cut_ = head.size() < s.size();
  }
  void put_string(std::string_view s) {
    const std::string_view head = utf8_prefix(s, kQuoteBytes);
    put(Json(std::string(head)).dump(-1, ' ', false, Json::error_handler_t::replace));
    if (head.size() < s.size()) cut_ = true;
  }

  std::string text_;         // at most kQuoteBytes
  std::vector<bool> empty_;  // per open container: no element yet (at most kMaxHeaderDepth)
  bool after_key_ = false;
  bool cut_ = false;
};

// One JSON scalar as the entry checks see it (containers count as kOther).
enum class Item : uint8_t { kNonNegative, kNegative, kString, kNull, kOther };

// A list-valued field of an entry ("shape", "data_offsets"), as far as the checks need it.
struct ListField {
  bool present = false;  // the key appeared
  bool is_list = false;  // ... with a JSON array as its value
  size_t count = 0;      // the array's elements
  std::vector<std::pair<Item, uint64_t>> items;  // the first kMaxRank + 1 of them
  BoundedText text;                              // the value, for messages

  void add(Item item, uint64_t value) {
    if (items.size() <= kMaxRank) items.emplace_back(item, value);
    ++count;
  }
};

// A tensor entry's fields, gathered between its '{' and '}'.
struct EntryFields {
  bool has_dtype = false;
  bool dtype_is_string = false;
  std::string dtype;
  ListField shape;
  ListField offsets;
};

// One header entry, checked.
struct EntryInfo {
  DType dtype = kFloat32;
  std::string dtype_name;
  Shape shape;
  uint64_t begin = 0;
  uint64_t end = 0;
};

EntryInfo check_entry(const std::string& path, const std::string& name, const EntryFields& f) {
  auto fail = [&](const std::string& what) { load_fail(path, "tensor " + in_quotes(name) + ": " + what); };
  EntryInfo e;
  if (!f.dtype_is_string) fail("'dtype' is missing or not a string");
  if (!parse_supported_dtype(f.dtype, &e.dtype)) {
    if (is_rejected_dtype(f.dtype)) fail("dtype " + f.dtype + " is not supported by ember");
    fail("unknown dtype " + in_quotes(f.dtype));
  }
  e.dtype_name = f.dtype;

  if (!f.shape.is_list) fail("'shape' is missing or not a list");
  if (f.shape.count > kMaxRank) {
    fail(detail::str_cat("shape has ", f.shape.count, " dimensions; at most ", kMaxRank, " are allowed"));
  }
  // Element count with overflow checks; a zero dimension makes the tensor empty, but the
  // other dimensions must still fit ember's int64 sizes.
  uint64_t nonzero_product = 1;
  bool has_zero = false;
  for (const auto& [item, u] : f.shape.items) {
    if (item == Item::kNegative) fail("shape " + f.shape.text.str() + " has a negative dimension");
    if (item != Item::kNonNegative) fail("shape " + f.shape.text.str() + " is not a list of integers");
    if (u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      fail("shape " + f.shape.text.str() + " has a dimension beyond 2^63 - 1");
    }
    if (u == 0) {
      has_zero = true;
    } else if (nonzero_product > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) / u) {
      fail("shape " + f.shape.text.str() + " has more elements than fit in 64 bits");
    } else {
      nonzero_product *= u;
    }
    e.shape.push_back(static_cast<int64_t>(u));
  }
  const uint64_t numel = has_zero ? 0 : nonzero_product;
  const uint64_t elem = dtype_size(e.dtype);
  if (numel > std::numeric_limits<uint64_t>::max() / elem) {
    fail("shape " + shape_str(e.shape) + " of " + e.dtype_name + " needs more bytes than fit in 64 bits");
  }
  const uint64_t nbytes = numel * elem;

  const ListField& off = f.offsets;
  if (!off.is_list || off.count != 2 || off.items[0].first != Item::kNonNegative ||
      off.items[1].first != Item::kNonNegative) {
    fail("'data_offsets' must be a list of two non-negative integers [BEGIN, END], found " +
         (off.present ? off.text.str() : std::string("nothing")));
  }
  e.begin = off.items[0].second;
  e.end = off.items[1].second;
  if (e.end < e.begin) {
    fail(detail::str_cat("data_offsets [", e.begin, ", ", e.end, "] end before they begin"));
  }
  if (e.end - e.begin != nbytes) {
    fail(detail::str_cat("data_offsets [", e.begin, ", ", e.end, "] hold ", e.end - e.begin,
                         " bytes but shape ", shape_str(e.shape), " of ", e.dtype_name, " needs ",
                         nbytes));
  }
  return e;
}

[[noreturn]] void fail_json(const std::string& path, const Json::exception& e) {
  // nlohmann's message quotes the last token read, which may be megabytes long.
  const std::string_view what = e.what();
  const std::string_view head = utf8_prefix(what, 4 * kQuoteBytes);
  load_fail(path, "header is not valid JSON: " + std::string(head) + (head.size() < what.size() ? "..." : ""));
}

// A SAX handler that keeps nothing: only the syntax is checked.
struct SyntaxCheck {
  const std::string& path;
  bool null() { return true; }
  bool boolean(bool) { return true; }
  bool number_integer(int64_t) { return true; }
  bool number_unsigned(uint64_t) { return true; }
  bool number_float(double, const std::string&) { return true; }
  bool string(std::string&) { return true; }
  bool binary(Json::binary_t&) { return true; }
  bool start_object(size_t) { return true; }
  bool key(std::string&) { return true; }
  bool end_object() { return true; }
  bool start_array(size_t) { return true; }
  bool end_array() { return true; }
  bool parse_error(size_t, const std::string&, const Json::exception& e) { fail_json(path, e); }
};

// The header's SAX handler (nlohmann::json::sax_parse calls it in document order): checks
// each entry as it closes and keeps only what loading needs (Note [Header limits]). Every
// problem throws IOError at once; finish() refuses counts past the caps.
class HeaderParser {
 public:
  explicit HeaderParser(const std::string& path) : path_(path) {}

  bool null() { return scalar(Item::kNull, 0, [] { return std::string("null"); }); }
  bool boolean(bool b) { return scalar(Item::kOther, 0, [b] { return std::string(b ? "true" : "false"); }); }
  bool number_integer(int64_t v) {
    const auto text = [v] { return std::to_string(v); };
    return v < 0 ? scalar(Item::kNegative, 0, text) : scalar(Item::kNonNegative, static_cast<uint64_t>(v), text);
  }
  bool number_unsigned(uint64_t v) { return scalar(Item::kNonNegative, v, [v] { return std::to_string(v); }); }
  // Fractions, exponents, and integers beyond 64 bits, with the text as written.
  bool number_float(double, const std::string& text) { return scalar(Item::kOther, 0, [&text] { return text; }); }
  bool string(std::string& s) { return scalar(Item::kString, 0, [] { return std::string(); }, &s); }
  bool binary(Json::binary_t&) { return scalar(Item::kOther, 0, [] { return std::string("<binary>"); }); }
  bool start_object(size_t) { return open(/*is_array=*/false); }
  bool start_array(size_t) { return open(/*is_array=*/true); }
  bool end_object() { return close('}'); }
  bool end_array() { return close(']'); }
  bool key(std::string& k);
  bool parse_error(size_t, const std::string&, const Json::exception& e) { fail_json(path_, e); }

  void finish() const {
    if (tensor_count_ > kMaxTensors) {
      load_fail(path_, detail::str_cat("header lists ", tensor_count_, " tensors; at most ", kMaxTensors,
                                       " are allowed"));
    }
    if (metadata_count_ > kMaxMetadataEntries) {
      load_fail(path_, detail::str_cat("__metadata__ has ", metadata_count_, " entries; at most ",
                                       kMaxMetadataEntries, " are allowed"));
    }
  }

  std::map<std::string, EntryInfo> entries;  // by name: the order tensors are returned in
  std::map<std::string, std::string> metadata;

 private:
  // What an open container is to the header.
  enum class Frame : uint8_t { kHeader, kMetadata, kEntry, kList, kSkipped };
  // What the value after the last key is: the metadata map, a tensor entry, a metadata
  // value, one of an entry's fields, or something not kept.
  enum class Slot : uint8_t { kMetadataMap, kTensor, kMetadataValue, kDtype, kShape, kOffsets, kSkipped };

  [[noreturn]] void fail_entry(const std::string& what) const {
    load_fail(path_, "tensor " + in_quotes(name_) + ": " + what);
  }

  ListField* list_for_slot() {
    if (slot_ == Slot::kShape) return &fields_.shape;
    if (slot_ == Slot::kOffsets) return &fields_.offsets;
    return nullptr;
  }

  // Later events are rendered into `text` until the container now opening closes.
  void start_capture(BoundedText* text) {
    capture_ = text;
    capture_depth_ = frames_.size();
  }

  template <typename TextFn>
  bool scalar(Item item, uint64_t value, const TextFn& text, std::string* str = nullptr) {
    if (capture_ != nullptr) {
      if (str != nullptr) {
        capture_->string(*str);
      } else {
        capture_->scalar(text());
      }
    }
    switch (frames_.empty() ? Frame::kSkipped : frames_.back()) {
      case Frame::kHeader:
        if (slot_ == Slot::kMetadataMap && item != Item::kNull) load_fail(path_, "__metadata__ is not a JSON object");
        if (slot_ == Slot::kTensor) fail_entry("entry is not a JSON object");
        break;
      case Frame::kMetadata:
        if (slot_ != Slot::kMetadataValue) break;
        if (item != Item::kString) {
          load_fail(path_, "__metadata__ entry " + in_quotes(key_) + " is not a string: " + text());
        }
        metadata.emplace(std::move(key_), std::move(*str));
        break;
      case Frame::kEntry:
        if (slot_ == Slot::kDtype && item == Item::kString) {
          fields_.dtype = std::move(*str);
          fields_.dtype_is_string = true;
        } else if (ListField* list = list_for_slot()) {
          if (str != nullptr) {
            list->text.string(*str);
          } else {
            list->text.scalar(text());
          }
        }
        break;
      case Frame::kList:
        list_->add(item, value);
        break;
      case Frame::kSkipped:
        break;
    }
    return true;
  }

  bool open(bool is_array) {
    if (frames_.size() >= kMaxHeaderDepth) {  // nesting_depth() has already refused this
      load_fail(path_, detail::str_cat("header nests more than ", kMaxHeaderDepth, " levels deep; at most ",
                                       kMaxHeaderDepth, " are allowed"));
    }
    Frame next = Frame::kSkipped;
    switch (frames_.empty() ? Frame::kSkipped : frames_.back()) {
      case Frame::kHeader:
        if (slot_ == Slot::kMetadataMap) {
          if (is_array) load_fail(path_, "__metadata__ is not a JSON object");
          next = Frame::kMetadata;
        } else if (slot_ == Slot::kTensor) {
          if (is_array) fail_entry("entry is not a JSON object");
          next = Frame::kEntry;
        }
        break;
      case Frame::kMetadata:
        if (slot_ == Slot::kMetadataValue) start_capture(&bad_value_);  // refused as it closes
        break;
      case Frame::kEntry:
        if (ListField* list = list_for_slot()) {
          start_capture(&list->text);
          if (is_array) {
            list->is_list = true;
            list_ = list;
            next = Frame::kList;
          }
        }
        break;
      case Frame::kList:
        list_->add(Item::kOther, 0);
        break;
      case Frame::kSkipped:
        if (frames_.empty()) next = Frame::kHeader;  // the header's own '{'
        break;
    }
    if (capture_ != nullptr) capture_->open(is_array ? '[' : '{');
    frames_.push_back(next);
    return true;
  }

  bool close(char bracket) {
    const Frame done = frames_.back();
    frames_.pop_back();
    if (capture_ != nullptr) {
      capture_->close(bracket);
      if (frames_.size() == capture_depth_) {
        capture_ = nullptr;
        if (frames_.back() == Frame::kMetadata) {
          load_fail(path_, "__metadata__ entry " + in_quotes(key_) + " is not a string: " + bad_value_.str());
        }
      }
    }
    if (done == Frame::kEntry) {
      EntryInfo e = check_entry(path_, name_, fields_);
      entries.emplace(std::move(name_), std::move(e));
    }
    return true;
  }

  const std::string& path_;
  std::vector<Frame> frames_;  // the open containers, outermost first
  Slot slot_ = Slot::kSkipped;
  BoundedText* capture_ = nullptr;  // where events are rendered, if anywhere
  size_t capture_depth_ = 0;        // frames_.size() when the capture began
  std::string name_;                // the tensor entry being read
  EntryFields fields_;
  ListField* list_ = nullptr;  // the list field being read
  std::string key_;            // the metadata entry being read
  BoundedText bad_value_;      // a metadata value that is not a string
  bool has_metadata_ = false;
  size_t tensor_count_ = 0;
  size_t metadata_count_ = 0;
};

bool HeaderParser::key(std::string& k) {
  if (capture_ != nullptr) capture_->key(k);
  switch (frames_.back()) {
    case Frame::kHeader:
      if (k == kMetadataKey) {
        if (has_metadata_) load_fail(path_, "duplicate tensor name '__metadata__' in the header");
        has_metadata_ = true;
        slot_ = Slot::kMetadataMap;
      } else {
        if (entries.count(k) != 0) load_fail(path_, "duplicate tensor name " + in_quotes(k) + " in the header");
        slot_ = ++tensor_count_ > kMaxTensors ? Slot::kSkipped : Slot::kTensor;  // counted, not kept
        name_ = std::move(k);
        fields_ = EntryFields{};
      }
      break;
    case Frame::kMetadata:
      if (metadata.count(k) != 0) load_fail(path_, "duplicate key " + in_quotes(k) + " in __metadata__");
      slot_ = ++metadata_count_ > kMaxMetadataEntries ? Slot::kSkipped : Slot::kMetadataValue;
      key_ = std::move(k);
      break;
    case Frame::kEntry: {
      bool* seen = nullptr;
      if (k == "dtype") {
        slot_ = Slot::kDtype;
        seen = &fields_.has_dtype;
      } else if (k == "shape") {
        slot_ = Slot::kShape;
        seen = &fields_.shape.present;
      } else if (k == "data_offsets") {
        slot_ = Slot::kOffsets;
        seen = &fields_.offsets.present;
      } else {
        slot_ = Slot::kSkipped;  // unknown keys are ignored, as the reference loader does
      }
      if (seen != nullptr && *seen) fail_entry("duplicate key " + in_quotes(k));
      if (seen != nullptr) *seen = true;
      break;
    }
    case Frame::kList:
    case Frame::kSkipped:
      break;
  }
  return true;
}

}  // namespace

SafetensorsFile load_safetensors(const std::string& path, Device device) {
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0) load_fail(path, "cannot open: " + errno_text(errno));
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) load_fail(path, "cannot stat: " + errno_text(errno));
  if (S_ISDIR(st.st_mode)) load_fail(path, "is a directory, expected a safetensors file");
  if (!S_ISREG(st.st_mode)) load_fail(path, "is not a regular file");
  const uint64_t file_size = static_cast<uint64_t>(st.st_size);

  // --- the header length and the header ---------------------------------------------------
  if (file_size < kLengthBytes) {
    load_fail(path, detail::str_cat("file is ", file_size,
                                    " bytes, too short for the 8-byte header length"));
  }
  unsigned char len_bytes[kLengthBytes];
  read_at(fd.get(), path, len_bytes, kLengthBytes, 0);
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | len_bytes[i];
  if (header_len > kMaxHeaderBytes) {
    load_fail(path, detail::str_cat("header length ", header_len, " exceeds the ", kMaxHeaderBytes,
                                    "-byte limit"));
  }
  // Written as a subtraction so that no header length can overflow it.
  if (header_len > file_size - kLengthBytes) {
    load_fail(path, detail::str_cat("header length ", header_len, " runs past the end of the file (8 + ",
                                    header_len, " bytes needed, the file has ", file_size, ")"));
  }
  std::string header(static_cast<size_t>(header_len), '\0');
  read_at(fd.get(), path, header.data(), header_len, kLengthBytes);
  if (header.empty() || header[0] != '{') {
    load_fail(path, header.empty() ? std::string("header is empty, expected a JSON object")
                                   : "header does not start with '{' (first byte " +
                                         hex_byte(static_cast<unsigned char>(header[0])) + ")");
  }
  const size_t bad = first_invalid_utf8(header);
  if (bad != std::string::npos) {
    load_fail(path, detail::str_cat("header is not valid UTF-8 (byte ",
                                    hex_byte(static_cast<unsigned char>(header[bad])),
                                    " at header offset ", bad, ")"));
  }
  // Note [Header limits]: the depth first, by a pass that cannot recurse, then the parse.
  const size_t depth = nesting_depth(header);
  if (depth > kMaxHeaderDepth) {
    load_fail(path, detail::str_cat("header nests ", depth, " levels deep; at most ", kMaxHeaderDepth,
                                    " are allowed"));
  }
  // --- every entry, checked before any data is read ----------------------------------------
  HeaderParser parser(path);
  try {
    Json::sax_parse(header.data(), header.data() + header.size(), &parser);
  } catch (const IOError&) {
    // The parser stops at the first problem; when the text is not JSON at all, even further
    // on, that is the one to report.
    SyntaxCheck syntax{path};
    Json::sax_parse(header.data(), header.data() + header.size(), &syntax);
    throw;
  }
  parser.finish();
  std::string().swap(header);  // not needed any more: free it before the tensors are made
  SafetensorsFile result;
  result.metadata = std::move(parser.metadata);
  const std::map<std::string, EntryInfo>& entries = parser.entries;

  // Sorted by offset the entries must tile the data buffer exactly: no gap, no overlap,
  // from byte 0 to its last byte.
  using Entry = std::pair<const std::string, EntryInfo>;
  std::vector<const Entry*> by_offset;
  by_offset.reserve(entries.size());
  for (const Entry& e : entries) by_offset.push_back(&e);
  std::sort(by_offset.begin(), by_offset.end(), [](const Entry* a, const Entry* b) {
    return a->second.begin != b->second.begin ? a->second.begin < b->second.begin
                                              : a->second.end < b->second.end;
  });
  uint64_t covered = 0;
  const Entry* previous = nullptr;
  for (const Entry* entry : by_offset) {
    const EntryInfo& e = entry->second;
    if (e.begin > covered) {
      if (previous == nullptr) {
        load_fail(path, detail::str_cat("tensors do not tile the data buffer: the first tensor ",
                                        in_quotes(entry->first), " begins at byte ", e.begin, ", not 0"));
      }
      load_fail(path, detail::str_cat("tensors do not tile the data buffer: gap between byte ",
                                      covered, " and ", e.begin));
    }
    if (e.begin < covered) {
      load_fail(path, detail::str_cat("tensors do not tile the data buffer: tensor ", in_quotes(entry->first),
                                      " [", e.begin, ", ", e.end, "] overlaps tensor ",
                                      in_quotes(previous->first), " [", previous->second.begin, ", ",
                                      previous->second.end, "]"));
    }
    covered = e.end;
    previous = entry;
  }
  const uint64_t data_start = kLengthBytes + header_len;
  const uint64_t buffer_size = file_size - data_start;
  if (covered > buffer_size) {
    load_fail(path, detail::str_cat("file is truncated: the header describes ", covered,
                                    " bytes of tensor data but only ", buffer_size,
                                    " follow the header (file size ", file_size, ")"));
  }
  if (covered < buffer_size) {
    load_fail(path, detail::str_cat(buffer_size - covered, " trailing bytes after the last tensor (data ends at byte ",
                                    data_start + covered, ", the file has ", file_size, ")"));
  }

  // --- the data: every size above is now known to fit inside the file -----------------------
  for (const auto& [name, e] : entries) {  // in name order
    Tensor t = Tensor::empty(e.shape, {.dtype = e.dtype});
    const uint64_t nbytes = e.end - e.begin;
    if (nbytes > 0) {
      read_at(fd.get(), path, t.data_ptr(), nbytes, data_start + e.begin);
      if (!kLittleEndian) swap_bytes(t.data_ptr(), static_cast<size_t>(t.numel()), t.element_size());
    }
    if (e.dtype == kBool) {
      // Any other byte would be an invalid bool in C++.
      const auto* b = static_cast<const uint8_t*>(t.data_ptr());
      for (uint64_t i = 0; i < nbytes; ++i) {
        if (b[i] > 1) {
          load_fail(path, detail::str_cat("tensor ", in_quotes(name), ": BOOL element ", i,
                                          " is byte ", static_cast<int>(b[i]), ", expected 0 or 1"));
        }
      }
    }
    result.tensors.insert(name, device.is_cpu() ? t : t.to(device));
  }
  return result;
}

// =========================================================================================
// Saving
// =========================================================================================

namespace {

[[noreturn]] void save_fail(const std::string& path, const std::string& what) {
  throw IOError(detail::str_cat("save_safetensors: ", path, ": ", what));
}

std::string json_string(const std::string& path, const std::string& what, const std::string& s) {
  const size_t bad = first_invalid_utf8(s);
  if (bad != std::string::npos) {
    save_fail(path, detail::str_cat(what, " is not valid UTF-8 (bad byte at offset ", bad, ")"));
  }
  return Json(s).dump();
}

}  // namespace

void save_safetensors(const std::string& path, const nn::StateDict& tensors,
                      const std::map<std::string, std::string>& metadata) {
  using internal::AtomicFileWriter;
  using internal::write_file_atomically;
  if (path.empty()) save_fail(path, "the path is empty");
  // What loaders refuse is not written (Note [Header limits]).
  if (tensors.size() > kMaxTensors) {
    save_fail(path, detail::str_cat(tensors.size(), " tensors; loaders accept at most ", kMaxTensors,
                                    " in one file"));
  }
  if (metadata.size() > kMaxMetadataEntries) {
    save_fail(path, detail::str_cat(metadata.size(), " metadata entries; loaders accept at most ",
                                    kMaxMetadataEntries));
  }

  // --- the tensors, on the CPU and contiguous, sorted by name --------------------------------
  std::vector<std::pair<std::string, Tensor>> sorted;
  for (const auto& [name, t] : tensors) {
    if (name == kMetadataKey) save_fail(path, "a tensor cannot be named __metadata__ (the format reserves it)");
    if (!t.defined()) save_fail(path, "tensor " + in_quotes(name) + " is undefined");
    if (static_cast<size_t>(t.dim()) > kMaxRank) {
      save_fail(path, detail::str_cat("tensor ", in_quotes(name), " has ", t.dim(), " dimensions; loaders accept at most ",
                                      kMaxRank));
    }
    sorted.emplace_back(name, t.detach().cpu().contiguous());
  }
  std::sort(sorted.begin(), sorted.end(),
            [](const auto& a, const auto& b) { return a.first < b.first; });

  // --- the header: compact JSON, padded with spaces so the data starts 8-byte aligned --------
  std::string header = "{";
  bool first = true;
  if (!metadata.empty()) {
    header += "\"__metadata__\":{";
    for (const auto& [k, v] : metadata) {
      if (!first) header += ",";
      first = false;
      header += json_string(path, "metadata key " + in_quotes(k), k) + ":" +
                json_string(path, "metadata value of " + in_quotes(k), v);
    }
    header += "}";
    first = false;
  }
  uint64_t offset = 0;
  for (const auto& [name, t] : sorted) {
    const uint64_t nbytes = t.nbytes();
    if (!first) header += ",";
    first = false;
    header += json_string(path, "tensor name " + in_quotes(name), name) + ":{\"dtype\":\"" +
              safetensors_dtype_name(t.dtype()) + "\",\"shape\":" + compact_list(t.shape()) + "," +
              "\"data_offsets\":[" + std::to_string(offset) + "," + std::to_string(offset + nbytes) +
              "]}";
    offset += nbytes;
  }
  header += "}";
  header.append((8 - header.size() % 8) % 8, ' ');
  if (header.size() > kMaxHeaderBytes) {
    save_fail(path, detail::str_cat("the header would be ", header.size(), " bytes, over the ",
                                    kMaxHeaderBytes, "-byte limit loaders enforce"));
  }

  // --- write, sync, rename (Note [Atomic write] in atomic_file.cpp) -------------------------
  write_file_atomically("save_safetensors", path, [&](AtomicFileWriter& out) {
    unsigned char len_bytes[kLengthBytes];
    for (size_t i = 0; i < kLengthBytes; ++i) {
      len_bytes[i] = static_cast<unsigned char>(header.size() >> (8 * i));
    }
    out.write(len_bytes, kLengthBytes);
    out.write(header.data(), header.size());
    for (const auto& [name, t] : sorted) {
      if (t.nbytes() == 0) continue;
      if (kLittleEndian || t.element_size() == 1) {
        out.write(t.data_ptr(), t.nbytes());
      } else {
        std::vector<unsigned char> le(static_cast<const unsigned char*>(t.data_ptr()),
                                      static_cast<const unsigned char*>(t.data_ptr()) + t.nbytes());
        swap_bytes(le.data(), static_cast<size_t>(t.numel()), t.element_size());
        out.write(le.data(), le.size());
      }
    }
  });
}

// =========================================================================================
// Modules, optimizers and training checkpoints
// =========================================================================================

namespace {

constexpr const char* kFormatKey = "ember.format";
constexpr const char* kContentKey = "ember.content";
constexpr const char* kHasOptimizerKey = "ember.optimizer";
constexpr const char* kModelPrefix = "model.";
constexpr const char* kOptimizerPrefix = "optimizer.";
constexpr const char* kScalerPrefix = "grad_scaler.";
constexpr const char* kExtraPrefix = "extra.";

bool starts_with(const std::string& s, const std::string& prefix) {
  return s.compare(0, prefix.size(), prefix) == 0;
}

// Rethrows the exception being handled with `context` in front of its message, keeping
// its type so callers can still catch ShapeError and friends. Only loads call it, so a
// ValueError or an untyped Error (an optimizer's or scaler's state dict with unknown keys,
// a bad option or a non-integer step count, say: a ValueError when a caller hands such a
// dict to load_state_dict directly) is a file whose content is wrong: it becomes an
// IOError, the loaders' typed error (fuzzing found load_checkpoint throwing a plain Error
// for a mutated optimizer key).
[[noreturn]] void rethrow_with_context(const std::string& context) {
  try {
    throw;
  } catch (const ShapeError& e) {
    throw ShapeError(context + e.what());
  } catch (const DTypeError& e) {
    throw DTypeError(context + e.what());
  } catch (const DeviceError& e) {
    throw DeviceError(context + e.what());
  } catch (const OutOfMemoryError& e) {
    throw OutOfMemoryError(context + e.what());
  } catch (const CudaError& e) {
    throw CudaError(context + e.what());
  } catch (const ValueError& e) {
    throw IOError(context + e.what());
  } catch (const IOError& e) {
    throw IOError(context + e.what());
  } catch (const Error& e) {
    throw IOError(context + e.what());
  }
}

// A file written by save() for something else gets a pointed hint instead of a list of
// mismatched keys.
void expect_content(const std::string& op, const std::string& path, const SafetensorsFile& f,
                    const std::string& wanted) {
  const auto it = f.metadata.find(kContentKey);
  if (it == f.metadata.end() || it->second == wanted) return;
  std::string hint;
  if (it->second == "checkpoint") hint = "; load it with io::load_checkpoint";
  if (it->second == "module") hint = "; load it with io::load(module, path)";
  if (it->second == "optimizer") hint = "; load it with io::load(optimizer, path)";
  throw IOError(detail::str_cat(op, ": ", path, ": the file holds a saved ", it->second, ", not a ",
                                wanted, hint));
}

std::string metadata_value(const std::string& path, const std::map<std::string, std::string>& m,
                           const std::string& key) {
  const auto it = m.find(key);
  if (it == m.end()) {
    throw IOError(detail::str_cat("load_checkpoint: ", path, ": metadata ", in_quotes(key), " is missing"));
  }
  return it->second;
}

// Strict decimal parsing: the whole string, no sign for unsigned values, overflow refused.
template <typename T>
T parse_integer(const std::string& path, const std::string& key, const std::string& text) {
  static_assert(std::is_integral_v<T>);
  auto fail = [&]() -> T {
    throw IOError(detail::str_cat("load_checkpoint: ", path, ": metadata ", in_quotes(key), " = ",
                                  in_quotes(text), " is not a valid ", std::is_signed_v<T> ? "int64" : "uint64"));
  };
  size_t i = 0;
  bool negative = false;
  if (std::is_signed_v<T> && !text.empty() && text[0] == '-') {
    negative = true;
    i = 1;
  }
  if (i == text.size()) return fail();
  using U = std::make_unsigned_t<T>;
  const U limit = negative ? static_cast<U>(std::numeric_limits<T>::max()) + 1
                           : static_cast<U>(std::numeric_limits<T>::max());
  U value = 0;
  for (; i < text.size(); ++i) {
    if (text[i] < '0' || text[i] > '9') return fail();
    const U digit = static_cast<U>(text[i] - '0');
    if (value > (limit - digit) / 10) return fail();
    value = value * 10 + digit;
  }
  if (!negative) return static_cast<T>(value);
  return value == limit ? std::numeric_limits<T>::min() : -static_cast<T>(value);
}

std::string join_u64(const std::vector<uint64_t>& v) {
  std::string s;
  for (size_t i = 0; i < v.size(); ++i) s += (i ? "," : "") + std::to_string(v[i]);
  return s;
}

}  // namespace

void save(const nn::Module& module, const std::string& path) {
  // "format": "pt" because Hugging Face loaders refuse a file whose metadata lacks it, and
  // the keys and layout are exactly PyTorch's.
  save_safetensors(path, module.state_dict(),
                   {{"format", "pt"}, {kFormatKey, kFormatVersion}, {kContentKey, "module"}});
}

void load(nn::Module& module, const std::string& path, bool strict) {
  const SafetensorsFile f = load_safetensors(path);
  expect_content("load", path, f, "module");
  try {
    module.load_state_dict(f.tensors, strict);
  } catch (const Error&) {
    rethrow_with_context("load: " + path + ": ");
  }
}

void save(const optim::Optimizer& optimizer, const std::string& path) {
  save_safetensors(path, optimizer.state_dict(), {{kFormatKey, kFormatVersion}, {kContentKey, "optimizer"}});
}

void load(optim::Optimizer& optimizer, const std::string& path) {
  const SafetensorsFile f = load_safetensors(path);
  expect_content("load", path, f, "optimizer");
  try {
    optimizer.load_state_dict(f.tensors);
  } catch (const Error&) {
    rethrow_with_context("load: " + path + ": ");
  }
}

void save_checkpoint(const std::string& path, const nn::Module& module,
                     const optim::Optimizer* optimizer, const TrainingState& state,
                     const optim::GradScaler* scaler) {
  nn::StateDict all;
  for (const auto& [name, t] : module.state_dict()) all.insert(kModelPrefix + name, t);
  if (optimizer != nullptr) {
    for (const auto& [name, t] : optimizer->state_dict()) all.insert(kOptimizerPrefix + name, t);
  }
  if (scaler != nullptr) {
    for (const auto& [name, t] : scaler->state_dict()) all.insert(kScalerPrefix + name, t);
  }
  const RngState rng = get_rng_state();
  std::map<std::string, std::string> meta = {
      {kFormatKey, kFormatVersion},
      {kContentKey, "checkpoint"},
      {kHasOptimizerKey, optimizer != nullptr ? "1" : "0"},
      {"epoch", std::to_string(state.epoch)},
      {"step", std::to_string(state.step)},
      {"rng.seed", std::to_string(rng.seed)},
      {"rng.cpu_engine", rng.cpu_engine},
      {"rng.philox_offset_cpu", std::to_string(rng.philox_offset_cpu)},
      {"rng.philox_offset_cuda", join_u64(rng.philox_offset_cuda)},
  };
  for (const auto& [k, v] : state.extra) meta[kExtraPrefix + k] = v;
  save_safetensors(path, all, meta);
}

// Note [All-or-nothing checkpoint load]
// A failed load_checkpoint leaves the model, the optimizer and the generators exactly as
// they were, so a caller can report the bad file and carry on (or try another). Every part
// is checked before any changes: the metadata is parsed and the generator state validated
// here; the optimizer's section is checked by Optimizer::check_state_dict, which changes
// nothing; the model's keys and shapes are checked by Module::load_state_dict before it
// copies a byte. Then the model is copied, the optimizer loaded (it checks again and
// cannot fail on what passed, short of running out of memory) and the generators set.
TrainingState load_checkpoint(const std::string& path, nn::Module& module, optim::Optimizer* optimizer,
                              optim::GradScaler* scaler) {
  const SafetensorsFile f = load_safetensors(path);
  const auto fail = [&](const std::string& what) {
    throw IOError(detail::str_cat("load_checkpoint: ", path, ": ", what));
  };

  // --- everything is parsed and checked before the module, optimizer or RNG change --------
  const auto format = f.metadata.find(kFormatKey);
  if (format == f.metadata.end()) fail("not an ember checkpoint (its metadata has no 'ember.format')");
  if (format->second != kFormatVersion) {
    fail(detail::str_cat("ember checkpoint format ", in_quotes(format->second),
                         " is not supported (this build reads format ", kFormatVersion, ")"));
  }
  expect_content("load_checkpoint", path, f, "checkpoint");
  if (f.metadata.find(kContentKey) == f.metadata.end()) fail("not an ember checkpoint (no 'ember.content')");

  TrainingState state;
  state.epoch = parse_integer<int64_t>(path, "epoch", metadata_value(path, f.metadata, "epoch"));
  state.step = parse_integer<int64_t>(path, "step", metadata_value(path, f.metadata, "step"));
  for (const auto& [k, v] : f.metadata) {
    if (starts_with(k, kExtraPrefix)) state.extra[k.substr(std::strlen(kExtraPrefix))] = v;
  }

  RngState rng;
  rng.seed = parse_integer<uint64_t>(path, "rng.seed", metadata_value(path, f.metadata, "rng.seed"));
  rng.cpu_engine = metadata_value(path, f.metadata, "rng.cpu_engine");
  {
    std::istringstream is(rng.cpu_engine);
    std::mt19937_64 engine;
    is >> engine;
    if (is.fail()) fail("metadata 'rng.cpu_engine' is not a valid CPU generator state");
  }
  rng.philox_offset_cpu = parse_integer<uint64_t>(path, "rng.philox_offset_cpu",
                                                  metadata_value(path, f.metadata, "rng.philox_offset_cpu"));
  const std::string cuda_offsets = metadata_value(path, f.metadata, "rng.philox_offset_cuda");
  // One offset per device: a few, never the millions a crafted file could list.
  constexpr size_t kMaxDevices = 1024;
  if (const size_t n = static_cast<size_t>(std::count(cuda_offsets.begin(), cuda_offsets.end(), ',')) + 1;
      n > kMaxDevices) {
    fail(detail::str_cat("metadata 'rng.philox_offset_cuda' lists ", n, " offsets; at most ", kMaxDevices,
                         " (one per device) are allowed"));
  }
  for (size_t pos = 0; !cuda_offsets.empty() && pos <= cuda_offsets.size();) {
    const size_t comma = std::min(cuda_offsets.find(',', pos), cuda_offsets.size());
    rng.philox_offset_cuda.push_back(
        parse_integer<uint64_t>(path, "rng.philox_offset_cuda", cuda_offsets.substr(pos, comma - pos)));
    pos = comma + 1;
  }

  const bool has_optimizer = metadata_value(path, f.metadata, kHasOptimizerKey) == "1";
  if (optimizer != nullptr && !has_optimizer) {
    fail("the checkpoint was saved without optimizer state; pass a null optimizer to load only the model");
  }
  nn::StateDict model_dict, optimizer_dict, scaler_dict;
  for (const auto& [name, t] : f.tensors) {
    if (starts_with(name, kModelPrefix)) {
      model_dict.insert(name.substr(std::strlen(kModelPrefix)), t);
    } else if (starts_with(name, kOptimizerPrefix)) {
      optimizer_dict.insert(name.substr(std::strlen(kOptimizerPrefix)), t);
    } else if (starts_with(name, kScalerPrefix)) {
      scaler_dict.insert(name.substr(std::strlen(kScalerPrefix)), t);
    } else {
      fail("unexpected tensor " + in_quotes(name) +
           " (checkpoint tensors start with 'model.', 'optimizer.' or 'grad_scaler.')");
    }
  }

  // --- restore, all or nothing (Note [All-or-nothing checkpoint load]) -----------------------
  try {
    if (optimizer != nullptr) optimizer->check_state_dict(optimizer_dict);
    // The scaler's state is loaded into a copy first, which checks it and changes nothing.
    std::optional<optim::GradScaler> loaded_scaler;
    if (scaler != nullptr && scaler_dict.size() > 0) {
      loaded_scaler.emplace(*scaler);
      loaded_scaler->load_state_dict(scaler_dict);
    }
    module.load_state_dict(model_dict, true);
    if (optimizer != nullptr) optimizer->load_state_dict(optimizer_dict);
    if (loaded_scaler) *scaler = *loaded_scaler;
  } catch (const Error&) {
    rethrow_with_context("load_checkpoint: " + path + ": ");
  }
  set_rng_state(rng);
  return state;
}

}  // namespace ember::io
