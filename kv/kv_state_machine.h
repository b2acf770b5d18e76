// The replicated state machine: applies committed Raft entries to a LevelDB
// of its own (separate from the Raft log DB), de-duplicates retried client
// writes, and produces and installs snapshots.
//
// It knows nothing of Raft: indexes and terms are plain uint64_t, entry data
// is opaque bytes, and every input it acts on comes from the log, so that
// every replica that applies the same entries reaches the same state
// (PITFALLS "Non-deterministic apply": no wall clock, randomness or
// unordered iteration in Apply; the one configuration value apply depends
// on, the session TTL, is recorded in the store and checked, see below).
//
// ## On-disk layout
//
//   <dir>/state/          the live LevelDB
//   <dir>/restore.tmp.N/  a snapshot being received (incomplete)
//   <dir>/restore.ready/  a snapshot fully received and verified: the commit
//                         point of a restore
//   <dir>/state.old/      the previous live DB while a restore replaces it
//
// Keys inside the LevelDB (the first byte is the namespace):
//   "m"                               meta: format version, applied index
//                                     and term, log clock, session TTL,
//                                     key/byte/session counts
//   "s" + be64(client_id)             session: last activity (log time),
//                                     last sequence, its encoded result
//   "u" + user key                    user data
// The index of sessions by last activity, which session expiry walks, is
// kept in memory and rebuilt from the "s" records at Open.
//
// The meta record is rewritten in the same WriteBatch as the data of every
// applied batch (DESIGN.md §4): after a crash the store is exactly at some
// applied index, and the driver re-applies from the next one.
//
// ## Crash cases of a restore (FinishRestore and Open)
//
//   1. Crash while chunks arrive, or before the commit rename: restore.tmp.N
//      is left over. Open deletes it; the old state is served.
//   2. Commit: restore.tmp.N (closed, every file and the directory fsynced) is
//      renamed to restore.ready and <dir> fsynced. From here on the restore
//      is decided.
//   3. state is renamed to state.old, <dir> fsynced. A crash here leaves
//      restore.ready and state.old without state: Open finishes the swap.
//   4. restore.ready is renamed to state, <dir> fsynced. A crash here leaves
//      state (new) and state.old: Open deletes state.old.
//   5. state.old is deleted; the new state is opened.
//   Open, in order: deletes every restore.tmp.N; if restore.ready exists,
//   moves any state to state.old and renames restore.ready to state
//   (fsyncing <dir> after each rename); deletes state.old. A crash during
//   Open's own clean-up is covered by the same rules at the next Open. So a
//   crash at any point leaves either the old state or the new one, never a
//   mixture.
//
// ## Threads
//
// Apply, FinishRestore and CreateSnapshot are serialized with each other
// (one apply thread is expected). Get, Stats and StateChecksum may run on
// any thread concurrently with them. A SnapshotReader may be consumed on
// another thread; it keeps the LevelDB it reads open (so destroy it before
// opening the same directory again), and a restore cannot replace the store
// while a reader of the old store is still open (UNAVAILABLE).
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "kv/command.h"
#include "kv/key_size_cache.h"
#include "kv/snapshot_format.h"

namespace quorumkv::kv {

// The steps of FinishRestore after which a crash is interesting; see the
// crash cases above.
enum class RestoreStep : uint8_t {
  kBeforeCommit,     // restore.tmp.N complete and synced, not yet renamed
  kAfterCommit,      // renamed to restore.ready
  kAfterOldMoved,    // state renamed to state.old
  kAfterNewInPlace,  // restore.ready renamed to state
};

struct KvOptions {
  // A client session whose last activity is more than this many
  // milliseconds older than the log's clock (the largest proposed_at_unix_ms
  // applied so far) is forgotten; 0 keeps sessions forever. After expiry a
  // retry of the client's old request is applied again, so this must exceed
  // any client's retry window. It decides what apply does, so it must be the
  // same on every replica: it is recorded in the store when the store is
  // created and in every snapshot, and Open and restore refuse a mismatch.
  uint64_t session_ttl_ms = 24 * 3600 * 1000;

  // Sync every applied batch. Without it a crash may lose the last applied
  // batches (the driver re-applies them from the Raft log); CreateSnapshot
  // always makes the snapshotted state durable first, so compacting the log
  // up to a snapshot never loses entries the store had not persisted.
  bool sync_writes = true;

  // Largest chunk a SnapshotReader yields.
  size_t snapshot_chunk_bytes = 1 << 20;

