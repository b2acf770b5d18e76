// When to snapshot the state machine and compact the Raft log.
//
// A pure decision (no clock, no I/O): the driver reports how big the log is
// and how big the state was at the last snapshot; the policy answers.
//
// The rule (DESIGN.md §4, PITFALLS "Snapshot storms"). Taking a snapshot
// costs time proportional to the *state* (the image is read and, for a slow
// follower, sent whole), while the log grows with *writes*. So after each
// compaction the log must grow by
//
//     growth_entries = max(min_entries, state_size_factor × state_keys)
//     growth_bytes   = max(min_bytes,   state_size_factor × state_bytes)
//
// before the next snapshot, counted on top of what the compaction left in
// the log (the tail kept for followers to catch up without a snapshot):
//
//     entry_threshold = remaining_log_entries + growth_entries
//     byte_threshold  = remaining_log_bytes   + growth_bytes
//     ShouldSnapshot(log) = (min_entries > 0 && log_entries >= entry_threshold)
//                        || (min_bytes   > 0 && log_bytes   >= byte_threshold)
//
// Consequences, each unit-tested:
//   - the next snapshot never comes before at least the minimum of new log
//     (entries or bytes) since the last one, whatever the state size;
//   - a retained tail larger than the minimum cannot re-trigger a snapshot
//     at once (the storm of braft #528: thresholds measured on the whole log
//     fire again right after every compaction);
//   - with a large state the interval grows with it, so the amortized cost
//     of snapshots per byte of log stays bounded by about 1 / factor;
//   - a criterion whose minimum is 0 is disabled; both 0 never snapshots.
//
// CompactIndex gives how far the log may be truncated once a snapshot at a
// given index is durable: `trailing_entries` are kept below it.
#pragma once

#include <cstdint>

#include "absl/status/statusor.h"

namespace quorumkv::kv {

struct CompactionPolicyOptions {
  // The least log growth between two snapshots. 0 disables the criterion.
  uint64_t min_entries = 10'000;
  uint64_t min_bytes = 64ull << 20;
  // How much bigger than the state the log may grow before the next
  // snapshot. Finite, in [0, 1000]; 0 makes the minimums the whole rule.
  double state_size_factor = 1.0;
  // Entries kept below the snapshot index when the log is compacted, so a
  // follower slightly behind catches up from the log, not from a snapshot.
  uint64_t trailing_entries = 1'000;
};

// What the log and the state look like right after a compaction (or at
// start-up, before the first one).
struct CompactionState {
  uint64_t remaining_log_entries = 0;
  uint64_t remaining_log_bytes = 0;
  uint64_t state_keys = 0;   // KvStats::key_count
  uint64_t state_bytes = 0;  // KvStats::user_bytes
};

class CompactionPolicy {
 public:
  // INVALID_ARGUMENT for a negative, non-finite or absurd factor.
  static absl::StatusOr<CompactionPolicy> Create(const CompactionPolicyOptions& options);

  // Whether to snapshot now, given the log's current size (every entry it
  // holds, from its first index to its last, and their bytes).
  bool ShouldSnapshot(uint64_t log_entries, uint64_t log_bytes) const;

  // Resets the thresholds after a snapshot and log compaction (or at start).
  void OnCompacted(const CompactionState& state);

  // The last index the log may discard once a snapshot at snapshot_index is
  // durable (0: nothing).
  uint64_t CompactIndex(uint64_t snapshot_index) const;

  uint64_t entry_threshold() const { return entry_threshold_; }
  uint64_t byte_threshold() const { return byte_threshold_; }
  const CompactionPolicyOptions& options() const { return options_; }

 private:
  explicit CompactionPolicy(const CompactionPolicyOptions& options);

  CompactionPolicyOptions options_;
  uint64_t entry_threshold_;
  uint64_t byte_threshold_;
};

}  // namespace quorumkv::kv
