// safetensors checkpoints: round trips of every supported dtype, the exact bytes of a tiny
// file, one test per malformed-file check (each an IOError naming the file and the
// problem), hostile headers (nesting, memory and message size stay bounded), the atomic
// write, and module / optimizer / training-checkpoint round trips.
#include "ember/python_free_api/io/safetensors.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <initializer_list>
#include <iterator>
#include <limits>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "ember/core/autograd.h"
#include "ember/core/base/error.h"
#include "ember/core/ops.h"
#include "ember/core/random.h"
#include "ember/core/tensor.h"
#include "ember/layers/layers.h"
#include "ember/layers/module.h"
#include "ember/optim/optimizer.h"
#include "ember/optim/sgd.h"

namespace {

namespace fs = std::filesystem;
using namespace ember;
using Bytes = std::vector<uint8_t>;

// --- files and bytes ------------------------------------------------------------------------

Bytes read_bytes(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return Bytes(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

void write_bytes(const fs::path& p, const Bytes& b) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
}

Bytes le64(uint64_t v) {
  Bytes b;
  for (int i = 0; i < 8; ++i) b.push_back(static_cast<uint8_t>(v >> (8 * i)));
  return b;
}

// A file from a header given as text: its length, the header (padded with spaces to a
// multiple of 8 unless `pad` is false), then `data`.
Bytes st_file(std::string header, const Bytes& data = {}, bool pad = true) {
  if (pad) header.append((8 - header.size() % 8) % 8, ' ');
  Bytes b = le64(header.size());
  b.insert(b.end(), header.begin(), header.end());
  b.insert(b.end(), data.begin(), data.end());
  return b;
}

Bytes zeros_bytes(size_t n) { return Bytes(n, 0); }

template <typename T>
std::vector<T> values_of(const Tensor& t) {
  return t.contiguous().to_vector<T>();
}

// Bitwise comparison, so NaN, -0.0 and infinities must survive exactly.
template <typename T>
bool same_bits(const std::vector<T>& a, const std::vector<T>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0;
}

::testing::AssertionResult mentions(const std::string& message, std::initializer_list<std::string> parts) {
  for (const auto& p : parts) {
    if (message.find(p) == std::string::npos) {
      return ::testing::AssertionFailure() << "message \"" << message << "\" does not mention \"" << p << "\"";
    }
  }
  return ::testing::AssertionSuccess();
}

// The message of the IOError that `fn` throws, or a note saying what happened instead.
std::string io_error_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const IOError& e) {
    return e.what();
  } catch (const std::exception& e) {
    return std::string("<not an IOError: ") + e.what() + ">";
  }
  return "<no error>";
}

// Every test gets its own directory, removed afterwards.
class TempDirTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = fs::temp_directory_path() /
           ("ember_io_" + std::to_string(::getpid()) + "_" + info->test_suite_name() + "_" + info->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override {
    std::error_code ec;
    for (auto& e : fs::recursive_directory_iterator(dir_, ec)) {
      if (e.is_directory()) fs::permissions(e.path(), fs::perms::owner_all, fs::perm_options::add, ec);
    }
    fs::permissions(dir_, fs::perms::owner_all, fs::perm_options::add, ec);
    fs::remove_all(dir_, ec);
  }
  std::string path(const std::string& name) const { return (dir_ / name).string(); }

  // Writes `bytes` as a file and returns the message of the IOError loading it gives.
  std::string load_error(const Bytes& bytes) {
    bad_ = path("bad.safetensors");
    write_bytes(bad_, bytes);
    return io_error_of([&] { io::load_safetensors(bad_); });
  }

  fs::path dir_;
  std::string bad_;
};

class Safetensors : public TempDirTest {};
class SafetensorsBadFile : public TempDirTest {};
class SafetensorsAtomicWrite : public TempDirTest {};
class SafetensorsCheckpoint : public TempDirTest {};

std::vector<std::string> dir_entries(const fs::path& dir) {
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(dir)) names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

// Runs `fn` in a child process and returns the message of the IOError it threw. With
// `unprivileged`, a root child first becomes "nobody" so that permission bits apply.
std::string io_error_in_child(const std::string& report, bool unprivileged, const std::function<void()>& fn) {
  const pid_t pid = ::fork();
  if (pid == 0) {
    std::ofstream out(report);  // opened before dropping privileges
    if (unprivileged && ::geteuid() == 0 && (::setgid(65534) != 0 || ::setuid(65534) != 0)) ::_exit(3);
    out << io_error_of(fn);
    out.close();
    ::_exit(out ? 0 : 4);
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) return "<child failed>";
  std::ifstream in(report);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

}  // namespace

// =========================================================================================
// Round trips
// =========================================================================================

TEST_F(Safetensors, RoundTripsEverySupportedDType) {
  const std::vector<float> f32 = {1.5f, -0.0f, std::numeric_limits<float>::infinity(),
                                  std::numeric_limits<float>::quiet_NaN(), 3e-39f, -7.25f};
  const std::vector<double> f64 = {3.141592653589793, -1e300, 0.0, std::numeric_limits<double>::denorm_min()};
  const std::vector<int32_t> i32 = {std::numeric_limits<int32_t>::min(), -1, 0, 7, std::numeric_limits<int32_t>::max(), 42};
  const std::vector<int64_t> i64 = {std::numeric_limits<int64_t>::min(), -1, 0, std::numeric_limits<int64_t>::max()};
  const std::vector<uint8_t> u8 = {0, 1, 127, 128, 255, 9};
  const std::vector<uint8_t> flags = {1, 0, 0, 1, 1};

  nn::StateDict sd;
  sd.insert("f32", Tensor::from_vector(f32, {2, 3}));
  sd.insert("f64", Tensor::from_vector(f64, {4}));
  sd.insert("i32", Tensor::from_vector(i32, {3, 2}));
  sd.insert("i64", Tensor::from_vector(i64, {2, 1, 2}));
  sd.insert("u8", Tensor::from_vector(u8, {6}));
  sd.insert("bool", Tensor::from_vector(flags, {5}).to(kBool));
  const std::string file = path("all.safetensors");
  io::save_safetensors(file, sd);

  const io::SafetensorsFile f = io::load_safetensors(file);
  EXPECT_EQ(f.tensors.keys(), (std::vector<std::string>{"bool", "f32", "f64", "i32", "i64", "u8"}));
  EXPECT_TRUE(f.metadata.empty());
  EXPECT_EQ(f.tensors.at("f32").dtype(), kFloat32);
  EXPECT_EQ(f.tensors.at("f32").shape(), (Shape{2, 3}));
  EXPECT_TRUE(same_bits(values_of<float>(f.tensors.at("f32")), f32));
  EXPECT_EQ(f.tensors.at("f64").dtype(), kFloat64);
  EXPECT_TRUE(same_bits(values_of<double>(f.tensors.at("f64")), f64));
  EXPECT_EQ(f.tensors.at("i32").dtype(), kInt32);
  EXPECT_EQ(f.tensors.at("i32").shape(), (Shape{3, 2}));
  EXPECT_EQ(values_of<int32_t>(f.tensors.at("i32")), i32);
  EXPECT_EQ(f.tensors.at("i64").dtype(), kInt64);
  EXPECT_EQ(f.tensors.at("i64").shape(), (Shape{2, 1, 2}));
  EXPECT_EQ(values_of<int64_t>(f.tensors.at("i64")), i64);
  EXPECT_EQ(f.tensors.at("u8").dtype(), kUInt8);
  EXPECT_EQ(values_of<uint8_t>(f.tensors.at("u8")), u8);
  EXPECT_EQ(f.tensors.at("bool").dtype(), kBool);
  EXPECT_EQ(values_of<uint8_t>(f.tensors.at("bool").to(kUInt8)), flags);
  for (const auto& [name, t] : f.tensors) EXPECT_TRUE(t.device().is_cpu()) << name;
}

