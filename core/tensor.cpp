// Tensor: storage allocation, creation, metadata, device/dtype conversion, in-place
// updates and printing. Views and math live in core/ops/.
#include "ember/core/tensor.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <sstream>

#include "ember/core/autograd.h"
#include "ember/core/dispatch.h"
#include "ember/core/memory/host_memory.h"
#include "ember/core/memory/pinned_pool.h"
#include "ember/core/memory/transfer.h"
#include "ember/core/ops.h"
#include "ember/core/ops/op_utils.h"
#include "ember/core/random.h"
#include "ember/kernels/cpu/elementwise.h"
#include "ember/kernels/cuda/elementwise.cuh"

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
    // 64-byte aligned (AVX-512 loads); large buffers from the CPU pool (Note [Host memory]).
    void* p = cpu::raw_alloc(std::max<size_t>(nbytes, 1));
    return std::make_shared<StorageImpl>(p, nbytes, device,
                                         [n = std::max<size_t>(nbytes, 1)](void* q) {
                                           cpu::raw_free(q, n);
                                         });
  }
  return memory::cuda_storage(nbytes, device);
}

// --- creation -------------------------------------------------------------------------

// float64 has no CUDA kernels (kComputes in core/dispatch.h): no such tensor is made.
static void check_float64_on_cpu(DType dtype, Device device, const Shape& shape) {
  EMBER_CHECK_T(DTypeError, !(dtype == kFloat64 && device.is_cuda()),
                "empty: float64 tensors are supported on the CPU only (asked for ",
                shape_str(shape), " on ", device.str(), ")");
}

// A contiguous tensor of `shape` over the start of `storage`.
static Tensor over_storage(std::shared_ptr<StorageImpl> storage, const Shape& shape,
                           DType dtype) {
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = std::move(storage);
  impl->sizes = shape;
  impl->strides = contiguous_strides(shape);
  impl->dtype = dtype;
  return Tensor(std::move(impl));
}

// A factory's shape, checked before shape_numel so that the error names the factory.
static void check_new_shape(const Shape& shape, const char* op) {
  for (size_t i = 0; i < shape.size(); ++i) {
    EMBER_CHECK_T(ShapeError, shape[i] >= 0, op, ": shape ", shape_str(shape),
                  " has a negative size (", shape[i], " at dimension ", i, ")");
  }
}

Tensor Tensor::empty(const Shape& shape, TensorOptions opts) {
  check_new_shape(shape, "empty");
  check_float64_on_cpu(opts.dtype, opts.device, shape);
  EMBER_CHECK_T(DeviceError, !(opts.pinned_memory && !opts.device.is_cpu()),
                "empty: pinned memory is host memory; asked for ", shape_str(shape), " on ",
                opts.device.str());
  const size_t nbytes = static_cast<size_t>(shape_numel(shape)) * dtype_size(opts.dtype);
  std::shared_ptr<StorageImpl> storage;
  if (opts.pinned_memory) {
    // From the pinned pool, which falls back to ordinary memory (Note [Pinned pool policy]).
    storage = std::make_shared<StorageImpl>(memory::pinned_alloc(nbytes), nbytes,
                                            Device::cpu(),
                                            [](void* q) { memory::pinned_free(q); });
  } else {
    storage = StorageImpl::allocate(nbytes, opts.device);
  }
  Tensor t = over_storage(std::move(storage), shape, opts.dtype);
  if (opts.requires_grad) t.requires_grad_(true);
  return t;
}

