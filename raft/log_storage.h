// The durable half of a Raft log, as the core sees it.
//
// The core only reads through this interface; the driver writes to it when
// it persists a Ready (see the persistence contract in raft.h). A crash
// loses exactly what the driver had not yet written here.
#pragma once

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "raft/types.h"

namespace quorumkv::raft {

// One durable write: what a Ready asks to persist. Implementations apply it
// atomically (LevelDB: one synced WriteBatch), in this order: the snapshot
// (which discards every entry at or below its index, and the whole log if
// the log does not contain the snapshot's last entry), then the entries
// (which replace any stored suffix from entries.front().index on), then the
// hard state.
struct PersistBatch {
  std::optional<HardState> hard_state;
  std::optional<SnapshotMeta> snapshot;
  std::vector<Entry> entries;
  // false: the write may reach the disk later (Ready::must_sync). A later
  // synced write makes it durable too; a crash before that may lose it.
  bool sync = true;
};

class LogStorage {
 public:
  virtual ~LogStorage() = default;

  virtual HardState hard_state() const = 0;
  // The compaction point: every entry at or below snapshot_meta().index has
  // been discarded; their effect lives in the state machine's snapshot.
  virtual SnapshotMeta snapshot_meta() const = 0;
  // snapshot_meta().index + 1.
  virtual Index FirstIndex() const = 0;
  // The last stored entry, or snapshot_meta().index if there is none.
  virtual Index LastIndex() const = 0;

  // The term of entry i, for i in [FirstIndex() - 1, LastIndex()].
  // OUT_OF_RANGE for a compacted or absent index; DATA_LOSS on corruption.
  virtual absl::StatusOr<Term> TermAt(Index i) const = 0;

  // Entries [lo, hi) with lo >= FirstIndex(), hi <= LastIndex() + 1, cut at
  // max_bytes but always at least one entry.
  virtual absl::StatusOr<std::vector<Entry>> Entries(Index lo, Index hi,
                                                     uint64_t max_bytes) const = 0;

  // Durable write of a Ready's hard state, entries and installed snapshot.
  virtual absl::Status Persist(const PersistBatch& batch) = 0;

  // Log compaction: discards entries up to `meta.index`, which the state
  // machine's snapshot now covers (meta.index <= the applied index).
  virtual absl::Status Compact(const SnapshotMeta& meta) = 0;
};

}  // namespace quorumkv::raft
