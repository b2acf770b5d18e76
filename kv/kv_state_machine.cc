#include "kv/kv_state_machine.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <map>
#include <system_error>
#include <utility>

#include "absl/strings/str_cat.h"
#include "kv/checksum.h"
#include "kv/coding.h"
#include "leveldb/db.h"
#include "leveldb/filter_policy.h"
#include "leveldb/iterator.h"
#include "leveldb/options.h"
#include "leveldb/write_batch.h"

namespace quorumkv::kv {

namespace fs = std::filesystem;

namespace internal {

struct DbHandle {
  // Declared before `db` so that it is destroyed after it.
  std::unique_ptr<const leveldb::FilterPolicy> filter;
  std::unique_ptr<leveldb::DB> db;
};

// The meta record, key "m": everything about the store that is not a
// record of its own. Rewritten with every applied batch.
struct StoreMeta {
  static constexpr uint8_t kFormatVersion = 1;
  static constexpr size_t kEncodedBytes = 1 + 7 * 8;

  uint64_t applied_index = 0;
  uint64_t applied_term = 0;
  // The state machine's only clock: the largest proposed_at_unix_ms of any
  // applied command. Monotonic even if leaders' clocks disagree.
  uint64_t log_clock_ms = 0;
  uint64_t session_ttl_ms = 0;
  uint64_t key_count = 0;
  uint64_t user_bytes = 0;
  uint64_t session_count = 0;

  std::string Encode() const {
    std::string out;
    out.push_back(static_cast<char>(kFormatVersion));
    for (uint64_t v : {applied_index, applied_term, log_clock_ms, session_ttl_ms, key_count,
                       user_bytes, session_count}) {
      coding::PutFixed64(&out, v);
    }
    return out;
  }

  static absl::StatusOr<StoreMeta> Decode(absl::string_view bytes) {
    if (bytes.size() != kEncodedBytes || static_cast<uint8_t>(bytes[0]) != kFormatVersion) {
      return absl::DataLossError(absl::StrCat("corrupt or unsupported meta record (", bytes.size(),
                                              " bytes) in the kv store"));
    }
    StoreMeta m;
    const char* p = bytes.data() + 1;
    m.applied_index = coding::DecodeFixed64(p);
    m.applied_term = coding::DecodeFixed64(p + 8);
    m.log_clock_ms = coding::DecodeFixed64(p + 16);
    m.session_ttl_ms = coding::DecodeFixed64(p + 24);
    m.key_count = coding::DecodeFixed64(p + 32);
    m.user_bytes = coding::DecodeFixed64(p + 40);
    m.session_count = coding::DecodeFixed64(p + 48);
    return m;
  }

  SnapshotHeader ToHeader() const {
    SnapshotHeader h;
    h.applied_index = applied_index;
    h.applied_term = applied_term;
    h.log_clock_ms = log_clock_ms;
    h.session_ttl_ms = session_ttl_ms;
    h.key_count = key_count;
    h.user_bytes = user_bytes;
    h.session_count = session_count;
    return h;
  }

  static StoreMeta FromHeader(const SnapshotHeader& h) {
    StoreMeta m;
    m.applied_index = h.applied_index;
    m.applied_term = h.applied_term;
    m.log_clock_ms = h.log_clock_ms;
    m.session_ttl_ms = h.session_ttl_ms;
    m.key_count = h.key_count;
    m.user_bytes = h.user_bytes;
    m.session_count = h.session_count;
    return m;
  }
};

}  // namespace internal

using internal::DbHandle;
using internal::StoreMeta;

namespace {

constexpr absl::string_view kMetaKey = "m";
constexpr char kSessionPrefix = 's';
constexpr char kUserPrefix = 'u';
constexpr size_t kSessionKeyBytes = 1 + 8;

// A restore writes the received records in batches of about this size.
constexpr size_t kRestoreBatchBytes = 4 << 20;

constexpr const char* kStateDir = "state";
// Each SnapshotWriter receives into restore.tmp.<n> of its own, so that
// several transfers may be staged at once (the newest one wins).
constexpr const char* kRestoreTmpPrefix = "restore.tmp";
constexpr const char* kRestoreReadyDir = "restore.ready";
constexpr const char* kStateOldDir = "state.old";

leveldb::Slice ToSlice(absl::string_view s) { return leveldb::Slice(s.data(), s.size()); }
absl::string_view ToView(const leveldb::Slice& s) { return absl::string_view(s.data(), s.size()); }

absl::Status FromLevelDb(const leveldb::Status& s, absl::string_view context) {
  if (s.ok()) return absl::OkStatus();
  const std::string message = absl::StrCat(context, ": ", s.ToString());
  if (s.IsNotFound()) return absl::NotFoundError(message);
  if (s.IsCorruption()) return absl::DataLossError(message);
  if (s.IsInvalidArgument()) return absl::InvalidArgumentError(message);
  if (s.IsNotSupportedError()) return absl::UnimplementedError(message);
  return absl::InternalError(message);
}

std::string UserKey(absl::string_view key) {
  std::string k;
  k.reserve(1 + key.size());
  k.push_back(kUserPrefix);
  k.append(key.data(), key.size());
  return k;
}

std::string SessionKey(uint64_t client_id) {
  std::string k(1, kSessionPrefix);
  coding::PutBigEndian64(&k, client_id);
  return k;
}

// A client session (Raft thesis §6.3): the last sequence the client wrote
// and its result, and when (in log time) the client was last active.
// Encoded: fixed64 last_active_ms, varint sequence, encoded CommandResult.
struct SessionRecord {
  uint64_t last_active_ms = 0;
  uint64_t sequence = 0;
  CommandResult result;

  std::string Encode() const {
    std::string out;
    coding::PutFixed64(&out, last_active_ms);
    coding::PutVarint64(&out, sequence);
    out += EncodeCommandResult(result);
    return out;
  }

