// Image folders: discovery, parallel decoding (image_decode.h) and resizing into one uint8
// tensor, batches converted to float32 with the chosen labels (see Note [Image folder
// decoding]), and the PNG export.
#include "ember/python_free_api/data/image_folder.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <climits>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <set>
#include <system_error>
#include <thread>
#include <utility>

#include "ember/core/base/error.h"
#include "ember/python_free_api/data/image_decode.h"
#include "ember/python_free_api/data/transforms.h"

// stb's resizer and PNG writer, file-static (so they can clash with nobody's copy of stb) and
// compiled without the warnings their code trips.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wunused-parameter"
#pragma GCC diagnostic ignored "-Wsign-compare"
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#pragma GCC diagnostic ignored "-Wimplicit-fallthrough"
#pragma GCC diagnostic ignored "-Wunused-but-set-variable"
#pragma GCC diagnostic ignored "-Wtype-limits"
#define STB_IMAGE_RESIZE_STATIC
#define STB_IMAGE_RESIZE_IMPLEMENTATION
#include <stb/stb_image_resize.h>
#define STB_IMAGE_WRITE_STATIC
#define STB_IMAGE_WRITE_IMPLEMENTATION
#include <stb/stb_image_write.h>
#pragma GCC diagnostic pop

namespace ember::data {

namespace fs = std::filesystem;

namespace {

bool is_hidden(const fs::path& p) {
  const std::string name = p.filename().string();
  return !name.empty() && name[0] == '.';
}

bool has_image_extension(const fs::path& p) {
  static const std::set<std::string> kExtensions = {".png", ".jpg", ".jpeg", ".bmp",
                                                    ".gif", ".tga", ".pnm",  ".ppm",
                                                    ".pgm", ".psd", ".hdr",  ".pic"};
  std::string ext = p.extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return kExtensions.count(ext) != 0;
}

std::string format_bytes(double bytes) {
  const char* units[] = {"bytes", "KiB", "MiB", "GiB", "TiB"};
  int u = 0;
  while (bytes >= 1024.0 && u < 4) {
    bytes /= 1024.0;
    ++u;
  }
  char buf[64];
  std::snprintf(buf, sizeof(buf), u == 0 ? "%.0f %s" : "%.2f %s", bytes, units[u]);
  return buf;
}

// Decodes `path` into `out` (uint8 [C, H, W] of the options' size). Returns "" on
// success, else why the file is bad. The decoders and their checks: Note [Untrusted
// images] in image_decode.cpp.
std::string decode_image(const std::string& path, const ImageFolderOptions& o, uint8_t* out) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in) return std::string("cannot open the file: ") + std::strerror(errno);
  const std::streamoff len = in.tellg();
  if (len < 0) return "cannot read the file";
  if (len > INT_MAX) return "the file is larger than 2 GiB";
  std::vector<unsigned char> bytes(static_cast<size_t>(len));
  in.seekg(0);
  if (len > 0 && !in.read(reinterpret_cast<char*>(bytes.data()), len)) {
    return "cannot read the file";
  }
  const int c = static_cast<int>(o.channels);
  detail::DecodedImage image;
  std::string err = detail::decode_image_bytes(bytes.data(), bytes.size(), c, o.max_pixels, image);
  if (!err.empty()) return err;
  const int w = static_cast<int>(image.width), h = static_cast<int>(image.height);
  // decode_image_bytes refuses empty images; stb_image_resize must never see one.
  if (w <= 0 || h <= 0) return "the image is " + std::to_string(w) + "x" + std::to_string(h);
  const int oh = static_cast<int>(o.height), ow = static_cast<int>(o.width);
  const uint8_t* src = image.pixels.data();
  std::vector<uint8_t> resized;
  if (w != ow || h != oh) {
    resized.resize(static_cast<size_t>(ow) * oh * c);
    if (stbir_resize_uint8(src, w, h, 0, resized.data(), ow, oh, 0, c) == 0) {
      return "cannot resize the image from " + std::to_string(w) + "x" + std::to_string(h);
    }
    src = resized.data();
  }
  // HWC -> CHW.
  const int64_t plane = static_cast<int64_t>(oh) * ow;
  for (int64_t p = 0; p < plane; ++p) {
    for (int ch = 0; ch < c; ++ch) out[ch * plane + p] = src[p * c + ch];
  }
  return "";
}

