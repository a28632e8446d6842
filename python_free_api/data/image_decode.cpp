// Image decoding for ImageFolder: format found from the first bytes, PNG through libpng,
// JPEG through libjpeg-turbo, BMP/GIF/TGA/PSD/HDR/PIC/PNM through stb_image, each behind
// ember's size checks, then one stb-compatible channel conversion (Note [Untrusted images]).
#include "ember/python_free_api/data/image_decode.h"

#include <algorithm>
#include <climits>
#include <csetjmp>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>

// After <cstdio>: jpeglib.h needs FILE and size_t declared.
#include <jerror.h>
#include <jpeglib.h>
#include <png.h>

// stb_image's implementation, file-static (so it can clash with nobody's copy of stb) and
// compiled without the warnings its code trips. PNG and JPEG never reach it (see the Note).
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wunused-parameter"
#pragma GCC diagnostic ignored "-Wsign-compare"
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#pragma GCC diagnostic ignored "-Wimplicit-fallthrough"
#pragma GCC diagnostic ignored "-Wunused-but-set-variable"
#pragma GCC diagnostic ignored "-Wtype-limits"
#define STB_IMAGE_STATIC
#define STB_IMAGE_IMPLEMENTATION
#define STBI_NO_PNG  // PNG and JPEG go to libpng and libjpeg-turbo, never to stb
#define STBI_NO_JPEG
#include <stb/stb_image.h>
#pragma GCC diagnostic pop

// Note [Untrusted images]
// Image folders come from strangers (downloads, scraped data sets), so every file is
// decoded as hostile input. stb_image is a convenience loader, not one hardened for such
// files: fuzzing ember's decoding found a 0xN image handed to the resizer (a heap read
// out of bounds), a 41-byte PNG whose IDAT length made stb allocate 2 GiB (max_pixels
// bounds only width x height x channels), and, in Debian's stb 2.27, a JPEG Huffman-table
// overflow (fixed upstream in 2.28) reached through stbi_info before ember's own checks.
// So PNG and JPEG, nearly every real data set, are decoded by the libraries Pillow and
// torchvision rely on and that are fuzzed continuously upstream: libpng and
// libjpeg-turbo (Debian's libpng-dev and libjpeg62-turbo-dev). stb (compiled without
// its PNG and JPEG readers) keeps only the formats nothing better is packaged for: BMP,
// GIF, TGA, PSD, HDR, PIC and binary PNM (8-bit only; its header read by ember first,
// pnm_header_problem).
// The format is found from the first bytes, never from the name: a .png holding a JPEG
// decodes as a JPEG, and a file that starts like a JPEG (FF D8) never reaches stb.
// Every decoder reads the header first; before anything the size of the image is
// allocated, ember checks
//   - both sides non-zero (no resize of an empty image, ever),
//   - width x height x max(file's, asked channels) <= max_pixels,
//   - that the file can hold what the header claims: the image's raw bytes are at most
//     kMaxExpansion (per format: deflate's 1032:1 for PNG, the best LZW, RLE or packing
//     ratio of the stb formats) times the file's size, so a 60-byte file declaring
//     60000 x 60000 is refused whatever max_pixels says,
// and bounds what the decoder itself may allocate: libpng's limits on width and height
// (png_set_user_limits), on one chunk's or decompressed text's size (chunk_malloc_max,
// from the file's size) and on the number of ancillary chunks kept; libjpeg-turbo's
// max_memory_to_use from the pixel count, and at most kMaxJpegScans progressive scans (a
// few hundred bytes of scans can otherwise cost minutes). Truncation is an error for PNG
// and JPEG (libjpeg-turbo would pad with grey and warn), as Pillow does by default.
// libpng and libjpeg-turbo report errors by longjmp: the functions that call them
// (decode_png_c, decode_jpeg_c) hold nothing with a destructor, keep their state in a
// plain struct, and free it by hand on the error path.

