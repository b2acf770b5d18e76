// Log replication (Raft §5.3, §5.4.2; Figure 2 "AppendEntries RPC") and the
// leader's flow control (batching, pipelining, probing).
#include <gtest/gtest.h>

#include "tests/raft/raft_test_util.h"

namespace quorumkv::raft::testing {
namespace {

Message OnlyAppendResponse(const std::vector<Message>& msgs) {
  std::vector<Message> r = OfType(msgs, MessageType::kAppendEntriesResponse);
  EXPECT_EQ(r.size(), 1u);
  return r.empty() ? Message{} : r.front();
}

// A follower at term 3 whose log has terms [1, 1, 2, 2, 2].
std::unique_ptr<TestNode> Follower(uint64_t commit = 1) {
  auto node = TestNode::WithLog(1, Voters({1, 2, 3}), {1, 1, 2, 2, 2}, HardState{T(3), kNoNode, I(commit)});
  node->Drain();
  return node;
}

// Figure 2, receiver rule 2: reply false if the log has no entry at
// prevLogIndex whose term matches prevLogTerm; the rejection carries the
// conflict hint (the conflicting term and the first index of that term).
TEST(AppendEntries, Figure2_Rule2_PrevTermMismatchRejectedWithConflictTermHint) {
  auto f = Follower();
  f->Step(AppendEntries(2, 1, 3, 5, 3, MakeEntries(I(6), {3}), 5));
  Message resp = OnlyAppendResponse(f->Drain());
  EXPECT_FALSE(resp.success);
  EXPECT_EQ(resp.term, T(3));
  EXPECT_EQ(resp.rejected_index, I(5));
  EXPECT_EQ(resp.conflict_term, T(2));
  EXPECT_EQ(resp.conflict_index, I(3));  // first index of term 2
  EXPECT_EQ(StoredTerms(f->storage), (std::vector<uint64_t>{1, 1, 2, 2, 2}));
  EXPECT_EQ(f->raft().commit_index(), I(1));
  EXPECT_EQ(f->raft().leader(), N(2));
}

TEST(AppendEntries, Figure2_Rule2_ShortLogRejectedWithLastPlusOneHint) {
  auto f = Follower();
  f->Step(AppendEntries(2, 1, 3, 8, 3, MakeEntries(I(9), {3}), 5));
  Message resp = OnlyAppendResponse(f->Drain());
  EXPECT_FALSE(resp.success);
  EXPECT_EQ(resp.rejected_index, I(8));
  EXPECT_EQ(resp.conflict_index, I(6));
  EXPECT_EQ(resp.conflict_term, T(0));
  EXPECT_EQ(f->raft().last_index(), I(5));
}

// The hint never points into the committed prefix (which matches anyway).
TEST(AppendEntries, Figure2_Rule2_ConflictHintStaysAboveCommit) {
  auto f = Follower(/*commit=*/4);
  f->Step(AppendEntries(2, 1, 3, 5, 3, {}, 4));
  Message resp = OnlyAppendResponse(f->Drain());
  EXPECT_FALSE(resp.success);
  EXPECT_EQ(resp.conflict_term, T(2));
  EXPECT_EQ(resp.conflict_index, I(5));
}

// Figure 2, receiver rules 3 and 4: a conflicting entry and all that follow
// it are deleted, then the new entries are appended.
TEST(AppendEntries, Figure2_Rule3_TruncatesConflictingSuffix) {
  auto f = Follower();
  f->Step(AppendEntries(2, 1, 3, 2, 1, MakeEntries(I(3), {3, 3}), 2));
  Message resp = OnlyAppendResponse(f->Drain());
  EXPECT_TRUE(resp.success);
  EXPECT_EQ(resp.match_index, I(4));
  EXPECT_EQ(StoredTerms(f->storage), (std::vector<uint64_t>{1, 1, 3, 3}));
  EXPECT_EQ(f->raft().last_index(), I(4));
  EXPECT_EQ(f->raft().commit_index(), I(2));
}

// Pitfall "Truncating on a stale AppendEntries": a reordered, older and
// shorter AppendEntries whose entries all match must not cut the longer
// suffix that a later message already appended.
TEST(AppendEntries, Pitfall_TruncatingOnStaleAppendEntries) {
  auto f = TestNode::WithLog(1, Voters({1, 2, 3}), {1, 1, 1}, HardState{T(2), kNoNode, I(3)});
  f->Drain();
  Message older = AppendEntries(2, 1, 2, 3, 1, MakeEntries(I(4), {2}), 3);
  Message newer = AppendEntries(2, 1, 2, 3, 1, MakeEntries(I(4), {2, 2, 2}), 3);
  f->Step(newer);
  EXPECT_EQ(OnlyAppendResponse(f->Drain()).match_index, I(6));
  f->Step(older);  // arrives late
  Message resp = OnlyAppendResponse(f->Drain());
  EXPECT_TRUE(resp.success);
  EXPECT_EQ(resp.match_index, I(4));  // what this message proves, no more
  EXPECT_EQ(f->raft().last_index(), I(6));
  EXPECT_EQ(StoredTerms(f->storage), (std::vector<uint64_t>{1, 1, 1, 2, 2, 2}));
  // An empty one (a stale probe) does not truncate either.
  f->Step(AppendEntries(2, 1, 2, 4, 2, {}, 3));
  EXPECT_TRUE(OnlyAppendResponse(f->Drain()).success);
  EXPECT_EQ(f->raft().last_index(), I(6));
}

// A success acknowledgement queued in one term must not leave after a newer
// leader truncated the entries it acknowledges (before they were persisted):
// the old leader, still in the old term, would count entries this node never
// stored. Found by raft_message_fuzzer (regressions/stale-ack-after-truncation).
TEST(AppendEntries, StaleTermAcknowledgementOfTruncatedEntriesNeverSent) {
  auto f = TestNode::WithLog(1, Voters({1, 2, 3}), {1, 1}, HardState{T(2), kNoNode, I(2)});
  f->Drain();
  f->Step(AppendEntries(2, 1, 2, 2, 1, MakeEntries(I(3), {2, 2, 2}), 2));  // acked as match 5
  f->Step(AppendEntries(3, 1, 3, 2, 1, MakeEntries(I(3), {3}), 2));        // truncates 3..5
  std::vector<Message> out = f->Drain();
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].to, N(3));
  EXPECT_EQ(out[0].term, T(3));
  EXPECT_EQ(out[0].match_index, I(3));
  EXPECT_TRUE(OfType(out, MessageType::kAppendEntriesResponse, 2).empty());
  EXPECT_EQ(StoredTerms(f->storage), (std::vector<uint64_t>{1, 1, 3}));
}

