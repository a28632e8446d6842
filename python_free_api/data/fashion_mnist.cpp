// Fashion-MNIST loading: IDX arrays turned into float images and int64 labels.
#include "ember/python_free_api/data/fashion_mnist.h"

#include <cstdlib>
#include <cstring>
#include <utility>

#include "ember/core/ops.h"
#include "ember/python_free_api/data/idx.h"

namespace ember::data {

std::string default_fashion_mnist_dir() {
  const char* env = std::getenv("EMBER_FASHION_MNIST");
  return env != nullptr && *env != '\0' ? env : "/usr/share/datasets/fashion-mnist";
}

namespace {

Batch load_fashion_mnist(const std::string& root, Split split) {
  const std::string prefix = split == Split::Train ? "train" : "t10k";
  IdxDataset ds = read_idx_pair(find_idx_file(root, prefix + "-images-idx3-ubyte"),
                                find_idx_file(root, prefix + "-labels-idx1-ubyte"), 10);
  const auto& d = ds.images.dims;
  const int64_t n = d[0];
  Tensor raw = Tensor::empty({n, 1, d[1], d[2]}, {.dtype = kUInt8});
  std::memcpy(raw.data_ptr(), ds.images.data.data(), ds.images.data.size());
  Tensor lab = Tensor::empty({n}, {.dtype = kUInt8});
  std::memcpy(lab.data_ptr(), ds.labels.data.data(), ds.labels.data.size());
  return {mul(raw.to(kFloat32), 1.0 / 255.0), lab.to(kInt64)};
}

}  // namespace

FashionMNIST::FashionMNIST(const std::string& root, Split split)
    : FashionMNIST(load_fashion_mnist(root, split)) {}

FashionMNIST::FashionMNIST(Batch loaded)
    : TensorDataset(std::move(loaded.x), std::move(loaded.y)) {}

const std::vector<std::string>& FashionMNIST::classes() {
  static const std::vector<std::string> names = {"T-shirt/top", "Trouser", "Pullover", "Dress",
                                                 "Coat",        "Sandal",  "Shirt",    "Sneaker",
                                                 "Bag",         "Ankle boot"};
  return names;
}

}  // namespace ember::data
