// Tensor: storage allocation, creation, metadata, device/dtype conversion, in-place
// updates and printing. Views and math live in core/ops/.
#include "core/tensor.h"

#include <cuda_runtime_api.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iomanip>
#include <sstream>

#include "core/autograd.h"
#include "core/cuda_check.h"
#include "core/cuda_context.h"
#include "core/memory/cuda_memory.h"
#include "core/ops.h"
#include "core/ops/op_utils.h"
#include "core/random.h"
#include "kernels/cpu/elementwise.h"
#include "kernels/cuda/elementwise.cuh"

namespace ember {

// --- shapes ---------------------------------------------------------------------------

std::string shape_str(const Shape& s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) {
    if (i) out += ", ";
    out += std::to_string(s[i]);
  }
  return out + "]";
}

int64_t shape_numel(const Shape& s) {
  int64_t n = 1;
  for (int64_t d : s) {
    EMBER_CHECK_T(ShapeError, d >= 0, "shape ", shape_str(s), " has a negative size");
    EMBER_CHECK_T(ShapeError, !__builtin_mul_overflow(n, d, &n), "shape ", shape_str(s),
                  " has more elements than fit in int64");
  }
  return n;
}

static Shape contiguous_strides(const Shape& sizes) {
  Shape strides(sizes.size());
  int64_t s = 1;
  for (int64_t i = static_cast<int64_t>(sizes.size()) - 1; i >= 0; --i) {
    strides[i] = s;
    s *= std::max<int64_t>(sizes[i], 1);
  }
  return strides;
}

// --- storage --------------------------------------------------------------------------

StorageImpl::~StorageImpl() {
  if (deleter_ && data_ != nullptr) deleter_(data_);
}

std::shared_ptr<StorageImpl> StorageImpl::allocate(size_t nbytes, Device device) {
  if (device.is_cpu()) {
    // 64-byte alignment suits AVX-512 loads and the vectorized kernels.
    const size_t rounded = (std::max<size_t>(nbytes, 1) + 63) / 64 * 64;
    void* p = std::aligned_alloc(64, rounded);
    EMBER_CHECK_T(OutOfMemoryError, p != nullptr, "CPU out of memory: tried to allocate ",
                  nbytes, " bytes");
    return std::make_shared<StorageImpl>(p, nbytes, device, [](void* q) { std::free(q); });
  }
  const int index = device.index();
  cudaStream_t stream = cuda::compute_stream(index);
  void* p = cuda::raw_alloc(nbytes, index, stream);
  return std::make_shared<StorageImpl>(p, nbytes, device,
                                       [index](void* q) { cuda::raw_free(q, index); });
}

// --- creation -------------------------------------------------------------------------

Tensor Tensor::empty(const Shape& shape, TensorOptions opts) {
  EMBER_CHECK_T(DTypeError, !(opts.dtype == kFloat64 && opts.device.is_cuda()),
                "empty: float64 tensors are supported on the CPU only (asked for ",
                shape_str(shape), " on ", opts.device.str(), ")");
  const int64_t n = shape_numel(shape);
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = StorageImpl::allocate(static_cast<size_t>(n) * dtype_size(opts.dtype), opts.device);
  impl->sizes = shape;
  impl->strides = contiguous_strides(shape);
  impl->dtype = opts.dtype;
  Tensor t(std::move(impl));
  if (opts.requires_grad) t.requires_grad_(true);
  return t;
}

Tensor Tensor::from_blob(void* data, const Shape& shape, DType dtype, Device device,
                         std::function<void(void*)> deleter) {
  EMBER_CHECK(data != nullptr || shape_numel(shape) == 0, "from_blob: null data for shape ",
              shape_str(shape));
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = std::make_shared<StorageImpl>(
      data, static_cast<size_t>(shape_numel(shape)) * dtype_size(dtype), device,
      std::move(deleter));
  impl->sizes = shape;
  impl->strides = contiguous_strides(shape);
  impl->dtype = dtype;
  return Tensor(std::move(impl));
}