// uint8 `bytes` (contiguous CPU) as float32 of the same shape times `rescale`, with the
// expression of Note [Image folder decoding]; a loop the compiler vectorizes.
Tensor scaled_floats(const Tensor& bytes, double rescale) {
  Tensor out = Tensor::empty(bytes.shape());
  const uint8_t* src = bytes.data<uint8_t>();
  float* dst = out.data<float>();
  const auto scale = static_cast<float>(rescale);
  const int64_t n = bytes.numel();
  for (int64_t i = 0; i < n; ++i) dst[i] = static_cast<float>(src[i]) * scale;
  return out;
}

}  // namespace

struct ImageFolder::Loaded {
  Tensor x;
  Tensor y;
  std::vector<std::string> classes;
  std::vector<std::string> files;
  std::vector<SkippedFile> skipped;
};

ImageFolder::ImageFolder(const std::string& root, ImageFolderOptions options)
    : ImageFolder(load(root, options), options) {}

ImageFolder::ImageFolder(Loaded loaded, ImageFolderOptions options)
    : pixels_(std::move(loaded.x)),
      labels_(std::move(loaded.y)),
      classes_(std::move(loaded.classes)),
      files_(std::move(loaded.files)),
      skipped_(std::move(loaded.skipped)),
      options_(options) {}

int64_t ImageFolder::size() const { return labels_.size(0); }

Tensor ImageFolder::decode_rows(const std::vector<int64_t>& indices) const {
  const ImageFolderOptions& o = options_;
  const auto b = static_cast<int64_t>(indices.size());
  const int64_t per_image = o.channels * o.height * o.width;
  Tensor x = Tensor::empty({b, o.channels, o.height, o.width}, {.dtype = kUInt8});
  uint8_t* xd = x.data<uint8_t>();
  for (int64_t k = 0; k < b; ++k) {
    const int64_t i = indices[static_cast<size_t>(k)];
    const std::string& path = files_[static_cast<size_t>(i)];
    const std::string err = decode_image(path, o, xd + k * per_image);
    // A lazy folder's size is fixed when it is listed, so a bad file cannot be skipped.
    EMBER_CHECK_T(IOError, err.empty(), "ImageFolder: sample ", i, " '", path, "': ", err);
  }
  return x;
}

Batch ImageFolder::get_batch(const std::vector<int64_t>& indices) const {
  for (const int64_t i : indices) {
    EMBER_CHECK_T(ValueError, i >= 0 && i < size(), "ImageFolder::get_batch: index ", i,
                  " is out of range for a dataset of ", size(), " samples");
  }
  // The bytes and class indices of the rows, in the order asked for: gathered from the
  // decoded pixels, or decoded now (lazy).
  Batch rows;
  if (options_.lazy) {
    rows.x = decode_rows(indices);
    rows.y = TensorDataset(labels_, Tensor()).get_batch(indices).x;
  } else {
    rows = TensorDataset(pixels_, labels_).get_batch(indices);
  }
  Batch out;
  out.x = scaled_floats(rows.x, options_.rescale);
  switch (options_.label_mode) {
    case LabelMode::kInt:
      out.y = std::move(rows.y);
      break;
    case LabelMode::kCategorical: {
      Generator unused;  // OneHot draws nothing
      out.y = OneHot(static_cast<int64_t>(classes_.size())).apply(rows.y, unused);
      break;
    }
    case LabelMode::kBinary:
      out.y = rows.y.to(kFloat32).reshape({rows.y.size(0), 1});
      break;
    case LabelMode::kNone:
      break;
  }
  return out;
}

Tensor ImageFolder::images() const {
  if (!options_.lazy) return scaled_floats(pixels_, options_.rescale);
  std::vector<int64_t> all(static_cast<size_t>(size()));
  for (int64_t i = 0; i < size(); ++i) all[static_cast<size_t>(i)] = i;
  return scaled_floats(decode_rows(all), options_.rescale);
}

