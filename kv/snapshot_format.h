// The byte image of a KvStateMachine snapshot, as it travels between nodes
// in chunks (InstallSnapshot) — independent of how it is cut into chunks.
//
//   header (68 bytes):
//     "QKVSNAP"          7 bytes magic
//     version            1 byte (kSnapshotFormatVersion = 1)
//     applied_index      fixed64 (little-endian)
//     applied_term       fixed64
//     log_clock_ms       fixed64   the state machine's clock (max proposed_at)
//     session_ttl_ms     fixed64   must match the receiver's configuration
//     key_count          fixed64   user keys in the image
//     user_bytes         fixed64   sum of user key and value sizes
//     session_count      fixed64   client sessions in the image
//     header_crc         fixed32   CRC32C of the 64 bytes above
//   records, in strictly increasing bytewise key order:
//     varint key length (>= 1), key bytes, varint value length, value bytes
//   trailer:
//     0x00               end marker (a key length of zero)
//     record_count       fixed64
//     image_crc          fixed32   CRC32C of every byte before it
//
// The header has its own checksum so that the receiver may act on it (e.g.
// refuse a snapshot it does not need) before the whole image has arrived.
// Keys are the state machine's raw LevelDB keys; what they mean is checked
// by KvStateMachine, not here.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace quorumkv::kv {

inline constexpr uint8_t kSnapshotFormatVersion = 1;
inline constexpr size_t kSnapshotHeaderBytes = 68;
// End marker + record count + CRC.
inline constexpr size_t kSnapshotTrailerBytes = 1 + 8 + 4;

struct SnapshotHeader {
  uint64_t applied_index = 0;
  uint64_t applied_term = 0;
  uint64_t log_clock_ms = 0;
  uint64_t session_ttl_ms = 0;
  uint64_t key_count = 0;
  uint64_t user_bytes = 0;
  uint64_t session_count = 0;
  bool operator==(const SnapshotHeader&) const = default;
};

void AppendSnapshotHeader(const SnapshotHeader& header, std::string* out);
void AppendSnapshotRecord(absl::string_view key, absl::string_view value, std::string* out);
// The end marker and record count: every byte the image CRC covers after
// the records. The 4-byte CRC then follows (coding::PutFixed32).
void AppendSnapshotTrailerBody(uint64_t record_count, std::string* out);

// Parses an image incrementally, from bytes delivered in pieces of any size
// (one byte at a time works). Validates the magic, version, header CRC, key
// order, field sizes, record count and image CRC; any violation is a
// DATA_LOSS status naming the byte offset, and the parser then refuses all
// further input.
class SnapshotImageParser {
 public:
  // Called once, as soon as the header has been read and verified. A non-OK
  // status stops the parse and is returned from Feed.
  using HeaderSink = std::function<absl::Status(const SnapshotHeader&)>;
  // Called for each record, in order.
  using RecordSink = std::function<absl::Status(absl::string_view key, absl::string_view value)>;

  // max_field_bytes bounds a key or value length, so a corrupted length
  // cannot make the parser buffer without limit.
  SnapshotImageParser(uint64_t max_field_bytes, HeaderSink on_header, RecordSink on_record);

  absl::Status Feed(absl::string_view bytes);

  bool header_parsed() const { return state_ != State::kHeader; }
  // The whole image, through the trailer, has been read and verified.
  bool complete() const { return state_ == State::kComplete; }
  const SnapshotHeader& header() const { return header_; }
  uint64_t bytes_consumed() const { return consumed_; }
  uint64_t record_count() const { return record_count_; }

 private:
  enum class State { kHeader, kRecords, kTrailer, kComplete, kFailed };

  absl::Status Parse();
  absl::Status Fail(absl::Status status);
  // Drops the first n bytes of buffer_ (already parsed) and feeds the image
  // CRC with them.
  void Consume(size_t n, bool covered_by_crc = true);

  const uint64_t max_field_bytes_;
  HeaderSink on_header_;
  RecordSink on_record_;
  State state_ = State::kHeader;
  absl::Status failure_;
  std::string buffer_;  // received, not yet parsed bytes
  size_t buffer_pos_ = 0;
  uint64_t consumed_ = 0;  // image offset of buffer_[buffer_pos_]
  uint32_t crc_ = 0;       // CRC32C of the image bytes consumed so far
  SnapshotHeader header_;
  uint64_t record_count_ = 0;
  std::string last_key_;
};

}  // namespace quorumkv::kv
