#include "raft/storage/format.h"

#include <limits>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "raft/storage/crc32c.h"

namespace quorumkv::raft::storage {
namespace {

constexpr size_t kCrcSize = 4;

void PutLe(std::string& out, uint64_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

// Reads fixed-width little-endian fields from a record body, remembering
// whether it ran past the end (one check at the end instead of one per field).
class Reader {
 public:
  explicit Reader(absl::string_view in) : in_(in) {}

  uint64_t Get(int bytes) {
    if (in_.size() < static_cast<size_t>(bytes)) {
      short_ = true;
      in_ = {};
      return 0;
    }
    uint64_t v = 0;
    for (int i = 0; i < bytes; ++i) v |= static_cast<uint64_t>(static_cast<uint8_t>(in_[i])) << (8 * i);
    in_.remove_prefix(bytes);
    return v;
  }
  uint64_t U64() { return Get(8); }
  uint32_t U32() { return static_cast<uint32_t>(Get(4)); }
  uint8_t U8() { return static_cast<uint8_t>(Get(1)); }
  // Callers check the size first.
  void Skip(size_t bytes) { in_.remove_prefix(bytes); }

  bool short_read() const { return short_; }
  absl::string_view rest() const { return in_; }

 private:
  absl::string_view in_;
  bool short_ = false;
};

std::string Frame(const std::string& body) {
  std::string out;
  out.reserve(kCrcSize + body.size());
  PutLe(out, Crc32c(body), kCrcSize);
  out += body;
  return out;
}

// The body of a framed value whose checksum matches.
absl::StatusOr<absl::string_view> Unframe(absl::string_view value) {
  if (value.size() < kCrcSize) {
    return absl::DataLossError(
        absl::StrCat("is truncated (", value.size(), " bytes, shorter than its checksum)"));
  }
  Reader crc_reader(value.substr(0, kCrcSize));
  uint32_t stored = crc_reader.U32();
  absl::string_view body = value.substr(kCrcSize);
  uint32_t computed = Crc32c(body);
  if (stored != computed) {
    return absl::DataLossError(absl::StrFormat(
        "failed its checksum (stored crc32c 0x%08x, computed 0x%08x over %d bytes)", stored,
        computed, body.size()));
  }
  return body;
}

absl::Status BadLength(absl::string_view what, size_t size) {
  return absl::DataLossError(
      absl::StrCat("has a valid checksum but an undecodable ", what, " body of ", size, " bytes"));
}

// Node ids of a configuration: a u32 count then the ids.
void PutIds(std::string& out, const std::vector<NodeId>& ids) {
  PutLe(out, ids.size(), 4);
  for (NodeId id : ids) PutLe(out, id.value(), 8);
}

bool GetIds(Reader& r, std::vector<NodeId>& ids) {
  uint32_t n = r.U32();
  // Bound the count by the bytes present before allocating anything.
  if (r.short_read() || r.rest().size() / 8 < n) return false;
  ids.reserve(n);
  for (uint32_t i = 0; i < n; ++i) ids.push_back(NodeId(r.U64()));
  return true;
}

}  // namespace

std::string EntryKey(Index index) {
  std::string key(1, kEntryPrefix);
  uint64_t v = index.value();
  for (int i = 7; i >= 0; --i) key.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
  return key;
}

std::optional<Index> ParseEntryKey(absl::string_view key) {
  if (key.size() != kEntryKeySize || key[0] != kEntryPrefix) return std::nullopt;
  uint64_t v = 0;
  for (size_t i = 1; i < kEntryKeySize; ++i) v = (v << 8) | static_cast<uint8_t>(key[i]);
  return Index(v);
}

std::string EncodeEntry(const Entry& entry) {
  std::string body;
  body.reserve(17 + entry.data.size());
  PutLe(body, entry.index.value(), 8);
  PutLe(body, entry.term.value(), 8);
  PutLe(body, static_cast<uint8_t>(entry.type), 1);
  body += entry.data;
  return Frame(body);
}

std::string EncodeEntryRun(absl::Span<const Entry> entries) {
  size_t size = 12;
  for (const Entry& e : entries) size += 13 + e.data.size();
  std::string out;
  out.reserve(kCrcSize + size);
  out.resize(kCrcSize);  // the checksum, filled in below
  PutLe(out, entries.empty() ? 0 : entries.front().index.value(), 8);
  PutLe(out, entries.size(), 4);
  for (const Entry& e : entries) {
    PutLe(out, e.term.value(), 8);
    PutLe(out, static_cast<uint8_t>(e.type), 1);
    PutLe(out, e.data.size(), 4);
    out += e.data;
  }
  // Framed in place: a run is the largest record, not worth a second copy.
  std::string crc;
  PutLe(crc, Crc32c(absl::string_view(out).substr(kCrcSize)), kCrcSize);
  out.replace(0, kCrcSize, crc);
  return out;
}

absl::StatusOr<std::vector<Entry>> DecodeEntryRun(absl::string_view value) {
  auto body = Unframe(value);
  if (!body.ok()) return body.status();
  Reader r(*body);
  const uint64_t first = r.U64();
  const uint32_t count = r.U32();
  if (r.short_read()) return BadLength("entry run", body->size());
  if (count == 0) return absl::DataLossError("has a valid checksum but holds no entries");
  // Bound the count by the bytes present (13 per entry at least) before
  // allocating, and the last index by the index space.
  if (r.rest().size() / 13 < count) return BadLength("entry run", body->size());
  if (first == 0 || first - 1 > std::numeric_limits<uint64_t>::max() - count) {
    return absl::DataLossError(absl::StrCat("has a valid checksum but an impossible first index ", first,
                                            " for ", count, " entries"));
  }
  std::vector<Entry> entries;
  entries.reserve(count);
  for (uint32_t k = 0; k < count; ++k) {
    Entry e;
    e.index = Index(first + k);
    e.term = Term(r.U64());
    const uint8_t type = r.U8();
    const uint32_t size = r.U32();
    if (r.short_read() || r.rest().size() < size) return BadLength("entry run", body->size());
    if (type > static_cast<uint8_t>(EntryType::kConfChange)) {
      return absl::DataLossError(absl::StrCat("has an unknown entry type ", type, " at entry ", first + k));
    }
    e.type = static_cast<EntryType>(type);
    e.data = std::string(r.rest().substr(0, size));
    r.Skip(size);
    entries.push_back(std::move(e));
  }
  if (!r.rest().empty()) return BadLength("entry run", body->size());
  return entries;
}

absl::StatusOr<Entry> DecodeEntry(absl::string_view value) {
  auto body = Unframe(value);
  if (!body.ok()) return body.status();
  Reader r(*body);
  Entry e;
  e.index = Index(r.U64());
  e.term = Term(r.U64());
  uint8_t type = r.U8();
  if (r.short_read()) return BadLength("entry", body->size());
  if (type > static_cast<uint8_t>(EntryType::kConfChange)) {
    return absl::DataLossError(absl::StrCat("has an unknown entry type ", type));
  }
  e.type = static_cast<EntryType>(type);
  e.data = std::string(r.rest());
  return e;
}

std::string EncodeHardState(const HardState& hs) {
  std::string body;
  PutLe(body, hs.current_term.value(), 8);
  PutLe(body, hs.voted_for.value(), 8);
  PutLe(body, hs.commit_index.value(), 8);
  return Frame(body);
}

absl::StatusOr<HardState> DecodeHardState(absl::string_view value) {
  auto body = Unframe(value);
  if (!body.ok()) return body.status();
  Reader r(*body);
  HardState hs;
  hs.current_term = Term(r.U64());
  hs.voted_for = NodeId(r.U64());
  hs.commit_index = Index(r.U64());
  if (r.short_read() || !r.rest().empty()) return BadLength("hard state", body->size());
  return hs;
}

std::string EncodeSnapshotMeta(const SnapshotMeta& meta) {
  std::string body;
  PutLe(body, meta.index.value(), 8);
  PutLe(body, meta.term.value(), 8);
  PutIds(body, meta.conf_state.voters);
  PutIds(body, meta.conf_state.learners);
  return Frame(body);
}

absl::StatusOr<SnapshotMeta> DecodeSnapshotMeta(absl::string_view value) {
  auto body = Unframe(value);
  if (!body.ok()) return body.status();
  Reader r(*body);
  SnapshotMeta meta;
  meta.index = Index(r.U64());
  meta.term = Term(r.U64());
  if (!GetIds(r, meta.conf_state.voters) || !GetIds(r, meta.conf_state.learners) ||
      r.short_read() || !r.rest().empty()) {
    return BadLength("snapshot metadata", body->size());
  }
  return meta;
}

std::string EncodeMetadata(const Metadata& metadata) {
  std::string body;
  PutLe(body, metadata.format_version, 4);
  PutLe(body, metadata.cluster_id, 8);
  PutLe(body, metadata.node_id, 8);
  return Frame(body);
}

absl::StatusOr<Metadata> DecodeMetadata(absl::string_view value) {
  auto body = Unframe(value);
  if (!body.ok()) return body.status();
  Reader r(*body);
  Metadata m;
  m.format_version = r.U32();
  // Refuse an unknown version before trying to read fields it may not have.
  if (!r.short_read() && m.format_version != kFormatVersion &&
      m.format_version != kOneEntryPerKeyFormatVersion) {
    return absl::FailedPreconditionError(absl::StrCat(
        "has on-disk format version ", m.format_version, "; this build reads only versions ",
        kOneEntryPerKeyFormatVersion, " and ", kFormatVersion));
  }
  m.cluster_id = r.U64();
  m.node_id = r.U64();
  if (r.short_read() || !r.rest().empty()) return BadLength("metadata", body->size());
  return m;
}

}  // namespace quorumkv::raft::storage