ImageFolder::Loaded ImageFolder::load(const std::string& root, const ImageFolderOptions& o) {
  EMBER_CHECK_T(ValueError,
                o.height >= 1 && o.width >= 1 && o.height <= INT_MAX && o.width <= INT_MAX,
                "ImageFolder: height and width must be positive, got ", o.height, "x", o.width);
  EMBER_CHECK_T(ValueError, o.channels >= 1 && o.channels <= 4,
                "ImageFolder: channels must be 1, 2, 3 or 4, got ", o.channels);
  EMBER_CHECK_T(ValueError, o.max_pixels > 0, "ImageFolder: max_pixels must be positive, got ",
                o.max_pixels);
  EMBER_CHECK_T(ValueError, std::isfinite(o.rescale), "ImageFolder: rescale must be finite, got ",
                o.rescale);
  EMBER_CHECK_T(ValueError, o.max_images == -1 || o.max_images >= 1,
                "ImageFolder: max_images must be -1 (all) or positive, got ", o.max_images);
  EMBER_CHECK_T(ValueError, !(o.lazy && o.skip_bad_files),
                "ImageFolder: skip_bad_files needs eager decoding (a lazy folder's size is fixed "
                "before any image is decoded); set lazy or skip_bad_files, not both");

  // --- discovery: sorted classes, sorted files -----------------------------------------
  std::error_code ec;
  EMBER_CHECK_T(IOError, fs::is_directory(root, ec), "ImageFolder: '", root,
                "' is not a directory (expected root/<class>/<image>)");
  Loaded out;
  std::vector<std::vector<std::string>> class_files;
  try {
    for (const fs::directory_entry& e : fs::directory_iterator(root)) {
      if (!is_hidden(e.path()) && e.is_directory())
        out.classes.push_back(e.path().filename().string());
    }
    EMBER_CHECK_T(IOError, !out.classes.empty(), "ImageFolder: '", root,
                  "' has no class sub-folders (expected root/<class>/<image>)");
    std::sort(out.classes.begin(), out.classes.end());
    for (const std::string& cls : out.classes) {
      const fs::path dir = fs::path(root) / cls;
      std::vector<std::string> files;
      for (auto it = fs::recursive_directory_iterator(dir);
           it != fs::recursive_directory_iterator(); ++it) {
        if (is_hidden(it->path())) {
          if (it->is_directory()) it.disable_recursion_pending();
          continue;
        }
        if (it->is_regular_file() && has_image_extension(it->path())) {
          files.push_back(it->path().string());
        }
      }
      EMBER_CHECK_T(IOError, !files.empty(), "ImageFolder: class folder '", dir.string(),
                    "' has no image files (png, jpg, jpeg, bmp, gif, tga, pnm, ppm, pgm, psd, "
                    "hdr, pic)");
      std::sort(files.begin(), files.end());
      class_files.push_back(std::move(files));
    }
  } catch (const fs::filesystem_error& e) {
    throw IOError(std::string("ImageFolder: cannot list '") + root + "': " + e.what());
  }
  // Checked before decoding, which can take minutes.
  if (o.label_mode == LabelMode::kBinary && out.classes.size() != 2) {
    std::string names;
    for (const std::string& cls : out.classes) names += (names.empty() ? "" : ", ") + cls;
    throw ValueError("ImageFolder: label_mode kBinary needs exactly 2 classes (as Keras's "
                     "label_mode=\"binary\"), but '" + root + "' has " +
                     std::to_string(out.classes.size()) + " (" + names +
                     "); use kCategorical or kInt for another number of classes");
  }

  std::vector<std::string> paths;
  std::vector<int64_t> labels;
  for (size_t c = 0; c < class_files.size(); ++c) {
    for (std::string& f : class_files[c]) {
      paths.push_back(std::move(f));
      labels.push_back(static_cast<int64_t>(c));
    }
  }
  // max_images: evenly spaced files, see Note [Image folder decoding].
  const auto found = static_cast<int64_t>(paths.size());
  if (o.max_images >= 1 && o.max_images < found) {
    std::vector<std::string> some_paths;
    std::vector<int64_t> some_labels;
    for (int64_t k = 0; k < o.max_images; ++k) {
      // k * found < found^2: no overflow for any folder that fits on a disk.
      const auto i = static_cast<size_t>(k * found / o.max_images);
      some_paths.push_back(std::move(paths[i]));
      some_labels.push_back(labels[i]);
    }
    paths = std::move(some_paths);
    labels = std::move(some_labels);
  }
  const auto n = static_cast<int64_t>(paths.size());
  EMBER_CHECK_T(ValueError, static_cast<double>(o.height) * static_cast<double>(o.width) <= 1e12,
                "ImageFolder: height x width ", o.height, "x", o.width, " is too large");
  if (o.lazy) {
    out.files = std::move(paths);
    out.y = Tensor::from_vector(labels, {n});
    return out;
  }
  std::vector<int64_t> chosen_per_class(out.classes.size(), 0);
  for (const int64_t label : labels) ++chosen_per_class[static_cast<size_t>(label)];

  // --- memory check before decoding anything -----------------------------------------------
  const int64_t per_image = o.channels * o.height * o.width;
  // Divided by 4 so that images() (4 bytes a value) cannot overflow either.
  EMBER_CHECK_T(ValueError, per_image <= (INT64_MAX / 4) / std::max<int64_t>(n, 1),
                "ImageFolder: ", n, " images of ", o.channels, "x", o.height, "x", o.width,
                " overflow a tensor's size");
  const double total_bytes = static_cast<double>(n) * static_cast<double>(per_image);
  const long pages = sysconf(_SC_PHYS_PAGES), page_size = sysconf(_SC_PAGESIZE);
  if (pages > 0 && page_size > 0) {
    const double physical = static_cast<double>(pages) * static_cast<double>(page_size);
    EMBER_CHECK_T(OutOfMemoryError, total_bytes <= physical / 2, "ImageFolder: ", n, " images of ",
                  o.channels, "x", o.height, "x", o.width, " at one byte a value need ",
                  format_bytes(total_bytes), ", more than half of this machine's ",
                  format_bytes(physical),
                  " of memory; choose a smaller height and width, read part of the folder "
                  "with max_images, or split the folder");
  }

  // --- decoding, several threads, errors resolved in file order -----------------------------
  Tensor x = Tensor::empty({n, o.channels, o.height, o.width}, {.dtype = kUInt8});
  uint8_t* xd = x.data<uint8_t>();
  std::vector<std::string> errors(static_cast<size_t>(n));
  // Without skip_bad_files only the first bad file matters: later ones need no decoding.
  std::atomic<int64_t> first_bad{INT64_MAX};
  const int64_t threads =
      std::clamp<int64_t>(static_cast<int64_t>(std::thread::hardware_concurrency()), 1, 8);
  auto work = [&](int64_t t) {
    for (int64_t i = t; i < n; i += threads) {
      if (!o.skip_bad_files && i > first_bad.load(std::memory_order_relaxed)) break;
      std::string err = decode_image(paths[static_cast<size_t>(i)], o, xd + i * per_image);
      if (err.empty()) continue;
      errors[static_cast<size_t>(i)] = std::move(err);
      int64_t cur = first_bad.load();
      while (i < cur && !first_bad.compare_exchange_weak(cur, i)) {
      }
    }
  };
  std::vector<std::thread> pool;
  for (int64_t t = 1; t < std::min(threads, n); ++t) pool.emplace_back(work, t);
  work(0);
  for (std::thread& th : pool) th.join();

  if (!o.skip_bad_files && first_bad.load() != INT64_MAX) {
    const auto i = static_cast<size_t>(first_bad.load());
    throw IOError("ImageFolder: '" + paths[i] + "': " + errors[i] +
                  " (set skip_bad_files to skip such files)");
  }

  // Compacts the decoded images over the skipped ones.
  std::vector<int64_t> kept_per_class(out.classes.size(), 0);
  std::vector<int64_t> kept_labels;
  int64_t kept = 0;
  for (int64_t i = 0; i < n; ++i) {
    const auto si = static_cast<size_t>(i);
    if (!errors[si].empty()) {
      out.skipped.push_back({paths[si], errors[si]});
      continue;
    }
    if (kept != i) {
      std::memmove(xd + kept * per_image, xd + i * per_image, static_cast<size_t>(per_image));
    }
    out.files.push_back(paths[si]);
    kept_labels.push_back(labels[si]);
    ++kept_per_class[static_cast<size_t>(labels[si])];
    ++kept;
  }
  for (size_t c = 0; c < out.classes.size(); ++c) {
    // A class max_images left without images is not an error; one whose every file was
    // bad is.
    EMBER_CHECK_T(IOError, chosen_per_class[c] == 0 || kept_per_class[c] > 0,
                  "ImageFolder: every image of class '", out.classes[c], "' under '", root,
                  "' was skipped as undecodable (", chosen_per_class[c],
                  " files; see skipped())");
  }
  out.x = kept == n ? x : x.narrow(0, 0, kept);
  out.y = Tensor::from_vector(kept_labels, {kept});
  return out;
}