  // Largest chunk a SnapshotWriter accepts, and largest key or value a
  // snapshot image may hold (a bound on what a corrupted length can make the
  // receiver buffer).
  size_t max_restore_chunk_bytes = 64 << 20;
  uint64_t max_snapshot_field_bytes = 64 << 20;

  // Memory for the key size cache (kv/key_size_cache.h); 0 turns it off
  // (every put and delete then reads the key's previous value).
  size_t key_size_cache_bytes = 32 << 20;

  // LevelDB tuning. Keys arrive in random order, so each memtable insert
  // walks the skip list through cache misses, more of them the larger it
  // is; with the key size cache sparing puts their read, a 2 MiB memtable
  // took ~5 % off the servers' CPU per put against 16 MiB, and reads did
  // not slow down (bench/RESULTS.md, "What changed since the 21:55 run").
  size_t write_buffer_bytes = 2 << 20;
  int bloom_filter_bits_per_key = 10;

  // For crash tests only: called at each RestoreStep of FinishRestore. A
  // non-OK status stops the restore right there, as if the process had died:
  // nothing is cleaned up, and the state machine refuses every call
  // (INTERNAL) until it is destroyed and opened again.
  std::function<absl::Status(RestoreStep)> restore_crash_hook;
};

enum class ApplyItemType : uint8_t {
  kCommand,         // data is an encoded Command
  kNoOp,            // a leader's no-op entry: only advances the applied index
  kOtherRaftEntry,  // e.g. a membership change: only advances the applied index
};

// One committed Raft entry, handed over in log order.
struct ApplyItem {
  uint64_t index = 0;
  uint64_t term = 0;
  ApplyItemType type = ApplyItemType::kCommand;
  std::string data;
};

enum class ApplyOutcome : uint8_t {
  kApplied,         // the command took effect; `result` says how
  kDuplicate,       // a retry of its client's last sequence: `result` is the
                    // stored result, nothing was applied again
  kStaleSequence,   // older than its client's last sequence: not applied
  kInvalidCommand,  // the data did not decode: not applied (the same on every
                    // replica, since every replica decodes the same bytes)
  kNotCommand,      // a no-op or other Raft entry
  kAlreadyApplied,  // at or below the applied index before the call: skipped
};

const char* ApplyOutcomeName(ApplyOutcome outcome);

struct ApplyResult {
  uint64_t index = 0;
  ApplyOutcome outcome = ApplyOutcome::kNotCommand;
  CommandResult result;  // kApplied, kDuplicate
  std::string message;   // why, for kStaleSequence and kInvalidCommand

  // What to tell the client who proposed the entry: OK for kApplied,
  // kDuplicate and kNotCommand; FAILED_PRECONDITION for kStaleSequence;
  // INVALID_ARGUMENT for kInvalidCommand; ABORTED for kAlreadyApplied (the
  // entry was applied before this process started, its result is gone).
  absl::Status ToStatus() const;
};

struct KvStats {
  uint64_t applied_index = 0;
  uint64_t applied_term = 0;
  uint64_t key_count = 0;
  uint64_t user_bytes = 0;  // sum of key and value sizes of user data
  uint64_t session_count = 0;
  uint64_t log_clock_ms = 0;            // the largest proposed_at_unix_ms applied
  uint64_t approximate_disk_bytes = 0;  // LevelDB's estimate
};

// A digest of the replicated state at one applied index, for cross-replica
// divergence checks (PITFALLS "Silent divergence"): two replicas at the same
// applied_index must have the same checksum.
struct StateDigest {
  uint64_t applied_index = 0;
  uint64_t applied_term = 0;
  uint64_t checksum = 0;
  bool operator==(const StateDigest&) const = default;
};

struct SnapshotChunk {
  uint64_t offset = 0;  // of data[0] within the image
  std::string data;
  bool last = false;  // the image ends with this chunk
};

class KvStateMachine;

namespace internal {
struct DbHandle;   // an open LevelDB and what it was opened with
struct StoreMeta;  // the decoded meta record
}  // namespace internal

// The client sessions ordered by last activity: (last_active_ms, client_id).
using SessionExpiryIndex = std::set<std::pair<uint64_t, uint64_t>>;

// Streams the image of one point-in-time snapshot (a LevelDB snapshot), in
// chunks of at most the configured size. Reading does not block Apply.
class SnapshotReader {
 public:
  ~SnapshotReader();
  SnapshotReader(const SnapshotReader&) = delete;
  SnapshotReader& operator=(const SnapshotReader&) = delete;