// Every one of the 65,536 bit patterns of each 16-bit float (NaN payloads, subnormals,
// -0 and infinities included) comes back bit for bit, with its safetensors dtype name.
TEST_F(Safetensors, RoundTrips16BitFloatsBitForBit) {
  std::vector<Half> halves(65536);
  std::vector<BFloat16> bfloats(65536);
  for (uint32_t b = 0; b < 65536; ++b) {
    halves[b] = Half::from_bits(static_cast<uint16_t>(b));
    bfloats[b] = BFloat16::from_bits(static_cast<uint16_t>(65535 - b));
  }
  nn::StateDict sd;
  sd.insert("h", Tensor::from_vector(halves, {256, 256}));
  sd.insert("bf", Tensor::from_vector(bfloats, {65536}));
  sd.insert("bf_scalar", scalar_tensor(-1.5, {.dtype = kBFloat16}));
  const std::string file = path("half.safetensors");
  io::save_safetensors(file, sd);

  const Bytes bytes = read_bytes(file);
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | bytes[i];
  const std::string head(bytes.begin() + 8, bytes.begin() + 8 + static_cast<int64_t>(n));
  EXPECT_TRUE(mentions(head, {"\"bf\":{\"dtype\":\"BF16\",\"shape\":[65536],\"data_offsets\":[0,131072]}",
                              "\"h\":{\"dtype\":\"F16\",\"shape\":[256,256]"}));
  const io::SafetensorsFile f = io::load_safetensors(file);
  EXPECT_EQ(f.tensors.at("h").dtype(), kFloat16);
  EXPECT_EQ(f.tensors.at("h").shape(), (Shape{256, 256}));
  EXPECT_TRUE(same_bits(values_of<Half>(f.tensors.at("h")), halves));
  EXPECT_EQ(f.tensors.at("bf").dtype(), kBFloat16);
  EXPECT_TRUE(same_bits(values_of<BFloat16>(f.tensors.at("bf")), bfloats));
  EXPECT_EQ(f.tensors.at("bf_scalar").dim(), 0);
  EXPECT_EQ(f.tensors.at("bf_scalar").item<BFloat16>().bits(), 0xBFC0);
}

// A file written by another writer: F16 1.0, -2.0 and BF16 3.140625 as little-endian bytes.
TEST_F(Safetensors, Loads16BitFloatsWrittenElsewhere) {
  const Bytes f = st_file(
      "{\"a\":{\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[0,4]},"
      "\"b\":{\"dtype\":\"BF16\",\"shape\":[1],\"data_offsets\":[4,6]}}",
      {0x00, 0x3C, 0x00, 0xC0, 0x49, 0x40});
  write_bytes(path("x.safetensors"), f);
  const io::SafetensorsFile loaded = io::load_safetensors(path("x.safetensors"));
  EXPECT_EQ(values_of<float>(loaded.tensors.at("a").to(kFloat32)), (std::vector<float>{1.0f, -2.0f}));
  EXPECT_EQ(loaded.tensors.at("b").item<double>(), 3.140625);
}

TEST_F(Safetensors, RoundTripsRankZeroAndEmptyTensors) {
  nn::StateDict sd;
  sd.insert("scalar", scalar_tensor(2.5, {.dtype = kFloat64}));
  sd.insert("empty", zeros({0}));
  sd.insert("empty3d", zeros({2, 0, 3}, {.dtype = kInt64}));
  sd.insert("one", Tensor::from_vector<int32_t>({-3}, {1}));
  const std::string file = path("edge.safetensors");
  io::save_safetensors(file, sd);

  const io::SafetensorsFile f = io::load_safetensors(file);
  const Tensor& s = f.tensors.at("scalar");
  EXPECT_EQ(s.dim(), 0);
  EXPECT_EQ(s.dtype(), kFloat64);
  EXPECT_EQ(s.item<double>(), 2.5);
  EXPECT_EQ(f.tensors.at("empty").shape(), (Shape{0}));
  EXPECT_EQ(f.tensors.at("empty").dtype(), kFloat32);
  EXPECT_EQ(f.tensors.at("empty3d").shape(), (Shape{2, 0, 3}));
  EXPECT_EQ(f.tensors.at("empty3d").numel(), 0);
  EXPECT_EQ(values_of<int32_t>(f.tensors.at("one")), (std::vector<int32_t>{-3}));
  // 8 bytes of f64 and 4 of i32: the empty tensors take no room.
  const Bytes bytes = read_bytes(file);
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | bytes[i];
  EXPECT_EQ(bytes.size(), 8 + n + 12);
}

TEST_F(Safetensors, SavesNonContiguousTensorsInCOrder) {
  const Tensor base = Tensor::from_vector<float>({0, 1, 2, 3, 4, 5}, {2, 3});
  nn::StateDict sd;
  sd.insert("transposed", base.t());                       // [3, 2]
  sd.insert("strided", base.slice(1, 0, 3, 2));            // [2, 2], every other column
  sd.insert("expanded", Tensor::from_vector<int64_t>({7, 8}, {2, 1}).expand({2, 3}));
  sd.insert("offset_view", base.select(0, 1));             // [3], starts at element 3
  ASSERT_FALSE(sd.at("transposed").is_contiguous());
  ASSERT_FALSE(sd.at("strided").is_contiguous());
  const std::string file = path("views.safetensors");
  io::save_safetensors(file, sd);

  const io::SafetensorsFile f = io::load_safetensors(file);
  EXPECT_EQ(f.tensors.at("transposed").shape(), (Shape{3, 2}));
  EXPECT_EQ(values_of<float>(f.tensors.at("transposed")), (std::vector<float>{0, 3, 1, 4, 2, 5}));
  EXPECT_EQ(values_of<float>(f.tensors.at("strided")), (std::vector<float>{0, 2, 3, 5}));
  EXPECT_EQ(values_of<int64_t>(f.tensors.at("expanded")), (std::vector<int64_t>{7, 7, 7, 8, 8, 8}));
  EXPECT_EQ(values_of<float>(f.tensors.at("offset_view")), (std::vector<float>{3, 4, 5}));
  // The source tensors are untouched.
  EXPECT_EQ(values_of<float>(base), (std::vector<float>{0, 1, 2, 3, 4, 5}));
}

TEST_F(Safetensors, MetadataAndUnicodeNamesRoundTrip) {
  nn::StateDict sd;
  sd.insert("caf\xC3\xA9.weight \"quoted\"", ones({2}));
  const std::map<std::string, std::string> meta = {
      {"epoch", "3"}, {"note", "line\nbreak, tab\t and \xE2\x82\xAC"}, {"empty", ""}};
  const std::string file = path("meta.safetensors");
  io::save_safetensors(file, sd, meta);
  const io::SafetensorsFile f = io::load_safetensors(file);
  EXPECT_EQ(f.metadata, meta);
  EXPECT_EQ(f.tensors.keys(), (std::vector<std::string>{"caf\xC3\xA9.weight \"quoted\""}));
}

TEST_F(Safetensors, WritesTheExactByteLayout) {
  nn::StateDict sd;
  sd.insert("b", Tensor::from_vector<float>({1.0f, 2.0f}, {2}));  // inserted first, written second
  sd.insert("a", Tensor::from_vector<uint8_t>({1, 2, 3}, {3}));
  const std::string file = path("tiny.safetensors");
  io::save_safetensors(file, sd, {{"k", "v"}});

  // 132 bytes of JSON, padded with 4 spaces to 136 = 0x88 so the data starts at byte 144.
  const std::string header =
      "{\"__metadata__\":{\"k\":\"v\"},"
      "\"a\":{\"dtype\":\"U8\",\"shape\":[3],\"data_offsets\":[0,3]},"
      "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[3,11]}}"
      "    ";
  Bytes expected = {0x88, 0, 0, 0, 0, 0, 0, 0};
  expected.insert(expected.end(), header.begin(), header.end());
  const Bytes data = {0x01, 0x02, 0x03,                            // a: u8 1, 2, 3
                      0x00, 0x00, 0x80, 0x3F, 0x00, 0x00, 0x00, 0x40};  // b: f32 1.0, 2.0 (LE)
  expected.insert(expected.end(), data.begin(), data.end());
  EXPECT_EQ(read_bytes(file), expected);
  EXPECT_EQ((8 + header.size()) % 8, 0u);
}

