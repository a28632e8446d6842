// Batch transforms: plain loops over contiguous CPU float32 batches.
#include "ember/python_free_api/data/transforms.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <mutex>
#include <sstream>

#include "ember/core/base/error.h"
#include "ember/core/ops.h"
#include "ember/core/random.h"

namespace ember::data {

namespace {

// A contiguous float32 CPU batch of rank `rank` (or at least `rank` when at_least).
Tensor checked_image_batch(const char* op, const Tensor& batch, int64_t rank, bool at_least) {
  EMBER_CHECK_T(ValueError, batch.defined(), op, ": the batch is undefined");
  EMBER_CHECK_T(DeviceError, batch.device().is_cpu(), op, ": batch ", shape_str(batch.shape()),
                " is on ", batch.device().str(),
                "; transforms run on CPU batches (the DataLoader applies them before the copy)");
  EMBER_CHECK_T(DTypeError, batch.dtype() == kFloat32, op, ": batch ", shape_str(batch.shape()),
                " has dtype ", dtype_name(batch.dtype()), ", expected float32");
  EMBER_CHECK_T(ShapeError, at_least ? batch.dim() >= rank : batch.dim() == rank, op, ": batch ",
                shape_str(batch.shape()), " must be ", at_least ? "at least " : "", rank,
                "-D ([N, C, H, W] images)");
  return batch.detach().contiguous();
}

// Uniform in [0, 1) with 53 random bits.
double uniform01(Generator& gen) { return static_cast<double>(gen() >> 11) * 0x1.0p-53; }

// Uniform in [0, bound] (inclusive) without modulo bias.
int64_t uniform_upto(Generator& gen, int64_t bound) {
  const auto range = static_cast<uint64_t>(bound) + 1;
  const uint64_t limit = UINT64_MAX - UINT64_MAX % range;
  uint64_t r;
  do {
    r = gen();
  } while (r >= limit);
  return static_cast<int64_t>(r % range);
}

std::string list_str(const std::vector<double>& v) {
  std::ostringstream os;
  os << "[";
  for (size_t i = 0; i < v.size(); ++i) os << (i ? ", " : "") << v[i];
  os << "]";
  return os.str();
}

// A float32 CPU tensor of `shape` whose elements are fill() in order.
template <typename Fill>
Tensor filled(const char* op, const Shape& shape, Fill fill) {
  for (int64_t d : shape) {
    EMBER_CHECK_T(ShapeError, d >= 0, op, ": shape ", shape_str(shape), " has a negative size");
  }
  Tensor out = empty(shape);
  float* dst = out.data<float>();
  for (int64_t i = 0, n = out.numel(); i < n; ++i) dst[i] = fill();
  return out;
}

void check_generators(const char* op, const Tensor& batch, std::span<Generator> gens) {
  EMBER_CHECK_T(ValueError, batch.defined(), op, ": the batch is undefined");
  EMBER_CHECK_T(ShapeError, batch.dim() >= 1 && batch.size(0) == static_cast<int64_t>(gens.size()),
                op, ": batch ", shape_str(batch.shape()), " needs one generator per sample, got ",
                gens.size());
}

constexpr double kTwoPi = 6.283185307179586476925286766559;

}  // namespace

// --- random tensors for custom transforms ----------------------------------------------------

Tensor uniform(const Shape& shape, Generator& gen, double low, double high) {
  EMBER_CHECK_T(ValueError, std::isfinite(low) && std::isfinite(high) && low < high,
                "data::uniform: need finite low < high, got low=", low, " high=", high);
  // Rounding to float can reach `high`; the largest float below it keeps [low, high).
  const float below_high = std::nextafter(static_cast<float>(high), -INFINITY);
  return filled("data::uniform", shape, [&] {
    const auto v = static_cast<float>(low + (high - low) * uniform01(gen));
    return std::min(v, below_high);
  });
}

Tensor normal(const Shape& shape, Generator& gen, double mean, double stddev) {
  EMBER_CHECK_T(ValueError, std::isfinite(mean) && std::isfinite(stddev) && stddev >= 0.0,
                "data::normal: need a finite mean and stddev >= 0, got mean=", mean,
                " stddev=", stddev);
  // Box-Muller: each pair of uniforms gives two independent standard normals.
  bool have_spare = false;
  double spare = 0.0;
  return filled("data::normal", shape, [&] {
    if (have_spare) {
      have_spare = false;
      return static_cast<float>(mean + stddev * spare);
    }
    const double radius = std::sqrt(-2.0 * std::log(1.0 - uniform01(gen)));  // 1 - u in (0, 1]
    const double angle = kTwoPi * uniform01(gen);
    spare = radius * std::sin(angle);
    have_spare = true;
    return static_cast<float>(mean + stddev * radius * std::cos(angle));
  });
}

Tensor bernoulli(const Shape& shape, Generator& gen, double p) {
  EMBER_CHECK_T(ValueError, p >= 0.0 && p <= 1.0,
                "data::bernoulli: probability p must be in [0, 1], got ", p);
  return filled("data::bernoulli", shape, [&] { return uniform01(gen) < p ? 1.0f : 0.0f; });
}

Transform::~Transform() = default;

Tensor Transform::apply_per_sample(const Tensor& batch, std::span<Generator> gens) const {
  check_generators(str().c_str(), batch, gens);
  std::vector<Tensor> rows;
  rows.reserve(gens.size());
  for (size_t i = 0; i < gens.size(); ++i) {
    rows.push_back(apply(batch.narrow(0, static_cast<int64_t>(i), 1), gens[i]));
  }
  if (rows.empty()) {
    Generator unused;  // an empty batch has no sample to draw for
    return apply(batch, unused);
  }
  return rows.size() == 1 ? rows[0] : cat(rows, 0);
}

Tensor Transform::operator()(const Tensor& batch) const {
  uint64_t seed;
  {
    std::lock_guard<std::mutex> lock(cpu_generator_mutex());
    seed = cpu_generator()();
  }
  Generator gen(seed);
  return apply(batch, gen);
}

// --- Normalize ----------------------------------------------------------------------------

Normalize::Normalize(std::vector<double> mean, std::vector<double> std)
    : mean_(std::move(mean)), std_(std::move(std)) {
  EMBER_CHECK_T(ValueError, !mean_.empty() && mean_.size() == std_.size(), "Normalize: mean ",
                list_str(mean_), " and std ", list_str(std_),
                " must be non-empty and of the same length");
  for (double s : std_) {
    EMBER_CHECK_T(ValueError, std::isfinite(s) && s != 0.0, "Normalize: std ", list_str(std_),
                  " has a zero or non-finite value");
  }
}

Tensor Normalize::apply(const Tensor& batch, Generator&) const {
  Tensor x = checked_image_batch("Normalize", batch, 2, true);
  const int64_t n = x.size(0), c = x.size(1);
  const auto values = static_cast<int64_t>(mean_.size());
  EMBER_CHECK_T(ShapeError, values == 1 || values == c, "Normalize: batch ", shape_str(x.shape()),
                " has ", c, " channels but mean/std have ", values, " values");
  const int64_t inner = n * c == 0 ? 0 : x.numel() / (n * c);
  Tensor out = Tensor::empty(x.shape());
  const float* src = x.data<float>();
  float* dst = out.data<float>();
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t ch = 0; ch < c; ++ch) {
      const size_t k = values == 1 ? 0 : static_cast<size_t>(ch);
      const auto m = static_cast<float>(mean_[k]);
      const auto inv = static_cast<float>(1.0 / std_[k]);
      const int64_t base = (i * c + ch) * inner;
      for (int64_t j = 0; j < inner; ++j) dst[base + j] = (src[base + j] - m) * inv;
    }
  }
  return out;
}

