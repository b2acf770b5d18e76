// What the state machine remembers about recently used user keys: whether
// each exists and the size of its value. That is all a put or a delete needs
// to keep the store's key and byte counts exact, and a LevelDB read to learn
// it was ~16 % of a follower's CPU under puts (a memtable skip-list search
// that misses the cache at nearly every level).
//
// The cache holds only what the live store holds: KvStateMachine fills it
// from reads of the store and from batches once they are written, and
// empties it whenever the live store is replaced. Bounded in memory: two
// generations of entries; once the younger one reaches half the budget it
// becomes the older one and the old older one is dropped, so the keys used
// in the last half-budget of insertions always stay.
#ifndef QUORUMKV_KV_KEY_SIZE_CACHE_H_
#define QUORUMKV_KV_KEY_SIZE_CACHE_H_

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/string_view.h"

namespace quorumkv::kv {

struct KeyState {
  bool present = false;
  uint64_t value_size = 0;  // when present
  bool operator==(const KeyState&) const = default;
};

class KeySizeCache {
 public:
  // Approximate bytes per entry on top of its key: the string, the state and
  // the hash table's slot and control byte.
  static constexpr size_t kEntryOverheadBytes = 64;

  // `budget_bytes` 0 disables the cache: Find never hits.
  explicit KeySizeCache(size_t budget_bytes) : budget_bytes_(budget_bytes) {}

  // The key's state if remembered. A hit in the older generation moves the
  // entry to the younger one.
  std::optional<KeyState> Find(absl::string_view key);

  // Records the key's state as the live store now has it.
  void Remember(absl::string_view key, KeyState state);

  void Clear();

  size_t size() const { return young_.size() + old_.size(); }
  size_t bytes() const { return young_bytes_ + old_bytes_; }

 private:
  using Map = absl::flat_hash_map<std::string, KeyState>;
  static size_t EntryBytes(absl::string_view key) { return key.size() + kEntryOverheadBytes; }
  void InsertYoung(std::string key, KeyState state);

  const size_t budget_bytes_;
  Map young_;
  Map old_;
  size_t young_bytes_ = 0;
  size_t old_bytes_ = 0;
};

}  // namespace quorumkv::kv

#endif  // QUORUMKV_KV_KEY_SIZE_CACHE_H_