  static absl::StatusOr<SessionRecord> Decode(absl::string_view bytes) {
    coding::Reader r(bytes);
    SessionRecord s;
    if (!r.ReadFixed64(&s.last_active_ms) || !r.ReadVarint64(&s.sequence)) {
      return absl::DataLossError("corrupt client session record: truncated header");
    }
    absl::string_view rest;
    r.ReadBytes(r.remaining(), &rest);
    auto result = DecodeCommandResult(rest);
    if (!result.ok()) {
      return absl::DataLossError(
          absl::StrCat("corrupt client session record: ", result.status().message()));
    }
    s.result = *std::move(result);
    return s;
  }
};

// --- Files and directories -------------------------------------------------

absl::Status ErrnoError(absl::string_view what, const std::string& path, int err) {
  return absl::InternalError(absl::StrCat(what, " ", path, ": ", std::strerror(err)));
}

absl::Status FsyncPath(const std::string& path, bool directory) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | (directory ? O_DIRECTORY : 0));
  if (fd < 0) return ErrnoError("cannot open for fsync", path, errno);
  const int rc = ::fsync(fd);
  const int err = errno;
  ::close(fd);
  // An fsync error is fatal and never retried (PITFALLS "fsync and files"):
  // the page cache may already have dropped the dirty pages.
  if (rc != 0) return ErrnoError("fsync failed for", path, err);
  return absl::OkStatus();
}

absl::Status SyncDir(const std::string& path) { return FsyncPath(path, /*directory=*/true); }

// Fsyncs every regular file of a (flat, LevelDB) directory, then the
// directory itself.
absl::Status SyncTree(const std::string& path) {
  std::error_code ec;
  fs::directory_iterator it(path, ec);
  for (; !ec && it != fs::directory_iterator(); it.increment(ec)) {
    if (it->is_regular_file(ec) && !ec) {
      absl::Status s = FsyncPath(it->path().string(), /*directory=*/false);
      if (!s.ok()) return s;
    }
  }
  if (ec) return absl::InternalError(absl::StrCat("cannot list ", path, ": ", ec.message()));
  return SyncDir(path);
}

absl::StatusOr<bool> Exists(const std::string& path) {
  std::error_code ec;
  const bool exists = fs::exists(path, ec);
  if (ec) return absl::InternalError(absl::StrCat("cannot stat ", path, ": ", ec.message()));
  return exists;
}

absl::Status RemoveAll(const std::string& path) {
  std::error_code ec;
  fs::remove_all(path, ec);
  if (ec) return absl::InternalError(absl::StrCat("cannot remove ", path, ": ", ec.message()));
  return absl::OkStatus();
}

absl::Status Rename(const std::string& from, const std::string& to) {
  std::error_code ec;
  fs::rename(from, to, ec);
  if (ec) {
    return absl::InternalError(
        absl::StrCat("cannot rename ", from, " to ", to, ": ", ec.message()));
  }
  return absl::OkStatus();
}

#define QKV_RETURN_IF_ERROR(expr)              \
  do {                                         \
    absl::Status qkv_status_ = (expr);         \
    if (!qkv_status_.ok()) return qkv_status_; \
  } while (0)

