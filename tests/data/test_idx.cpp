// IDX reader: round trips of every element type, raw and gzip input, and one test per
// malformed-file check, each of which must name the file and say what was expected.
#include "ember/python_free_api/data/idx.h"

#include <gtest/gtest.h>
#include <zlib.h>

#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <initializer_list>
#include <string>
#include <vector>

#include "ember/core/base/error.h"

namespace {

namespace fs = std::filesystem;
using ember::IOError;
using ember::data::find_idx_file;
using ember::data::IdxArray;
using ember::data::IdxType;
using ember::data::read_idx;
using ember::data::read_idx_pair;
using Bytes = std::vector<uint8_t>;

// Header for `type` and `dims`, big-endian as the format requires.
Bytes idx_header(uint8_t type, const std::vector<uint32_t>& dims) {
  Bytes b = {0, 0, type, static_cast<uint8_t>(dims.size())};
  for (uint32_t d : dims) {
    for (int shift = 24; shift >= 0; shift -= 8) b.push_back(static_cast<uint8_t>(d >> shift));
  }
  return b;
}

Bytes idx_file(uint8_t type, const std::vector<uint32_t>& dims, const Bytes& payload) {
  Bytes b = idx_header(type, dims);
  b.insert(b.end(), payload.begin(), payload.end());
  return b;
}

// Big-endian bytes of each value's object representation.
template <typename T>
Bytes big_endian(const std::vector<T>& values) {
  Bytes b;
  for (const T& v : values) {
    uint8_t raw[sizeof(T)];
    std::memcpy(raw, &v, sizeof(T));
    for (size_t i = 0; i < sizeof(T); ++i) b.push_back(raw[sizeof(T) - 1 - i]);
  }
  return b;
}

template <typename T>
std::vector<T> as_native(const IdxArray& a) {
  std::vector<T> v(a.data.size() / sizeof(T));
  std::memcpy(v.data(), a.data.data(), v.size() * sizeof(T));
  return v;
}

Bytes gzip_bytes(const Bytes& raw, const std::string& scratch_path) {
  gzFile gz = gzopen(scratch_path.c_str(), "wb");
  EXPECT_NE(gz, nullptr);
  if (!raw.empty()) {
    EXPECT_EQ(gzwrite(gz, raw.data(), static_cast<unsigned>(raw.size())),
              static_cast<int>(raw.size()));
  }
  EXPECT_EQ(gzclose(gz), Z_OK);
  std::ifstream in(scratch_path, std::ios::binary);
  Bytes out((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  fs::remove(scratch_path);
  return out;
}

class Idx : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/ember_idx_test_XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr) << std::strerror(errno);
    dir_ = tmpl;
  }
  void TearDown() override {
    std::error_code ec;
    if (!dir_.empty()) fs::remove_all(dir_, ec);
  }

  std::string path(const std::string& name) const { return dir_ + "/" + name; }

  std::string write(const std::string& name, const Bytes& bytes) const {
    const std::string p = path(name);
    std::ofstream out(p, std::ios::binary);
    out.write(reinterpret_cast<const char*>(bytes.data()),
              static_cast<std::streamsize>(bytes.size()));
    return p;
  }

  // Written through zlib's own gzip writer.
  std::string write_gz(const std::string& name, const Bytes& raw) const {
    return write(name, gzip_bytes(raw, path(name + ".scratch")));
  }

  // read_idx(p) must throw IOError whose message holds the path and every key phrase.
  static void expect_io_error(const std::string& p, std::initializer_list<const char*> keys,
                              const std::function<void()>& fn = {}) {
    try {
      if (fn) {
        fn();
      } else {
        read_idx(p);
      }
      ADD_FAILURE() << "expected ember::IOError for " << p;
    } catch (const IOError& e) {
      const std::string msg = e.what();
      EXPECT_NE(msg.find(p), std::string::npos) << "message does not name the file: " << msg;
      for (const char* key : keys) {
        EXPECT_NE(msg.find(key), std::string::npos) << "missing '" << key << "' in: " << msg;
      }
    }
  }

  std::string dir_;
};

TEST_F(Idx, RoundTripsU8Rank3) {
  Bytes pixels(2 * 3 * 4);
  for (size_t i = 0; i < pixels.size(); ++i) pixels[i] = static_cast<uint8_t>(i * 11);
  const IdxArray a = read_idx(write("images", idx_file(0x08, {2, 3, 4}, pixels)));
  EXPECT_EQ(a.type, IdxType::U8);
  EXPECT_EQ(a.dims, (std::vector<int64_t>{2, 3, 4}));
  EXPECT_EQ(a.data, pixels);
}