TEST_F(Safetensors, LayoutIsIndependentOfInsertionOrder) {
  nn::StateDict one, two;
  one.insert("x", ones({3}));
  one.insert("y", zeros({2}, {.dtype = kInt32}));
  two.insert("y", zeros({2}, {.dtype = kInt32}));
  two.insert("x", ones({3}));
  io::save_safetensors(path("one.safetensors"), one);
  io::save_safetensors(path("two.safetensors"), two);
  EXPECT_EQ(read_bytes(path("one.safetensors")), read_bytes(path("two.safetensors")));
}

TEST_F(Safetensors, LoadsFilesWrittenByOtherWritersWithUnpaddedHeaders) {
  // The reference writer pads too, but a loader must not insist on it.
  const Bytes f = st_file("{\"w\":{\"dtype\":\"I32\",\"shape\":[2],\"data_offsets\":[0,8]}}",
                          {5, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF}, /*pad=*/false);
  write_bytes(path("unpadded.safetensors"), f);
  const auto loaded = io::load_safetensors(path("unpadded.safetensors"));
  EXPECT_EQ(values_of<int32_t>(loaded.tensors.at("w")), (std::vector<int32_t>{5, -1}));
}

TEST_F(Safetensors, RefusesToSaveAReservedNameOrAnUndefinedTensor) {
  const std::string file = path("refused.safetensors");
  nn::StateDict reserved;
  reserved.insert("__metadata__", ones({1}));
  EXPECT_TRUE(mentions(io_error_of([&] { io::save_safetensors(file, reserved); }), {file, "__metadata__"}));
  nn::StateDict undefined;
  undefined.insert("w", Tensor());
  EXPECT_TRUE(mentions(io_error_of([&] { io::save_safetensors(file, undefined); }), {file, "'w' is undefined"}));
  nn::StateDict bad_name;
  bad_name.insert("w\xFF", ones({1}));
  EXPECT_TRUE(mentions(io_error_of([&] { io::save_safetensors(file, bad_name); }), {file, "not valid UTF-8"}));
  EXPECT_FALSE(fs::exists(file));
  EXPECT_TRUE(dir_entries(dir_).empty());
}

TEST_F(Safetensors, LoadsOntoCudaWhenAsked) {
  if (!cuda::is_available()) GTEST_SKIP() << "no CUDA device: " << cuda::unavailable_reason();
  nn::StateDict sd;
  sd.insert("w", Tensor::from_vector<float>({1, 2, 3}, {3}));
  sd.insert("g", Tensor::from_vector<float>({4, 5}, {2}).cuda());  // saved from the GPU
  io::save_safetensors(path("gpu.safetensors"), sd);
  const auto f = io::load_safetensors(path("gpu.safetensors"), Device::cuda(0));
  EXPECT_TRUE(f.tensors.at("w").is_cuda());
  EXPECT_EQ(values_of<float>(f.tensors.at("w")), (std::vector<float>{1, 2, 3}));
  EXPECT_EQ(values_of<float>(f.tensors.at("g")), (std::vector<float>{4, 5}));
}

// =========================================================================================
// Malformed files: each is an IOError naming the file and the problem, never a crash
// =========================================================================================

TEST_F(SafetensorsBadFile, ShorterThanTheHeaderLength) {
  EXPECT_TRUE(mentions(load_error({}), {bad_, "file is 0 bytes, too short for the 8-byte header length"}));
  EXPECT_TRUE(mentions(load_error({1, 2, 3, 4, 5}), {bad_, "file is 5 bytes"}));
}

TEST_F(SafetensorsBadFile, MissingFileOrDirectory) {
  const std::string missing = path("nope.safetensors");
  EXPECT_TRUE(mentions(io_error_of([&] { io::load_safetensors(missing); }),
                       {missing, "cannot open", "No such file or directory"}));
  EXPECT_TRUE(mentions(io_error_of([&] { io::load_safetensors(dir_.string()); }),
                       {dir_.string(), "is a directory"}));
}

TEST_F(SafetensorsBadFile, HeaderLengthOverTheLimit) {
  Bytes b = le64(3000000000ULL);
  b.resize(64, ' ');
  EXPECT_TRUE(mentions(load_error(b), {bad_, "header length 3000000000 exceeds the 100000000-byte limit"}));
}

TEST_F(SafetensorsBadFile, HeaderLengthNearUint64MaxDoesNotOverflow) {
  for (uint64_t n : {std::numeric_limits<uint64_t>::max(), std::numeric_limits<uint64_t>::max() - 7,
                     std::numeric_limits<uint64_t>::max() - 8 + 1}) {
    Bytes b = le64(n);
    b.resize(32, ' ');
    EXPECT_TRUE(mentions(load_error(b), {bad_, "exceeds the 100000000-byte limit"})) << n;
  }
}

TEST_F(SafetensorsBadFile, HeaderRunsPastTheEndOfTheFile) {
  Bytes b = le64(100);
  const std::string h = "{\"a\":{}}";
  b.insert(b.end(), h.begin(), h.end());
  EXPECT_TRUE(mentions(load_error(b), {bad_, "header length 100 runs past the end of the file",
                                       "the file has 16"}));
  // Exactly one byte short.
  Bytes c = st_file("{}");
  c.pop_back();
  EXPECT_TRUE(mentions(load_error(c), {bad_, "runs past the end of the file"}));
}

TEST_F(SafetensorsBadFile, HeaderIsNotJson) {
  EXPECT_TRUE(mentions(load_error(st_file("{\"a\": ")), {bad_, "header is not valid JSON"}));
  EXPECT_TRUE(mentions(load_error(st_file("{\"a\":1} {}")), {bad_, "header is not valid JSON"}));
  EXPECT_TRUE(mentions(load_error(st_file("{/*c*/}")), {bad_, "header is not valid JSON"}));
}

TEST_F(SafetensorsBadFile, HeaderDoesNotStartWithABrace) {
  EXPECT_TRUE(mentions(load_error(st_file(" {}")), {bad_, "header does not start with '{' (first byte 0x20)"}));
  EXPECT_TRUE(mentions(load_error(st_file("[1, 2]")), {bad_, "header does not start with '{'"}));
  EXPECT_TRUE(mentions(load_error(le64(0)), {bad_, "header is empty"}));
}

TEST_F(SafetensorsBadFile, HeaderIsNotValidUtf8) {
  EXPECT_TRUE(mentions(load_error(st_file("{\"a\xFF\":{}}")),
                       {bad_, "header is not valid UTF-8 (byte 0xFF at header offset 3)"}));
  // An overlong encoding of '/' and a lone surrogate are invalid too.
  EXPECT_TRUE(mentions(load_error(st_file("{\"\xC0\xAF\":{}}")), {bad_, "not valid UTF-8"}));
  EXPECT_TRUE(mentions(load_error(st_file("{\"\xED\xA0\x80\":{}}")), {bad_, "not valid UTF-8"}));
  // A truncated sequence at the very end of the header.
  EXPECT_TRUE(mentions(load_error(st_file("{}\xE2\x82", {}, false)), {bad_, "not valid UTF-8"}));
}

TEST_F(SafetensorsBadFile, UnknownDType) {
  EXPECT_TRUE(mentions(load_error(st_file("{\"w\":{\"dtype\":\"Q4\",\"shape\":[1],\"data_offsets\":[0,1]}}", {0})),
                       {bad_, "tensor 'w': unknown dtype 'Q4'"}));
  EXPECT_TRUE(mentions(load_error(st_file("{\"w\":{\"dtype\":\"f32\",\"shape\":[1],\"data_offsets\":[0,4]}}", zeros_bytes(4))),
                       {bad_, "unknown dtype 'f32'"}));
}

TEST_F(SafetensorsBadFile, DTypesEmberCannotRepresentAreRejectedByName) {
  for (const char* dt : {"I8", "I16", "U16", "U32", "U64", "C64", "F8_E5M2", "F8_E4M3"}) {
    const std::string h = std::string("{\"fc.weight\":{\"dtype\":\"") + dt + "\",\"shape\":[1],\"data_offsets\":[0,1]}}";
    EXPECT_TRUE(mentions(load_error(st_file(h, {0})),
                         {bad_, std::string("tensor 'fc.weight': dtype ") + dt + " is not supported by ember"}));
  }
}

