// Leader election (Raft §5.2, §5.4.1; Figure 2 "RequestVote RPC" and
// "Rules for Servers").
#include <gtest/gtest.h>

#include <cctype>
#include <set>

#include "tests/raft/raft_test_util.h"

namespace quorumkv::raft::testing {
namespace {

constexpr int kElection = 10;  // MakeConfig's election timeout

// Ticks a follower until it starts a (pre-)campaign; returns the ticks spent.
int TicksUntilCampaign(TestNode& node) {
  int ticks = 0;
  while (node->role() == Role::kFollower && ticks < 10 * kElection) {
    node.Tick();
    ++ticks;
  }
  return ticks;
}

// Section 5.2: "election timeouts are chosen randomly from a fixed interval".
TEST(Election, Section5_2_RandomizedTimeoutWithinElectionTimeoutRange) {
  std::set<int> seen;
  for (uint64_t seed = 1; seed <= 64; ++seed) {
    auto rng = std::make_shared<TestRandom>(seed);
    auto node = TestNode::Fresh(1, {1, 2, 3}, nullptr, rng);
    node->Drain();
    const int ticks = TicksUntilCampaign(*node);
    EXPECT_EQ(node->raft().role(), Role::kPreCandidate);
    EXPECT_GE(ticks, kElection) << "seed " << seed;
    EXPECT_LT(ticks, 2 * kElection) << "seed " << seed;
    // The timeout comes from the supplied generator, asked for [0, E).
    ASSERT_EQ(rng->results.size(), 1u);
    EXPECT_EQ(rng->bounds.front(), static_cast<uint64_t>(kElection));
    EXPECT_EQ(ticks, kElection + static_cast<int>(rng->results.front()));
    seen.insert(ticks);
  }
  // Randomized: the 64 seeds do not all pick the same few timeouts.
  EXPECT_GE(seen.size(), 6u);
}

// The core has no randomness of its own: the same seed gives the same
// sequence of timeouts (here over five lost elections in a row).
std::vector<int> TimeoutSequence(uint64_t seed) {
  auto rng = std::make_shared<TestRandom>(seed);
  auto node = TestNode::Fresh(1, {1, 2, 3}, nullptr, rng);
  node->Drain();
  std::vector<int> out;
  for (int round = 0; round < 5; ++round) {
    out.push_back(TicksUntilCampaign(*node));
    std::vector<Message> msgs = node->Drain();
    for (const Message& m : OfType(msgs, MessageType::kRequestVote)) {
      node->Step(VoteResponse(m.to.value(), 1, node->raft().term().value(), false, true));
    }
    node->Drain();
    EXPECT_EQ(node->raft().role(), Role::kFollower);  // lost: back to follower, new timeout
  }
  return out;
}

TEST(Election, Section5_2_SameSeedGivesSameTimeouts) {
  EXPECT_EQ(TimeoutSequence(7), TimeoutSequence(7));
  EXPECT_EQ(TimeoutSequence(12345), TimeoutSequence(12345));
  EXPECT_NE(TimeoutSequence(7), TimeoutSequence(8));
}

// Section 5.2: a candidate that receives votes from a majority becomes leader.
TEST(Election, Section5_2_CandidateWinsWithMajority) {
  auto node = TestNode::Fresh(1, {1, 2, 3, 4, 5});
  node->Drain();
  TicksUntilCampaign(*node);
  ASSERT_EQ(node->raft().role(), Role::kPreCandidate);
  std::vector<Message> msgs = node->Drain();
  std::vector<Message> prevotes = OfType(msgs, MessageType::kRequestVote);
  ASSERT_EQ(prevotes.size(), 4u);
  for (const Message& m : prevotes) {
    EXPECT_TRUE(m.pre_vote);
    EXPECT_EQ(m.term, T(2));
    EXPECT_EQ(m.last_log_index, I(5));
    EXPECT_EQ(m.last_log_term, T(1));
  }
  node->Step(VoteResponse(2, 1, 2, true, true));
  EXPECT_EQ(node->raft().role(), Role::kPreCandidate);  // 2 of 5
  node->Step(VoteResponse(3, 1, 2, true, true));
  ASSERT_EQ(node->raft().role(), Role::kCandidate);  // 3 of 5: a real election
  EXPECT_EQ(node->raft().term(), T(2));
  EXPECT_EQ(node->raft().voted_for(), N(1));

  msgs = node->Drain();
  std::vector<Message> votes = OfType(msgs, MessageType::kRequestVote);
  ASSERT_EQ(votes.size(), 4u);
  for (const Message& m : votes) {
    EXPECT_FALSE(m.pre_vote);
    EXPECT_EQ(m.term, T(2));
  }
  node->Step(VoteResponse(4, 1, 2, true));
  EXPECT_EQ(node->raft().role(), Role::kCandidate);
  node->Step(VoteResponse(4, 1, 2, true));  // a duplicate counts once
  EXPECT_EQ(node->raft().role(), Role::kCandidate);
  node->Step(VoteResponse(2, 1, 2, false));
  EXPECT_EQ(node->raft().role(), Role::kCandidate);
  node->Step(VoteResponse(5, 1, 2, true));
  EXPECT_EQ(node->raft().role(), Role::kLeader);
  EXPECT_EQ(node->raft().leader(), N(1));
}

// Section 5.2: a candidate that a majority rejects gives up (and keeps its
// term and its own vote).
TEST(Election, Section5_2_CandidateLosesOnMajorityRejection) {
  auto node = TestNode::Fresh(1, {1, 2, 3, 4, 5});
  node->Drain();
  TicksUntilCampaign(*node);
  node->Drain();
  for (uint64_t peer : {2, 3, 4}) node->Step(VoteResponse(peer, 1, 2, true, true));
  ASSERT_EQ(node->raft().role(), Role::kCandidate);
  node->Drain();
  node->Step(VoteResponse(2, 1, 2, false));
  node->Step(VoteResponse(3, 1, 2, false));
  EXPECT_EQ(node->raft().role(), Role::kCandidate);  // 2 rejections: 3 votes still possible
  node->Step(VoteResponse(4, 1, 2, false));
  EXPECT_EQ(node->raft().role(), Role::kFollower);
  EXPECT_EQ(node->raft().term(), T(2));
  EXPECT_EQ(node->raft().voted_for(), N(1));
  EXPECT_EQ(node->raft().leader(), kNoNode);
}

TEST(Election, Section5_2_PreCandidateLosesOnMajorityRejection) {
  auto node = TestNode::Fresh(1, {1, 2, 3});
  node->Drain();
  TicksUntilCampaign(*node);
  node->Drain();
  node->Step(VoteResponse(2, 1, 1, false, true));
  node->Step(VoteResponse(3, 1, 1, false, true));
  EXPECT_EQ(node->raft().role(), Role::kFollower);
  EXPECT_EQ(node->raft().term(), T(1));
}

// Section 5.2: with a split vote nobody wins; the candidate times out again
// (with a fresh random timeout) and starts a new election in a new term.
TEST(Election, Section5_2_SplitVoteRetriesInNewTerm) {
  auto rng = std::make_shared<TestRandom>(3);
  auto node = TestNode::Fresh(1, {1, 2, 3, 4}, nullptr, rng);
  node->Drain();
  TicksUntilCampaign(*node);
  node->Drain();
  node->Step(VoteResponse(2, 1, 2, true, true));
  node->Step(VoteResponse(3, 1, 2, true, true));
  ASSERT_EQ(node->raft().role(), Role::kCandidate);
  ASSERT_EQ(node->raft().term(), T(2));
  node->Drain();
  const size_t draws = rng->results.size();
  // 2 of 4 each: nodes 3 and 4 voted for another candidate.
  node->Step(VoteResponse(2, 1, 2, true));
  node->Step(VoteResponse(3, 1, 2, false));
  node->Step(VoteResponse(4, 1, 2, false));
  ASSERT_EQ(node->raft().role(), Role::kFollower);
  node->Drain();
  ASSERT_EQ(rng->results.size(), draws + 1);  // a fresh random timeout

  const int ticks = TicksUntilCampaign(*node);
  EXPECT_GE(ticks, kElection);
  EXPECT_LT(ticks, 2 * kElection);
  EXPECT_EQ(ticks, kElection + static_cast<int>(rng->results.back()));
  ASSERT_EQ(node->raft().role(), Role::kPreCandidate);
  std::vector<Message> msgs = node->Drain();
  for (const Message& m : OfType(msgs, MessageType::kRequestVote)) EXPECT_EQ(m.term, T(3));
  node->Step(VoteResponse(2, 1, 3, true, true));
  node->Step(VoteResponse(3, 1, 3, true, true));
  EXPECT_EQ(node->raft().role(), Role::kCandidate);
  EXPECT_EQ(node->raft().term(), T(3));
}

// A candidate whose votes are all lost campaigns again after its timeout.
TEST(Election, Section5_2_CandidateWithoutAnswersRetries) {
  auto node = TestNode::Fresh(1, {1, 2, 3});
  node->Drain();
  TicksUntilCampaign(*node);
  node->Drain();
  node->Step(VoteResponse(2, 1, 2, true, true));
  ASSERT_EQ(node->raft().role(), Role::kCandidate);
  node->Drain();
  node->Tick(2 * kElection);
  std::vector<Message> msgs = node->Drain();
  // Back to a pre-vote for term 3 (PreVote first: a lost round never bumps
  // the term of the others).
  EXPECT_EQ(node->raft().role(), Role::kPreCandidate);
  EXPECT_EQ(node->raft().term(), T(2));
  std::vector<Message> reqs = OfType(msgs, MessageType::kRequestVote);
  ASSERT_FALSE(reqs.empty());
  EXPECT_TRUE(reqs.back().pre_vote);
  EXPECT_EQ(reqs.back().term, T(3));
}

// A single-voter cluster elects itself at once.
TEST(Election, Section5_2_SingleVoterElectsItself) {
  auto node = TestNode::Fresh(1, {1});
  node->Drain();
  TicksUntilCampaign(*node);
  node->Drain();
  EXPECT_EQ(node->raft().role(), Role::kLeader);
  EXPECT_EQ(node->raft().term(), T(2));
  EXPECT_EQ(node->raft().commit_index(), I(2));  // its no-op, once durable
}

// A network of three elects exactly one leader, and the others follow it.
TEST(Election, Section5_2_ThreeNodesElectOneLeader) {
  NetworkOptions options;
  options.fixed_timeouts = false;
  options.seed = 42;
  Network net({1, 2, 3}, options);
  net.TickAll(4 * kElection);
  int leaders = 0;
  uint64_t leader = 0;
  for (uint64_t id : net.ids()) {
    if (net.raft(id).role() == Role::kLeader) {
      ++leaders;
      leader = id;
    }
  }
  ASSERT_EQ(leaders, 1);
  for (uint64_t id : net.ids()) {
    EXPECT_EQ(net.raft(id).leader(), N(leader));
    EXPECT_EQ(net.raft(id).term(), net.raft(leader).term());
    EXPECT_EQ(net.raft(id).commit_index(), net.raft(leader).last_index());
  }
}

// ---------------------------------------------------------------------------
// RequestVote receiver (Figure 2) and the up-to-date check (§5.4.1).

// A voter with log terms [1, 1, 2] at term 2 that has not heard from a
// leader for an election timeout (so leader stickiness is not in the way).
std::unique_ptr<TestNode> Voter() {
  auto node = TestNode::WithLog(1, Voters({1, 2, 3}), {1, 1, 2}, HardState{T(2), kNoNode, I(1)});
  node->Drain();
  node->Tick(kElection);
  EXPECT_EQ(node->raft().role(), Role::kFollower);
  return node;
}

Message OnlyVoteResponse(const std::vector<Message>& msgs) {
  std::vector<Message> r = OfType(msgs, MessageType::kRequestVoteResponse);
  EXPECT_EQ(r.size(), 1u);
  return r.empty() ? Message{} : r.front();
}

struct UpToDateCase {
  const char* name;
  uint64_t last_index;
  uint64_t last_term;
  bool granted;
};

class UpToDateTest : public ::testing::TestWithParam<UpToDateCase> {};

TEST_P(UpToDateTest, Section5_4_1_VoteGrantedOnlyToUpToDateLog) {
  const UpToDateCase& c = GetParam();
  auto voter = Voter();
  voter->Step(VoteRequest(2, 1, 3, c.last_index, c.last_term));
  Message resp = OnlyVoteResponse(voter->Drain());
  EXPECT_EQ(resp.vote_granted, c.granted) << c.name;
  EXPECT_EQ(resp.term, T(3));
  // The higher term is adopted either way; the vote only if granted.
  EXPECT_EQ(voter->raft().term(), T(3));
  EXPECT_EQ(voter->raft().voted_for(), c.granted ? N(2) : kNoNode);
  EXPECT_EQ(voter->storage.hard_state().voted_for, c.granted ? N(2) : kNoNode);
}

INSTANTIATE_TEST_SUITE_P(
    Figure2, UpToDateTest,
    ::testing::Values(UpToDateCase{"higher last term, shorter log", 2, 3, true},
                      UpToDateCase{"higher last term, longer log", 9, 3, true},
                      UpToDateCase{"same last term, longer log", 4, 2, true},
                      UpToDateCase{"same last term, same length", 3, 2, true},
                      UpToDateCase{"same last term, shorter log", 2, 2, false},
                      UpToDateCase{"lower last term, longer log", 10, 1, false},
                      UpToDateCase{"empty log", 0, 0, false}),
    [](const ::testing::TestParamInfo<UpToDateCase>& info) {
      std::string name = info.param.name;
      for (char& ch : name) {
        if (!std::isalnum(static_cast<unsigned char>(ch))) ch = '_';
      }
      return name;
    });

// Figure 2: votedFor — at most one vote per term; the same candidate asking
// again (a retransmission) gets the same answer.
TEST(Election, Figure2_OneVotePerTerm) {
  auto voter = Voter();
  voter->Step(VoteRequest(2, 1, 3, 3, 2));
  EXPECT_TRUE(OnlyVoteResponse(voter->Drain()).vote_granted);
  voter->Step(VoteRequest(3, 1, 3, 50, 3));  // a better log, but the vote is taken
  EXPECT_FALSE(OnlyVoteResponse(voter->Drain()).vote_granted);
  voter->Step(VoteRequest(2, 1, 3, 3, 2));
  EXPECT_TRUE(OnlyVoteResponse(voter->Drain()).vote_granted);
  EXPECT_EQ(voter->raft().voted_for(), N(2));
  // A new term frees the vote.
  voter->Tick(kElection);
  voter->Step(VoteRequest(3, 1, 4, 50, 3));
  EXPECT_TRUE(OnlyVoteResponse(voter->Drain()).vote_granted);
  EXPECT_EQ(voter->raft().voted_for(), N(3));
}

// Figure 2: "respond after persisting": the vote travels in the hard state
// of the very Ready whose messages carry the grant.
TEST(Election, Figure2_VotePersistedInSameReadyAsVoteResponse) {
  auto voter = Voter();
  voter->Step(VoteRequest(2, 1, 3, 3, 2));
  ASSERT_TRUE(voter->raft().HasReady());
  Ready rd = voter->raft().GetReady();
  ASSERT_TRUE(rd.hard_state.has_value());
  EXPECT_EQ(rd.hard_state->current_term, T(3));
  EXPECT_EQ(rd.hard_state->voted_for, N(2));
  Message resp = OnlyVoteResponse(rd.messages);
  EXPECT_TRUE(resp.vote_granted);
  PersistBatch batch;
  batch.hard_state = rd.hard_state;
  ASSERT_TRUE(voter->storage.Persist(batch).ok());
  voter->raft().Advance(rd);
  EXPECT_FALSE(voter->raft().HasReady());
}

// A grant queued in one term is never sent once a newer term arrives before
// the Ready: the hard state persisted is the newer term's, so the old grant
// would be a promise that no crash-surviving record backs.
TEST(Election, Figure2_VoteGrantOfASupersededTermNeverSent) {
  auto voter = Voter();
  voter->Step(VoteRequest(2, 1, 3, 3, 2));  // granted in term 3, not yet persisted
  voter->Step(AppendEntries(3, 1, 4, 3, 2, {}, 1));
  std::vector<Message> out = voter->Drain();
  EXPECT_TRUE(OfType(out, MessageType::kRequestVoteResponse).empty());
  EXPECT_EQ(voter->storage.hard_state().current_term, T(4));
  EXPECT_EQ(voter->storage.hard_state().voted_for, kNoNode);
}

// A vote request from a lower term is rejected with the current term.
TEST(Election, Figure2_VoteRequestFromLowerTermRejected) {
  auto voter = Voter();
  voter->Step(VoteRequest(2, 1, 1, 10, 1));
  Message resp = OnlyVoteResponse(voter->Drain());
  EXPECT_FALSE(resp.vote_granted);
  EXPECT_EQ(resp.term, T(2));
  EXPECT_EQ(voter->raft().term(), T(2));
}

// A voter whose configuration is stale must still vote for a candidate it
// does not know, if the candidate's log is up to date: the candidate may be
// a member of a newer configuration this voter has not received (thesis
// §4.1). Refusing deadlocked the simulator at seed 9704.
TEST(Election, Section4_1_CandidateMissingFromAStaleConfigurationGetsAVote) {
  auto voter = Voter();
  voter->Step(VoteRequest(9, 1, 3, 10, 3));
  EXPECT_TRUE(OnlyVoteResponse(voter->Drain()).vote_granted);
  EXPECT_EQ(voter->raft().voted_for(), NodeId(9));
}

// ---------------------------------------------------------------------------
// Figure 2, Rules for all servers: "If RPC request or response contains
// term T > currentTerm: set currentTerm = T, convert to follower".

struct HigherTermCase {
  const char* name;
  Message message;
};

class HigherTermTest : public ::testing::TestWithParam<HigherTermCase> {};

TEST_P(HigherTermTest, Figure2_HigherTermConvertsLeaderToFollower) {
  auto node = TestNode::Fresh(1, {1, 2, 3});
  ElectByHand(*node);
  ASSERT_EQ(node->raft().term(), T(2));
  node->Step(GetParam().message);
  EXPECT_EQ(node->raft().role(), Role::kFollower) << GetParam().name;
  EXPECT_EQ(node->raft().term(), T(5));
  EXPECT_EQ(node->raft().voted_for(), kNoNode);
  const NodeId expected_leader =
      GetParam().message.type == MessageType::kAppendEntries ||
              GetParam().message.type == MessageType::kInstallSnapshot
          ? N(2)
          : kNoNode;
  EXPECT_EQ(node->raft().leader(), expected_leader);
  node->Drain();
  EXPECT_EQ(node->storage.hard_state().current_term, T(5));
}

Message ReadIndexResponseMsg() {
  Message m;
  m.type = MessageType::kReadIndexResponse;
  m.from = N(2);
  m.to = N(1);
  m.term = T(5);
  return m;
}

Message SnapshotResponseMsg() {
  Message m;
  m.type = MessageType::kInstallSnapshotResponse;
  m.from = N(2);
  m.to = N(1);
  m.term = T(5);
  return m;
}

INSTANTIATE_TEST_SUITE_P(
    Figure2, HigherTermTest,
    ::testing::Values(HigherTermCase{"AppendEntries", AppendEntries(2, 1, 5, 0, 0, {}, 0)},
                      HigherTermCase{"Heartbeat", Heartbeat(2, 1, 5, 0)},
                      HigherTermCase{"AppendEntriesResponse", AppendAccepted(2, 1, 5, 1)},
                      HigherTermCase{"AppendEntriesRejection", AppendRejected(2, 1, 5, 4, 1, 0)},
                      HigherTermCase{"RequestVoteResponse", VoteResponse(2, 1, 5, false)},
                      HigherTermCase{"PreVoteRejection", VoteResponse(2, 1, 5, false, true)},
                      HigherTermCase{"InstallSnapshot",
                                     InstallSnapshot(2, 1, 5, SnapshotMeta{I(1), T(1), Voters({1, 2, 3})})},
                      HigherTermCase{"InstallSnapshotResponse", SnapshotResponseMsg()},
                      HigherTermCase{"ReadIndex", ReadIndexRequest(2, 1, 5, 7)},
                      HigherTermCase{"ReadIndexResponse", ReadIndexResponseMsg()}),
    [](const ::testing::TestParamInfo<HigherTermCase>& info) { return std::string(info.param.name); });

// A candidate that hears from a leader of its own term follows it.
TEST(Election, Figure2_CandidateFollowsLeaderOfSameTerm) {
  auto node = TestNode::Fresh(1, {1, 2, 3});
  node->Drain();
  TicksUntilCampaign(*node);
  node->Drain();
  node->Step(VoteResponse(2, 1, 2, true, true));
  ASSERT_EQ(node->raft().role(), Role::kCandidate);
  node->Drain();
  node->Step(Heartbeat(3, 1, 2, 0));
  EXPECT_EQ(node->raft().role(), Role::kFollower);
  EXPECT_EQ(node->raft().leader(), N(3));
  EXPECT_EQ(node->raft().term(), T(2));
  EXPECT_EQ(node->raft().voted_for(), N(1));  // the vote of term 2 is kept
}

// Figure 2: a leader of an older term is told the current term and steps
// down; its AppendEntries changes nothing.
TEST(Election, Figure2_StaleLeaderAppendEntriesRejectedWithCurrentTerm) {
  auto follower = TestNode::WithLog(1, Voters({1, 2, 3}), {1, 1, 3}, HardState{T(3), kNoNode, I(2)});
  follower->Drain();
  follower->Step(AppendEntries(2, 1, 2, 2, 1, MakeEntries(I(3), {2, 2}), 3));
  std::vector<Message> msgs = OfType(follower->Drain(), MessageType::kAppendEntriesResponse);
  ASSERT_EQ(msgs.size(), 1u);
  EXPECT_FALSE(msgs[0].success);
  EXPECT_EQ(msgs[0].term, T(3));
  EXPECT_EQ(StoredTerms(follower->storage), (std::vector<uint64_t>{1, 1, 3}));
  EXPECT_EQ(follower->raft().commit_index(), I(2));
  EXPECT_EQ(follower->raft().leader(), kNoNode);

  // The stale leader, on that answer, steps down into the new term.
  auto stale = TestNode::Fresh(2, {1, 2, 3});
  ElectByHand(*stale);
  ASSERT_EQ(stale->raft().term(), T(2));
  Message back = msgs[0];
  back.to = N(2);
  stale->Step(back);
  EXPECT_EQ(stale->raft().role(), Role::kFollower);
  EXPECT_EQ(stale->raft().term(), T(3));
}

// The same, end to end: an old leader cut off during an election rejoins
// and learns the new term from the first answer to its AppendEntries.
TEST(Election, Figure2_DeposedLeaderStepsDownOnRejoin) {
  Network net({1, 2, 3});
  net.Elect(1);
  net.Isolate(1);
  net.Elect(2);
  ASSERT_EQ(net.raft(2).term(), T(3));
  EXPECT_EQ(net.raft(1).role(), Role::kLeader);  // not ticked: it still believes
  net.Rejoin(1);
  // The old leader's proposal goes out in term 2 and is refused.
  auto r = net.raft(1).Propose("stale");
  ASSERT_TRUE(r.ok()) << r.status();
  net.Drain(1);
  net.Deliver();
  EXPECT_EQ(net.raft(1).role(), Role::kFollower);
  EXPECT_EQ(net.raft(1).term(), T(3));
  net.TickAll(3);
  EXPECT_EQ(net.raft(1).leader(), N(2));
  // Its term-2 entry was overwritten by the new leader's log.
  EXPECT_EQ(net.raft(1).last_index(), net.raft(2).last_index());
  EXPECT_EQ(StoredTerms(net.node(1).storage), StoredTerms(net.node(2).storage));
}

// Raft §8: a new leader appends a no-op of its term at once.
TEST(Election, Section8_NoOpEntryOnBecomingLeader) {
  auto node = TestNode::Fresh(1, {1, 2, 3});
  std::vector<Message> msgs = ElectByHand(*node);
  const Index last = node->raft().last_index();
  EXPECT_EQ(last, I(4));
  std::vector<Entry> stored = StoredEntries(node->storage);
  ASSERT_FALSE(stored.empty());
  EXPECT_EQ(stored.back().index, I(4));
  EXPECT_EQ(stored.back().term, T(2));
  EXPECT_EQ(stored.back().type, EntryType::kNoOp);
  // It goes out to every peer at once.
  for (uint64_t peer : {2, 3}) {
    std::vector<Message> appends = OfType(msgs, MessageType::kAppendEntries, peer);
    bool carries_noop = false;
    for (const Message& m : appends) {
      for (const Entry& e : m.entries) carries_noop |= e.index == I(4) && e.type == EntryType::kNoOp;
    }
    EXPECT_TRUE(carries_noop) << "peer " << peer;
  }
}

}  // namespace
}  // namespace quorumkv::raft::testing
