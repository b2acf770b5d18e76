#include "raft/storage/format.h"

#include <cstdint>
#include <iterator>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "raft/storage/crc32c.h"

namespace quorumkv::raft::storage {
namespace {

using ::testing::HasSubstr;

TEST(FormatTest, EntryKeysSortInIndexOrder) {
  // Big-endian keys: bytewise order is numeric order, across byte carries.
  const uint64_t indexes[] = {0, 1, 255, 256, 65535, 65536, 1ull << 32, ~0ull};
  for (size_t k = 1; k < std::size(indexes); ++k) {
    EXPECT_LT(EntryKey(Index(indexes[k - 1])), EntryKey(Index(indexes[k])));
  }
  EXPECT_EQ(EntryKey(Index(0x0102030405060708)), std::string("e\x01\x02\x03\x04\x05\x06\x07\x08", 9));
  // Every entry key sorts between the single-byte keys around it.
  EXPECT_LT(EntryKey(Index(~0ull)), std::string(kHardStateKey));
}

TEST(FormatTest, ParseEntryKeyRoundTripsAndRejectsOtherKeys) {
  for (uint64_t i : {0ull, 1ull, 1234ull, ~0ull}) {
    EXPECT_EQ(ParseEntryKey(EntryKey(Index(i))), Index(i));
  }
  EXPECT_EQ(ParseEntryKey(kHardStateKey), std::nullopt);
  EXPECT_EQ(ParseEntryKey(kMetadataKey), std::nullopt);
  EXPECT_EQ(ParseEntryKey("e1234567"), std::nullopt);    // one byte short
  EXPECT_EQ(ParseEntryKey("e123456789"), std::nullopt);  // one byte long
  EXPECT_EQ(ParseEntryKey("x12345678"), std::nullopt);   // wrong prefix
}

TEST(FormatTest, EntryRoundTripsAllTypesAndBinaryData) {
  for (EntryType type : {EntryType::kNormal, EntryType::kNoOp, EntryType::kConfChange}) {
    Entry e{Index(77), Term(5), type, std::string("a\0b\xff\n", 5)};
    auto decoded = DecodeEntry(EncodeEntry(e));
    ASSERT_TRUE(decoded.ok()) << decoded.status();
    EXPECT_EQ(*decoded, e);
  }
  Entry empty{Index(1), Term(1), EntryType::kNoOp, ""};
  EXPECT_EQ(*DecodeEntry(EncodeEntry(empty)), empty);
}

TEST(FormatTest, EveryFlippedByteOfAnEntryIsDataLoss) {
  std::string value = EncodeEntry(Entry{Index(9), Term(3), EntryType::kNormal, "payload"});
  for (size_t i = 0; i < value.size(); ++i) {
    std::string bad = value;
    bad[i] = static_cast<char>(bad[i] ^ 0x40);
    auto decoded = DecodeEntry(bad);
    ASSERT_FALSE(decoded.ok()) << "byte " << i;
    EXPECT_EQ(decoded.status().code(), absl::StatusCode::kDataLoss);
    EXPECT_THAT(decoded.status().message(), HasSubstr("failed its checksum"));
  }
}

TEST(FormatTest, TruncatedEntryIsDataLoss) {
  std::string value = EncodeEntry(Entry{Index(9), Term(3), EntryType::kNormal, "payload"});
  for (size_t n = 0; n < value.size(); ++n) {
    auto decoded = DecodeEntry(value.substr(0, n));
    ASSERT_FALSE(decoded.ok()) << "length " << n;
    EXPECT_EQ(decoded.status().code(), absl::StatusCode::kDataLoss);
  }
}

// A value framed like ours (valid checksum) around an arbitrary body, as a
// buggy writer could produce: the decoders must check more than the CRC.
std::string Frame(const std::string& body) {
  uint32_t crc = Crc32c(body);
  std::string out;
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<char>((crc >> (8 * i)) & 0xff));
  return out + body;
}

TEST(FormatTest, FrameHelperMatchesTheEncoders) {
  std::string value = EncodeEntry(Entry{Index(4), Term(2), EntryType::kNormal, "x"});
  EXPECT_EQ(Frame(value.substr(4)), value);
}

TEST(FormatTest, ValidChecksumOverAShortBodyIsRefused) {
  for (size_t n = 0; n < 17; ++n) {  // 17 bytes: index, term, type
    auto decoded = DecodeEntry(Frame(std::string(n, '\x01')));
    ASSERT_FALSE(decoded.ok()) << "body of " << n << " bytes";
    EXPECT_EQ(decoded.status().code(), absl::StatusCode::kDataLoss);
    EXPECT_THAT(decoded.status().message(), HasSubstr("undecodable entry"));
  }
}

TEST(FormatTest, UnknownEntryTypeIsDataLoss) {
  std::string body = EncodeEntry(Entry{Index(4), Term(2), EntryType::kNormal, "x"}).substr(4);
  body[16] = 9;  // the type byte
  auto decoded = DecodeEntry(Frame(body));
  ASSERT_FALSE(decoded.ok());
  EXPECT_EQ(decoded.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(decoded.status().message(), HasSubstr("unknown entry type 9"));
}

TEST(FormatTest, SnapshotMetaWithAnAbsurdVoterCountIsRefused) {
  // index, term, then a voter count far beyond the bytes present: refused
  // without trying to allocate for it.
  std::string body(16, '\0');
  body += std::string("\xff\xff\xff\xff", 4);
  auto decoded = DecodeSnapshotMeta(Frame(body));
  ASSERT_FALSE(decoded.ok());
  EXPECT_EQ(decoded.status().code(), absl::StatusCode::kDataLoss);
}

TEST(FormatTest, TrailingBytesAfterAFixedRecordAreRefused) {
  std::string hs = EncodeHardState(HardState{Term(1), NodeId(2), Index(3)}).substr(4);
  EXPECT_EQ(DecodeHardState(Frame(hs + "x")).status().code(), absl::StatusCode::kDataLoss);
  std::string m = EncodeMetadata(Metadata{}).substr(4);
  EXPECT_EQ(DecodeMetadata(Frame(m + "x")).status().code(), absl::StatusCode::kDataLoss);
}

TEST(FormatTest, HardStateRoundTripsAndRejectsDamage) {
  HardState hs{Term(12), NodeId(3), Index(99)};
  EXPECT_EQ(*DecodeHardState(EncodeHardState(hs)), hs);
  std::string bad = EncodeHardState(hs);
  bad[10] ^= 1;
  EXPECT_EQ(DecodeHardState(bad).status().code(), absl::StatusCode::kDataLoss);
  // A framed entry is not a hard state even though its checksum is valid.
  EXPECT_EQ(DecodeHardState(EncodeEntry(Entry{Index(1), Term(1), EntryType::kNormal, "abcdefgh"}))
                .status()
                .code(),
            absl::StatusCode::kDataLoss);
}

TEST(FormatTest, SnapshotMetaRoundTripsWithConfState) {
  SnapshotMeta meta{Index(500), Term(7), ConfState{{NodeId(1), NodeId(2), NodeId(3)}, {NodeId(9)}}};
  EXPECT_EQ(*DecodeSnapshotMeta(EncodeSnapshotMeta(meta)), meta);
  SnapshotMeta empty;
  EXPECT_EQ(*DecodeSnapshotMeta(EncodeSnapshotMeta(empty)), empty);
  std::string bad = EncodeSnapshotMeta(meta);
  bad.back() ^= 1;
  EXPECT_EQ(DecodeSnapshotMeta(bad).status().code(), absl::StatusCode::kDataLoss);
}

TEST(FormatTest, MetadataRoundTripsAndRefusesOtherVersions) {
  Metadata m{kFormatVersion, 0xC1C1, 4};
  EXPECT_EQ(*DecodeMetadata(EncodeMetadata(m)), m);
  // Version 1 (one entry per key) is still read, to be converted at Open.
  Metadata old{kOneEntryPerKeyFormatVersion, 0xC1C1, 4};
  EXPECT_EQ(*DecodeMetadata(EncodeMetadata(old)), old);
  for (uint32_t version : {0u, kFormatVersion + 1}) {
    Metadata other{version, 1, 1};
    auto decoded = DecodeMetadata(EncodeMetadata(other));
    ASSERT_FALSE(decoded.ok()) << version;
    EXPECT_EQ(decoded.status().code(), absl::StatusCode::kFailedPrecondition);
    EXPECT_THAT(decoded.status().message(), HasSubstr(absl::StrCat("format version ", version, ";")));
  }
}

std::vector<Entry> RunOf(uint64_t first, uint64_t n) {
  std::vector<Entry> out;
  const EntryType types[] = {EntryType::kNormal, EntryType::kNoOp, EntryType::kConfChange};
  for (uint64_t k = 0; k < n; ++k) {
    out.push_back(Entry{Index(first + k), Term(3 + k / 2), types[k % 3],
                        k == 1 ? std::string() : std::string("a\0b\xff\n", 5) + std::to_string(k)});
  }
  return out;
}

TEST(FormatTest, EntryRunRoundTripsTypesEmptyAndBinaryData) {
  for (uint64_t n : {1, 2, 3, 100}) {
    const std::vector<Entry> run = RunOf(41, n);
    auto decoded = DecodeEntryRun(EncodeEntryRun(run));
    ASSERT_TRUE(decoded.ok()) << decoded.status();
    EXPECT_EQ(*decoded, run) << n;
  }
  // The last index of the index space is a valid run end.
  const std::vector<Entry> at_end = RunOf(~0ull - 1, 2);
  EXPECT_EQ(*DecodeEntryRun(EncodeEntryRun(at_end)), at_end);
}

TEST(FormatTest, EveryFlippedByteOfAnEntryRunIsDataLoss) {
  const std::string value = EncodeEntryRun(RunOf(9, 3));
  for (size_t i = 0; i < value.size(); ++i) {
    std::string bad = value;
    bad[i] = static_cast<char>(bad[i] ^ 0x40);
    auto decoded = DecodeEntryRun(bad);
    ASSERT_FALSE(decoded.ok()) << "byte " << i;
    EXPECT_EQ(decoded.status().code(), absl::StatusCode::kDataLoss);
    EXPECT_THAT(decoded.status().message(), HasSubstr("failed its checksum"));
  }
}

TEST(FormatTest, TruncatedEntryRunIsDataLoss) {
  const std::string value = EncodeEntryRun(RunOf(9, 3));
  for (size_t n = 0; n < value.size(); ++n) {
    auto decoded = DecodeEntryRun(value.substr(0, n));
    ASSERT_FALSE(decoded.ok()) << "length " << n;
    EXPECT_EQ(decoded.status().code(), absl::StatusCode::kDataLoss);
  }
}

std::string Le(uint64_t v, int bytes) {
  std::string out;
  for (int i = 0; i < bytes; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
  return out;
}

TEST(FormatTest, EntryRunBodiesThatPassTheChecksumButCannotBeRunsAreDataLoss) {
  const std::string one_entry = Le(3, 8) + Le(0, 1) + Le(2, 4) + "ab";
  struct Case {
    const char* name;
    std::string body;
    const char* message;
  };
  const Case cases[] = {
      {"no entries", Le(5, 8) + Le(0, 4), "holds no entries"},
      {"count beyond the bytes", Le(5, 8) + Le(1000, 4) + one_entry, "undecodable entry run"},
      {"data beyond the body", Le(5, 8) + Le(1, 4) + Le(3, 8) + Le(0, 1) + Le(9, 4) + "ab" + std::string(11, 'x'),
       "undecodable entry run"},
      {"trailing bytes", Le(5, 8) + Le(1, 4) + one_entry + "z", "undecodable entry run"},
      {"unknown type", Le(5, 8) + Le(1, 4) + Le(3, 8) + Le(9, 1) + Le(2, 4) + "ab", "unknown entry type 9"},
      {"first index 0", Le(0, 8) + Le(1, 4) + one_entry, "impossible first index 0"},
      {"past the index space", Le(~0ull, 8) + Le(2, 4) + one_entry + one_entry, "impossible first index"},
  };
  for (const Case& c : cases) {
    auto decoded = DecodeEntryRun(Frame(c.body));
    ASSERT_FALSE(decoded.ok()) << c.name;
    EXPECT_EQ(decoded.status().code(), absl::StatusCode::kDataLoss) << c.name;
    EXPECT_THAT(decoded.status().message(), HasSubstr(c.message)) << c.name;
  }
}

}  // namespace
}  // namespace quorumkv::raft::storage