TEST_F(SafetensorsBadFile, NegativeOrNonIntegerShape) {
  EXPECT_TRUE(mentions(load_error(st_file("{\"w\":{\"dtype\":\"F32\",\"shape\":[2,-1],\"data_offsets\":[0,0]}}")),
                       {bad_, "tensor 'w': shape [2, -1] has a negative dimension"}));
  EXPECT_TRUE(mentions(load_error(st_file("{\"w\":{\"dtype\":\"F32\",\"shape\":[2.5],\"data_offsets\":[0,0]}}")),
                       {bad_, "tensor 'w': shape [2.5] is not a list of integers"}));
  EXPECT_TRUE(mentions(load_error(st_file("{\"w\":{\"dtype\":\"F32\",\"shape\":\"2\",\"data_offsets\":[0,0]}}")),
                       {bad_, "tensor 'w': 'shape' is missing or not a list"}));
  EXPECT_TRUE(mentions(load_error(st_file("{\"w\":{\"dtype\":\"F32\",\"data_offsets\":[0,0]}}")),
                       {bad_, "tensor 'w': 'shape' is missing"}));
}

TEST_F(SafetensorsBadFile, ElementCountOverflowIsCaught) {
  // 2^40 * 2^40 elements overflow 64 bits; 2^61 F64 elements need more than 2^64 bytes.
  EXPECT_TRUE(mentions(load_error(st_file("{\"w\":{\"dtype\":\"U8\",\"shape\":[1099511627776,1099511627776],"
                                          "\"data_offsets\":[0,0]}}")),
                       {bad_, "tensor 'w'", "more elements than fit in 64 bits"}));
  EXPECT_TRUE(mentions(load_error(st_file("{\"w\":{\"dtype\":\"F64\",\"shape\":[2305843009213693952],"
                                          "\"data_offsets\":[0,0]}}")),
                       {bad_, "tensor 'w'", "needs more bytes than fit in 64 bits"}));
  EXPECT_TRUE(mentions(load_error(st_file("{\"w\":{\"dtype\":\"U8\",\"shape\":[18446744073709551615],"
                                          "\"data_offsets\":[0,0]}}")),
                       {bad_, "tensor 'w'", "beyond 2^63 - 1"}));
}

TEST_F(SafetensorsBadFile, NeverAllocatesWhatTheHeaderClaims) {
  // A consistent header for 2^61 bytes in a tiny file: refused before any allocation.
  EXPECT_TRUE(mentions(load_error(st_file("{\"w\":{\"dtype\":\"U8\",\"shape\":[2305843009213693952],"
                                          "\"data_offsets\":[0,2305843009213693952]}}", zeros_bytes(16))),
                       {bad_, "file is truncated", "2305843009213693952 bytes of tensor data", "only 16"}));
}

TEST_F(SafetensorsBadFile, OffsetsInconsistentWithTheShape) {
  EXPECT_TRUE(mentions(load_error(st_file("{\"a\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,12]}}", zeros_bytes(12))),
                       {bad_, "tensor 'a': data_offsets [0, 12] hold 12 bytes but shape [2, 2] of F32 needs 16"}));
  EXPECT_TRUE(mentions(load_error(st_file("{\"a\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[8,4]}}", zeros_bytes(8))),
                       {bad_, "tensor 'a': data_offsets [8, 4] end before they begin"}));
  EXPECT_TRUE(mentions(load_error(st_file("{\"a\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[0]}}")),
                       {bad_, "tensor 'a': 'data_offsets' must be a list of two non-negative integers", "[0]"}));
  EXPECT_TRUE(mentions(load_error(st_file("{\"a\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[-4,0]}}")),
                       {bad_, "'data_offsets' must be a list of two non-negative integers", "[-4, 0]"}));
  EXPECT_TRUE(mentions(load_error(st_file("{\"a\":[1,2]}")), {bad_, "tensor 'a': entry is not a JSON object"}));
}

TEST_F(SafetensorsBadFile, OffsetsInconsistentWithA16BitShape) {
  // Two bytes an element: [2, 3] of BF16 is 12 bytes, not 24 (the F32 size) nor 6.
  EXPECT_TRUE(mentions(load_error(st_file("{\"a\":{\"dtype\":\"BF16\",\"shape\":[2,3],\"data_offsets\":[0,24]}}", zeros_bytes(24))),
                       {bad_, "tensor 'a': data_offsets [0, 24] hold 24 bytes but shape [2, 3] of BF16 needs 12"}));
  EXPECT_TRUE(mentions(load_error(st_file("{\"a\":{\"dtype\":\"F16\",\"shape\":[3],\"data_offsets\":[0,3]}}", zeros_bytes(3))),
                       {bad_, "tensor 'a': data_offsets [0, 3] hold 3 bytes but shape [3] of F16 needs 6"}));
}

TEST_F(SafetensorsBadFile, GapBetweenTensors) {
  const std::string h =
      "{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]},"
      "\"b\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[24,40]}}";
  EXPECT_TRUE(mentions(load_error(st_file(h, zeros_bytes(40))),
                       {bad_, "tensors do not tile the data buffer: gap between byte 16 and 24"}));
}

TEST_F(SafetensorsBadFile, OverlappingTensors) {
  const std::string h =
      "{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]},"
      "\"b\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[8,24]}}";
  EXPECT_TRUE(mentions(load_error(st_file(h, zeros_bytes(24))),
                       {bad_, "tensors do not tile the data buffer: tensor 'b' [8, 24] overlaps tensor 'a' [0, 16]"}));
  // Two tensors on the same bytes.
  const std::string same =
      "{\"a\":{\"dtype\":\"I32\",\"shape\":[1],\"data_offsets\":[0,4]},"
      "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}";
  EXPECT_TRUE(mentions(load_error(st_file(same, zeros_bytes(4))), {bad_, "overlaps"}));
}

TEST_F(SafetensorsBadFile, FirstTensorDoesNotStartAtZero) {
  EXPECT_TRUE(mentions(load_error(st_file("{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[8,24]}}", zeros_bytes(24))),
                       {bad_, "tensors do not tile the data buffer: the first tensor 'a' begins at byte 8, not 0"}));
}

TEST_F(SafetensorsBadFile, TrailingBytesAfterTheLastTensor) {
  EXPECT_TRUE(mentions(load_error(st_file("{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", zeros_bytes(20))),
                       {bad_, "4 trailing bytes after the last tensor"}));
  EXPECT_TRUE(mentions(load_error(st_file("{}", {0})), {bad_, "1 trailing bytes after the last tensor"}));
}

TEST_F(SafetensorsBadFile, DuplicateNames) {
  // Written by hand: no writer would produce this, and nlohmann would keep the last one.
  const std::string h =
      "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
      "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}";
  EXPECT_TRUE(mentions(load_error(st_file(h, zeros_bytes(8))), {bad_, "duplicate tensor name 'a'"}));
  const std::string inner = "{\"a\":{\"dtype\":\"F32\",\"dtype\":\"I32\",\"shape\":[1],\"data_offsets\":[0,4]}}";
  EXPECT_TRUE(mentions(load_error(st_file(inner, zeros_bytes(4))), {bad_, "duplicate key 'dtype'"}));
  const std::string meta = "{\"__metadata__\":{},\"__metadata__\":{}}";
  EXPECT_TRUE(mentions(load_error(st_file(meta)), {bad_, "duplicate tensor name '__metadata__'"}));
}

TEST_F(SafetensorsBadFile, TruncatedFile) {
  nn::StateDict sd;
  sd.insert("a", ones({4}));
  sd.insert("b", ones({3}, {.dtype = kFloat64}));
  io::save_safetensors(path("whole.safetensors"), sd);
  Bytes b = read_bytes(path("whole.safetensors"));
  b.resize(b.size() - 5);
  EXPECT_TRUE(mentions(load_error(b), {bad_, "file is truncated: the header describes 40 bytes of tensor data but only 35"}));
}

TEST_F(SafetensorsBadFile, MalformedMetadata) {
  EXPECT_TRUE(mentions(load_error(st_file("{\"__metadata__\":{\"epoch\":3}}")),
                       {bad_, "__metadata__ entry 'epoch' is not a string: 3"}));
  EXPECT_TRUE(mentions(load_error(st_file("{\"__metadata__\":[1]}")), {bad_, "__metadata__ is not a JSON object"}));
  // null is how an absent map may be written.
  write_bytes(path("null_meta.safetensors"), st_file("{\"__metadata__\":null}"));
  EXPECT_TRUE(io::load_safetensors(path("null_meta.safetensors")).metadata.empty());
}

