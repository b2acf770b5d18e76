// PreVote (thesis §9.6), leader stickiness (thesis §4.2.3) and CheckQuorum
// (thesis §6.2).
#include <gtest/gtest.h>

#include "tests/raft/raft_test_util.h"

namespace quorumkv::raft::testing {
namespace {

constexpr int kElection = 10;

Message OnlyVoteResponse(const std::vector<Message>& msgs) {
  std::vector<Message> r = OfType(msgs, MessageType::kRequestVoteResponse);
  EXPECT_EQ(r.size(), 1u);
  return r.empty() ? Message{} : r.front();
}

// Pitfall "PreVote that bumps a term" (etcd #8334), candidate side: a
// pre-candidate keeps its term and its vote, persists nothing, and asks in
// the term it *would* campaign in.
TEST(PreVote, Pitfall_PreVoteThatBumpsATerm_PreCandidateSide) {
  auto node = TestNode::WithLog(1, Voters({1, 2, 3}), {1, 1, 5}, HardState{T(5), N(3), I(2)});
  node->Drain();
  const uint64_t persists = node->storage.persist_calls();
  ASSERT_TRUE(TickUntil(*node, [&] { return node->raft().role() != Role::kFollower; }));
  ASSERT_EQ(node->raft().role(), Role::kPreCandidate);
  EXPECT_EQ(node->raft().term(), T(5));
  EXPECT_EQ(node->raft().voted_for(), N(3));
  Ready rd = node->raft().GetReady();
  EXPECT_FALSE(rd.hard_state.has_value());
  EXPECT_TRUE(rd.entries.empty());
  std::vector<Message> reqs = OfType(rd.messages, MessageType::kRequestVote);
  ASSERT_EQ(reqs.size(), 2u);
  for (const Message& m : reqs) {
    EXPECT_TRUE(m.pre_vote);
    EXPECT_EQ(m.term, T(6));
  }
  node->raft().Advance(rd);
  EXPECT_EQ(node->storage.persist_calls(), persists);
  // Rejected by both: back to follower, still term 5 with its old vote.
  node->Step(VoteResponse(2, 1, 5, false, true));
  node->Step(VoteResponse(3, 1, 5, false, true));
  node->Drain();
  EXPECT_EQ(node->raft().role(), Role::kFollower);
  EXPECT_EQ(node->raft().term(), T(5));
  EXPECT_EQ(node->raft().voted_for(), N(3));
  EXPECT_EQ(node->storage.hard_state(), (HardState{T(5), N(3), I(2)}));
}

// The same pitfall, voter side: granting (or refusing) a pre-vote changes
// neither the voter's term nor its vote.
TEST(PreVote, Pitfall_PreVoteThatBumpsATerm_VoterSide) {
  auto voter = TestNode::WithLog(1, Voters({1, 2, 3}), {1, 1, 2}, HardState{T(2), N(3), I(2)});
  voter->Drain();
  voter->Tick(kElection);  // no leader heard: not sticky
  const uint64_t persists = voter->storage.persist_calls();

  voter->Step(VoteRequest(2, 1, 3, 3, 2, /*pre_vote=*/true));
  Ready rd = voter->raft().GetReady();
  EXPECT_FALSE(rd.hard_state.has_value());
  Message granted = OnlyVoteResponse(rd.messages);
  EXPECT_TRUE(granted.vote_granted);
  EXPECT_TRUE(granted.pre_vote);
  EXPECT_EQ(granted.term, T(3));  // the term asked for, so it matches the campaign
  voter->raft().Advance(rd);
  EXPECT_EQ(voter->raft().term(), T(2));
  EXPECT_EQ(voter->raft().voted_for(), N(3));

  voter->Step(VoteRequest(2, 1, 9, 1, 1, /*pre_vote=*/true));  // stale log
  Message refused = OnlyVoteResponse(voter->Drain());
  EXPECT_FALSE(refused.vote_granted);
  EXPECT_EQ(refused.term, T(2));
  EXPECT_EQ(voter->raft().term(), T(2));
  EXPECT_EQ(voter->raft().voted_for(), N(3));
  EXPECT_EQ(voter->storage.persist_calls(), persists);
}

// A pre-vote for the voter's own term is not granted once it voted for
// another candidate in that term.
TEST(PreVote, PreVoteForCurrentTermRespectsCastVote) {
  auto voter = TestNode::WithLog(1, Voters({1, 2, 3}), {1, 1, 2}, HardState{T(3), N(3), I(2)});
  voter->Drain();
  voter->Tick(kElection);
  voter->Step(VoteRequest(2, 1, 3, 3, 2, /*pre_vote=*/true));
  EXPECT_FALSE(OnlyVoteResponse(voter->Drain()).vote_granted);
}

// Thesis §9.6: a node cut off from the others keeps timing out, but its
// pre-votes fail, so its term never moves; when it comes back it neither
// raises the cluster's term nor deposes the healthy leader.
TEST(PreVote, Section9_6_RejoiningPartitionedNodeDoesNotDisruptLeader) {
  Network net({1, 2, 3});
  net.Elect(1);
  const Term term = net.raft(1).term();
  net.Isolate(3);
  net.TickAll(10 * kElection);
  EXPECT_EQ(net.raft(3).term(), term);
  EXPECT_NE(net.raft(3).role(), Role::kLeader);
  net.Rejoin(3);
  net.TickAll(3 * kElection);
  for (uint64_t id : {1, 2, 3}) {
    EXPECT_EQ(net.raft(id).term(), term) << "node " << id;
    EXPECT_EQ(net.raft(id).leader(), N(1)) << "node " << id;
  }
  EXPECT_EQ(net.raft(1).role(), Role::kLeader);
  for (const Message& m : net.sent) {
    if (m.from == N(3) && m.type == MessageType::kRequestVote) {
      EXPECT_TRUE(m.pre_vote) << "node 3 ran a real election: " << m.DebugString();
    }
  }
  net.ProposeAndCommit(1, "still available");
}

// etcd #9586: a pre-candidate forgets its leader (or two nodes that still
// remember a dead leader refuse each other's votes forever).
TEST(PreVote, Etcd9586_PreCandidateForgetsItsLeader) {
  Network net({1, 2, 3});
  net.Elect(1);
  ASSERT_EQ(net.raft(2).leader(), N(1));
  net.Crash(1);
  for (int i = 0; i < 3 * kElection && net.raft(2).role() == Role::kFollower; ++i) net.Tick(2);
  ASSERT_EQ(net.raft(2).role(), Role::kPreCandidate);
  EXPECT_EQ(net.raft(2).leader(), kNoNode);
  ASSERT_FALSE(net.node(2).soft_states.empty());
  EXPECT_EQ(net.node(2).soft_states.back(), (SoftState{kNoNode, Role::kPreCandidate}));
  // And the election completes without node 1.
  net.Deliver();
  net.Elect(2);
  EXPECT_EQ(net.raft(3).leader(), N(2));
}

// Thesis §4.2.3, leader stickiness: while a leader is heard within the
// election timeout, (pre-)vote requests are refused whatever their term, and
// the term is not adopted.
TEST(Stickiness, Section4_2_3_VotesRefusedWhileLeaderHeardRecently) {
  auto f = TestNode::WithLog(2, Voters({1, 2, 3}), {1, 1, 2}, HardState{T(2), N(1), I(3)});
  f->Drain();
  f->Tick(5);
  f->Step(Heartbeat(1, 2, 2, 3));
  f->Drain();
  f->Tick(kElection - 1);
  f->Step(VoteRequest(3, 2, 3, 100, 2, /*pre_vote=*/true));
  Message pre = OnlyVoteResponse(f->Drain());
  EXPECT_FALSE(pre.vote_granted);
  f->Step(VoteRequest(3, 2, 3, 100, 2));
  Message vote = OnlyVoteResponse(f->Drain());
  EXPECT_FALSE(vote.vote_granted);
  EXPECT_EQ(vote.term, T(2));
  EXPECT_EQ(f->raft().term(), T(2));
  EXPECT_EQ(f->raft().leader(), N(1));
  // A full election timeout without the leader: votes are possible again.
  f->Tick(1);
  f->Step(VoteRequest(3, 2, 3, 100, 2));
  EXPECT_TRUE(OnlyVoteResponse(f->Drain()).vote_granted);
  EXPECT_EQ(f->raft().term(), T(3));
}

// ... except for a campaign started by TimeoutNow (leadership transfer).
TEST(Stickiness, Section4_2_3_TimeoutNowCampaignOverridesStickiness) {
  auto f = TestNode::WithLog(2, Voters({1, 2, 3}), {1, 1, 2}, HardState{T(2), N(1), I(3)});
  f->Drain();
  f->Step(Heartbeat(1, 2, 2, 3));
  f->Drain();
  f->Step(VoteRequest(3, 2, 3, 3, 2, /*pre_vote=*/false, /*transfer=*/true));
  Message vote = OnlyVoteResponse(f->Drain());
  EXPECT_TRUE(vote.vote_granted);
  EXPECT_EQ(f->raft().term(), T(3));
  EXPECT_EQ(f->raft().voted_for(), N(3));
}

// A leader refuses votes while it leads, and keeps its term.
TEST(Stickiness, Section4_2_3_LeaderRefusesVoteRequests) {
  auto leader = TestNode::Fresh(1, {1, 2, 3});
  ElectByHand(*leader);
  leader->Step(VoteRequest(3, 1, 3, 100, 2));
  Message vote = OnlyVoteResponse(leader->Drain());
  EXPECT_FALSE(vote.vote_granted);
  EXPECT_EQ(leader->raft().role(), Role::kLeader);
  EXPECT_EQ(leader->raft().term(), T(2));
}

// A restarted node waits an election timeout before voting: a leader may
// hold a lease based on its acknowledgement from before the crash.
TEST(Stickiness, Section6_4_1_RestartedNodeWaitsBeforeVoting) {
  auto f = TestNode::WithLog(2, Voters({1, 2, 3}), {1, 1, 2}, HardState{T(2), N(1), I(3)});
  f->Drain();
  f->Step(VoteRequest(3, 2, 3, 100, 2));
  EXPECT_FALSE(OnlyVoteResponse(f->Drain()).vote_granted);
  f->Tick(kElection);
  f->Step(VoteRequest(3, 2, 3, 100, 2));
  EXPECT_TRUE(OnlyVoteResponse(f->Drain()).vote_granted);
}

// ---------------------------------------------------------------------------
// CheckQuorum.

TEST(CheckQuorum, Section6_2_LeaderWithoutQuorumContactStepsDown) {
  Network net({1, 2, 3});
  net.Elect(1);
  const Term term = net.raft(1).term();
  net.Isolate(1);
  for (int i = 0; i < kElection - 1; ++i) net.Tick(1);
  EXPECT_EQ(net.raft(1).role(), Role::kLeader);
  net.Tick(1);
  EXPECT_EQ(net.raft(1).role(), Role::kFollower);
  EXPECT_EQ(net.raft(1).leader(), kNoNode);
  EXPECT_EQ(net.raft(1).term(), term);  // stepping down is no reason to bump the term
}

// One reachable follower out of four is not a quorum of five.
TEST(CheckQuorum, Section6_2_LeaderWithMinorityContactStepsDown) {
  Network net({1, 2, 3, 4, 5});
  net.Elect(1);
  for (uint64_t id : {3, 4, 5}) net.Isolate(id);
  net.TickNodes({1, 2}, kElection + 1);
  EXPECT_EQ(net.raft(1).role(), Role::kFollower);
}

TEST(CheckQuorum, Section6_2_LeaderHearingFromQuorumStays) {
  Network net({1, 2, 3, 4, 5});
  net.Elect(1);
  const Term term = net.raft(1).term();
  net.Isolate(4);
  net.Isolate(5);
  net.TickNodes({1, 2, 3}, 5 * kElection);
  EXPECT_EQ(net.raft(1).role(), Role::kLeader);
  EXPECT_EQ(net.raft(1).term(), term);
  net.ProposeAndCommit(1, "x");
}

// Liveness under a partial partition (Cloudflare's 2020 etcd outage): the
// link 1-2 is cut, 3 sees both. With PreVote and CheckQuorum together the
// leader keeps its quorum through 3, node 2's campaigns fail without
// raising any term, and writes keep committing.
TEST(CheckQuorum, PreVoteAndCheckQuorum_PartialPartitionKeepsLeader) {
  Network net({1, 2, 3});
  net.Elect(1);
  const Term term = net.raft(1).term();
  net.Cut(1, 2);
  net.Cut(2, 1);
  net.TickAll(10 * kElection);
  EXPECT_EQ(net.raft(1).role(), Role::kLeader);
  for (uint64_t id : {1, 2, 3}) EXPECT_EQ(net.raft(id).term(), term) << "node " << id;
  const Index i = net.ProposeAndCommit(1, "x");
  EXPECT_EQ(net.raft(3).commit_index(), i);
}

}  // namespace
}  // namespace quorumkv::raft::testing
