// Wire conversion (server/raft_wire.h): every message type and field
// survives a round trip; malformed input is refused with INVALID_ARGUMENT
// and a message, never a crash (random bytes and mutations included).
#include "server/raft_wire.h"

#include <gtest/gtest.h>

#include <random>
#include <string>
#include <vector>

namespace quorumkv::server {
namespace {

using raft::ConfChange;
using raft::ConfChangeType;
using raft::Entry;
using raft::EntryType;
using raft::Index;
using raft::Message;
using raft::MessageType;
using raft::NodeId;
using raft::Term;

constexpr uint64_t kCluster = 77;

Message Base(MessageType type) {
  Message m;
  m.type = type;
  m.from = NodeId(3);
  m.to = NodeId(5);
  m.term = Term(42);
  return m;
}

// Field-by-field comparison of what a type carries (Message has no ==).
void ExpectSame(const Message& a, const Message& b) {
  EXPECT_EQ(a.type, b.type);
  EXPECT_EQ(a.from, b.from);
  EXPECT_EQ(a.to, b.to);
  EXPECT_EQ(a.term, b.term);
  EXPECT_EQ(a.pre_vote, b.pre_vote);
  EXPECT_EQ(a.leadership_transfer, b.leadership_transfer);
  EXPECT_EQ(a.last_log_index, b.last_log_index);
  EXPECT_EQ(a.last_log_term, b.last_log_term);
  EXPECT_EQ(a.vote_granted, b.vote_granted);
  EXPECT_EQ(a.prev_log_index, b.prev_log_index);
  EXPECT_EQ(a.prev_log_term, b.prev_log_term);
  EXPECT_EQ(a.entries, b.entries);
  EXPECT_EQ(a.leader_commit, b.leader_commit);
  EXPECT_EQ(a.heartbeat, b.heartbeat);
  EXPECT_EQ(a.read_round, b.read_round);
  EXPECT_EQ(a.success, b.success);
  EXPECT_EQ(a.match_index, b.match_index);
  EXPECT_EQ(a.rejected_index, b.rejected_index);
  EXPECT_EQ(a.conflict_index, b.conflict_index);
  EXPECT_EQ(a.conflict_term, b.conflict_term);
  EXPECT_EQ(a.snapshot, b.snapshot);
  EXPECT_EQ(a.read_id, b.read_id);
  EXPECT_EQ(a.read_index, b.read_index);
  EXPECT_EQ(a.lease_read, b.lease_read);
}

Message RoundTrip(const Message& m) {
  raftpb::RaftMessage wire;
  EXPECT_TRUE(EncodeMessage(m, kCluster, &wire).ok());
  EXPECT_EQ(wire.cluster_id(), kCluster);
  // Through bytes, as on the network.
  raftpb::RaftMessage parsed;
  EXPECT_TRUE(parsed.ParseFromString(wire.SerializeAsString()));
  absl::StatusOr<Message> back = DecodeMessage(parsed);
  EXPECT_TRUE(back.ok()) << back.status();
  return back.ok() ? *back : Message{};
}

TEST(RaftWireTest, RequestVoteRoundTripsEveryField) {
  for (bool pre_vote : {false, true}) {
    for (bool transfer : {false, true}) {
      Message m = Base(MessageType::kRequestVote);
      m.pre_vote = pre_vote;
      m.leadership_transfer = transfer;
      m.last_log_index = Index(1234567890123ULL);
      m.last_log_term = Term(41);
      ExpectSame(m, RoundTrip(m));
    }
  }
}

TEST(RaftWireTest, RequestVoteResponseRoundTripsEveryField) {
  for (bool pre_vote : {false, true}) {
    for (bool granted : {false, true}) {
      Message m = Base(MessageType::kRequestVoteResponse);
      m.pre_vote = pre_vote;
      m.vote_granted = granted;
      ExpectSame(m, RoundTrip(m));
    }
  }
  // A node still in term 0 rejecting a pre-vote answers with term 0.
  Message zero = Base(MessageType::kRequestVoteResponse);
  zero.term = Term(0);
  zero.pre_vote = true;
  ExpectSame(zero, RoundTrip(zero));
}

TEST(RaftWireTest, AppendEntriesRoundTripsEveryField) {
  Message m = Base(MessageType::kAppendEntries);
  m.prev_log_index = Index(100);
  m.prev_log_term = Term(40);
  m.entries = {Entry{Index(101), Term(40), EntryType::kNormal, std::string("put\0x", 5)},
               Entry{Index(102), Term(41), EntryType::kNoOp, ""},
               Entry{Index(103), Term(42), EntryType::kConfChange,
                     ConfChange{ConfChangeType::kAddLearner, NodeId(7), "peer-address"}.Encode()}};
  m.leader_commit = Index(99);
  m.read_round = 0xFFFFFFFFFFFFFFFFULL;
  ExpectSame(m, RoundTrip(m));

  Message heartbeat = Base(MessageType::kAppendEntries);
  heartbeat.heartbeat = true;
  heartbeat.leader_commit = Index(7);
  heartbeat.read_round = 9;
  ExpectSame(heartbeat, RoundTrip(heartbeat));
}

TEST(RaftWireTest, AppendEntriesResponseRoundTripsEveryField) {
  Message ok = Base(MessageType::kAppendEntriesResponse);
  ok.success = true;
  ok.match_index = Index(555);
  ok.read_round = 12;
  ExpectSame(ok, RoundTrip(ok));

  Message reject = Base(MessageType::kAppendEntriesResponse);
  reject.success = false;
  reject.rejected_index = Index(80);
  reject.conflict_index = Index(70);
  reject.conflict_term = Term(39);
  reject.heartbeat = true;
  reject.read_round = 13;
  ExpectSame(reject, RoundTrip(reject));
}

TEST(RaftWireTest, InstallSnapshotResponseRoundTripsEveryField) {
  for (bool success : {false, true}) {
    Message m = Base(MessageType::kInstallSnapshotResponse);
    m.success = success;
    m.match_index = Index(4096);
    ExpectSame(m, RoundTrip(m));
  }
}

TEST(RaftWireTest, TimeoutNowRoundTrips) {
  Message m = Base(MessageType::kTimeoutNow);
  ExpectSame(m, RoundTrip(m));
}

TEST(RaftWireTest, ReadIndexRoundTrips) {
  Message m = Base(MessageType::kReadIndex);
  m.read_id = 0xABCDEF0123456789ULL;
  ExpectSame(m, RoundTrip(m));
}

// raft.proto's ReadIndexRequest has no lease flag: a forwarded lease read
// arrives as a plain ReadIndex read (documented in raft_wire.h).
TEST(RaftWireTest, ReadIndexLeaseFlagIsNotCarried) {
  Message m = Base(MessageType::kReadIndex);
  m.read_id = 8;
  m.lease_read = true;
  Message back = RoundTrip(m);
  EXPECT_EQ(back.read_id, 8u);
  EXPECT_FALSE(back.lease_read);
}

TEST(RaftWireTest, ReadIndexResponseRoundTripsEveryField) {
  for (bool success : {false, true}) {
    Message m = Base(MessageType::kReadIndexResponse);
    m.read_id = 17;
    m.read_index = Index(9000);
    m.success = success;
    ExpectSame(m, RoundTrip(m));
  }
}

TEST(RaftWireTest, InstallSnapshotIsNotABatchMessage) {
  Message m = Base(MessageType::kInstallSnapshot);
  m.snapshot.meta.index = Index(10);
  raftpb::RaftMessage wire;
  absl::Status s = EncodeMessage(m, kCluster, &wire);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("InstallSnapshot"), std::string::npos) << s;
}

TEST(RaftWireTest, EncodeWritesOnlyTheTypesBody) {
  Message m = Base(MessageType::kTimeoutNow);
  m.entries = {Entry{Index(1), Term(1), EntryType::kNormal, "ignored"}};
  raftpb::RaftMessage wire;
  ASSERT_TRUE(EncodeMessage(m, kCluster, &wire).ok());
  EXPECT_EQ(wire.body_case(), raftpb::RaftMessage::kTimeoutNow);
  EXPECT_EQ(wire.from(), 3u);
  EXPECT_EQ(wire.to(), 5u);
}

TEST(RaftWireTest, EntryConfStateAndSnapshotMetaRoundTrip) {
  for (EntryType type : {EntryType::kNormal, EntryType::kNoOp, EntryType::kConfChange}) {
    Entry e{Index(9), Term(2), type, "data"};
    raftpb::Entry wire;
    EncodeEntry(e, &wire);
    absl::StatusOr<Entry> back = DecodeEntry(wire);
    ASSERT_TRUE(back.ok()) << back.status();
    EXPECT_EQ(*back, e);
  }

  raft::SnapshotMeta meta;
  meta.index = Index(1000);
  meta.term = Term(7);
  meta.conf_state.voters = {NodeId(1), NodeId(2), NodeId(9)};
  meta.conf_state.learners = {NodeId(3), NodeId(10)};
  raftpb::SnapshotMeta wire;
  EncodeSnapshotMeta(meta, &wire);
  absl::StatusOr<raft::SnapshotMeta> back = DecodeSnapshotMeta(wire);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(*back, meta);

  raftpb::ConfState conf_wire;
  EncodeConfState(meta.conf_state, &conf_wire);
  absl::StatusOr<raft::ConfState> conf = DecodeConfState(conf_wire);
  ASSERT_TRUE(conf.ok());
  EXPECT_EQ(*conf, meta.conf_state);
}

TEST(RaftWireTest, SnapshotChunkHeaderRoundTripsAndBuildsTheCoreMessage) {
  SnapshotChunkHeader header;
  header.leader = NodeId(2);
  header.term = Term(8);
  header.meta.index = Index(300);
  header.meta.term = Term(6);
  header.meta.conf_state.voters = {NodeId(1), NodeId(2), NodeId(3)};
  raftpb::InstallSnapshotChunk chunk;
  EncodeSnapshotChunkHeader(header, &chunk);
  absl::StatusOr<SnapshotChunkHeader> back = DecodeSnapshotChunkHeader(chunk);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(*back, header);

  Message m = MakeInstallSnapshotMessage(NodeId(3), *back);
  EXPECT_EQ(m.type, MessageType::kInstallSnapshot);
  EXPECT_EQ(m.from, NodeId(2));
  EXPECT_EQ(m.to, NodeId(3));
  EXPECT_EQ(m.term, Term(8));
  EXPECT_EQ(m.snapshot.meta, header.meta);
  EXPECT_TRUE(m.snapshot.data.empty());
}

// --- refusals ----------------------------------------------------------------

void ExpectInvalid(const raftpb::RaftMessage& wire, const std::string& needle) {
  absl::StatusOr<Message> m = DecodeMessage(wire);
  ASSERT_FALSE(m.ok());
  EXPECT_EQ(m.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(m.status().message().find(needle), std::string::npos) << m.status();
}

raftpb::RaftMessage ValidAppend() {
  Message m = Base(MessageType::kAppendEntries);
  m.prev_log_index = Index(10);
  m.prev_log_term = Term(5);
  m.entries = {Entry{Index(11), Term(5), EntryType::kNormal, "a"},
               Entry{Index(12), Term(6), EntryType::kNormal, "b"}};
  raftpb::RaftMessage wire;
  EXPECT_TRUE(EncodeMessage(m, kCluster, &wire).ok());
  EXPECT_TRUE(DecodeMessage(wire).ok());
  return wire;
}

TEST(RaftWireTest, RefusesMissingBodyAndZeroOrEqualIds) {
  raftpb::RaftMessage wire;
  wire.set_from(1);
  wire.set_to(2);
  ExpectInvalid(wire, "no body");

  wire = ValidAppend();
  wire.set_from(0);
  ExpectInvalid(wire, "from is 0");
  wire = ValidAppend();
  wire.set_to(0);
  ExpectInvalid(wire, "to is 0");
  wire = ValidAppend();
  wire.set_to(wire.from());
  ExpectInvalid(wire, "itself");
}

TEST(RaftWireTest, RefusesAnUnknownBodyField) {
  // A body added by a later version (field 99, length-delimited) parses as
  // an unknown field: the oneof stays unset.
  raftpb::RaftMessage ids;
  ids.set_from(3);
  ids.set_to(5);
  std::string unknown = ids.SerializeAsString();
  unknown += std::string("\x9a\x06\x02\x08\x01", 5);  // field 99, wire type 2, {1: 1}
  raftpb::RaftMessage wire;
  ASSERT_TRUE(wire.ParseFromString(unknown));
  ExpectInvalid(wire, "no body");
}

TEST(RaftWireTest, RefusesBadEntryTypesIndexesAndTerms) {
  raftpb::RaftMessage wire = ValidAppend();
  wire.mutable_append_entries()->mutable_entries(1)->set_type(static_cast<raftpb::EntryType>(7));
  ExpectInvalid(wire, "unknown type 7");

  wire = ValidAppend();
  wire.mutable_append_entries()->mutable_entries(1)->set_index(13);
  ExpectInvalid(wire, "expected 12");

  wire = ValidAppend();
  wire.mutable_append_entries()->mutable_entries(0)->set_index(0);
  ExpectInvalid(wire, "index 0");

  wire = ValidAppend();
  wire.mutable_append_entries()->mutable_entries(0)->set_term(0);
  ExpectInvalid(wire, "term 0");

  wire = ValidAppend();
  wire.mutable_append_entries()->mutable_entries(1)->set_term(4);  // after term 5
  ExpectInvalid(wire, "below the term before it");

  wire = ValidAppend();
  wire.mutable_append_entries()->mutable_entries(0)->set_term(4);  // below prev_log_term 5
  ExpectInvalid(wire, "below the term before it");

  wire = ValidAppend();
  wire.mutable_append_entries()->mutable_entries(1)->set_term(43);  // above message term 42
  ExpectInvalid(wire, "above the message's term");

  wire = ValidAppend();
  wire.mutable_append_entries()->set_heartbeat(true);
  ExpectInvalid(wire, "heartbeat carries entries");

  wire = ValidAppend();
  wire.mutable_append_entries()->set_prev_log_index(~uint64_t{0} - 1);
  ExpectInvalid(wire, "beyond any reachable term or index");

  wire = ValidAppend();
  wire.mutable_append_entries()->mutable_entries(0)->set_type(raftpb::ENTRY_TYPE_CONF_CHANGE);
  wire.mutable_append_entries()->mutable_entries(0)->set_data("not a configuration change");
  ExpectInvalid(wire, "configuration entry 11 does not decode");
}

TEST(RaftWireTest, RefusesBadConfStatesAndSnapshotHeaders) {
  auto expect_invalid_conf = [](std::vector<uint64_t> voters, std::vector<uint64_t> learners,
                                const std::string& needle) {
    raftpb::ConfState wire;
    for (uint64_t v : voters) wire.add_voters(v);
    for (uint64_t l : learners) wire.add_learners(l);
    absl::StatusOr<raft::ConfState> conf = DecodeConfState(wire);
    ASSERT_FALSE(conf.ok());
    EXPECT_EQ(conf.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(conf.status().message().find(needle), std::string::npos) << conf.status();
  };
  expect_invalid_conf({1, 0}, {}, "node id 0");
  expect_invalid_conf({1, 1}, {}, "ascending");
  expect_invalid_conf({2, 1}, {}, "ascending");
  expect_invalid_conf({1, 2}, {3, 3}, "ascending");
  expect_invalid_conf({1, 2, 5}, {3, 5}, "both a voter and a learner");

  SnapshotChunkHeader header{NodeId(2), Term(3), {Index(10), Term(3), {{NodeId(1), NodeId(2)}, {}}}};
  auto expect_invalid_chunk = [&](auto mutate, const std::string& needle) {
    raftpb::InstallSnapshotChunk chunk;
    EncodeSnapshotChunkHeader(header, &chunk);
    mutate(chunk);
    absl::StatusOr<SnapshotChunkHeader> h = DecodeSnapshotChunkHeader(chunk);
    ASSERT_FALSE(h.ok());
    EXPECT_EQ(h.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(h.status().message().find(needle), std::string::npos) << h.status();
  };
  expect_invalid_chunk([](auto& c) { c.set_leader_id(0); }, "leader_id 0");
  expect_invalid_chunk([](auto& c) { c.set_term(0); }, "term 0");
  expect_invalid_chunk([](auto& c) { c.clear_meta(); }, "without meta");
  expect_invalid_chunk([](auto& c) { c.mutable_meta()->set_index(0); }, "index 0");
  expect_invalid_chunk([](auto& c) { c.mutable_meta()->set_term(0); }, "term 0");
  expect_invalid_chunk([](auto& c) { c.mutable_meta()->mutable_conf_state()->add_voters(0); },
                       "node id 0");
}

// A cheap, seeded stand-in for the libFuzzer target: random bytes and
// random mutations of valid encodings either decode or are refused with
// INVALID_ARGUMENT; a decoded message re-encodes and decodes to itself.
TEST(RaftWireTest, ArbitraryBytesNeverCrashTheDecoder) {
  std::mt19937_64 rng(20240601);
  std::vector<std::string> seeds;
  seeds.push_back(ValidAppend().SerializeAsString());
  for (MessageType type : {MessageType::kRequestVote, MessageType::kAppendEntriesResponse,
                           MessageType::kReadIndexResponse, MessageType::kInstallSnapshotResponse}) {
    raftpb::RaftMessage wire;
    ASSERT_TRUE(EncodeMessage(Base(type), kCluster, &wire).ok());
    seeds.push_back(wire.SerializeAsString());
  }
  int decoded = 0, refused = 0;
  for (int i = 0; i < 20000; ++i) {
    std::string bytes;
    if (i % 2 == 0) {
      bytes.resize(rng() % 64);
      for (char& c : bytes) c = static_cast<char>(rng());
    } else {
      bytes = seeds[rng() % seeds.size()];
      const int flips = 1 + static_cast<int>(rng() % 4);
      for (int f = 0; f < flips && !bytes.empty(); ++f) {
        bytes[rng() % bytes.size()] = static_cast<char>(rng());
      }
    }
    raftpb::RaftMessage wire;
    if (!wire.ParseFromString(bytes)) continue;
    absl::StatusOr<Message> m = DecodeMessage(wire);
    if (!m.ok()) {
      ASSERT_EQ(m.status().code(), absl::StatusCode::kInvalidArgument) << m.status();
      ASSERT_FALSE(m.status().message().empty());
      ++refused;
      continue;
    }
    ++decoded;
    raftpb::RaftMessage again;
    ASSERT_TRUE(EncodeMessage(*m, kCluster, &again).ok());
    absl::StatusOr<Message> m2 = DecodeMessage(again);
    ASSERT_TRUE(m2.ok()) << m2.status();
    ExpectSame(*m, *m2);
  }
  // Both outcomes were exercised.
  EXPECT_GT(decoded, 100);
  EXPECT_GT(refused, 100);
}

}  // namespace
}  // namespace quorumkv::server