// Committed entries are never truncated: a (necessarily stale) message
// starting below the commit index is answered with the commit index and
// changes nothing, even when its entries differ.
TEST(AppendEntries, Figure2_CommittedEntriesNeverTruncated) {
  auto f = Follower(/*commit=*/4);
  f->Step(AppendEntries(2, 1, 3, 1, 1, MakeEntries(I(2), {1, 3, 3}), 4));
  Message resp = OnlyAppendResponse(f->Drain());
  EXPECT_TRUE(resp.success);
  EXPECT_EQ(resp.match_index, I(4));
  EXPECT_EQ(StoredTerms(f->storage), (std::vector<uint64_t>{1, 1, 2, 2, 2}));
}

// Figure 2, receiver rule 5: commitIndex = min(leaderCommit, index of last
// new entry) — not the end of the follower's (possibly stale) log.
TEST(AppendEntries, Figure2_Rule5_CommitIsMinOfLeaderCommitAndLastNewEntry) {
  auto f = Follower();
  f->Step(AppendEntries(2, 1, 3, 2, 1, MakeEntries(I(3), {2}), 100));
  EXPECT_TRUE(OnlyAppendResponse(f->Drain()).success);
  EXPECT_EQ(f->raft().commit_index(), I(3));  // entries 4 and 5 are unverified
  f->Step(AppendEntries(2, 1, 3, 5, 2, {}, 4));
  f->Drain();
  EXPECT_EQ(f->raft().commit_index(), I(4));
  // Committed entries are handed to the state machine once durable.
  ASSERT_FALSE(f->applied.empty());
  EXPECT_EQ(f->applied.back().index, I(4));
}

