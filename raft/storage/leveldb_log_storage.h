// The Raft log on disk: a LogStorage backed by one LevelDB database per node.
//
// Design note (LogCabin style): the on-disk format and why every crash
// leaves a log the core can trust.
//
// Layout. One LevelDB database in `dir`, opened with paranoid_checks and
// read with verify_checksums, holding four kinds of keys (format.h is the
// executable form of this list):
//
//   "e" + index (8 bytes, big-endian)  a run of log entries with consecutive
//                                      indexes, stored under the index of its
//                                      first entry: the entries of one
//                                      Persist. Big-endian so LevelDB's
//                                      bytewise order is index order: the log
//                                      is one contiguous, ordered key range.
//   "h"                                the hard state (current_term,
//                                      voted_for, commit_index).
//   "m"                                metadata: on-disk format version, and
//                                      the (cluster_id, node_id) identity the
//                                      server stamps on the directory so a
//                                      data dir of another cluster or node is
//                                      refused (0 = not set yet).
//   "s"                                the snapshot metadata (index, term,
//                                      ConfState): the compaction point.
//
// Every value is crc32c(body) (4 bytes, little-endian) followed by the body,
// fixed-width fields little-endian. A run's body is its first index u64 and
// entry count u32, then for each entry term u64, type u8, data size u32 and
// the data; the first index inside the body must equal the index in the
// key, so a record written under the wrong key is caught too.
//
// Why runs, not one key per entry (format version 1, until 2026-11-22): a
// LevelDB key costs a memtable insert, a slot in a table and, at
// compaction, a tombstone, whatever its size. One key per Persist cut the
// servers' CPU per put by ~5 % (bench/RESULTS.md). What it costs: a
// Persist that replaces a log suffix starting inside a run, and a
// compaction point inside a run, write the kept part of that run again
// under its new first index (KeepOnly), and a read from disk decodes whole
// runs. A version 1 directory is rewritten as runs at Open, in one synced
// batch together with its new version number.
//
// LevelDB's
// own block checksums catch damage to its files; ours catch damage to one
// value that still parses as a LevelDB record (and bugs that write garbage),
// and they travel with the record through compactions.
//
// Invariants checked at Open (a full scan) and on every read: the runs hold
// exactly [snapshot.index + 1, last] with no gap and no overlap, every
// record's checksum matches, every key's index equals its record's first
// index, and terms
// never decrease (starting from the snapshot's term), and the hard state's
// commit index is at most the last index (the driver persists a commit index
// only with or after the entries it covers: a larger one means the tail of
// the log was lost, which no gap would show). Any violation, any LevelDB
// Corruption status, and any I/O error while reading the log (LevelDB
// reports a truncated table file that way) is DATA_LOSS naming the
// directory and the index
// ("raft log /data/n1/raft: entry 1234 failed its checksum ..."). Nothing is
// ever truncated, skipped or repaired silently: serving a damaged log could
// make this node vote or acknowledge on data it no longer has.
//
// Writes. Each Persist (one Ready) and each Compact is exactly one LevelDB
// WriteBatch, written with WriteOptions::sync = Options::sync (true by
// default: one fsync per Ready, the group commit of DESIGN.md section 4).
// A batch is validated completely before anything is written, and the
// in-memory view is updated only after LevelDB reports the batch durable.
//
// Crash cases.
// - Crash in the middle of a batch (before Persist returns). LevelDB writes
//   the batch as one checksummed record (or a run of fragments) in its
//   write-ahead .log; at recovery a torn final record is discarded whole. So
//   the log is exactly as after the previous Persist, or exactly as after
//   this one: never half a snapshot install, never entries without the hard
//   state written with them. Raft tolerates losing the batch because the
//   driver sends nothing that depends on it before Persist returns
//   (persistence contract, raft.h).
// - Crash after Persist returned (sync = true). The .log was synced,
//   so the batch survives power loss. With sync = false (tests, benchmarks
//   only) a process crash keeps it (it is in the page cache) but a power
//   loss may drop a suffix of recent batches, each still whole.
// - Crash during Compact. The deletions of the compacted runs, the rewrite
//   of a run cut by the compaction point and the new snapshot metadata are
//   one batch: either the old compaction point with all its entries, or the
//   new one without them. The state machine's
//   snapshot covers at least meta.index before Compact is called, so either
//   outcome is consistent with it.
// - Crash while creating the directory or the database. Each directory we
//   create is fsync'ed into its parent. A database that LevelDB created but
//   that holds no metadata record yet is empty, and is initialized again at
//   the next Open; a non-empty database without a metadata record is refused
//   (DATA_LOSS): it is not ours, or our metadata is gone.
// - Crash during SetIdentity: one synced Put of the metadata record; old or
//   new, never a mix.
// - A write or fsync that fails. Its outcome on disk is unknown (after a
//   failed fsync the kernel may have dropped the dirty pages: etcd #14370,
//   PITFALLS "fsync and files"), so the error is returned and this object
//   refuses every later write with the same error; the driver treats it as
//   fatal and a restart reloads the truth from disk. Never retried here.
//
// What LevelDB cannot tell apart: a torn tail of its .log (a crash mid-write)
// and a .log whose tail was truncated later. Both recover to a consistent
// earlier state (a prefix of the batches); a flipped byte anywhere in a
// .log record or an .ldb table, or a truncated table, is reported as
// corruption and refused.
//
// Memory: the hard state, the snapshot metadata, the identity, and the term
// of every entry (8 bytes each), so TermAt, FirstIndex and LastIndex never
// touch the disk; and a copy of the newest entries written, up to
// Options::entry_cache_bytes. Entries serves what it can from that copy
// and reads LevelDB for the rest: the entries a node applies and sends to
// followers that keep up are the ones it has just written, and reading
// them back (an iterator, a memtable search per entry, a checksum) cost
// about a tenth of a follower's event loop under load. The copy is taken
// only after LevelDB reports the batch durable and follows every change of
// the log's suffix and prefix (an overwrite, a snapshot, a compaction), so
// it always equals what is on disk; an entry is checked against its
// checksum when it is read from disk, as before, and a copy is never
// checked again (it never left memory).
//
// Not thread-safe, like every LogStorage: the node's thread owns it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "raft/log_storage.h"
#include "raft/storage/format.h"
#include "raft/types.h"

