#include "raft/storage/leveldb_log_storage.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <utility>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "leveldb/cache.h"
#include "leveldb/db.h"
#include "leveldb/iterator.h"
#include "leveldb/options.h"
#include "leveldb/slice.h"
#include "leveldb/status.h"
#include "leveldb/write_batch.h"
#include "raft/storage/format.h"

namespace quorumkv::raft {
namespace {

using storage::DecodeEntry;
using storage::DecodeHardState;
using storage::DecodeMetadata;
using storage::DecodeSnapshotMeta;
using storage::EncodeEntry;
using storage::EncodeHardState;
using storage::EncodeMetadata;
using storage::EncodeSnapshotMeta;
using storage::EntryKey;
using storage::Metadata;
using storage::ParseEntryKey;

absl::string_view View(const leveldb::Slice& s) { return absl::string_view(s.data(), s.size()); }
leveldb::Slice ToSlice(absl::string_view s) { return leveldb::Slice(s.data(), s.size()); }

absl::Status ErrnoStatus(int err, const std::string& message) {
  std::string full = absl::StrCat(message, ": ", std::strerror(err));
  switch (err) {
    case EACCES:
    case EPERM:
    case EROFS:
      return absl::PermissionDeniedError(full);
    case ENOENT:
      return absl::NotFoundError(full);
    case ENOSPC:
    case EDQUOT:
      return absl::ResourceExhaustedError(full);
    case ENOTDIR:
      return absl::FailedPreconditionError(full);
    default:
      return absl::InternalError(full);
  }
}

// fsync of a directory makes the names created in it durable.
absl::Status SyncDirectory(const std::filesystem::path& dir, const std::string& log_name) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) {
    return ErrnoStatus(errno, absl::StrCat("raft log ", log_name, ": open ", dir.string(),
                                           " to fsync it"));
  }
  int rc = ::fsync(fd);
  int err = errno;
  ::close(fd);
  if (rc != 0) {
    return ErrnoStatus(err, absl::StrCat("raft log ", log_name, ": fsync ", dir.string()));
  }
  return absl::OkStatus();
}

// mkdir -p that fsyncs each parent in which it created a directory: LevelDB
// creates neither the directory nor its parents, and a directory entry is
// durable only once its parent is synced.
absl::Status CreateDirectories(const std::string& dir) {
  std::filesystem::path current;
  for (const std::filesystem::path& part : std::filesystem::path(dir)) {
    current /= part;
    if (part.empty()) continue;  // a trailing separator
    struct stat st;
    if (::stat(current.c_str(), &st) == 0) {
      if (!S_ISDIR(st.st_mode)) {
        return absl::FailedPreconditionError(absl::StrCat(
            "raft log ", dir, ": ", current.string(), " exists and is not a directory"));
      }
      continue;
    }
    if (errno != ENOENT) return ErrnoStatus(errno, absl::StrCat("raft log ", dir, ": stat ", current.string()));
    if (::mkdir(current.c_str(), 0755) != 0) {
      int err = errno;
      // Lost a race with another creator: fine if it made a directory.
      if (err == EEXIST && ::stat(current.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) continue;
      return ErrnoStatus(err, absl::StrCat("raft log ", dir, ": mkdir ", current.string()));
    }
    std::filesystem::path parent = current.parent_path();
    if (parent.empty()) parent = ".";
    if (absl::Status s = SyncDirectory(parent, dir); !s.ok()) return s;
  }
  return absl::OkStatus();
}

leveldb::ReadOptions VerifyingReads(bool fill_cache) {
  leveldb::ReadOptions ro;
  ro.verify_checksums = true;
  ro.fill_cache = fill_cache;
  return ro;
}

}  // namespace

LevelDbLogStorage::LevelDbLogStorage(std::string dir, const Options& options)
    : dir_(std::move(dir)), options_(options) {}

LevelDbLogStorage::~LevelDbLogStorage() {
  // The database uses the cache until it is closed.
  db_.reset();
  block_cache_.reset();
}