// Brings <dir> to a state with at most <dir>/state in it, finishing a
// committed restore or discarding an uncommitted one (the crash cases in
// kv_state_machine.h).
absl::Status RecoverDirectories(const std::string& dir) {
  const std::string state = dir + "/" + kStateDir;
  const std::string ready = dir + "/" + kRestoreReadyDir;
  const std::string old = dir + "/" + kStateOldDir;

  std::vector<std::string> partial;
  std::error_code ec;
  fs::directory_iterator entries(dir, ec);
  for (; !ec && entries != fs::directory_iterator(); entries.increment(ec)) {
    const std::string name = entries->path().filename().string();
    if (absl::string_view(name).substr(0, std::strlen(kRestoreTmpPrefix)) == kRestoreTmpPrefix) {
      partial.push_back(entries->path().string());
    }
  }
  if (ec) return absl::InternalError(absl::StrCat("cannot list ", dir, ": ", ec.message()));
  for (const std::string& tmp : partial) QKV_RETURN_IF_ERROR(RemoveAll(tmp));
  if (!partial.empty()) QKV_RETURN_IF_ERROR(SyncDir(dir));
  absl::StatusOr<bool> ready_exists = Exists(ready);
  if (!ready_exists.ok()) return ready_exists.status();
  if (*ready_exists) {
    absl::StatusOr<bool> state_exists = Exists(state);
    if (!state_exists.ok()) return state_exists.status();
    if (*state_exists) {
      // state is the store the committed restore replaces: whatever an
      // earlier state.old holds is older still.
      QKV_RETURN_IF_ERROR(RemoveAll(old));
      QKV_RETURN_IF_ERROR(Rename(state, old));
      QKV_RETURN_IF_ERROR(SyncDir(dir));
    }
    QKV_RETURN_IF_ERROR(Rename(ready, state));
    QKV_RETURN_IF_ERROR(SyncDir(dir));
  }
  absl::StatusOr<bool> old_exists = Exists(old);
  if (!old_exists.ok()) return old_exists.status();
  if (*old_exists) {
    QKV_RETURN_IF_ERROR(RemoveAll(old));
    QKV_RETURN_IF_ERROR(SyncDir(dir));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::shared_ptr<DbHandle>> OpenLevelDb(const std::string& path,
                                                      const KvOptions& options, bool must_be_new) {
  auto handle = std::make_shared<DbHandle>();
  leveldb::Options opts;
  opts.create_if_missing = true;
  opts.error_if_exists = must_be_new;
  opts.paranoid_checks = true;
  opts.write_buffer_size = options.write_buffer_bytes;
  if (options.bloom_filter_bits_per_key > 0) {
    handle->filter.reset(leveldb::NewBloomFilterPolicy(options.bloom_filter_bits_per_key));
    opts.filter_policy = handle->filter.get();
  }
  leveldb::DB* db = nullptr;
  QKV_RETURN_IF_ERROR(FromLevelDb(leveldb::DB::Open(opts, path, &db),
                                  absl::StrCat("cannot open the kv store at ", path)));
  handle->db.reset(db);
  return handle;
}

// --- Apply ------------------------------------------------------------------

// Builds the WriteBatch of one Apply call. Reads go through overlays of
// what the batch has already written, so a command sees the effects of the
// commands before it in the same batch, exactly as if each had been applied
// alone: the resulting state never depends on how entries were batched.
class BatchApplier {
 public:
  BatchApplier(leveldb::DB* db, const StoreMeta& meta, const SessionExpiryIndex& expiry,
               KeySizeCache& key_sizes)
      : db_(db), meta_(meta), expiry_(expiry), key_sizes_(key_sizes) {}

  StoreMeta& meta() { return meta_; }
  leveldb::WriteBatch& batch() { return batch_; }

  // Once the batch is durable: brings the in-memory expiry index in line
  // with the sessions it wrote and deleted.
  void CommitExpiryIndex(SessionExpiryIndex& expiry) const {
    for (const auto& [client_id, change] : session_overlay_) {
      if (change.original_active_ms.has_value()) {
        expiry.erase({*change.original_active_ms, client_id});
      }
      if (change.current.has_value()) expiry.insert({change.current->last_active_ms, client_id});
    }
  }

  // Once the batch is written: the key size cache learns the keys it wrote.
  void CommitKeySizes() const {
    for (const auto& [key, value] : user_overlay_) key_sizes_.Remember(key, StateOf(value));
  }

  absl::StatusOr<ApplyResult> ApplyCommand(uint64_t index, absl::string_view data) {
    ApplyResult out;
    out.index = index;
    absl::StatusOr<Command> decoded = DecodeCommand(data);
    if (!decoded.ok()) {
      out.outcome = ApplyOutcome::kInvalidCommand;
      out.message = std::string(decoded.status().message());
      return out;
    }
    const Command& command = *decoded;
    meta_.log_clock_ms = std::max(meta_.log_clock_ms, command.proposed_at_unix_ms);
    const uint64_t now = meta_.log_clock_ms;

    std::optional<SessionRecord> existing;  // as stored, possibly expired
    std::optional<SessionRecord> live;      // the session in force
    if (command.has_session()) {
      absl::StatusOr<std::optional<SessionRecord>> found = GetSession(command.client_id);
      if (!found.ok()) return found.status();
      existing = *std::move(found);
      live = existing;
      // The same rule as ExpireSessions, evaluated at this command's log
      // time, so that whether a batch boundary (and its clean-up) came
      // before this command makes no difference.
      if (live.has_value() && IsExpired(*live, now)) live.reset();
      if (live.has_value()) {
        if (command.sequence == live->sequence) {
          out.outcome = ApplyOutcome::kDuplicate;
          out.result = live->result;
          SessionRecord refreshed = *live;
          refreshed.last_active_ms = now;
          PutSession(command.client_id, refreshed, existing);
          return out;
        }
        if (command.sequence < live->sequence) {
          out.outcome = ApplyOutcome::kStaleSequence;
          out.message = absl::StrCat("stale sequence ", command.sequence, " for client ",
                                     command.client_id, ": its last applied sequence is ",
                                     live->sequence, "; the write was not applied");
          return out;
        }
      }
    }

    absl::StatusOr<CommandResult> result = Execute(command);
    if (!result.ok()) return result.status();
    out.outcome = ApplyOutcome::kApplied;
    out.result = *result;
    if (command.has_session()) {
      SessionRecord record;
      record.last_active_ms = now;
      record.sequence = command.sequence;
      record.result = *std::move(result);
      PutSession(command.client_id, record, existing);
    }
    return out;
  }

  // Forgets every session expired at the current log time. Run at the end of
  // each batch; since a command treats an expired session as absent anyway
  // (ApplyCommand), the state after any applied index is the same whichever
  // batches led to it: the sessions with last_active < log_clock - ttl are
  // gone, all others are there.
  //
  // The sessions are found through the in-memory expiry index, oldest
  // first, so a batch in which nothing expires costs one comparison. (An
  // index kept in LevelDB instead would gather a tombstone per refreshed
  // session, and every scan of it would wade through them all.)
  void ExpireSessions() {
    const uint64_t ttl = meta_.session_ttl_ms;
    if (ttl == 0 || meta_.log_clock_ms <= ttl) return;
    const uint64_t cutoff = meta_.log_clock_ms - ttl;
    for (auto it = expiry_.begin(); it != expiry_.end() && it->first < cutoff; ++it) {
      const uint64_t client_id = it->second;
      // A session this batch rewrote is no longer at this position; the
      // overlay pass below decides about it.
      if (session_overlay_.count(client_id) != 0) continue;
      batch_.Delete(SessionKey(client_id));
      --meta_.session_count;
      SessionChange& change = session_overlay_[client_id];
      change.original_active_ms = it->first;
      change.current.reset();
    }
    for (auto& [client_id, change] : session_overlay_) {
      if (change.current.has_value() && change.current->last_active_ms < cutoff) {
        batch_.Delete(SessionKey(client_id));
        --meta_.session_count;
        change.current.reset();
      }
    }
  }

 private:
  bool IsExpired(const SessionRecord& s, uint64_t now) const {
    return meta_.session_ttl_ms != 0 && now > s.last_active_ms &&
           now - s.last_active_ms > meta_.session_ttl_ms;
  }

  absl::StatusOr<CommandResult> Execute(const Command& command) {
    CommandResult r;
    if (command.type == CommandType::kCompareAndSwap) {
      absl::StatusOr<std::optional<std::string>> current = GetUser(command.key);
      if (!current.ok()) return current.status();
      r.found = current->has_value();
      const bool matches = command.expected_value.has_value()
                               ? (r.found && **current == *command.expected_value)
                               : !r.found;
      if (matches) {
        PutUser(command.key, command.value, StateOf(*current));
        r.swapped = true;
        r.current_value = command.value;
      } else {
        r.current_value = std::move(*current);  // the optional: may be absent
      }
      return r;
    }
    // A put or a delete needs only whether the key exists and its value's
    // size, which the key size cache usually knows without a read.
    absl::StatusOr<KeyState> current = LookUpUser(command.key);
    if (!current.ok()) return current.status();
    r.found = current->present;
    if (command.type == CommandType::kPut) {
      PutUser(command.key, command.value, *current);
    } else if (r.found) {
      DeleteUser(command.key, *current);
    }
    return r;
  }

  static KeyState StateOf(const std::optional<std::string>& value) {
    return value.has_value() ? KeyState{true, value->size()} : KeyState{};
  }

  absl::StatusOr<KeyState> LookUpUser(const std::string& key) {
    if (auto it = user_overlay_.find(key); it != user_overlay_.end()) return StateOf(it->second);
    if (std::optional<KeyState> cached = key_sizes_.Find(key)) return *cached;
    absl::StatusOr<std::optional<std::string>> stored = ReadUser(key);
    if (!stored.ok()) return stored.status();
    return StateOf(*stored);
  }

  absl::StatusOr<std::optional<std::string>> GetUser(const std::string& key) {
    if (auto it = user_overlay_.find(key); it != user_overlay_.end()) return it->second;
    if (std::optional<KeyState> cached = key_sizes_.Find(key); cached && !cached->present) {
      return std::optional<std::string>();
    }
    return ReadUser(key);
  }

  // Reads the key from the store as it was before this batch (which is what
  // the cache mirrors, so the answer is remembered at once).
  absl::StatusOr<std::optional<std::string>> ReadUser(const std::string& key) {
    std::string value;
    const leveldb::Status s = db_->Get(leveldb::ReadOptions(), UserKey(key), &value);
    if (s.IsNotFound()) {
      key_sizes_.Remember(key, KeyState{});
      return std::optional<std::string>();
    }
    QKV_RETURN_IF_ERROR(FromLevelDb(s, "reading a key to apply a command"));
    key_sizes_.Remember(key, KeyState{true, value.size()});
    return std::optional<std::string>(std::move(value));
  }

  void PutUser(const std::string& key, const std::string& value, const KeyState& previous) {
    if (previous.present) {
      meta_.user_bytes -= key.size() + previous.value_size;
    } else {
      ++meta_.key_count;
    }
    meta_.user_bytes += key.size() + value.size();
    batch_.Put(UserKey(key), value);
    user_overlay_[key] = value;
  }

  void DeleteUser(const std::string& key, const KeyState& previous) {
    --meta_.key_count;
    meta_.user_bytes -= key.size() + previous.value_size;
    batch_.Delete(UserKey(key));
    user_overlay_[key] = std::nullopt;
  }

  absl::StatusOr<std::optional<SessionRecord>> GetSession(uint64_t client_id) {
    auto it = session_overlay_.find(client_id);
    if (it != session_overlay_.end()) return it->second.current;
    std::string value;
    const leveldb::Status s = db_->Get(leveldb::ReadOptions(), SessionKey(client_id), &value);
    if (s.IsNotFound()) return std::optional<SessionRecord>();
    QKV_RETURN_IF_ERROR(FromLevelDb(s, "reading a client session"));
    absl::StatusOr<SessionRecord> record = SessionRecord::Decode(value);
    if (!record.ok()) return record.status();
    return std::optional<SessionRecord>(*std::move(record));
  }

  // Stores `record` as the client's session, replacing `previous` (what
  // GetSession returned: the session in force or expired, or none).
  void PutSession(uint64_t client_id, const SessionRecord& record,
                  const std::optional<SessionRecord>& previous) {
    if (!previous.has_value()) ++meta_.session_count;
    batch_.Put(SessionKey(client_id), record.Encode());
    auto [it, inserted] = session_overlay_.try_emplace(client_id);
    if (inserted && previous.has_value()) {  // as stored before the batch
      it->second.original_active_ms = previous->last_active_ms;
    }
    it->second.current = record;
  }

  // A session written or deleted by this batch.
  struct SessionChange {
    // The session's last activity before the batch (its position in the
    // expiry index), if it existed.
    std::optional<uint64_t> original_active_ms;
    std::optional<SessionRecord> current;  // after the batch so far; none: deleted
  };

  leveldb::DB* const db_;
  StoreMeta meta_;
  const SessionExpiryIndex& expiry_;  // as of before the batch
  // Mirrors the store as of before the batch until CommitKeySizes.
  KeySizeCache& key_sizes_;
  leveldb::WriteBatch batch_;
  // Ordered maps: nothing in apply iterates in an unspecified order.
  std::map<std::string, std::optional<std::string>> user_overlay_;
  std::map<uint64_t, SessionChange> session_overlay_;
};

}  // namespace

// --- ApplyResult -------------------------------------------------------------

const char* ApplyOutcomeName(ApplyOutcome outcome) {
  switch (outcome) {
    case ApplyOutcome::kApplied:
      return "applied";
    case ApplyOutcome::kDuplicate:
      return "duplicate";
    case ApplyOutcome::kStaleSequence:
      return "stale sequence";
    case ApplyOutcome::kInvalidCommand:
      return "invalid command";
    case ApplyOutcome::kNotCommand:
      return "not a command";
    case ApplyOutcome::kAlreadyApplied:
      return "already applied";
  }
  return "unknown";
}

absl::Status ApplyResult::ToStatus() const {
  switch (outcome) {
    case ApplyOutcome::kApplied:
    case ApplyOutcome::kDuplicate:
    case ApplyOutcome::kNotCommand:
      return absl::OkStatus();
    case ApplyOutcome::kStaleSequence:
      return absl::FailedPreconditionError(message);
    case ApplyOutcome::kInvalidCommand:
      return absl::InvalidArgumentError(absl::StrCat("entry ", index, ": ", message));
    case ApplyOutcome::kAlreadyApplied:
      return absl::AbortedError(absl::StrCat(
          "entry ", index, " was applied before this process started; its result is unknown"));
  }
  return absl::InternalError("unknown apply outcome");
}

// --- SnapshotReader ----------------------------------------------------------

struct SnapshotReader::Impl {
  std::shared_ptr<DbHandle> db;
  const leveldb::Snapshot* snapshot = nullptr;
  std::unique_ptr<leveldb::Iterator> iter;
  size_t chunk_bytes = 0;
  uint32_t crc = 0;  // CRC32C of every image byte encoded so far
  uint64_t record_count = 0;

  ~Impl() {
    iter.reset();  // before the snapshot and the DB it reads
    if (snapshot != nullptr) db->db->ReleaseSnapshot(snapshot);
  }
};

SnapshotReader::SnapshotReader(std::unique_ptr<Impl> impl, const SnapshotHeader& header)
    : impl_(std::move(impl)), header_(header) {
  AppendSnapshotHeader(header_, &pending_);
  impl_->crc = Crc32c(pending_);
}

SnapshotReader::~SnapshotReader() = default;

absl::Status SnapshotReader::Fill(size_t want) {
  Impl& impl = *impl_;
  while (pending_.size() - pending_pos_ < want && !trailer_written_) {
    const size_t before = pending_.size();
    if (impl.iter->Valid()) {
      const absl::string_view key = ToView(impl.iter->key());
      if (key != kMetaKey) {  // the meta record travels as the header
        AppendSnapshotRecord(key, ToView(impl.iter->value()), &pending_);
        ++impl.record_count;
      }
      impl.iter->Next();
    } else {
      QKV_RETURN_IF_ERROR(FromLevelDb(impl.iter->status(), "reading the snapshot"));
      AppendSnapshotTrailerBody(impl.record_count, &pending_);
      trailer_written_ = true;
    }
    impl.crc = Crc32cExtend(impl.crc, absl::string_view(pending_).substr(before));
    if (trailer_written_) coding::PutFixed32(&pending_, impl.crc);
  }
  return absl::OkStatus();
}

absl::StatusOr<SnapshotChunk> SnapshotReader::Next() {
  if (done_) return absl::OutOfRangeError("the snapshot has been read completely");
  const size_t chunk_bytes = impl_->chunk_bytes;
  QKV_RETURN_IF_ERROR(Fill(chunk_bytes));
  size_t& pos = pending_pos_;
  const size_t n = std::min(chunk_bytes, pending_.size() - pos);
  SnapshotChunk chunk;
  chunk.offset = offset_;
  chunk.data = pending_.substr(pos, n);
  pos += n;
  offset_ += n;
  chunk.last = trailer_written_ && pos == pending_.size();
  done_ = chunk.last;
  // Drop what has been returned once it is most of the buffer, so that tiny
  // chunks do not make every call move the whole buffer.
  if (pos > pending_.size() / 2) {
    pending_.erase(0, pos);
    pos = 0;
  }
  return chunk;
}

// --- SnapshotWriter ----------------------------------------------------------

struct SnapshotWriter::Impl {
  Impl(KvStateMachine* sm, const KvOptions& options, uint64_t id)
      : sm(sm),
        options(options),
        tmp_dir(absl::StrCat(sm->dir(), "/", kRestoreTmpPrefix, ".", id)),
        parser(
            options.max_snapshot_field_bytes,
            [this](const SnapshotHeader& h) { return OnHeader(h); },
            [this](absl::string_view k, absl::string_view v) { return OnRecord(k, v); }) {}

  absl::Status OnHeader(const SnapshotHeader& header) {
    if (header.session_ttl_ms != options.session_ttl_ms) {
      return absl::InvalidArgumentError(absl::StrCat(
          "snapshot was made with session TTL ", header.session_ttl_ms, " ms but this store uses ",
          options.session_ttl_ms,
          " ms; the TTL decides what apply does and must be the same on every replica"));
    }
    const uint64_t applied = sm->applied_index();
    if (applied >= header.applied_index) {
      return absl::FailedPreconditionError(absl::StrCat(
          "the kv store is already at applied index ", applied, ", at or beyond the snapshot's ",
          header.applied_index, "; it must not be rebuilt from the snapshot"));
    }
    QKV_RETURN_IF_ERROR(RemoveAll(tmp_dir));
    absl::StatusOr<std::shared_ptr<DbHandle>> db = OpenLevelDb(tmp_dir, options, true);
    if (!db.ok()) return db.status();
    tmp_db = *std::move(db);
    return absl::OkStatus();
  }

  absl::Status OnRecord(absl::string_view key, absl::string_view value) {
    const uint64_t offset = parser.bytes_consumed();
    switch (key[0]) {
      case kUserPrefix:
        ++keys;
        user_bytes += key.size() - 1 + value.size();
        break;
      case kSessionPrefix: {
        if (key.size() != kSessionKeyBytes) {
          return absl::DataLossError(
              absl::StrCat("snapshot record at offset ", offset, " has a bad session key"));
        }
        absl::StatusOr<SessionRecord> s = SessionRecord::Decode(value);
        if (!s.ok()) {
          return absl::DataLossError(
              absl::StrCat("snapshot record at offset ", offset, ": ", s.status().message()));
        }
        ++sessions;
        break;
      }
      default:
        return absl::DataLossError(absl::StrCat("snapshot record at offset ", offset,
                                                " has a key outside the store's namespaces"));
    }
    batch.Put(ToSlice(key), ToSlice(value));
    if (batch.ApproximateSize() >= kRestoreBatchBytes) {
      QKV_RETURN_IF_ERROR(
          FromLevelDb(tmp_db->db->Write(leveldb::WriteOptions(), &batch), "writing the restore"));
      batch.Clear();
    }
    return absl::OkStatus();
  }

  // After the trailer: checks the header's counts against the records, then
  // writes the meta record with a synced write, closes the new store and
  // fsyncs its files, so that it is complete on disk before the commit.
  absl::Status Seal() {
    const SnapshotHeader& h = parser.header();
    if (keys != h.key_count || user_bytes != h.user_bytes || sessions != h.session_count) {
      return absl::DataLossError(absl::StrCat("snapshot header promises ", h.key_count, " keys, ",
                                              h.user_bytes, " bytes and ", h.session_count,
                                              " sessions, but the image holds ", keys, " keys, ",
                                              user_bytes, " bytes and ", sessions, " sessions"));
    }
    batch.Put(ToSlice(kMetaKey), StoreMeta::FromHeader(h).Encode());
    leveldb::WriteOptions sync;
    sync.sync = true;
    QKV_RETURN_IF_ERROR(FromLevelDb(tmp_db->db->Write(sync, &batch), "writing the restore"));
    batch.Clear();
    tmp_db.reset();
    return SyncTree(tmp_dir);
  }

  KvStateMachine* const sm;
  const KvOptions& options;
  const std::string tmp_dir;
  SnapshotImageParser parser;
  std::shared_ptr<DbHandle> tmp_db;
  leveldb::WriteBatch batch;
  absl::Status status;  // sticky: the first data error
  uint64_t received = 0;
  bool saw_last = false;
  bool sealed = false;
  bool installed = false;
  bool crashed = false;  // a simulated crash: leave everything as it is
  uint64_t keys = 0, user_bytes = 0, sessions = 0;
};

SnapshotWriter::SnapshotWriter(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

SnapshotWriter::~SnapshotWriter() {
  if (!impl_->installed && !impl_->crashed) {
    impl_->tmp_db.reset();
    // Best effort: a leftover restore.tmp.<n> is also removed by the next Open.
    RemoveAll(impl_->tmp_dir).IgnoreError();
  }
}

uint64_t SnapshotWriter::bytes_received() const { return impl_->received; }

std::optional<SnapshotHeader> SnapshotWriter::header() const {
  if (!impl_->parser.header_parsed()) return std::nullopt;
  return impl_->parser.header();
}

absl::Status SnapshotWriter::Write(const SnapshotChunk& chunk) {
  Impl& impl = *impl_;
  if (!impl.status.ok()) return impl.status;
  // Transport-level mistakes reject the chunk but leave the writer usable:
  // the sender may resend from bytes_received().
  if (impl.saw_last) {
    return absl::InvalidArgumentError(
        absl::StrCat("snapshot chunk at offset ", chunk.offset, " arrived after the last chunk"));
  }
  if (chunk.offset != impl.received) {
    return absl::InvalidArgumentError(absl::StrCat(
        "snapshot chunk out of order: offset ", chunk.offset, ", expected offset ", impl.received));
  }
  if (chunk.data.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("empty snapshot chunk at offset ", chunk.offset));
  }
  if (chunk.data.size() > impl.options.max_restore_chunk_bytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("snapshot chunk at offset ", chunk.offset, " has ", chunk.data.size(),
                     " bytes, over the limit of ", impl.options.max_restore_chunk_bytes));
  }
  absl::Status s = impl.parser.Feed(chunk.data);
  if (s.ok()) {
    impl.received += chunk.data.size();
    if (chunk.last) {
      impl.saw_last = true;
      if (!impl.parser.complete()) {
        s = absl::DataLossError(absl::StrCat("snapshot truncated: the last chunk ends at offset ",
                                             impl.received, " but the image is not complete"));
      }
    }
  }
  if (s.ok() && impl.parser.complete() && !impl.sealed) {
    s = impl.Seal();
    impl.sealed = s.ok();
  }
  if (!s.ok()) impl.status = s;
  return s;
}

