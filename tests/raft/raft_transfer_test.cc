// Leadership transfer (thesis §3.10) and its pitfalls (hashicorp/raft #306,
// NuRaft #553).
#include <gtest/gtest.h>

#include "tests/raft/raft_test_util.h"

namespace quorumkv::raft::testing {
namespace {

constexpr int kElection = 10;

int CountSent(const Network& net, MessageType type) {
  int n = 0;
  for (const Message& m : net.sent) n += m.type == type;
  return n;
}

// A caught-up target gets TimeoutNow at once and wins the next term without
// any election timeout, skipping PreVote, even though the other follower
// heard from the old leader a moment ago.
TEST(Transfer, Section3_10_TransferToCaughtUpFollower) {
  Network net({1, 2, 3});
  net.Elect(1);
  const Term term = net.raft(1).term();
  ASSERT_TRUE(net.raft(1).TransferLeadership(N(3)).ok());
  net.Drain(1);
  net.Deliver();
  EXPECT_EQ(net.raft(3).role(), Role::kLeader);
  EXPECT_EQ(net.raft(3).term(), term + 1);
  EXPECT_EQ(net.raft(1).role(), Role::kFollower);
  EXPECT_EQ(net.raft(1).leader(), N(3));
  EXPECT_EQ(net.raft(2).leader(), N(3));
  bool saw_campaign = false;
  for (const Message& m : net.sent) {
    if (m.type == MessageType::kRequestVote && m.from == N(3)) {
      saw_campaign = true;
      EXPECT_FALSE(m.pre_vote);
      EXPECT_TRUE(m.leadership_transfer);
    }
  }
  EXPECT_TRUE(saw_campaign);
  net.ProposeAndCommit(3, "after transfer");
}

// Proposals are refused while a transfer is in progress (the target must be
// able to catch up), and TimeoutNow goes out only once the target's match
// index equals the leader's last index.
TEST(Transfer, Section3_10_ProposalsRefusedAndTimeoutNowWaitsForCatchUp) {
  Network net({1, 2, 3});
  net.Elect(1);
  net.drop = [](const Message& m) { return m.to == N(2) && m.type == MessageType::kAppendEntries && !m.heartbeat; };
  net.ProposeAndCommit(1, "a");
  net.ProposeAndCommit(1, "b");
  Raft& leader = net.raft(1);
  ASSERT_LT(leader.GetStatus().progress.at(N(2)).match_index, leader.last_index());

  ASSERT_TRUE(leader.TransferLeadership(N(2)).ok());
  EXPECT_EQ(leader.GetStatus().transferee, N(2));
  net.Drain(1);
  net.Deliver();
  EXPECT_EQ(CountSent(net, MessageType::kTimeoutNow), 0);
  auto r = leader.Propose("c");
  EXPECT_EQ(r.status().code(), absl::StatusCode::kFailedPrecondition) << r.status();
  auto cc = leader.ProposeConfChange(ConfChange{ConfChangeType::kAddLearner, N(4), ""});
  EXPECT_EQ(cc.status().code(), absl::StatusCode::kUnavailable) << cc.status();

  // Let node 2 catch up, one message at a time, and watch for TimeoutNow.
  net.drop = nullptr;
  net.Tick(1);
  bool sent = false;
  while (!sent && net.DeliverOne()) {
    for (const Message& m : net.queue()) {
      if (m.type == MessageType::kTimeoutNow) {
        sent = true;
        EXPECT_EQ(m.to, N(2));
        EXPECT_EQ(leader.GetStatus().progress.at(N(2)).match_index, leader.last_index());
        EXPECT_EQ(net.raft(2).last_index(), leader.last_index());
      }
    }
  }
  ASSERT_TRUE(sent);
  net.Deliver();
  EXPECT_EQ(net.raft(2).role(), Role::kLeader);
}

// Thesis §3.10: a transfer that does not complete within an election
// timeout is aborted and the leader accepts proposals again.
TEST(Transfer, Section3_10_TransferAbortedAfterElectionTimeout) {
  Network net({1, 2, 3});
  net.Elect(1);
  net.Isolate(2);
  net.ProposeAndCommit(1, "a");  // node 2 falls behind
  Raft& leader = net.raft(1);
  ASSERT_TRUE(leader.TransferLeadership(N(2)).ok());
  net.TickNodes({1, 3}, kElection - 1);
  EXPECT_EQ(leader.GetStatus().transferee, N(2));
  EXPECT_FALSE(leader.Propose("refused").ok());
  net.TickNodes({1, 3}, 1);
  EXPECT_EQ(leader.role(), Role::kLeader);
  EXPECT_EQ(leader.GetStatus().transferee, kNoNode);
  EXPECT_TRUE(leader.Propose("resumed").ok());
  net.Drain(1);
  net.Deliver();
  EXPECT_EQ(CountSent(net, MessageType::kTimeoutNow), 0);
}

// Pitfall (NuRaft #553): never transfer to a learner, which cannot be
// elected; nor to a non-member. Only a leader transfers.
TEST(Transfer, Pitfall_TransferToLearnerRefused) {
  NetworkOptions options;
  options.tweak = [](Config& c) { c.auto_promote_learners = false; };
  Network net({1, 2, 3}, options);
  net.AddJoiningNode(4);
  net.Elect(1);
  ASSERT_TRUE(net.raft(1).ProposeConfChange(ConfChange{ConfChangeType::kAddLearner, N(4), ""}).ok());
  net.Drain(1);
  net.Deliver();
  ASSERT_TRUE(net.raft(1).conf_state().IsLearner(N(4)));
  EXPECT_EQ(net.raft(1).TransferLeadership(N(4)).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(net.raft(1).TransferLeadership(N(9)).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(net.raft(1).GetStatus().transferee, kNoNode);
  EXPECT_TRUE(net.raft(1).Propose("still leading").ok());
  EXPECT_EQ(net.raft(2).TransferLeadership(N(3)).code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(net.raft(1).TransferLeadership(N(1)).ok());  // to itself: nothing to do
  EXPECT_EQ(net.raft(1).GetStatus().transferee, kNoNode);
}

// A learner that receives TimeoutNow anyway (a stale or forged message)
// does not campaign.
TEST(Transfer, Pitfall_LearnerIgnoresTimeoutNow) {
  NetworkOptions options;
  options.tweak = [](Config& c) { c.auto_promote_learners = false; };
  Network net({1, 2, 3}, options);
  net.AddJoiningNode(4);
  net.Elect(1);
  ASSERT_TRUE(net.raft(1).ProposeConfChange(ConfChange{ConfChangeType::kAddLearner, N(4), ""}).ok());
  net.Drain(1);
  net.Deliver();
  net.node(4).Step(TimeoutNow(1, 4, net.raft(4).term().value()));
  EXPECT_EQ(net.raft(4).role(), Role::kFollower);
  EXPECT_TRUE(OfType(net.node(4).Drain(), MessageType::kRequestVote).empty());
}

}  // namespace
}  // namespace quorumkv::raft::testing