absl::StatusOr<std::unique_ptr<LevelDbLogStorage>> LevelDbLogStorage::Open(
    const std::string& dir, const Options& options) {
  if (dir.empty()) return absl::InvalidArgumentError("raft log: the directory path is empty");
  if (absl::Status s = CreateDirectories(dir); !s.ok()) return s;

  std::unique_ptr<LevelDbLogStorage> storage(new LevelDbLogStorage(dir, options));
  leveldb::Options db_options;
  db_options.create_if_missing = true;
  // Corruption found while recovering the .log or compacting is an error,
  // not a record LevelDB quietly drops.
  db_options.paranoid_checks = true;
  db_options.write_buffer_size = options.write_buffer_bytes;
  if (options.block_cache_bytes > 0) {
    storage->block_cache_.reset(leveldb::NewLRUCache(options.block_cache_bytes));
    db_options.block_cache = storage->block_cache_.get();
  }
  leveldb::DB* db = nullptr;
  leveldb::Status s = leveldb::DB::Open(db_options, dir, &db);
  if (!s.ok()) return storage->FromLevelDb(s, "opening the LevelDB database");
  storage->db_.reset(db);
  if (absl::Status loaded = storage->Load(); !loaded.ok()) return loaded;
  return storage;
}

std::string LevelDbLogStorage::Describe(absl::string_view message) const {
  return absl::StrCat("raft log ", dir_, ": ", message);
}

absl::Status LevelDbLogStorage::FromLevelDb(const leveldb::Status& s,
                                            absl::string_view context) const {
  std::string message = Describe(absl::StrCat(context, ": ", s.ToString()));
  if (s.IsCorruption()) return absl::DataLossError(message);
  if (s.IsNotFound()) return absl::NotFoundError(message);
  if (s.IsInvalidArgument()) return absl::InvalidArgumentError(message);
  if (s.IsNotSupportedError()) return absl::UnimplementedError(message);
  return absl::InternalError(message);
}

absl::Status LevelDbLogStorage::FromLevelDbRead(const leveldb::Status& s,
                                                absl::string_view context) const {
  // A record that cannot be read is lost to the core as surely as a damaged
  // one, and LevelDB reports some damage as an I/O error: a table file
  // shorter than its MANIFEST says fails with "IO error: ...: Invalid
  // argument" (the mmap'ed read past its end), not with Corruption.
  if (s.IsIOError()) {
    return absl::DataLossError(Describe(absl::StrCat(
        context, ": ", s.ToString(), " (a database file cannot be read: damaged or truncated?)")));
  }
  return FromLevelDb(s, context);
}


