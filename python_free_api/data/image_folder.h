// Image folders (root/<class>/<image>, as Keras's image_dataset_from_directory and
// torchvision's ImageFolder read them) decoded (libpng, libjpeg-turbo, stb_image for
// the rarer formats) into a dataset of pixel bytes, or decoded batch by batch (lazy),
// served as float32 batches; and the reverse: writing a labelled image dataset out as
// such a folder of PNGs.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "ember/core/base/export.h"
#include "ember/python_free_api/data/dataset.h"
#include "ember/python_free_api/data/fashion_mnist.h"

namespace ember::data {

// What get_batch() serves as y, as Keras's image_dataset_from_directory(label_mode=...).
enum class LabelMode {
  kInt,          // "int": int64 [B] class indices
  kCategorical,  // "categorical": float32 one-hot rows [B, K], K = classes().size()
  kBinary,       // "binary": float32 [B, 1] holding 0 or 1; needs exactly 2 classes
  kNone,         // None: no labels, Batch::y undefined
};

struct ImageFolderOptions {
  // Every image is resized to height x width.
  int64_t height = 150;
  int64_t width = 150;
  // 1 (grey), 2 (grey + alpha), 3 (RGB) or 4 (RGBA), converted from what the file has as
  // stb_image converts.
  int64_t channels = 3;
  // Pixel bytes 0..255 are multiplied by this (Keras's Rescaling(1./255)) when a batch
  // is served; the dataset holds the bytes.
  double rescale = 1.0 / 255.0;
  // Skip files that cannot be decoded (counted, see ImageFolder::skipped()) instead of
  // throwing.
  bool skip_bad_files = false;
  // Largest width * height * channels accepted, checked from the file's header before
  // decoding, so a hostile or broken header cannot make the decoder allocate gigabytes
  // (Note [Untrusted images] in image_decode.cpp lists the other checks).
  int64_t max_pixels = int64_t{64} << 20;
  // Decode at most this many images (-1: all). When the folder holds more, they are
  // taken evenly spaced over the sorted file list, so each class keeps its share (see
  // Note [Image folder decoding]).
  int64_t max_images = -1;
  // The targets get_batch() serves; labels() are class indices whatever the mode.
  LabelMode label_mode = LabelMode::kInt;
  // List the files now and decode each image when a batch asks for it (Note [Lazy image
  // folders]) instead of decoding them all in the constructor. Not with skip_bad_files.
  bool lazy = false;
};

struct SkippedFile {
  std::string path;
  std::string reason;
};

// Note [Image folder decoding]
// Classes are the sorted names of root's sub-folders (hidden ones excluded); label i is
// classes()[i]. A class's files are those with an image extension (png, jpg, jpeg, bmp,
// gif, tga, pnm, ppm, pgm, psd, hdr, pic; any case; hidden files excluded), sorted by
// name, so the sample order is the same on every machine. Unless lazy (Note [Lazy image
// folders]), images are decoded eagerly, in the constructor, on several threads: the
// header first (dimensions checked against max_pixels and the file's size), then
// decoding to `channels` (libpng, libjpeg-turbo, or stb_image for the other formats;
// Note [Untrusted images] in image_decode.cpp), a resize with stb_image_resize (Mitchell
// filter when shrinking, cubic when enlarging; no resize when the size already matches),
// and a transposition of the bytes to [C, H, W]. The whole dataset is held as
// one uint8 [N, C, H, W] tensor, a byte per value: a quarter of what float32 storage
// would take (60 000 images of 3x150x150 take 4 GB rather than 16 GB). Its size is
// checked against half the machine's physical memory before any decoding starts. Errors
// are reported in file order whatever thread met them first.
// get_batch() gathers the requested rows and converts them to float32, each value
// static_cast<float>(byte) * static_cast<float>(rescale): the values a float32 copy of
// the dataset would hold, bit for bit, at the cost of one pass over the batch (small
// beside the model's work on it).
// Because decoding is eager, a folder too large for memory is read in part with
// max_images = m: of the n files in sample order, those at floor(k * n / m) for
// k = 0..m-1. Taking the first m instead would keep only the first classes; even spacing
// keeps every class's share (within one image) and the selection is still the same on
// every machine. classes() still lists every sub-folder, so labels agree with a full
// read of the folder even if a class gets no image.
//
// Note [Lazy image folders]
// With options.lazy the constructor only lists: the same classes, files, order, labels,
// max_images selection and option checks as an eager read, so the two serve the same
// samples under the same indices. get_batch() then decodes the requested files, on the
// calling thread (a DataLoader's workers, so num_workers decode in parallel), through the
// same decoder and resize as the eager read, into a uint8 batch converted as above: the
// batch is bit for bit the eager one. Nothing decoded is kept, so memory is what the
// batches in flight take (bounded by the DataLoader's prefetch * num_workers), whatever
// the folder's size; the price is decoding every image again each epoch. A file that
// cannot be decoded throws IOError from get_batch naming the sample index and the file,
// as the size is fixed before decoding, skip_bad_files is refused; the half-of-memory
// check does not apply, and pixels() is undefined.
class EMBER_API ImageFolder : public Dataset {
 public:
  // Throws IOError when root is missing or has no class folders, when a class folder
  // has no image files, and (unless skip_bad_files) when a file cannot be decoded,
  // naming the file and the decoder's reason; OutOfMemoryError when the decoded images would not
  // fit; ember::ValueError for bad options, and for LabelMode::kBinary unless root has
  // exactly 2 classes (checked before decoding). Lazy, it decodes nothing, so neither
  // decoding errors nor OutOfMemoryError come from here.
  explicit ImageFolder(const std::string& root, ImageFolderOptions options = {});

