// Image folders: class discovery, the stored bytes and the float32 batches made from
// them, label modes, resizing, bad files (errors naming the file, or skipped), the memory
// and size caps, and the PNG export round trip.
#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "ember/core/base/error.h"
#include "ember/core/tensor.h"
#include "ember/python_free_api/data/dataloader.h"
#include "ember/python_free_api/data/fashion_mnist.h"
#include "ember/python_free_api/data/image_folder.h"

#include "support/temp_dir.h"

// The test's own copy of the writer (the library's is file-static).
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#pragma GCC diagnostic ignored "-Wsign-compare"
#define STB_IMAGE_WRITE_STATIC
#define STB_IMAGE_WRITE_IMPLEMENTATION
#include <stb/stb_image_write.h>
#pragma GCC diagnostic pop

namespace {

// Built with AddressSanitizer or ThreadSanitizer, whose allocators hold freed memory back
// (ASan's quarantine), so resident memory says little about what the program keeps.
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
constexpr bool kSanitizedHeap = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
constexpr bool kSanitizedHeap = true;
#else
constexpr bool kSanitizedHeap = false;
#endif
#else
constexpr bool kSanitizedHeap = false;
#endif

namespace fs = std::filesystem;
using namespace ember;
using namespace ember::data;

// A fresh directory for the test, named for this file.
struct TempDir : ember::testing::TempDir {
  TempDir() : ember::testing::TempDir("ember_image_folder") {}
};

// A w x h image of `comp` channels, every pixel `rgba` (first `comp` values used).
std::vector<unsigned char> solid(int w, int h, int comp, std::vector<unsigned char> rgba) {
  std::vector<unsigned char> px;
  for (int i = 0; i < w * h; ++i) px.insert(px.end(), rgba.begin(), rgba.begin() + comp);
  return px;
}

// Pixels that do not compress well, so truncating the file cuts into the image data.
std::vector<unsigned char> noise(int w, int h, int comp) {
  std::vector<unsigned char> px(static_cast<size_t>(w * h * comp));
  uint32_t s = 12345;
  for (auto& v : px) {
    s = s * 1664525u + 1013904223u;
    v = static_cast<unsigned char>(s >> 24);
  }
  return px;
}

void write_png(const std::string& path, int w, int h, int comp,
               const std::vector<unsigned char>& px) {
  ASSERT_NE(stbi_write_png(path.c_str(), w, h, comp, px.data(), w * comp), 0) << path;
}

void write_text(const std::string& path, const std::string& text) {
  std::ofstream(path, std::ios::binary) << text;
}

void truncate_file(const std::string& path, double keep) {
  const auto size = fs::file_size(path);
  fs::resize_file(path, static_cast<uintmax_t>(static_cast<double>(size) * keep));
}

std::vector<float> values(const Tensor& t) { return t.contiguous().to_vector<float>(); }

bool contains(const std::string& s, const std::string& part) {
  return s.find(part) != std::string::npos;
}

// Indices 0..n-1.
std::vector<int64_t> all_indices(int64_t n) {
  std::vector<int64_t> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) v[static_cast<size_t>(i)] = i;
  return v;
}

// A folder of 1x1 grey images: class c holds counts[c] files, and the k-th file of the
// folder (in sample order) has grey value 10 * k + 5.
void write_grey_classes(const TempDir& dir, const std::vector<int>& counts) {
  int k = 0;
  for (size_t c = 0; c < counts.size(); ++c) {
    for (int f = 0; f < counts[c]; ++f, ++k) {
      write_png(dir.file(std::string(1, static_cast<char>('a' + c)) + "/" + std::to_string(f) +
                         ".png"),
                1, 1, 1, {static_cast<unsigned char>(10 * k + 5)});
    }
  }
}

ImageFolderOptions one_grey_pixel(LabelMode mode) {
  return {.height = 1, .width = 1, .channels = 1, .rescale = 1.0, .label_mode = mode};
}

// get_batch(indices) of a folder made by write_grey_classes(counts), read in `mode`.
Batch grey_batch(const std::vector<int>& counts, LabelMode mode,
                 const std::vector<int64_t>& indices) {
  TempDir dir;
  write_grey_classes(dir, counts);
  return ImageFolder(dir.path().string(), one_grey_pixel(mode)).get_batch(indices);
}

TEST(ImageFolder, ClassesAreTheSortedSubFoldersAndLabelsFollowThem) {
  TempDir dir;
  const auto red = solid(2, 2, 3, {255, 0, 0});
  write_png(dir.file("dog/x.png"), 2, 2, 3, red);
  write_png(dir.file("cat/b.png"), 2, 2, 3, red);
  write_png(dir.file("cat/a.PNG"), 2, 2, 3, red);
  write_png(dir.file(".hidden/z.png"), 2, 2, 3, red);
  write_text(dir.file("dog/notes.txt"), "not an image, and not named like one");
  write_text(dir.file("README"), "a file at the root");
  ImageFolder ds(dir.path().string(), {.height = 2, .width = 2});
  EXPECT_EQ(ds.classes(), (std::vector<std::string>{"cat", "dog"}));
  EXPECT_EQ(ds.size(), 3);
  EXPECT_EQ(ds.labels().to_vector<int64_t>(), (std::vector<int64_t>{0, 0, 1}));
  ASSERT_EQ(ds.files().size(), 3u);
  EXPECT_TRUE(contains(ds.files()[0], "cat/a.PNG"));
  EXPECT_TRUE(contains(ds.files()[1], "cat/b.png"));
  EXPECT_TRUE(contains(ds.files()[2], "dog/x.png"));
  EXPECT_EQ(ds.num_skipped(), 0);
}

