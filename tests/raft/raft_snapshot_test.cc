// Log compaction and InstallSnapshot (Raft §7, Figure 13).
#include <gtest/gtest.h>

#include "tests/raft/raft_test_util.h"

namespace quorumkv::raft::testing {
namespace {

int CountSent(const Network& net, MessageType type, uint64_t to) {
  int n = 0;
  for (const Message& m : net.sent) n += m.type == type && m.to == N(to);
  return n;
}

TEST(Compaction, CompactDiscardsEntriesUpToTheIndex) {
  Network net({1, 2, 3});
  net.Elect(1);
  for (int i = 0; i < 5; ++i) net.ProposeAndCommit(1, "v" + std::to_string(i));
  Raft& leader = net.raft(1);
  MemoryLogStorage& storage = net.node(1).storage;
  const Index applied = leader.applied_index();
  const Index last = leader.last_index();
  ASSERT_EQ(applied, last);
  const Index point = applied - 2;
  const Term term_at_point = *storage.TermAt(point);
  ASSERT_TRUE(leader.Compact(point).ok());
  EXPECT_EQ(storage.FirstIndex(), point + 1);
  EXPECT_EQ(storage.snapshot_meta().index, point);
  EXPECT_EQ(storage.snapshot_meta().term, term_at_point);
  EXPECT_EQ(storage.snapshot_meta().conf_state, Voters({1, 2, 3}));
  EXPECT_EQ(leader.GetStatus().first_index, point + 1);
  EXPECT_EQ(leader.last_index(), last);
  // Compacting again below the point is a no-op; beyond applied is refused.
  EXPECT_TRUE(leader.Compact(point - 1).ok());
  EXPECT_EQ(storage.FirstIndex(), point + 1);
  EXPECT_EQ(leader.Compact(applied + 1).code(), absl::StatusCode::kInvalidArgument);
  // Replication goes on above the compaction point.
  net.ProposeAndCommit(1, "after");
}

// Raft §7: a follower that needs entries the leader has discarded receives
// the leader's snapshot, then the entries after it.
TEST(InstallSnapshot, Section7_FollowerBehindFirstIndexReceivesSnapshot) {
  Network net({1, 2, 3});
  net.Elect(1);
  net.Isolate(3);
  for (int i = 0; i < 8; ++i) net.ProposeAndCommit(1, "v" + std::to_string(i));
  const Index point = net.raft(1).applied_index();
  ASSERT_TRUE(net.raft(1).Compact(point).ok());
  net.ProposeAndCommit(1, "after the snapshot");
  ASSERT_LT(net.raft(3).last_index() + 1, net.node(1).storage.FirstIndex());

  net.Rejoin(3);
  net.TickAll(3);
  EXPECT_EQ(CountSent(net, MessageType::kInstallSnapshot, 3), 1);
  ASSERT_TRUE(net.node(3).installed_snapshot.has_value());
  EXPECT_EQ(net.node(3).installed_snapshot->meta.index, point);
  EXPECT_EQ(net.node(3).storage.snapshot_meta().index, point);
  EXPECT_EQ(net.raft(3).conf_state(), Voters({1, 2, 3}));
  EXPECT_EQ(net.raft(3).last_index(), net.raft(1).last_index());
  EXPECT_EQ(net.raft(3).commit_index(), net.raft(1).commit_index());
  EXPECT_EQ(net.node(3).applied_index, net.raft(1).commit_index());
  EXPECT_EQ(LastAppliedData(net.node(3)), "after the snapshot");
  EXPECT_EQ(net.raft(1).GetStatus().progress.at(N(3)).state, ProgressState::kReplicate);
  net.ProposeAndCommit(1, "and on");
  EXPECT_EQ(LastAppliedData(net.node(3)), "and on");
}

// A brand-new node added after the log was compacted starts from the
// leader's snapshot (which carries the configuration), then the entries
// after it, and is promoted once caught up.
TEST(InstallSnapshot, Section7_JoiningNodeStartsFromSnapshot) {
  Network net({1, 2, 3});
  net.AddJoiningNode(4);
  net.Elect(1);
  for (int i = 0; i < 5; ++i) net.ProposeAndCommit(1, "v" + std::to_string(i));
  ASSERT_TRUE(net.raft(1).Compact(net.raft(1).applied_index()).ok());
  ASSERT_TRUE(net.raft(1).ProposeConfChange(ConfChange{ConfChangeType::kAddLearner, N(4), "addr4"}).ok());
  net.Drain(1);
  net.Deliver();
  net.TickAll(3);
  EXPECT_EQ(CountSent(net, MessageType::kInstallSnapshot, 4), 1);
  ASSERT_TRUE(net.node(4).installed_snapshot.has_value());
  EXPECT_EQ(net.node(4).installed_snapshot->meta.conf_state, Voters({1, 2, 3}));
  EXPECT_EQ(net.raft(4).last_index(), net.raft(1).last_index());
  for (uint64_t id : {1, 2, 3, 4}) EXPECT_EQ(net.raft(id).conf_state(), Voters({1, 2, 3, 4})) << "node " << id;
}

// A snapshot the transport failed to deliver is sent again.
TEST(InstallSnapshot, Section7_FailedSnapshotIsRetried) {
  Network net({1, 2, 3});
  net.Elect(1);
  net.Isolate(3);
  for (int i = 0; i < 4; ++i) net.ProposeAndCommit(1, "v");
  ASSERT_TRUE(net.raft(1).Compact(net.raft(1).applied_index()).ok());
  net.Rejoin(3);
  net.drop = [](const Message& m) { return m.type == MessageType::kInstallSnapshot; };
  net.TickAll(1);
  ASSERT_EQ(CountSent(net, MessageType::kInstallSnapshot, 3), 1);
  EXPECT_EQ(net.raft(1).GetStatus().progress.at(N(3)).state, ProgressState::kSnapshot);
  net.TickAll(2);
  EXPECT_EQ(CountSent(net, MessageType::kInstallSnapshot, 3), 1);  // one at a time
  net.raft(1).ReportSnapshot(N(3), false);
  net.drop = nullptr;
  net.TickAll(2);
  EXPECT_EQ(CountSent(net, MessageType::kInstallSnapshot, 3), 2);
  EXPECT_EQ(net.raft(3).last_index(), net.raft(1).last_index());
}

// Figure 13, receiver rule 6 (hashicorp/raft #704): if the follower's log
// holds the snapshot's last entry, it keeps the entries after it.
TEST(InstallSnapshot, Figure13_SnapshotMatchingLogKeepsSuffix) {
  auto f = TestNode::WithLog(1, Voters({1, 2, 3}), {1, 1, 1, 2, 2, 2, 2, 2}, HardState{T(2), N(2), I(3)});
  f->Drain();
  f->Step(InstallSnapshot(2, 1, 2, SnapshotMeta{I(6), T(2), Voters({1, 2, 3})}));
  Ready rd = f->raft().GetReady();
  EXPECT_FALSE(rd.snapshot.has_value()) << "nothing to install: the log already has it";
  std::vector<Message> resp = OfType(rd.messages, MessageType::kInstallSnapshotResponse);
  ASSERT_EQ(resp.size(), 1u);
  EXPECT_TRUE(resp[0].success);
  EXPECT_EQ(resp[0].match_index, I(6));
  f->raft().Advance(rd);
  f->Drain();
  EXPECT_EQ(f->raft().last_index(), I(8));
  EXPECT_EQ(f->raft().commit_index(), I(6));
  EXPECT_EQ(StoredTerms(f->storage), (std::vector<uint64_t>{1, 1, 1, 2, 2, 2, 2, 2}));
}

// Figure 13, rule 7: otherwise the whole log is discarded and the snapshot
// (with its configuration) replaces it.
TEST(InstallSnapshot, Figure13_SnapshotNotMatchingReplacesLog) {
  auto f = TestNode::WithLog(1, Voters({1, 2, 3}), {1, 1, 1, 2, 2, 2, 2, 2}, HardState{T(3), N(2), I(3)});
  f->Drain();
  f->Step(InstallSnapshot(2, 1, 3, SnapshotMeta{I(6), T(3), Voters({1, 2, 3}, {4})}));
  std::vector<Message> msgs = f->Drain();
  ASSERT_TRUE(f->installed_snapshot.has_value());
  EXPECT_EQ(f->installed_snapshot->meta.index, I(6));
  EXPECT_EQ(f->raft().last_index(), I(6));
  EXPECT_EQ(f->raft().commit_index(), I(6));
  EXPECT_EQ(f->applied_index, I(6));
  EXPECT_EQ(f->raft().conf_state(), Voters({1, 2, 3}, {4}));
  EXPECT_EQ(f->storage.FirstIndex(), I(7));
  EXPECT_EQ(f->storage.LastIndex(), I(6));
  std::vector<Message> resp = OfType(msgs, MessageType::kInstallSnapshotResponse);
  ASSERT_EQ(resp.size(), 1u);
  EXPECT_EQ(resp[0].match_index, I(6));
  // The next AppendEntries continues right after the snapshot.
  f->Step(AppendEntries(2, 1, 3, 6, 3, MakeEntries(I(7), {3}), 7));
  f->Drain();
  EXPECT_EQ(f->raft().commit_index(), I(7));
}

// A snapshot at or below the follower's commit index changes nothing.
TEST(InstallSnapshot, Figure13_StaleSnapshotIgnored) {
  auto f = TestNode::WithLog(1, Voters({1, 2, 3}), {1, 1, 1, 2, 2}, HardState{T(2), N(2), I(4)});
  f->Drain();
  f->Step(InstallSnapshot(2, 1, 2, SnapshotMeta{I(3), T(1), Voters({1, 2, 3})}));
  std::vector<Message> resp = OfType(f->Drain(), MessageType::kInstallSnapshotResponse);
  ASSERT_EQ(resp.size(), 1u);
  EXPECT_EQ(resp[0].match_index, I(4));
  EXPECT_FALSE(f->installed_snapshot.has_value());
  EXPECT_EQ(StoredTerms(f->storage), (std::vector<uint64_t>{1, 1, 1, 2, 2}));
}

// A restart from a snapshot plus the log after it restores the
// configuration: the snapshot's, then the changes logged after it.
TEST(InstallSnapshot, RestartFromSnapshotAndLogRestoresConfiguration) {
  NetworkOptions options;
  options.tweak = [](Config& c) { c.auto_promote_learners = false; };
  Network net({1, 2, 3}, options);
  net.Elect(1);
  ASSERT_TRUE(net.raft(1).ProposeConfChange(ConfChange{ConfChangeType::kAddLearner, N(4), ""}).ok());
  net.Drain(1);
  net.Deliver();
  net.ProposeAndCommit(1, "x");
  ASSERT_TRUE(net.raft(1).Compact(net.raft(1).applied_index()).ok());
  ASSERT_EQ(net.node(1).storage.snapshot_meta().conf_state, Voters({1, 2, 3}, {4}));
  ASSERT_TRUE(net.raft(1).ProposeConfChange(ConfChange{ConfChangeType::kAddLearner, N(5), ""}).ok());
  net.Drain(1);
  net.Deliver();
  const Index last = net.raft(1).last_index();
  const Index commit = net.raft(1).commit_index();
  net.Crash(1);
  net.Restart(1);
  EXPECT_EQ(net.raft(1).conf_state(), Voters({1, 2, 3}, {4, 5}));
  EXPECT_EQ(net.raft(1).last_index(), last);
  EXPECT_EQ(net.raft(1).commit_index(), commit);
  EXPECT_EQ(net.raft(1).GetStatus().first_index, net.node(1).storage.FirstIndex());

  // A follower restarted right after installing a snapshot, too.
  net.Isolate(3);
  net.Elect(2);
  for (int i = 0; i < 3; ++i) net.ProposeAndCommit(2, "y");
  ASSERT_TRUE(net.raft(2).Compact(net.raft(2).applied_index()).ok());
  net.Rejoin(3);
  net.TickAll(2);
  ASSERT_TRUE(net.node(3).installed_snapshot.has_value());
  net.Crash(3);
  net.Restart(3);
  EXPECT_EQ(net.raft(3).conf_state(), Voters({1, 2, 3}, {4, 5}));
  EXPECT_EQ(net.raft(3).last_index(), net.raft(2).last_index());
}

}  // namespace
}  // namespace quorumkv::raft::testing