namespace leveldb {
class Cache;
class DB;
class Status;
class WriteBatch;
}  // namespace leveldb

namespace quorumkv::raft {

struct LevelDbLogStorageOptions {
  // Each Persist and Compact is written with WriteOptions::sync. Turn off
  // only for tests and benchmarks: the persistence contract needs it on.
  bool sync = true;
  // LevelDB's block cache (speeds up Entries for followers catching up);
  // 0 leaves LevelDB's built-in 8 MiB cache.
  size_t block_cache_bytes = 8 << 20;
  // LevelDB's memtable size before it is flushed to a table file. Appends
  // come in index order, so a large memtable costs little per insert, and
  // fewer flushes cost less: 4 -> 16 MiB took 2-3 % off the servers' CPU
  // per put, 1 MiB cost 5 % more (bench/RESULTS.md, "What changed since
  // the 21:55 run").
  size_t write_buffer_bytes = 16 << 20;
  // The newest entries kept in memory once written (by Entry::ByteSize);
  // 0 keeps none, and every Entries call reads LevelDB.
  uint64_t entry_cache_bytes = 8 << 20;
};

// Which cluster and which node a data directory belongs to.
struct StorageIdentity {
  uint64_t cluster_id = 0;
  NodeId node_id;
  bool operator==(const StorageIdentity&) const = default;
};

class LevelDbLogStorage final : public LogStorage {
 public:
  using Options = LevelDbLogStorageOptions;

  // Opens the log in `dir`, creating the directory (and its parents, each
  // fsync'ed into its parent) and an empty log if missing, then loads and
  // verifies every record (see the design note). DATA_LOSS on any
  // corruption; FAILED_PRECONDITION if `dir` is not a directory or holds
  // another on-disk format version; other codes for I/O errors (LevelDB's
  // lock held by another process or handle is one).
  static absl::StatusOr<std::unique_ptr<LevelDbLogStorage>> Open(const std::string& dir,
                                                                   const Options& options);

  LevelDbLogStorage(const LevelDbLogStorage&) = delete;
  LevelDbLogStorage& operator=(const LevelDbLogStorage&) = delete;
  ~LevelDbLogStorage() override;

