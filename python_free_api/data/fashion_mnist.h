// Fashion-MNIST (and MNIST, same format) as tensors, read from the IDX files directly
// (plain or .gz); a TensorDataset, so it feeds a DataLoader as it is.
#pragma once

#include <string>
#include <vector>

#include "ember/core/base/export.h"
#include "ember/core/tensor.h"
#include "ember/python_free_api/data/dataset.h"

namespace ember::data {

enum class Split { Train, Test };

// Where the Debian package dataset-fashion-mnist puts the files; EMBER_FASHION_MNIST
// in the environment overrides it.
EMBER_API std::string default_fashion_mnist_dir();

class EMBER_API FashionMNIST : public TensorDataset {
 public:
  // Reads train-* or t10k-* {images-idx3,labels-idx1}-ubyte[.gz] under `root`.
  FashionMNIST(const std::string& root, Split split);

  // float32 [N, 1, 28, 28], pixels scaled to [0, 1].
  const Tensor& images() const { return x(); }
  // int64 [N], class indices 0..9.
  const Tensor& labels() const { return y(); }
  // size() (the number of samples) comes from TensorDataset.
  static const std::vector<std::string>& classes();

 private:
  explicit FashionMNIST(Batch loaded);
};

}  // namespace ember::data
