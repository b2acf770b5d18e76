#include "kv/key_size_cache.h"

#include <utility>

namespace quorumkv::kv {

std::optional<KeyState> KeySizeCache::Find(absl::string_view key) {
  if (auto it = young_.find(key); it != young_.end()) return it->second;
  auto it = old_.find(key);
  if (it == old_.end()) return std::nullopt;
  const KeyState state = it->second;
  auto node = old_.extract(it);
  old_bytes_ -= EntryBytes(node.key());
  InsertYoung(std::move(node.key()), state);
  return state;
}

void KeySizeCache::Remember(absl::string_view key, KeyState state) {
  if (budget_bytes_ == 0) return;
  if (auto it = young_.find(key); it != young_.end()) {
    it->second = state;
    return;
  }
  // Dropped from the older generation so that it is never counted twice.
  if (auto it = old_.find(key); it != old_.end()) {
    old_bytes_ -= EntryBytes(it->first);
    old_.erase(it);
  }
  InsertYoung(std::string(key), state);
}

void KeySizeCache::InsertYoung(std::string key, KeyState state) {
  const size_t entry_bytes = EntryBytes(key);
  if (young_bytes_ + entry_bytes > budget_bytes_ / 2) {
    old_ = std::move(young_);
    old_bytes_ = young_bytes_;
    young_ = Map();
    young_bytes_ = 0;
  }
  young_.emplace(std::move(key), state);
  young_bytes_ += entry_bytes;
}

void KeySizeCache::Clear() {
  young_ = Map();
  old_ = Map();
  young_bytes_ = 0;
  old_bytes_ = 0;
}

}  // namespace quorumkv::kv
