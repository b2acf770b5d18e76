// Messages no correct peer sends (DESIGN.md: bad input gets a clear error,
// never a crash). Raft::Step refuses them with InvalidArgument before any
// state changes, so a faulty or malicious peer can neither crash a node
// (the core's QKV_CHECKs guard its own invariants, not its peers') nor
// wedge the cluster with a term that wraps.
#include <gtest/gtest.h>

#include <limits>

#include "tests/raft/raft_test_util.h"

namespace quorumkv::raft::testing {
namespace {

void ExpectRefused(TestNode& node, const Message& m, const std::string& fragment) {
  const Term term = node.raft().term();
  const Index last = node.raft().last_index();
  const Index commit = node.raft().commit_index();
  absl::Status s = node.raft().Step(m);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_NE(s.message().find(fragment), std::string::npos) << s;
  EXPECT_EQ(node.raft().term(), term);
  EXPECT_EQ(node.raft().last_index(), last);
  EXPECT_EQ(node.raft().commit_index(), commit);
  EXPECT_TRUE(node.Drain().empty());
}

std::unique_ptr<TestNode> Follower() {
  auto node = TestNode::WithLog(1, Voters({1, 2, 3}), {1, 1, 2}, HardState{T(2), kNoNode, I(1)});
  node->Drain();
  return node;
}

TEST(PeerInput, TermBeyondAnyReachableOneRefused) {
  auto f = Follower();
  Message m = VoteResponse(2, 1, std::numeric_limits<uint64_t>::max(), false);
  ExpectRefused(*f, m, "beyond any reachable term or index");
  ExpectRefused(*f, Heartbeat(2, 1, kMaxPeerTermOrIndex, 1), "beyond any reachable term or index");
  // The largest allowed term is adopted as usual.
  ASSERT_TRUE(f->raft().Step(Heartbeat(2, 1, kMaxPeerTermOrIndex - 1, 1)).ok());
  EXPECT_EQ(f->raft().term(), T(kMaxPeerTermOrIndex - 1));
}

TEST(PeerInput, SnapshotAtAnAbsurdIndexRefused) {
  auto f = Follower();
  SnapshotMeta meta{Index(std::numeric_limits<uint64_t>::max()), T(2), Voters({1, 2, 3})};
  ExpectRefused(*f, InstallSnapshot(2, 1, 2, meta), "beyond any reachable term or index");
  meta = SnapshotMeta{I(10), T(3), Voters({1, 2, 3})};
  ExpectRefused(*f, InstallSnapshot(2, 1, 2, meta), "snapshot's term is above the message's");
}

TEST(PeerInput, AppendEntriesWithABrokenRunRefused) {
  auto f = Follower();
  ExpectRefused(*f, AppendEntries(2, 1, 2, 3, 2, MakeEntries(I(5), {2}), 1), "expected 4");
  ExpectRefused(*f, AppendEntries(2, 1, 2, 3, 2, MakeEntries(I(4), {3}), 1), "above the message's term");
  ExpectRefused(*f, AppendEntries(2, 1, 2, 3, 2, MakeEntries(I(4), {1}), 1), "below the term before it");
  Message heartbeat_with_entries = AppendEntries(2, 1, 2, 3, 2, MakeEntries(I(4), {2}), 1);
  heartbeat_with_entries.heartbeat = true;
  ExpectRefused(*f, heartbeat_with_entries, "a heartbeat carries entries");
}

// Applying it would either abort (the configuration log must decode) or
// leave this node's configuration different from its leader's.
TEST(PeerInput, UndecodableConfigurationEntryRefused) {
  auto f = Follower();
  std::vector<Entry> entries = MakeEntries(I(4), {2});
  entries[0].type = EntryType::kConfChange;
  entries[0].data = "not a configuration change";
  ExpectRefused(*f, AppendEntries(2, 1, 2, 3, 2, entries, 1), "configuration entry 4 does not decode");
}

// A leader sends min(the follower's match, its commit) in heartbeats:
// committing beyond the follower's log would mark unknown entries committed.
TEST(PeerInput, HeartbeatCommittingBeyondTheLogRefused) {
  auto f = Follower();
  ExpectRefused(*f, Heartbeat(2, 1, 2, 9), "commits index 9, beyond this node's last index 3");
  ASSERT_TRUE(f->raft().Step(Heartbeat(2, 1, 2, 3)).ok());
  EXPECT_EQ(f->raft().commit_index(), I(3));
}

// A follower acknowledging entries its leader never had would break the
// leader's progress invariant (match <= last index) and count toward commit.
TEST(PeerInput, AcknowledgementBeyondTheLeadersLogRefused) {
  Network net({1, 2, 3});
  net.Elect(1);
  const uint64_t term = net.raft(1).term().value();
  const uint64_t last = net.raft(1).last_index().value();
  ExpectRefused(net.node(1), AppendAccepted(2, 1, term, last + 5), "acknowledges index");
  EXPECT_EQ(net.raft(1).role(), Role::kLeader);
  ASSERT_TRUE(net.raft(1).Step(AppendAccepted(2, 1, term, last)).ok());
}

TEST(PeerInput, SnapshotConfigurationWithANodeBothVoterAndLearnerRefused) {
  auto f = Follower();
  SnapshotMeta meta{I(10), T(2), ConfState{{N(1), N(2), N(3)}, {N(3)}}};
  ExpectRefused(*f, InstallSnapshot(2, 1, 2, meta), "node 3 is both a voter and a learner");
  meta = SnapshotMeta{I(10), T(2), ConfState{{N(2), N(1)}, {}}};
  ExpectRefused(*f, InstallSnapshot(2, 1, 2, meta), "not strictly ascending");
}

// Two different logs from one leader in one term cannot come from a correct
// peer, and the node cannot tell. Whatever it believes, it must not
// acknowledge entries it replaced before persisting them.
TEST(PeerInput, AcknowledgementOfEntriesReplacedInTheSameTermNeverSent) {
  auto f = Follower();
  f->Step(AppendEntries(2, 1, 3, 3, 2, MakeEntries(I(4), {2, 2, 2}), 1));  // acked as match 6
  f->Step(AppendEntries(2, 1, 3, 3, 2, MakeEntries(I(4), {3}), 1));        // replaces 4..6
  std::vector<Message> out = f->Drain();
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].match_index, I(4));
  EXPECT_EQ(f->raft().last_index(), I(4));
}

}  // namespace
}  // namespace quorumkv::raft::testing