Tensor empty(const Shape& shape, TensorOptions opts) { return Tensor::empty(shape, opts); }

Tensor full(const Shape& shape, double value, TensorOptions opts) {
  const bool rg = opts.requires_grad;
  opts.requires_grad = false;
  Tensor t = Tensor::empty(shape, opts);
  t.fill_(value);
  if (rg) t.requires_grad_(true);
  return t;
}

Tensor zeros(const Shape& shape, TensorOptions opts) { return full(shape, 0.0, opts); }
Tensor ones(const Shape& shape, TensorOptions opts) { return full(shape, 1.0, opts); }
Tensor zeros_like(const Tensor& t) { return zeros(t.shape(), {.dtype = t.dtype(), .device = t.device()}); }
Tensor ones_like(const Tensor& t) { return ones(t.shape(), {.dtype = t.dtype(), .device = t.device()}); }
Tensor full_like(const Tensor& t, double value) {
  return full(t.shape(), value, {.dtype = t.dtype(), .device = t.device()});
}
Tensor scalar_tensor(double value, TensorOptions opts) { return full({}, value, opts); }

Tensor arange(int64_t end, TensorOptions opts) {
  return arange(0.0, static_cast<double>(end), 1.0, opts);
}

Tensor arange(double start, double end, double step, TensorOptions opts) {
  EMBER_CHECK(step != 0.0 && std::isfinite(start) && std::isfinite(end) && std::isfinite(step),
              "arange: need finite start/end and a non-zero step, got start=", start,
              " end=", end, " step=", step);
  EMBER_CHECK((end - start) * step >= 0, "arange: step ", step, " never reaches ", end,
              " from ", start);
  const int64_t n = static_cast<int64_t>(std::ceil((end - start) / step));
  std::vector<double> values(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) values[i] = start + static_cast<double>(i) * step;
  Tensor t = Tensor::from_vector(values, {n}).to(opts.dtype).to(opts.device);
  if (opts.requires_grad) t.requires_grad_(true);
  return t;
}

template <typename Dist>
static Tensor random_tensor(const Shape& shape, TensorOptions opts, Dist dist, const char* op) {
  EMBER_CHECK_T(DTypeError, is_floating(opts.dtype), op,
                ": expected a floating-point dtype, got ", dtype_name(opts.dtype));
  const int64_t n = shape_numel(shape);
  std::vector<double> values(static_cast<size_t>(n));
  {
    std::lock_guard<std::mutex> lock(cpu_generator_mutex());
    auto& gen = cpu_generator();
    for (auto& v : values) v = dist(gen);
  }
  Tensor t = Tensor::from_vector(values, shape).to(opts.dtype).to(opts.device);
  if (opts.requires_grad) t.requires_grad_(true);
  return t;
}

Tensor rand(const Shape& shape, TensorOptions opts) {
  return random_tensor(shape, opts, std::uniform_real_distribution<double>(0.0, 1.0), "rand");
}
Tensor randn(const Shape& shape, TensorOptions opts) {
  return random_tensor(shape, opts, std::normal_distribution<double>(0.0, 1.0), "randn");
}

// --- metadata -------------------------------------------------------------------------

int64_t Tensor::size(int64_t dim) const {
  return impl().sizes[detail::wrap_dim(dim, this->dim(), "size")];
}

int64_t Tensor::stride(int64_t dim) const {
  return impl().strides[detail::wrap_dim(dim, this->dim(), "stride")];
}

bool Tensor::is_contiguous() const {
  const auto& sz = impl().sizes;
  const auto& st = impl().strides;
  int64_t expected = 1;
  for (int64_t i = static_cast<int64_t>(sz.size()) - 1; i >= 0; --i) {
    if (sz[i] == 1) continue;
    if (st[i] != expected) return false;
    expected *= sz[i];
  }
  return true;
}