  HardState hard_state() const override { return hard_state_; }
  SnapshotMeta snapshot_meta() const override { return snapshot_; }
  Index FirstIndex() const override { return snapshot_.index + 1; }
  Index LastIndex() const override { return snapshot_.index + terms_.size(); }
  absl::StatusOr<Term> TermAt(Index i) const override;
  absl::StatusOr<std::vector<Entry>> Entries(Index lo, Index hi,
                                             uint64_t max_bytes) const override;
  // Same semantics as MemoryLogStorage::Persist, plus: the whole batch is
  // validated before anything is written (a rejected batch changes nothing),
  // and a batch whose entries are not consecutive is rejected.
  absl::Status Persist(const PersistBatch& batch) override;
  // Same semantics as MemoryLogStorage::Compact, plus: meta.term must be the
  // term of entry meta.index (INVALID_ARGUMENT otherwise), because it becomes
  // TermAt(meta.index) for every later consistency check.
  absl::Status Compact(const SnapshotMeta& meta) override;

  // The identity stamped on this directory; nullopt until SetIdentity.
  std::optional<StorageIdentity> identity() const;
  // Stamps the directory durably (always synced). Both ids must be nonzero.
  // Idempotent for the same identity; FAILED_PRECONDITION for a different
  // one: a directory never changes owner.
  absl::Status SetIdentity(uint64_t cluster_id, NodeId node_id);

  const std::string& dir() const { return dir_; }

 private:
  LevelDbLogStorage(std::string dir, const Options& options);

  // Reads the metadata, hard state and snapshot records and scans every
  // entry, checking the invariants of the design note.
  absl::Status Load();
  // Writes `batch` with the given sync flag; remembers a failure (sticky).
  absl::Status Commit(leveldb::WriteBatch& batch, bool sync, absl::string_view what);
  // Refuses writes after a failed one.
  absl::Status CheckWritable() const;
  // Rewrites a log stored as one entry per key (format version 1) as runs,
  // with the metadata record saying version 2, in one synced batch.
  absl::Status ConvertOneEntryPerKeyLog(const storage::Metadata& metadata);
  // The run holding entry i (FirstIndex() <= i <= LastIndex()), as a
  // position in run_starts_, and the last index of a run.
  size_t RunHolding(Index i) const;
  Index RunEnd(size_t run) const;
  // Adds to `wb` what leaves only entries [lo, hi] of the log stored (none
  // if hi < lo): runs outside it deleted, runs it cuts written again from
  // their first kept entry. Returns the run starts that result.
  absl::StatusOr<std::deque<Index>> KeepOnly(Index lo, Index hi, leveldb::WriteBatch& wb) const;
  // Appends entries [lo, hi) read from LevelDB to `out`, adding their sizes
  // to `bytes` and stopping before the entry that would take it over
  // `max_bytes` (but never with `out` empty). False if it stopped so.
  absl::StatusOr<bool> ReadEntries(Index lo, Index hi, uint64_t max_bytes, uint64_t& bytes,
                                   std::vector<Entry>& out) const;
  // The entry cache (see the design note): drop every entry from `i` on,
  // every entry up to `i`, or add a durable batch at the end of the log.
  void UncacheFrom(Index i);
  void UncacheThrough(Index i);
  void Cache(const std::vector<Entry>& entries);
  // "raft log DIR: " + message.
  std::string Describe(absl::string_view message) const;
  // A LevelDB status as an absl::Status (Corruption is DATA_LOSS).
  absl::Status FromLevelDb(const leveldb::Status& s, absl::string_view context) const;
  // The same for reads of the log, where an I/O error is DATA_LOSS too.
  absl::Status FromLevelDbRead(const leveldb::Status& s, absl::string_view context) const;

  const std::string dir_;
  const Options options_;
  // Declared before db_ so it is destroyed after it.
  std::unique_ptr<leveldb::Cache> block_cache_;
  std::unique_ptr<leveldb::DB> db_;

  // Mirrors of the durable records, updated only after a successful write.
  StorageIdentity identity_;  // cluster_id == 0: not set
  HardState hard_state_;
  SnapshotMeta snapshot_;
  // terms_[k] is the term of entry snapshot_.index + 1 + k. Invariant: one
  // per stored entry, so LastIndex() == snapshot_.index + terms_.size().
  std::deque<Term> terms_;
  // The first index of every stored run, ascending: the runs hold exactly
  // [FirstIndex(), LastIndex()], so run_starts_.front() == FirstIndex()
  // unless the log is empty.
  std::deque<Index> run_starts_;
  // The newest entries, consecutive and ending at LastIndex() (or none);
  // cached_bytes_ is the sum of their ByteSize.
  std::deque<Entry> cached_;
  uint64_t cached_bytes_ = 0;
  // The first failed write, if any: every later write returns it.
  absl::Status write_error_;
};

}  // namespace quorumkv::raft
