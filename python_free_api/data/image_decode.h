// Image decoding for ImageFolder (internal): PNG through libpng, JPEG through
// libjpeg-turbo, the other formats ember reads through stb_image, each behind ember's own
// size checks (Note [Untrusted images] in image_decode.cpp).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace ember::data::detail {

struct DecodedImage {
  int64_t width = 0;
  int64_t height = 0;
  int channels = 0;             // as asked for: 1, 2, 3 or 4
  std::vector<uint8_t> pixels;  // [height, width, channels], one byte a value
};

// Decodes the `size` bytes at `data` (the format found from its first bytes, never from a
// file name) to `channels` values a pixel, converting as stb_image does (grey from RGB as
// (77 r + 150 g + 29 b) >> 8, alpha 255 when the file has none, 16-bit samples to their
// high byte). Refuses an image with a zero side, one of more than max_pixels values
// (width * height * the larger of the file's and the asked channels), and one whose
// header claims more pixels than its bytes can hold, all before the decoder allocates.
// Returns "" on success, else why the bytes are not a decodable image; never throws for
// bad bytes.
std::string decode_image_bytes(const unsigned char* data, size_t size, int channels,
                               int64_t max_pixels, DecodedImage& out);

}  // namespace ember::data::detail
