// A bounded map that forgets its least recently used entry: the cuDNN plan caches
// (kernels/cudnn/conv.cpp, rnn.cpp) keep one entry per shape, and a program whose shapes
// keep changing (variable batch or sequence lengths) must not grow them without end.
// Not thread-safe: the caches hold their own mutex around every call.
#pragma once

#include <cstddef>
#include <list>
#include <memory>
#include <unordered_map>
#include <utility>

#include "ember/core/base/error.h"

namespace ember::kernels {

// Values are shared_ptr so that a caller may keep using an entry after the cache's mutex
// is released even if another thread evicts it meanwhile: the value then dies with its
// last user.
template <typename Key, typename Value, typename Hash = std::hash<Key>>
class LruCache {
 public:
  explicit LruCache(size_t capacity) : capacity_(capacity) {
    EMBER_INTERNAL_ASSERT(capacity > 0, "LruCache: capacity must be positive");
  }
  LruCache(const LruCache&) = delete;
  LruCache& operator=(const LruCache&) = delete;

  // The value for `key`, now the most recently used, or nullptr.
  std::shared_ptr<Value> find(const Key& key) {
    auto it = index_.find(key);
    if (it == index_.end()) return nullptr;
    order_.splice(order_.begin(), order_, it->second);
    return it->second->second;
  }

  // Stores `value` under `key` (replacing an entry with that key) as the most recently
  // used, dropping the least recently used entries beyond the capacity.
  std::shared_ptr<Value> insert(const Key& key, std::shared_ptr<Value> value) {
    erase(key);
    order_.emplace_front(key, std::move(value));
    index_.emplace(key, order_.begin());
    while (order_.size() > capacity_) {
      index_.erase(order_.back().first);
      order_.pop_back();
      ++evictions_;
    }
    return order_.front().second;
  }

  void erase(const Key& key) {
    auto it = index_.find(key);
    if (it == index_.end()) return;
    order_.erase(it->second);
    index_.erase(it);
  }

  size_t size() const { return order_.size(); }
  size_t capacity() const { return capacity_; }
  size_t evictions() const { return evictions_; }

 private:
  using Entry = std::pair<Key, std::shared_ptr<Value>>;
  size_t capacity_;
  size_t evictions_ = 0;
  std::list<Entry> order_;  // most recently used first
  std::unordered_map<Key, typename std::list<Entry>::iterator, Hash> index_;
};

}  // namespace ember::kernels