void* Tensor::data_ptr() const {
  auto& im = impl();
  return static_cast<char*>(im.storage->data()) +
         im.offset * static_cast<int64_t>(dtype_size(im.dtype));
}

// --- autograd handles -----------------------------------------------------------------

Tensor& Tensor::requires_grad_(bool on) {
  if (on) {
    EMBER_CHECK_T(DTypeError, is_floating(dtype()),
                  "requires_grad_: only floating-point tensors can require gradients, got ",
                  detail::describe(*this));
  }
  EMBER_CHECK(is_leaf() || on, "requires_grad_(false): only leaf tensors can be changed; "
              "use detach() on a tensor produced by an op");
  impl().requires_grad = on;
  return *this;
}

Tensor Tensor::grad() const { return impl().grad ? Tensor(impl().grad) : Tensor(); }

void Tensor::set_grad(const Tensor& g) {
  if (g.defined()) {
    EMBER_CHECK_T(ShapeError, g.shape() == shape(), "set_grad: gradient shape ",
                  shape_str(g.shape()), " does not match the tensor's ", shape_str(shape()));
    EMBER_CHECK_T(DeviceError, g.device() == device(), "set_grad: gradient on ",
                  g.device().str(), " but the tensor is on ", device().str());
  }
  impl().grad = g.impl_ptr();
}

void Tensor::retain_grad() {
  EMBER_CHECK(requires_grad(), "retain_grad: the tensor does not require grad");
  if (is_leaf() || impl().retains_grad) return;
  impl().retains_grad = true;
  grad_fn()->retain_output(impl().output_nr, impl_ptr());
}

void Tensor::backward(const Tensor& gradient, bool retain_graph) const {
  autograd::backward({*this}, {gradient}, retain_graph);
}

Tensor Tensor::detach() const {
  auto impl2 = std::make_shared<TensorImpl>();
  impl2->storage = impl().storage;
  impl2->sizes = impl().sizes;
  impl2->strides = impl().strides;
  impl2->offset = impl().offset;
  impl2->dtype = impl().dtype;
  return Tensor(std::move(impl2));
}

// --- conversion -----------------------------------------------------------------------

// Copies contiguous bytes between devices on the destination's (or source's) stream.
static void copy_bytes(const Tensor& src, const Tensor& dst) {
  const size_t nbytes = src.nbytes();
  if (nbytes == 0) return;
  const Device s = src.device(), d = dst.device();
  if (s.is_cpu() && d.is_cpu()) {
    std::memcpy(dst.data_ptr(), src.data_ptr(), nbytes);
  } else if (s.is_cpu()) {
    cudaStream_t stream = cuda::compute_stream(d.index());
    cuda::DeviceGuard guard(d.index());
    EMBER_CUDA_CHECK(cudaMemcpyAsync(dst.data_ptr(), src.data_ptr(), nbytes,
                                     cudaMemcpyHostToDevice, stream));
    // The host buffer may be freed as soon as we return.
    EMBER_CUDA_CHECK(cudaStreamSynchronize(stream));
  } else if (d.is_cpu()) {
    cudaStream_t stream = cuda::compute_stream(s.index());
    cuda::DeviceGuard guard(s.index());
    EMBER_CUDA_CHECK(cudaMemcpyAsync(dst.data_ptr(), src.data_ptr(), nbytes,
                                     cudaMemcpyDeviceToHost, stream));
    EMBER_CUDA_CHECK(cudaStreamSynchronize(stream));
  } else if (s == d) {
    EMBER_CUDA_CHECK(cudaMemcpyAsync(dst.data_ptr(), src.data_ptr(), nbytes,
                                     cudaMemcpyDeviceToDevice, cuda::compute_stream(d.index())));
  } else {
    // Order after the source's pending work, then copy on the destination's stream.
    EMBER_CUDA_CHECK(cudaStreamSynchronize(cuda::compute_stream(s.index())));
    EMBER_CUDA_CHECK(cudaMemcpyPeerAsync(dst.data_ptr(), d.index(), src.data_ptr(), s.index(),
                                         nbytes, cuda::compute_stream(d.index())));
  }
}

