// IDX reader: header checks, overflow-checked sizes, raw or gzip input streamed through
// zlib, big-endian to native conversion.
#include "ember/python_free_api/data/idx.h"

#include <sys/stat.h>
#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "ember/core/base/error.h"

namespace ember::data {

namespace {

constexpr int kMaxDims = 8;
constexpr size_t kMagicBytes = 4;
// Data is read (and, for gzip, the buffer grown) this much at a time, so a header that
// claims more than the file holds never causes a large allocation.
constexpr size_t kChunk = size_t{1} << 20;

bool known_type(uint8_t t) {
  switch (static_cast<IdxType>(t)) {
    case IdxType::U8:
    case IdxType::I8:
    case IdxType::I16:
    case IdxType::I32:
    case IdxType::F32:
    case IdxType::F64:
      return true;
  }
  return false;
}

std::string hex_byte(uint8_t b) {
  char buf[8];
  std::snprintf(buf, sizeof(buf), "0x%02X", b);
  return buf;
}

std::string dims_str(const std::vector<int64_t>& dims) {
  std::string s = "[";
  for (size_t i = 0; i < dims.size(); ++i) {
    if (i > 0) s += ", ";
    s += std::to_string(dims[i]);
  }
  return s + "]";
}

[[noreturn]] void fail(const std::string& path, const std::string& what) {
  throw IOError(detail::str_cat("read_idx: ", path, ": ", what));
}

// The bytes of an IDX file, from a plain file or through zlib when the file starts with
// the gzip magic 1F 8B. Offsets in error messages count bytes of this stream (for gzip,
// of the decompressed data).
class IdxSource {
 public:
  explicit IdxSource(const std::string& path) : path_(path) {
    file_.reset(std::fopen(path.c_str(), "rb"));
    if (file_ == nullptr) fail(path_, detail::str_cat("cannot open: ", std::strerror(errno)));
    struct stat st {};
    if (fstat(fileno(file_.get()), &st) != 0) {
      fail(path_, detail::str_cat("cannot stat: ", std::strerror(errno)));
    }
    if (S_ISDIR(st.st_mode)) fail(path_, "is a directory, expected an IDX file");
    file_size_ = static_cast<int64_t>(st.st_size);

    unsigned char head[2] = {0, 0};
    const size_t got = std::fread(head, 1, 2, file_.get());
    if (got < 2 && std::ferror(file_.get())) {
      fail(path_, detail::str_cat("cannot read: ", std::strerror(errno)));
    }
    if (got == 2 && head[0] == 0x1F && head[1] == 0x8B) {
      file_.reset();
      errno = 0;
      gz_.reset(gzopen(path.c_str(), "rb"));
      if (gz_ == nullptr) {
        fail(path_, detail::str_cat("cannot open as gzip: ",
                                    errno != 0 ? std::strerror(errno) : "out of memory"));
      }
      gzbuffer(gz_.get(), 1 << 17);
    } else {
      std::rewind(file_.get());
    }
  }

  bool gzip() const { return gz_ != nullptr; }
  // Size on disk; for a plain file this is the size of the stream.
  int64_t file_size() const { return file_size_; }
  // " of the decompressed data" for gzip, so an offset is not mistaken for a file offset.
  const char* stream_note() const { return gzip() ? " of the decompressed data" : ""; }