TEST(ImageFolder, RedPngGivesOneInChannelZeroAfterRescale) {
  TempDir dir;
  write_png(dir.file("red/r.png"), 2, 2, 3, solid(2, 2, 3, {255, 0, 0}));
  ImageFolder ds(dir.path().string(), {.height = 2, .width = 2});
  ASSERT_EQ(ds.images().shape(), (Shape{1, 3, 2, 2}));
  EXPECT_EQ(ds.images().dtype(), kFloat32);
  EXPECT_EQ(values(ds.images()), (std::vector<float>{1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0}));
}

TEST(ImageFolder, ConvertsChannelsAndAppliesRescale) {
  TempDir dir;
  write_png(dir.file("grey/g.png"), 3, 1, 1, solid(3, 1, 1, {51}));
  ImageFolder rgb(dir.path().string(), {.height = 1, .width = 3, .rescale = 1.0});
  EXPECT_EQ(values(rgb.images()), std::vector<float>(9, 51.0f));  // grey spread to R, G, B
  ImageFolder grey(dir.path().string(), {.height = 1, .width = 3, .channels = 1});
  ASSERT_EQ(grey.images().shape(), (Shape{1, 1, 1, 3}));
  EXPECT_FLOAT_EQ(values(grey.images())[0], 51.0f / 255.0f);
}

TEST(ImageFolder, ResizesEveryImageToTheRequestedSize) {
  TempDir dir;
  write_png(dir.file("a/big.png"), 40, 30, 3, solid(40, 30, 3, {0, 255, 0}));
  write_png(dir.file("a/small.png"), 5, 4, 3, solid(5, 4, 3, {0, 0, 255}));
  std::vector<unsigned char> blue = solid(16, 16, 3, {0, 0, 255});
  ASSERT_NE(stbi_write_jpg(dir.file("b/photo.jpg").c_str(), 16, 16, 3, blue.data(), 95), 0);
  ImageFolder ds(dir.path().string(), {.height = 12, .width = 10});
  ASSERT_EQ(ds.images().shape(), (Shape{3, 3, 12, 10}));
  const std::vector<float> v = values(ds.images());
  const int64_t plane = 12 * 10;
  for (int64_t p = 0; p < plane; ++p) {
    // a/big.png: green; a/small.png: blue; b/photo.jpg: blue, up to JPEG's error.
    EXPECT_NEAR(v[static_cast<size_t>(1 * plane + p)], 1.0f, 1e-6);
    EXPECT_NEAR(v[static_cast<size_t>(3 * plane + p)], 0.0f, 1e-6);
    EXPECT_NEAR(v[static_cast<size_t>(5 * plane + p)], 1.0f, 1e-6);
    EXPECT_NEAR(v[static_cast<size_t>(8 * plane + p)], 1.0f, 0.05);
    EXPECT_NEAR(v[static_cast<size_t>(6 * plane + p)], 0.0f, 0.05);
  }
}

TEST(ImageFolder, TruncatedPngGivesIOErrorNamingTheFile) {
  TempDir dir;
  write_png(dir.file("a/good.png"), 4, 4, 3, solid(4, 4, 3, {1, 2, 3}));
  const std::string bad = dir.file("a/truncated.png");
  write_png(bad, 64, 64, 3, noise(64, 64, 3));
  truncate_file(bad, 0.5);
  try {
    ImageFolder ds(dir.path().string(), {.height = 4, .width = 4});
    FAIL() << "expected IOError";
  } catch (const IOError& e) {
    EXPECT_TRUE(contains(e.what(), bad)) << e.what();
    EXPECT_TRUE(contains(e.what(), "truncated or corrupt image (libpng: ")) << e.what();
  }
}

TEST(ImageFolder, TextFileNamedPngGivesIOErrorSayingUnknownImageType) {
  TempDir dir;
  write_png(dir.file("a/good.png"), 4, 4, 3, solid(4, 4, 3, {1, 2, 3}));
  const std::string bad = dir.file("a/not_really.png");
  write_text(bad, "this is plain text, not a PNG\n");
  try {
    ImageFolder ds(dir.path().string(), {.height = 4, .width = 4});
    FAIL() << "expected IOError";
  } catch (const IOError& e) {
    EXPECT_TRUE(contains(e.what(), bad)) << e.what();
    EXPECT_TRUE(contains(e.what(), "unknown image type")) << e.what();
  }
}