TEST_F(Idx, RoundTripsBigEndianI32Rank1) {
  const std::vector<int32_t> values = {1, -2, 0x01020304, INT32_MIN, INT32_MAX};
  const IdxArray a = read_idx(write("ints", idx_file(0x0C, {5}, big_endian(values))));
  EXPECT_EQ(a.type, IdxType::I32);
  EXPECT_EQ(a.dims, (std::vector<int64_t>{5}));
  EXPECT_EQ(as_native<int32_t>(a), values);
}

TEST_F(Idx, RoundTripsBigEndianF32Rank1) {
  const std::vector<float> values = {1.5f, -0.0f, 3.25e10f, -1e-30f};
  const IdxArray a = read_idx(write("floats", idx_file(0x0D, {4}, big_endian(values))));
  EXPECT_EQ(a.type, IdxType::F32);
  const std::vector<float> got = as_native<float>(a);
  ASSERT_EQ(got.size(), values.size());
  for (size_t i = 0; i < got.size(); ++i) {
    EXPECT_EQ(std::memcmp(&got[i], &values[i], sizeof(float)), 0) << "element " << i;
  }
}

TEST_F(Idx, RoundTripsI8I16AndF64) {
  const std::vector<int16_t> shorts = {-300, 7, 0x1234};
  const IdxArray s = read_idx(write("shorts", idx_file(0x0B, {3}, big_endian(shorts))));
  EXPECT_EQ(s.type, IdxType::I16);
  EXPECT_EQ(as_native<int16_t>(s), shorts);

  const std::vector<double> doubles = {3.141592653589793, -2.5e300};
  const IdxArray d = read_idx(write("doubles", idx_file(0x0E, {1, 2}, big_endian(doubles))));
  EXPECT_EQ(d.type, IdxType::F64);
  EXPECT_EQ(d.dims, (std::vector<int64_t>{1, 2}));
  EXPECT_EQ(as_native<double>(d), doubles);

  const IdxArray c = read_idx(write("bytes", idx_file(0x09, {2}, {0xFF, 0x01})));
  EXPECT_EQ(c.type, IdxType::I8);
  EXPECT_EQ(as_native<int8_t>(c), (std::vector<int8_t>{-1, 1}));
}

TEST_F(Idx, EmptyDimensionGivesEmptyArray) {
  const IdxArray a = read_idx(write("empty", idx_file(0x08, {0, 28, 28}, {})));
  EXPECT_EQ(a.dims, (std::vector<int64_t>{0, 28, 28}));
  EXPECT_TRUE(a.data.empty());
}

TEST_F(Idx, GzipIsDetectedByContentNotName) {
  const std::vector<int32_t> values = {5, -6, 70000};
  const Bytes raw = idx_file(0x0C, {3}, big_endian(values));
  for (const char* name : {"labels.gz", "labels-no-extension", "labels.idx"}) {
    const IdxArray a = read_idx(write_gz(name, raw));
    EXPECT_EQ(a.dims, (std::vector<int64_t>{3})) << name;
    EXPECT_EQ(as_native<int32_t>(a), values) << name;
  }
  // A plain file that happens to be called .gz is read as plain.
  EXPECT_EQ(as_native<int32_t>(read_idx(write("plain.gz", raw))), values);
}

TEST_F(Idx, LargeGzipFileRoundTrips) {
  // More than one read chunk, so the buffer grows several times.
  Bytes pixels(3 * 1000 * 1000);
  for (size_t i = 0; i < pixels.size(); ++i) pixels[i] = static_cast<uint8_t>(i * 7 + i / 13);
  const IdxArray a = read_idx(write_gz("big.gz", idx_file(0x08, {3, 1000, 1000}, pixels)));
  EXPECT_EQ(a.data, pixels);
}

TEST_F(Idx, MissingFileIsAnError) {
  expect_io_error(path("does-not-exist"), {"cannot open", "No such file"});
}

TEST_F(Idx, DirectoryIsAnError) {
  fs::create_directory(path("subdir"));
  expect_io_error(path("subdir"), {"is a directory"});
}