// A heartbeat carries min(follower's match, leader commit) and commits it.
TEST(AppendEntries, Figure2_HeartbeatAdvancesFollowerCommit) {
  auto f = Follower();
  f->Step(Heartbeat(2, 1, 3, 5));
  Message resp = OnlyAppendResponse(f->Drain());
  EXPECT_TRUE(resp.success);
  EXPECT_TRUE(resp.heartbeat);
  EXPECT_EQ(f->raft().commit_index(), I(5));
  EXPECT_EQ(f->applied_index, I(5));
}

// ---------------------------------------------------------------------------
// Commitment (§5.3, §5.4.2).

// The paper's Figure 8: a leader must not commit an entry of an earlier
// term by counting replicas, because a later leader may still overwrite it.
TEST(Commit, Section5_4_2_Figure8_PriorTermEntryNotCommittedByCounting) {
  const ConfState conf = Voters({1, 2, 3, 4, 5});
  // (c): S1 has [1, 2] and is leader of term 4 (after S5 led term 3).
  auto s1 = TestNode::WithLog(1, conf, {1, 2}, HardState{T(3), kNoNode, I(1)});
  ElectByHand(*s1);
  ASSERT_EQ(s1->raft().term(), T(4));
  ASSERT_EQ(s1->raft().last_index(), I(3));  // its no-op of term 4
  // The term-2 entry reaches S2 and S3: a majority holds index 2 ...
  s1->Step(AppendAccepted(2, 1, 4, 2));
  s1->Step(AppendAccepted(3, 1, 4, 2));
  s1->Drain();
  // ... but it is not committed.
  EXPECT_EQ(s1->raft().commit_index(), I(1));
  EXPECT_EQ(s1->applied_index, I(1));

  // (d) shows why: S5, whose log is [1, 3], can still win term 5 with the
  // votes of S2, S3 (logs [1, 2]) and S4, and overwrite index 2.
  auto s2 = TestNode::WithLog(2, conf, {1, 2}, HardState{T(4), N(1), I(1)});
  s2->Drain();
  s2->Tick(10);  // S1 has crashed: no leader heard for an election timeout
  s2->Step(VoteRequest(5, 2, 5, 2, 3));
  std::vector<Message> resp = OfType(s2->Drain(), MessageType::kRequestVoteResponse);
  ASSERT_EQ(resp.size(), 1u);
  EXPECT_TRUE(resp[0].vote_granted);

  // (e): once an entry of S1's own term (index 3) is on a majority, it
  // commits, and index 2 with it.
  s1->Step(AppendAccepted(2, 1, 4, 3));
  EXPECT_EQ(s1->raft().commit_index(), I(1));
  s1->Step(AppendAccepted(3, 1, 4, 3));
  EXPECT_EQ(s1->raft().commit_index(), I(3));
  s1->Drain();
  EXPECT_EQ(s1->applied_index, I(3));
}

// Leader commit reaches the followers (with the next AppendEntries), and
// every node applies the same entries.
TEST(Commit, Section5_3_LeaderCommitPropagatesToFollowers) {
  Network net({1, 2, 3});
  net.Elect(1);
  const Index a = net.ProposeAndCommit(1, "a");
  const Index b = net.ProposeAndCommit(1, "b");
  EXPECT_EQ(b, a + 1);
  for (uint64_t id : {1, 2, 3}) {
    EXPECT_EQ(net.raft(id).commit_index(), b) << "node " << id;
    ASSERT_GE(net.node(id).applied.size(), 2u);
    EXPECT_EQ(LastAppliedData(net.node(id)), "b");
    EXPECT_EQ(net.node(id).applied[net.node(id).applied.size() - 2].data, "a");
  }
}

// A follower that has the entry but missed the commit (the empty
// AppendEntries that carried it was lost) learns it from the next heartbeat.
TEST(Commit, Section5_3_HeartbeatCarriesCommitToFollower) {
  Network net({1, 2, 3});
  net.Elect(1);
  net.drop = [](const Message& m) {
    return m.to == N(3) && m.type == MessageType::kAppendEntries && !m.heartbeat && m.entries.empty();
  };
  const Index i = net.ProposeAndCommit(1, "x");
  EXPECT_EQ(net.raft(3).last_index(), i);
  EXPECT_LT(net.raft(3).commit_index(), i);
  net.drop = nullptr;
  net.TickAll(1);
  EXPECT_EQ(net.raft(3).commit_index(), i);
  EXPECT_EQ(LastAppliedData(net.node(3)), "x");
}