namespace ember::data::detail {

namespace {

constexpr size_t kMessageSize = 256;
constexpr int kMaxJpegScans = 1000;
// deflate's best ratio (zlib's documentation): a PNG's IDAT data holds at least
// raw bytes / 1032 bytes.
constexpr uint64_t kPngMaxExpansion = 1032;

enum class Status { kOk, kError, kTooLarge, kFileTooSmall };

// Decoded bytes, the file's channels, as the C-style decoders hand them back (malloc'd).
struct RawImage {
  uint32_t width = 0;
  uint32_t height = 0;
  int channels = 0;  // of `pixels`
  unsigned char* pixels = nullptr;
};

// "W x H x C = V values, more than max_pixels (M)"
std::string too_large(uint64_t w, uint64_t h, int c, int64_t max_pixels) {
  return "the image is " + std::to_string(w) + "x" + std::to_string(h) + " with " +
         std::to_string(c) + " channels = " + std::to_string(w * h * static_cast<uint64_t>(c)) +
         " values, more than max_pixels (" + std::to_string(max_pixels) + ")";
}

// Whether w x h x c <= max_pixels, without overflow (w, h < 2^32).
bool fits(uint64_t w, uint64_t h, int c, int64_t max_pixels) {
  if (w == 0 || h == 0) return true;
  const uint64_t limit = static_cast<uint64_t>(max_pixels) / static_cast<uint64_t>(c);
  return h <= limit / w;
}

// --- PNG: libpng --------------------------------------------------------------------------

struct PngJob {
  const unsigned char* data;
  size_t size;
  size_t pos;
  int64_t max_pixels;
  int want_channels;
  png_structp png;
  png_infop info;
  png_bytepp rows;
  RawImage image;
  uint64_t raw_bytes;  // the image's bytes at its own bit depth, with the filter bytes
  Status status;
  char message[kMessageSize];
};

void png_read_job(png_structp png, png_bytep out, size_t n) {
  auto* job = static_cast<PngJob*>(png_get_io_ptr(png));
  if (n > job->size - job->pos) png_error(png, "the file ends early (truncated)");
  std::memcpy(out, job->data + job->pos, n);
  job->pos += n;
}

[[noreturn]] void png_error_job(png_structp png, png_const_charp message) {
  auto* job = static_cast<PngJob*>(png_get_error_ptr(png));
  std::snprintf(job->message, sizeof(job->message), "%s", message);
  png_longjmp(png, 1);
}

void png_warning_ignore(png_structp, png_const_charp) {}

// The setjmp frame: no object with a destructor lives here (Note [Untrusted images]).
void decode_png_c(PngJob* job) {
  job->png = png_create_read_struct(PNG_LIBPNG_VER_STRING, job, png_error_job,
                                    png_warning_ignore);
  if (job->png == nullptr) {
    std::snprintf(job->message, sizeof(job->message), "cannot create a PNG reader");
    job->status = Status::kError;
    return;
  }
  job->info = png_create_info_struct(job->png);
  if (job->info == nullptr) {
    png_destroy_read_struct(&job->png, nullptr, nullptr);
    std::snprintf(job->message, sizeof(job->message), "cannot create a PNG reader");
    job->status = Status::kError;
    return;
  }
  if (setjmp(png_jmpbuf(job->png))) {
    png_destroy_read_struct(&job->png, &job->info, nullptr);
    std::free(job->rows);
    std::free(job->image.pixels);
    job->rows = nullptr;
    job->image.pixels = nullptr;
    if (job->status == Status::kOk) job->status = Status::kError;
    return;
  }
  png_set_read_fn(job->png, job, png_read_job);
  // A side is at most max_pixels; libpng's own cap is 2^31 - 1.
  const auto side = static_cast<png_uint_32>(std::min<int64_t>(job->max_pixels, 0x7fffffff));
  png_set_user_limits(job->png, side, side);
  // One chunk (or decompressed text or profile) of at most 1 MiB + 4x the file's size.
  png_set_chunk_malloc_max(job->png, (size_t{1} << 20) + 4 * job->size);
  png_set_chunk_cache_max(job->png, 128);
  png_read_info(job->png, job->info);

  const png_uint_32 w = png_get_image_width(job->png, job->info);
  const png_uint_32 h = png_get_image_height(job->png, job->info);
  const int bit_depth = png_get_bit_depth(job->png, job->info);
  const int file_channels = png_get_channels(job->png, job->info);  // 1 for a palette
  const uint64_t row_bytes =
      1 + (static_cast<uint64_t>(w) * static_cast<uint64_t>(bit_depth * file_channels) + 7) / 8;
  // Palette to RGB, grey of 1, 2 or 4 bits to 8, tRNS to alpha, 16 bits to the high byte
  // (as stb does), Adam7 passes merged.
  png_set_expand(job->png);
  png_set_strip_16(job->png);
  png_set_interlace_handling(job->png);
  png_read_update_info(job->png, job->info);
  job->image.width = w;
  job->image.height = h;
  job->image.channels = png_get_channels(job->png, job->info);
  const int c = std::max(job->image.channels, job->want_channels);
  if (w == 0 || h == 0 || !fits(w, h, c, job->max_pixels)) {
    job->status = Status::kTooLarge;
    png_error(job->png, "too large");
  }
  // raw bytes = h * row_bytes > 1032 * size, without overflow.
  if (row_bytes > kPngMaxExpansion * job->size / h) {
    job->raw_bytes = row_bytes * h;
    job->status = Status::kFileTooSmall;
    png_error(job->png, "file too small");
  }
  const size_t stride = static_cast<size_t>(w) * static_cast<size_t>(job->image.channels);
  if (png_get_rowbytes(job->png, job->info) != stride) {
    png_error(job->png, "unexpected row size after the transforms");
  }
  job->image.pixels = static_cast<unsigned char*>(std::malloc(stride * h));
  job->rows = static_cast<png_bytepp>(std::malloc(sizeof(png_bytep) * h));
  if (job->image.pixels == nullptr || job->rows == nullptr) png_error(job->png, "out of memory");
  for (png_uint_32 y = 0; y < h; ++y) job->rows[y] = job->image.pixels + y * stride;
  png_read_image(job->png, job->rows);
  png_read_end(job->png, nullptr);  // the trailing chunks' CRCs: a truncated file fails
  png_destroy_read_struct(&job->png, &job->info, nullptr);
  std::free(job->rows);
  job->rows = nullptr;
  job->status = Status::kOk;
}

std::string decode_png(const unsigned char* data, size_t size, int want, int64_t max_pixels,
                       RawImage& out) {
  PngJob job{};
  job.data = data;
  job.size = size;
  job.max_pixels = max_pixels;
  job.want_channels = want;
  decode_png_c(&job);
  switch (job.status) {
    case Status::kOk:
      out = job.image;
      return "";
    case Status::kTooLarge:
      if (job.image.width == 0 || job.image.height == 0) {
        return "the image is " + std::to_string(job.image.width) + "x" +
               std::to_string(job.image.height) + ": a side is zero";
      }
      return too_large(job.image.width, job.image.height,
                       std::max(job.image.channels, want), max_pixels);
    case Status::kFileTooSmall:
      return "the PNG declares " + std::to_string(job.image.width) + "x" +
             std::to_string(job.image.height) + " pixels (" + std::to_string(job.raw_bytes) +
             " bytes of image data), more than its " + std::to_string(size) +
             " bytes can hold at deflate's best ratio (1032:1): a forged or broken header";
    case Status::kError:
      break;
  }
  return std::string("truncated or corrupt image (libpng: ") + job.message + ")";
}

// --- JPEG: libjpeg-turbo ----------------------------------------------------------------

struct JpegJob;

struct JpegErrors {
  jpeg_error_mgr pub;  // first: libjpeg sees a jpeg_error_mgr*
  std::jmp_buf jump;
  JpegJob* job;
};

struct JpegJob {
  const unsigned char* data;
  size_t size;
  int64_t max_pixels;
  int want_channels;
  jpeg_decompress_struct cinfo;
  JpegErrors errors;
  jpeg_progress_mgr progress;
  RawImage image;
  int channels_after;  // after CMYK -> RGB
  Status status;
  char message[kMessageSize];
};

[[noreturn]] void jpeg_error_job(j_common_ptr cinfo) {
  auto* errors = reinterpret_cast<JpegErrors*>(cinfo->err);
  char text[JMSG_LENGTH_MAX];
  (*cinfo->err->format_message)(cinfo, text);
  std::snprintf(errors->job->message, sizeof(errors->job->message), "%s", text);
  std::longjmp(errors->jump, 1);
}

// Warnings pass, except the end of the data: libjpeg would pad the image with grey.
void jpeg_message_job(j_common_ptr cinfo, int level) {
  if (level < 0) {
    if (cinfo->err->msg_code == JWRN_JPEG_EOF) jpeg_error_job(cinfo);
    ++cinfo->err->num_warnings;
  }
}

void jpeg_progress_job(j_common_ptr cinfo) {
  auto* d = reinterpret_cast<j_decompress_ptr>(cinfo);
  if (d->input_scan_number > kMaxJpegScans) {
    auto* errors = reinterpret_cast<JpegErrors*>(cinfo->err);
    std::snprintf(errors->job->message, sizeof(errors->job->message),
                  "more than %d progressive scans", kMaxJpegScans);
    std::longjmp(errors->jump, 1);
  }
}

// The setjmp frame: no object with a destructor lives here (Note [Untrusted images]).
void decode_jpeg_c(JpegJob* job) {
  job->cinfo.err = jpeg_std_error(&job->errors.pub);
  job->errors.pub.error_exit = jpeg_error_job;
  job->errors.pub.emit_message = jpeg_message_job;
  job->errors.job = job;
  if (setjmp(job->errors.jump)) {
    jpeg_destroy_decompress(&job->cinfo);
    std::free(job->image.pixels);
    job->image.pixels = nullptr;
    if (job->status == Status::kOk) job->status = Status::kError;
    return;
  }
  jpeg_create_decompress(&job->cinfo);
  jpeg_decompress_struct& cinfo = job->cinfo;
  cinfo.mem->max_memory_to_use = 16L << 20;  // the markers' tables, until the size is known
  job->progress.progress_monitor = jpeg_progress_job;
  cinfo.progress = &job->progress;
  jpeg_mem_src(&cinfo, job->data, static_cast<unsigned long>(job->size));
  if (jpeg_read_header(&cinfo, TRUE) != JPEG_HEADER_OK) {
    ERREXIT(&cinfo, JERR_NO_IMAGE);
  }
  int channels = 3;
  job->channels_after = 3;
  if (cinfo.jpeg_color_space == JCS_GRAYSCALE) {
    cinfo.out_color_space = JCS_GRAYSCALE;
    channels = job->channels_after = 1;
  } else if (cinfo.jpeg_color_space == JCS_CMYK || cinfo.jpeg_color_space == JCS_YCCK) {
    cinfo.out_color_space = JCS_CMYK;  // converted to RGB as stb does
    channels = 4;
  } else {
    cinfo.out_color_space = JCS_RGB;
  }
  job->image.width = cinfo.image_width;
  job->image.height = cinfo.image_height;
  job->image.channels = channels;
  const int c = std::max(channels, job->want_channels);
  if (cinfo.image_width == 0 || cinfo.image_height == 0 ||
      !fits(cinfo.image_width, cinfo.image_height, c, job->max_pixels)) {
    job->status = Status::kTooLarge;
    std::longjmp(job->errors.jump, 1);
  }
  // The decoder's working memory (a progressive image's coefficients take 2 bytes a
  // value, padded to whole blocks): 8 bytes a value and 16 MiB.
  const uint64_t values = static_cast<uint64_t>(cinfo.image_width) * cinfo.image_height *
                          static_cast<uint64_t>(channels);
  cinfo.mem->max_memory_to_use =
      static_cast<long>(std::min<uint64_t>((uint64_t{16} << 20) + 8 * values, LONG_MAX));
  jpeg_start_decompress(&cinfo);
  if (cinfo.output_width != cinfo.image_width || cinfo.output_height != cinfo.image_height ||
      cinfo.output_components != channels) {
    std::snprintf(job->message, sizeof(job->message), "unexpected output size");
    std::longjmp(job->errors.jump, 1);
  }
  const size_t stride = static_cast<size_t>(cinfo.output_width) * static_cast<size_t>(channels);
  job->image.pixels = static_cast<unsigned char*>(std::malloc(stride * cinfo.output_height));
  if (job->image.pixels == nullptr) ERREXIT1(&cinfo, JERR_OUT_OF_MEMORY, 0);
  while (cinfo.output_scanline < cinfo.output_height) {
    JSAMPROW row = job->image.pixels + static_cast<size_t>(cinfo.output_scanline) * stride;
    if (jpeg_read_scanlines(&cinfo, &row, 1) != 1) ERREXIT(&cinfo, JERR_INPUT_EOF);
  }
  jpeg_finish_decompress(&cinfo);  // reads up to EOI: a truncated file fails
  jpeg_destroy_decompress(&cinfo);
  job->status = Status::kOk;
}

// stb's (x * y) / 255, rounded, for CMYK.
unsigned char blinn(unsigned x, unsigned y) {
  const unsigned t = x * y + 128;
  return static_cast<unsigned char>((t + (t >> 8)) >> 8);
}

std::string decode_jpeg(const unsigned char* data, size_t size, int want, int64_t max_pixels,
                        RawImage& out) {
  auto job = std::make_unique<JpegJob>();  // zeroed; a few KiB
  job->data = data;
  job->size = size;
  job->max_pixels = max_pixels;
  job->want_channels = want;
  decode_jpeg_c(job.get());
  switch (job->status) {
    case Status::kOk:
      break;
    case Status::kTooLarge:
      if (job->image.width == 0 || job->image.height == 0) {
        return "the image is " + std::to_string(job->image.width) + "x" +
               std::to_string(job->image.height) + ": a side is zero";
      }
      return too_large(job->image.width, job->image.height,
                       std::max(job->image.channels, want), max_pixels);
    case Status::kFileTooSmall:
    case Status::kError:
      return std::string("truncated or corrupt image (libjpeg: ") + job->message + ")";
  }
  out = job->image;
  if (out.channels == 4) {  // Adobe CMYK (stored inverted) -> RGB, in place
    const size_t n = static_cast<size_t>(out.width) * out.height;
    for (size_t p = 0; p < n; ++p) {
      const unsigned char* s = out.pixels + 4 * p;
      const unsigned char r = blinn(s[0], s[3]), g = blinn(s[1], s[3]), b = blinn(s[2], s[3]);
      out.pixels[3 * p] = r;
      out.pixels[3 * p + 1] = g;
      out.pixels[3 * p + 2] = b;
    }
    out.channels = 3;
  }
  return "";
}

// --- the rest: stb_image -----------------------------------------------------------------

struct StbFormat {
  const char* name;
  // Most decoded values (width x height x file channels) one byte of the file can hold.
  uint64_t max_expansion;
};

// From the first bytes, as stb tells them apart; TGA has no signature.
StbFormat stb_format(const unsigned char* d, size_t n) {
  auto starts = [&](const char* magic, size_t len) {
    return n >= len && std::memcmp(d, magic, len) == 0;
  };
  if (starts("BM", 2)) return {"BMP", 32};           // uncompressed: 8 pixels a byte, RGBA
  if (starts("GIF8", 4)) return {"GIF", 12000};      // LZW: 4096 bytes a 12-bit code, RGBA
  if (starts("8BPS", 4)) return {"PSD", 64};         // PackBits: 128 bytes from 2
  if (starts("#?", 2)) return {"HDR", 256};          // RLE: 127 values from 2, 4 channels
  if (starts("\x53\x80\xF6\x34", 4)) return {"PIC", 65536};  // runs of up to 65535 pixels
  if (starts("P5", 2) || starts("P6", 2)) return {"PNM", 1};  // raw samples
  return {"TGA", 512};  // RLE: 128 pixels from a 2-byte packet, RGBA
}

// Binary PNM's header (P5/P6, width, height, maxval, separated by whitespace and '#'
// comments), read as stb_image reads it, before stb does: Debian's stb 2.27 parses the
// numbers into an int without an overflow check (undefined behaviour for "P6 99999999999"),
// and decodes a 16-bit file (maxval > 255) into a buffer half the size it then reads
// (a heap overflow: both found by fuzzing, tests/fuzz/regressions/image_decode). Returns ""
// when stb may read the file, else why not.
std::string pnm_header_problem(const unsigned char* d, size_t n) {
  size_t i = 2;  // past "P5" / "P6"
  const auto space = [](unsigned char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r';
  };
  const char* const what[] = {"width", "height", "maximum value"};
  int64_t maxval = 0;
  for (const char* field : what) {
    for (;;) {  // whitespace, then a comment to the end of its line, as often as they come
      while (i < n && space(d[i])) ++i;
      if (i >= n || d[i] != '#') break;
      while (i < n && d[i] != '\n' && d[i] != '\r') ++i;
    }
    int64_t value = 0;
    for (; i < n && d[i] >= '0' && d[i] <= '9'; ++i) {
      value = value * 10 + (d[i] - '0');
      if (value > INT_MAX) {
        return std::string("not a decodable image (the PNM header's ") + field +
               " has more digits than fit in an int)";
      }
    }
    maxval = value;
  }
  if (maxval > 255) {
    return "16-bit PNM images (maximum value " + std::to_string(maxval) +
           ") are not supported; convert the file to 8 bits";
  }
  return "";
}

// Run-length Radiance HDR data walked as stb_image walks it, before stb does: Debian's stb
// 2.27 loops forever on a scanline that the file ends inside (at the end it reads zeros, a
// count of 0 is a copy of 0 bytes, and the scanline never fills: found by fuzzing,
// tests/fuzz/regressions/image_decode). Returns "" when stb's walk ends, else why not.
std::string hdr_problem(const unsigned char* d, size_t n, int64_t width, int64_t height) {
  size_t i = 0;
  // One header line as stbi__hdr_gettoken reads it; true when it is empty (its first
  // byte '\n' or NUL, or the data is over).
  const auto line = [&] {
    const bool empty = i >= n || d[i] == '\n' || d[i] == 0;
    while (i < n && d[i] != '\n') ++i;
    if (i < n) ++i;
    return empty;
  };
  line();  // #?RADIANCE
  while (!line()) {
  }
  line();  // -Y <height> +X <width>
  if (width < 8 || width >= 32768) return "";  // stored flat: stb's loop is bounded
  const auto get = [&]() -> int { return i < n ? d[i++] : 0; };  // stb reads 0 past the end
  for (int64_t j = 0; j < height; ++j) {
    const int c1 = get(), c2 = get();
    int len = get();
    if (c1 != 2 || c2 != 2 || (len & 0x80)) return "";  // stb reads the rest flat: bounded
    len = (len << 8) | get();
    if (len != width) return "";  // stb refuses the scanline
    for (int k = 0; k < 4; ++k) {
      for (int64_t x = 0; x < width;) {
        const bool at_end = i >= n;
        int count = get();
        if (count > 128) {
          get();
          count -= 128;
        } else if (count == 0 && at_end) {
          return "truncated HDR image: the data ends inside scanline " + std::to_string(j);
        } else {
          i = std::min(n, i + static_cast<size_t>(count));
        }
        if (count > width - x) return "";  // stb refuses the run
        x += count;
      }
    }
  }
  return "";
}

std::string decode_stb(const unsigned char* data, size_t size, int want, int64_t max_pixels,
                       RawImage& out) {
  const int n = static_cast<int>(size);
  if (size >= 2 && data[0] == 'P' && (data[1] == '5' || data[1] == '6')) {
    if (std::string why = pnm_header_problem(data, size); !why.empty()) return why;
  }
  int w = 0, h = 0, file_channels = 0;
  if (stbi_info_from_memory(data, n, &w, &h, &file_channels) == 0) {
    const std::string reason = stbi_failure_reason();
    if (reason == "unknown image type") {
      return "not a decodable image (unknown image type: the first bytes are none of PNG, "
             "JPEG, BMP, GIF, PSD, HDR, PIC, PNM or TGA)";
    }
    return "not a decodable image (stb_image: " + reason + ")";
  }
  const StbFormat format = stb_format(data, size);
  const int c = std::max(file_channels, want);
  if (w <= 0 || h <= 0) {
    return "the image is " + std::to_string(w) + "x" + std::to_string(h) + ": a side is zero";
  }
  if (file_channels < 1 || file_channels > 4) {
    return "not a decodable image (stb_image: " + std::to_string(file_channels) + " channels)";
  }
  if (!fits(static_cast<uint64_t>(w), static_cast<uint64_t>(h), c, max_pixels)) {
    return too_large(static_cast<uint64_t>(w), static_cast<uint64_t>(h), c, max_pixels);
  }
  const uint64_t values = static_cast<uint64_t>(w) * static_cast<uint64_t>(h) *
                          static_cast<uint64_t>(file_channels);
  if (values / format.max_expansion > size) {
    return std::string("the ") + format.name + " declares " + std::to_string(w) + "x" +
           std::to_string(h) + " pixels, more than its " + std::to_string(size) +
           " bytes can hold: a forged or broken header";
  }
  if (std::strcmp(format.name, "HDR") == 0) {
    if (std::string why = hdr_problem(data, size, w, h); !why.empty()) return why;
  }
  int w2 = 0, h2 = 0, c2 = 0;
  unsigned char* pixels = stbi_load_from_memory(data, n, &w2, &h2, &c2, want);
  if (pixels == nullptr) {
    return std::string("truncated or corrupt image (stb_image: ") + stbi_failure_reason() + ")";
  }
  if (w2 != w || h2 != h) {
    stbi_image_free(pixels);
    return "not a decodable image (stb_image: the header says " + std::to_string(w) + "x" +
           std::to_string(h) + ", the decoder " + std::to_string(w2) + "x" + std::to_string(h2) +
           ")";
  }
  out.width = static_cast<uint32_t>(w);
  out.height = static_cast<uint32_t>(h);
  out.channels = want;  // stb converted already
  out.pixels = pixels;  // stbi_image_free is free() (STBI_FREE's default)
  return "";
}

// `src` of `from` channels to `to` channels into `dst`, as stb's stbi__convert_format.
void convert_channels(const unsigned char* src, int from, unsigned char* dst, int to, size_t n) {
  auto grey = [](const unsigned char* p) {
    return static_cast<unsigned char>((p[0] * 77 + p[1] * 150 + p[2] * 29) >> 8);
  };
  for (size_t i = 0; i < n; ++i, src += from, dst += to) {
    const bool colour = from >= 3;
    const unsigned char y = colour ? grey(src) : src[0];
    const unsigned char a = (from == 2 || from == 4) ? src[from - 1] : 255;
    switch (to) {
      case 1:
        dst[0] = y;
        break;
      case 2:
        dst[0] = y;
        dst[1] = a;
        break;
      default:  // 3 or 4
        dst[0] = colour ? src[0] : y;
        dst[1] = colour ? src[1] : y;
        dst[2] = colour ? src[2] : y;
        if (to == 4) dst[3] = a;
        break;
    }
  }
}

bool is_png(const unsigned char* d, size_t n) {
  return n >= 8 && std::memcmp(d, "\x89PNG\r\n\x1a\n", 8) == 0;
}

// FF D8: anything starting so is libjpeg's (stb would skip bytes looking for markers).
bool is_jpeg(const unsigned char* d, size_t n) { return n >= 2 && d[0] == 0xFF && d[1] == 0xD8; }

}  // namespace

std::string decode_image_bytes(const unsigned char* data, size_t size, int channels,
                               int64_t max_pixels, DecodedImage& out) {
  if (size == 0) return "not a decodable image (the file is empty)";
  if (size > static_cast<size_t>(INT_MAX)) return "the file is larger than 2 GiB";
  if (channels < 1 || channels > 4 || max_pixels < 1) {
    return "bad decoding options: channels " + std::to_string(channels) + ", max_pixels " +
           std::to_string(max_pixels);
  }
  RawImage raw;
  std::string err;
  if (is_png(data, size)) {
    err = decode_png(data, size, channels, max_pixels, raw);
  } else if (is_jpeg(data, size)) {
    err = decode_jpeg(data, size, channels, max_pixels, raw);
  } else {
    err = decode_stb(data, size, channels, max_pixels, raw);
  }
  if (!err.empty()) return err;
  std::unique_ptr<unsigned char, void (*)(void*)> owned(raw.pixels, std::free);
  const size_t n = static_cast<size_t>(raw.width) * raw.height;
  out.width = raw.width;
  out.height = raw.height;
  out.channels = channels;
  out.pixels.resize(n * static_cast<size_t>(channels));
  if (raw.channels == channels) {
    std::memcpy(out.pixels.data(), raw.pixels, out.pixels.size());
  } else {
    convert_channels(raw.pixels, raw.channels, out.pixels.data(), channels, n);
  }
  return "";
}

}  // namespace ember::data::detail
