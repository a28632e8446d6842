// StateDict: named tensors in insertion order, what modules, optimizers and LR schedules
// save and load (nn::StateDict in layers/module.h is the same type).
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "ember/core/base/export.h"
#include "ember/core/tensor.h"

namespace ember {

// Name -> tensor in registration order (PyTorch's state_dict order), with lookup.
class EMBER_API StateDict {
 public:
  using Entry = std::pair<std::string, Tensor>;
  void insert(const std::string& name, const Tensor& t);
  const Tensor* find(const std::string& name) const;
  const Tensor& at(const std::string& name) const;  // throws naming the key
  bool contains(const std::string& name) const { return find(name) != nullptr; }
  size_t size() const { return entries_.size(); }
  std::vector<std::string> keys() const;
  std::vector<Entry>::const_iterator begin() const { return entries_.begin(); }
  std::vector<Entry>::const_iterator end() const { return entries_.end(); }

 private:
  std::vector<Entry> entries_;
};

}  // namespace ember