TEST(ImageFolder, SkipBadFilesSkipsAndCountsThem) {
  TempDir dir;
  write_png(dir.file("a/1.png"), 4, 4, 3, solid(4, 4, 3, {255, 255, 255}));
  const std::string truncated = dir.file("a/2.png");
  write_png(truncated, 64, 64, 3, noise(64, 64, 3));
  truncate_file(truncated, 0.5);
  const std::string text = dir.file("b/0.png");
  write_text(text, "hello");
  write_png(dir.file("b/1.png"), 4, 4, 3, solid(4, 4, 3, {0, 0, 0}));
  write_png(dir.file("b/2.png"), 4, 4, 3, solid(4, 4, 3, {255, 255, 255}));
  ImageFolder ds(dir.path().string(), {.height = 4, .width = 4, .skip_bad_files = true});
  EXPECT_EQ(ds.num_skipped(), 2);
  ASSERT_EQ(ds.skipped().size(), 2u);
  EXPECT_EQ(ds.skipped()[0].path, truncated);
  EXPECT_EQ(ds.skipped()[1].path, text);
  EXPECT_FALSE(ds.skipped()[1].reason.empty());
  EXPECT_EQ(ds.size(), 3);
  EXPECT_EQ(ds.labels().to_vector<int64_t>(), (std::vector<int64_t>{0, 1, 1}));
  // The kept images moved up over the skipped ones: white, black, white.
  const std::vector<float> v = values(ds.images());
  const size_t image = 3 * 4 * 4;
  EXPECT_EQ(v[0], 1.0f);
  EXPECT_EQ(v[image], 0.0f);
  EXPECT_EQ(v[2 * image], 1.0f);
}

TEST(ImageFolder, ChecksMaxPixelsBeforeDecoding) {
  TempDir dir;
  const std::string big = dir.file("a/big.png");
  write_png(big, 64, 64, 3, solid(64, 64, 3, {9, 9, 9}));
  try {
    ImageFolder ds(dir.path().string(), {.height = 8, .width = 8, .max_pixels = 1000});
    FAIL() << "expected IOError";
  } catch (const IOError& e) {
    EXPECT_TRUE(contains(e.what(), big)) << e.what();
    EXPECT_TRUE(contains(e.what(), "max_pixels")) << e.what();
  }
}

TEST(ImageFolder, EmptyOrMissingFoldersGiveClearErrors) {
  TempDir dir;
  try {
    ImageFolder ds(dir.path().string());
    FAIL() << "expected IOError";
  } catch (const IOError& e) {
    EXPECT_TRUE(contains(e.what(), "no class sub-folders")) << e.what();
  }
  write_png(dir.file("a/1.png"), 2, 2, 3, solid(2, 2, 3, {0, 0, 0}));
  write_text(dir.file("b/notes.txt"), "no images here");
  try {
    ImageFolder ds(dir.path().string());
    FAIL() << "expected IOError";
  } catch (const IOError& e) {
    EXPECT_TRUE(contains(e.what(), (dir.path() / "b").string())) << e.what();
    EXPECT_TRUE(contains(e.what(), "no image files")) << e.what();
  }
  EXPECT_THROW(ImageFolder((dir.path() / "missing").string()), IOError);
  EXPECT_THROW(ImageFolder(dir.path().string(), {.channels = 5}), Error);
}

TEST(ImageFolder, MaxImagesTakesEvenlySpacedFilesSoEveryClassKeepsItsShare) {
  TempDir dir;
  // 12 files in sample order: a/0..a/5, b/0..b/2, c/0..c/2; file i has grey value 10 * i.
  const std::vector<std::pair<std::string, int>> counts = {{"a", 6}, {"b", 3}, {"c", 3}};
  int i = 0;
  for (const auto& [cls, count] : counts) {
    for (int k = 0; k < count; ++k, ++i) {
      write_png(dir.file(cls + "/" + std::to_string(k) + ".png"), 1, 1, 1,
                solid(1, 1, 1, {static_cast<unsigned char>(10 * i)}));
    }
  }
  const ImageFolderOptions one_pixel{.height = 1, .width = 1, .channels = 1, .rescale = 1.0};
  ImageFolderOptions four = one_pixel;
  four.max_images = 4;
  ImageFolder ds(dir.path().string(), four);
  // Files floor(k * 12 / 4) = 0, 3, 6, 9; the first four would all be class a.
  EXPECT_EQ(ds.size(), 4);
  EXPECT_EQ(values(ds.images()), (std::vector<float>{0, 30, 60, 90}));
  EXPECT_EQ(ds.labels().to_vector<int64_t>(), (std::vector<int64_t>{0, 0, 1, 2}));
  EXPECT_EQ(ds.classes(), (std::vector<std::string>{"a", "b", "c"}));
  ASSERT_EQ(ds.files().size(), 4u);
  EXPECT_TRUE(contains(ds.files()[2], "b/0.png"));

  // A class left without images still counts, so labels match a full read.
  ImageFolderOptions one = one_pixel;
  one.max_images = 1;
  ImageFolder first(dir.path().string(), one);
  EXPECT_EQ(first.size(), 1);
  EXPECT_EQ(first.classes().size(), 3u);

  ImageFolderOptions more = one_pixel;
  more.max_images = 100;
  EXPECT_EQ(ImageFolder(dir.path().string(), more).size(), 12);
  ImageFolderOptions zero = one_pixel;
  zero.max_images = 0;
  EXPECT_THROW(ImageFolder(dir.path().string(), zero), Error);
}