TEST_F(Idx, ShorterThanMagicIsAnError) {
  expect_io_error(write("short", {0, 0, 8}), {"too short", "4-byte magic", "found 3 bytes"});
  expect_io_error(write("empty", {}), {"too short", "found 0 bytes"});
}

TEST_F(Idx, NonZeroLeadingBytesAreNotIdx) {
  expect_io_error(write("text", {'h', 'e', 'l', 'l', 'o', '\n'}),
                  {"not an IDX file", "0x68 0x65", "expected 0x00 0x00"});
}

TEST_F(Idx, UnknownTypeByteIsAnError) {
  expect_io_error(write("type", idx_file(0x07, {1}, {0})),
                  {"unknown element type 0x07", "offset 2", "0x08 (u8)"});
}

TEST_F(Idx, ZeroOrTooManyDimensionsAreErrors) {
  expect_io_error(write("rank0", {0, 0, 8, 0}), {"dimensions", "offset 3", "is 0",
                                                 "expected 1 to 8"});
  expect_io_error(write("rank9", idx_file(0x08, std::vector<uint32_t>(9, 1), {1})),
                  {"is 9", "expected 1 to 8"});
}

TEST_F(Idx, TruncatedHeaderIsAnError) {
  Bytes b = idx_header(0x08, {2, 3, 4});
  b.resize(12);
  expect_io_error(write("header", b),
                  {"truncated header", "expected 16 bytes", "3 dimensions", "found 12"});
}

TEST_F(Idx, SizeOverflowIsAnError) {
  expect_io_error(write("huge", idx_header(0x0E, {0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF})),
                  {"overflow", "[4294967295, 4294967295, 4294967295]", "f64"});
}

TEST_F(Idx, HeaderClaimingMoreThanTheFileIsTruncatedNotAllocated) {
  // 4 GiB claimed, 10 bytes present: an error, without trying to allocate 4 GiB.
  expect_io_error(write("claim", idx_file(0x08, {0xFFFFFFFF}, Bytes(10, 1))),
                  {"truncated: expected 4294967295 bytes of data after the 8-byte header",
                   "found 10"});
}

TEST_F(Idx, TruncatedDataIsAnError) {
  const Bytes b = idx_file(0x08, {2, 3, 4}, Bytes(20, 5));
  expect_io_error(write("data", b),
                  {"truncated: expected 24 bytes of data after the 16-byte header", "found 20"});
  // The same inside a valid gzip stream: the IDX content, not the gzip, is short.
  expect_io_error(write_gz("data.gz", b),
                  {"truncated: expected 24 bytes of data after the 16-byte header", "found 20",
                   "decompressed"});
}

TEST_F(Idx, TrailingBytesAreAnError) {
  const Bytes b = idx_file(0x08, {2, 2}, Bytes(4 + 3, 9));
  expect_io_error(write("tail", b), {"trailing data", "offset 16", "found 3 more bytes"});
  expect_io_error(write_gz("tail.gz", b), {"trailing data", "found 3 more bytes"});
}

TEST_F(Idx, TruncatedGzipIsAnErrorNotGarbage) {
  Bytes pixels(5000);
  for (size_t i = 0; i < pixels.size(); ++i) pixels[i] = static_cast<uint8_t>((i * 2654435761u) >> 13);
  Bytes gz = gzip_bytes(idx_file(0x08, {5, 1000}, pixels), path("scratch"));
  // Cut in the middle of the deflate data, and just before the 8-byte CRC/size trailer.
  for (size_t keep : {gz.size() / 2, gz.size() - 4}) {
    const Bytes cut(gz.begin(), gz.begin() + static_cast<std::ptrdiff_t>(keep));
    expect_io_error(write("cut-" + std::to_string(keep), cut),
                    {"corrupt or truncated gzip data", "zlib"});
  }
}

TEST_F(Idx, CorruptGzipIsAnError) {
  Bytes pixels(5000);
  for (size_t i = 0; i < pixels.size(); ++i) pixels[i] = static_cast<uint8_t>((i * 40503u) >> 7);
  Bytes gz = gzip_bytes(idx_file(0x08, {5, 1000}, pixels), path("scratch"));
  Bytes bad_crc = gz;
  bad_crc[bad_crc.size() - 6] ^= 0xFF;  // inside the CRC-32 of the trailer
  expect_io_error(write("bad-crc.gz", bad_crc), {"corrupt or truncated gzip data", "zlib"});
  Bytes bad_method = gz;
  bad_method[2] = 0x07;  // compression method must be 8 (deflate)
  expect_io_error(write("bad-method.gz", bad_method), {"corrupt or truncated gzip data", "zlib"});
}

