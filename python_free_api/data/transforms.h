// Batch transforms on CPU tensors (Normalize, RandomCrop, RandomHorizontalFlip, OneHot)
// and Compose; random ones draw from generators the caller passes (a DataLoader: one per
// sample), so the augmentation is the same for the same seed whatever thread runs it.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <random>
#include <span>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "ember/core/base/export.h"
#include "ember/core/tensor.h"

namespace ember::data {

using Generator = std::mt19937_64;

// Random tensors for custom transforms, drawn only from `gen` (the generator apply()
// receives), so a DataLoader's augmentation depends on its seed, epoch and batch alone.
// ember's own formulas (53-bit uniforms, Box-Muller), not <random>'s distributions, whose
// results the C++ standard leaves to each library: a seed gives the same tensor with
// every toolchain. Each returns a float32 CPU tensor of `shape`; bad arguments throw
// ember::ValueError naming them, a negative size ShapeError.
//   Tensor noise = data::normal(batch.shape(), gen, 0.0, 0.1);          // per element
//   Tensor flip = data::bernoulli({batch.size(0)}, gen, 0.5);          // per sample
// Uniform in [low, high).
EMBER_API Tensor uniform(const Shape& shape, Generator& gen, double low = 0.0, double high = 1.0);
// Normal with `mean` and standard deviation `stddev` (>= 0).
EMBER_API Tensor normal(const Shape& shape, Generator& gen, double mean = 0.0, double stddev = 1.0);
// 1 with probability p (in [0, 1]), else 0.
EMBER_API Tensor bernoulli(const Shape& shape, Generator& gen, double p = 0.5);

// A transform maps a whole batch (CPU tensor, first dimension the batch) to a new one;
// the input is never modified. Implementations must be safe to call concurrently (they
// hold only their configuration).
// Note [Per-sample randomness]
// A DataLoader calls apply_per_sample with one generator per sample, seeded from the
// loader's seed, the epoch and the sample's index, so a sample's augmentation does not
// depend on the batch it falls in, on the batch size or on which worker prepares it.
// The default apply_per_sample applies `apply` to each sample as a batch of one with its
// own generator and concatenates the results: right for any transform that treats the
// samples independently, and overridden by the built-in ones to make one pass over the
// batch. A transform that mixes samples (mixup, say) must override it.
class EMBER_API Transform {
 public:
  virtual ~Transform();
  // Random transforms draw only from `gen`.
  virtual Tensor apply(const Tensor& batch, Generator& gen) const = 0;
  // Sample i draws only from gens[i]; gens.size() must be batch.size(0) (ShapeError
  // otherwise). Generators are advanced, so a later transform continues their streams.
  virtual Tensor apply_per_sample(const Tensor& batch, std::span<Generator> gens) const;
  // "RandomCrop(size=[28, 28], padding=4)"
  virtual std::string str() const = 0;
  // For use outside a DataLoader: a seed is drawn from ember's CPU generator, so
  // manual_seed() makes the result repeatable.
  Tensor operator()(const Tensor& batch) const;
};

// (x - mean[c]) / std[c] over channel dimension 1 of a float32 [N, C, ...] batch. One
// value applies to every channel; otherwise there must be one per channel.
class EMBER_API Normalize final : public Transform {
 public:
  Normalize(std::vector<double> mean, std::vector<double> std);
  Tensor apply(const Tensor& batch, Generator& gen) const override;
  Tensor apply_per_sample(const Tensor& batch, std::span<Generator> gens) const override;
  std::string str() const override;

 private:
  std::vector<double> mean_;
  std::vector<double> std_;
};

// Pads a float32 [N, C, H, W] batch with `padding` zeros on every side, then cuts a
// size[0] x size[1] window at a random position, chosen per sample (like torchvision's
// RandomCrop(size, padding)).
class EMBER_API RandomCrop final : public Transform {
 public:
  explicit RandomCrop(int64_t size, int64_t padding = 0) : RandomCrop({size, size}, padding) {}
  RandomCrop(std::array<int64_t, 2> size, int64_t padding = 0);
  Tensor apply(const Tensor& batch, Generator& gen) const override;
  Tensor apply_per_sample(const Tensor& batch, std::span<Generator> gens) const override;
  std::string str() const override;

 private:
  // The crop, sample i's position drawn from gen_of(i).
  template <typename GenOf>
  Tensor crop(const Tensor& batch, GenOf gen_of) const;

  std::array<int64_t, 2> size_;
  int64_t padding_;
};

// Mirrors each sample of a float32 [N, C, H, W] batch left-to-right with probability p.
class EMBER_API RandomHorizontalFlip final : public Transform {
 public:
  explicit RandomHorizontalFlip(double p = 0.5);
  Tensor apply(const Tensor& batch, Generator& gen) const override;
  Tensor apply_per_sample(const Tensor& batch, std::span<Generator> gens) const override;
  std::string str() const override;

 private:
  // The flip, sample i's coin drawn from gen_of(i).
  template <typename GenOf>
  Tensor flip(const Tensor& batch, GenOf gen_of) const;

  double p_;
};

// Integer class labels [N] (int64, int32 or uint8) to float32 one-hot rows [N, K], the
// targets categorical cross-entropy on probabilities takes. Throws for a label outside
// [0, K), naming it and its position.
class EMBER_API OneHot final : public Transform {
 public:
  explicit OneHot(int64_t num_classes);
  Tensor apply(const Tensor& batch, Generator& gen) const override;
  Tensor apply_per_sample(const Tensor& batch, std::span<Generator> gens) const override;
  std::string str() const override;

 private:
  int64_t num_classes_;
};

// Applies its steps in order, all drawing from the same generator (or per sample, from
// the same generators). Built from transform
// values or shared pointers: Compose(RandomCrop(28, 4), RandomHorizontalFlip()).
// An empty Compose is the identity.
class EMBER_API Compose final : public Transform {
 public:
  Compose() = default;
  template <typename... Ts,
            typename = std::enable_if_t<(sizeof...(Ts) > 0) &&
                                        !(sizeof...(Ts) == 1 &&
                                          (std::is_same_v<std::decay_t<Ts>, Compose> && ...))>>
  explicit Compose(Ts&&... steps) {
    (add(std::forward<Ts>(steps)), ...);
  }

  Compose& add(std::shared_ptr<const Transform> step);
  template <typename T, typename = std::enable_if_t<std::is_base_of_v<Transform, std::decay_t<T>>>>
  Compose& add(T&& step) {
    return add(
        std::shared_ptr<const Transform>(std::make_shared<std::decay_t<T>>(std::forward<T>(step))));
  }

  bool empty() const { return steps_.empty(); }
  size_t size() const { return steps_.size(); }
  Tensor apply(const Tensor& batch, Generator& gen) const override;
  Tensor apply_per_sample(const Tensor& batch, std::span<Generator> gens) const override;
  std::string str() const override;

 private:
  std::vector<std::shared_ptr<const Transform>> steps_;
};

}  // namespace ember::data