// --- KvStateMachine ------------------------------------------------------------

KvStateMachine::KvStateMachine(std::string dir, const KvOptions& options)
    : dir_(std::move(dir)), options_(options), key_sizes_(options.key_size_cache_bytes) {}

KvStateMachine::~KvStateMachine() = default;

absl::StatusOr<std::unique_ptr<KvStateMachine>> KvStateMachine::Open(const std::string& dir,
                                                                     const KvOptions& options) {
  if (dir.empty()) return absl::InvalidArgumentError("kv store directory is empty");
  if (options.snapshot_chunk_bytes == 0 || options.max_restore_chunk_bytes == 0 ||
      options.max_snapshot_field_bytes == 0) {
    return absl::InvalidArgumentError(
        "snapshot_chunk_bytes, max_restore_chunk_bytes and max_snapshot_field_bytes must be > 0");
  }
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) {
    return absl::InternalError(
        absl::StrCat("cannot create the kv store directory ", dir, ": ", ec.message()));
  }
  QKV_RETURN_IF_ERROR(RecoverDirectories(dir));
  std::unique_ptr<KvStateMachine> sm(new KvStateMachine(dir, options));
  {
    absl::MutexLock apply_lock(&sm->apply_mu_);
    absl::WriterMutexLock lock(&sm->db_mu_);
    QKV_RETURN_IF_ERROR(sm->OpenLiveDb());
  }
  return sm;
}