TEST(ImageFolder, FeedsADataLoader) {
  TempDir dir;
  for (int i = 0; i < 5; ++i) {
    write_png(dir.file("a/" + std::to_string(i) + ".png"), 3, 3, 3, solid(3, 3, 3, {0, 0, 0}));
    write_png(dir.file("b/" + std::to_string(i) + ".png"), 3, 3, 3,
              solid(3, 3, 3, {255, 255, 255}));
  }
  auto ds = std::make_shared<ImageFolder>(dir.path().string(),
                                          ImageFolderOptions{.height = 3, .width = 3});
  DataLoader loader(ds, {.batch_size = 4, .shuffle = true, .seed = 1});
  int64_t seen = 0;
  for (const Batch& b : loader) {
    const std::vector<float> x = values(b.x);
    const std::vector<int64_t> y = b.y.to_vector<int64_t>();
    for (size_t i = 0; i < y.size(); ++i) EXPECT_EQ(x[i * 27], static_cast<float>(y[i]));
    seen += static_cast<int64_t>(y.size());
  }
  EXPECT_EQ(seen, 10);
}

TEST(ImageFolder, PixelsHoldTheExactBytesOfThePngs) {
  TempDir dir;
  // Two 3x2 RGB images of distinct noise; PNG is lossless and no resize happens.
  const std::vector<unsigned char> first = noise(3, 2, 3);
  std::vector<unsigned char> second = first;
  std::reverse(second.begin(), second.end());
  write_png(dir.file("a/0.png"), 3, 2, 3, first);
  write_png(dir.file("b/0.png"), 3, 2, 3, second);
  ImageFolder ds(dir.path().string(), {.height = 2, .width = 3});
  const Tensor& px = ds.pixels();
  EXPECT_EQ(px.dtype(), kUInt8);
  ASSERT_EQ(px.shape(), (Shape{2, 3, 2, 3}));
  const std::vector<uint8_t> got = px.to_vector<uint8_t>();
  // The file's bytes are HWC; pixels() is CHW per image.
  const std::vector<const std::vector<unsigned char>*> files = {&first, &second};
  for (size_t i = 0; i < 2; ++i) {
    for (size_t ch = 0; ch < 3; ++ch) {
      for (size_t p = 0; p < 6; ++p) {
        EXPECT_EQ(got[i * 18 + ch * 6 + p], (*files[i])[p * 3 + ch])
            << "image " << i << " channel " << ch << " pixel " << p;
      }
    }
  }
}

TEST(ImageFolder, GetBatchConvertsTheRequestedRowsInOrderAndImagesIsEveryRow) {
  TempDir dir;
  for (int i = 0; i < 4; ++i) {
    std::vector<unsigned char> px = noise(4, 4, 3);
    std::rotate(px.begin(), px.begin() + 7 * i, px.end());  // a different image each time
    write_png(dir.file(std::string(i < 2 ? "a/" : "b/") + std::to_string(i) + ".png"), 4, 4, 3,
              px);
  }
  // 1/255 and 0.1 are not exact in binary: computing in double, or with another order of
  // rounding, would change some values.
  for (const double rescale : {1.0 / 255.0, 0.1}) {
    ImageFolder ds(dir.path().string(), {.height = 4, .width = 4, .rescale = rescale});
    const std::vector<uint8_t> px = ds.pixels().to_vector<uint8_t>();
    const std::vector<int64_t> labels = ds.labels().to_vector<int64_t>();
    const std::vector<int64_t> order = {3, 0, 3, 1, 2, 0};
    const Batch b = ds.get_batch(order);
    EXPECT_EQ(b.x.dtype(), kFloat32);
    ASSERT_EQ(b.x.shape(), (Shape{6, 3, 4, 4}));
    const std::vector<float> x = values(b.x);
    const size_t row = 3 * 4 * 4;
    for (size_t r = 0; r < order.size(); ++r) {
      const auto src = static_cast<size_t>(order[r]);
      for (size_t v = 0; v < row; ++v) {
        ASSERT_EQ(x[r * row + v],
                  static_cast<float>(px[src * row + v]) * static_cast<float>(rescale))
            << "row " << r << " (sample " << src << ") value " << v;
      }
      EXPECT_EQ(b.y.to_vector<int64_t>()[r], labels[src]);
    }
    const Tensor all = ds.images();
    EXPECT_EQ(all.dtype(), kFloat32);
    ASSERT_EQ(all.shape(), (Shape{4, 3, 4, 4}));
    EXPECT_EQ(values(all), values(ds.get_batch(all_indices(4)).x));
  }
}

