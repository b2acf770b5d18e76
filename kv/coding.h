// Byte encodings shared by kv/: little-endian fixed-width integers for
// values, big-endian integers inside LevelDB keys (so that bytewise key order
// is numeric order), and LEB128 varints. Internal to kv/.
//
// Decoding is bounds-checked everywhere: these functions parse bytes that
// come from the network (snapshot chunks) and from the Raft log (commands),
// so a short or malformed input yields `false`, never a read past the end.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/strings/string_view.h"

namespace quorumkv::kv::coding {

// The longest LEB128 encoding of a uint64_t.
inline constexpr size_t kMaxVarint64Bytes = 10;

inline void PutFixed32(std::string* dst, uint32_t v) {
  for (int i = 0; i < 4; ++i) dst->push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

inline void PutFixed64(std::string* dst, uint64_t v) {
  for (int i = 0; i < 8; ++i) dst->push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

inline void PutBigEndian64(std::string* dst, uint64_t v) {
  for (int i = 7; i >= 0; --i) dst->push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

inline void PutVarint64(std::string* dst, uint64_t v) {
  while (v >= 0x80) {
    dst->push_back(static_cast<char>((v & 0x7f) | 0x80));
    v >>= 7;
  }
  dst->push_back(static_cast<char>(v));
}

inline size_t VarintLength(uint64_t v) {
  size_t n = 1;
  while (v >= 0x80) {
    v >>= 7;
    ++n;
  }
  return n;
}

inline void PutLengthPrefixed(std::string* dst, absl::string_view s) {
  PutVarint64(dst, s.size());
  dst->append(s.data(), s.size());
}

inline uint32_t DecodeFixed32(const char* p) {
  uint32_t v = 0;
  for (int i = 0; i < 4; ++i) v |= static_cast<uint32_t>(static_cast<uint8_t>(p[i])) << (8 * i);
  return v;
}

inline uint64_t DecodeFixed64(const char* p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v |= static_cast<uint64_t>(static_cast<uint8_t>(p[i])) << (8 * i);
  return v;
}

inline uint64_t DecodeBigEndian64(const char* p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v = (v << 8) | static_cast<uint8_t>(p[i]);
  return v;
}

// Outcome of decoding a varint from a prefix of `data`.
enum class VarintParse { kOk, kIncomplete, kMalformed };

// Decodes a canonical LEB128 varint at the start of `data`. kIncomplete when
// `data` ends inside the varint (more bytes may complete it); kMalformed when
// it is longer than 10 bytes, overflows 64 bits, or is not the shortest
// encoding (a trailing 0x00 group). Rejecting non-canonical forms makes every
// decodable input re-encode to the same bytes.
inline VarintParse ParseVarint64(absl::string_view data, uint64_t* value, size_t* length) {
  uint64_t result = 0;
  for (size_t i = 0; i < kMaxVarint64Bytes; ++i) {
    if (i >= data.size()) return VarintParse::kIncomplete;
    const uint8_t byte = static_cast<uint8_t>(data[i]);
    if (i == kMaxVarint64Bytes - 1 && byte > 1) return VarintParse::kMalformed;
    result |= static_cast<uint64_t>(byte & 0x7f) << (7 * i);
    if ((byte & 0x80) == 0) {
      if (i > 0 && byte == 0) return VarintParse::kMalformed;
      *value = result;
      *length = i + 1;
      return VarintParse::kOk;
    }
  }
  return VarintParse::kMalformed;
}

// A bounds-checked cursor over a complete buffer. Each Read* consumes its
// field and returns true, or returns false and consumes nothing.
class Reader {
 public:
  explicit Reader(absl::string_view data) : data_(data) {}

  size_t remaining() const { return data_.size() - pos_; }
  size_t position() const { return pos_; }
  bool empty() const { return remaining() == 0; }

  bool ReadByte(uint8_t* v) {
    if (remaining() < 1) return false;
    *v = static_cast<uint8_t>(data_[pos_++]);
    return true;
  }
  bool ReadFixed32(uint32_t* v) {
    if (remaining() < 4) return false;
    *v = DecodeFixed32(data_.data() + pos_);
    pos_ += 4;
    return true;
  }
  bool ReadFixed64(uint64_t* v) {
    if (remaining() < 8) return false;
    *v = DecodeFixed64(data_.data() + pos_);
    pos_ += 8;
    return true;
  }
  bool ReadBigEndian64(uint64_t* v) {
    if (remaining() < 8) return false;
    *v = DecodeBigEndian64(data_.data() + pos_);
    pos_ += 8;
    return true;
  }
  bool ReadVarint64(uint64_t* v) {
    size_t len = 0;
    if (ParseVarint64(data_.substr(pos_), v, &len) != VarintParse::kOk) return false;
    pos_ += len;
    return true;
  }
  bool ReadBytes(size_t n, absl::string_view* out) {
    if (remaining() < n) return false;
    *out = data_.substr(pos_, n);
    pos_ += n;
    return true;
  }
  bool ReadLengthPrefixed(absl::string_view* out) {
    const size_t saved = pos_;
    uint64_t n = 0;
    if (!ReadVarint64(&n) || n > remaining()) {
      pos_ = saved;
      return false;
    }
    return ReadBytes(static_cast<size_t>(n), out);
  }

 private:
  absl::string_view data_;
  size_t pos_ = 0;
};

}  // namespace quorumkv::kv::coding
