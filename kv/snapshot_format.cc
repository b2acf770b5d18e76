#include "kv/snapshot_format.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "kv/checksum.h"
#include "kv/coding.h"

namespace quorumkv::kv {
namespace {

constexpr absl::string_view kMagic("QKVSNAP", 7);

}  // namespace

void AppendSnapshotHeader(const SnapshotHeader& header, std::string* out) {
  const size_t start = out->size();
  out->append(kMagic.data(), kMagic.size());
  out->push_back(static_cast<char>(kSnapshotFormatVersion));
  coding::PutFixed64(out, header.applied_index);
  coding::PutFixed64(out, header.applied_term);
  coding::PutFixed64(out, header.log_clock_ms);
  coding::PutFixed64(out, header.session_ttl_ms);
  coding::PutFixed64(out, header.key_count);
  coding::PutFixed64(out, header.user_bytes);
  coding::PutFixed64(out, header.session_count);
  coding::PutFixed32(out, Crc32c(absl::string_view(*out).substr(start)));
}

void AppendSnapshotRecord(absl::string_view key, absl::string_view value, std::string* out) {
  coding::PutLengthPrefixed(out, key);
  coding::PutLengthPrefixed(out, value);
}

void AppendSnapshotTrailerBody(uint64_t record_count, std::string* out) {
  out->push_back('\0');
  coding::PutFixed64(out, record_count);
}

SnapshotImageParser::SnapshotImageParser(uint64_t max_field_bytes, HeaderSink on_header,
                                         RecordSink on_record)
    : max_field_bytes_(max_field_bytes),
      on_header_(std::move(on_header)),
      on_record_(std::move(on_record)) {}

absl::Status SnapshotImageParser::Fail(absl::Status status) {
  state_ = State::kFailed;
  failure_ = status;
  buffer_.clear();
  buffer_pos_ = 0;
  return status;
}

void SnapshotImageParser::Consume(size_t n, bool covered_by_crc) {
  if (covered_by_crc) crc_ = Crc32cExtend(crc_, absl::string_view(buffer_).substr(buffer_pos_, n));
  buffer_pos_ += n;
  consumed_ += n;
}

absl::Status SnapshotImageParser::Feed(absl::string_view bytes) {
  if (state_ == State::kFailed) return failure_;
  if (bytes.empty()) return absl::OkStatus();
  if (state_ == State::kComplete) {
    return Fail(absl::DataLossError(absl::StrCat("snapshot image has ", bytes.size(),
                                                 " bytes after its end at offset ", consumed_)));
  }
  buffer_.append(bytes.data(), bytes.size());
  absl::Status status = Parse();
  if (!status.ok()) return Fail(std::move(status));
  // Keep only the unparsed tail (at most one incomplete record).
  buffer_.erase(0, buffer_pos_);
  buffer_pos_ = 0;
  if (state_ == State::kComplete && !buffer_.empty()) {
    return Fail(absl::DataLossError(absl::StrCat("snapshot image has ", buffer_.size(),
                                                 " bytes after its end at offset ", consumed_)));
  }
  return absl::OkStatus();
}

absl::Status SnapshotImageParser::Parse() {
  while (true) {
    const absl::string_view view = absl::string_view(buffer_).substr(buffer_pos_);
    switch (state_) {
      case State::kHeader: {
        if (view.size() < kSnapshotHeaderBytes) return absl::OkStatus();
        if (view.substr(0, kMagic.size()) != kMagic) {
          return absl::DataLossError("not a quorumkv snapshot image: bad magic at offset 0");
        }
        const uint8_t version = static_cast<uint8_t>(view[kMagic.size()]);
        if (version != kSnapshotFormatVersion) {
          return absl::DataLossError(absl::StrCat("unsupported snapshot format version ", version,
                                                  " (this build reads version ",
                                                  kSnapshotFormatVersion, ")"));
        }
        const uint32_t expected_crc = coding::DecodeFixed32(view.data() + 64);
        const uint32_t actual_crc = Crc32c(view.substr(0, 64));
        if (expected_crc != actual_crc) {
          return absl::DataLossError(absl::StrCat("snapshot header checksum mismatch: computed ",
                                                  absl::Hex(actual_crc), ", header says ",
                                                  absl::Hex(expected_crc)));
        }
        const char* p = view.data() + 8;
        header_.applied_index = coding::DecodeFixed64(p);
        header_.applied_term = coding::DecodeFixed64(p + 8);
        header_.log_clock_ms = coding::DecodeFixed64(p + 16);
        header_.session_ttl_ms = coding::DecodeFixed64(p + 24);
        header_.key_count = coding::DecodeFixed64(p + 32);
        header_.user_bytes = coding::DecodeFixed64(p + 40);
        header_.session_count = coding::DecodeFixed64(p + 48);
        Consume(kSnapshotHeaderBytes);
        state_ = State::kRecords;
        if (on_header_) {
          absl::Status status = on_header_(header_);
          if (!status.ok()) return status;
        }
        break;
      }
      case State::kRecords: {
        uint64_t key_len = 0;
        size_t key_len_bytes = 0;
        switch (coding::ParseVarint64(view, &key_len, &key_len_bytes)) {
          case coding::VarintParse::kIncomplete:
            return absl::OkStatus();
          case coding::VarintParse::kMalformed:
            return absl::DataLossError(
                absl::StrCat("malformed key length varint at snapshot offset ", consumed_));
          case coding::VarintParse::kOk:
            break;
        }
        if (key_len == 0) {  // the end marker: the trailer starts here
          state_ = State::kTrailer;
          break;
        }
        if (key_len > max_field_bytes_) {
          return absl::DataLossError(absl::StrCat("snapshot record at offset ", consumed_,
                                                  " has a key of ", key_len,
                                                  " bytes, over the limit of ", max_field_bytes_));
        }
        const size_t value_at = key_len_bytes + static_cast<size_t>(key_len);
        if (view.size() < value_at) return absl::OkStatus();
        uint64_t value_len = 0;
        size_t value_len_bytes = 0;
        switch (coding::ParseVarint64(view.substr(value_at), &value_len, &value_len_bytes)) {
          case coding::VarintParse::kIncomplete:
            return absl::OkStatus();
          case coding::VarintParse::kMalformed:
            return absl::DataLossError(absl::StrCat(
                "malformed value length varint at snapshot offset ", consumed_ + value_at));
          case coding::VarintParse::kOk:
            break;
        }
        if (value_len > max_field_bytes_) {
          return absl::DataLossError(absl::StrCat("snapshot record at offset ", consumed_,
                                                  " has a value of ", value_len,
                                                  " bytes, over the limit of ", max_field_bytes_));
        }
        const size_t total = value_at + value_len_bytes + static_cast<size_t>(value_len);
        if (view.size() < total) return absl::OkStatus();
        const absl::string_view key = view.substr(key_len_bytes, key_len);
        const absl::string_view value = view.substr(value_at + value_len_bytes, value_len);
        if (record_count_ > 0 && key <= absl::string_view(last_key_)) {
          return absl::DataLossError(
              absl::StrCat("snapshot record at offset ", consumed_, " is out of key order"));
        }
        if (on_record_) {
          absl::Status status = on_record_(key, value);
          if (!status.ok()) return status;
        }
        last_key_.assign(key.data(), key.size());
        ++record_count_;
        Consume(total);
        break;
      }
      case State::kTrailer: {
        if (view.size() < kSnapshotTrailerBytes) return absl::OkStatus();
        const uint64_t count = coding::DecodeFixed64(view.data() + 1);
        const uint32_t expected_crc = coding::DecodeFixed32(view.data() + 9);
        Consume(9);
        Consume(4, /*covered_by_crc=*/false);
        if (expected_crc != crc_) {
          return absl::DataLossError(absl::StrCat("snapshot image checksum mismatch: computed ",
                                                  absl::Hex(crc_), ", trailer says ",
                                                  absl::Hex(expected_crc)));
        }
        if (count != record_count_) {
          return absl::DataLossError(absl::StrCat("snapshot trailer says ", count,
                                                  " records but the image holds ", record_count_));
        }
        state_ = State::kComplete;
        return absl::OkStatus();
      }
      case State::kComplete:
      case State::kFailed:
        return absl::OkStatus();
    }
  }
}

}  // namespace quorumkv::kv