TEST(ImageFolder, LabelModeIntGivesClassIndices) {
  const Batch b = grey_batch({2, 1, 2}, LabelMode::kInt, {4, 0, 2, 2});
  EXPECT_EQ(b.y.dtype(), kInt64);
  ASSERT_EQ(b.y.shape(), (Shape{4}));
  EXPECT_EQ(b.y.to_vector<int64_t>(), (std::vector<int64_t>{2, 0, 1, 1}));
  EXPECT_EQ(values(b.x), (std::vector<float>{45, 5, 25, 25}));
}

TEST(ImageFolder, LabelModeCategoricalGivesOneHotRows) {
  const Batch b = grey_batch({2, 1, 2}, LabelMode::kCategorical, {4, 0, 2, 2});
  EXPECT_EQ(b.y.dtype(), kFloat32);
  ASSERT_EQ(b.y.shape(), (Shape{4, 3}));
  EXPECT_EQ(values(b.y), (std::vector<float>{0, 0, 1,  //
                                             1, 0, 0,  //
                                             0, 1, 0,  //
                                             0, 1, 0}));
  EXPECT_EQ(values(b.x), (std::vector<float>{45, 5, 25, 25}));
}

TEST(ImageFolder, LabelModeCategoricalCountsClassesMaxImagesLeftEmpty) {
  TempDir dir;
  write_grey_classes(dir, {6, 3, 3});
  ImageFolderOptions o = one_grey_pixel(LabelMode::kCategorical);
  o.max_images = 1;  // only a/0.png: classes b and c get no image but keep their columns
  const Batch b = ImageFolder(dir.path().string(), o).get_batch({0});
  ASSERT_EQ(b.y.shape(), (Shape{1, 3}));
  EXPECT_EQ(values(b.y), (std::vector<float>{1, 0, 0}));
}

TEST(ImageFolder, LabelModeBinaryGivesAZeroOneColumn) {
  const Batch b = grey_batch({2, 3}, LabelMode::kBinary, {4, 1, 2, 0});
  EXPECT_EQ(b.y.dtype(), kFloat32);
  ASSERT_EQ(b.y.shape(), (Shape{4, 1}));
  EXPECT_EQ(values(b.y), (std::vector<float>{1, 0, 1, 0}));
}

TEST(ImageFolder, LabelModeNoneLeavesYUndefined) {
  const Batch b = grey_batch({2, 1}, LabelMode::kNone, {2, 0});
  EXPECT_FALSE(b.y.defined());
  EXPECT_EQ(values(b.x), (std::vector<float>{25, 5}));
}

TEST(ImageFolder, LabelsStayClassIndicesInEveryLabelMode) {
  TempDir dir;
  write_grey_classes(dir, {2, 3});
  for (const LabelMode mode :
       {LabelMode::kInt, LabelMode::kCategorical, LabelMode::kBinary, LabelMode::kNone}) {
    const ImageFolder ds(dir.path().string(), one_grey_pixel(mode));
    EXPECT_EQ(ds.labels().dtype(), kInt64);
    EXPECT_EQ(ds.labels().to_vector<int64_t>(), (std::vector<int64_t>{0, 0, 1, 1, 1}))
        << "label mode " << static_cast<int>(mode);
  }
}

TEST(ImageFolder, LabelModeBinaryNeedsExactlyTwoClasses) {
  TempDir dir;
  write_grey_classes(dir, {1, 1, 1});
  // An undecodable file: the class count is checked before any decoding.
  write_text(dir.file("c/zz.png"), "not a PNG");
  try {
    ImageFolder ds(dir.path().string(), one_grey_pixel(LabelMode::kBinary));
    FAIL() << "expected ember::Error";
  } catch (const IOError& e) {
    FAIL() << "decoded before checking the classes: " << e.what();
  } catch (const Error& e) {
    EXPECT_TRUE(contains(e.what(), "exactly 2 classes")) << e.what();
    EXPECT_TRUE(contains(e.what(), "has 3 (a, b, c)")) << e.what();
  }
  TempDir one;
  write_grey_classes(one, {2});
  EXPECT_THROW(ImageFolder(one.path().string(), one_grey_pixel(LabelMode::kBinary)), Error);
}

TEST(ImageFolder, GetBatchRejectsAnIndexOutOfRange) {
  TempDir dir;
  write_grey_classes(dir, {2, 1});
  ImageFolder ds(dir.path().string(), one_grey_pixel(LabelMode::kInt));
  try {
    ds.get_batch({0, 3});
    FAIL() << "expected ember::Error";
  } catch (const Error& e) {
    EXPECT_TRUE(contains(e.what(), "ImageFolder::get_batch: index 3 is out of range for a "
                                   "dataset of 3 samples"))
        << e.what();
  }
  EXPECT_THROW(ds.get_batch({-1}), Error);
  EXPECT_THROW(ds.get(3), Error);
}