absl::Status KvStateMachine::OpenLiveDb() {
  const std::string path = dir_ + "/" + kStateDir;
  absl::StatusOr<std::shared_ptr<DbHandle>> opened = OpenLevelDb(path, options_, false);
  if (!opened.ok()) return opened.status();
  std::shared_ptr<DbHandle> db = *std::move(opened);

  std::string raw;
  const leveldb::Status s = db->db->Get(leveldb::ReadOptions(), ToSlice(kMetaKey), &raw);
  StoreMeta meta;
  if (s.IsNotFound()) {
    std::unique_ptr<leveldb::Iterator> it(db->db->NewIterator(leveldb::ReadOptions()));
    it->SeekToFirst();
    if (it->Valid()) {
      return absl::DataLossError(
          absl::StrCat("the kv store at ", path, " holds data but no meta record"));
    }
    QKV_RETURN_IF_ERROR(FromLevelDb(it->status(), "reading a new kv store"));
    meta.session_ttl_ms = options_.session_ttl_ms;
    leveldb::WriteOptions sync;
    sync.sync = true;
    QKV_RETURN_IF_ERROR(
        FromLevelDb(db->db->Put(sync, ToSlice(kMetaKey), meta.Encode()), "initializing"));
  } else {
    QKV_RETURN_IF_ERROR(FromLevelDb(s, "reading the kv store's meta record"));
    absl::StatusOr<StoreMeta> decoded = StoreMeta::Decode(raw);
    if (!decoded.ok()) return decoded.status();
    meta = *decoded;
    if (meta.session_ttl_ms != options_.session_ttl_ms) {
      return absl::FailedPreconditionError(absl::StrCat(
          "the kv store at ", path, " was created with session TTL ", meta.session_ttl_ms,
          " ms but is opened with ", options_.session_ttl_ms,
          " ms; the TTL decides what apply does and must be the same on every replica"));
    }
  }
  // The expiry index lives in memory: rebuild it from the session table,
  // checking the table against the meta record on the way.
  SessionExpiryIndex expiry;
  {
    std::unique_ptr<leveldb::Iterator> it(db->db->NewIterator(leveldb::ReadOptions()));
    const std::string start(1, kSessionPrefix);
    for (it->Seek(start); it->Valid() && it->key().starts_with(start); it->Next()) {
      const absl::string_view key = ToView(it->key());
      absl::StatusOr<SessionRecord> record = SessionRecord::Decode(ToView(it->value()));
      if (key.size() != kSessionKeyBytes || !record.ok()) {
        return absl::DataLossError(
            absl::StrCat("corrupt client session record in the kv store at ", path));
      }
      expiry.insert({record->last_active_ms, coding::DecodeBigEndian64(key.data() + 1)});
    }
    QKV_RETURN_IF_ERROR(FromLevelDb(it->status(), "reading the client sessions"));
  }
  if (expiry.size() != meta.session_count) {
    return absl::DataLossError(absl::StrCat("the kv store at ", path, " holds ", expiry.size(),
                                            " client sessions but its meta record counts ",
                                            meta.session_count));
  }
  db_ = std::move(db);
  meta_ = std::make_unique<StoreMeta>(meta);
  session_expiry_ = std::move(expiry);
  key_sizes_.Clear();  // it described the store this one replaces
  broken_ = absl::OkStatus();
  return absl::OkStatus();
}

