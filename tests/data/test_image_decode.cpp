// Image decoding through ImageFolder (Note [Untrusted images]): PNG and JPEG decode to the
// pixels stb gives for valid files (every PNG colour type, 16-bit, palette, interlaced;
// grey, RGB and progressive JPEG), the format is found from the bytes, not the name, and
// hostile files (0xN, a huge IDAT, a corrupt Huffman table, forged sizes, truncation at
// every length) give an IOError naming the file, without large allocations.
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

// After <cstdio>: jpeglib.h needs FILE and size_t declared.
#include <jpeglib.h>
#include <png.h>

#include "ember/core/base/error.h"
#include "ember/core/tensor.h"
#include "ember/python_free_api/data/image_folder.h"

#include "support/check.h"
#include "support/temp_dir.h"

// The reference decoder and the BMP/TGA writers: the test's own copies of stb.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#pragma GCC diagnostic ignored "-Wsign-compare"
#pragma GCC diagnostic ignored "-Wimplicit-fallthrough"
#pragma GCC diagnostic ignored "-Wunused-but-set-variable"
#pragma GCC diagnostic ignored "-Wtype-limits"
#define STB_IMAGE_STATIC
#define STB_IMAGE_IMPLEMENTATION
#include <stb/stb_image.h>
#define STB_IMAGE_WRITE_STATIC
#define STB_IMAGE_WRITE_IMPLEMENTATION
#include <stb/stb_image_write.h>
#pragma GCC diagnostic pop