  // Reads up to n bytes, fewer only at the end of the data. A corrupt or truncated gzip
  // stream throws with zlib's own message rather than ending the data early.
  size_t read(void* dst, size_t n) {
    auto* out = static_cast<unsigned char*>(dst);
    size_t total = 0;
    while (total < n) {
      const size_t want = std::min(n - total, size_t{1} << 30);
      if (file_ != nullptr) {
        const size_t got = std::fread(out + total, 1, want, file_.get());
        total += got;
        if (got < want) {
          if (std::ferror(file_.get())) {
            fail(path_, detail::str_cat("read error at offset ", offset_ + total, ": ",
                                        std::strerror(errno)));
          }
          break;
        }
      } else {
        const int got = gzread(gz_.get(), out + total, static_cast<unsigned>(want));
        if (got > 0) total += static_cast<size_t>(got);
        int err = Z_OK;
        gzerror(gz_.get(), &err);
        // Z_BUF_ERROR means the compressed input ended early; zlib still hands out what
        // it decompressed before that, so it is only fatal once the data runs short.
        const bool broken = got < 0 || (err != Z_OK && err != Z_BUF_ERROR);
        if (broken || (err == Z_BUF_ERROR && static_cast<size_t>(got) < want)) {
          gzip_error(err, offset_ + total);
        }
        if (static_cast<size_t>(got) < want) break;
      }
    }
    offset_ += total;
    return total;
  }

  [[noreturn]] void gzip_error(int err, uint64_t decompressed) {
    std::string msg = err == Z_ERRNO ? std::strerror(errno) : gzerror(gz_.get(), &err);
    // zlib prefixes its message with the path, which the error already names.
    if (msg.compare(0, path_.size() + 2, path_ + ": ") == 0) msg.erase(0, path_.size() + 2);
    fail(path_, detail::str_cat("corrupt or truncated gzip data (zlib: ", msg, ") after ",
                                decompressed, " bytes of decompressed data"));
  }

  // Reads to the end and returns how many bytes were left.
  uint64_t drain() {
    std::vector<unsigned char> scratch(1 << 16);
    uint64_t extra = 0;
    while (true) {
      const size_t got = read(scratch.data(), scratch.size());
      extra += got;
      if (got < scratch.size()) return extra;
    }
  }

