#include "raft/storage/leveldb_log_storage.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <limits>
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
using storage::DecodeEntryRun;
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

  if (metadata->format_version == storage::kOneEntryPerKeyFormatVersion) {
    if (absl::Status s = ConvertOneEntryPerKeyLog(*metadata); !s.ok()) return s;
  }

  // Every key, in order: the runs must hold exactly
  // [snapshot_.index + 1, last], each intact, each stored under its first
  // index, terms never decreasing.
  Index expected = snapshot_.index + 1;
  Term previous_term = snapshot_.term;
  std::unique_ptr<leveldb::Iterator> it(db_->NewIterator(ro));
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    absl::string_view key = View(it->key());
    if (key == storage::kMetadataKey || key == storage::kHardStateKey ||
        key == storage::kSnapshotMetaKey) {
      continue;
    }
    std::optional<Index> start = ParseEntryKey(key);
    if (!start) {
      return absl::DataLossError(Describe(absl::StrCat(
          "unexpected key \"", absl::CHexEscape(key), "\" after entry ", (expected - 1).value())));
    }
    if (*start != expected) {
      // LevelDB skips a block it cannot read and reports it only in the
      // iterator's status: name that cause rather than the gap it left.
      if (!it->status().ok()) {
        return FromLevelDbRead(it->status(), absl::StrCat("reading the entries after entry ",
                                                      (expected - 1).value()));
      }
      if (*start < expected) {
        return absl::DataLossError(Describe(absl::StrCat(
            "entry ", start->value(), " is at or below ",
            start->value() <= snapshot_.index.value()
                ? absl::StrCat("the snapshot index ", snapshot_.index.value(),
                               " (it should have been deleted with the compaction)")
                : absl::StrCat("the last entry ", (expected - 1).value(), " of the record before it"))));
      }
      return absl::DataLossError(Describe(absl::StrCat(
          "entry ", expected.value(), " is missing (the log has a gap: the next stored entry is ",
          start->value(), ")")));
    }
    absl::StatusOr<std::vector<Entry>> run = DecodeEntryRun(View(it->value()));
    if (!run.ok()) {
      return absl::DataLossError(Describe(
          absl::StrCat("entry ", expected.value(), " (the first of its record) ", run.status().message())));
    }
    if (run->front().index != expected) {
      return absl::DataLossError(Describe(absl::StrCat(
          "the record stored as entry ", expected.value(), " holds entries from ", run->front().index.value())));
    }
    for (const Entry& e : *run) {
      if (e.term < previous_term) {
        return absl::DataLossError(Describe(absl::StrCat(
            "entry ", e.index.value(), " has term ", e.term.value(), ", lower than the term ",
            previous_term.value(), " before it")));
      }
      terms_.push_back(e.term);
      previous_term = e.term;
    }
    run_starts_.push_back(expected);
    expected = expected + run->size();
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

