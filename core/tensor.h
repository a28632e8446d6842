// Tensor: a cheap shared handle (like torch::Tensor) to a TensorImpl — storage, shape,
// strides, offset, dtype, device and the autograd link. Views share storage.
#pragma once

#include <cstdint>
#include <functional>
#include <initializer_list>
#include <memory>
#include <ostream>
#include <string>
#include <vector>

#include "ember/core/device.h"
#include "ember/core/dtype.h"
#include "ember/core/base/error.h"
#include "ember/core/base/export.h"
#include "ember/core/storage.h"

namespace ember {

using Shape = std::vector<int64_t>;

// "[64, 784]"
EMBER_API std::string shape_str(const Shape& s);
EMBER_API int64_t shape_numel(const Shape& s);

namespace autograd {
class Node;
}

class Tensor;

// Where the elements of a 4-D [N, C, H, W] tensor lie in memory (PyTorch's
// torch.memory_format). Contiguous: row-major NCHW. ChannelsLast: the same shape and
// indexing with strides [H*W*C, 1, W*C, C], i.e. NHWC in memory, the layout the GPU's
// tensor-core convolutions read directly. conv2d and the pools accept either and answer in
// their input's format; unary ops and activations keep it; other ops read any layout and
// answer row-major. Weights stay row-major (conv2d lays them out as it needs).
enum class MemoryFormat { Contiguous, ChannelsLast };

struct TensorOptions {
  DType dtype = kFloat32;
  Device device = Device::cpu();
  bool requires_grad = false;
  // CPU only: page-locked host memory from ember's pinned pool, the source of asynchronous
  // host-to-device copies (see Tensor::pin_memory for what it is without a GPU).
  bool pinned_memory = false;
};

class EMBER_API TensorImpl {
 public:
  std::shared_ptr<StorageImpl> storage;
  Shape sizes;
  Shape strides;       // in elements
  int64_t offset = 0;  // in elements
  DType dtype = kFloat32;

  // Autograd.
  bool requires_grad = false;
  std::shared_ptr<TensorImpl> grad;
  std::shared_ptr<autograd::Node> grad_fn;  // null for leaves
  uint32_t output_nr = 0;                   // which output of grad_fn this is
  std::weak_ptr<autograd::Node> grad_accumulator;  // leaves only, created on first use
  bool retains_grad = false;                // non-leaf that keeps its .grad

  Device device() const { return storage->device(); }
};

class EMBER_API Tensor {
 public:
  Tensor() = default;
  explicit Tensor(std::shared_ptr<TensorImpl> impl) : impl_(std::move(impl)) {}

  // --- creation (free functions below take TensorOptions too) -------------------------
  static Tensor empty(const Shape& shape, TensorOptions opts = {});
  template <typename T>
  static Tensor from_vector(const std::vector<T>& values, const Shape& shape,
                            Device device = Device::cpu());
  // Wraps memory the caller owns (not copied). `deleter` runs when the last view dies;
  // omit it to keep ownership with the caller.
  static Tensor from_blob(void* data, const Shape& shape, DType dtype,
                          Device device = Device::cpu(),
                          std::function<void(void*)> deleter = nullptr);

  // --- metadata -------------------------------------------------------------------------
  bool defined() const { return impl_ != nullptr; }
  const Shape& shape() const { return impl().sizes; }
  const Shape& sizes() const { return impl().sizes; }
  const Shape& strides() const { return impl().strides; }
  int64_t size(int64_t dim) const;    // negative dims count from the end
  int64_t stride(int64_t dim) const;
  int64_t dim() const { return static_cast<int64_t>(impl().sizes.size()); }
  int64_t numel() const { return shape_numel(impl().sizes); }
  int64_t offset() const { return impl().offset; }
  DType dtype() const { return impl().dtype; }
  Device device() const { return impl().device(); }
  bool is_cuda() const { return device().is_cuda(); }
  bool is_contiguous() const;
  // Laid out densely in `format` (ChannelsLast: 4-D only). A tensor can be both, e.g.
  // with one channel.
  bool is_contiguous(MemoryFormat format) const;
  // ChannelsLast for a 4-D tensor dense in that layout and not also row-major, else
  // Contiguous: the format an op's output should keep.
  MemoryFormat suggest_memory_format() const;
  size_t element_size() const { return dtype_size(dtype()); }
  size_t nbytes() const { return static_cast<size_t>(numel()) * element_size(); }