 private:
  struct FileCloser {
    void operator()(std::FILE* f) const { std::fclose(f); }
  };
  struct GzCloser {
    void operator()(gzFile g) const { gzclose(g); }
  };
  std::string path_;
  std::unique_ptr<std::FILE, FileCloser> file_;
  std::unique_ptr<gzFile_s, GzCloser> gz_;
  int64_t file_size_ = 0;
  uint64_t offset_ = 0;
};

void swap_to_native(std::vector<uint8_t>& data, int64_t elem) {
  if (elem == 1) return;
  if constexpr (__BYTE_ORDER__ == __ORDER_BIG_ENDIAN__) return;
  uint8_t* p = data.data();
  const size_t n = data.size() / static_cast<size_t>(elem);
  for (size_t i = 0; i < n; ++i, p += elem) {
    switch (elem) {
      case 2: {
        uint16_t v;
        std::memcpy(&v, p, 2);
        v = __builtin_bswap16(v);
        std::memcpy(p, &v, 2);
        break;
      }
      case 4: {
        uint32_t v;
        std::memcpy(&v, p, 4);
        v = __builtin_bswap32(v);
        std::memcpy(p, &v, 4);
        break;
      }
      case 8: {
        uint64_t v;
        std::memcpy(&v, p, 8);
        v = __builtin_bswap64(v);
        std::memcpy(p, &v, 8);
        break;
      }
    }
  }
}

}  // namespace

int64_t idx_element_size(IdxType type) {
  switch (type) {
    case IdxType::U8:
    case IdxType::I8:
      return 1;
    case IdxType::I16:
      return 2;
    case IdxType::I32:
    case IdxType::F32:
      return 4;
    case IdxType::F64:
      return 8;
  }
  EMBER_INTERNAL_ASSERT(false, "unknown IdxType ", static_cast<int>(type));
}

const char* idx_type_name(IdxType type) {
  switch (type) {
    case IdxType::U8: return "u8";
    case IdxType::I8: return "i8";
    case IdxType::I16: return "i16";
    case IdxType::I32: return "i32";
    case IdxType::F32: return "f32";
    case IdxType::F64: return "f64";
  }
  return "unknown";
}

IdxArray read_idx(const std::string& path) {
  IdxSource src(path);

  // Magic: 00 00, type byte, number of dimensions.
  uint8_t magic[kMagicBytes] = {0, 0, 0, 0};
  const size_t got_magic = src.read(magic, kMagicBytes);
  if (got_magic < kMagicBytes) {
    fail(path, detail::str_cat("too short for an IDX file: expected at least the ",
                               kMagicBytes, "-byte magic number, found ", got_magic,
                               got_magic == 1 ? " byte" : " bytes", src.stream_note()));
  }
  if (magic[0] != 0 || magic[1] != 0) {
    const bool gzip_inside = magic[0] == 0x1F && magic[1] == 0x8B;
    fail(path, detail::str_cat("not an IDX file: bytes 0-1", src.stream_note(), " are ",
                               hex_byte(magic[0]), " ", hex_byte(magic[1]),
                               ", expected 0x00 0x00",
                               gzip_inside ? " (the data is gzip-compressed twice: "
                                             "decompress it once with gunzip)"
                                           : ""));
  }
  if (!known_type(magic[2])) {
    fail(path, detail::str_cat("unknown element type ", hex_byte(magic[2]), " at offset 2",
                               src.stream_note(), ", expected one of 0x08 (u8), 0x09 (i8), ",
                               "0x0B (i16), 0x0C (i32), 0x0D (f32), 0x0E (f64)"));
  }
  const auto type = static_cast<IdxType>(magic[2]);
  const int ndims = magic[3];
  if (ndims == 0 || ndims > kMaxDims) {
    fail(path, detail::str_cat("number of dimensions at offset 3", src.stream_note(), " is ",
                               ndims, ", expected 1 to ", kMaxDims));
  }

  // One big-endian u32 per dimension.
  const size_t header_bytes = kMagicBytes + 4 * static_cast<size_t>(ndims);
  uint8_t dim_bytes[4 * kMaxDims];
  const size_t got_dims = src.read(dim_bytes, 4 * static_cast<size_t>(ndims));
  if (got_dims < 4 * static_cast<size_t>(ndims)) {
    fail(path, detail::str_cat("truncated header: expected ", header_bytes, " bytes (",
                               kMagicBytes, "-byte magic and ", ndims,
                               ndims == 1 ? " dimension" : " dimensions", "), found ",
                               kMagicBytes + got_dims, src.stream_note()));
  }
  IdxArray out;
  out.type = type;
  out.dims.resize(ndims);
  const int64_t elem = idx_element_size(type);
  uint64_t bytes = static_cast<uint64_t>(elem);
  bool overflow = false;
  for (int i = 0; i < ndims; ++i) {
    const uint8_t* d = dim_bytes + 4 * i;
    const uint32_t v = (uint32_t{d[0]} << 24) | (uint32_t{d[1]} << 16) |
                       (uint32_t{d[2]} << 8) | uint32_t{d[3]};
    out.dims[i] = v;
    overflow = overflow || __builtin_mul_overflow(bytes, uint64_t{v}, &bytes);
  }
  // The byte count must also fit the signed offsets and size_t used everywhere else.
  if (overflow || bytes > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) ||
      bytes > std::numeric_limits<size_t>::max()) {
    fail(path, detail::str_cat("dimensions ", dims_str(out.dims), " of ", idx_type_name(type),
                               " (", elem, " bytes each) overflow a 64-bit byte count"));
  }

  const auto truncated = [&](uint64_t found) {
    fail(path, detail::str_cat("truncated: expected ", bytes, " bytes of data after the ",
                               header_bytes, "-byte header (", idx_type_name(type), " ",
                               dims_str(out.dims), "), found ", found, src.stream_note()));
  };
  const auto trailing = [&](uint64_t extra) {
    fail(path, detail::str_cat("trailing data: expected the file to end at offset ",
                               header_bytes + bytes, src.stream_note(), " (",
                               header_bytes, "-byte header and ", bytes,
                               " bytes of data for ", idx_type_name(type), " ",
                               dims_str(out.dims), "), found ", extra, " more bytes"));
  };

