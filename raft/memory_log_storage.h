// A LogStorage held in memory: for unit tests, and for the simulator, where
// it stands for the disk (a simulated crash keeps it and drops the core).
#pragma once

#include <vector>

#include "raft/log_storage.h"

namespace quorumkv::raft {

class MemoryLogStorage : public LogStorage {
 public:
  MemoryLogStorage() = default;

  HardState hard_state() const override { return hard_state_; }
  SnapshotMeta snapshot_meta() const override { return snapshot_; }
  Index FirstIndex() const override { return snapshot_.index + 1; }
  Index LastIndex() const override { return snapshot_.index + entries_.size(); }
  absl::StatusOr<Term> TermAt(Index i) const override;
  absl::StatusOr<std::vector<Entry>> Entries(Index lo, Index hi,
                                             uint64_t max_bytes) const override;
  absl::Status Persist(const PersistBatch& batch) override;
  absl::Status Compact(const SnapshotMeta& meta) override;

  // Every byte that a Persist would have sent to disk, for tests that check
  // the persistence contract.
  uint64_t persist_calls() const { return persist_calls_; }

 private:
  HardState hard_state_;
  SnapshotMeta snapshot_;
  // entries_[k] has index snapshot_.index + 1 + k. Invariant: contiguous.
  std::vector<Entry> entries_;
  uint64_t persist_calls_ = 0;
};

}  // namespace quorumkv::raft
