#include "raft/memory_log_storage.h"

#include <string>

namespace quorumkv::raft {

absl::StatusOr<Term> MemoryLogStorage::TermAt(Index i) const {
  if (i == snapshot_.index) return snapshot_.term;
  if (i < snapshot_.index || i > LastIndex()) {
    return absl::OutOfRangeError("index " + std::to_string(i.value()) + " not in log");
  }
  return entries_[i - FirstIndex()].term;
}

absl::StatusOr<std::vector<Entry>> MemoryLogStorage::Entries(Index lo, Index hi,
                                                             uint64_t max_bytes) const {
  if (lo < FirstIndex() || hi > LastIndex() + 1 || lo > hi) {
    return absl::OutOfRangeError("entries [" + std::to_string(lo.value()) + ", " +
                                 std::to_string(hi.value()) + ") not in log");
  }
  std::vector<Entry> out;
  uint64_t bytes = 0;
  for (Index i = lo; i < hi; ++i) {
    const Entry& e = entries_[i - FirstIndex()];
    bytes += e.ByteSize();
    if (!out.empty() && bytes > max_bytes) break;
    out.push_back(e);
  }
  return out;
}

absl::Status MemoryLogStorage::Persist(const PersistBatch& batch) {
  ++persist_calls_;
  if (batch.snapshot) {
    const SnapshotMeta& meta = *batch.snapshot;
    // Keep the suffix after the snapshot only if the log holds the
    // snapshot's last entry (Raft Figure 13, rule 6); else drop it all.
    auto term = TermAt(meta.index);
    if (term.ok() && *term == meta.term && meta.index >= snapshot_.index) {
      entries_.erase(entries_.begin(), entries_.begin() + (meta.index - snapshot_.index));
    } else {
      entries_.clear();
    }
    snapshot_ = meta;
  }
  if (!batch.entries.empty()) {
    Index first = batch.entries.front().index;
    if (first < FirstIndex() || first > LastIndex() + 1) {
      return absl::InternalError("persist: entries at " + std::to_string(first.value()) +
                                 " leave a gap or overwrite the snapshot");
    }
    entries_.resize(first - FirstIndex());
    entries_.insert(entries_.end(), batch.entries.begin(), batch.entries.end());
  }
  if (batch.hard_state) hard_state_ = *batch.hard_state;
  return absl::OkStatus();
}

absl::Status MemoryLogStorage::Compact(const SnapshotMeta& meta) {
  if (meta.index <= snapshot_.index) return absl::OkStatus();
  if (meta.index > LastIndex()) {
    return absl::InvalidArgumentError("compact beyond the last index");
  }
  entries_.erase(entries_.begin(), entries_.begin() + (meta.index - snapshot_.index));
  snapshot_ = meta;
  return absl::OkStatus();
}

}  // namespace quorumkv::raft