namespace {

namespace fs = std::filesystem;
using namespace ember;
using namespace ember::data;
using Bytes = std::vector<unsigned char>;

// A fresh directory for the test, named for this file.
struct TempDir : ember::testing::TempDir {
  TempDir() : ember::testing::TempDir("ember_image_decode") {}
};

using ember::testing::contains;

// A smooth pattern (JPEG-friendly) or noise, `comp` values a pixel, `bytes_per` 1 or 2.
Bytes pattern(int w, int h, int comp, bool smooth, int bytes_per = 1) {
  Bytes px(static_cast<size_t>(w * h * comp * bytes_per));
  uint32_t s = 777;
  for (size_t i = 0; i < px.size(); ++i) {
    const int v = static_cast<int>(i / static_cast<size_t>(bytes_per));
    const int x = (v / comp) % w, y = (v / comp) / w, c = v % comp;
    s = s * 1664525u + 1013904223u;
    px[i] = smooth ? static_cast<unsigned char>((x * 13 + y * 7 + c * 60) % 256)
                   : static_cast<unsigned char>(s >> 24);
  }
  return px;
}

// --- writers: libpng and libjpeg into memory --------------------------------------------

void png_append(png_structp png, png_bytep data, size_t n) {
  auto* out = static_cast<Bytes*>(png_get_io_ptr(png));
  out->insert(out->end(), data, data + n);
}
void png_no_flush(png_structp) {}

struct PngSpec {
  int width = 8, height = 8, color_type = PNG_COLOR_TYPE_RGB, bit_depth = 8;
  bool interlaced = false;
  std::vector<png_color> palette;  // PALETTE only
  Bytes alpha;                     // tRNS for a palette
};

// `px`: rows of packed samples as PNG stores them (16-bit big-endian).
Bytes encode_png(const PngSpec& s, const Bytes& px) {
  Bytes out;
  png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, nullptr, nullptr, nullptr);
  png_infop info = png_create_info_struct(png);
  png_set_write_fn(png, &out, png_append, png_no_flush);
  png_set_IHDR(png, info, static_cast<png_uint_32>(s.width), static_cast<png_uint_32>(s.height),
               s.bit_depth, s.color_type,
               s.interlaced ? PNG_INTERLACE_ADAM7 : PNG_INTERLACE_NONE,
               PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
  if (!s.palette.empty()) {
    png_set_PLTE(png, info, s.palette.data(), static_cast<int>(s.palette.size()));
  }
  if (!s.alpha.empty()) {
    png_set_tRNS(png, info, s.alpha.data(), static_cast<int>(s.alpha.size()), nullptr);
  }
  png_write_info(png, info);
  const size_t stride = png_get_rowbytes(png, info);
  std::vector<png_bytep> rows;
  for (int y = 0; y < s.height; ++y) {
    rows.push_back(const_cast<png_bytep>(px.data()) + static_cast<size_t>(y) * stride);
  }
  png_write_image(png, rows.data());
  png_write_end(png, nullptr);
  png_destroy_write_struct(&png, &info);
  return out;
}

Bytes encode_jpeg(int w, int h, int comp, bool progressive, const Bytes& px) {
  jpeg_compress_struct cinfo;
  jpeg_error_mgr err;
  cinfo.err = jpeg_std_error(&err);
  jpeg_create_compress(&cinfo);
  unsigned char* buf = nullptr;
  unsigned long size = 0;
  jpeg_mem_dest(&cinfo, &buf, &size);
  cinfo.image_width = static_cast<JDIMENSION>(w);
  cinfo.image_height = static_cast<JDIMENSION>(h);
  cinfo.input_components = comp;
  cinfo.in_color_space = comp == 1 ? JCS_GRAYSCALE : JCS_RGB;
  jpeg_set_defaults(&cinfo);
  jpeg_set_quality(&cinfo, 90, TRUE);
  if (progressive) jpeg_simple_progression(&cinfo);
  jpeg_start_compress(&cinfo, TRUE);
  while (cinfo.next_scanline < cinfo.image_height) {
    JSAMPROW row = const_cast<JSAMPROW>(px.data()) + cinfo.next_scanline * w * comp;
    jpeg_write_scanlines(&cinfo, &row, 1);
  }
  jpeg_finish_compress(&cinfo);
  jpeg_destroy_compress(&cinfo);
  Bytes out(buf, buf + size);
  std::free(buf);
  return out;
}

// A PNG chunk: big-endian length, type, data, CRC of type and data.
Bytes chunk(const char* type, const Bytes& data, uint32_t declared_length = UINT32_MAX) {
  const uint32_t len = declared_length == UINT32_MAX ? static_cast<uint32_t>(data.size())
                                                     : declared_length;
  Bytes out = {static_cast<unsigned char>(len >> 24), static_cast<unsigned char>(len >> 16),
               static_cast<unsigned char>(len >> 8), static_cast<unsigned char>(len)};
  out.insert(out.end(), type, type + 4);
  out.insert(out.end(), data.begin(), data.end());
  uLong crc = crc32(0, reinterpret_cast<const Bytef*>(type), 4);
  crc = crc32(crc, data.data(), static_cast<uInt>(data.size()));
  for (int shift = 24; shift >= 0; shift -= 8) {
    out.push_back(static_cast<unsigned char>(crc >> shift));
  }
  return out;
}

Bytes be32(uint32_t v) {
  return {static_cast<unsigned char>(v >> 24), static_cast<unsigned char>(v >> 16),
          static_cast<unsigned char>(v >> 8), static_cast<unsigned char>(v)};
}

// The signature and an IHDR of w x h, 8-bit RGB.
Bytes png_header(uint32_t w, uint32_t h) {
  Bytes out = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  Bytes ihdr = be32(w);
  const Bytes hb = be32(h);
  ihdr.insert(ihdr.end(), hb.begin(), hb.end());
  ihdr.insert(ihdr.end(), {8, 2, 0, 0, 0});
  const Bytes c = chunk("IHDR", ihdr);
  out.insert(out.end(), c.begin(), c.end());
  return out;
}

Bytes cat(Bytes a, const Bytes& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

// --- decoding through ImageFolder --------------------------------------------------------

// The file's pixels, HWC, as ImageFolder decodes it to `channels` at its own size.
Bytes ember_decode(const Bytes& file, const std::string& name, int w, int h, int channels) {
  TempDir dir;
  dir.put("a/" + name, file);
  ImageFolder ds(dir.root(), {.height = h, .width = w, .channels = channels, .rescale = 1.0});
  const std::vector<uint8_t> chw = ds.pixels().contiguous().to_vector<uint8_t>();
  Bytes hwc(chw.size());
  const size_t plane = static_cast<size_t>(w * h);
  for (size_t p = 0; p < plane; ++p) {
    for (size_t c = 0; c < static_cast<size_t>(channels); ++c) {
      hwc[p * channels + c] = chw[c * plane + p];
    }
  }
  return hwc;
}

Bytes stb_decode(const Bytes& file, int w, int h, int channels) {
  int sw = 0, sh = 0, sc = 0;
  unsigned char* px = stbi_load_from_memory(file.data(), static_cast<int>(file.size()), &sw, &sh,
                                            &sc, channels);
  EXPECT_NE(px, nullptr) << stbi_failure_reason();
  if (px == nullptr) return {};
  EXPECT_EQ(sw, w);
  EXPECT_EQ(sh, h);
  Bytes out(px, px + static_cast<size_t>(w * h * channels));
  stbi_image_free(px);
  return out;
}

// The largest difference between ember's decode and stb's, for every channel count.
int max_difference_to_stb(const Bytes& file, const std::string& name, int w, int h) {
  int worst = 0;
  for (int c = 1; c <= 4; ++c) {
    const Bytes a = ember_decode(file, name, w, h, c), b = stb_decode(file, w, h, c);
    EXPECT_EQ(a.size(), b.size());
    for (size_t i = 0; i < std::min(a.size(), b.size()); ++i) {
      worst = std::max(worst, std::abs(static_cast<int>(a[i]) - static_cast<int>(b[i])));
    }
  }
  return worst;
}

// The IOError ImageFolder throws for a folder holding only `file` as a/<name>; checks that
// it names the file.
std::string error_for(const Bytes& file, const std::string& name, ImageFolderOptions o = {}) {
  TempDir dir;
  const std::string path = dir.put("a/" + name, file);
  try {
    ImageFolder ds(dir.root(), o);
    ADD_FAILURE() << name << " decoded, expected an IOError";
  } catch (const IOError& e) {
    EXPECT_TRUE(contains(e.what(), path)) << e.what();
    return e.what();
  }
  return "";
}

// --- round trips ---------------------------------------------------------------------------

TEST(ImageDecode, PngOfEveryColourTypeGivesStbsPixels) {
  const int w = 13, h = 7;
  struct Case {
    const char* what;
    int color_type;
    int comp;
  };
  for (const Case& k : {Case{"grey", PNG_COLOR_TYPE_GRAY, 1},
                        Case{"grey+alpha", PNG_COLOR_TYPE_GRAY_ALPHA, 2},
                        Case{"rgb", PNG_COLOR_TYPE_RGB, 3},
                        Case{"rgba", PNG_COLOR_TYPE_RGB_ALPHA, 4}}) {
    SCOPED_TRACE(k.what);
    const Bytes file = encode_png({.width = w, .height = h, .color_type = k.color_type},
                                  pattern(w, h, k.comp, false));
    EXPECT_EQ(max_difference_to_stb(file, "x.png", w, h), 0);
  }
}

TEST(ImageDecode, Png16BitPaletteAndInterlacedGiveStbsPixels) {
  const int w = 11, h = 9;
  {
    SCOPED_TRACE("16-bit rgb");
    const Bytes file = encode_png({.width = w, .height = h, .bit_depth = 16},
                                  pattern(w, h, 3, false, 2));
    // stb makes grey from 16-bit colour before taking the high byte, ember after: the
    // grey channels may differ by one level, colour is exact.
    EXPECT_LE(max_difference_to_stb(file, "x.png", w, h), 1);
    EXPECT_EQ(ember_decode(file, "x.png", w, h, 3), stb_decode(file, w, h, 3));
    EXPECT_EQ(ember_decode(file, "x.png", w, h, 4), stb_decode(file, w, h, 4));
  }
  {
    SCOPED_TRACE("16-bit grey");
    const Bytes file = encode_png(
        {.width = w, .height = h, .color_type = PNG_COLOR_TYPE_GRAY, .bit_depth = 16},
        pattern(w, h, 1, false, 2));
    EXPECT_EQ(max_difference_to_stb(file, "x.png", w, h), 0);
  }
  PngSpec palette{.width = w, .height = h, .color_type = PNG_COLOR_TYPE_PALETTE};
  for (int i = 0; i < 16; ++i) {
    palette.palette.push_back({static_cast<png_byte>(i * 16), static_cast<png_byte>(255 - i * 9),
                               static_cast<png_byte>(i * 5)});
  }
  Bytes indices = pattern(w, h, 1, false);
  for (auto& v : indices) v = static_cast<unsigned char>(v % 16);
  {
    SCOPED_TRACE("palette");
    EXPECT_EQ(max_difference_to_stb(encode_png(palette, indices), "x.png", w, h), 0);
  }
  {
    SCOPED_TRACE("palette with tRNS");
    palette.alpha = {0, 128, 255, 7};
    EXPECT_EQ(max_difference_to_stb(encode_png(palette, indices), "x.png", w, h), 0);
  }
  {
    SCOPED_TRACE("interlaced rgba");
    const Bytes file = encode_png(
        {.width = w, .height = h, .color_type = PNG_COLOR_TYPE_RGB_ALPHA, .interlaced = true},
        pattern(w, h, 4, false));
    EXPECT_EQ(max_difference_to_stb(file, "x.png", w, h), 0);
  }
}

// libjpeg-turbo's and stb's IDCTs and chroma upsampling differ by a few levels.
constexpr int kJpegTolerance = 8;

TEST(ImageDecode, JpegGreyRgbAndProgressiveGiveStbsPixelsWithinAFewLevels) {
  const int w = 24, h = 16;
  EXPECT_LE(max_difference_to_stb(encode_jpeg(w, h, 1, false, pattern(w, h, 1, true)), "x.jpg",
                                  w, h),
            kJpegTolerance);
  EXPECT_LE(max_difference_to_stb(encode_jpeg(w, h, 3, false, pattern(w, h, 3, true)), "x.jpg",
                                  w, h),
            kJpegTolerance);
  EXPECT_LE(max_difference_to_stb(encode_jpeg(w, h, 3, true, pattern(w, h, 3, true)), "x.jpeg",
                                  w, h),
            kJpegTolerance);
}

TEST(ImageDecode, FormatIsFoundFromTheBytesNotTheName) {
  const int w = 8, h = 8;
  const Bytes jpeg = encode_jpeg(w, h, 3, false, pattern(w, h, 3, true));
  const Bytes png = encode_png({.width = w, .height = h}, pattern(w, h, 3, false));
  EXPECT_EQ(ember_decode(jpeg, "really_a_jpeg.png", w, h, 3), ember_decode(jpeg, "x.jpg", w, h, 3));
  EXPECT_EQ(ember_decode(png, "really_a_png.jpg", w, h, 3), stb_decode(png, w, h, 3));
}

TEST(ImageDecode, BmpAndTgaStillDecodeThroughStb) {
  const int w = 5, h = 3;
  const Bytes px = pattern(w, h, 3, false);
  TempDir dir;
  const std::string bmp = dir.put("x.bmp", {}), tga = dir.put("x.tga", {});
  ASSERT_NE(stbi_write_bmp(bmp.c_str(), w, h, 3, px.data()), 0);
  ASSERT_NE(stbi_write_tga(tga.c_str(), w, h, 3, px.data()), 0);
  for (const std::string& path : {bmp, tga}) {
    std::ifstream in(path, std::ios::binary);
    const Bytes file((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    EXPECT_EQ(ember_decode(file, fs::path(path).filename().string(), w, h, 3), px) << path;
  }
}

// --- hostile files -------------------------------------------------------------------------

TEST(ImageDecode, ZeroWidthPngIsAnErrorNotAResize) {
  const Bytes file = cat(cat(png_header(0, 5), chunk("IDAT", {0x78, 0x9c, 0x03, 0, 0, 0, 0, 1})),
                         chunk("IEND", {}));
  const std::string e = error_for(file, "zero.png");
  EXPECT_TRUE(contains(e, "libpng")) << e;
  EXPECT_TRUE(contains(e, "zero")) << e;
}

TEST(ImageDecode, ZeroWidthGifIsAnErrorNotAResize) {
  // GIF89a, a 0x5 logical screen, no colour table.
  const Bytes file = {'G', 'I', 'F', '8', '9', 'a', 0, 0, 5, 0, 0, 0, 0, ';'};
  const std::string e = error_for(file, "zero.gif");
  EXPECT_TRUE(contains(e, "the image is 0x5: a side is zero")) << e;
}

// 8-byte signature + 25-byte IHDR + an IDAT header claiming 2 GiB - 16 bytes: 41 bytes.
Bytes huge_idat_png() {
  const Bytes header = png_header(16, 16);
  Bytes idat = be32(0x7ffffff0u);
  idat.insert(idat.end(), {'I', 'D', 'A', 'T'});
  return cat(header, idat);
}

// A 60000 x 60000 RGB PNG in about 60 bytes: an IDAT of a few deflate bytes, IEND.
Bytes forged_size_png() {
  return cat(cat(png_header(60000, 60000), chunk("IDAT", {0x78, 0x9c, 0x63, 0, 0, 0, 1, 0, 1})),
             chunk("IEND", {}));
}

TEST(ImageDecode, TinyPngClaimingAHugeIdatIsATruncationError) {
  const Bytes file = huge_idat_png();
  ASSERT_EQ(file.size(), 41u);
  const std::string e = error_for(file, "idat.png", {.height = 16, .width = 16});
  EXPECT_TRUE(contains(e, "truncated or corrupt image (libpng: ")) << e;
}

TEST(ImageDecode, PngDeclaring60000x60000In60BytesIsRefusedBeforeDecoding) {
  const Bytes file = forged_size_png();
  EXPECT_LE(file.size(), 70u);
  std::string e = error_for(file, "big.png");
  EXPECT_TRUE(contains(e, "60000x60000")) << e;
  EXPECT_TRUE(contains(e, "max_pixels")) << e;
  // Even with no max_pixels to speak of, the file is too small for what it declares.
  e = error_for(file, "big.png", {.height = 8, .width = 8, .max_pixels = int64_t{1} << 40});
  EXPECT_TRUE(contains(e, "60000x60000")) << e;
  EXPECT_TRUE(contains(e, "bytes can hold")) << e;
}

TEST(ImageDecode, BmpDeclaringAHugeSizeInAFewBytesIsRefused) {
  // A 54-byte BMP header (24-bit, uncompressed) declaring 30000 x 30000 and no pixels.
  Bytes file(54, 0);
  file[0] = 'B';
  file[1] = 'M';
  file[10] = 54;  // pixel data offset
  file[14] = 40;  // BITMAPINFOHEADER
  const uint32_t side = 30000;
  for (int i = 0; i < 4; ++i) {
    file[static_cast<size_t>(18 + i)] = static_cast<unsigned char>(side >> (8 * i));
    file[static_cast<size_t>(22 + i)] = static_cast<unsigned char>(side >> (8 * i));
  }
  file[26] = 1;   // planes
  file[28] = 24;  // bits a pixel
  std::string e = error_for(file, "big.bmp");
  EXPECT_TRUE(contains(e, "max_pixels")) << e;
  e = error_for(file, "big.bmp", {.max_pixels = int64_t{1} << 40});
  EXPECT_TRUE(contains(e, "the BMP declares 30000x30000 pixels")) << e;
}

// A valid JPEG with a Huffman table whose counts add up to 4080 (more than 256 codes)
// right after SOI: stb 2.27 overflowed its table reading it.
TEST(ImageDecode, JpegWithACorruptHuffmanTableIsAnError) {
  const Bytes good = encode_jpeg(8, 8, 3, false, pattern(8, 8, 3, true));
  Bytes dht = {0xFF, 0xC4, 0x00, 0x00, 0x00};
  for (int i = 0; i < 16; ++i) dht.push_back(0xFF);
  for (int i = 0; i < 300; ++i) dht.push_back(static_cast<unsigned char>(i));
  const size_t len = dht.size() - 2;
  dht[2] = static_cast<unsigned char>(len >> 8);
  dht[3] = static_cast<unsigned char>(len);
  Bytes file = {0xFF, 0xD8};
  file = cat(file, dht);
  file.insert(file.end(), good.begin() + 2, good.end());
  const std::string e = error_for(file, "huffman.jpg", {.height = 8, .width = 8});
  EXPECT_TRUE(contains(e, "truncated or corrupt image (libjpeg: ")) << e;
  EXPECT_TRUE(contains(e, "Huffman")) << e;
}

// Every prefix of `file` (lengths 0 .. size - 1) is skipped as bad, with a reason.
void expect_every_truncation_is_an_error(const Bytes& file, const std::string& ext, int w, int h) {
  TempDir dir;
  // A good image so that the class is not empty once the bad ones are skipped.
  dir.put("a/good.png", encode_png({.width = w, .height = h}, pattern(w, h, 3, false)));
  for (size_t n = 0; n < file.size(); ++n) {
    char name[32];
    std::snprintf(name, sizeof(name), "a/t%05zu.%s", n, ext.c_str());
    dir.put(name, Bytes(file.begin(), file.begin() + static_cast<std::ptrdiff_t>(n)));
  }
  ImageFolder ds(dir.root(), {.height = h, .width = w, .skip_bad_files = true});
  EXPECT_EQ(ds.size(), 1);
  ASSERT_EQ(ds.num_skipped(), static_cast<int64_t>(file.size()));
  for (const SkippedFile& s : ds.skipped()) EXPECT_FALSE(s.reason.empty()) << s.path;
  // Past the signature, the decoder's own reason.
  const std::string& last = ds.skipped().back().reason;
  EXPECT_TRUE(contains(last, "truncated or corrupt image")) << last;
}

TEST(ImageDecode, PngTruncatedAtEveryLengthIsAnError) {
  const int w = 12, h = 10;
  expect_every_truncation_is_an_error(
      encode_png({.width = w, .height = h}, pattern(w, h, 3, false)), "png", w, h);
  expect_every_truncation_is_an_error(
      encode_png({.width = w, .height = h, .interlaced = true}, pattern(w, h, 3, false)), "png", w,
      h);
}

TEST(ImageDecode, JpegTruncatedAtEveryLengthIsAnError) {
  const int w = 16, h = 16;
  expect_every_truncation_is_an_error(encode_jpeg(w, h, 3, false, pattern(w, h, 3, true)), "jpg",
                                      w, h);
  expect_every_truncation_is_an_error(encode_jpeg(w, h, 3, true, pattern(w, h, 3, true)), "jpg",
                                      w, h);
}

// The hostile files above, decoded in a child process whose address space is capped at
// 512 MiB above what it holds: a decoder that tried to allocate for the declared sizes
// (2 GiB for the IDAT, 10 GiB for 60000 x 60000 x 3) would fail there (bad_alloc or a
// crash) instead of giving the decode error. Also checks the peak resident size.
TEST(ImageDecode, HostileFilesNeverMakeTheDecoderAllocateTheirDeclaredSize) {
  TempDir dir;
  dir.put("a/idat.png", huge_idat_png());
  dir.put("b/big.png", forged_size_png());
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    long pages = 0;
    if (FILE* f = std::fopen("/proc/self/statm", "r")) {
      if (std::fscanf(f, "%ld", &pages) != 1) pages = 0;
      std::fclose(f);
    }
    const rlim_t cap = static_cast<rlim_t>(pages) * static_cast<rlim_t>(sysconf(_SC_PAGESIZE)) +
                       (rlim_t{512} << 20);
    const rlimit lim{cap, cap};
    if (pages == 0 || setrlimit(RLIMIT_AS, &lim) != 0) _exit(3);
    rusage before{};
    getrusage(RUSAGE_SELF, &before);
    int errors = 0;
    for (const char* cls : {"a", "b"}) {
      // One class at a time: a folder whose every file is bad is an error naming the file.
      TempDir one;
      fs::copy(fs::path(dir.root()) / cls, fs::path(one.root()) / cls);
      try {
        ImageFolder ds(one.root(), {.height = 16, .width = 16, .max_pixels = int64_t{1} << 40});
      } catch (const IOError&) {
        ++errors;
      } catch (...) {
        _exit(2);
      }
    }
    rusage after{};
    getrusage(RUSAGE_SELF, &after);
    // ru_maxrss is in KiB: at most 64 MiB more than before.
    _exit(errors == 2 && after.ru_maxrss - before.ru_maxrss < 64 * 1024 ? 0 : 1);
  }
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status)) << "the child died with signal " << WTERMSIG(status);
  EXPECT_EQ(WEXITSTATUS(status), 0);
}

}  // namespace