  // Pointer to the first element (storage + offset). The typed form checks the dtype.
  void* data_ptr() const;
  template <typename T>
  T* data() const {
    EMBER_CHECK_T(DTypeError, dtype() == dtype_of_v<T>, "Tensor::data<", dtype_name(dtype_of_v<T>),
                  ">(): tensor has dtype ", dtype_name(dtype()));
    return static_cast<T*>(data_ptr());
  }

  // --- autograd -------------------------------------------------------------------------
  bool requires_grad() const { return impl().requires_grad; }
  // Marks a leaf as needing gradients (float dtypes only). Returns *this.
  Tensor& requires_grad_(bool on = true);
  Tensor grad() const;      // undefined when none has been computed
  void set_grad(const Tensor& g);
  bool is_leaf() const { return impl().grad_fn == nullptr; }
  const std::shared_ptr<autograd::Node>& grad_fn() const { return impl().grad_fn; }
  // Keeps .grad on a non-leaf tensor after backward().
  void retain_grad();
  // Backpropagates from this tensor. `gradient` defaults to 1 for a one-element tensor.
  void backward(const Tensor& gradient = Tensor(), bool retain_graph = false) const;
  // Same storage, cut from the graph.
  Tensor detach() const;
  // Version of the storage (bumped by in-place ops).
  uint64_t version() const { return impl().storage->version(); }

  // --- views (share storage; differentiable) ---------------------------------------------
  Tensor view(const Shape& shape) const;      // requires compatible strides; -1 infers one dim
  Tensor reshape(const Shape& shape) const;   // a view when possible, else a copy
  Tensor transpose(int64_t dim0, int64_t dim1) const;
  Tensor t() const;                           // 2-D transpose
  Tensor permute(const std::vector<int64_t>& dims) const;
  Tensor narrow(int64_t dim, int64_t start, int64_t length) const;
  Tensor slice(int64_t dim, int64_t start, int64_t end, int64_t step = 1) const;
  Tensor select(int64_t dim, int64_t index) const;
  Tensor squeeze() const;
  Tensor squeeze(int64_t dim) const;
  Tensor unsqueeze(int64_t dim) const;
  Tensor expand(const Shape& shape) const;    // -1 keeps a size; new leading dims allowed
  Tensor flatten(int64_t start_dim = 0, int64_t end_dim = -1) const;
  Tensor contiguous() const;                  // *this when already contiguous
  // A dense copy in `format` (differentiable), or *this when already so. ChannelsLast
  // takes a 4-D tensor (a ShapeError otherwise).
  Tensor contiguous(MemoryFormat format) const;
  Tensor clone() const;

  // --- conversion -----------------------------------------------------------------------
  // *this when already on `device`. A copy to or from the host has completed on return,
  // one between GPUs is queued on the destination's compute stream. With `non_blocking`,
  // a host-to-GPU copy is queued on the device's copy stream instead and the host goes on
  // at once; every op queued later on the device runs after it (Note [Non-blocking
  // copies] in core/memory/transfer.h). From pin_memory() tensors it is asynchronous DMA.
  // Every other direction ignores `non_blocking`.
  Tensor to(Device device, bool non_blocking = false) const;
  Tensor to(DType dtype) const;
  // A copy in page-locked host memory (CPU tensors only; DeviceError otherwise), for
  // asynchronous host-to-device copies. Like PyTorch's pin_memory(), except that without
  // a usable GPU (or when the driver can lock no more pages) it does not throw: the copy
  // lies in ordinary host memory from the pinned pool's fallback, and copies from it are
  // merely slower (Note [Pinned pool policy] in core/memory/pinned_pool.h).
  Tensor pin_memory() const;
  Tensor cpu() const { return to(Device::cpu()); }
  Tensor cuda(int index = 0) const { return to(Device::cuda(index)); }
  // The single element as double (or as T). Throws unless numel() == 1.
  double item() const;
  template <typename T>
  T item() const;
  // All elements in C order, copied to the host. T must match the dtype.
  template <typename T>
  std::vector<T> to_vector() const;