TEST_F(Idx, GzipCompressedTwiceGivesAHint) {
  const Bytes once = gzip_bytes(idx_file(0x08, {1}, {3}), path("scratch"));
  expect_io_error(write_gz("twice.gz", once), {"not an IDX file", "compressed twice"});
}

TEST_F(Idx, FindPrefersPlainFileThenGz) {
  const Bytes b = idx_file(0x08, {1}, {1});
  write_gz("train-labels-idx1-ubyte.gz", b);
  EXPECT_EQ(find_idx_file(dir_, "train-labels-idx1-ubyte"), path("train-labels-idx1-ubyte.gz"));
  write("train-labels-idx1-ubyte", b);
  EXPECT_EQ(find_idx_file(dir_, "train-labels-idx1-ubyte"), path("train-labels-idx1-ubyte"));
  try {
    find_idx_file(dir_, "t10k-labels-idx1-ubyte");
    ADD_FAILURE() << "expected ember::IOError";
  } catch (const IOError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find(path("t10k-labels-idx1-ubyte") + " and"), std::string::npos) << msg;
    EXPECT_NE(msg.find(path("t10k-labels-idx1-ubyte.gz")), std::string::npos) << msg;
  }
}

TEST_F(Idx, PairReadsImagesAndLabels) {
  const std::string images = write_gz("images.gz", idx_file(0x08, {3, 2, 2}, Bytes(12, 200)));
  const std::string labels = write("labels", idx_file(0x08, {3}, {0, 9, 4}));
  const auto ds = read_idx_pair(images, labels, 10);
  EXPECT_EQ(ds.images.dims, (std::vector<int64_t>{3, 2, 2}));
  EXPECT_EQ(ds.labels.data, (Bytes{0, 9, 4}));
}

TEST_F(Idx, PairLabelOutOfRangeIsAnError) {
  const std::string images = write("images", idx_file(0x08, {3, 2, 2}, Bytes(12, 0)));
  const std::string labels = write("labels", idx_file(0x08, {3}, {1, 2, 10}));
  expect_io_error(labels, {"label 10", "item 2", "offset 10", "expected 0 to 9"},
                  [&] { read_idx_pair(images, labels, 10); });
}

TEST_F(Idx, PairCountMismatchNamesBothFiles) {
  const std::string images = write("images", idx_file(0x08, {3, 2, 2}, Bytes(12, 0)));
  const std::string labels = write("labels", idx_file(0x08, {2}, {1, 2}));
  expect_io_error(images, {"has 3 images", labels.c_str(), "has 2 labels"},
                  [&] { read_idx_pair(images, labels, 10); });
}

TEST_F(Idx, PairChecksTypeAndRank) {
  const std::string images = write("images", idx_file(0x08, {3, 4}, Bytes(12, 0)));
  const std::string labels = write("labels", idx_file(0x08, {3}, {1, 2, 3}));
  expect_io_error(images, {"expected u8 images of rank 3", "found u8 [3, 4]"},
                  [&] { read_idx_pair(images, labels, 10); });
  const std::string images3 = write("images3", idx_file(0x08, {3, 2, 2}, Bytes(12, 0)));
  const std::string labels32 =
      write("labels32", idx_file(0x0C, {3}, big_endian(std::vector<int32_t>{1, 2, 3})));
  expect_io_error(labels32, {"expected u8 labels of rank 1", "found i32 [3]"},
                  [&] { read_idx_pair(images3, labels32, 10); });
  EXPECT_THROW(read_idx_pair(images3, labels, 0), ember::Error);
}

TEST(IdxFashionMnist, TrainLabelsAreSixtyThousandBelowTen) {
  const std::string p = "/usr/share/datasets/fashion-mnist/train-labels-idx1-ubyte.gz";
  if (!fs::exists(p)) GTEST_SKIP() << p << " is not present on this machine";
  const IdxArray a = read_idx(p);
  EXPECT_EQ(a.type, IdxType::U8);
  ASSERT_EQ(a.dims, (std::vector<int64_t>{60000}));
  ASSERT_EQ(a.data.size(), 60000u);
  for (size_t i = 0; i < a.data.size(); ++i) ASSERT_LT(a.data[i], 10) << "item " << i;
}

}  // namespace