Tensor Tensor::from_blob(void* data, const Shape& shape, DType dtype, Device device,
                         std::function<void(void*)> deleter) {
  EMBER_CHECK_T(ValueError, data != nullptr || shape_numel(shape) == 0,
                "from_blob: null data for shape ", shape_str(shape));
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

static Tensor filled(const Shape& shape, double value, TensorOptions opts, const char* op) {
  check_new_shape(shape, op);
  const bool rg = opts.requires_grad;
  opts.requires_grad = false;
  Tensor t = Tensor::empty(shape, opts);
  t.fill_(value);
  if (rg) t.requires_grad_(true);
  return t;
}

Tensor full(const Shape& shape, double value, TensorOptions opts) {
  return filled(shape, value, opts, "full");
}
Tensor zeros(const Shape& shape, TensorOptions opts) { return filled(shape, 0.0, opts, "zeros"); }
Tensor ones(const Shape& shape, TensorOptions opts) { return filled(shape, 1.0, opts, "ones"); }
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
  EMBER_CHECK_T(ValueError,
                step != 0.0 && std::isfinite(start) && std::isfinite(end) && std::isfinite(step),
                "arange: need finite start/end and a non-zero step, got start=", start,
                " end=", end, " step=", step);
  EMBER_CHECK_T(ValueError, (end - start) * step >= 0, "arange: step ", step, " never reaches ",
                end, " from ", start);
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
  check_new_shape(shape, op);
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
  // A double draw just below 1 rounds to 1.0f; keep float32 draws inside [0, 1) as well.
  const double top = opts.dtype == kFloat32 ? std::nextafter(1.0f, 0.0f) : std::nextafter(1.0, 0.0);
  return random_tensor(shape, opts,
                       [uniform = std::uniform_real_distribution<double>(0.0, 1.0),
                        top](std::mt19937_64& gen) mutable { return std::min(uniform(gen), top); },
                       "rand");
}
Tensor randn(const Shape& shape, TensorOptions opts) {
  return random_tensor(shape, opts, std::normal_distribution<double>(0.0, 1.0), "randn");
}

// --- metadata -------------------------------------------------------------------------

// wrap_dim lets a rank-0 tensor name dim 0 (for ops like sum(dim=0)), but it has no size
// or stride to read there.
static int64_t indexable_dim(int64_t dim, int64_t rank, const char* op) {
  EMBER_CHECK_T(ShapeError, rank > 0, op, ": dimension ", dim,
                " is out of range for a tensor of rank 0 (it has no dimensions)");
  return detail::wrap_dim(dim, rank, op);
}

int64_t Tensor::size(int64_t dim) const {
  return impl().sizes[indexable_dim(dim, this->dim(), "size")];
}

int64_t Tensor::stride(int64_t dim) const {
  return impl().strides[indexable_dim(dim, this->dim(), "stride")];
}