// An AppendEntries lost in the replicate state (the follower crashed before
// persisting it, or the network dropped it without the transport noticing)
// is sent again once a heartbeat answer shows the follower is behind, even
// when no new proposal comes: otherwise a write whose entry was lost to a
// majority would never commit.
TEST(Commit, Section5_3_LostAppendEntriesResentAfterHeartbeatResponse) {
  Network net({1, 2, 3});
  net.Elect(1);
  ASSERT_EQ(net.raft(1).GetStatus().progress.at(N(2)).state, ProgressState::kReplicate);
  net.drop = [](const Message& m) {
    return m.type == MessageType::kAppendEntries && !m.heartbeat && !m.entries.empty();
  };
  auto r = net.raft(1).Propose("x");
  ASSERT_TRUE(r.ok());
  net.Drain(1);
  net.Deliver();
  EXPECT_LT(net.raft(1).commit_index(), r->first);
  net.drop = nullptr;
  net.TickAll(3);
  EXPECT_EQ(net.raft(1).commit_index(), r->first);
  for (uint64_t id : {2, 3}) {
    EXPECT_EQ(net.raft(id).last_index(), r->first) << "node " << id;
    EXPECT_EQ(net.raft(id).commit_index(), r->first) << "node " << id;
  }
}

// Section 5.3: "the leader can decrement nextIndex one at a time"... or use
// the conflict term to skip a whole term per round trip. A long divergent
// suffix is found in one or two rejections, not in one per entry.
struct BacktrackCase {
  const char* name;
  std::vector<uint64_t> leader_terms;
  std::vector<uint64_t> follower_terms;
};

std::vector<uint64_t> Terms(std::initializer_list<std::pair<uint64_t, int>> runs) {
  std::vector<uint64_t> out;
  for (auto [term, count] : runs) out.insert(out.end(), count, term);
  return out;
}

class BacktrackTest : public ::testing::TestWithParam<BacktrackCase> {};

TEST_P(BacktrackTest, Section5_3_FastBacktrackingConvergesInFewRoundTrips) {
  const BacktrackCase& c = GetParam();
  NetworkOptions options;
  options.log_terms = {{1, c.leader_terms}, {2, c.leader_terms}, {3, c.follower_terms}};
  for (uint64_t id : {1, 2, 3}) options.hard_states[id] = HardState{T(4), kNoNode, I(3)};
  Network net({1, 2, 3}, options);
  net.Elect(1);
  net.TickAll(2);
  int rejections = 0;
  int appends = 0;
  for (const Message& m : net.delivered) {
    if (m.type == MessageType::kAppendEntriesResponse && m.from == N(3) && !m.success) ++rejections;
    if (m.type == MessageType::kAppendEntries && m.to == N(3) && !m.heartbeat) ++appends;
  }
  EXPECT_GE(rejections, 1) << c.name;
  EXPECT_LE(rejections, 2) << c.name;
  EXPECT_LE(appends, 4) << c.name;
  EXPECT_EQ(StoredTerms(net.node(3).storage), StoredTerms(net.node(1).storage));
  EXPECT_EQ(net.raft(3).commit_index(), net.raft(1).last_index());
}

INSTANTIATE_TEST_SUITE_P(
    Section5_3, BacktrackTest,
    ::testing::Values(
        // The follower's long suffix is of a term the leader never had.
        BacktrackCase{"FollowerTermUnknownToLeader", Terms({{1, 3}, {2, 50}, {4, 50}}),
                      Terms({{1, 3}, {2, 50}, {3, 100}})},
        // The leader has a few entries of the follower's last term.
        BacktrackCase{"LeaderHasPartOfFollowerTerm", Terms({{1, 3}, {3, 10}, {4, 40}}),
                      Terms({{1, 3}, {3, 80}})},
        // The follower is simply far behind.
        BacktrackCase{"FollowerShort", Terms({{1, 3}, {2, 60}}), Terms({{1, 3}, {2, 2}})}),
    [](const ::testing::TestParamInfo<BacktrackCase>& info) { return std::string(info.param.name); });