absl::Status LevelDbLogStorage::Load() {
  const leveldb::ReadOptions ro = VerifyingReads(/*fill_cache=*/false);

  // Metadata first: it says whether the rest is ours and in a format we read.
  std::string value;
  leveldb::Status s = db_->Get(ro, ToSlice(storage::kMetadataKey), &value);
  if (s.IsNotFound()) {
    std::unique_ptr<leveldb::Iterator> it(db_->NewIterator(ro));
    it->SeekToFirst();
    if (it->Valid()) {
      return absl::DataLossError(Describe(absl::StrCat(
          "the database holds records (first key \"", absl::CHexEscape(View(it->key())),
          "\") but no metadata record: it is not a quorumkv raft log, or its metadata was lost")));
    }
    if (!it->status().ok()) return FromLevelDbRead(it->status(), "checking that a new log is empty");
    // A new log (or one whose creation crashed before this record): stamp it.
    leveldb::WriteBatch batch;
    batch.Put(ToSlice(storage::kMetadataKey), EncodeMetadata(Metadata{}));
    return Commit(batch, /*sync=*/true, "writing the metadata record of a new log");
  }
  if (!s.ok()) return FromLevelDbRead(s, "reading the metadata record");
  absl::StatusOr<Metadata> metadata = DecodeMetadata(value);
  if (!metadata.ok()) {
    return absl::Status(metadata.status().code(),
                        Describe(absl::StrCat("metadata record ", metadata.status().message())));
  }
  if ((metadata->cluster_id == 0) != (metadata->node_id == 0)) {
    return absl::DataLossError(Describe(absl::StrCat(
        "metadata record has a half-set identity (cluster ", metadata->cluster_id, ", node ",
        metadata->node_id, ")")));
  }
  identity_ = StorageIdentity{metadata->cluster_id, NodeId(metadata->node_id)};

  s = db_->Get(ro, ToSlice(storage::kHardStateKey), &value);
  if (s.ok()) {
    absl::StatusOr<HardState> hs = DecodeHardState(value);
    if (!hs.ok()) return absl::DataLossError(Describe(absl::StrCat("hard state ", hs.status().message())));
    hard_state_ = *hs;
  } else if (!s.IsNotFound()) {
    return FromLevelDbRead(s, "reading the hard state");
  }

  s = db_->Get(ro, ToSlice(storage::kSnapshotMetaKey), &value);
  if (s.ok()) {
    absl::StatusOr<SnapshotMeta> meta = DecodeSnapshotMeta(value);
    if (!meta.ok()) {
      return absl::DataLossError(Describe(absl::StrCat("snapshot metadata ", meta.status().message())));
    }
    snapshot_ = *meta;
  } else if (!s.IsNotFound()) {
    return FromLevelDbRead(s, "reading the snapshot metadata");
  }

  // Every key, in order: the entries must be exactly
  // [snapshot_.index + 1, last], each intact, terms never decreasing.
  Index expected = snapshot_.index + 1;
  Term previous_term = snapshot_.term;
  std::unique_ptr<leveldb::Iterator> it(db_->NewIterator(ro));
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    absl::string_view key = View(it->key());
    if (key == storage::kMetadataKey || key == storage::kHardStateKey ||
        key == storage::kSnapshotMetaKey) {
      continue;
    }
    std::optional<Index> index = ParseEntryKey(key);
    if (!index) {
      return absl::DataLossError(Describe(absl::StrCat(
          "unexpected key \"", absl::CHexEscape(key), "\" after entry ", (expected - 1).value())));
    }
    if (*index != expected) {
      // LevelDB skips a block it cannot read and reports it only in the
      // iterator's status: name that cause rather than the gap it left.
      if (!it->status().ok()) {
        return FromLevelDbRead(it->status(), absl::StrCat("reading the entries after entry ",
                                                      (expected - 1).value()));
      }
      if (*index < expected) {
        return absl::DataLossError(Describe(absl::StrCat(
            "entry ", index->value(), " is at or below the snapshot index ",
            snapshot_.index.value(), " (it should have been deleted with the compaction)")));
      }
      return absl::DataLossError(Describe(absl::StrCat(
          "entry ", expected.value(), " is missing (the log has a gap: the next stored entry is ",
          index->value(), ")")));
    }
    absl::StatusOr<Entry> entry = DecodeEntry(View(it->value()));
    if (!entry.ok()) {
      return absl::DataLossError(
          Describe(absl::StrCat("entry ", expected.value(), " ", entry.status().message())));
    }
    if (entry->index != expected) {
      return absl::DataLossError(Describe(absl::StrCat(
          "the record stored as entry ", expected.value(), " holds entry ", entry->index.value())));
    }
    if (entry->term < previous_term) {
      return absl::DataLossError(Describe(absl::StrCat(
          "entry ", expected.value(), " has term ", entry->term.value(),
          ", lower than the term ", previous_term.value(), " before it")));
    }
    terms_.push_back(entry->term);
    previous_term = entry->term;
    ++expected;
  }
  if (!it->status().ok()) {
    return FromLevelDbRead(it->status(),
                       absl::StrCat("reading the entries after entry ", (expected - 1).value()));
  }
  // Entries missing from the end leave no gap; but the hard state is written
  // with (or after) the entries it commits, so a commit index beyond the last
  // entry means committed entries were lost. etcd refuses to start on this
  // too ("state.commit is out of range").
  if (hard_state_.commit_index > LastIndex()) {
    return absl::DataLossError(Describe(absl::StrCat(
        "the hard state's commit index ", hard_state_.commit_index.value(),
        " is beyond the last entry ", LastIndex().value(), ": committed entries ",
        (LastIndex() + 1).value(), " to ", hard_state_.commit_index.value(), " are missing")));
  }
  return absl::OkStatus();
}