TEST_F(SafetensorsBadFile, BoolBytesOtherThanZeroOrOne) {
  EXPECT_TRUE(mentions(load_error(st_file("{\"m\":{\"dtype\":\"BOOL\",\"shape\":[3],\"data_offsets\":[0,3]}}", {1, 0, 2})),
                       {bad_, "tensor 'm': BOOL element 2 is byte 2, expected 0 or 1"}));
}

// =========================================================================================
// Hostile headers: nesting, memory and messages stay bounded (Note [Header limits])
// =========================================================================================

namespace {

std::string repeat(const std::string& s, size_t n) {
  std::string r;
  r.reserve(s.size() * n);
  for (size_t i = 0; i < n; ++i) r += s;
  return r;
}

// The cheapest entry that passes every check: an empty U8 tensor.
std::string empty_entry(const std::string& name) {
  return "\"" + name + "\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[0,0]}";
}

// {"k0":"","k1":"",...} with n entries.
std::string metadata_map(size_t n) {
  std::string m = "{";
  for (size_t i = 0; i < n; ++i) m += (i ? ",\"k" : "\"k") + std::to_string(i) + "\":\"\"";
  return m + "}";
}

// "[1,1,...]" of the given rank.
std::string ones_shape(size_t rank) {
  std::string s = "[";
  for (size_t i = 0; i < rank; ++i) s += i ? ",1" : "1";
  return s + "]";
}

// A field of /proc/self/status in KiB ("VmRSS:", "VmHWM:"), or -1.
long status_kib(const std::string& field) {
  std::ifstream in("/proc/self/status");
  for (std::string line; std::getline(in, line);) {
    if (line.compare(0, field.size(), field) == 0) return std::stol(line.substr(field.size()));
  }
  return -1;
}

// Resets the peak resident size (VmHWM) to the current one; false where Linux cannot.
bool reset_peak_rss() {
  {
    std::ofstream clear("/proc/self/clear_refs");
    if (!(clear << "5")) return false;
  }
  const long rss = status_kib("VmRSS:");
  const long peak = status_kib("VmHWM:");
  return rss > 0 && peak > 0 && peak <= rss + 1024;
}

}  // namespace

TEST_F(SafetensorsBadFile, DeepNestingIsRefusedWithoutOverflowingTheStack) {
  // 100,000 levels in a 200 KB header used to crash the process: parsing into a DOM and
  // dump()ing the value for the message both recursed once per level.
  const std::string deep = std::string(100000, '[') + std::string(100000, ']');
  EXPECT_TRUE(mentions(load_error(st_file("{\"w\":{\"dtype\":\"F32\",\"shape\":" + deep + ",\"data_offsets\":[0,0]}}")),
                       {bad_, "header nests 100002 levels deep; at most 16 are allowed"}));
  EXPECT_TRUE(mentions(load_error(st_file("{\"w\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":" + deep + "}}")),
                       {bad_, "header nests 100002 levels deep; at most 16 are allowed"}));
  EXPECT_TRUE(mentions(load_error(st_file("{\"__metadata__\":" + deep + "}")),
                       {bad_, "header nests 100001 levels deep"}));
  EXPECT_TRUE(mentions(load_error(st_file("{\"__metadata__\":{\"k\":" + deep + "}}")),
                       {bad_, "header nests 100002 levels deep"}));
  // Objects count like lists, under a key the loader ignores too; so do brackets never closed.
  EXPECT_TRUE(mentions(load_error(st_file("{\"w\":{\"note\":" + repeat("{\"a\":", 100000) + "0" +
                                          std::string(100000, '}') + "}}")),
                       {bad_, "header nests 100002 levels deep"}));
  EXPECT_TRUE(mentions(load_error(st_file("{\"w\":{\"shape\":" + std::string(100000, '['))),
                       {bad_, "header nests 100002 levels deep"}));
}

TEST_F(SafetensorsBadFile, NestingUpToSixteenLevelsLoads) {
  // A valid header needs three levels; a key the loader ignores may go deeper, to the limit.
  auto with_note = [](size_t levels) {
    return st_file("{\"w\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1],\"note\":" +
                       std::string(levels, '[') + std::string(levels, ']') + "}}",
                   {7});
  };
  write_bytes(path("sixteen.safetensors"), with_note(14));  // 2 + 14 levels
  EXPECT_EQ(values_of<uint8_t>(io::load_safetensors(path("sixteen.safetensors")).tensors.at("w")),
            (std::vector<uint8_t>{7}));
  EXPECT_TRUE(mentions(load_error(with_note(15)), {bad_, "header nests 17 levels deep; at most 16 are allowed"}));
}

TEST_F(SafetensorsBadFile, BracketsInsideStringsDoNotCountAsNesting) {
  // Escaped quotes do not end a string; an escaped backslash before a quote does.
  const std::string inside = std::string(40, '[') + "\\\"" + std::string(40, '{');
  write_bytes(path("strings.safetensors"),
              st_file("{\"__metadata__\":{\"a\":\"" + inside + "\",\"b\":\"x\\\\\",\"c\":\"]]]}}\"}}"));
  const auto meta = io::load_safetensors(path("strings.safetensors")).metadata;
  EXPECT_EQ(meta.at("a"), std::string(40, '[') + "\"" + std::string(40, '{'));
  EXPECT_EQ(meta.at("b"), "x\\");
  EXPECT_EQ(meta.at("c"), "]]]}}");
}

TEST_F(SafetensorsBadFile, MessagesQuoteABoundedPrefixOfWhatTheFileHolds) {
  // A 100,000-byte name shows its first 64 bytes.
  const std::string name(100000, 'n');
  std::string msg = load_error(st_file("{\"" + name + "\":{\"dtype\":\"Q4\",\"shape\":[1],\"data_offsets\":[0,1]}}", {0}));
  EXPECT_TRUE(mentions(msg, {bad_, "tensor '" + std::string(64, 'n') + "...': unknown dtype 'Q4'"}));
  EXPECT_LT(msg.size(), 300u);
  // The cut never splits a UTF-8 character: 63 ASCII bytes, then a 2-byte "é".
  msg = load_error(st_file("{\"" + std::string(63, 'a') + "\xC3\xA9tail\":[]}"));
  EXPECT_TRUE(mentions(msg, {"tensor '" + std::string(63, 'a') + "...': entry is not a JSON object"}));
  // Values are rebuilt from the parse and cut, never dumped whole.
  msg = load_error(st_file("{\"__metadata__\":{\"k\":[" + repeat("12345,", 100000) + "0]}}"));
  EXPECT_TRUE(mentions(msg, {bad_, "__metadata__ entry 'k' is not a string: [12345, 12345, 12345, ", "..."}));
  EXPECT_LT(msg.size(), 300u);
  msg = load_error(st_file("{\"w\":{\"dtype\":\"F32\",\"shape\":[\"" + std::string(100000, 'x') +
                           "\"],\"data_offsets\":[0,0]}}"));
  EXPECT_TRUE(mentions(msg, {bad_, "tensor 'w': shape [\"xxxx", "... is not a list of integers"}));
  EXPECT_LT(msg.size(), 300u);
  // The parser's own message quotes the token it stopped at: here a string that never ends.
  msg = load_error(st_file("{\"__metadata__\":{\"k\":\"" + std::string(1000000, 'y')));
  EXPECT_TRUE(mentions(msg, {bad_, "header is not valid JSON"}));
  EXPECT_LT(msg.size(), 500u);
}

TEST_F(SafetensorsBadFile, ASyntaxErrorIsReportedEvenAfterABadEntry) {
  EXPECT_TRUE(mentions(load_error(st_file("{\"a\":1,\"b\":{]}")), {bad_, "header is not valid JSON"}));
}