absl::Status KvStateMachine::SnapshotLiveState(std::shared_ptr<DbHandle>* db,
                                               StoreMeta* meta) const {
  absl::ReaderMutexLock lock(&db_mu_);
  if (!broken_.ok()) return broken_;
  *db = db_;
  *meta = *meta_;
  return absl::OkStatus();
}

uint64_t KvStateMachine::applied_index() const {
  absl::ReaderMutexLock lock(&db_mu_);
  return meta_ ? meta_->applied_index : 0;
}

uint64_t KvStateMachine::applied_term() const {
  absl::ReaderMutexLock lock(&db_mu_);
  return meta_ ? meta_->applied_term : 0;
}

absl::StatusOr<std::vector<ApplyResult>> KvStateMachine::Apply(
    const std::vector<ApplyItem>& items) {
  absl::MutexLock apply_lock(&apply_mu_);
  std::shared_ptr<DbHandle> db;
  StoreMeta meta;
  QKV_RETURN_IF_ERROR(SnapshotLiveState(&db, &meta));

  // Validate the whole batch first: it is applied entirely or not at all.
  uint64_t expected = meta.applied_index + 1;
  uint64_t last_term = meta.applied_term;
  for (const ApplyItem& item : items) {
    if (item.index < expected) {
      if (expected == meta.applied_index + 1) continue;  // replay of applied entries
      return absl::FailedPreconditionError(absl::StrCat(
          "apply batch is not in log order: entry ", item.index, " follows entry ", expected - 1));
    }
    if (item.index != expected) {
      return absl::FailedPreconditionError(
          absl::StrCat("apply batch has a gap: entry ", item.index, " where entry ", expected,
                       " was expected (applied index ", meta.applied_index, ")"));
    }
    if (item.term < last_term) {
      return absl::FailedPreconditionError(absl::StrCat("entry ", item.index, " has term ",
                                                        item.term, ", lower than the term ",
                                                        last_term, " of the entry before it"));
    }
    last_term = item.term;
    ++expected;
  }

  std::vector<ApplyResult> results;
  results.reserve(items.size());
  BatchApplier applier(db->db.get(), meta, session_expiry_, key_sizes_);
  bool any = false;
  for (const ApplyItem& item : items) {
    if (item.index <= meta.applied_index) {
      ApplyResult r;
      r.index = item.index;
      r.outcome = ApplyOutcome::kAlreadyApplied;
      results.push_back(std::move(r));
      continue;
    }
    any = true;
    if (item.type == ApplyItemType::kCommand) {
      absl::StatusOr<ApplyResult> r = applier.ApplyCommand(item.index, item.data);
      if (!r.ok()) return r.status();
      results.push_back(*std::move(r));
    } else {
      ApplyResult r;
      r.index = item.index;
      r.outcome = ApplyOutcome::kNotCommand;
      results.push_back(std::move(r));
    }
    applier.meta().applied_index = item.index;
    applier.meta().applied_term = item.term;
  }
  if (!any) return results;

  applier.ExpireSessions();
  applier.batch().Put(ToSlice(kMetaKey), applier.meta().Encode());
  leveldb::WriteOptions write_options;
  write_options.sync = options_.sync_writes;
  QKV_RETURN_IF_ERROR(
      FromLevelDb(db->db->Write(write_options, &applier.batch()), "writing applied entries"));
  applier.CommitExpiryIndex(session_expiry_);
  applier.CommitKeySizes();
  absl::WriterMutexLock lock(&db_mu_);
  *meta_ = applier.meta();
  return results;
}