absl::StatusOr<Term> LevelDbLogStorage::TermAt(Index i) const {
  if (i == snapshot_.index) return snapshot_.term;
  if (i < snapshot_.index || i > LastIndex()) {
    return absl::OutOfRangeError(
        absl::StrCat("index ", i.value(), " not in log [", FirstIndex().value(), ", ",
                     LastIndex().value(), "] of ", dir_));
  }
  return terms_[i - FirstIndex()];
}

absl::StatusOr<std::vector<Entry>> LevelDbLogStorage::Entries(Index lo, Index hi,
                                                              uint64_t max_bytes) const {
  if (lo < FirstIndex() || hi > LastIndex() + 1 || lo > hi) {
    return absl::OutOfRangeError(absl::StrCat("entries [", lo.value(), ", ", hi.value(),
                                              ") not in log [", FirstIndex().value(), ", ",
                                              LastIndex().value(), "] of ", dir_));
  }
  std::vector<Entry> out;
  if (lo == hi) return out;
  uint64_t bytes = 0;
  const Index cache_first = cached_.empty() ? hi : std::max(lo, cached_.front().index);
  if (lo < cache_first) {
    absl::StatusOr<bool> whole = ReadEntries(lo, std::min(hi, cache_first), max_bytes, bytes, out);
    if (!whole.ok()) return whole.status();
    if (!*whole) return out;
  }
  for (Index i = cache_first; i < hi; ++i) {
    const Entry& e = cached_[i - cached_.front().index];
    bytes += e.ByteSize();
    if (!out.empty() && bytes > max_bytes) break;
    out.push_back(e);
  }
  return out;
}

absl::StatusOr<bool> LevelDbLogStorage::ReadEntries(Index lo, Index hi, uint64_t max_bytes,
                                                    uint64_t& bytes, std::vector<Entry>& out) const {
  std::unique_ptr<leveldb::Iterator> it(db_->NewIterator(VerifyingReads(/*fill_cache=*/true)));
  it->Seek(EntryKey(lo));
  for (Index i = lo; i < hi; ++i, it->Next()) {
    if (!it->Valid() || ParseEntryKey(View(it->key())) != i) {
      if (!it->status().ok()) {
        return FromLevelDbRead(it->status(), absl::StrCat("reading entry ", i.value()));
      }
      return absl::DataLossError(Describe(absl::StrCat(
          "entry ", i.value(), " is missing from the database, though it was there at Open")));
    }
    absl::StatusOr<Entry> entry = DecodeEntry(View(it->value()));
    if (!entry.ok()) {
      return absl::DataLossError(
          Describe(absl::StrCat("entry ", i.value(), " ", entry.status().message())));
    }
    if (entry->index != i) {
      return absl::DataLossError(Describe(absl::StrCat(
          "the record stored as entry ", i.value(), " holds entry ", entry->index.value())));
    }
    if (Term loaded = terms_[i - FirstIndex()]; entry->term != loaded) {
      return absl::DataLossError(Describe(absl::StrCat("entry ", i.value(), " has term ",
                                                       entry->term.value(), " on disk but ",
                                                       loaded.value(), " in memory")));
    }
    bytes += entry->ByteSize();
    if (!out.empty() && bytes > max_bytes) return false;
    out.push_back(*std::move(entry));
  }
  return true;
}

void LevelDbLogStorage::UncacheFrom(Index i) {
  while (!cached_.empty() && cached_.back().index >= i) {
    cached_bytes_ -= cached_.back().ByteSize();
    cached_.pop_back();
  }
}

void LevelDbLogStorage::UncacheThrough(Index i) {
  while (!cached_.empty() && cached_.front().index <= i) {
    cached_bytes_ -= cached_.front().ByteSize();
    cached_.pop_front();
  }
}