TEST_F(SafetensorsBadFile, ShapesOfMoreThan64DimensionsAreRefused) {
  auto entry = [](size_t rank) {
    return st_file("{\"w\":{\"dtype\":\"U8\",\"shape\":" + ones_shape(rank) + ",\"data_offsets\":[0,1]}}", {1});
  };
  EXPECT_TRUE(mentions(load_error(entry(65)), {bad_, "tensor 'w': shape has 65 dimensions; at most 64 are allowed"}));
  // Counted, not stored: a million dimensions cost no more than 65.
  EXPECT_TRUE(mentions(load_error(entry(1000000)), {bad_, "shape has 1000000 dimensions"}));
  write_bytes(path("rank64.safetensors"), entry(64));
  EXPECT_EQ(io::load_safetensors(path("rank64.safetensors")).tensors.at("w").dim(), 64);
}

TEST_F(SafetensorsBadFile, MoreThan65536MetadataEntriesAreRefused) {
  EXPECT_TRUE(mentions(load_error(st_file("{\"__metadata__\":" + metadata_map(65537) + "}")),
                       {bad_, "__metadata__ has 65537 entries; at most 65536 are allowed"}));
  write_bytes(path("full.safetensors"), st_file("{\"__metadata__\":" + metadata_map(65536) + "}"));
  EXPECT_EQ(io::load_safetensors(path("full.safetensors")).metadata.size(), 65536u);
}

TEST_F(SafetensorsBadFile, MoreThan100000TensorsAreRefusedBeforeAnyIsMade) {
  std::string h = "{";
  for (int i = 0; i <= 100000; ++i) h += (i ? "," : "") + empty_entry("t" + std::to_string(i));
  EXPECT_TRUE(mentions(load_error(st_file(h + "}")), {bad_, "header lists 100001 tensors; at most 100000 are allowed"}));
}

TEST_F(Safetensors, ParsingALargeLegalHeaderCostsAboutItsOwnSize) {
#if defined(__SANITIZE_ADDRESS__)
  GTEST_SKIP() << "AddressSanitizer changes what memory costs";
#endif
  // 16 MB of header: 60,000 metadata entries and an 8M-element list under a key the loader
  // ignores. Parsed into a DOM it peaked at 324 MB; kept as it is parsed, the header text
  // itself is most of the cost.
  std::string h = "{\"__metadata__\":" + metadata_map(60000) +
                  ",\"w\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4],\"note\":[0" +
                  repeat(",0", 8'000'000 - 1) + "]}}";
  const size_t header_bytes = h.size();
  write_bytes(path("big.safetensors"), st_file(std::move(h), {1, 2, 3, 4}));
  if (!reset_peak_rss()) GTEST_SKIP() << "cannot reset the peak resident size (/proc/self/clear_refs)";
  const long before_kib = status_kib("VmRSS:");

  const io::SafetensorsFile f = io::load_safetensors(path("big.safetensors"));
  const long peak_kib = status_kib("VmHWM:");
  EXPECT_EQ(f.metadata.size(), 60000u);
  EXPECT_EQ(values_of<uint8_t>(f.tensors.at("w")), (std::vector<uint8_t>{1, 2, 3, 4}));
  EXPECT_LT(static_cast<size_t>(peak_kib - before_kib) * 1024, 3 * header_bytes)
      << "peak grew by " << peak_kib - before_kib << " KiB for a " << header_bytes / 1024 << " KiB header";
}

TEST_F(Safetensors, RefusesToWriteWhatLoadersRefuse) {
  const std::string file = path("refused.safetensors");
  nn::StateDict sd;
  sd.insert("w", ones({1}));
  std::map<std::string, std::string> meta;
  for (int i = 0; i < 65537; ++i) meta["k" + std::to_string(i)] = "";
  EXPECT_TRUE(mentions(io_error_of([&] { io::save_safetensors(file, sd, meta); }),
                       {file, "65537 metadata entries; loaders accept at most 65536"}));
  nn::StateDict high_rank;
  high_rank.insert("w", ones(Shape(65, 1)));
  EXPECT_TRUE(mentions(io_error_of([&] { io::save_safetensors(file, high_rank); }),
                       {file, "tensor 'w' has 65 dimensions; loaders accept at most 64"}));
  EXPECT_FALSE(fs::exists(file));
}

// =========================================================================================
// Atomic write
// =========================================================================================

TEST_F(SafetensorsAtomicWrite, ReplacesAnExistingFileAndLeavesNoTemporary) {
  const std::string file = path("model.safetensors");
  nn::StateDict first, second;
  first.insert("w", ones({2}));
  second.insert("w", full({3}, 7.0));
  io::save_safetensors(file, first);
  io::save_safetensors(file, second);
  EXPECT_EQ(values_of<float>(io::load_safetensors(file).tensors.at("w")), (std::vector<float>{7, 7, 7}));
  EXPECT_EQ(dir_entries(dir_), (std::vector<std::string>{"model.safetensors"}));
}

TEST_F(SafetensorsAtomicWrite, ReadOnlyDirectoryLeavesTheOldFileByteIdentical) {
  const fs::path ro = dir_ / "ro";
  fs::create_directories(ro);
  const std::string file = (ro / "model.safetensors").string();
  nn::StateDict old_sd, new_sd;
  old_sd.insert("w", Tensor::from_vector<float>({1, 2, 3}, {3}));
  new_sd.insert("w", Tensor::from_vector<float>({4, 5, 6, 7}, {4}));
  io::save_safetensors(file, old_sd);
  const Bytes before = read_bytes(file);
  fs::permissions(ro, fs::perms::owner_read | fs::perms::owner_exec | fs::perms::group_read |
                          fs::perms::group_exec | fs::perms::others_read | fs::perms::others_exec);

  const std::string msg = io_error_in_child(path("report.txt"), /*unprivileged=*/true,
                                            [&] { io::save_safetensors(file, new_sd); });
  EXPECT_TRUE(mentions(msg, {file, "cannot create a temporary file", "Permission denied"}));
  EXPECT_EQ(read_bytes(file), before);
  EXPECT_EQ(dir_entries(ro), (std::vector<std::string>{"model.safetensors"}));
}

TEST_F(SafetensorsAtomicWrite, WriteFailureMidwayRemovesTheTemporary) {
  const std::string file = path("big.safetensors");
  nn::StateDict old_sd, new_sd;
  old_sd.insert("w", ones({4}));
  new_sd.insert("w", ones({1 << 16}));  // 256 KiB, past the file-size limit set below
  io::save_safetensors(file, old_sd);
  const Bytes before = read_bytes(file);

  const std::string msg = io_error_in_child(path("report.txt"), /*unprivileged=*/false, [&] {
    ::signal(SIGXFSZ, SIG_IGN);  // so write() fails with EFBIG instead of killing the process
    struct rlimit limit = {4096, 4096};
    ::setrlimit(RLIMIT_FSIZE, &limit);
    io::save_safetensors(file, new_sd);
  });
  EXPECT_TRUE(mentions(msg, {file, "cannot write", "File too large"}));
  EXPECT_EQ(read_bytes(file), before);
  EXPECT_EQ(dir_entries(dir_), (std::vector<std::string>{"big.safetensors", "report.txt"}));
}

TEST_F(SafetensorsAtomicWrite, MissingDirectoryIsAnIOErrorNamingThePath) {
  const std::string file = path("no/such/dir/model.safetensors");
  nn::StateDict sd;
  sd.insert("w", ones({1}));
  EXPECT_TRUE(mentions(io_error_of([&] { io::save_safetensors(file, sd); }), {file, "No such file or directory"}));
}

TEST_F(SafetensorsAtomicWrite, KeepsTheReplacedFilesPermissions) {
  const std::string file = path("shared.safetensors");
  nn::StateDict sd;
  sd.insert("w", ones({1}));
  io::save_safetensors(file, sd);
  fs::permissions(file, fs::perms::owner_read | fs::perms::owner_write | fs::perms::group_read);
  io::save_safetensors(file, sd);
  EXPECT_EQ(fs::status(file).permissions() & fs::perms::all,
            fs::perms::owner_read | fs::perms::owner_write | fs::perms::group_read);
}

TEST_F(SafetensorsAtomicWrite, APathThatIsADirectoryFailsBeforeAnythingIsWritten) {
  const fs::path target = dir_ / "a_directory";
  fs::create_directories(target);
  nn::StateDict sd;
  sd.insert("w", ones({1 << 20}));
  EXPECT_TRUE(mentions(io_error_of([&] { io::save_safetensors(target.string(), sd); }),
                       {target.string(), "is a directory"}));
  EXPECT_EQ(dir_entries(dir_), (std::vector<std::string>{"a_directory"}));
}

