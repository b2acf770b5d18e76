// Checksums used by kv/: CRC32C (Castagnoli) for snapshot images, and a
// 64-bit FNV-1a for the cross-replica state digest.
//
// Our own small implementations: kv/ must not depend on raft/storage/, and
// abseil 20220623 has no absl/crc. Both are fixed, documented functions (no
// per-process seed, unlike absl::Hash), so two replicas, or two builds,
// compute the same value for the same bytes.
#pragma once

#include <cstdint>

#include "absl/strings/string_view.h"

namespace quorumkv::kv {

// CRC-32C (polynomial 0x1EDC6F41, reflected 0x82F63B78), as in iSCSI and
// LevelDB. `Crc32cExtend(crc, data)` continues a running checksum, so
// Crc32cExtend(Crc32c(a), b) == Crc32c(a + b). Crc32c("123456789") is
// 0xE3069283.
uint32_t Crc32cExtend(uint32_t crc, absl::string_view data);
inline uint32_t Crc32c(absl::string_view data) { return Crc32cExtend(0, data); }

// Incremental 64-bit FNV-1a. Not cryptographic: it detects accidental
// divergence between replicas, not an adversary.
class Fnv1a64 {
 public:
  void Update(absl::string_view data) {
    for (char c : data) {
      value_ ^= static_cast<uint8_t>(c);
      value_ *= kPrime;
    }
  }
  uint64_t value() const { return value_; }

 private:
  static constexpr uint64_t kOffsetBasis = 0xcbf29ce484222325ULL;
  static constexpr uint64_t kPrime = 0x100000001b3ULL;
  uint64_t value_ = kOffsetBasis;
};

}  // namespace quorumkv::kv