Tensor Tensor::to(Device device) const {
  if (device == this->device()) return *this;
  Tensor src = contiguous();
  Tensor out = Tensor::empty(shape(), {.dtype = dtype(), .device = device});
  copy_bytes(src, out);
  if (autograd::needs_grad({this})) {
    const Device from = this->device();
    autograd::record("to_device", {*this}, {out}, [from](std::vector<Tensor>& g) {
      return std::vector<Tensor>{g[0].to(from)};
    });
  }
  return out;
}

Tensor Tensor::to(DType dtype) const {
  if (dtype == this->dtype()) return *this;
  EMBER_CHECK_T(DTypeError, !(dtype == kFloat64 && is_cuda()),
                "to(float64): float64 is supported on the CPU only; move the tensor with "
                ".cpu() first (tensor is ", detail::describe(*this), ")");
  Tensor src = contiguous();
  Tensor out = Tensor::empty(shape(), {.dtype = dtype, .device = device()});
  const int64_t n = numel();
  if (is_cuda()) {
    kernels::cuda::cast(detail::stream_of(src), dtype_code(this->dtype()), src.data_ptr(),
                        dtype_code(dtype), out.data_ptr(), n);
  } else {
    kernels::cpu::cast(dtype_code(this->dtype()), src.data_ptr(), dtype_code(dtype),
                       out.data_ptr(), n);
  }
  if (is_floating(dtype) && autograd::needs_grad({this})) {
    const DType from = this->dtype();
    autograd::record("to_dtype", {*this}, {out}, [from](std::vector<Tensor>& g) {
      return std::vector<Tensor>{g[0].to(from)};
    });
  }
  return out;
}

double Tensor::item() const {
  EMBER_CHECK_T(ShapeError, numel() == 1, "item(): the tensor has ", numel(),
                " elements (shape ", shape_str(shape()), "); item() needs exactly one");
  Tensor c = to(Device::cpu()).to(is_floating(dtype()) ? kFloat64 : kInt64);
  return c.dtype() == kFloat64 ? *c.data<double>() : static_cast<double>(*c.data<int64_t>());
}

template <typename T>
T Tensor::item() const {
  EMBER_CHECK_T(ShapeError, numel() == 1, "item(): the tensor has ", numel(),
                " elements (shape ", shape_str(shape()), "); item() needs exactly one");
  Tensor c = to(Device::cpu()).to(dtype_of_v<T>);
  return *c.data<T>();
}

template <typename T>
std::vector<T> Tensor::to_vector() const {
  EMBER_CHECK_T(DTypeError, dtype() == dtype_of_v<T>, "to_vector<", dtype_name(dtype_of_v<T>),
                ">(): the tensor has dtype ", dtype_name(dtype()),
                "; convert it first with .to(", dtype_name(dtype_of_v<T>), ")");
  Tensor c = to(Device::cpu()).contiguous();
  const T* p = static_cast<const T*>(c.data_ptr());
  return std::vector<T>(p, p + c.numel());
}

#define EMBER_INSTANTIATE_CONVERSIONS(T)              \
  template EMBER_API T Tensor::item<T>() const;        \
  template EMBER_API std::vector<T> Tensor::to_vector<T>() const;
EMBER_INSTANTIATE_CONVERSIONS(float)
EMBER_INSTANTIATE_CONVERSIONS(double)
EMBER_INSTANTIATE_CONVERSIONS(int32_t)
EMBER_INSTANTIATE_CONVERSIONS(int64_t)
EMBER_INSTANTIATE_CONVERSIONS(uint8_t)
#undef EMBER_INSTANTIATE_CONVERSIONS

template <>
EMBER_API bool Tensor::item<bool>() const {
  return item<uint8_t>() != 0;
}

// --- in-place -------------------------------------------------------------------------