// Note [Stale temporaries]: saves killed with SIGKILL at random moments never leave a torn
// file (the path holds the old checkpoint or the new one, whole), and the next successful
// save removes every temporary they left.
TEST_F(SafetensorsAtomicWrite, SavesKilledAtRandomMomentsNeverTearAndTheNextSaveCleansUp) {
  const std::string file = path("ckpt.safetensors");
  constexpr int64_t kFloats = int64_t{1} << 22;  // 16 MiB a save
  nn::StateDict a, b;
  a.insert("w", full({kFloats}, 1.0));
  b.insert("w", full({kFloats}, 2.0));
  io::save_safetensors(file, a);
  std::mt19937 rng(7);
  constexpr int kKills = 12;
  int killed_mid_save = 0;
  for (int k = 0; k < kKills; ++k) {
    const pid_t pid = ::fork();
    if (pid == 0) {
      for (int i = 0;; ++i) io::save_safetensors(file, i % 2 == 0 ? b : a);
    }
    ::usleep(std::uniform_int_distribution<int>(1000, 120000)(rng));
    ::kill(pid, SIGKILL);
    int status = 0;
    ::waitpid(pid, &status, 0);
    ASSERT_TRUE(WIFSIGNALED(status));
    // Whole: one of the two, every value the same.
    const Tensor w = io::load_safetensors(file).tensors.at("w");
    ASSERT_EQ(w.numel(), kFloats);
    const std::vector<float> v = values_of<float>(w);
    ASSERT_TRUE(v.front() == 1.0f || v.front() == 2.0f) << v.front();
    ASSERT_TRUE(std::all_of(v.begin(), v.end(), [&](float x) { return x == v.front(); }));
    killed_mid_save += dir_entries(dir_).size() > 1 ? 1 : 0;
  }
  EXPECT_GT(killed_mid_save, 0) << "no kill landed inside a save: the test proves nothing";
  io::save_safetensors(file, a);
  EXPECT_EQ(dir_entries(dir_), (std::vector<std::string>{"ckpt.safetensors"}));
}

// =========================================================================================
// Modules, optimizers, training checkpoints
// =========================================================================================

namespace {

// A minimal optimizer: each step adds 1 to a "count" buffer per parameter. Enough to
// check that files carry whatever the base class's state_dict() gives back.
struct CountingOptions {
  double lr = 0.1;
  double momentum = 0.9;
};

class CountingOptimizer : public optim::OptimizerBase<CountingOptions> {
 public:
  explicit CountingOptimizer(std::vector<Tensor> params, CountingOptions options = {}) {
    init({{std::move(params), options}});
  }
  void step() override {
    for (auto& w : collect_work()) {
      state_buffer(w, "count", /*zero=*/true).add_(ones(w.param.shape()));
      ++w.state->step;
    }
    ++steps_;
  }
  const char* name() const override { return "Counting"; }

 protected:
  void validate(const CountingOptions& o) const override {
    EMBER_CHECK(o.lr >= 0, "Counting: invalid learning rate ", o.lr);
  }
  OptionList group_options(size_t g) const override {
    return {{"lr", {options_[g].lr}}, {"momentum", {options_[g].momentum}}};
  }
  void set_group_options(size_t g, const OptionList& values) override {
    CountingOptions o{option_value(values, "lr"), option_value(values, "momentum")};
    validate(o);
    options_[g] = o;
  }
  std::vector<std::string> state_names() const override { return {"count"}; }
};

// Gives every parameter a gradient so the next step() updates it.
void give_gradients(const nn::Module& m) {
  for (auto p : m.parameters()) p.set_grad(zeros_like(p));
}

// Same keys, dtypes, shapes and values.
void expect_same_state(const nn::StateDict& a, const nn::StateDict& b) {
  ASSERT_EQ(a.keys(), b.keys());
  for (const auto& [name, t] : a) {
    const Tensor& u = b.at(name);
    EXPECT_EQ(t.dtype(), u.dtype()) << name;
    EXPECT_EQ(t.shape(), u.shape()) << name;
    EXPECT_EQ(values_of<double>(t.to(kFloat64)), values_of<double>(u.to(kFloat64))) << name;
  }
}

nn::Sequential make_mlp() { return nn::Sequential{nn::Linear(4, 3), nn::ReLU(), nn::Linear(3, 2)}; }

void expect_same_parameters(const nn::Module& a, const nn::Module& b) {
  const auto pa = a.named_parameters();
  const auto pb = b.named_parameters();
  ASSERT_EQ(pa.size(), pb.size());
  for (size_t i = 0; i < pa.size(); ++i) {
    EXPECT_EQ(pa[i].first, pb[i].first);
    EXPECT_EQ(values_of<float>(pa[i].second), values_of<float>(pb[i].second)) << pa[i].first;
  }
}

}  // namespace

TEST_F(SafetensorsCheckpoint, ModuleRoundTripUsesPyTorchKeys) {
  manual_seed(1);
  nn::Sequential saved = make_mlp();
  const std::string file = path("mlp.safetensors");
  io::save(saved, file);

  const auto raw = io::load_safetensors(file);
  EXPECT_EQ(raw.tensors.keys(), (std::vector<std::string>{"0.bias", "0.weight", "2.bias", "2.weight"}));
  EXPECT_EQ(raw.tensors.at("0.weight").shape(), (Shape{3, 4}));
  EXPECT_EQ(raw.metadata.at("format"), "pt");

  manual_seed(2);
  nn::Sequential loaded = make_mlp();
  io::load(loaded, file);
  expect_same_parameters(saved, loaded);
  const Tensor x = Tensor::from_vector<float>({0.5f, -1, 2, 0.25f, 1, 1, -3, 0}, {2, 4});
  EXPECT_EQ(values_of<float>(saved(x)), values_of<float>(loaded(x)));
}

TEST_F(SafetensorsCheckpoint, StrictModuleLoadReportsMismatchedKeys) {
  const std::string file = path("mlp.safetensors");
  io::save(make_mlp(), file);
  nn::Sequential smaller{nn::Linear(4, 3)};
  try {
    io::load(smaller, file);
    ADD_FAILURE() << "expected a ShapeError";
  } catch (const ShapeError& e) {
    EXPECT_TRUE(mentions(e.what(), {file, "unexpected keys", "2.weight"}));
  }
  io::load(smaller, file, /*strict=*/false);  // the extra keys are ignored
  nn::Sequential wider{nn::Linear(4, 5)};
  try {
    io::load(wider, file, false);
    ADD_FAILURE() << "expected a ShapeError";
  } catch (const ShapeError& e) {
    EXPECT_TRUE(mentions(e.what(), {file, "0.weight", "[3, 4]", "[5, 4]"}));
  }
}

TEST_F(SafetensorsCheckpoint, ACheckpointOfAnotherArchitectureGivesAShortReadableError) {
  // A deep MLP's weights loaded into a small CNN: every key differs, yet the message stays
  // a few short lines with the counts and the first names of each kind.
  const std::string file = path("deep_mlp.safetensors");
  nn::Sequential deep;
  for (int i = 0; i < 60; ++i) deep.push_back(nn::Linear(4, 4));
  io::save(deep, file);
  struct SmallCnn : nn::Module {
    SmallCnn() {
      conv = register_module("conv", nn::Conv2d(1, 8, 3));
      fc = register_module("fc", nn::Linear(8, 10));
    }
    Tensor forward(const Tensor& x) override { return fc(adaptive_avg_pool2d(relu(conv(x)), {1, 1}).flatten(1)); }
    nn::ModuleHolder<nn::Conv2d> conv;
    nn::ModuleHolder<nn::Linear> fc;
  } cnn;
  std::string msg;
  try {
    io::load(cnn, file);
    ADD_FAILURE() << "expected a ShapeError";
  } catch (const ShapeError& e) {
    msg = e.what();
  }
  EXPECT_TRUE(mentions(msg, {file, "does not match SmallCnn; it comes from a different architecture",
                             "4 tensors in the model: 0 match, 4 missing, 0 mis-shaped; 120 unexpected",
                             "missing keys: conv.weight, conv.bias, fc.weight, fc.bias",
                             "unexpected keys: 0.bias, 0.weight, 1.bias, 1.weight, 10.bias, ... and 115 more"}));
  EXPECT_LT(msg.size(), 800u) << msg;
}