Tensor Normalize::apply_per_sample(const Tensor& batch, std::span<Generator> gens) const {
  check_generators("Normalize", batch, gens);
  Generator unused;  // Normalize draws nothing
  return apply(batch, unused);
}

std::string Normalize::str() const {
  return "Normalize(mean=" + list_str(mean_) + ", std=" + list_str(std_) + ")";
}

// --- RandomCrop ---------------------------------------------------------------------------

RandomCrop::RandomCrop(std::array<int64_t, 2> size, int64_t padding)
    : size_(size), padding_(padding) {
  EMBER_CHECK_T(ValueError, size_[0] > 0 && size_[1] > 0 && padding_ >= 0, "RandomCrop: size [",
                size_[0], ", ", size_[1], "] must be positive and padding ", padding_,
                " non-negative");
}

Tensor RandomCrop::apply(const Tensor& batch, Generator& gen) const {
  return crop(batch, [&](int64_t) -> Generator& { return gen; });
}

Tensor RandomCrop::apply_per_sample(const Tensor& batch, std::span<Generator> gens) const {
  check_generators("RandomCrop", batch, gens);
  return crop(batch, [&](int64_t i) -> Generator& { return gens[static_cast<size_t>(i)]; });
}

template <typename GenOf>
Tensor RandomCrop::crop(const Tensor& batch, GenOf gen_of) const {
  Tensor x = checked_image_batch("RandomCrop", batch, 4, false);
  const int64_t n = x.size(0), c = x.size(1), h = x.size(2), w = x.size(3);
  const int64_t ph = h + 2 * padding_, pw = w + 2 * padding_;
  const int64_t oh = size_[0], ow = size_[1];
  EMBER_CHECK_T(ShapeError, oh <= ph && ow <= pw, "RandomCrop: crop [", oh, ", ", ow,
                "] is larger than the padded image [", ph, ", ", pw, "] of batch ",
                shape_str(x.shape()), " (padding ", padding_, ")");
  Tensor out = Tensor::empty({n, c, oh, ow});
  const float* src = x.data<float>();
  float* dst = out.data<float>();
  for (int64_t i = 0; i < n; ++i) {
    // Window origin in padded coordinates, then shifted into the image's own.
    Generator& gen = gen_of(i);
    const int64_t top = uniform_upto(gen, ph - oh) - padding_;
    const int64_t left = uniform_upto(gen, pw - ow) - padding_;
    // The columns of the window that fall inside the image; the rest are padding zeros.
    const int64_t col_lo = std::clamp<int64_t>(-left, 0, ow);
    const int64_t col_hi = std::clamp<int64_t>(w - left, 0, ow);
    for (int64_t ch = 0; ch < c; ++ch) {
      const float* plane = src + (i * c + ch) * h * w;
      float* out_plane = dst + (i * c + ch) * oh * ow;
      for (int64_t r = 0; r < oh; ++r) {
        float* row = out_plane + r * ow;
        const int64_t sr = top + r;
        if (sr < 0 || sr >= h || col_lo >= col_hi) {
          std::fill(row, row + ow, 0.0f);
          continue;
        }
        std::fill(row, row + col_lo, 0.0f);
        std::memcpy(row + col_lo, plane + sr * w + left + col_lo,
                    static_cast<size_t>(col_hi - col_lo) * sizeof(float));
        std::fill(row + col_hi, row + ow, 0.0f);
      }
    }
  }
  return out;
}