TEST(ImageFolder, ShuffledDataLoaderGivesEverySampleOncePerEpoch) {
  TempDir dir;
  write_grey_classes(dir, {4, 3, 4});
  // The grey value says which sample a row is: 10 * k + 5 for the k-th file.
  auto ds = std::make_shared<ImageFolder>(dir.path().string(),
                                          one_grey_pixel(LabelMode::kCategorical));
  const std::vector<int64_t> labels = ds->labels().to_vector<int64_t>();
  DataLoader loader(ds, {.batch_size = 3, .shuffle = true, .seed = 11});
  for (int epoch = 0; epoch < 3; ++epoch) {
    std::vector<int64_t> seen;
    for (const Batch& b : loader) {
      const std::vector<float> x = values(b.x);
      ASSERT_EQ(b.y.shape(), (Shape{static_cast<int64_t>(x.size()), 3}));
      const std::vector<float> y = values(b.y);
      for (size_t r = 0; r < x.size(); ++r) {
        const auto k = static_cast<int64_t>((x[r] - 5.0f) / 10.0f);
        ASSERT_EQ(x[r], static_cast<float>(10 * k + 5)) << "epoch " << epoch;
        ASSERT_TRUE(k >= 0 && k < ds->size()) << k;
        // The label travelled with its image.
        for (int64_t c = 0; c < 3; ++c) {
          EXPECT_EQ(y[r * 3 + static_cast<size_t>(c)],
                    c == labels[static_cast<size_t>(k)] ? 1.0f : 0.0f);
        }
        seen.push_back(k);
      }
    }
    std::sort(seen.begin(), seen.end());
    EXPECT_EQ(seen, all_indices(ds->size())) << "epoch " << epoch;
  }
}

// --- lazy decoding ---------------------------------------------------------------------

// A folder of 3 classes holding 4, 3 and 5 noise images of various sizes and channels.
void write_mixed_classes(const TempDir& dir) {
  const std::vector<int> counts = {4, 3, 5};
  int k = 0;
  for (size_t c = 0; c < counts.size(); ++c) {
    for (int f = 0; f < counts[c]; ++f, ++k) {
      const int w = 5 + k, h = 9 - k % 4, comp = 1 + k % 4;
      write_png(dir.file(std::string(1, static_cast<char>('p' + c)) + "/" + std::to_string(f) +
                         ".png"),
                w, h, comp, noise(w, h, comp));
    }
  }
}

TEST(ImageFolder, LazyListsTheSameSamplesAndServesTheSameBatchesAsEager) {
  TempDir dir;
  write_mixed_classes(dir);
  for (const LabelMode mode : {LabelMode::kInt, LabelMode::kCategorical, LabelMode::kNone}) {
    for (const int64_t max_images : {int64_t{-1}, int64_t{5}}) {
      ImageFolderOptions o{.height = 6, .width = 7, .channels = 3, .max_images = max_images,
                           .label_mode = mode};
      const ImageFolder eager(dir.path().string(), o);
      o.lazy = true;
      const ImageFolder lazy(dir.path().string(), o);
      EXPECT_EQ(lazy.size(), eager.size());
      EXPECT_EQ(lazy.classes(), eager.classes());
      EXPECT_EQ(lazy.files(), eager.files());
      EXPECT_EQ(lazy.labels().to_vector<int64_t>(), eager.labels().to_vector<int64_t>());
      EXPECT_FALSE(lazy.pixels().defined());  // nothing decoded up front
      const std::vector<int64_t> indices = {eager.size() - 1, 0, 2, 2, 1};
      const Batch a = eager.get_batch(indices), b = lazy.get_batch(indices);
      EXPECT_EQ(values(b.x), values(a.x));  // bit for bit
      EXPECT_EQ(b.y.defined(), a.y.defined());
      if (a.y.defined()) {
        EXPECT_EQ(values(b.y.to(kFloat32)), values(a.y.to(kFloat32)));
      }
      EXPECT_EQ(values(lazy.images()), values(eager.images()));
    }
  }
}

TEST(ImageFolder, LazyChecksOptionsAndNamesWhenListing) {
  TempDir dir;
  write_mixed_classes(dir);
  write_text(dir.file(".hidden/x.png"), "not listed");
  const ImageFolder lazy(dir.path().string(), {.height = 2, .width = 2, .lazy = true});
  EXPECT_EQ(lazy.classes(), (std::vector<std::string>{"p", "q", "r"}));
  EXPECT_THROW(ImageFolder(dir.path().string(), {.channels = 5, .lazy = true}), Error);
  EXPECT_THROW(ImageFolder(dir.path().string(),
                           {.label_mode = LabelMode::kBinary, .lazy = true}),
               Error);
  // Skipping needs the decoding the lazy mode postpones.
  try {
    ImageFolder(dir.path().string(), {.skip_bad_files = true, .lazy = true});
    FAIL() << "expected ember::Error";
  } catch (const Error& e) {
    EXPECT_TRUE(contains(e.what(), "skip_bad_files")) << e.what();
  }
  EXPECT_THROW(lazy.get_batch({12}), Error);
}