  int64_t size() const override;
  // x: float32 [B, channels, height, width], the rows' bytes times rescale; y as
  // options().label_mode says. Throws ember::ValueError naming an index outside [0, size()).
  Batch get_batch(const std::vector<int64_t>& indices) const override;

  // uint8 [N, channels, height, width]: the decoded pixels as held; undefined when lazy.
  const Tensor& pixels() const { return pixels_; }
  // int64 [N] class indices, whatever the label mode.
  const Tensor& labels() const { return labels_; }
  // Every image as float32 [N, channels, height, width] times rescale (get_batch over
  // all indices), converted (lazy: decoded) on each call: it allocates N * C * H * W * 4
  // bytes, four times pixels(). For tests and small tools; training reads batches.
  Tensor images() const;
  const std::vector<std::string>& classes() const { return classes_; }
  // The decoded files, in sample order.
  const std::vector<std::string>& files() const { return files_; }
  // Files skipped (skip_bad_files) and why, in file order.
  const std::vector<SkippedFile>& skipped() const { return skipped_; }
  int64_t num_skipped() const { return static_cast<int64_t>(skipped_.size()); }
  const ImageFolderOptions& options() const { return options_; }

 private:
  struct Loaded;
  static Loaded load(const std::string& root, const ImageFolderOptions& options);
  ImageFolder(Loaded loaded, ImageFolderOptions options);

  // Lazy mode: files `indices` decoded into uint8 [B, C, H, W].
  Tensor decode_rows(const std::vector<int64_t>& indices) const;

  Tensor pixels_;  // undefined when lazy
  Tensor labels_;
  std::vector<std::string> classes_;
  std::vector<std::string> files_;
  std::vector<SkippedFile> skipped_;
  ImageFolderOptions options_;
};

// `name` usable as a folder name everywhere: every character other than A-Z a-z 0-9 '-'
// '.' '_' becomes '_' ("T-shirt/top" -> "T-shirt_top"); "", "." and ".." become "_".
EMBER_API std::string safe_file_name(const std::string& name);

// Writes images x (float32 [N, C, H, W], C in {1, 3, 4}, values in [0, 1]) with int64
// labels y as out_dir/<safe class name>/<index>.png, index being the sample's position
// zero-padded to at least 5 digits (so name order is sample order). Only the first
// `limit` samples when limit >= 0. Creates folders as needed; throws IOError naming the
// path that could not be written.
EMBER_API void export_image_folder(const TensorDataset& dataset,
                                   const std::vector<std::string>& class_names,
                                   const std::string& out_dir, int64_t limit = -1);
// export_image_folder with Fashion-MNIST's class names ("T-shirt_top", "Trouser", ...).
EMBER_API void export_fashion_mnist_images(const FashionMNIST& dataset, const std::string& out_dir,
                                           int64_t limit = -1);

}  // namespace ember::data