  const SnapshotHeader& header() const { return header_; }
  // Every chunk has been returned (the last one had `last` set).
  bool done() const { return done_; }
  uint64_t bytes_emitted() const { return offset_; }

  // The next chunk. OUT_OF_RANGE once done(); DATA_LOSS / INTERNAL if
  // LevelDB fails while reading.
  absl::StatusOr<SnapshotChunk> Next();

 private:
  friend class KvStateMachine;
  struct Impl;
  explicit SnapshotReader(std::unique_ptr<Impl> impl, const SnapshotHeader& header);
  // Encodes records into pending_ until it holds at least `want` bytes or
  // the image is complete.
  absl::Status Fill(size_t want);

  std::unique_ptr<Impl> impl_;
  SnapshotHeader header_;
  std::string pending_;  // encoded bytes; those before pending_pos_ returned
  size_t pending_pos_ = 0;
  uint64_t offset_ = 0;  // image bytes returned so far
  bool trailer_written_ = false;
  bool done_ = false;
};

// Receives an image chunk by chunk, in order, into <dir>/restore.tmp.<n>
// (never the live store), then FinishRestore verifies it and swaps it in.
// Destroying an unfinished writer deletes its directory. Must not outlive
// its KvStateMachine.
class SnapshotWriter {
 public:
  ~SnapshotWriter();
  SnapshotWriter(const SnapshotWriter&) = delete;
  SnapshotWriter& operator=(const SnapshotWriter&) = delete;

  // INVALID_ARGUMENT for a chunk out of order (offset != bytes_received()),
  // empty, too large, or after the last one: the chunk is refused and the
  // writer still expects offset bytes_received(), so a sender may resume
  // from there. The rest is sticky: DATA_LOSS for a corrupted image (bad
  // magic, checksum, key order, counts, record contents, or `last` set
  // before the image is complete); FAILED_PRECONDITION when the header shows
  // the store already at or beyond the snapshot's index; INVALID_ARGUMENT
  // when the snapshot was made with another session TTL.
  absl::Status Write(const SnapshotChunk& chunk);

  uint64_t bytes_received() const;
  // The header, once its bytes have arrived.
  std::optional<SnapshotHeader> header() const;