// ---------------------------------------------------------------------------
// Batching, pipelining and probing.

std::vector<Message> AppendsTo(Network& net, uint64_t to) {
  return net.Take([to](const Message& m) {
    return m.type == MessageType::kAppendEntries && m.to == N(to) && !m.heartbeat;
  });
}

TEST(Replication, BatchingRespectsMaxEntriesPerMessage) {
  NetworkOptions options;
  options.tweak = [](Config& c) { c.max_entries_per_message = 3; };
  Network net({1, 2, 3}, options);
  net.Elect(1);
  const Index first = net.raft(1).last_index() + 1;
  for (int i = 0; i < 10; ++i) ASSERT_TRUE(net.raft(1).Propose("p" + std::to_string(i)).ok());
  net.Drain(1);
  std::vector<Message> appends = AppendsTo(net, 2);
  ASSERT_EQ(appends.size(), 4u);  // 3 + 3 + 3 + 1
  Index next = first;
  for (const Message& m : appends) {
    EXPECT_LE(m.entries.size(), 3u);
    ASSERT_FALSE(m.entries.empty());
    EXPECT_EQ(m.prev_log_index + 1, next);
    EXPECT_EQ(m.entries.front().index, next);
    next = m.entries.back().index + 1;
  }
  EXPECT_EQ(next, first + 10);
}

TEST(Replication, BatchingRespectsMaxBytesPerMessage) {
  NetworkOptions options;
  options.tweak = [](Config& c) { c.max_bytes_per_message = 250; };
  Network net({1, 2, 3}, options);
  net.Elect(1);
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(net.raft(1).Propose(std::string(100, 'x')).ok());
  ASSERT_TRUE(net.raft(1).Propose(std::string(1000, 'y')).ok());  // alone above the limit
  net.Drain(1);
  std::vector<Message> appends = AppendsTo(net, 2);
  size_t total = 0;
  for (const Message& m : appends) {
    ASSERT_FALSE(m.entries.empty());
    uint64_t bytes = 0;
    for (const Entry& e : m.entries) bytes += e.ByteSize();
    if (m.entries.size() > 1) {
      EXPECT_LE(bytes, 250u);
    }
    total += m.entries.size();
  }
  EXPECT_EQ(total, 6u);
  ASSERT_EQ(appends.size(), 4u);  // 2 + 2 + 1 + 1 (the big one alone)
  EXPECT_EQ(appends.back().entries.size(), 1u);
  EXPECT_EQ(appends.back().entries[0].data.size(), 1000u);
}

// Pipelining (etcd's replicate state): several AppendEntries in flight at
// once, at most max_inflight_messages; each acknowledgement frees a slot.
TEST(Replication, PipeliningBoundedByMaxInflightMessages) {
  NetworkOptions options;
  options.tweak = [](Config& c) {
    c.max_entries_per_message = 1;
    c.max_inflight_messages = 3;
  };
  Network net({1, 2, 3}, options);
  net.Elect(1);
  ASSERT_EQ(net.raft(1).GetStatus().progress.at(N(2)).state, ProgressState::kReplicate);
  const Index first = net.raft(1).last_index() + 1;
  for (int i = 0; i < 10; ++i) ASSERT_TRUE(net.raft(1).Propose("p").ok());
  net.Drain(1);
  std::vector<Message> appends = AppendsTo(net, 2);
  ASSERT_EQ(appends.size(), 3u);
  for (size_t k = 0; k < appends.size(); ++k) EXPECT_EQ(appends[k].entries[0].index, first + k);
  EXPECT_EQ(net.raft(1).GetStatus().progress.at(N(2)).inflight_count(), 3u);

  // The first is acknowledged: exactly one more goes out.
  net.node(2).Step(appends[0]);
  std::vector<Message> acks = net.node(2).Drain();
  net.node(1).Step(OnlyAppendResponse(acks));
  net.Drain(1);
  std::vector<Message> more = AppendsTo(net, 2);
  ASSERT_EQ(more.size(), 1u);
  EXPECT_EQ(more[0].entries[0].index, first + 3);
}