std::string RandomCrop::str() const {
  std::ostringstream os;
  os << "RandomCrop(size=[" << size_[0] << ", " << size_[1] << "], padding=" << padding_ << ")";
  return os.str();
}

// --- RandomHorizontalFlip -----------------------------------------------------------------

RandomHorizontalFlip::RandomHorizontalFlip(double p) : p_(p) {
  EMBER_CHECK_T(ValueError, p_ >= 0.0 && p_ <= 1.0,
                "RandomHorizontalFlip: p must be in [0, 1], got ", p_);
}

Tensor RandomHorizontalFlip::apply(const Tensor& batch, Generator& gen) const {
  return flip(batch, [&](int64_t) -> Generator& { return gen; });
}

Tensor RandomHorizontalFlip::apply_per_sample(const Tensor& batch,
                                              std::span<Generator> gens) const {
  check_generators("RandomHorizontalFlip", batch, gens);
  return flip(batch, [&](int64_t i) -> Generator& { return gens[static_cast<size_t>(i)]; });
}

template <typename GenOf>
Tensor RandomHorizontalFlip::flip(const Tensor& batch, GenOf gen_of) const {
  Tensor x = checked_image_batch("RandomHorizontalFlip", batch, 4, false);
  const int64_t n = x.size(0), c = x.size(1), h = x.size(2), w = x.size(3);
  Tensor out = Tensor::empty(x.shape());
  const float* src = x.data<float>();
  float* dst = out.data<float>();
  const int64_t sample = c * h * w;
  for (int64_t i = 0; i < n; ++i) {
    // One draw per sample whatever p is, so p does not shift later samples' draws.
    const bool mirror = uniform01(gen_of(i)) < p_;
    const float* s = src + i * sample;
    float* d = dst + i * sample;
    if (!mirror) {
      std::memcpy(d, s, static_cast<size_t>(sample) * sizeof(float));
      continue;
    }
    for (int64_t row = 0; row < c * h; ++row) {
      std::reverse_copy(s + row * w, s + (row + 1) * w, d + row * w);
    }
  }
  return out;
}