void LevelDbLogStorage::Cache(const std::vector<Entry>& entries) {
  if (entries.empty() || options_.entry_cache_bytes == 0) return;
  // Only the part of the batch that fits is copied.
  size_t from = entries.size();
  uint64_t batch_bytes = 0;
  while (from > 0 && batch_bytes + entries[from - 1].ByteSize() <= options_.entry_cache_bytes) {
    batch_bytes += entries[--from].ByteSize();
  }
  // The batch replaces the log's suffix from its first entry on; what is
  // cached before it must end right before it (the cache ends at the last
  // index), else nothing before it is kept.
  UncacheFrom(entries.front().index);
  if (from > 0 || (!cached_.empty() && cached_.back().index + 1 != entries.front().index)) {
    cached_.clear();
    cached_bytes_ = 0;
  }
  for (size_t k = from; k < entries.size(); ++k) {
    cached_.push_back(entries[k]);
    cached_bytes_ += entries[k].ByteSize();
  }
  while (cached_bytes_ > options_.entry_cache_bytes) {
    cached_bytes_ -= cached_.front().ByteSize();
    cached_.pop_front();
  }
}

absl::Status LevelDbLogStorage::CheckWritable() const {
  if (write_error_.ok()) return absl::OkStatus();
  return absl::Status(write_error_.code(),
                      absl::StrCat("refusing to write after a failed write (",
                                   write_error_.message(),
                                   "); restart to reload the log from disk"));
}

absl::Status LevelDbLogStorage::Commit(leveldb::WriteBatch& batch, bool sync,
                                       absl::string_view what) {
  leveldb::WriteOptions wo;
  wo.sync = sync;
  leveldb::Status s = db_->Write(wo, &batch);
  if (!s.ok()) {
    write_error_ = FromLevelDb(s, what);
    return write_error_;
  }
  return absl::OkStatus();
}

absl::Status LevelDbLogStorage::Persist(const PersistBatch& batch) {
  if (absl::Status s = CheckWritable(); !s.ok()) return s;
  if (!batch.hard_state && !batch.snapshot && batch.entries.empty()) return absl::OkStatus();

  // Build and validate the whole batch against the log as it will be after
  // the snapshot, before writing anything: a rejected batch changes nothing.
  leveldb::WriteBatch wb;
  Index first_kept = FirstIndex();  // after the snapshot step
  Index last = LastIndex();         // after the snapshot step
  bool keep_suffix = true;
  if (batch.snapshot) {
    const SnapshotMeta& meta = *batch.snapshot;
    // Keep the suffix after the snapshot only if the log holds the
    // snapshot's last entry (Raft Figure 13, rule 6; hashicorp/raft #704);
    // else drop it all.
    absl::StatusOr<Term> term = TermAt(meta.index);
    keep_suffix = term.ok() && *term == meta.term && meta.index >= snapshot_.index;
    Index delete_through = keep_suffix ? meta.index : last;
    for (Index i = FirstIndex(); i <= delete_through; ++i) wb.Delete(EntryKey(i));
    wb.Put(ToSlice(storage::kSnapshotMetaKey), EncodeSnapshotMeta(meta));
    first_kept = meta.index + 1;
    if (!keep_suffix) last = meta.index;
  }
  if (!batch.entries.empty()) {
    Index first = batch.entries.front().index;
    if (first < first_kept || first > last + 1) {
      return absl::InternalError(Describe(absl::StrCat(
          "persist: entries at ", first.value(), " leave a gap or overwrite the snapshot (the log is [",
          first_kept.value(), ", ", last.value(), "])")));
    }
    for (size_t k = 0; k < batch.entries.size(); ++k) {
      if (batch.entries[k].index != first + k) {
        return absl::InternalError(Describe(absl::StrCat(
            "persist: the entries of a batch must have consecutive indexes, but entry ", k,
            " of the batch has index ", batch.entries[k].index.value(), ", not ",
            (first + k).value())));
      }
    }
    // The new entries replace the stored suffix from `first` on.
    Index new_last = first + (batch.entries.size() - 1);
    for (Index i = new_last + 1; i <= last; ++i) wb.Delete(EntryKey(i));
    for (const Entry& e : batch.entries) wb.Put(EntryKey(e.index), EncodeEntry(e));
  }
  if (batch.hard_state) wb.Put(ToSlice(storage::kHardStateKey), EncodeHardState(*batch.hard_state));

  if (absl::Status s = Commit(wb, options_.sync && batch.sync, "persist"); !s.ok()) return s;

  // Durable: now mirror it in memory.
  if (batch.snapshot) {
    if (keep_suffix) {
      terms_.erase(terms_.begin(), terms_.begin() + (batch.snapshot->index - snapshot_.index));
      UncacheThrough(batch.snapshot->index);
    } else {
      terms_.clear();
      UncacheFrom(Index(0));
    }
    snapshot_ = *batch.snapshot;
  }
  if (!batch.entries.empty()) {
    terms_.resize(batch.entries.front().index - FirstIndex());
    for (const Entry& e : batch.entries) terms_.push_back(e.term);
    Cache(batch.entries);
  }
  if (batch.hard_state) hard_state_ = *batch.hard_state;
  return absl::OkStatus();
}