absl::Status LevelDbLogStorage::ConvertOneEntryPerKeyLog(const Metadata& metadata) {
  // Read and check every version-1 record as version 1's Open did...
  const leveldb::ReadOptions ro = VerifyingReads(/*fill_cache=*/false);
  std::vector<Entry> entries;
  Index expected = snapshot_.index + 1;
  Term previous_term = snapshot_.term;
  std::unique_ptr<leveldb::Iterator> it(db_->NewIterator(ro));
  for (it->Seek(std::string(1, storage::kEntryPrefix)); it->Valid(); it->Next()) {
    std::optional<Index> index = ParseEntryKey(View(it->key()));
    if (!index) {
      if (View(it->key())[0] != storage::kEntryPrefix) break;  // past the entry keys
      return absl::DataLossError(Describe(absl::StrCat("converting from format version 1: unexpected key \"",
                                                       absl::CHexEscape(View(it->key())), "\"")));
    }
    if (*index != expected) {
      if (!it->status().ok()) return FromLevelDbRead(it->status(), "reading the version 1 entries");
      return absl::DataLossError(Describe(absl::StrCat(
          "converting from format version 1: entry ", expected.value(),
          " is missing (the next stored entry is ", index->value(), ")")));
    }
    absl::StatusOr<Entry> entry = DecodeEntry(View(it->value()));
    if (!entry.ok()) {
      return absl::DataLossError(Describe(absl::StrCat("converting from format version 1: entry ",
                                                       expected.value(), " ", entry.status().message())));
    }
    if (entry->index != expected || entry->term < previous_term) {
      return absl::DataLossError(Describe(absl::StrCat(
          "converting from format version 1: the record stored as entry ", expected.value(),
          " holds entry ", entry->index.value(), " of term ", entry->term.value())));
    }
    previous_term = entry->term;
    entries.push_back(*std::move(entry));
    ++expected;
  }
  if (!it->status().ok()) return FromLevelDbRead(it->status(), "reading the version 1 entries");
  it.reset();

  // ...then replace them with runs and stamp version 2, in one synced batch:
  // a crash leaves either the old log or the new one.
  leveldb::WriteBatch wb;
  for (const Entry& e : entries) wb.Delete(EntryKey(e.index));
  constexpr size_t kMaxRunEntries = 1024;
  for (size_t from = 0; from < entries.size(); from += kMaxRunEntries) {
    const size_t n = std::min(kMaxRunEntries, entries.size() - from);
    wb.Put(EntryKey(entries[from].index),
           storage::EncodeEntryRun(absl::MakeConstSpan(entries).subspan(from, n)));
  }
  Metadata converted = metadata;
  converted.format_version = storage::kFormatVersion;
  wb.Put(ToSlice(storage::kMetadataKey), EncodeMetadata(converted));
  return Commit(wb, /*sync=*/true, "converting the log from format version 1");
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

size_t LevelDbLogStorage::RunHolding(Index i) const {
  auto after = std::upper_bound(run_starts_.begin(), run_starts_.end(), i);
  return static_cast<size_t>(after - run_starts_.begin()) - 1;
}

Index LevelDbLogStorage::RunEnd(size_t run) const {
  return run + 1 < run_starts_.size() ? Index(run_starts_[run + 1].value() - 1) : LastIndex();
}

absl::StatusOr<bool> LevelDbLogStorage::ReadEntries(Index lo, Index hi, uint64_t max_bytes,
                                                    uint64_t& bytes, std::vector<Entry>& out) const {
  std::unique_ptr<leveldb::Iterator> it(db_->NewIterator(VerifyingReads(/*fill_cache=*/true)));
  size_t run = RunHolding(lo);
  it->Seek(EntryKey(run_starts_[run]));
  for (Index i = lo; i < hi; ++run, it->Next()) {
    const Index start = run_starts_[run];
    if (!it->Valid() || ParseEntryKey(View(it->key())) != start) {
      if (!it->status().ok()) {
        return FromLevelDbRead(it->status(), absl::StrCat("reading entry ", i.value()));
      }
      return absl::DataLossError(Describe(absl::StrCat(
          "entry ", start.value(), " is missing from the database, though it was there at Open")));
    }
    absl::StatusOr<std::vector<Entry>> entries = DecodeEntryRun(View(it->value()));
    if (!entries.ok()) {
      return absl::DataLossError(Describe(
          absl::StrCat("entry ", start.value(), " (the first of its record) ", entries.status().message())));
    }
    if (entries->front().index != start || entries->back().index != RunEnd(run)) {
      return absl::DataLossError(Describe(absl::StrCat(
          "the record stored as entry ", start.value(), " holds entries ", entries->front().index.value(),
          " to ", entries->back().index.value(), ", not ", start.value(), " to ", RunEnd(run).value())));
    }
    for (Entry& entry : *entries) {
      if (entry.index < i) continue;
      if (entry.index >= hi) break;
      if (Term loaded = terms_[entry.index - FirstIndex()]; entry.term != loaded) {
        return absl::DataLossError(Describe(absl::StrCat("entry ", entry.index.value(), " has term ",
                                                         entry.term.value(), " on disk but ",
                                                         loaded.value(), " in memory")));
      }
      bytes += entry.ByteSize();
      if (!out.empty() && bytes > max_bytes) return false;
      out.push_back(std::move(entry));
      ++i;
    }
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

  // Validate the whole batch against the log as it will be after the
  // snapshot, before writing anything: a rejected batch changes nothing.
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
  }

  leveldb::WriteBatch wb;
  std::optional<std::deque<Index>> new_run_starts;  // unset: run_starts_ + the new run
  const bool appends = !batch.entries.empty() && batch.entries.front().index == LastIndex() + 1;
  if (batch.snapshot || (!batch.entries.empty() && !appends)) {
    // Old entries kept: [first_kept, kept_last]. An empty range when the
    // snapshot drops the whole log.
    const Index kept_last =
        batch.entries.empty() ? last : std::min(last, Index(batch.entries.front().index.value() - 1));
    absl::StatusOr<std::deque<Index>> runs = KeepOnly(first_kept, kept_last, wb);
    if (!runs.ok()) return runs.status();
    new_run_starts = *std::move(runs);
  }
  if (batch.snapshot) wb.Put(ToSlice(storage::kSnapshotMetaKey), EncodeSnapshotMeta(*batch.snapshot));
  if (!batch.entries.empty()) {
    // One record for the whole batch: one LevelDB key to insert, flush,
    // compact and delete instead of one per entry.
    wb.Put(EntryKey(batch.entries.front().index), storage::EncodeEntryRun(batch.entries));
  }
  if (batch.hard_state) wb.Put(ToSlice(storage::kHardStateKey), EncodeHardState(*batch.hard_state));

  if (absl::Status s = Commit(wb, options_.sync && batch.sync, "persist"); !s.ok()) return s;

  // Durable: now mirror it in memory.
  if (new_run_starts) run_starts_ = *std::move(new_run_starts);
  if (!batch.entries.empty()) run_starts_.push_back(batch.entries.front().index);
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

absl::StatusOr<std::deque<Index>> LevelDbLogStorage::KeepOnly(Index lo, Index hi,
                                                             leveldb::WriteBatch& wb) const {
  std::deque<Index> kept;
  for (size_t run = 0; run < run_starts_.size(); ++run) {
    const Index start = run_starts_[run];
    const Index end = RunEnd(run);
    const Index from = std::max(start, lo);
    const Index to = std::min(end, hi);
    if (from == start && to == end) {
      kept.push_back(start);
      continue;
    }
    // Dropped, or cut: the part kept is written again under its own first
    // index. Only the runs at the two ends of the kept range can be cut.
    wb.Delete(EntryKey(start));
    if (from > to) continue;
    absl::StatusOr<std::vector<Entry>> part = Entries(from, to + 1, std::numeric_limits<uint64_t>::max());
    if (!part.ok()) return part.status();
    wb.Put(EntryKey(from), storage::EncodeEntryRun(*part));
    kept.push_back(from);
  }
  return kept;
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
  absl::StatusOr<std::deque<Index>> runs = KeepOnly(meta.index + 1, LastIndex(), wb);
  if (!runs.ok()) return runs.status();
  wb.Put(ToSlice(storage::kSnapshotMetaKey), EncodeSnapshotMeta(meta));
  if (absl::Status s = Commit(wb, options_.sync, "compact"); !s.ok()) return s;
  run_starts_ = *std::move(runs);
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
