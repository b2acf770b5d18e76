// Value types (raft/types.h), configuration validation (raft/config.h),
// construction and input validation of the core.
#include <gtest/gtest.h>

#include "raft/check.h"
#include "raft/config.h"
#include "raft/message.h"
#include "raft/types.h"
#include "tests/raft/raft_test_util.h"

namespace quorumkv::raft::testing {
namespace {

TEST(ConfChange, EncodeDecodeRoundTrip) {
  const std::string binary("a\0b\xff", 4);
  for (ConfChangeType type : {ConfChangeType::kAddLearner, ConfChangeType::kPromoteLearner,
                              ConfChangeType::kRemoveNode, ConfChangeType::kAddVoter}) {
    for (const std::string& context : {std::string(), std::string("10.0.0.7:7000"), binary, std::string(5000, 'c')}) {
      for (uint64_t id : {uint64_t{1}, uint64_t{42}, UINT64_MAX}) {
        ConfChange cc{type, NodeId(id), context};
        std::optional<ConfChange> back = ConfChange::Decode(cc.Encode());
        ASSERT_TRUE(back.has_value());
        EXPECT_EQ(*back, cc);
      }
    }
  }
}

TEST(ConfChange, MalformedBytesRejected) {
  const std::string good = ConfChange{ConfChangeType::kAddVoter, NodeId(7), "ctx"}.Encode();
  EXPECT_FALSE(ConfChange::Decode("").has_value());
  EXPECT_FALSE(ConfChange::Decode(std::string(1, '\x01')).has_value());
  std::string bad_version = good;
  bad_version[0] = 2;
  EXPECT_FALSE(ConfChange::Decode(bad_version).has_value());
  std::string bad_type = good;
  bad_type[1] = 4;
  EXPECT_FALSE(ConfChange::Decode(bad_type).has_value());
  bad_type[1] = static_cast<char>(0xff);
  EXPECT_FALSE(ConfChange::Decode(bad_type).has_value());
  // Every truncation, and trailing garbage, is refused.
  for (size_t n = 0; n < good.size(); ++n) {
    EXPECT_FALSE(ConfChange::Decode(good.substr(0, n)).has_value()) << "prefix of " << n << " bytes";
  }
  EXPECT_FALSE(ConfChange::Decode(good + "x").has_value());
  // A length field larger than the input (even absurdly so) is refused.
  std::string huge_len = good;
  for (int i = 0; i < 8; ++i) huge_len[10 + i] = static_cast<char>(0xff);
  EXPECT_FALSE(ConfChange::Decode(huge_len).has_value());
}

// Any single corrupted byte either fails to decode or decodes to a change
// whose encoding is exactly the corrupted bytes (the format is canonical).
TEST(ConfChange, SingleByteCorruptionNeverMisdecodes) {
  const std::string good = ConfChange{ConfChangeType::kRemoveNode, NodeId(3), "ab"}.Encode();
  for (size_t pos = 0; pos < good.size(); ++pos) {
    for (int delta : {1, 0x80}) {
      std::string bad = good;
      bad[pos] = static_cast<char>(static_cast<uint8_t>(bad[pos]) ^ delta);
      std::optional<ConfChange> cc = ConfChange::Decode(bad);
      if (cc) {
        EXPECT_EQ(cc->Encode(), bad) << "byte " << pos;
      }
    }
  }
}

TEST(ConfChange, ApplyIsTotalAndDeterministic) {
  const ConfState base = Voters({1, 2, 3}, {4});
  EXPECT_EQ(ApplyConfChange(base, {ConfChangeType::kAddLearner, N(5), ""}), Voters({1, 2, 3}, {4, 5}));
  EXPECT_EQ(ApplyConfChange(base, {ConfChangeType::kAddLearner, N(4), ""}), base);
  EXPECT_EQ(ApplyConfChange(base, {ConfChangeType::kAddLearner, N(2), ""}), base);  // a voter stays one
  EXPECT_EQ(ApplyConfChange(base, {ConfChangeType::kPromoteLearner, N(4), ""}), Voters({1, 2, 3, 4}));
  EXPECT_EQ(ApplyConfChange(base, {ConfChangeType::kPromoteLearner, N(9), ""}), base);
  EXPECT_EQ(ApplyConfChange(base, {ConfChangeType::kAddVoter, N(4), ""}), Voters({1, 2, 3, 4}));
  EXPECT_EQ(ApplyConfChange(base, {ConfChangeType::kAddVoter, N(6), ""}), Voters({1, 2, 3, 6}, {4}));
  EXPECT_EQ(ApplyConfChange(base, {ConfChangeType::kAddVoter, N(2), ""}), base);
  EXPECT_EQ(ApplyConfChange(base, {ConfChangeType::kRemoveNode, N(2), ""}), Voters({1, 3}, {4}));
  EXPECT_EQ(ApplyConfChange(base, {ConfChangeType::kRemoveNode, N(4), ""}), Voters({1, 2, 3}));
  EXPECT_EQ(ApplyConfChange(base, {ConfChangeType::kRemoveNode, N(8), ""}), base);
}

TEST(ConfState, MembershipAndPrinting) {
  const ConfState c = Voters({1, 3}, {2});
  EXPECT_TRUE(c.IsVoter(N(1)));
  EXPECT_FALSE(c.IsVoter(N(2)));
  EXPECT_TRUE(c.IsLearner(N(2)));
  EXPECT_TRUE(c.Contains(N(2)));
  EXPECT_FALSE(c.Contains(N(4)));
  EXPECT_EQ(c.ToString(), "voters=[1,3] learners=[2]");
  EXPECT_STREQ(RoleName(Role::kPreCandidate), "pre-candidate");
}

// ---------------------------------------------------------------------------
// Config::Validate: every bad setting is a clear INVALID_ARGUMENT.

Config GoodConfig() { return MakeConfig(N(1), Ids({1, 2, 3}), std::make_shared<TestRandom>(1)); }

void ExpectInvalid(const Config& c, const std::string& words) {
  absl::Status s = c.Validate();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_NE(s.message().find(words), std::string::npos) << s;
}

TEST(Config, ValidateAcceptsADefaultConfiguration) {
  EXPECT_TRUE(GoodConfig().Validate().ok());
  Config joining = GoodConfig();
  joining.initial_voters.clear();
  EXPECT_TRUE(joining.Validate().ok());
}

TEST(Config, ValidateRejectsEachBadSetting) {
  Config c = GoodConfig();
  c.id = kNoNode;
  ExpectInvalid(c, "node id");
  c = GoodConfig();
  c.heartbeat_interval_ticks = 0;
  ExpectInvalid(c, "heartbeat");
  c = GoodConfig();
  c.election_timeout_ticks = 1;
  ExpectInvalid(c, "election timeout");
  c = GoodConfig();
  c.lease_drift_margin_ticks = -1;
  ExpectInvalid(c, "drift");
  c = GoodConfig();
  c.lease_drift_margin_ticks = 9;  // a lease of 1 tick: not above the heartbeat
  ExpectInvalid(c, "lease");
  c = GoodConfig();
  c.max_entries_per_message = 0;
  ExpectInvalid(c, "batching");
  c = GoodConfig();
  c.max_bytes_per_message = 0;
  ExpectInvalid(c, "batching");
  c = GoodConfig();
  c.max_inflight_messages = 0;
  ExpectInvalid(c, "batching");
  c = GoodConfig();
  c.max_uncommitted_entries = 0;
  ExpectInvalid(c, "uncommitted");
  c = GoodConfig();
  c.initial_voters = Ids({1, 0});
  ExpectInvalid(c, "voter id 0");
  c = GoodConfig();
  c.initial_voters = Ids({1, 2, 2});
  ExpectInvalid(c, "twice");
  c = GoodConfig();
  c.initial_voters = Ids({2, 3});
  ExpectInvalid(c, "include this node");
  c = GoodConfig();
  c.random = nullptr;
  ExpectInvalid(c, "random");
}

TEST(Raft, CreateRejectsBadArguments) {
  MemoryLogStorage s;
  Config bad = GoodConfig();
  bad.election_timeout_ticks = 0;
  EXPECT_EQ(Raft::Create(bad, &s).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Raft::Create(GoodConfig(), nullptr).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(Raft, StepRejectsMisaddressedMessages) {
  auto node = TestNode::Fresh(1, {1, 2, 3});
  node->Drain();
  EXPECT_EQ(node->raft().Step(Heartbeat(2, 3, 1, 0)).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(node->raft().Step(Heartbeat(1, 1, 1, 0)).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(node->raft().Step(Heartbeat(0, 1, 1, 0)).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_FALSE(node->raft().HasReady());
  EXPECT_EQ(node->raft().term(), T(1));
}

// A brand-new node bootstraps its log: one committed kAddVoter entry per
// initial voter, in id order, at term 1 — identical on every founder.
TEST(Raft, BootstrapWritesInitialConfigurationToTheLog) {
  auto node = TestNode::Fresh(2, {3, 1, 2});
  Ready rd = node->raft().GetReady();
  ASSERT_TRUE(rd.hard_state.has_value());
  EXPECT_EQ(*rd.hard_state, (HardState{T(1), kNoNode, I(3)}));
  ASSERT_EQ(rd.entries.size(), 3u);
  for (size_t k = 0; k < 3; ++k) {
    EXPECT_EQ(rd.entries[k].index, I(k + 1));
    EXPECT_EQ(rd.entries[k].term, T(1));
    EXPECT_EQ(rd.entries[k].type, EntryType::kConfChange);
    EXPECT_EQ(ConfChange::Decode(rd.entries[k].data), (ConfChange{ConfChangeType::kAddVoter, N(k + 1), ""}));
  }
  EXPECT_EQ(rd.committed_entries, rd.entries);
  EXPECT_EQ(node->raft().conf_state(), Voters({1, 2, 3}));
  EXPECT_EQ(node->raft().role(), Role::kFollower);
  EXPECT_EQ(rd.entries, TestNode::Fresh(1, {1, 2, 3})->raft().GetReady().entries);
}

// A node that joins later has no configuration: it never campaigns and
// waits for a leader.
TEST(Raft, JoiningNodeWaitsForALeader) {
  auto node = TestNode::Fresh(4, {});
  node->Drain();
  EXPECT_EQ(node->raft().term(), T(0));
  EXPECT_TRUE(node->raft().conf_state().voters.empty());
  node->Tick(100);
  EXPECT_EQ(node->raft().role(), Role::kFollower);
  EXPECT_TRUE(node->Drain().empty());
}

// A restarted node reports nothing until something changes.
TEST(Raft, RestartedNodeHasNoReady) {
  auto node = TestNode::Fresh(1, {1, 2, 3});
  node->Drain();
  node->Crash();
  node->Restart();
  EXPECT_FALSE(node->raft().HasReady());
  EXPECT_EQ(node->raft().conf_state(), Voters({1, 2, 3}));
  EXPECT_EQ(node->raft().commit_index(), I(3));
  EXPECT_EQ(node->raft().applied_index(), I(3));
}

TEST(Message, DebugStringNamesTheType) {
  EXPECT_NE(VoteRequest(1, 2, 3, 4, 5, true).DebugString().find("RequestVote 1->2 term=3 pre"), std::string::npos);
  EXPECT_NE(AppendEntries(1, 2, 3, 4, 2, MakeEntries(I(5), {3}), 4).DebugString().find("prev=4/2 n=1 [5..5]"),
            std::string::npos);
  EXPECT_NE(AppendRejected(2, 1, 3, 9, 4, 2).DebugString().find("reject at=9 hint=4/2"), std::string::npos);
  EXPECT_STREQ(MessageTypeName(MessageType::kTimeoutNow), "TimeoutNow");
}

// Invariant checks stay on (also in release builds) and call the installed
// handler (the simulator's) before aborting.
void PrintMarker(const std::string& message) { std::fprintf(stderr, "HANDLER SAW: %s\n", message.c_str()); }

TEST(Check, InvariantViolationCallsHandlerThenAborts) {
  EXPECT_DEATH(
      {
        SetCheckFailureHandler(&PrintMarker);
        QKV_CHECK(1 + 1 == 3, "arithmetic");
      },
      "HANDLER SAW: .*arithmetic");
  SetCheckFailureHandler(nullptr);
}

}  // namespace
}  // namespace quorumkv::raft::testing