// A rejection in the replicate state sends the peer back to probing: one
// message in flight until it answers; stale rejections are ignored.
TEST(Replication, RejectionMovesPeerToProbeWithOneMessageInFlight) {
  NetworkOptions options;
  options.tweak = [](Config& c) { c.max_entries_per_message = 1; };
  Network net({1, 2, 3}, options);
  net.Elect(1);
  const Index first = net.raft(1).last_index() + 1;
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(net.raft(1).Propose("p").ok());
  net.Drain(1);
  std::vector<Message> appends = AppendsTo(net, 2);
  ASSERT_EQ(appends.size(), 3u);
  // The first is lost; the second is rejected (gap).
  net.node(2).Step(appends[1]);
  Message reject = OnlyAppendResponse(net.node(2).Drain());
  ASSERT_FALSE(reject.success);
  net.node(1).Step(reject);
  EXPECT_EQ(net.raft(1).GetStatus().progress.at(N(2)).state, ProgressState::kProbe);
  net.Drain(1);
  std::vector<Message> probes = AppendsTo(net, 2);
  ASSERT_EQ(probes.size(), 1u);
  EXPECT_EQ(probes[0].prev_log_index + 1, first);
  // While the probe is out, new proposals send nothing more to node 2.
  ASSERT_TRUE(net.raft(1).Propose("q").ok());
  net.Drain(1);
  EXPECT_TRUE(AppendsTo(net, 2).empty());
  // The third (stale) message is rejected too; that rejection is ignored.
  net.node(2).Step(appends[2]);
  net.node(1).Step(OnlyAppendResponse(net.node(2).Drain()));
  net.Drain(1);
  EXPECT_TRUE(AppendsTo(net, 2).empty());
  // The probe succeeds: back to replicating, and the rest flows.
  net.node(2).Step(probes[0]);
  net.node(1).Step(OnlyAppendResponse(net.node(2).Drain()));
  EXPECT_EQ(net.raft(1).GetStatus().progress.at(N(2)).state, ProgressState::kReplicate);
  net.Drain(1);
  net.Deliver();
  EXPECT_EQ(net.raft(2).last_index(), net.raft(1).last_index());
}

// A probe whose message was lost is retried when a heartbeat answer shows
// the peer is alive.
TEST(Replication, LostProbeRetriedAfterHeartbeatResponse) {
  Network net({1, 2, 3});
  net.Elect(1);
  net.Isolate(3);
  net.ProposeAndCommit(1, "a");
  net.raft(1).ReportUnreachable(N(3));
  EXPECT_EQ(net.raft(1).GetStatus().progress.at(N(3)).state, ProgressState::kProbe);
  net.ProposeAndCommit(1, "b");  // the probe to 3 is lost
  net.Rejoin(3);
  net.TickAll(2);
  EXPECT_EQ(net.raft(3).last_index(), net.raft(1).last_index());
  EXPECT_EQ(net.raft(3).commit_index(), net.raft(1).commit_index());
}

// Back-pressure: a leader refuses proposals beyond the uncommitted limit.
TEST(Replication, TooManyUncommittedEntriesRefusedWithResourceExhausted) {
  NetworkOptions options;
  options.tweak = [](Config& c) { c.max_uncommitted_entries = 3; };
  Network net({1, 2, 3}, options);
  net.Elect(1);
  net.Isolate(2);
  net.Isolate(3);
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(net.raft(1).Propose("p").ok());
  auto r = net.raft(1).Propose("p");
  EXPECT_EQ(r.status().code(), absl::StatusCode::kResourceExhausted);
  net.Heal();
  net.Drain(1);
  net.TickAll(1);
  EXPECT_TRUE(net.raft(1).Propose("p").ok());
}

TEST(Replication, ProposeOnFollowerRefusedWithLeaderHint) {
  Network net({1, 2, 3});
  net.Elect(1);
  auto r = net.raft(2).Propose("p");
  EXPECT_EQ(r.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(r.status().message().find("leader: 1"), std::string::npos) << r.status();
}

}  // namespace
}  // namespace quorumkv::raft::testing