absl::StatusOr<std::optional<std::string>> KvStateMachine::Get(absl::string_view key) const {
  absl::ReaderMutexLock lock(&db_mu_);
  if (!broken_.ok()) return broken_;
  std::string value;
  const leveldb::Status s = db_->db->Get(leveldb::ReadOptions(), UserKey(key), &value);
  if (s.IsNotFound()) return std::optional<std::string>();
  QKV_RETURN_IF_ERROR(FromLevelDb(s, "reading a key"));
  return std::optional<std::string>(std::move(value));
}

absl::StatusOr<KvStats> KvStateMachine::Stats() const {
  absl::ReaderMutexLock lock(&db_mu_);
  if (!broken_.ok()) return broken_;
  KvStats stats;
  stats.applied_index = meta_->applied_index;
  stats.applied_term = meta_->applied_term;
  stats.key_count = meta_->key_count;
  stats.user_bytes = meta_->user_bytes;
  stats.session_count = meta_->session_count;
  stats.log_clock_ms = meta_->log_clock_ms;
  // Every key sorts before "v" (the namespaces are "m" to "u").
  const leveldb::Range all("", "v");
  uint64_t size = 0;
  db_->db->GetApproximateSizes(&all, 1, &size);
  stats.approximate_disk_bytes = size;
  return stats;
}

absl::StatusOr<StateDigest> KvStateMachine::StateChecksum() const {
  absl::ReaderMutexLock lock(&db_mu_);
  if (!broken_.ok()) return broken_;
  leveldb::DB* db = db_->db.get();
  const leveldb::Snapshot* snapshot = db->GetSnapshot();
  leveldb::ReadOptions read_options;
  read_options.snapshot = snapshot;
  read_options.fill_cache = false;
  absl::Status status;
  Fnv1a64 hash;
  StateDigest digest;
  {
    std::unique_ptr<leveldb::Iterator> it(db->NewIterator(read_options));
    std::string framing;
    std::optional<StoreMeta> meta;
    for (it->SeekToFirst(); it->Valid(); it->Next()) {
      const absl::string_view key = ToView(it->key());
      const absl::string_view value = ToView(it->value());
      if (key == kMetaKey) {
        absl::StatusOr<StoreMeta> m = StoreMeta::Decode(value);
        if (!m.ok()) {
          status = m.status();
          break;
        }
        meta = *m;
        continue;
      }
      // Length-prefixed, so ("ab", "c") and ("a", "bc") hash differently.
      framing.clear();
      coding::PutVarint64(&framing, key.size());
      hash.Update(framing);
      hash.Update(key);
      framing.clear();
      coding::PutVarint64(&framing, value.size());
      hash.Update(framing);
      hash.Update(value);
    }
    if (status.ok()) status = FromLevelDb(it->status(), "computing the state checksum");
    if (status.ok() && !meta.has_value()) {
      status = absl::DataLossError("the kv store has no meta record");
    }
    if (status.ok()) {
      std::string tail;
      coding::PutFixed64(&tail, meta->applied_index);
      coding::PutFixed64(&tail, meta->applied_term);
      coding::PutFixed64(&tail, meta->log_clock_ms);
      hash.Update(tail);
      digest.applied_index = meta->applied_index;
      digest.applied_term = meta->applied_term;
      digest.checksum = hash.value();
    }
  }
  db->ReleaseSnapshot(snapshot);
  if (!status.ok()) return status;
  return digest;
}