TEST_F(SafetensorsCheckpoint, OptimizerRoundTrip) {
  nn::Sequential model = make_mlp();
  CountingOptimizer opt(model.parameters());
  give_gradients(model);
  opt.step();
  opt.step();
  opt.set_lr(0.05);
  const std::string file = path("opt.safetensors");
  io::save(opt, file);
  EXPECT_TRUE(io::load_safetensors(file).tensors.contains("step"));

  CountingOptimizer fresh(model.parameters());
  io::load(fresh, file);
  EXPECT_EQ(fresh.steps(), 2);
  EXPECT_EQ(fresh.lr(), 0.05);
  expect_same_state(fresh.state_dict(), opt.state_dict());
}

TEST_F(SafetensorsCheckpoint, RoundTripRestoresModelOptimizerStateAndRng) {
  manual_seed(7);
  nn::Sequential model = make_mlp();
  CountingOptimizer opt(model.parameters());
  give_gradients(model);
  for (int i = 0; i < 3; ++i) opt.step();
  (void)rand({11});  // move the generator off its seeded start
  io::TrainingState state;
  state.epoch = 4;
  state.step = 1234;
  state.extra = {{"best_val_loss", "0.3120"}, {"run", "fashion-cnn"}};
  const std::string file = path("ckpt-04.safetensors");
  io::save_checkpoint(file, model, &opt, state);
  const std::vector<float> after_save = values_of<float>(rand({6}));

  // What the file holds, as any safetensors reader sees it.
  const auto raw = io::load_safetensors(file);
  EXPECT_TRUE(raw.tensors.contains("model.0.weight"));
  EXPECT_TRUE(raw.tensors.contains("model.2.bias"));
  EXPECT_TRUE(raw.tensors.contains("optimizer.state.0.count"));
  EXPECT_TRUE(raw.tensors.contains("optimizer.param_groups.0.lr"));
  EXPECT_TRUE(raw.tensors.contains("optimizer.step"));
  EXPECT_EQ(raw.metadata.at("ember.format"), "1");
  EXPECT_EQ(raw.metadata.at("epoch"), "4");
  EXPECT_EQ(raw.metadata.at("step"), "1234");
  EXPECT_EQ(raw.metadata.at("rng.seed"), "7");
  EXPECT_FALSE(raw.metadata.at("rng.cpu_engine").empty());

  // Change everything, then restore into a fresh model and optimizer.
  manual_seed(99);
  (void)rand({3});
  nn::Sequential other = make_mlp();
  CountingOptimizer other_opt(other.parameters(), {.lr = 0.5, .momentum = 0.0});
  give_gradients(other);
  other_opt.step();
  const io::TrainingState restored = io::load_checkpoint(file, other, &other_opt);

  EXPECT_EQ(restored.epoch, 4);
  EXPECT_EQ(restored.step, 1234);
  EXPECT_EQ(restored.extra, state.extra);
  expect_same_parameters(model, other);
  EXPECT_EQ(other_opt.steps(), 3);
  EXPECT_EQ(other_opt.lr(), 0.1);
  expect_same_state(other_opt.state_dict(), opt.state_dict());
  EXPECT_EQ(initial_seed(), 7u);
  EXPECT_EQ(values_of<float>(rand({6})), after_save);
}

TEST_F(SafetensorsCheckpoint, ResumingWithSgdMatchesAnUninterruptedRun) {
  // Inputs come from rand(), so the resumed run only matches if the generator is restored
  // along with the weights and the momentum buffers.
  auto train_step = [](nn::Module& m, optim::Optimizer& opt) {
    const Tensor loss = m(rand({8, 4})).pow(2.0).mean();
    opt.zero_grad();
    loss.backward();
    opt.step();
  };
  manual_seed(3);
  nn::Sequential model = make_mlp();
  optim::SGD opt(model.parameters(), {.lr = 0.1, .momentum = 0.9});
  train_step(model, opt);
  train_step(model, opt);
  const std::string file = path("sgd.safetensors");
  io::save_checkpoint(file, model, &opt, {.epoch = 1, .step = 2, .extra = {}});
  EXPECT_TRUE(io::load_safetensors(file).tensors.contains("optimizer.state.0.momentum_buffer"));
  train_step(model, opt);
  train_step(model, opt);

  manual_seed(42);
  nn::Sequential resumed = make_mlp();
  optim::SGD resumed_opt(resumed.parameters(), {.lr = 0.5});  // options come from the file
  EXPECT_EQ(io::load_checkpoint(file, resumed, &resumed_opt).step, 2);
  EXPECT_EQ(resumed_opt.options().momentum, 0.9);
  train_step(resumed, resumed_opt);
  train_step(resumed, resumed_opt);
  expect_same_parameters(model, resumed);
}

TEST_F(SafetensorsCheckpoint, WithoutOptimizerState) {
  nn::Sequential model = make_mlp();
  const std::string file = path("model-only.safetensors");
  io::save_checkpoint(file, model, nullptr, {.epoch = 1, .step = 10, .extra = {}});
  nn::Sequential other = make_mlp();
  CountingOptimizer opt(other.parameters());
  EXPECT_TRUE(mentions(io_error_of([&] { io::load_checkpoint(file, other, &opt); }),
                       {file, "saved without optimizer state"}));
  EXPECT_EQ(io::load_checkpoint(file, other, nullptr).step, 10);
  expect_same_parameters(model, other);
}

TEST_F(SafetensorsCheckpoint, RefusesFilesThatAreNotEmberCheckpoints) {
  nn::Sequential model = make_mlp();
  const std::string plain = path("plain.safetensors");
  nn::StateDict sd;
  sd.insert("model.0.weight", ones({3, 4}));
  io::save_safetensors(plain, sd);
  EXPECT_TRUE(mentions(io_error_of([&] { io::load_checkpoint(plain, model, nullptr); }),
                       {plain, "not an ember checkpoint"}));

  const std::string weights = path("weights.safetensors");
  io::save(model, weights);
  EXPECT_TRUE(mentions(io_error_of([&] { io::load_checkpoint(weights, model, nullptr); }),
                       {weights, "holds a saved module, not a checkpoint"}));

  const std::string newer = path("newer.safetensors");
  io::save_safetensors(newer, sd, {{"ember.format", "2"}, {"ember.content", "checkpoint"}});
  EXPECT_TRUE(mentions(io_error_of([&] { io::load_checkpoint(newer, model, nullptr); }),
                       {newer, "format '2' is not supported"}));

  const std::string ckpt = path("ckpt.safetensors");
  io::save_checkpoint(ckpt, model, nullptr, {});
  EXPECT_TRUE(mentions(io_error_of([&] { io::load(model, ckpt); }), {ckpt, "io::load_checkpoint"}));
}

TEST_F(SafetensorsCheckpoint, CorruptTrainingMetadataChangesNothing) {
  manual_seed(5);
  nn::Sequential model = make_mlp();
  const std::string good = path("good.safetensors");
  io::save_checkpoint(good, model, nullptr, {.epoch = 2, .step = 20, .extra = {}});
  auto f = io::load_safetensors(good);

  auto with = [&](const std::string& key, const std::string& value) {
    auto meta = f.metadata;
    meta[key] = value;
    const std::string p = path("bad-" + key + ".safetensors");
    io::save_safetensors(p, f.tensors, meta);
    return p;
  };
  manual_seed(6);
  nn::Sequential other = make_mlp();
  const std::vector<float> before = values_of<float>(other.parameters()[0]);
  for (const auto& [key, value] : std::vector<std::pair<std::string, std::string>>{
           {"step", "12x"}, {"epoch", ""}, {"rng.seed", "-1"}, {"rng.philox_offset_cpu", "99999999999999999999"},
           {"rng.cpu_engine", "not numbers"}}) {
    const std::string p = with(key, value);
    EXPECT_TRUE(mentions(io_error_of([&] { io::load_checkpoint(p, other, nullptr); }), {p, "'" + key + "'"}));
  }
  EXPECT_EQ(values_of<float>(other.parameters()[0]), before);
  EXPECT_EQ(initial_seed(), 6u);
}