Tensor& Tensor::fill_(double value) {
  detail::prepare_inplace(*this, "fill_");
  if (is_contiguous()) {
    if (is_cuda()) {
      kernels::cuda::fill(detail::stream_of(*this), dtype_code(dtype()), data_ptr(), numel(), value);
    } else {
      kernels::cpu::fill(dtype_code(dtype()), data_ptr(), numel(), value);
    }
  } else {
    copy_(full({}, value, {.dtype = dtype(), .device = device()}));
  }
  return *this;
}

Tensor& Tensor::zero_() { return fill_(0.0); }

Tensor& Tensor::copy_(const Tensor& src) {
  detail::check_defined(src, "copy_", "source");
  Shape out = broadcast_shapes(shape(), src.shape(), "copy_");
  EMBER_CHECK_T(ShapeError, out == shape(), "copy_: source shape ", shape_str(src.shape()),
                " cannot be broadcast to the destination's ", shape_str(shape()));
  detail::prepare_inplace(*this, "copy_");
  Tensor s;
  {
    NoGradGuard no_grad;
    s = src.to(device()).to(dtype()).expand(shape()).contiguous();
  }
  if (is_contiguous()) {
    copy_bytes(s, *this);
    return *this;
  }
  // Scatter into a strided destination.
  if (is_cuda()) {
    kernels::cuda::strided_scatter(detail::stream_of(*this), element_size(), s.data_ptr(),
                                   detail::strided_index(*this), data_ptr(), numel());
  } else {
    kernels::cpu::strided_scatter(element_size(), s.data_ptr(), detail::strided_index(*this),
                                  data_ptr(), numel());
  }
  return *this;
}

Tensor& Tensor::add_(const Tensor& other, double alpha) {
  Tensor r;
  {
    NoGradGuard no_grad;
    Tensor o = other.to(device());
    r = alpha == 1.0 ? add(*this, o) : add(*this, mul(o, alpha));
  }
  return copy_(r);
}

Tensor& Tensor::mul_(double value) {
  Tensor r;
  {
    NoGradGuard no_grad;
    r = mul(*this, value);
  }
  return copy_(r);
}

// --- method forms of ops ----------------------------------------------------------------

Tensor Tensor::sum() const { return ember::sum(*this); }
Tensor Tensor::sum(int64_t dim, bool keepdim) const { return ember::sum(*this, {dim}, keepdim); }
Tensor Tensor::mean() const { return ember::mean(*this); }
Tensor Tensor::mean(int64_t dim, bool keepdim) const { return ember::mean(*this, {dim}, keepdim); }
Tensor Tensor::max() const { return ember::max(*this); }
Tensor Tensor::argmax(int64_t dim, bool keepdim) const { return ember::argmax(*this, dim, keepdim); }
Tensor Tensor::matmul(const Tensor& other) const { return ember::matmul(*this, other); }
Tensor Tensor::exp() const { return ember::exp(*this); }
Tensor Tensor::log() const { return ember::log(*this); }
Tensor Tensor::relu() const { return ember::relu(*this); }
Tensor Tensor::pow(double exponent) const { return ember::pow(*this, exponent); }
Tensor Tensor::abs() const { return ember::abs(*this); }
Tensor Tensor::sqrt() const { return ember::sqrt(*this); }

// --- printing -------------------------------------------------------------------------

namespace {

// Formats like PyTorch: integers-valued floats as "1.", otherwise 4 decimals, or
// scientific notation when magnitudes span too much; every element padded to one width.
struct Formatter {
  bool floating = false;
  bool int_valued = true;
  bool sci = false;
  int width = 1;

