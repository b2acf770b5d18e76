// What a node answers when it refuses a write before proposing it: the
// refusal must carry the not-proposed mark (server/not_proposed.h), since
// that mark is what lets a client retry a write without a session safely.
// One in-process node of a one-member cluster, no peers, no gRPC.
#include <memory>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "kv/command.h"
#include "server/node.h"
#include "server/not_proposed.h"
#include "tests/storage/temp_dir.h"

namespace quorumkv::server {
namespace {

using raft::testing::TempDir;

NodeOptions OneMemberCluster(const TempDir& dir) {
  NodeOptions o;
  o.id = raft::NodeId(1);
  o.cluster_id = 7;
  o.data_dir = dir.Sub("node1");
  // Never dialled: the cluster has no other member.
  o.peer_address = "127.0.0.1:1";
  o.client_address = "127.0.0.1:2";
  o.initial_members = {Member{1, o.peer_address, o.client_address, true}};
  o.tick_interval = absl::Milliseconds(1);
  o.election_timeout_ticks = 10;
  o.heartbeat_interval_ticks = 2;
  o.lease_drift_margin_ticks = 2;
  return o;
}

kv::Command PutCommand(std::string key) {
  kv::Command c;
  c.type = kv::CommandType::kPut;
  c.key = std::move(key);
  c.value = "v";
  return c;
}

// Runs a write and waits (bounded) for its answer.
absl::StatusOr<WriteOutcome> WriteAndWait(Node& node, kv::Command command, absl::Time deadline) {
  absl::Notification answered;
  std::optional<absl::StatusOr<WriteOutcome>> outcome;
  node.Write(std::move(command), deadline, [&](absl::StatusOr<WriteOutcome> r) {
    outcome = std::move(r);
    answered.Notify();
  });
  if (!answered.WaitForNotificationWithTimeout(absl::Seconds(10))) {
    return absl::InternalError("the node never answered the write");
  }
  return *std::move(outcome);
}

absl::Status ChangeAndWait(Node& node, absl::Time deadline) {
  absl::Notification answered;
  absl::Status status;
  raft::ConfChange change;
  change.type = raft::ConfChangeType::kAddLearner;
  change.node_id = raft::NodeId(2);
  node.ChangeMembership(change, deadline, [&](absl::StatusOr<std::vector<Member>> r) {
    status = r.status();
    answered.Notify();
  });
  if (!answered.WaitForNotificationWithTimeout(absl::Seconds(10))) {
    return absl::InternalError("the node never answered the membership change");
  }
  return status;
}

// Commits one write, so the node is known to be a working leader.
void WaitUntilWritable(Node& node) {
  const absl::Time give_up = absl::Now() + absl::Seconds(10);
  absl::StatusOr<WriteOutcome> r = absl::UnavailableError("not tried");
  while (absl::Now() < give_up) {
    r = WriteAndWait(node, PutCommand("warm-up"), absl::Now() + absl::Seconds(2));
    if (r.ok()) return;
    absl::SleepFor(absl::Milliseconds(5));
  }
  FAIL() << "the one-member cluster never took a write: " << r.status();
}

TEST(NodeRefusalsTest, WriteToANodeNotYetStartedIsRefusedAsNotProposed) {
  TempDir dir;
  auto node = Node::Open(OneMemberCluster(dir));
  ASSERT_TRUE(node.ok()) << node.status();
  absl::StatusOr<WriteOutcome> r = WriteAndWait(**node, PutCommand("k"), absl::Now() + absl::Seconds(5));
  ASSERT_EQ(r.status().code(), absl::StatusCode::kUnavailable) << r.status();
  EXPECT_TRUE(IsNotProposed(r.status())) << r.status();
}

TEST(NodeRefusalsTest, WriteAndMembershipChangeAfterStopAreRefusedAsNotProposed) {
  TempDir dir;
  auto node = Node::Open(OneMemberCluster(dir));
  ASSERT_TRUE(node.ok()) << node.status();
  (*node)->Start(/*transport=*/nullptr);
  WaitUntilWritable(**node);
  (*node)->Stop();

  absl::StatusOr<WriteOutcome> r = WriteAndWait(**node, PutCommand("k"), absl::Now() + absl::Seconds(5));
  ASSERT_EQ(r.status().code(), absl::StatusCode::kUnavailable) << r.status();
  EXPECT_TRUE(IsNotProposed(r.status())) << r.status();

  absl::Status change = ChangeAndWait(**node, absl::Now() + absl::Seconds(5));
  ASSERT_EQ(change.code(), absl::StatusCode::kUnavailable) << change;
  EXPECT_TRUE(IsNotProposed(change)) << change;
}

TEST(NodeRefusalsTest, WriteWhoseDeadlinePassedBeforeProposingIsRefusedAsNotProposed) {
  TempDir dir;
  auto node = Node::Open(OneMemberCluster(dir));
  ASSERT_TRUE(node.ok()) << node.status();
  (*node)->Start(/*transport=*/nullptr);
  WaitUntilWritable(**node);

  absl::StatusOr<WriteOutcome> r = WriteAndWait(**node, PutCommand("k"), absl::Now() - absl::Seconds(1));
  ASSERT_EQ(r.status().code(), absl::StatusCode::kDeadlineExceeded) << r.status();
  EXPECT_TRUE(IsNotProposed(r.status())) << r.status();
  (*node)->Stop();
}

}  // namespace
}  // namespace quorumkv::server
