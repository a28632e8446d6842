// StateDict: insertion-ordered entries, looked up by name.
#include "ember/core/state_dict.h"

#include "ember/core/base/error.h"

namespace ember {

void StateDict::insert(const std::string& name, const Tensor& t) {
  for (auto& e : entries_) {
    if (e.first == name) {
      e.second = t;
      return;
    }
  }
  entries_.emplace_back(name, t);
}

const Tensor* StateDict::find(const std::string& name) const {
  for (const auto& e : entries_) {
    if (e.first == name) return &e.second;
  }
  return nullptr;
}

const Tensor& StateDict::at(const std::string& name) const {
  const Tensor* t = find(name);
  EMBER_CHECK_T(ValueError, t != nullptr, "StateDict: no entry named '", name, "'");
  return *t;
}

std::vector<std::string> StateDict::keys() const {
  std::vector<std::string> out;
  for (const auto& e : entries_) out.push_back(e.first);
  return out;
}

}  // namespace ember
