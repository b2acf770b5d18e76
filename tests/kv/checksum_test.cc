#include "kv/checksum.h"

#include <string>

#include "gtest/gtest.h"

namespace quorumkv::kv {
namespace {

// Test vectors of RFC 3720, appendix B.4 (iSCSI uses CRC32C).
TEST(Crc32cTest, MatchesRfc3720Vectors) {
  EXPECT_EQ(Crc32c(std::string(32, '\0')), 0x8A9136AAu);
  EXPECT_EQ(Crc32c(std::string(32, '\xff')), 0x62A8AB43u);
  std::string ascending, descending;
  for (int i = 0; i < 32; ++i) {
    ascending.push_back(static_cast<char>(i));
    descending.push_back(static_cast<char>(31 - i));
  }
  EXPECT_EQ(Crc32c(ascending), 0x46DD794Eu);
  EXPECT_EQ(Crc32c(descending), 0x113FDB5Cu);
  EXPECT_EQ(Crc32c("123456789"), 0xE3069283u);
  EXPECT_EQ(Crc32c(""), 0u);
}

TEST(Crc32cTest, ExtendEqualsWholeAtEverySplit) {
  std::string data;
  for (int i = 0; i < 100; ++i) data.push_back(static_cast<char>(i * 37 + 11));
  const uint32_t whole = Crc32c(data);
  for (size_t split = 0; split <= data.size(); ++split) {
    const absl::string_view v(data);
    EXPECT_EQ(Crc32cExtend(Crc32c(v.substr(0, split)), v.substr(split)), whole) << split;
  }
}

TEST(Crc32cTest, DetectsSingleBitFlips) {
  std::string data(64, 'x');
  const uint32_t base = Crc32c(data);
  for (size_t i = 0; i < data.size(); ++i) {
    for (int bit = 0; bit < 8; ++bit) {
      std::string flipped = data;
      flipped[i] = static_cast<char>(flipped[i] ^ (1 << bit));
      EXPECT_NE(Crc32c(flipped), base) << "byte " << i << " bit " << bit;
    }
  }
}

TEST(Fnv1a64Test, MatchesReferenceVectors) {
  Fnv1a64 empty;
  EXPECT_EQ(empty.value(), 0xcbf29ce484222325ULL);
  Fnv1a64 a;
  a.Update("a");
  EXPECT_EQ(a.value(), 0xaf63dc4c8601ec8cULL);
  Fnv1a64 foobar;
  foobar.Update("foo");
  foobar.Update("bar");
  EXPECT_EQ(foobar.value(), 0x85944171f73967e8ULL);
}

}  // namespace
}  // namespace quorumkv::kv