  std::string format(double v) const {
    char buf[64];
    if (!floating) {
      std::snprintf(buf, sizeof buf, "%lld", static_cast<long long>(v));
    } else if (std::isnan(v)) {
      std::snprintf(buf, sizeof buf, "nan");
    } else if (std::isinf(v)) {
      std::snprintf(buf, sizeof buf, v > 0 ? "inf" : "-inf");
    } else if (sci) {
      std::snprintf(buf, sizeof buf, "%.4e", v);
    } else if (int_valued) {
      std::snprintf(buf, sizeof buf, "%.0f.", v);
    } else {
      std::snprintf(buf, sizeof buf, "%.4f", v);
    }
    return buf;
  }
};

constexpr int64_t kSummarizeThreshold = 1000;
constexpr int64_t kEdgeItems = 3;

void print_rec(std::ostream& os, const std::vector<double>& vals, const Shape& shape,
               const Shape& strides, int64_t dim, int64_t base, const Formatter& f,
               bool summarize, int indent, bool is_bool) {
  if (dim == static_cast<int64_t>(shape.size())) {
    std::string s = is_bool ? (vals[base] != 0 ? "True" : "False") : f.format(vals[base]);
    os << std::setw(f.width) << s;
    return;
  }
  os << "[";
  const int64_t n = shape[dim];
  const bool last = dim + 1 == static_cast<int64_t>(shape.size());
  for (int64_t i = 0; i < n; ++i) {
    if (summarize && n > 2 * kEdgeItems && i == kEdgeItems) {
      os << (last ? "..., " : "...,\n" + std::string(indent + 1, ' '));
      i = n - kEdgeItems;
    }
    print_rec(os, vals, shape, strides, dim + 1, base + i * strides[dim], f, summarize,
              indent + 1, is_bool);
    if (i + 1 < n) {
      if (last) {
        os << ", ";
      } else {
        os << "," << std::string(shape.size() - dim - 1, '\n') << std::string(indent + 1, ' ');
      }
    }
  }
  os << "]";
}

}  // namespace

std::string Tensor::str() const {
  std::ostringstream os;
  os << *this;
  return os.str();
}

std::ostream& operator<<(std::ostream& os, const Tensor& t) {
  if (!t.defined()) return os << "tensor(undefined)";
  Tensor c;
  {
    NoGradGuard no_grad;
    c = t.detach().to(Device::cpu()).to(kFloat64).contiguous();
  }
  const double* p = c.data<double>();
  std::vector<double> vals(p, p + c.numel());
  Formatter f;
  f.floating = is_floating(t.dtype());
  const bool is_bool = t.dtype() == kBool;
  double max_abs = 0, min_abs = INFINITY;
  for (double v : vals) {
    if (!std::isfinite(v)) continue;
    if (v != std::floor(v)) f.int_valued = false;
    max_abs = std::max(max_abs, std::fabs(v));
    if (v != 0) min_abs = std::min(min_abs, std::fabs(v));
  }
  if (f.floating && (max_abs >= 1e8 || (min_abs < 1e-4 && !f.int_valued) ||
                     (max_abs / min_abs > 1000 && !f.int_valued && min_abs != INFINITY))) {
    f.sci = true;
  }
  const bool summarize = c.numel() > kSummarizeThreshold;
  for (double v : vals) {
    const int w = static_cast<int>(is_bool ? (v != 0 ? 4 : 5) : f.format(v).size());
    f.width = std::max(f.width, w);
  }
  os << "tensor(";
  if (t.dim() == 0) {
    os << (is_bool ? (vals[0] != 0 ? "True" : "False") : f.format(vals[0]));
  } else {
    print_rec(os, vals, c.shape(), c.strides(), 0, 0, f, summarize, 7, is_bool);
  }
  if (t.is_cuda()) os << ", device='" << t.device().str() << "'";
  if (t.dtype() != kFloat32 && t.dtype() != kInt64 && t.dtype() != kBool) {
    os << ", dtype=" << dtype_name(t.dtype());
  }
  if (t.numel() == 0 && t.dim() != 1) os << ", size=" << shape_str(t.shape());
  if (t.grad_fn()) {
    os << ", grad_fn=<" << t.grad_fn()->name() << ">";
  } else if (t.requires_grad()) {
    os << ", requires_grad=True";
  }
  return os << ")";
}

}  // namespace ember