  // --- in-place (not recorded by autograd; refuse leaves that require grad in grad mode) --
  Tensor& zero_();
  Tensor& fill_(double value);
  Tensor& copy_(const Tensor& src);  // same shape (or broadcastable), any device/dtype
  Tensor& add_(const Tensor& other, double alpha = 1.0);
  Tensor& mul_(double value);

  // --- common ops as methods (the free functions in core/ops.h are the definitions) -----
  Tensor sum() const;
  Tensor sum(int64_t dim, bool keepdim = false) const;
  Tensor mean() const;
  Tensor mean(int64_t dim, bool keepdim = false) const;
  Tensor max() const;
  Tensor argmax(int64_t dim, bool keepdim = false) const;
  Tensor matmul(const Tensor& other) const;
  Tensor exp() const;
  Tensor log() const;
  Tensor relu() const;
  Tensor pow(double exponent) const;
  Tensor abs() const;
  Tensor sqrt() const;

  std::string str() const;  // as operator<< prints it

  TensorImpl& impl() const {
    EMBER_CHECK(impl_ != nullptr, "use of an undefined Tensor");
    return *impl_;
  }
  const std::shared_ptr<TensorImpl>& impl_ptr() const { return impl_; }
  bool is_same(const Tensor& o) const { return impl_ == o.impl_; }

 private:
  std::shared_ptr<TensorImpl> impl_;
};

EMBER_API std::ostream& operator<<(std::ostream& os, const Tensor& t);

// --- factories (like torch::zeros etc.) ---------------------------------------------------
EMBER_API Tensor empty(const Shape& shape, TensorOptions opts = {});
EMBER_API Tensor zeros(const Shape& shape, TensorOptions opts = {});
EMBER_API Tensor ones(const Shape& shape, TensorOptions opts = {});
EMBER_API Tensor full(const Shape& shape, double value, TensorOptions opts = {});
EMBER_API Tensor zeros_like(const Tensor& t);
EMBER_API Tensor ones_like(const Tensor& t);
EMBER_API Tensor full_like(const Tensor& t, double value);
// [start, end) step `step`; dtype defaults to int64 for the integer overload.
EMBER_API Tensor arange(int64_t end, TensorOptions opts = {.dtype = kInt64});
EMBER_API Tensor arange(double start, double end, double step = 1.0, TensorOptions opts = {});
// Uniform [0, 1) and standard normal, from the seeded CPU generator (see core/random.h),
// so the same seed gives the same values on every device.
EMBER_API Tensor rand(const Shape& shape, TensorOptions opts = {});
EMBER_API Tensor randn(const Shape& shape, TensorOptions opts = {});
// A rank-0 tensor holding `value`.
EMBER_API Tensor scalar_tensor(double value, TensorOptions opts = {});

template <typename T>
Tensor Tensor::from_vector(const std::vector<T>& values, const Shape& shape, Device device) {
  static_assert(!std::is_same_v<T, bool>, "use std::vector<uint8_t> with to(kBool) for bool");
  EMBER_CHECK_T(ShapeError, static_cast<int64_t>(values.size()) == shape_numel(shape),
                "Tensor::from_vector: ", values.size(), " values do not fill shape ",
                shape_str(shape), " (", shape_numel(shape), " elements)");
  Tensor cpu_t = empty(shape, {.dtype = dtype_of_v<T>});
  std::copy(values.begin(), values.end(), cpu_t.data<T>());
  return device.is_cpu() ? cpu_t : cpu_t.to(device);
}

}  // namespace ember
