// Fashion-MNIST (and MNIST, same format) as tensors, read from the IDX files directly
// (plain or .gz).
#pragma once

#include <string>
#include <vector>

#include "core/export.h"
#include "core/tensor.h"

namespace ember::data {

enum class Split { Train, Test };

// Where the Debian package dataset-fashion-mnist puts the files; EMBER_FASHION_MNIST
// in the environment overrides it.
EMBER_API std::string default_fashion_mnist_dir();

class EMBER_API FashionMNIST {
 public:
  // Reads train-* or t10k-* {images-idx3,labels-idx1}-ubyte[.gz] under `root`.
  FashionMNIST(const std::string& root, Split split);

  // float32 [N, 1, 28, 28], pixels scaled to [0, 1].
  const Tensor& images() const { return images_; }
  // int64 [N], class indices 0..9.
  const Tensor& labels() const { return labels_; }
  int64_t size() const { return labels_.numel(); }
  static const std::vector<std::string>& classes();

 private:
  Tensor images_;
  Tensor labels_;
};

}  // namespace ember::data
