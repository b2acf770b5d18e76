#include "kv/command.h"

#include <random>
#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace quorumkv::kv {
namespace {

std::vector<Command> SampleCommands() {
  std::vector<Command> out;
  out.push_back(Command::Put("key", "value"));
  out.push_back(Command::Put("", ""));
  out.push_back(Command::Put(std::string("k\0ey", 4), std::string(100000, '\xab')));
  out.push_back(Command::Delete("gone"));
  out.push_back(Command::CompareAndSwap("k", std::string("old"), "new"));
  out.push_back(Command::CompareAndSwap("k", std::nullopt, "created"));
  out.push_back(Command::CompareAndSwap("k", std::string(""), ""));
  Command with_session = Command::Put("a", "b");
  with_session.client_id = 0xdeadbeefcafef00dULL;
  with_session.sequence = 42;
  with_session.proposed_at_unix_ms = 1'700'000'000'123ULL;
  out.push_back(with_session);
  Command max = Command::Delete("m");
  max.client_id = ~0ULL;
  max.sequence = ~0ULL;
  max.proposed_at_unix_ms = ~0ULL;
  out.push_back(max);
  Command cas_session = Command::CompareAndSwap("x", std::nullopt, "y");
  cas_session.client_id = 1;
  cas_session.sequence = 0;
  out.push_back(cas_session);
  return out;
}

TEST(CommandTest, RoundTripsEveryShape) {
  for (const Command& c : SampleCommands()) {
    const std::string bytes = EncodeCommand(c);
    auto decoded = DecodeCommand(bytes);
    ASSERT_TRUE(decoded.ok()) << decoded.status();
    EXPECT_EQ(*decoded, c) << CommandTypeName(c.type) << " key=" << c.key;
    // Canonical: decoding then encoding gives the same bytes.
    EXPECT_EQ(EncodeCommand(*decoded), bytes);
  }
}

TEST(CommandTest, EncodingStartsWithVersionAndIsCompact) {
  const std::string bytes = EncodeCommand(Command::Put("k", "v"));
  ASSERT_FALSE(bytes.empty());
  EXPECT_EQ(static_cast<uint8_t>(bytes[0]), kCommandFormatVersion);
  // version, type, flags, proposed_at (1), key len + key, value len + value.
  EXPECT_EQ(bytes.size(), 8u);
}

TEST(CommandTest, FieldsIrrelevantToTheTypeAreNotEncoded) {
  Command del = Command::Delete("k");
  del.value = "ignored";
  del.expected_value = "ignored too";
  auto decoded = DecodeCommand(EncodeCommand(del));
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  EXPECT_EQ(*decoded, Command::Delete("k"));

  Command no_client = Command::Put("k", "v");
  no_client.sequence = 9;  // without a client id there is no session
  decoded = DecodeCommand(EncodeCommand(no_client));
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  EXPECT_EQ(decoded->sequence, 0u);
  EXPECT_FALSE(decoded->has_session());
}

void ExpectInvalid(const std::string& bytes, const std::string& fragment) {
  auto decoded = DecodeCommand(bytes);
  ASSERT_FALSE(decoded.ok()) << "decoded bytes that should be rejected";
  EXPECT_EQ(decoded.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(decoded.status().message().find(fragment), absl::string_view::npos) << decoded.status();
}

TEST(CommandTest, RejectsMalformedInputWithAClearError) {
  ExpectInvalid("", "empty input");
  ExpectInvalid(std::string("\x02\x01\x00\x00\x01k\x01v", 8),
                "unsupported command format version 2");
  ExpectInvalid(std::string("\x01\x04\x00\x00\x01k", 6), "unknown command type 4");
  ExpectInvalid(std::string("\x01\x00\x00\x00\x01k", 6), "unknown command type 0");
  // The "expected value" flag is only valid for CompareAndSwap.
  ExpectInvalid(std::string("\x01\x01\x02\x00\x01k\x01v", 8), "not valid for Put");
  ExpectInvalid(std::string("\x01\x02\x80\x00\x01k", 6), "not valid for Delete");
  // Session flag with client id 0.
  ExpectInvalid(std::string("\x01\x02\x01\x00\x00\x00\x01k", 8), "client_id 0");
  // Key length beyond the end.
  ExpectInvalid(std::string("\x01\x02\x00\x00\x05k", 6), "truncated key");
  // A length varint of 2^63: must not allocate or overflow.
  ExpectInvalid(std::string("\x01\x02\x00\x00\x80\x80\x80\x80\x80\x80\x80\x80\x80\x01", 14),
                "truncated key");
  // An 11-byte varint.
  ExpectInvalid(std::string("\x01\x02\x00\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", 14),
                "proposed_at_unix_ms");
  // A non-canonical varint (0 encoded on two bytes).
  ExpectInvalid(std::string("\x01\x02\x00\x80\x00\x01k", 7), "proposed_at_unix_ms");
  // Trailing garbage.
  ExpectInvalid(EncodeCommand(Command::Delete("k")) + "x", "1 trailing bytes");
}

TEST(CommandTest, EveryTruncationIsRejected) {
  for (const Command& c : SampleCommands()) {
    const std::string bytes = EncodeCommand(c);
    for (size_t len = 0; len < bytes.size(); len += (len < 64 ? 1 : 997)) {
      auto decoded = DecodeCommand(absl::string_view(bytes).substr(0, len));
      EXPECT_FALSE(decoded.ok()) << CommandTypeName(c.type) << " truncated to " << len;
    }
  }
}

// A bounded, seeded stand-in for the fuzzer that comes later: random bytes
// and mutated valid commands never crash the decoder, and whatever decodes
// re-encodes to exactly the same bytes.
TEST(CommandTest, RandomBytesNeverCrashAndDecodedInputIsCanonical) {
  std::mt19937_64 rng(20240601);
  const std::vector<Command> samples = SampleCommands();
  int decoded_count = 0;
  for (int i = 0; i < 20000; ++i) {
    std::string bytes;
    if (i % 2 == 0) {
      bytes.resize(rng() % 24);
      for (char& b : bytes) b = static_cast<char>(rng());
      if (!bytes.empty() && rng() % 2 == 0) bytes[0] = kCommandFormatVersion;
    } else {
      const Command& c = samples[rng() % 3 + 3];  // small ones
      bytes = EncodeCommand(c);
      const size_t pos = rng() % bytes.size();
      bytes[pos] = static_cast<char>(bytes[pos] ^ (1 << (rng() % 8)));
    }
    auto decoded = DecodeCommand(bytes);
    if (decoded.ok()) {
      ++decoded_count;
      EXPECT_EQ(EncodeCommand(*decoded), bytes);
    } else {
      EXPECT_EQ(decoded.status().code(), absl::StatusCode::kInvalidArgument);
      EXPECT_FALSE(decoded.status().message().empty());
    }
  }
  EXPECT_GT(decoded_count, 0);
}

TEST(CommandResultTest, RoundTrips) {
  std::vector<CommandResult> results(4);
  results[1].found = true;
  results[2].found = true;
  results[2].swapped = true;
  results[2].current_value = "now";
  results[3].current_value = "";
  for (const CommandResult& r : results) {
    auto decoded = DecodeCommandResult(EncodeCommandResult(r));
    ASSERT_TRUE(decoded.ok()) << decoded.status();
    EXPECT_EQ(*decoded, r);
  }
}

TEST(CommandResultTest, RejectsMalformedInput) {
  EXPECT_FALSE(DecodeCommandResult("").ok());
  EXPECT_FALSE(DecodeCommandResult(std::string("\x02\x00", 2)).ok());
  EXPECT_FALSE(DecodeCommandResult(std::string("\x01\x08", 2)).ok());
  EXPECT_FALSE(DecodeCommandResult(std::string("\x01\x04\x05"
                                               "ab",
                                               5))
                   .ok());
  EXPECT_FALSE(DecodeCommandResult(std::string("\x01\x00z", 3)).ok());
}

}  // namespace
}  // namespace quorumkv::kv