std::string RandomHorizontalFlip::str() const {
  std::ostringstream os;
  os << "RandomHorizontalFlip(p=" << p_ << ")";
  return os.str();
}

// --- OneHot -------------------------------------------------------------------------------

OneHot::OneHot(int64_t num_classes) : num_classes_(num_classes) {
  EMBER_CHECK_T(ValueError, num_classes_ > 0, "OneHot: num_classes must be positive, got ",
                num_classes_);
}

Tensor OneHot::apply(const Tensor& batch, Generator&) const {
  EMBER_CHECK_T(ValueError, batch.defined(), "OneHot: the labels are undefined");
  EMBER_CHECK_T(DeviceError, batch.device().is_cpu(), "OneHot: labels ", shape_str(batch.shape()),
                " are on ", batch.device().str(), "; transforms run on CPU batches");
  EMBER_CHECK_T(ShapeError, batch.dim() == 1, "OneHot: labels must be 1-D [N], got ",
                shape_str(batch.shape()));
  const DType dt = batch.dtype();
  EMBER_CHECK_T(DTypeError, dt == kInt64 || dt == kInt32 || dt == kUInt8, "OneHot: labels ",
                shape_str(batch.shape()), " have dtype ", dtype_name(dt),
                ", expected int64, int32 or uint8 class indices");
  const std::vector<int64_t> labels = batch.to(kInt64).to_vector<int64_t>();
  const auto n = static_cast<int64_t>(labels.size());
  std::vector<int64_t> bad;
  for (int64_t i = 0; i < n; ++i) {
    const int64_t l = labels[static_cast<size_t>(i)];
    if (l < 0 || l >= num_classes_) bad.push_back(i);
  }
  if (!bad.empty()) {
    constexpr size_t kShown = 5;
    std::ostringstream os;
    os << "OneHot: " << bad.size() << " of " << n << " labels are outside [0, " << num_classes_
       << "): ";
    for (size_t k = 0; k < bad.size() && k < kShown; ++k) {
      os << (k ? ", " : "") << "label " << labels[static_cast<size_t>(bad[k])] << " at position " << bad[k];
    }
    if (bad.size() > kShown) os << ", ... (the first " << kShown << " shown)";
    throw ShapeError(os.str());  // as cross_entropy's out-of-range class labels
  }
  Tensor out = zeros({n, num_classes_});
  float* dst = out.data<float>();
  for (int64_t i = 0; i < n; ++i) dst[i * num_classes_ + labels[static_cast<size_t>(i)]] = 1.0f;
  return out;
}

Tensor OneHot::apply_per_sample(const Tensor& batch, std::span<Generator> gens) const {
  check_generators("OneHot", batch, gens);
  Generator unused;  // OneHot draws nothing
  return apply(batch, unused);
}

std::string OneHot::str() const {
  return "OneHot(num_classes=" + std::to_string(num_classes_) + ")";
}

// --- Compose ------------------------------------------------------------------------------

Compose& Compose::add(std::shared_ptr<const Transform> step) {
  EMBER_CHECK_T(ValueError, step != nullptr, "Compose: a step is null");
  steps_.push_back(std::move(step));
  return *this;
}

Tensor Compose::apply(const Tensor& batch, Generator& gen) const {
  Tensor x = batch;
  for (const auto& step : steps_) x = step->apply(x, gen);
  return x;
}

Tensor Compose::apply_per_sample(const Tensor& batch, std::span<Generator> gens) const {
  check_generators("Compose", batch, gens);
  Tensor x = batch;
  for (const auto& step : steps_) x = step->apply_per_sample(x, gens);
  return x;
}

std::string Compose::str() const {
  std::string s = "Compose(";
  for (size_t i = 0; i < steps_.size(); ++i) s += (i ? ", " : "") + steps_[i]->str();
  return s + ")";
}

}  // namespace ember::data