// --- export -----------------------------------------------------------------------------

std::string safe_file_name(const std::string& name) {
  if (name.empty() || name == "." || name == "..") return "_";
  std::string s = name;
  for (char& ch : s) {
    const auto u = static_cast<unsigned char>(ch);
    if (!(std::isalnum(u) || ch == '-' || ch == '.' || ch == '_')) ch = '_';
  }
  return s;
}

void export_image_folder(const TensorDataset& dataset, const std::vector<std::string>& class_names,
                         const std::string& out_dir, int64_t limit) {
  const Tensor& x = dataset.x();
  EMBER_CHECK_T(DTypeError, x.dtype() == kFloat32, "export_image_folder: images ",
                shape_str(x.shape()), " have dtype ", dtype_name(x.dtype()), ", expected float32");
  EMBER_CHECK_T(ShapeError, x.dim() == 4 && (x.size(1) == 1 || x.size(1) == 3 || x.size(1) == 4),
                "export_image_folder: images must be [N, C, H, W] with C = 1, 3 or 4, got ",
                shape_str(x.shape()));
  EMBER_CHECK_T(ValueError, dataset.y().defined(),
                "export_image_folder: the dataset has no labels");
  EMBER_CHECK_T(ShapeError, dataset.y().dim() == 1, "export_image_folder: labels must be [N], got ",
                shape_str(dataset.y().shape()));
  std::vector<std::string> folders;
  std::set<std::string> distinct;
  for (const std::string& c : class_names) {
    folders.push_back(safe_file_name(c));
    EMBER_CHECK_T(ValueError, distinct.insert(folders.back()).second,
                  "export_image_folder: class '", c, "' has the same folder name '", folders.back(),
                  "' as another class");
  }
  const int64_t n = x.size(0);
  const int64_t count = limit < 0 ? n : std::min(limit, n);
  const int64_t c = x.size(1), h = x.size(2), w = x.size(3);
  const std::vector<int64_t> labels =
      dataset.y().narrow(0, 0, count).to(kInt64).to_vector<int64_t>();
  const Tensor xs = x.narrow(0, 0, count).contiguous();
  const float* src = xs.data<float>();
  int digits = 5;
  for (int64_t v = n - 1; v >= 100000; v /= 10) ++digits;

  std::vector<bool> made(folders.size(), false);
  std::vector<unsigned char> pixels(static_cast<size_t>(c * h * w));
  for (int64_t i = 0; i < count; ++i) {
    const int64_t label = labels[static_cast<size_t>(i)];
    EMBER_CHECK_T(ValueError, label >= 0 && label < static_cast<int64_t>(folders.size()),
                  "export_image_folder: sample ", i, " has label ", label, " but ", folders.size(),
                  " class names were given");
    const fs::path dir = fs::path(out_dir) / folders[static_cast<size_t>(label)];
    if (!made[static_cast<size_t>(label)]) {
      std::error_code ec;
      fs::create_directories(dir, ec);
      EMBER_CHECK_T(IOError, !ec, "export_image_folder: cannot create '", dir.string(),
                    "': ", ec.message());
      made[static_cast<size_t>(label)] = true;
    }
    const float* img = src + i * c * h * w;
    for (int64_t p = 0; p < h * w; ++p) {
      for (int64_t ch = 0; ch < c; ++ch) {
        const float v = std::clamp(img[ch * h * w + p], 0.0f, 1.0f);
        pixels[static_cast<size_t>(p * c + ch)] =
            static_cast<unsigned char>(std::lround(v * 255.0f));
      }
    }
    std::string index = std::to_string(i);
    if (static_cast<int>(index.size()) < digits) index.insert(0, digits - index.size(), '0');
    const std::string path = (dir / (index + ".png")).string();
    errno = 0;
    const int ok = stbi_write_png(path.c_str(), static_cast<int>(w), static_cast<int>(h),
                                  static_cast<int>(c), pixels.data(), static_cast<int>(w * c));
    EMBER_CHECK_T(IOError, ok != 0, "export_image_folder: cannot write '", path, "'",
                  errno != 0 ? std::string(": ") + std::strerror(errno) : std::string());
  }
}

void export_fashion_mnist_images(const FashionMNIST& dataset, const std::string& out_dir,
                                 int64_t limit) {
  export_image_folder(dataset, FashionMNIST::classes(), out_dir, limit);
}

}  // namespace ember::data