  if (!src.gzip()) {
    // A plain file's size is known: compare before allocating anything.
    const uint64_t size = static_cast<uint64_t>(std::max<int64_t>(src.file_size(), 0));
    const uint64_t present = size > header_bytes ? size - header_bytes : 0;
    if (present < bytes) truncated(present);
    if (present > bytes) trailing(present - bytes);
  }

  // Grow as data actually arrives: the header's claim alone never sizes the buffer.
  size_t filled = 0;
  while (filled < bytes) {
    const size_t target = std::min<uint64_t>(bytes, std::max(kChunk, 2 * filled));
    out.data.resize(target);
    const size_t want = target - filled;
    const size_t got = src.read(out.data.data() + filled, want);
    filled += got;
    if (got < want) truncated(filled);
  }
  // A plain file can change size after the check above; gzip is only known at its end.
  // Reading to the end also makes zlib verify the gzip trailer (CRC and length).
  const uint64_t extra = src.drain();
  if (extra > 0) trailing(extra);

  swap_to_native(out.data, elem);
  return out;
}

std::string find_idx_file(const std::string& dir, const std::string& base) {
  namespace fs = std::filesystem;
  const fs::path plain = fs::path(dir) / base;
  const fs::path gz = fs::path(dir) / (base + ".gz");
  std::error_code ec;
  if (fs::is_regular_file(plain, ec)) return plain.string();
  if (fs::is_regular_file(gz, ec)) return gz.string();
  throw IOError(detail::str_cat("find_idx_file: no IDX file '", base, "' in '", dir,
                                "': tried ", plain.string(), " and ", gz.string()));
}

IdxDataset read_idx_pair(const std::string& images_path, const std::string& labels_path,
                         int64_t num_classes) {
  EMBER_CHECK_T(ValueError, num_classes > 0, "read_idx_pair: num_classes must be positive, got ",
                num_classes);
  IdxDataset ds;
  ds.images = read_idx(images_path);
  ds.labels = read_idx(labels_path);
  const IdxArray& im = ds.images;
  const IdxArray& lb = ds.labels;
  if (im.type != IdxType::U8 || im.dims.size() != 3) {
    throw IOError(detail::str_cat("read_idx_pair: ", images_path,
                                  ": expected u8 images of rank 3 [N, rows, cols] (magic "
                                  "0x00000803), found ",
                                  idx_type_name(im.type), " ", dims_str(im.dims)));
  }
  if (lb.type != IdxType::U8 || lb.dims.size() != 1) {
    throw IOError(detail::str_cat("read_idx_pair: ", labels_path,
                                  ": expected u8 labels of rank 1 [N] (magic 0x00000801), "
                                  "found ",
                                  idx_type_name(lb.type), " ", dims_str(lb.dims)));
  }
  if (im.dims[0] != lb.dims[0]) {
    throw IOError(detail::str_cat("read_idx_pair: image and label counts differ: ",
                                  images_path, " has ", im.dims[0], " images, ", labels_path,
                                  " has ", lb.dims[0], " labels"));
  }
  constexpr size_t kLabelHeaderBytes = 8;
  constexpr size_t kShown = 5;
  std::vector<size_t> bad;
  for (size_t i = 0; i < lb.data.size(); ++i) {
    if (lb.data[i] >= num_classes) bad.push_back(i);
  }
  if (!bad.empty()) {
    std::string list;
    for (size_t k = 0; k < bad.size() && k < kShown; ++k) {
      list += detail::str_cat(k ? ", " : "", "label ", int{lb.data[bad[k]]}, " of item ", bad[k],
                              " (offset ", kLabelHeaderBytes + bad[k], ")");
    }
    if (bad.size() > kShown) list += detail::str_cat(", ... (the first ", kShown, " shown)");
    throw IOError(detail::str_cat("read_idx_pair: ", labels_path, ": ", bad.size(), " of ",
                                  lb.data.size(), " labels are out of range (expected 0 to ",
                                  num_classes - 1, "): ", list));
  }
  return ds;
}

}  // namespace ember::data