bool Tensor::is_contiguous() const {
  if (numel() == 0) return true;  // no element to be out of place, as in PyTorch
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

bool Tensor::is_contiguous(MemoryFormat format) const {
  if (format == MemoryFormat::Contiguous) return is_contiguous();
  if (dim() != 4) return false;
  if (numel() == 0) return true;
  // Innermost first: C, W, H, N (dimensions of size 1 may have any stride).
  const auto& sz = impl().sizes;
  const auto& st = impl().strides;
  int64_t expected = 1;
  for (int d : {1, 3, 2, 0}) {
    if (sz[d] == 1) continue;
    if (st[d] != expected) return false;
    expected *= sz[d];
  }
  return true;
}

MemoryFormat Tensor::suggest_memory_format() const {
  return is_contiguous(MemoryFormat::ChannelsLast) && !is_contiguous()
             ? MemoryFormat::ChannelsLast
             : MemoryFormat::Contiguous;
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
  EMBER_CHECK_T(ValueError, is_leaf() || on,
                "requires_grad_(false): only leaf tensors can be changed; "
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
  EMBER_CHECK_T(ValueError, requires_grad(), "retain_grad: the tensor does not require grad");
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

// Copies src's bytes into dst (both contiguous, same size) across devices; see
// memory::copy_bytes for when it has completed.
static void copy_bytes(const Tensor& src, const Tensor& dst) {
  memory::copy_bytes(dst.data_ptr(), dst.device(), src.data_ptr(), src.device(), src.nbytes());
}

Tensor Tensor::to(Device device, bool non_blocking) const {
  if (device == this->device()) return *this;
  Tensor src = contiguous();
  Tensor out;
  if (non_blocking && src.device().is_cpu() && device.is_cuda()) {
    // See Note [Non-blocking copies]: src's storage is held until the copy completes.
    check_float64_on_cpu(dtype(), device, shape());
    out = over_storage(memory::copy_to_cuda_async(src.data_ptr(), src.nbytes(),
                                                  src.impl().storage, device),
                       shape(), dtype());
  } else {
    out = Tensor::empty(shape(), {.dtype = dtype(), .device = device});
    copy_bytes(src, out);
  }
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
  dispatch::on_device(device(), [&](auto ctx) {
    cast(ctx, dtype_code(src.dtype()), src.data_ptr(), dtype_code(dtype), out.data_ptr(), n);
  });
  if (is_floating(dtype) && autograd::needs_grad({this})) {
    const DType from = this->dtype();
    autograd::record("to_dtype", {*this}, {out}, [from](std::vector<Tensor>& g) {
      return std::vector<Tensor>{g[0].to(from)};
    });
  }
  return out;
}

Tensor Tensor::pin_memory() const {
  EMBER_CHECK_T(DeviceError, device().is_cpu(), "pin_memory: only CPU tensors can be pinned, got ",
                detail::describe(*this));
  Tensor out = Tensor::empty(shape(), {.dtype = dtype(), .pinned_memory = true});
  {
    NoGradGuard no_grad;
    out.copy_(detach());
  }
  if (autograd::needs_grad({this})) {
    autograd::record("pin_memory", {*this}, {out}, [](std::vector<Tensor>& g) {
      return std::vector<Tensor>{g[0]};
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
EMBER_INSTANTIATE_CONVERSIONS(Half)
EMBER_INSTANTIATE_CONVERSIONS(BFloat16)
#undef EMBER_INSTANTIATE_CONVERSIONS

template <>
EMBER_API bool Tensor::item<bool>() const {
  return item<uint8_t>() != 0;
}

// --- in-place -------------------------------------------------------------------------

Tensor& Tensor::fill_(double value) {
  detail::prepare_inplace(*this, "fill_");
  if (is_contiguous()) {
    dispatch::on_device(device(), [&](auto ctx) {
      fill(ctx, dtype_code(dtype()), data_ptr(), numel(), value);
    });
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
    // A source that aliases the destination (x.t().copy_(x)) would be read after parts of
    // it were overwritten; read all of it first.
    if (s.impl().storage == impl().storage && !s.is_same(*this)) s = s.clone();
  }
  if (is_contiguous()) {
    copy_bytes(s, *this);
    return *this;
  }
  // Scatter into a strided destination.
  const kernels::StridedIndex idx = detail::strided_index(*this);
  dispatch::on_device(device(), [&](auto ctx) {
    strided_scatter(ctx, element_size(), s.data_ptr(), idx, data_ptr(), numel());
  });
  return *this;
}

Tensor& Tensor::add_(const Tensor& other, double alpha) {
  detail::check_defined(other, "add_", "other");
  detail::prepare_inplace(*this, "add_");
  Tensor r;
  {
    NoGradGuard no_grad;
    Tensor o = other.to(device());
    r = alpha == 1.0 ? add(*this, o) : add(*this, mul(o, alpha));
  }
  return copy_(r);
}

Tensor& Tensor::mul_(double value) {
  detail::prepare_inplace(*this, "mul_");
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

// Note [Printing like PyTorch]
// operator<< follows torch/_tensor_str.py so that output can be compared by eye (or by
// string) with PyTorch's. One formatter serves the whole tensor. It is built from the
// elements that are shown: all of them, or, past kSummarizeThreshold elements, the first
// and last kEdgeItems along every dimension. For floats only the non-zero finite values
// choose the mode -- "1." when all are integers, 4 decimals otherwise, scientific when
// they span more than 1000x, exceed 1e8, or (non-integers) fall below 1e-4 -- and the
// width every element is padded to; nan and inf never widen the columns. Rows wrap at
// kLineWidth columns, and the suffixes (dtype=, grad_fn=, ...) move to their own line
// when they would not fit.
constexpr int64_t kSummarizeThreshold = 1000;
constexpr int64_t kEdgeItems = 3;
constexpr int64_t kLineWidth = 80;

struct Formatter {
  bool floating = false;
  bool is_bool = false;
  bool int_mode = true;
  bool sci = false;
  size_t width = 1;
  std::vector<double> fvals;   // floating dtypes
  std::vector<int64_t> ivals;  // integer dtypes and bool, exact past 2^53

  std::string raw(int64_t k) const {
    char buf[64];
    if (!floating) {
      if (is_bool) return ivals[k] != 0 ? "True" : "False";
      std::snprintf(buf, sizeof buf, "%lld", static_cast<long long>(ivals[k]));
      return buf;
    }
    const double v = fvals[k];
    if (std::isnan(v)) return "nan";
    if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
    if (sci) {
      std::snprintf(buf, sizeof buf, "%.4e", v);
    } else if (int_mode) {
      std::snprintf(buf, sizeof buf, "%.0f.", v);
    } else {
      std::snprintf(buf, sizeof buf, "%.4f", v);
    }
    return buf;
  }

  std::string format(int64_t k) const {
    std::string s = raw(k);
    if (s.size() < width) s.insert(0, width - s.size(), ' ');
    return s;
  }
};

// Flat indices (into the contiguous values) of the elements that are shown.
void shown_indices(const Shape& shape, const Shape& strides, size_t dim, int64_t base,
                   bool summarize, std::vector<int64_t>* out) {
  if (dim == shape.size()) {
    out->push_back(base);
    return;
  }
  const int64_t n = shape[dim];
  for (int64_t i = 0; i < n; ++i) {
    if (summarize && n > 2 * kEdgeItems && i == kEdgeItems) i = n - kEdgeItems;
    shown_indices(shape, strides, dim + 1, base + i * strides[dim], summarize, out);
  }
}

void fit_formatter(Formatter& f, const std::vector<int64_t>& shown) {
  if (!f.floating) {
    for (int64_t k : shown) f.width = std::max(f.width, f.raw(k).size());
    return;
  }
  std::vector<int64_t> nonzero_finite;
  double min_abs = INFINITY, max_abs = 0;
  for (int64_t k : shown) {
    const double v = f.fvals[k];
    if (!std::isfinite(v) || v == 0) continue;
    nonzero_finite.push_back(k);
    if (v != std::ceil(v)) f.int_mode = false;
    min_abs = std::min(min_abs, std::fabs(v));
    max_abs = std::max(max_abs, std::fabs(v));
  }
  if (nonzero_finite.empty()) return;
  f.sci = max_abs / min_abs > 1000.0 || max_abs > 1.0e8 || (!f.int_mode && min_abs < 1.0e-4);
  for (int64_t k : nonzero_finite) f.width = std::max(f.width, f.raw(k).size());
}

// The bracketed body of one (sub-)tensor starting at `base`; `indent` is the column of
// its opening bracket.
std::string body_str(const Formatter& f, const Shape& shape, const Shape& strides, size_t dim,
                     int64_t base, int64_t indent, bool summarize) {
  const size_t rank = shape.size();
  const bool innermost = dim + 1 == rank;
  const int64_t n = shape[dim];
  std::vector<std::string> items;
  for (int64_t i = 0; i < n; ++i) {
    if (summarize && n > 2 * kEdgeItems && i == kEdgeItems) {
      items.emplace_back(innermost ? " ..." : "...");
      i = n - kEdgeItems;
    }
    const int64_t at = base + i * strides[dim];
    items.push_back(innermost ? f.format(at)
                              : body_str(f, shape, strides, dim + 1, at, indent + 1, summarize));
  }
  std::string out = "[";
  const std::string wrap = ",\n" + std::string(static_cast<size_t>(indent + 1), ' ');
  if (innermost) {
    const int64_t per_line =
        std::max<int64_t>(1, (kLineWidth - indent) / static_cast<int64_t>(f.width + 2));
    for (size_t k = 0; k < items.size(); ++k) {
      if (k > 0) out += k % static_cast<size_t>(per_line) == 0 ? wrap : ", ";
      out += items[k];
    }
  } else {
    // Blocks of higher dimensions are set apart by one more blank line per level.
    const std::string sep = "," + std::string(rank - dim - 1, '\n') +
                            std::string(static_cast<size_t>(indent + 1), ' ');
    for (size_t k = 0; k < items.size(); ++k) {
      if (k > 0) out += sep;
      out += items[k];
    }
  }
  return out + "]";
}

}  // namespace

std::string Tensor::str() const {
  std::ostringstream os;
  os << *this;
  return os.str();
}

std::ostream& operator<<(std::ostream& os, const Tensor& t) {
  if (!t.defined()) return os << "tensor(undefined)";
  const std::string prefix = "tensor(";
  const int64_t indent = static_cast<int64_t>(prefix.size());
  Formatter f;
  f.floating = is_floating(t.dtype());
  f.is_bool = t.dtype() == kBool;
  Tensor c;
  {
    NoGradGuard no_grad;
    c = t.detach().to(Device::cpu()).to(f.floating ? kFloat64 : kInt64).contiguous();
  }
  if (f.floating) {
    f.fvals = c.to_vector<double>();
  } else {
    f.ivals = c.to_vector<int64_t>();
  }
  const bool summarize = c.numel() > kSummarizeThreshold;
  std::vector<int64_t> shown;
  shown_indices(c.shape(), c.strides(), 0, 0, summarize, &shown);
  fit_formatter(f, shown);

  std::vector<std::string> suffixes;
  if (t.is_cuda()) suffixes.push_back("device='" + t.device().str() + "'");
  std::string body;
  const bool default_dtype = t.dtype() == kFloat32 || t.dtype() == kInt64 || t.dtype() == kBool;
  if (t.numel() == 0) {
    body = "[]";
    if (t.dim() != 1) {
      std::string size = "size=(";
      for (int64_t d = 0; d < t.dim(); ++d) size += (d ? ", " : "") + std::to_string(t.size(d));
      suffixes.push_back(size + ")");
    }
    // No element shows what kind of numbers these are.
    if (t.dtype() != kFloat32) suffixes.push_back(std::string("dtype=") + dtype_name(t.dtype()));
  } else {
    body = t.dim() == 0 ? f.format(0)
                        : body_str(f, c.shape(), c.strides(), 0, 0, indent, summarize);
    if (!default_dtype) suffixes.push_back(std::string("dtype=") + dtype_name(t.dtype()));
  }
  if (t.grad_fn()) {
    suffixes.push_back("grad_fn=<" + t.grad_fn()->name() + ">");
  } else if (t.requires_grad()) {
    suffixes.push_back("requires_grad=True");
  }

  std::string out = prefix + body;
  const size_t nl = out.rfind('\n');
  // PyTorch's measure of the last line, kept as is so that suffixes wrap where its do.
  int64_t last_line = static_cast<int64_t>(nl == std::string::npos ? out.size() + 2
                                                                   : out.size() - nl + 1);
  for (const std::string& suffix : suffixes) {
    const int64_t len = static_cast<int64_t>(suffix.size());
    if (last_line + len + 2 > kLineWidth) {
      out += ",\n" + std::string(static_cast<size_t>(indent), ' ') + suffix;
      last_line = indent + len;
    } else {
      out += ", " + suffix;
      last_line += len + 2;
    }
  }
  return os << out << ")";
}

}  // namespace ember