 private:
  friend class KvStateMachine;
  struct Impl;
  explicit SnapshotWriter(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

class KvStateMachine {
 public:
  // Opens (creating if needed) the store under `dir`, finishing or rolling
  // back any interrupted restore (see the crash cases above), and recovers
  // the applied index and term. FAILED_PRECONDITION if the store was created
  // with a different session TTL; DATA_LOSS if its meta record or session
  // table is corrupt or they disagree.
  static absl::StatusOr<std::unique_ptr<KvStateMachine>> Open(const std::string& dir,
                                                              const KvOptions& options);
  ~KvStateMachine();
  KvStateMachine(const KvStateMachine&) = delete;
  KvStateMachine& operator=(const KvStateMachine&) = delete;

  // Applies committed entries in one LevelDB WriteBatch, which also records
  // the new applied index and term: the batch takes effect entirely or not
  // at all. Items at or below the applied index are skipped (replay after a
  // restart is harmless); the first item above it must be applied_index + 1
  // and indexes must then be consecutive, with non-decreasing terms, or the
  // call fails with FAILED_PRECONDITION and changes nothing. An error from
  // LevelDB is returned as is; the store is then still at its previous
  // applied index. Any bytes are accepted as command data.
  absl::StatusOr<std::vector<ApplyResult>> Apply(const std::vector<ApplyItem>& items);

  // The applied value of a user key (nullopt: absent).
  absl::StatusOr<std::optional<std::string>> Get(absl::string_view key) const;

  absl::StatusOr<KvStats> Stats() const;
  uint64_t applied_index() const;
  uint64_t applied_term() const;

  // A 64-bit FNV-1a over every replicated record in key order (user keys
  // and values, and the client session table), then the applied
  // index, applied term and log clock, all read from one LevelDB snapshot.
  // Deterministic across replicas, processes and batchings of Apply.
  absl::StatusOr<StateDigest> StateChecksum() const;

  // A point-in-time image of the state at the current applied index, made
  // durable first. The reader holds a LevelDB snapshot: Apply may go on.
  // `chunk_bytes` 0 means options.snapshot_chunk_bytes.
  absl::StatusOr<std::unique_ptr<SnapshotReader>> CreateSnapshot(size_t chunk_bytes = 0);

  // Starts receiving a snapshot image. Several may be received at once,
  // each into a directory of its own; FinishRestore installs one at a time.
  absl::StatusOr<std::unique_ptr<SnapshotWriter>> BeginRestore();

  // Verifies that the image is complete and installs it, atomically
  // replacing the live state (crash cases above), and returns its header.
  // The writer is consumed either way. On error the live state is untouched
  // (except INTERNAL after the commit point, see below), and the code says
  // what to do:
  //   FAILED_PRECONDITION  only this: the store is already at or beyond the
  //                        snapshot's index (PITFALLS "Slow restart on big
  //                        state"): it already has that state, and skipping
  //                        the snapshot is safe.
  //   UNAVAILABLE          a SnapshotReader of the live store is still open:
  //                        destroy it and receive the snapshot again.
  //   DATA_LOSS            the image is incomplete (a truncated transfer) or
  //                        was corrupted; INVALID_ARGUMENT: see Write.
  //   INTERNAL             an I/O error; after the commit point the state
  //                        machine refuses every call until reopened (Open
  //                        then finishes the installation).
  absl::StatusOr<SnapshotHeader> FinishRestore(std::unique_ptr<SnapshotWriter> writer);

  // BeginRestore + Write of each chunk + FinishRestore.
  absl::StatusOr<SnapshotHeader> RestoreFromChunks(const std::vector<SnapshotChunk>& chunks);

  const std::string& dir() const { return dir_; }

 private:
  KvStateMachine(std::string dir, const KvOptions& options);

  // Opens <dir>/state, loads (or, for a new store, writes) its meta and
  // rebuilds the session expiry index.
  absl::Status OpenLiveDb() ABSL_EXCLUSIVE_LOCKS_REQUIRED(apply_mu_, db_mu_);
  // Copies of the live DB handle and meta for a writer holding apply_mu_
  // (which alone may swap them); INTERNAL after an interrupted
  // restore.
  absl::Status SnapshotLiveState(std::shared_ptr<internal::DbHandle>* db,
                                 internal::StoreMeta* meta) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(apply_mu_) ABSL_LOCKS_EXCLUDED(db_mu_);
  absl::StatusOr<SnapshotHeader> InstallRestored(SnapshotWriter::Impl& writer)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(apply_mu_) ABSL_LOCKS_EXCLUDED(db_mu_);
  // Leaves the state machine refusing every call (INTERNAL) after a restore
  // stopped half-way (by an error after the commit point, or a simulated
  // crash); returns `s`.
  absl::Status MarkBroken(const SnapshotWriter::Impl& writer, absl::Status s)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(db_mu_);

  const std::string dir_;
  const KvOptions options_;

  // Serializes the writers of the live store: Apply, CreateSnapshot (which
  // may rewrite the meta record) and the installation of a restore.
  mutable absl::Mutex apply_mu_ ABSL_ACQUIRED_BEFORE(db_mu_);
  // Guards the pointer to the live DB (swapped by a restore) and the cached
  // meta. Get, Stats and StateChecksum hold it shared while they read; the
  // swap of a restore holds it exclusively.
  mutable absl::Mutex db_mu_;
  // Shared only with open SnapshotReaders: Get, Stats and StateChecksum use
  // it under db_mu_ without taking a reference, so that a restore can tell
  // from use_count() whether a reader still needs the old store.
  std::shared_ptr<internal::DbHandle> db_ ABSL_GUARDED_BY(db_mu_);
  std::unique_ptr<internal::StoreMeta> meta_ ABSL_GUARDED_BY(db_mu_);  // as last written
  // Why the state machine is unusable after an interrupted restore.
  absl::Status broken_ ABSL_GUARDED_BY(db_mu_);
  // Mirrors the session table of the live store, to find expired sessions
  // without scanning it. Rebuilt by OpenLiveDb; changed only after the
  // batch that changed the table is written.
  SessionExpiryIndex session_expiry_ ABSL_GUARDED_BY(apply_mu_);
  // Which user keys the live store holds and their value sizes, for the
  // recently used ones: what Apply needs to keep key_count and user_bytes
  // exact without reading the store. Emptied by OpenLiveDb; learns a batch's
  // writes only after the batch is written.
  KeySizeCache key_sizes_ ABSL_GUARDED_BY(apply_mu_);

  // Names the receiving directories of SnapshotWriters.
  std::atomic<uint64_t> next_restore_id_{0};
};

}  // namespace quorumkv::kv
