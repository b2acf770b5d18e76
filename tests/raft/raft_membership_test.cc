// Single-server membership changes (thesis §4.1) and learners (§4.2.1),
// removed servers (§4.2.2, §4.2.3).
#include <gtest/gtest.h>

#include "tests/raft/raft_test_util.h"

namespace quorumkv::raft::testing {
namespace {

constexpr int kElection = 10;

ConfChange Change(ConfChangeType type, uint64_t node) { return ConfChange{type, N(node), "addr"}; }

NetworkOptions NoAutoPromote() {
  NetworkOptions options;
  options.tweak = [](Config& c) { c.auto_promote_learners = false; };
  return options;
}

// Thesis §4.1: a server uses the latest configuration in its log, whether
// or not it is committed — the leader as soon as it appends the entry, a
// follower as soon as it stores it.
TEST(Membership, Section4_1_ConfigurationTakesEffectWhenAppended) {
  Network net({1, 2, 3}, NoAutoPromote());
  net.Elect(1);
  net.drop = [](const Message& m) { return m.type == MessageType::kAppendEntriesResponse; };
  auto r = net.raft(1).ProposeConfChange(Change(ConfChangeType::kAddLearner, 4));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(net.raft(1).conf_state(), Voters({1, 2, 3}, {4}));
  EXPECT_TRUE(net.raft(1).GetStatus().progress.contains(N(4)));
  net.Drain(1);
  net.Deliver();
  EXPECT_LT(net.raft(2).commit_index(), r->first);
  EXPECT_EQ(net.raft(2).conf_state(), Voters({1, 2, 3}, {4}));
  EXPECT_EQ(net.raft(3).conf_state(), Voters({1, 2, 3}, {4}));
}

// Thesis §4.1: one change at a time — a second one is refused while the
// first is uncommitted, and accepted once it commits.
TEST(Membership, Section4_1_OneChangeAtATime) {
  Network net({1, 2, 3}, NoAutoPromote());
  net.Elect(1);
  net.drop = [](const Message& m) { return m.type == MessageType::kAppendEntriesResponse; };
  ASSERT_TRUE(net.raft(1).ProposeConfChange(Change(ConfChangeType::kAddLearner, 4)).ok());
  auto second = net.raft(1).ProposeConfChange(Change(ConfChangeType::kAddLearner, 5));
  EXPECT_EQ(second.status().code(), absl::StatusCode::kUnavailable) << second.status();  // for now
  net.Drain(1);
  net.Deliver();
  net.drop = nullptr;
  net.TickAll(2);
  EXPECT_TRUE(net.raft(1).ProposeConfChange(Change(ConfChangeType::kAddLearner, 5)).ok());
}

// The single-server change bug (Ongaro, raft-dev 2015): a new leader must
// commit an entry of its own term before it may change the configuration;
// otherwise a change of an earlier term that it does not know about can
// combine with its own into two disjoint majorities.
TEST(Membership, SingleServerChangeBug_NewLeaderMustCommitInItsTermFirst) {
  Network net({1, 2, 3}, NoAutoPromote());
  net.drop = [](const Message& m) { return m.type == MessageType::kAppendEntriesResponse && !m.heartbeat; };
  net.Elect(1);
  ASSERT_LT(net.raft(1).commit_index(), net.raft(1).last_index());  // the no-op is not committed
  auto early = net.raft(1).ProposeConfChange(Change(ConfChangeType::kAddLearner, 4));
  EXPECT_EQ(early.status().code(), absl::StatusCode::kUnavailable) << early.status();  // for now
  EXPECT_EQ(net.raft(1).conf_state(), Voters({1, 2, 3}));
  net.drop = nullptr;
  net.TickAll(2);
  ASSERT_EQ(net.raft(1).commit_index(), net.raft(1).last_index());
  EXPECT_TRUE(net.raft(1).ProposeConfChange(Change(ConfChangeType::kAddLearner, 4)).ok());
}

TEST(Membership, Section4_1_RemovingTheLastVoterRefused) {
  auto node = TestNode::Fresh(1, {1});
  ElectByHand(*node);
  auto r = node->raft().ProposeConfChange(Change(ConfChangeType::kRemoveNode, 1));
  EXPECT_EQ(r.status().code(), absl::StatusCode::kFailedPrecondition) << r.status();
  EXPECT_EQ(node->raft().conf_state(), Voters({1}));
  auto missing = node->raft().ProposeConfChange(Change(ConfChangeType::kRemoveNode, 7));
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound) << missing.status();
}

TEST(Membership, Section4_1_AddingAMemberTwiceRefused) {
  Network net({1, 2, 3}, NoAutoPromote());
  net.Elect(1);
  Raft& leader = net.raft(1);
  EXPECT_EQ(leader.ProposeConfChange(Change(ConfChangeType::kAddVoter, 2)).status().code(),
            absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(leader.ProposeConfChange(Change(ConfChangeType::kAddLearner, 3)).status().code(),
            absl::StatusCode::kAlreadyExists);
  ASSERT_TRUE(leader.ProposeConfChange(Change(ConfChangeType::kAddLearner, 4)).ok());
  net.Drain(1);
  net.Deliver();
  EXPECT_EQ(leader.ProposeConfChange(Change(ConfChangeType::kAddLearner, 4)).status().code(),
            absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(leader.ProposeConfChange(Change(ConfChangeType::kAddVoter, 4)).status().code(),
            absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(leader.ProposeConfChange(Change(ConfChangeType::kPromoteLearner, 2)).status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(leader.ProposeConfChange(Change(ConfChangeType::kAddLearner, 0)).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(leader.conf_state(), Voters({1, 2, 3}, {4}));
  EXPECT_EQ(net.raft(2).ProposeConfChange(Change(ConfChangeType::kAddLearner, 5)).status().code(),
            absl::StatusCode::kFailedPrecondition);  // not the leader
}

// Thesis §4.2.2: a leader removed from the configuration keeps managing the
// cluster — replicating, but not counting itself — until the change is
// committed, then steps down; it never campaigns again.
TEST(Membership, Section4_2_2_RemovedLeaderStepsDownAfterChangeCommits) {
  Network net({1, 2, 3}, NoAutoPromote());
  net.Elect(1);
  const Term term = net.raft(1).term();
  net.drop = [](const Message& m) { return m.from == N(3) && m.type == MessageType::kAppendEntriesResponse; };
  auto r = net.raft(1).ProposeConfChange(Change(ConfChangeType::kRemoveNode, 1));
  ASSERT_TRUE(r.ok());
  EXPECT_FALSE(net.raft(1).conf_state().IsVoter(N(1)));
  net.Drain(1);
  net.Deliver();
  // Leader and node 2 hold the entry: a majority of the old configuration,
  // but not of the new one ({2, 3}), which alone decides.
  EXPECT_LT(net.raft(1).commit_index(), r->first);
  EXPECT_EQ(net.raft(1).role(), Role::kLeader);

  net.drop = nullptr;
  net.TickAll(1);
  EXPECT_GE(net.raft(1).commit_index(), r->first);
  EXPECT_EQ(net.raft(1).role(), Role::kFollower);
  net.TickAll(2);
  uint64_t leader = 0;
  for (uint64_t id : {2, 3}) {
    if (net.raft(id).role() == Role::kLeader) leader = id;
  }
  ASSERT_NE(leader, 0u) << "the removed leader handed over with TimeoutNow";
  EXPECT_EQ(net.raft(leader).term(), term + 1);
  const size_t sent_before = net.sent.size();
  net.TickAll(10 * kElection);
  for (size_t k = sent_before; k < net.sent.size(); ++k) {
    EXPECT_NE(net.sent[k].type == MessageType::kRequestVote && net.sent[k].from == N(1), true)
        << "the removed node campaigns: " << net.sent[k].DebugString();
  }
  EXPECT_EQ(net.raft(leader).role(), Role::kLeader);
  net.ProposeAndCommit(leader, "two-node cluster");
}

// A leader that removed itself but is cut off from the new configuration
// cannot commit the change; like any leader without a quorum (CheckQuorum,
// pitfall "Disk hang on the leader") it steps down after an election
// timeout instead of claiming leadership forever.
TEST(Membership, Section4_2_2_RemovedLeaderWithoutQuorumStepsDown) {
  Network net({1, 2, 3}, NoAutoPromote());
  net.Elect(1);
  net.Isolate(1);
  ASSERT_TRUE(net.raft(1).ProposeConfChange(Change(ConfChangeType::kRemoveNode, 1)).ok());
  net.Drain(1);
  for (int i = 0; i < kElection && net.raft(1).role() == Role::kLeader; ++i) net.Tick(1);
  EXPECT_EQ(net.raft(1).role(), Role::kFollower);
}

// Thesis §4.2.3: a removed server that never learned of its removal keeps
// timing out, but cannot disrupt the cluster: its pre-votes fail and no
// term moves.
TEST(Membership, Section4_2_3_RemovedServerDoesNotDisruptCluster) {
  Network net({1, 2, 3}, NoAutoPromote());
  net.Elect(1);
  const Term term = net.raft(1).term();
  net.Isolate(3);
  ASSERT_TRUE(net.raft(1).ProposeConfChange(Change(ConfChangeType::kRemoveNode, 3)).ok());
  net.Drain(1);
  net.Deliver();
  net.TickAll(2 * kElection);
  ASSERT_EQ(net.raft(1).conf_state(), Voters({1, 2}));
  EXPECT_TRUE(net.raft(3).conf_state().IsVoter(N(3)));  // it never heard
  net.Rejoin(3);
  net.TickAll(10 * kElection);
  EXPECT_EQ(net.raft(1).role(), Role::kLeader);
  EXPECT_EQ(net.raft(1).term(), term);
  EXPECT_EQ(net.raft(2).term(), term);
  net.ProposeAndCommit(1, "undisturbed");
}

// Thesis §4.1: when a new leader truncates an uncommitted configuration
// entry, the follower falls back to the previous configuration.
TEST(Membership, Section4_1_ConfEntryTruncatedByNewLeaderRevertsConfiguration) {
  auto f = TestNode::Fresh(3, {1, 2, 3});
  f->Drain();
  // Leader 1 (term 2) sends its no-op and "add learner 4".
  f->Step(AppendEntries(1, 3, 2, 3, 1,
                        {MakeEntry(I(4), T(2), EntryType::kNoOp),
                         ConfEntry(I(5), T(2), ConfChangeType::kAddLearner, N(4))},
                        4));
  f->Drain();
  ASSERT_EQ(f->raft().conf_state(), Voters({1, 2, 3}, {4}));
  ASSERT_EQ(f->raft().commit_index(), I(4));
  // Leader 2 (term 3) never had index 5: its no-op overwrites it.
  f->Step(AppendEntries(2, 3, 3, 4, 2, {MakeEntry(I(5), T(3), EntryType::kNoOp)}, 4));
  f->Drain();
  EXPECT_EQ(StoredTerms(f->storage), (std::vector<uint64_t>{1, 1, 1, 2, 3}));
  EXPECT_EQ(f->raft().conf_state(), Voters({1, 2, 3}));
  // A restart rebuilds the same configuration from the log.
  f->Crash();
  f->Restart();
  EXPECT_EQ(f->raft().conf_state(), Voters({1, 2, 3}));
}

// The same for the leader that appended the entry: deposed before it could
// commit it, it reverts when the new leader overwrites its log.
TEST(Membership, Section4_1_DeposedLeaderRevertsItsUncommittedConfiguration) {
  Network net({1, 2, 3}, NoAutoPromote());
  net.Elect(1);
  net.Isolate(1);
  auto r = net.raft(1).ProposeConfChange(Change(ConfChangeType::kAddLearner, 4));
  ASSERT_TRUE(r.ok());
  net.Drain(1);
  ASSERT_EQ(net.raft(1).conf_state(), Voters({1, 2, 3}, {4}));
  net.Elect(2);
  net.Rejoin(1);
  net.TickAll(3);
  EXPECT_EQ(net.raft(1).leader(), N(2));
  EXPECT_EQ(net.raft(1).conf_state(), Voters({1, 2, 3}));
  EXPECT_EQ(StoredTerms(net.node(1).storage), StoredTerms(net.node(2).storage));
}

// ---------------------------------------------------------------------------
// Learners (thesis §4.2.1; NuRaft #553).

TEST(Learners, Section4_2_1_LearnersNeverCampaign) {
  Network net({1, 2, 3}, NoAutoPromote());
  net.AddJoiningNode(4);
  net.Elect(1);
  ASSERT_TRUE(net.raft(1).ProposeConfChange(Change(ConfChangeType::kAddLearner, 4)).ok());
  net.Drain(1);
  net.Deliver();
  ASSERT_EQ(net.raft(4).conf_state(), Voters({1, 2, 3}, {4}));
  // Every voter is gone; the learner alone keeps ticking.
  for (uint64_t id : {1, 2, 3}) net.Crash(id);
  for (int i = 0; i < 10 * kElection; ++i) net.Tick(4);
  EXPECT_EQ(net.raft(4).role(), Role::kFollower);
  for (const Message& m : net.sent) {
    EXPECT_FALSE(m.from == N(4) && m.type == MessageType::kRequestVote) << m.DebugString();
  }
}

// Learners count toward no quorum: commit, elections, CheckQuorum.
TEST(Learners, Section4_2_1_LearnerAcksDoNotCommit) {
  Network net({1, 2, 3}, NoAutoPromote());
  net.AddJoiningNode(4);
  net.Elect(1);
  ASSERT_TRUE(net.raft(1).ProposeConfChange(Change(ConfChangeType::kAddLearner, 4)).ok());
  net.Drain(1);
  net.Deliver();
  net.Isolate(2);
  net.Isolate(3);
  auto r = net.raft(1).Propose("x");
  ASSERT_TRUE(r.ok());
  net.Drain(1);
  net.Deliver();
  EXPECT_EQ(net.raft(4).last_index(), r->first);  // the learner has it
  EXPECT_LT(net.raft(1).commit_index(), r->first);  // leader + learner is no quorum
  // Nor does the learner's contact keep the leader in office.
  net.TickNodes({1, 4}, kElection + 1);
  EXPECT_EQ(net.raft(1).role(), Role::kFollower);
}

TEST(Learners, Section4_2_1_LearnerVotesNotCounted) {
  auto node = TestNode::WithLog(1, Voters({1, 2, 3}, {4}), {1, 1}, HardState{T(1), kNoNode, I(2)});
  node->Drain();
  ASSERT_TRUE(TickUntil(*node, [&] { return node->raft().role() != Role::kFollower; }));
  std::vector<Message> reqs = OfType(node->Drain(), MessageType::kRequestVote);
  for (const Message& m : reqs) EXPECT_NE(m.to, N(4)) << "asked a learner for a vote";
  node->Step(VoteResponse(4, 1, 2, true, true));
  EXPECT_EQ(node->raft().role(), Role::kPreCandidate);
  node->Step(VoteResponse(2, 1, 2, true, true));
  EXPECT_EQ(node->raft().role(), Role::kCandidate);
  node->Drain();
  node->Step(VoteResponse(4, 1, 2, true));
  EXPECT_EQ(node->raft().role(), Role::kCandidate);
  node->Step(VoteResponse(3, 1, 2, true));
  EXPECT_EQ(node->raft().role(), Role::kLeader);
}

// A learner that has caught up with the commit index is promoted by the
// leader; one that lags is not (it would stall commits while catching up).
TEST(Learners, Section4_2_1_CaughtUpLearnerIsAutoPromoted) {
  Network net({1, 2, 3});
  net.AddJoiningNode(4);
  net.Elect(1);
  net.Isolate(4);
  ASSERT_TRUE(net.raft(1).ProposeConfChange(Change(ConfChangeType::kAddLearner, 4)).ok());
  net.Drain(1);
  net.Deliver();
  net.TickAll(3);
  EXPECT_EQ(net.raft(1).conf_state(), Voters({1, 2, 3}, {4}));  // lagging: still a learner
  net.Rejoin(4);
  net.TickAll(3);
  for (uint64_t id : {1, 2, 3, 4}) {
    EXPECT_EQ(net.raft(id).conf_state(), Voters({1, 2, 3, 4})) << "node " << id;
  }
  // Node 4 now counts: with 1 and 4 alone there is no majority of four.
  net.Isolate(2);
  net.Isolate(3);
  auto r = net.raft(1).Propose("x");
  ASSERT_TRUE(r.ok());
  net.Drain(1);
  net.Deliver();
  EXPECT_LT(net.raft(1).commit_index(), r->first);
  net.Rejoin(2);
  net.TickAll(1);
  EXPECT_EQ(net.raft(1).commit_index(), r->first);
}

// A learner promoted by hand becomes a voter, and can then win elections.
TEST(Learners, Section4_2_1_PromotedLearnerCanLead) {
  Network net({1, 2, 3}, NoAutoPromote());
  net.AddJoiningNode(4);
  net.Elect(1);
  ASSERT_TRUE(net.raft(1).ProposeConfChange(Change(ConfChangeType::kAddLearner, 4)).ok());
  net.Drain(1);
  net.Deliver();
  ASSERT_TRUE(net.raft(1).ProposeConfChange(Change(ConfChangeType::kPromoteLearner, 4)).ok());
  net.Drain(1);
  net.Deliver();
  ASSERT_EQ(net.raft(4).conf_state(), Voters({1, 2, 3, 4}));
  ASSERT_TRUE(net.raft(1).TransferLeadership(N(4)).ok());
  net.Drain(1);
  net.Deliver();
  EXPECT_EQ(net.raft(4).role(), Role::kLeader);
}

}  // namespace
}  // namespace quorumkv::raft::testing