absl::Status LevelDbLogStorage::Compact(const SnapshotMeta& meta) {
  if (absl::Status s = CheckWritable(); !s.ok()) return s;
  if (meta.index <= snapshot_.index) return absl::OkStatus();
  if (meta.index > LastIndex()) {
    return absl::InvalidArgumentError(Describe(absl::StrCat(
        "compact to ", meta.index.value(), " beyond the last index ", LastIndex().value())));
  }
  Term stored = terms_[meta.index - FirstIndex()];
  if (stored != meta.term) {
    return absl::InvalidArgumentError(Describe(absl::StrCat(
        "compact to ", meta.index.value(), " with term ", meta.term.value(), ", but entry ",
        meta.index.value(), " has term ", stored.value())));
  }
  leveldb::WriteBatch wb;
  for (Index i = FirstIndex(); i <= meta.index; ++i) wb.Delete(EntryKey(i));
  wb.Put(ToSlice(storage::kSnapshotMetaKey), EncodeSnapshotMeta(meta));
  if (absl::Status s = Commit(wb, options_.sync, "compact"); !s.ok()) return s;
  terms_.erase(terms_.begin(), terms_.begin() + (meta.index - snapshot_.index));
  UncacheThrough(meta.index);
  snapshot_ = meta;
  return absl::OkStatus();
}

std::optional<StorageIdentity> LevelDbLogStorage::identity() const {
  if (identity_.cluster_id == 0) return std::nullopt;
  return identity_;
}

absl::Status LevelDbLogStorage::SetIdentity(uint64_t cluster_id, NodeId node_id) {
  if (absl::Status s = CheckWritable(); !s.ok()) return s;
  if (cluster_id == 0 || node_id == kNoNode) {
    return absl::InvalidArgumentError(Describe(absl::StrCat(
        "identity needs a nonzero cluster id and node id (got cluster ", cluster_id, ", node ",
        node_id.value(), ")")));
  }
  StorageIdentity wanted{cluster_id, node_id};
  if (identity_.cluster_id != 0) {
    if (identity_ == wanted) return absl::OkStatus();
    return absl::FailedPreconditionError(Describe(absl::StrCat(
        "belongs to cluster ", identity_.cluster_id, " node ", identity_.node_id.value(),
        ", not cluster ", cluster_id, " node ", node_id.value())));
  }
  Metadata metadata;
  metadata.cluster_id = cluster_id;
  metadata.node_id = node_id.value();
  leveldb::WriteBatch wb;
  wb.Put(ToSlice(storage::kMetadataKey), EncodeMetadata(metadata));
  if (absl::Status s = Commit(wb, /*sync=*/true, "writing the identity"); !s.ok()) return s;
  identity_ = wanted;
  return absl::OkStatus();
}

}  // namespace quorumkv::raft
