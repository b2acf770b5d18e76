// The whole Raft log as the core sees it: the durable part (LogStorage) plus
// the entries appended but not yet handed to the driver for persistence,
// and the commit and apply positions.
//
// Invariants: applied <= committed <= LastIndex(); the unstable entries are
// contiguous and start at unstable_offset_ <= storage LastIndex() + 1.
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "absl/status/status.h"
#include "raft/log_storage.h"
#include "raft/types.h"

namespace quorumkv::raft {

class RaftLog {
 public:
  explicit RaftLog(LogStorage* storage);

  Index FirstIndex() const;
  Index LastIndex() const;
  Term LastTerm() const;
  // The term of entry i; nullopt if compacted, beyond the log, or unreadable
  // (a storage error, which error() then reports).
  std::optional<Term> TermAt(Index i) const;
  bool MatchTerm(Index i, Term t) const;
  // Raft §5.4.1: is a log ending at (last_index, last_term) at least as
  // up to date as this one?
  bool IsUpToDate(Index last_index, Term last_term) const;

  // Follower side of AppendEntries (Figure 2, receiver rules 2-5). Returns
  // the last index known to match the leader, or nullopt when the log has
  // no entry matching (prev_index, prev_term). Truncates only at a real
  // conflict, never because a (stale) message is shorter than the log; then
  // sets *truncated_from to the first index replaced.
  std::optional<Index> MaybeAppend(Index prev_index, Term prev_term, Index leader_commit,
                                   const std::vector<Entry>& entries,
                                   std::optional<Index>* truncated_from = nullptr);
  // Leader side: appends after the last index; returns the new last index.
  Index Append(std::vector<Entry> entries);

  // Entries [lo, hi), at most max_bytes (but at least one).
  std::vector<Entry> Slice(Index lo, Index hi, uint64_t max_bytes) const;
  // The first index of `term` at or below `index`, scanning back (for the
  // conflict hint); and the last index of `term` in the log, if any.
  Index FirstIndexOfTermAtOrBelow(Index index, Term term) const;
  std::optional<Index> LastIndexOfTerm(Term term) const;

  Index committed() const { return committed_; }
  Index applied() const { return applied_; }
  void CommitTo(Index index);
  bool MaybeCommit(Index index, Term term);
  void AppliedTo(Index index);
  void SetInitialPositions(Index committed, Index applied);

  // Unstable (not yet durable) entries, handed out in a Ready.
  const std::vector<Entry>& unstable_entries() const { return unstable_; }
  const std::optional<Snapshot>& unstable_snapshot() const { return unstable_snapshot_; }
  // Durable now: the driver persisted entries up to (index, term).
  void StableTo(Index index, Term term);
  void StableSnapshotTo(Index index);
  // Last index known to be durable (storage), i.e. what the leader may count
  // for itself toward a quorum.
  Index StableLastIndex() const;

  // Committed entries not yet applied (and not beyond what is available).
  bool HasNextCommittedEntries() const;
  std::vector<Entry> NextCommittedEntries(uint64_t max_bytes) const;

  // Replaces the whole log by a snapshot received from the leader.
  void Restore(const Snapshot& snapshot);
  // The snapshot to send to a lagging follower: the storage's compaction
  // point, or a still-unstable received snapshot.
  SnapshotMeta SnapshotToSend() const;

  const absl::Status& error() const { return error_; }

 private:
  void TruncateAndAppend(const std::vector<Entry>& entries, size_t from);
  std::optional<Index> FindConflict(const std::vector<Entry>& entries) const;
  void RecordError(const absl::Status& status) const;

  LogStorage* storage_;
  std::optional<Snapshot> unstable_snapshot_;
  std::vector<Entry> unstable_;
  Index unstable_offset_;
  Index committed_;
  Index applied_;
  mutable absl::Status error_;
};

}  // namespace quorumkv::raft