TEST(ImageFolder, LazyBadFileThrowsWhenItsBatchIsReadNamingTheSampleAndFile) {
  TempDir dir;
  write_png(dir.file("a/0.png"), 4, 4, 3, solid(4, 4, 3, {1, 2, 3}));
  const std::string bad = dir.file("a/1.png");
  write_png(bad, 64, 64, 3, noise(64, 64, 3));
  truncate_file(bad, 0.5);
  write_png(dir.file("a/2.png"), 4, 4, 3, solid(4, 4, 3, {1, 2, 3}));
  auto ds = std::make_shared<ImageFolder>(dir.path().string(),
                                          ImageFolderOptions{.height = 4, .width = 4,
                                                             .lazy = true});
  EXPECT_EQ(ds->size(), 3);
  EXPECT_NO_THROW(ds->get_batch({0, 2}));
  try {
    ds->get_batch({0, 1});
    FAIL() << "expected IOError";
  } catch (const IOError& e) {
    EXPECT_TRUE(contains(e.what(), "sample 1 '" + bad + "'")) << e.what();
    EXPECT_TRUE(contains(e.what(), "truncated or corrupt image")) << e.what();
  }
  // From a DataLoader's worker: the same type and message, after the batch's samples.
  DataLoader loader(ds, {.batch_size = 1, .num_workers = 2});
  try {
    for (const Batch& b : loader) (void)b;
    FAIL() << "expected IOError";
  } catch (const IOError& e) {
    EXPECT_TRUE(contains(e.what(), "DataLoader: batch 1 of epoch 0 (sample 1): ImageFolder: "
                                   "sample 1 '" + bad + "'"))
        << e.what();
  }
}

namespace {

// Resident memory of this process in bytes, from /proc/self/statm.
double resident_bytes() {
  std::ifstream statm("/proc/self/statm");
  double pages = 0, resident = 0;
  statm >> pages >> resident;
  return resident * static_cast<double>(sysconf(_SC_PAGESIZE));
}

// Wraps a dataset, counting the images it has decoded.
class CountingDataset : public Dataset {
 public:
  explicit CountingDataset(std::shared_ptr<const Dataset> inner) : inner_(std::move(inner)) {}
  int64_t size() const override { return inner_->size(); }
  Batch get_batch(const std::vector<int64_t>& indices) const override {
    Batch b = inner_->get_batch(indices);
    decoded.fetch_add(static_cast<int64_t>(indices.size()));
    return b;
  }
  mutable std::atomic<int64_t> decoded{0};

 private:
  std::shared_ptr<const Dataset> inner_;
};

}  // namespace

TEST(ImageFolder, LazyFolderMuchLargerThanTheMemoryBoundIteratesWithinIt) {
  // 720 small PNGs decoded to 3x160x160: 300 KiB each as float32, 211 MiB for the folder,
  // about nine times the 24 MiB this test allows the loader's resident memory to grow.
  // With batches of 4, 2 workers and prefetch 2, at most 4 batches (16 images, 4.7 MiB)
  // are in flight beside the consumer's; each batch also passes through a uint8 buffer
  // and a pinned staging copy, and the pools keep what the busiest moment took (about
  // 12 MiB measured). Holding decoded images would grow by the folder's size instead.
  TempDir dir;
  constexpr int kImages = 720;
  for (int i = 0; i < kImages; ++i) {
    const unsigned char v = static_cast<unsigned char>(i);
    write_png(dir.file(std::string(i % 2 ? "odd/" : "even/") + std::to_string(i) + ".png"), 8, 8,
              3, solid(8, 8, 3, {v, 0, static_cast<unsigned char>(255 - v)}));
  }
  const ImageFolderOptions o{.height = 160, .width = 160, .channels = 3, .lazy = true};
  auto folder = std::make_shared<ImageFolder>(dir.path().string(), o);
  auto ds = std::make_shared<CountingDataset>(folder);
  const double image_bytes = 3.0 * 160 * 160 * sizeof(float);
  const double folder_bytes = kImages * image_bytes;
  constexpr double kBound = 24.0 * 1024 * 1024;
  ASSERT_GT(folder_bytes, 8 * kBound);

  constexpr int64_t kBatch = 4, kWorkers = 2, kPrefetch = 2;
  DataLoader loader(ds, {.batch_size = kBatch, .shuffle = true, .seed = 3,
                         .num_workers = kWorkers, .prefetch = kPrefetch});
  const double before = resident_bytes();
  double peak = before;
  int64_t consumed = 0, most_ahead = 0;
  for (const Batch& b : loader) {
    consumed += b.x.size(0);
    // Decoded images that the consumer has not taken yet: what the loader holds.
    most_ahead = std::max(most_ahead, ds->decoded.load() - consumed);
    peak = std::max(peak, resident_bytes());
  }
  EXPECT_EQ(consumed, kImages);
  EXPECT_LE(most_ahead, kBatch * kWorkers * kPrefetch);
  // Under a sanitizer resident memory grows with what is freed (ASan's quarantine keeps
  // 256 MiB by default): there the count of images decoded ahead is the bound checked.
  if (!kSanitizedHeap) {
    EXPECT_LT(peak - before, kBound) << "peak growth " << (peak - before) / 1048576.0 << " MiB";
  }
  std::printf("lazy folder: %.1f MiB decoded over the epoch, resident growth %.1f MiB, at "
              "most %lld images decoded ahead\n",
              folder_bytes / 1048576.0, (peak - before) / 1048576.0,
              static_cast<long long>(most_ahead));
}

