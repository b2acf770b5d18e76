// Linearizable reads: ReadIndex (thesis §6.4) and leader leases (§6.4.1).
#include <gtest/gtest.h>

#include "tests/raft/raft_test_util.h"

namespace quorumkv::raft::testing {
namespace {

constexpr int kElection = 10;
constexpr int kLease = 8;  // election timeout 10 - drift margin 2

std::vector<Message> Heartbeats(const std::vector<Message>& msgs) {
  std::vector<Message> out;
  for (const Message& m : OfType(msgs, MessageType::kAppendEntries)) {
    if (m.heartbeat) out.push_back(m);
  }
  return out;
}

// Delivers `round` (heartbeats) and everything that follows from it, but
// takes out and returns the heartbeats of any later round the leader sends
// meanwhile.
std::vector<Message> DeliverRoundHoldingBackTheNext(Network& net, const std::vector<Message>& round) {
  for (const Message& hb : round) net.Send(hb);
  const uint64_t r = round.at(0).read_round;
  std::vector<Message> next;
  while (net.DeliverOne()) {
    for (const Message& hb : Heartbeats(net.Take([r](const Message& m) { return m.read_round > r; }))) {
      next.push_back(hb);
    }
  }
  return next;
}

bool HasReadState(const TestNode& n, uint64_t read_id) {
  for (const ReadState& r : n.read_states) {
    if (r.read_id == read_id) return true;
  }
  return false;
}

int CountFailed(const TestNode& n, uint64_t read_id) {
  int count = 0;
  for (uint64_t id : n.failed_reads) count += id == read_id;
  return count;
}

// etcd #7331: right after its election, a leader's commit index may be
// behind what earlier leaders committed; it answers no read index until an
// entry of its own term (its no-op) is committed.
TEST(ReadIndex, Etcd7331_NoReadIndexBeforeLeaderCommitsInItsTerm) {
  Network net({1, 2, 3});
  net.drop = [](const Message& m) { return m.type == MessageType::kAppendEntriesResponse && !m.heartbeat; };
  net.Elect(1);
  Raft& leader = net.raft(1);
  const Index noop = leader.last_index();
  ASSERT_LT(leader.commit_index(), noop);
  ASSERT_TRUE(leader.ReadIndex(7, ReadMode::kReadIndex).ok());
  ASSERT_TRUE(leader.ReadIndex(8, ReadMode::kLease).ok());
  net.Drain(1);
  net.TickAll(3);  // heartbeat rounds are acknowledged, the no-op is not
  EXPECT_TRUE(net.node(1).read_states.empty());
  EXPECT_TRUE(net.node(1).failed_reads.empty());

  net.drop = nullptr;
  net.TickAll(2);
  ASSERT_EQ(leader.commit_index(), noop);
  ASSERT_EQ(net.node(1).read_states.size(), 2u);
  for (const ReadState& r : net.node(1).read_states) EXPECT_EQ(r.read_index, noop);
}

// Thesis §6.4: the read index is the commit index when the read arrives; it
// is released only once a quorum acknowledged a heartbeat round sent after
// the read arrived (an acknowledgement of an earlier round proves nothing).
TEST(ReadIndex, Section6_4_ReleasedOnlyAfterQuorumAcksALaterRound) {
  Network net({1, 2, 3});
  net.Elect(1);
  const Index commit = net.ProposeAndCommit(1, "x");
  Raft& leader = net.raft(1);
  const uint64_t term = leader.term().value();
  ASSERT_TRUE(leader.ReadIndex(7, ReadMode::kReadIndex).ok());
  net.Drain(1);
  std::vector<Message> hbs = Heartbeats(net.Take([](const Message&) { return true; }));
  ASSERT_EQ(hbs.size(), 2u);
  const uint64_t round = hbs[0].read_round;
  EXPECT_TRUE(net.node(1).read_states.empty());

  // Answers to the earlier round, from both followers: not enough.
  net.node(1).Step(HeartbeatResponse(2, 1, term, round - 1));
  net.node(1).Step(HeartbeatResponse(3, 1, term, round - 1));
  net.Drain(1);
  net.Take([](const Message&) { return true; });
  EXPECT_TRUE(net.node(1).read_states.empty());

  // One follower answers the new round: with the leader, a quorum of three.
  net.Send(hbs[0]);
  net.Deliver();
  ASSERT_EQ(net.node(1).read_states.size(), 1u);
  EXPECT_EQ(net.node(1).read_states[0].read_id, 7u);
  EXPECT_EQ(net.node(1).read_states[0].read_index, commit);
}

// etcd #20418: a round that was already on its way when the read arrived
// proves nothing about leadership after the read arrived, even if its
// answers come in only afterwards.
TEST(ReadIndex, Etcd20418_RoundSentBeforeTheReadDoesNotReleaseIt) {
  Network net({1, 2, 3});
  net.Elect(1);
  net.TickAll(1);
  net.Tick(1);  // round R goes out; its answers are still to come
  std::vector<Message> earlier = Heartbeats(net.Take([](const Message&) { return true; }));
  ASSERT_EQ(earlier.size(), 2u);
  ASSERT_TRUE(net.raft(1).ReadIndex(7, ReadMode::kReadIndex).ok());
  net.Drain(1);
  EXPECT_TRUE(Heartbeats(net.Take([](const Message&) { return true; })).empty())
      << "the read waits for R's answers before its own round goes out";
  // R and its answers, holding back what the leader sends next.
  std::vector<Message> later = DeliverRoundHoldingBackTheNext(net, earlier);
  EXPECT_TRUE(net.node(1).read_states.empty()) << "released by a round sent before the read arrived";
  ASSERT_EQ(later.size(), 1u) << "a read round goes to one follower: with the leader, a quorum of three";
  ASSERT_GT(later[0].read_round, earlier[0].read_round);
  for (const Message& hb : later) net.Send(hb);
  net.Deliver();
  EXPECT_EQ(net.node(1).read_states.size(), 1u);
}

// Reads that arrive while a round is unanswered share the next round: a
// busy leader sends one round per round trip, not one per batch of reads.
TEST(ReadIndex, ReadsArrivingDuringARoundShareTheNextRound) {
  Network net({1, 2, 3});
  net.Elect(1);
  Raft& leader = net.raft(1);
  ASSERT_TRUE(leader.ReadIndex(1, ReadMode::kReadIndex).ok());
  net.Drain(1);
  std::vector<Message> first = Heartbeats(net.Take([](const Message&) { return true; }));
  ASSERT_EQ(first.size(), 2u);
  for (uint64_t id = 2; id <= 4; ++id) {
    ASSERT_TRUE(leader.ReadIndex(id, ReadMode::kReadIndex).ok());
    net.Drain(1);
    EXPECT_TRUE(Heartbeats(net.Take([](const Message&) { return true; })).empty()) << "read " << id;
  }
  std::vector<Message> second = DeliverRoundHoldingBackTheNext(net, first);
  ASSERT_EQ(net.node(1).read_states.size(), 1u);
  EXPECT_EQ(net.node(1).read_states[0].read_id, 1u);
  ASSERT_EQ(second.size(), 1u) << "one round (to one follower) for the three waiting reads";
  for (const Message& hb : second) net.Send(hb);
  net.Deliver();
  EXPECT_EQ(net.node(1).read_states.size(), 4u);
}

// A round whose answers are lost does not hold the reads waiting behind it
// for ever: the next heartbeat tick sends a round that releases them.
TEST(ReadIndex, LostRoundDelaysWaitingReadsOnlyToTheNextHeartbeat) {
  Network net({1, 2, 3});
  net.Elect(1);
  Raft& leader = net.raft(1);
  ASSERT_TRUE(leader.ReadIndex(1, ReadMode::kReadIndex).ok());
  net.Drain(1);
  ASSERT_EQ(Heartbeats(net.Take([](const Message&) { return true; })).size(), 2u);  // lost
  ASSERT_TRUE(leader.ReadIndex(2, ReadMode::kReadIndex).ok());
  net.Drain(1);
  net.Deliver();
  EXPECT_TRUE(net.node(1).read_states.empty());
  net.TickAll(1);  // the test config's heartbeat interval is one tick
  EXPECT_EQ(net.node(1).read_states.size(), 2u);
}

// etcd #20418: every read — a retry of the same read too — takes a fresh
// read index and a fresh quorum round.
TEST(ReadIndex, Etcd20418_EveryReadTakesAFreshRound) {
  Network net({1, 2, 3});
  net.Elect(1);
  Raft& leader = net.raft(1);
  const uint64_t term = leader.term().value();
  ASSERT_TRUE(leader.ReadIndex(1, ReadMode::kReadIndex).ok());
  net.Drain(1);
  std::vector<Message> first = Heartbeats(std::vector<Message>(net.queue().begin(), net.queue().end()));
  ASSERT_FALSE(first.empty());
  const uint64_t first_round = first[0].read_round;
  net.Deliver();
  ASSERT_EQ(net.node(1).read_states.size(), 1u);

  const Index commit = net.ProposeAndCommit(1, "y");
  ASSERT_TRUE(leader.ReadIndex(1, ReadMode::kReadIndex).ok());  // the retry
  net.Drain(1);
  std::vector<Message> hbs = Heartbeats(net.Take([](const Message&) { return true; }));
  ASSERT_EQ(hbs.size(), 1u);
  EXPECT_GT(hbs[0].read_round, first_round);
  // Acknowledgements of the round that released the first attempt do not
  // release the retry.
  net.node(1).Step(HeartbeatResponse(2, 1, term, hbs[0].read_round - 1));
  net.node(1).Step(HeartbeatResponse(3, 1, term, hbs[0].read_round - 1));
  net.Drain(1);
  net.Take([](const Message&) { return true; });
  EXPECT_EQ(net.node(1).read_states.size(), 1u);
  for (const Message& hb : hbs) net.Send(hb);
  net.Deliver();
  ASSERT_EQ(net.node(1).read_states.size(), 2u);
  EXPECT_EQ(net.node(1).read_states[1].read_index, commit);  // fresh index too
}

// A round asked for by reads goes to as many voters as a quorum needs, the
// ones whose answers made the last acknowledged round: a message and an
// answer per follower fewer for every round of a three-node cluster.
TEST(ReadIndex, ReadRoundGoesToTheVotersThatAnsweredTheLastRoundFirst) {
  Network net({1, 2, 3});
  net.Elect(1);
  Raft& leader = net.raft(1);
  const uint64_t term = leader.term().value();
  for (const uint64_t fast : {3u, 2u}) {
    // A periodic round to every peer, answered by `fast` only.
    net.Tick(1);
    std::vector<Message> round = Heartbeats(net.Take([](const Message&) { return true; }));
    ASSERT_EQ(round.size(), 2u) << "periodic heartbeats go to every peer";
    net.node(1).Step(HeartbeatResponse(fast, 1, term, round[0].read_round));
    net.Drain(1);
    net.Take([](const Message&) { return true; });

    ASSERT_TRUE(leader.ReadIndex(fast, ReadMode::kReadIndex).ok());
    net.Drain(1);
    std::vector<Message> read_round = Heartbeats(net.Take([](const Message&) { return true; }));
    ASSERT_EQ(read_round.size(), 1u);
    EXPECT_EQ(read_round[0].to.value(), fast) << "the follower that answered first";
    EXPECT_GT(read_round[0].read_round, round[0].read_round);
    net.Send(read_round[0]);
    net.Deliver();
    EXPECT_TRUE(HasReadState(net.node(1), fast));
  }
}

TEST(ReadIndex, ReadRoundOfFiveVotersGoesToTwoFollowers) {
  Network net({1, 2, 3, 4, 5});
  net.Elect(1);
  net.TickAll(1);
  ASSERT_TRUE(net.raft(1).ReadIndex(9, ReadMode::kReadIndex).ok());
  net.Drain(1);
  std::vector<Message> round = Heartbeats(std::vector<Message>(net.queue().begin(), net.queue().end()));
  EXPECT_EQ(round.size(), 2u) << "two followers and the leader: a quorum of five";
  net.Deliver();
  EXPECT_TRUE(HasReadState(net.node(1), 9));
}

// The voters a read round went to may have crashed or slowed down since
// they last answered: a round they leave unanswered for a full tick goes
// to every peer, so its reads wait a tick or two, not a heartbeat interval.
TEST(ReadIndex, UnansweredReadRoundWidensToEveryVoterAfterATick) {
  NetworkOptions options;
  options.tweak = [](Config& c) { c.heartbeat_interval_ticks = 5; };
  Network net({1, 2, 3}, options);
  net.Elect(1);
  net.TickAll(5);  // a periodic round, answered
  Raft& leader = net.raft(1);
  ASSERT_TRUE(leader.ReadIndex(1, ReadMode::kReadIndex).ok());
  net.Drain(1);
  std::vector<Message> lost = Heartbeats(net.Take([](const Message&) { return true; }));
  ASSERT_EQ(lost.size(), 1u);
  const uint64_t round = lost[0].read_round;

  net.Tick(1);  // under a full tick since the send: no change
  EXPECT_TRUE(Heartbeats(net.Take([](const Message&) { return true; })).empty());
  net.Tick(1);
  std::vector<Message> widened = Heartbeats(net.Take([](const Message&) { return true; }));
  ASSERT_EQ(widened.size(), 2u) << "the same round, now to both followers";
  for (const Message& hb : widened) EXPECT_EQ(hb.read_round, round);
  // The follower the round first skipped answers: the read is released.
  for (const Message& hb : widened) {
    if (hb.to != lost[0].to) net.Send(hb);
  }
  net.Deliver();
  EXPECT_TRUE(HasReadState(net.node(1), 1));
}

// Thesis §6.4: a follower asks the leader; the answer is the leader's commit
// index (which the follower may not have reached yet).
TEST(ReadIndex, Section6_4_FollowerReadGetsLeadersCommitIndex) {
  Network net({1, 2, 3});
  net.Elect(1);
  // Node 2 misses the new entries: its commit index lags.
  net.drop = [](const Message& m) { return m.to == N(2) && m.type == MessageType::kAppendEntries && !m.heartbeat; };
  net.ProposeAndCommit(1, "a");
  const Index commit = net.ProposeAndCommit(1, "b");
  ASSERT_LT(net.raft(2).commit_index(), commit);
  ASSERT_TRUE(net.raft(2).ReadIndex(9, ReadMode::kReadIndex).ok());
  net.Drain(2);
  std::vector<Message> fwd = OfType(std::vector<Message>(net.queue().begin(), net.queue().end()),
                                    MessageType::kReadIndex);
  ASSERT_EQ(fwd.size(), 1u);
  EXPECT_EQ(fwd[0].to, N(1));
  net.Deliver();
  ASSERT_EQ(net.node(2).read_states.size(), 1u);
  EXPECT_EQ(net.node(2).read_states[0].read_id, 9u);
  EXPECT_EQ(net.node(2).read_states[0].read_index, commit);
  EXPECT_TRUE(net.node(1).read_states.empty());  // the leader's own list is untouched
}

// Pending reads fail when the leader steps down: the local one, and the one
// forwarded by a follower (answered with a failure, reported once).
TEST(ReadIndex, Section6_4_ReadsFailWhenLeaderStepsDown) {
  Network net({1, 2, 3});
  net.Elect(1);
  net.drop = [](const Message& m) { return m.type == MessageType::kAppendEntriesResponse; };
  ASSERT_TRUE(net.raft(1).ReadIndex(5, ReadMode::kReadIndex).ok());
  ASSERT_TRUE(net.raft(2).ReadIndex(6, ReadMode::kReadIndex).ok());
  net.DrainAll();
  net.Deliver();
  ASSERT_TRUE(net.node(1).read_states.empty());
  ASSERT_TRUE(net.node(2).read_states.empty());
  const uint64_t term = net.raft(1).term().value();
  net.node(1).Step(AppendRejected(3, 1, term + 1, 0, 0, 0));  // a newer term
  ASSERT_EQ(net.raft(1).role(), Role::kFollower);
  net.Drain(1);
  EXPECT_EQ(CountFailed(net.node(1), 5), 1);
  net.drop = nullptr;
  net.Deliver();
  EXPECT_EQ(CountFailed(net.node(2), 6), 1);
  EXPECT_FALSE(HasReadState(net.node(2), 6));
}

// A follower's forwarded read whose answer never comes fails after an
// election timeout; without a known leader a read is refused at once.
TEST(ReadIndex, Section6_4_ForwardedReadFailsWithoutAnswer) {
  Network net({1, 2, 3});
  net.Elect(1);
  net.Cut(2, 1);
  ASSERT_TRUE(net.raft(2).ReadIndex(6, ReadMode::kReadIndex).ok());
  net.Drain(2);
  for (int i = 0; i < kElection - 1; ++i) net.Tick(2);
  net.Drain(2);
  EXPECT_EQ(CountFailed(net.node(2), 6), 0);
  net.Tick(2);
  EXPECT_EQ(CountFailed(net.node(2), 6), 1);

  auto lonely = TestNode::Fresh(4, {4, 5, 6});
  lonely->Drain();
  EXPECT_EQ(lonely->raft().ReadIndex(1, ReadMode::kReadIndex).code(), absl::StatusCode::kUnavailable);
}

// A single-voter leader releases a read in the same Ready: its own
// acknowledgement is a quorum.
TEST(ReadIndex, Section6_4_SingleVoterReleasesAtOnce) {
  auto node = TestNode::Fresh(1, {1});
  node->Drain();
  ASSERT_TRUE(TickUntil(*node, [&] { return node->raft().role() == Role::kLeader; }, /*drain=*/true));
  ASSERT_TRUE(node->raft().ReadIndex(3, ReadMode::kReadIndex).ok());
  node->Drain();
  ASSERT_EQ(node->read_states.size(), 1u);
  EXPECT_EQ(node->read_states[0].read_index, node->raft().commit_index());
}

// ---------------------------------------------------------------------------
// Leases (thesis §6.4.1).

TEST(Lease, Section6_4_1_LeaseReadServedWithoutRoundWhileLeaseHolds) {
  Network net({1, 2, 3});
  net.Elect(1);
  net.TickAll(1);
  Raft& leader = net.raft(1);
  ASSERT_TRUE(leader.LeaseValid());
  ASSERT_TRUE(leader.ReadIndex(4, ReadMode::kLease).ok());
  std::vector<Message> msgs = net.node(1).Drain();
  EXPECT_TRUE(Heartbeats(msgs).empty()) << "a lease read needs no round";
  ASSERT_EQ(net.node(1).read_states.size(), 1u);
  EXPECT_EQ(net.node(1).read_states[0].read_index, leader.commit_index());
}

// The lease runs for lease_ticks from the *send* of the last round a quorum
// acknowledged; without quorum contact a lease read waits for a round, and
// fails when the leader steps down.
TEST(Lease, Section6_4_1_LeaseExpiresWithoutQuorumContact) {
  Network net({1, 2, 3});
  net.Elect(1);
  net.TickAll(1);
  Raft& leader = net.raft(1);
  net.Isolate(1);
  for (int i = 0; i < kLease - 1; ++i) net.Tick(1);
  EXPECT_TRUE(leader.LeaseValid());
  net.Tick(1);
  EXPECT_FALSE(leader.LeaseValid());
  ASSERT_TRUE(leader.ReadIndex(4, ReadMode::kLease).ok());
  net.Drain(1);
  EXPECT_TRUE(net.node(1).read_states.empty());
  for (int i = 0; i < kElection && leader.role() == Role::kLeader; ++i) net.Tick(1);
  ASSERT_EQ(leader.role(), Role::kFollower);
  EXPECT_EQ(CountFailed(net.node(1), 4), 1);
}

// The lease starts when the round was sent, not when its answers arrived.
TEST(Lease, Section6_4_1_LeaseStartsWhenRoundWasSent) {
  Network net({1, 2, 3});
  net.Elect(1);
  net.Isolate(2);
  net.Isolate(3);
  net.Tick(1);  // round R goes out at tick t
  std::vector<Message> round = Heartbeats(net.Take([](const Message&) { return true; }));
  ASSERT_EQ(round.size(), 2u);
  for (int i = 0; i < 3; ++i) net.Tick(1);  // later rounds are lost
  // Round R's answers arrive only now, at t + 3.
  net.Rejoin(2);
  net.Rejoin(3);
  net.Take([](const Message&) { return true; });
  for (const Message& hb : round) net.Send(hb);
  net.Deliver();
  net.Isolate(2);
  net.Isolate(3);
  Raft& leader = net.raft(1);
  ASSERT_TRUE(leader.LeaseValid());
  for (int i = 0; i < kLease - 4; ++i) net.Tick(1);  // t + 7
  EXPECT_TRUE(leader.LeaseValid());
  net.Tick(1);  // t + 8: measured from the answers it would still hold
  EXPECT_FALSE(leader.LeaseValid());
}

// Thesis §6.4.1 / §3.10: once TimeoutNow went out, the target may win
// without waiting for the lease to run out, so no more lease reads.
TEST(Lease, Section6_4_1_NoLeaseAfterTimeoutNowSent) {
  Network net({1, 2, 3});
  net.Elect(1);
  net.TickAll(1);
  Raft& leader = net.raft(1);
  ASSERT_TRUE(leader.LeaseValid());
  ASSERT_TRUE(leader.TransferLeadership(N(2)).ok());
  std::vector<Message> msgs = net.node(1).Drain();
  ASSERT_EQ(OfType(msgs, MessageType::kTimeoutNow, 2).size(), 1u);
  EXPECT_FALSE(leader.LeaseValid());
  ASSERT_TRUE(leader.ReadIndex(4, ReadMode::kLease).ok());
  net.node(1).Drain();
  EXPECT_TRUE(net.node(1).read_states.empty());
}

// LeaseTicksLeft counts down with the ticks from the send of the last
// acknowledged round, and is 0 exactly when LeaseValid is false.
TEST(Lease, TicksLeftCountDownToTheLeasesEnd) {
  Network net({1, 2, 3});
  net.Elect(1);
  net.TickAll(1);  // a round sent and acknowledged at this tick
  Raft& leader = net.raft(1);
  net.Isolate(1);
  for (int64_t left = kLease; left > 0; --left) {
    EXPECT_EQ(leader.LeaseTicksLeft(), left);
    EXPECT_TRUE(leader.LeaseValid());
    net.Tick(1);
  }
  EXPECT_EQ(leader.LeaseTicksLeft(), 0);
  EXPECT_FALSE(leader.LeaseValid());
  net.Tick(1);
  EXPECT_EQ(leader.LeaseTicksLeft(), 0) << "never negative";
}

// No ticks left once a transfer starts (before TimeoutNow is even sent), on
// a follower, or on a leader that has not committed in its term.
TEST(Lease, NoTicksLeftDuringATransferOnAFollowerOrBeforeTheFirstCommit) {
  Network net({1, 2, 3});
  net.Elect(1);
  net.TickAll(1);
  Raft& leader = net.raft(1);
  ASSERT_GT(leader.LeaseTicksLeft(), 0);
  EXPECT_EQ(net.raft(2).LeaseTicksLeft(), 0);
  ASSERT_TRUE(leader.TransferLeadership(N(2)).ok());
  EXPECT_EQ(leader.LeaseTicksLeft(), 0);

  Network fresh({1, 2, 3});
  fresh.drop = [](const Message& m) { return m.type == MessageType::kAppendEntriesResponse && !m.heartbeat; };
  fresh.Elect(1);
  fresh.TickAll(2);  // rounds acknowledged, the no-op not committed
  ASSERT_LT(fresh.raft(1).commit_index(), fresh.raft(1).last_index());
  EXPECT_EQ(fresh.raft(1).LeaseTicksLeft(), 0);
}

// Writes are refused (FAILED_PRECONDITION) once the leader has not heard
// from a quorum within the lease: they likely cannot commit.
TEST(Lease, Section6_4_1_WritesRefusedWhenLeaderLostQuorumContact) {
  Network net({1, 2, 3});
  net.Elect(1);
  net.TickAll(1);
  Raft& leader = net.raft(1);
  net.Isolate(1);
  for (int i = 0; i < kLease - 1; ++i) net.Tick(1);
  EXPECT_TRUE(leader.Propose("ok").ok());
  net.Tick(1);
  ASSERT_EQ(leader.role(), Role::kLeader);
  auto r = leader.Propose("late");
  EXPECT_EQ(r.status().code(), absl::StatusCode::kFailedPrecondition) << r.status();
  auto cc = leader.ProposeConfChange(ConfChange{ConfChangeType::kAddLearner, N(4), ""});
  EXPECT_EQ(cc.status().code(), absl::StatusCode::kUnavailable) << cc.status();
  net.Rejoin(1);
  net.TickAll(1);
  EXPECT_TRUE(leader.Propose("back").ok());
}

}  // namespace
}  // namespace quorumkv::raft::testing
