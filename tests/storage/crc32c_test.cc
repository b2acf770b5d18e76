#include "raft/storage/crc32c.h"

#include <cstdint>
#include <random>
#include <string>

#include "gtest/gtest.h"

namespace quorumkv::raft::storage {
namespace {

// Bit-at-a-time CRC32C straight from the definition: the reference the
// slicing-by-8 tables are checked against.
uint32_t ReferenceCrc32c(const std::string& data) {
  uint32_t crc = 0xFFFFFFFF;
  for (unsigned char byte : data) {
    crc ^= byte;
    for (int bit = 0; bit < 8; ++bit) crc = (crc >> 1) ^ ((crc & 1) ? 0x82F63B78 : 0);
  }
  return ~crc;
}

TEST(Crc32cTest, StandardCheckValue) {
  // The "check" value of the CRC-32C catalogue entry (CRC-32/ISCSI).
  EXPECT_EQ(Crc32c("123456789"), 0xE3069283u);
}

TEST(Crc32cTest, EmptyInputIsZero) {
  EXPECT_EQ(Crc32c(""), 0u);
  EXPECT_EQ(ExtendCrc32c(0x12345678, "", 0), 0x12345678u);
}

// The iSCSI test vectors of RFC 3720, appendix B.4.
TEST(Crc32cTest, Rfc3720Vectors) {
  EXPECT_EQ(Crc32c(std::string(32, '\0')), 0x8A9136AAu);
  EXPECT_EQ(Crc32c(std::string(32, '\xff')), 0x62A8AB43u);
  std::string ascending, descending;
  for (int i = 0; i < 32; ++i) {
    ascending.push_back(static_cast<char>(i));
    descending.push_back(static_cast<char>(31 - i));
  }
  EXPECT_EQ(Crc32c(ascending), 0x46DD794Eu);
  EXPECT_EQ(Crc32c(descending), 0x113FDB5Cu);

  const unsigned char iscsi_read[48] = {
      0x01, 0xc0, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
      0x00, 0x00, 0x00, 0x00, 0x14, 0x00, 0x00, 0x00, 0x00, 0x00, 0x04, 0x00,
      0x00, 0x00, 0x00, 0x14, 0x00, 0x00, 0x00, 0x18, 0x28, 0x00, 0x00, 0x00,
      0x00, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
  };
  EXPECT_EQ(Crc32c(reinterpret_cast<const char*>(iscsi_read), sizeof(iscsi_read)), 0xD9963A56u);
}

TEST(Crc32cTest, MatchesBitwiseReferenceAtEveryLengthAndAlignment) {
  std::mt19937_64 rng(20240601);
  std::string buffer(1100, '\0');
  for (char& c : buffer) c = static_cast<char>(rng());
  // Lengths across the 8-byte main loop and the byte tail, starting at every
  // alignment, so the unaligned loads are exercised too.
  for (size_t offset = 0; offset < 8; ++offset) {
    for (size_t length = 0; length <= 80; ++length) {
      std::string piece = buffer.substr(offset, length);
      ASSERT_EQ(Crc32c(buffer.data() + offset, length), ReferenceCrc32c(piece))
          << "offset " << offset << " length " << length;
    }
  }
  EXPECT_EQ(Crc32c(buffer), ReferenceCrc32c(buffer));
}

TEST(Crc32cTest, ExtendEqualsCrcOfConcatenation) {
  std::string data = "The quick brown fox jumps over the lazy dog, twice over.";
  for (size_t split = 0; split <= data.size(); ++split) {
    uint32_t head = Crc32c(data.data(), split);
    EXPECT_EQ(ExtendCrc32c(head, data.data() + split, data.size() - split), Crc32c(data))
        << "split at " << split;
  }
}

TEST(Crc32cTest, DetectsEverySingleBitFlip) {
  std::string data = "raft log entry 42";
  uint32_t original = Crc32c(data);
  for (size_t byte = 0; byte < data.size(); ++byte) {
    for (int bit = 0; bit < 8; ++bit) {
      std::string flipped = data;
      flipped[byte] = static_cast<char>(flipped[byte] ^ (1 << bit));
      EXPECT_NE(Crc32c(flipped), original) << "byte " << byte << " bit " << bit;
    }
  }
}

}  // namespace
}  // namespace quorumkv::raft::storage
