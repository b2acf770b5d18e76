// Keys and record encodings of the LevelDB Raft log. The layout, and why it
// is crash-safe, is described in the design note of leveldb_log_storage.h;
// this file is its executable form, shared with the tests (which write
// corrupted records with these functions to prove that they are caught).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "raft/types.h"

namespace quorumkv::raft::storage {

// Version of this layout, stored in the metadata record. Version 1 stored
// one entry per key; Open rewrites such a log as runs (version 2) in one
// synced batch. Any other version is refused at Open, never guessed at.
inline constexpr uint32_t kFormatVersion = 2;
inline constexpr uint32_t kOneEntryPerKeyFormatVersion = 1;

// Keys. Single-byte keys for the three singleton records; entry records are
// the prefix followed by the big-endian index of their first entry, so
// LevelDB's bytewise order is index order and the log is one contiguous key
// range.
inline constexpr char kEntryPrefix = 'e';
inline constexpr absl::string_view kHardStateKey = "h";
inline constexpr absl::string_view kMetadataKey = "m";
inline constexpr absl::string_view kSnapshotMetaKey = "s";
inline constexpr size_t kEntryKeySize = 9;

std::string EntryKey(Index index);
// The index of an entry key; nullopt for any other key.
std::optional<Index> ParseEntryKey(absl::string_view key);

// The metadata record: what this directory is.
struct Metadata {
  uint32_t format_version = kFormatVersion;
  uint64_t cluster_id = 0;  // 0 until the server sets the identity
  uint64_t node_id = 0;     // 0 until the server sets the identity
  bool operator==(const Metadata&) const = default;
};

// Every value is framed as crc32c(body) (4 bytes, little-endian) followed by
// the body; fixed-width integers in the body are little-endian.
//   entry run:     first index u64, count u32 (>= 1), then per entry
//                  term u64, type u8, data size u32, data
//   entry (format version 1 only, read to convert it):
//                  index u64, term u64, type u8, data (the rest)
//   hard state:    current_term u64, voted_for u64, commit_index u64
//   snapshot meta: index u64, term u64, voter count u32, voters u64...,
//                  learner count u32, learners u64...
//   metadata:      format_version u32, cluster_id u64, node_id u64
// A run: entries with consecutive indexes (at least one), written by one
// Persist. The run is stored under EntryKey(its first index).
std::string EncodeEntryRun(absl::Span<const Entry> entries);
std::string EncodeEntry(const Entry& entry);
std::string EncodeHardState(const HardState& hs);
std::string EncodeSnapshotMeta(const SnapshotMeta& meta);
std::string EncodeMetadata(const Metadata& metadata);

// Decoders verify the checksum first, then the exact length and every field.
// Errors are DATA_LOSS with a message fragment that reads after the record's
// name ("entry 12 " + message), e.g. "failed its checksum (...)".
absl::StatusOr<std::vector<Entry>> DecodeEntryRun(absl::string_view value);
absl::StatusOr<Entry> DecodeEntry(absl::string_view value);
absl::StatusOr<HardState> DecodeHardState(absl::string_view value);
absl::StatusOr<SnapshotMeta> DecodeSnapshotMeta(absl::string_view value);
absl::StatusOr<Metadata> DecodeMetadata(absl::string_view value);

}  // namespace quorumkv::raft::storage
