// Reader for IDX files (the MNIST / Fashion-MNIST format), raw or gzip-compressed,
// validated against the header before any data is trusted. Knows nothing of Tensor.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "ember/core/base/export.h"

namespace ember::data {

// The third byte of the magic number.
enum class IdxType : uint8_t { U8 = 0x08, I8 = 0x09, I16 = 0x0B, I32 = 0x0C, F32 = 0x0D, F64 = 0x0E };

struct IdxArray {
  IdxType type = IdxType::U8;
  std::vector<int64_t> dims;
  std::vector<uint8_t> data;  // native-endian element bytes, C order
};

// Bytes per element (1, 2, 4 or 8) and a short name ("u8", "i32", ...).
EMBER_API int64_t idx_element_size(IdxType type);
EMBER_API const char* idx_type_name(IdxType type);

// Reads a raw or gzip-compressed IDX file (gzip is recognised by its 1F 8B magic, not by
// the file name). Multi-byte elements are converted from big-endian to native order.
// Throws ember::IOError naming the file, the byte offset and expected vs found for a
// missing file, a bad magic, a truncated header or data, trailing bytes, or a corrupt
// gzip stream.
EMBER_API IdxArray read_idx(const std::string& path);

// dir/base if it exists, else dir/base.gz; throws ember::IOError listing both otherwise.
EMBER_API std::string find_idx_file(const std::string& dir, const std::string& base);

struct IdxDataset {
  IdxArray images;  // u8 [N, rows, cols]
  IdxArray labels;  // u8 [N], every value < num_classes
};

// Reads an image file and its label file and checks that they belong together: u8
// images of rank 3, u8 labels of rank 1, the same count, every label < num_classes.
EMBER_API IdxDataset read_idx_pair(const std::string& images_path,
                                   const std::string& labels_path, int64_t num_classes);

}  // namespace ember::data