TEST(SafeFileName, ReplacesCharactersFoldersCannotHold) {
  EXPECT_EQ(safe_file_name("T-shirt/top"), "T-shirt_top");
  EXPECT_EQ(safe_file_name("Ankle boot"), "Ankle_boot");
  EXPECT_EQ(safe_file_name("ok-name_1.2"), "ok-name_1.2");
  EXPECT_EQ(safe_file_name(".."), "_");
  EXPECT_EQ(safe_file_name(""), "_");
}

TEST(ExportImageFolder, WritesClassFoldersOfPngsThatReadBackTheSame) {
  TempDir dir;
  // Three 2x2 grey images: 0, 1/255*k ramps; labels 1, 0, 1.
  std::vector<float> x;
  for (int i = 0; i < 3; ++i) {
    for (int p = 0; p < 4; ++p) x.push_back(static_cast<float>(i * 4 + p) * 20.0f / 255.0f);
  }
  TensorDataset ds(Tensor::from_vector(x, {3, 1, 2, 2}),
                   Tensor::from_vector<int64_t>({1, 0, 1}, {3}));
  const std::string out = (dir.path() / "export").string();
  export_image_folder(ds, {"T-shirt/top", "Ankle boot"}, out);
  EXPECT_TRUE(fs::exists(out + "/Ankle_boot/00000.png"));
  EXPECT_TRUE(fs::exists(out + "/T-shirt_top/00001.png"));
  EXPECT_TRUE(fs::exists(out + "/Ankle_boot/00002.png"));
  ImageFolder back(out, {.height = 2, .width = 2, .channels = 1});
  EXPECT_EQ(back.classes(), (std::vector<std::string>{"Ankle_boot", "T-shirt_top"}));
  // Sorted: Ankle_boot/00000, Ankle_boot/00002, T-shirt_top/00001.
  const std::vector<float> v = values(back.images());
  const std::vector<size_t> order = {0, 2, 1};
  for (size_t k = 0; k < 3; ++k) {
    for (size_t p = 0; p < 4; ++p) EXPECT_NEAR(v[k * 4 + p], x[order[k] * 4 + p], 1e-6);
  }
  export_image_folder(ds, {"a", "b"}, (dir.path() / "limited").string(), 1);
  EXPECT_TRUE(fs::exists(dir.path() / "limited/b/00000.png"));
  EXPECT_FALSE(fs::exists(dir.path() / "limited/a"));
  EXPECT_THROW(export_image_folder(ds, {"only one"}, (dir.path() / "x").string()), Error);
  EXPECT_THROW(export_image_folder(ds, {"a/b", "a_b"}, (dir.path() / "y").string()), Error);
}

TEST(ExportImageFolder, FashionMnistSampleRoundTrips) {
  const std::string root = EMBER_FASHION_MNIST_DIR;
  if (!fs::exists(root + "/t10k-images-idx3-ubyte.gz") &&
      !fs::exists(root + "/t10k-images-idx3-ubyte")) {
    GTEST_SKIP() << "Fashion-MNIST not found at " << root;
  }
  FashionMNIST test(root, Split::Test);
  TempDir dir;
  export_fashion_mnist_images(test, dir.path().string(), 20);
  int64_t files = 0;
  std::set<std::string> safe_names;
  for (const std::string& c : FashionMNIST::classes()) safe_names.insert(safe_file_name(c));
  for (const auto& e : fs::recursive_directory_iterator(dir.path())) {
    if (e.is_directory()) {
      EXPECT_EQ(safe_names.count(e.path().filename().string()), 1u) << e.path();
    } else {
      ++files;
      EXPECT_EQ(e.path().extension(), ".png");
    }
  }
  EXPECT_EQ(files, 20);
  ImageFolder back(dir.path().string(), {.height = 28, .width = 28, .channels = 1});
  ASSERT_EQ(back.size(), 20);
  // Each file holds the sample its name gives, and its folder is the sample's class.
  const std::vector<int64_t> labels = test.labels().narrow(0, 0, 20).to_vector<int64_t>();
  for (int64_t k = 0; k < 20; ++k) {
    const fs::path file = back.files()[static_cast<size_t>(k)];
    const int64_t index = std::stoll(file.stem().string());
    const std::string expected =
        safe_file_name(FashionMNIST::classes()[static_cast<size_t>(labels[index])]);
    EXPECT_EQ(file.parent_path().filename().string(), expected);
    const std::vector<float> a = values(back.images().select(0, k));
    const std::vector<float> b = values(test.images().select(0, index));
    for (size_t p = 0; p < a.size(); ++p) ASSERT_NEAR(a[p], b[p], 0.5 / 255.0 + 1e-6);
  }
}

}  // namespace