absl::StatusOr<std::unique_ptr<SnapshotReader>> KvStateMachine::CreateSnapshot(size_t chunk_bytes) {
  absl::MutexLock apply_lock(&apply_mu_);
  std::shared_ptr<DbHandle> db;
  StoreMeta meta;
  QKV_RETURN_IF_ERROR(SnapshotLiveState(&db, &meta));
  if (!options_.sync_writes) {
    // The caller may compact the Raft log up to this snapshot's index: the
    // store must not lose that state in a crash. Rewriting the meta record
    // with sync makes every earlier write durable too (one LevelDB log).
    leveldb::WriteOptions sync;
    sync.sync = true;
    QKV_RETURN_IF_ERROR(FromLevelDb(db->db->Put(sync, ToSlice(kMetaKey), meta.Encode()),
                                    "syncing the kv store before a snapshot"));
  }
  auto impl = std::make_unique<SnapshotReader::Impl>();
  impl->db = db;
  impl->chunk_bytes = chunk_bytes == 0 ? options_.snapshot_chunk_bytes : chunk_bytes;
  impl->snapshot = db->db->GetSnapshot();
  leveldb::ReadOptions read_options;
  read_options.snapshot = impl->snapshot;
  read_options.fill_cache = false;
  // apply_mu_ is held, so the snapshot is exactly at `meta`; read it back
  // anyway, from the snapshot itself, to be sure the header matches the data.
  std::string raw;
  QKV_RETURN_IF_ERROR(FromLevelDb(db->db->Get(read_options, ToSlice(kMetaKey), &raw),
                                  "reading the meta record for a snapshot"));
  absl::StatusOr<StoreMeta> snap_meta = StoreMeta::Decode(raw);
  if (!snap_meta.ok()) return snap_meta.status();
  impl->iter.reset(db->db->NewIterator(read_options));
  impl->iter->SeekToFirst();
  return std::unique_ptr<SnapshotReader>(
      new SnapshotReader(std::move(impl), snap_meta->ToHeader()));
}

absl::StatusOr<std::unique_ptr<SnapshotWriter>> KvStateMachine::BeginRestore() {
  {
    absl::ReaderMutexLock lock(&db_mu_);
    if (!broken_.ok()) return broken_;
  }
  const uint64_t id = next_restore_id_.fetch_add(1);
  return std::unique_ptr<SnapshotWriter>(
      new SnapshotWriter(std::make_unique<SnapshotWriter::Impl>(this, options_, id)));
}

absl::StatusOr<SnapshotHeader> KvStateMachine::FinishRestore(
    std::unique_ptr<SnapshotWriter> writer) {
  if (writer == nullptr) return absl::InvalidArgumentError("FinishRestore without a writer");
  if (writer->impl_->sm != this) {
    return absl::InvalidArgumentError("the snapshot writer belongs to another state machine");
  }
  SnapshotWriter::Impl& impl = *writer->impl_;
  if (!impl.status.ok()) return impl.status;
  if (!impl.sealed) {
    return absl::DataLossError(absl::StrCat("snapshot incomplete: received ", impl.received,
                                            " bytes and the image has not ended (truncated "
                                            "transfer?)"));
  }
  absl::MutexLock apply_lock(&apply_mu_);
  return InstallRestored(impl);
}

absl::StatusOr<SnapshotHeader> KvStateMachine::InstallRestored(SnapshotWriter::Impl& writer) {
  const SnapshotHeader header = writer.parser.header();
  const std::string state = dir_ + "/" + kStateDir;
  const std::string ready = dir_ + "/" + kRestoreReadyDir;
  const std::string old = dir_ + "/" + kStateOldDir;

  absl::WriterMutexLock lock(&db_mu_);
  if (!broken_.ok()) return broken_;
  if (meta_->applied_index >= header.applied_index) {
    return absl::FailedPreconditionError(
        absl::StrCat("the kv store reached applied index ", meta_->applied_index,
                     " while the snapshot at index ", header.applied_index,
                     " was arriving; it must not be rebuilt from the snapshot"));
  }
  if (db_.use_count() > 1) {
    return absl::UnavailableError(
        "a snapshot reader of the live kv store is still open; destroy it and finish the "
        "restore again");
  }
  // Steps of the swap. A simulated crash (the test hook) stops right there
  // and cleans nothing up; a real error after the commit point leaves the
  // state machine unusable until Open finishes the job.
  auto step = [&](RestoreStep at) -> absl::Status {
    if (!options_.restore_crash_hook) return absl::OkStatus();
    absl::Status hook = options_.restore_crash_hook(at);
    if (!hook.ok()) writer.crashed = true;
    return hook;
  };
  QKV_RETURN_IF_ERROR(RemoveAll(old));
  absl::Status s = step(RestoreStep::kBeforeCommit);
  if (!s.ok()) return MarkBroken(writer, s);

  // The commit point.
  QKV_RETURN_IF_ERROR(Rename(writer.tmp_dir, ready));
  writer.installed = true;  // restore.tmp is gone: nothing for the writer to clean
  s = SyncDir(dir_);
  if (s.ok()) s = step(RestoreStep::kAfterCommit);
  if (s.ok()) {
    db_.reset();  // closes the old store: use_count() was 1
    meta_.reset();
    s = Rename(state, old);
  }
  if (s.ok()) s = SyncDir(dir_);
  if (s.ok()) s = step(RestoreStep::kAfterOldMoved);
  if (s.ok()) s = Rename(ready, state);
  if (s.ok()) s = SyncDir(dir_);
  if (s.ok()) s = step(RestoreStep::kAfterNewInPlace);
  if (s.ok()) s = RemoveAll(old);
  if (s.ok()) s = SyncDir(dir_);
  if (s.ok()) s = OpenLiveDb();
  if (!s.ok()) return MarkBroken(writer, s);
  return header;
}

absl::Status KvStateMachine::MarkBroken(const SnapshotWriter::Impl& writer, absl::Status s) {
  if (writer.crashed) {
    broken_ = absl::InternalError(absl::StrCat("the kv store stopped in the middle of a restore (",
                                               s.message(), "); reopen it"));
  } else {
    broken_ =
        absl::InternalError(absl::StrCat("a committed snapshot restore could not be completed (",
                                         s.message(), "); reopening the kv store finishes it"));
  }
  return s;
}

absl::StatusOr<SnapshotHeader> KvStateMachine::RestoreFromChunks(
    const std::vector<SnapshotChunk>& chunks) {
  absl::StatusOr<std::unique_ptr<SnapshotWriter>> writer = BeginRestore();
  if (!writer.ok()) return writer.status();
  for (const SnapshotChunk& chunk : chunks) {
    QKV_RETURN_IF_ERROR((*writer)->Write(chunk));
  }
  return FinishRestore(*std::move(writer));
}

}  // namespace quorumkv::kv
