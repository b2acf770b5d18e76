// The persistence contract of raft/raft.h: what a Ready asks to persist is
// durable before any of its messages leaves; a crash loses exactly what was
// not persisted. Each test crashes a node (drops the core, keeps the
// storage) at each point of Ready processing and checks the promises made
// by the messages that did leave.
#include <gtest/gtest.h>

#include <cstdio>
#include <map>
#include <set>

#include "tests/raft/raft_test_util.h"

namespace quorumkv::raft::testing {
namespace {

constexpr int kElection = 10;

const char* PointName(CrashPoint p) {
  switch (p) {
    case CrashPoint::kNone: return "None";
    case CrashPoint::kBeforePersist: return "BeforePersist";
    case CrashPoint::kAfterPersist: return "AfterPersist";
    case CrashPoint::kAfterSend: return "AfterSend";
  }
  return "?";
}

class CrashPointTest : public ::testing::TestWithParam<CrashPoint> {};

std::string ParamName(const ::testing::TestParamInfo<CrashPoint>& info) { return PointName(info.param); }

std::vector<Message> GrantedVotes(const std::vector<Message>& msgs) {
  std::vector<Message> out;
  for (const Message& m : OfType(msgs, MessageType::kRequestVoteResponse)) {
    if (m.vote_granted && !m.pre_vote) out.push_back(m);
  }
  return out;
}

// Figure 2 (votedFor is persistent state): whatever the crash point, a node
// never grants two candidates its vote in the same term.
TEST_P(CrashPointTest, Figure2_NoVoteGrantedTwiceInATermAcrossACrash) {
  const CrashPoint point = GetParam();
  auto voter = TestNode::WithLog(1, Voters({1, 2, 3}), {1, 1, 2}, HardState{T(2), kNoNode, I(3)});
  voter->Drain();
  voter->Tick(kElection);
  std::vector<Message> sent;

  voter->Step(VoteRequest(2, 1, 3, 3, 2));
  std::vector<Message> out = voter->ProcessReady(point);
  sent.insert(sent.end(), out.begin(), out.end());
  ASSERT_FALSE(voter->alive());
  voter->Restart();
  voter->Drain();
  EXPECT_EQ(voter->raft().term(), point == CrashPoint::kBeforePersist ? T(2) : T(3));
  EXPECT_EQ(voter->raft().voted_for(), point == CrashPoint::kBeforePersist ? kNoNode : N(2));
  voter->Tick(kElection);  // a restarted node waits an election timeout

  voter->Step(VoteRequest(3, 1, 3, 10, 2));  // another candidate, same term
  out = voter->Drain();
  sent.insert(sent.end(), out.begin(), out.end());
  voter->Step(VoteRequest(2, 1, 3, 3, 2));  // the first one retransmits
  out = voter->Drain();
  sent.insert(sent.end(), out.begin(), out.end());

  std::set<NodeId> granted_to;
  for (const Message& m : GrantedVotes(sent)) {
    EXPECT_EQ(m.term, T(3));
    granted_to.insert(m.to);
  }
  EXPECT_EQ(granted_to.size(), 1u) << PointName(point);
  if (point != CrashPoint::kBeforePersist) {
    // The vote was durable: only candidate 2 can have it.
    EXPECT_EQ(granted_to, std::set<NodeId>{N(2)});
  }
}

// Figure 2 ("respond after persisting"): an entry a follower acknowledged is
// still in its log after a crash at any point.
TEST_P(CrashPointTest, Figure2_AcknowledgedEntriesSurviveACrash) {
  const CrashPoint point = GetParam();
  auto f = TestNode::WithLog(1, Voters({1, 2, 3}), {1, 1, 2}, HardState{T(2), N(2), I(3)});
  f->Drain();
  f->Step(AppendEntries(2, 1, 2, 3, 2, MakeEntries(I(4), {2, 2}), 3));
  std::vector<Message> sent = f->ProcessReady(point);
  ASSERT_FALSE(f->alive());
  f->Restart();
  f->Drain();
  Index acked;
  for (const Message& m : OfType(sent, MessageType::kAppendEntriesResponse)) {
    if (m.success) acked = std::max(acked, m.match_index);
  }
  if (point == CrashPoint::kAfterSend) {
    EXPECT_EQ(acked, I(5));
  }
  EXPECT_GE(f->raft().last_index(), acked);
  EXPECT_EQ(StoredTerms(f->storage),
            point == CrashPoint::kBeforePersist ? (std::vector<uint64_t>{1, 1, 2})
                                                : (std::vector<uint64_t>{1, 1, 2, 2, 2}));
}

// The term learned from a message survives a crash once anything was sent
// in it.
TEST_P(CrashPointTest, Figure2_CurrentTermSurvivesACrash) {
  const CrashPoint point = GetParam();
  auto f = TestNode::WithLog(1, Voters({1, 2, 3}), {1, 1, 2}, HardState{T(2), N(2), I(3)});
  f->Drain();
  f->Step(AppendEntries(3, 1, 7, 3, 2, {}, 3));
  std::vector<Message> sent = f->ProcessReady(point);
  f->Restart();
  Term max_sent;
  for (const Message& m : sent) max_sent = std::max(max_sent, m.term);
  EXPECT_GE(f->raft().term(), max_sent);
  EXPECT_EQ(f->raft().term(), point == CrashPoint::kBeforePersist ? T(2) : T(7));
}

INSTANTIATE_TEST_SUITE_P(Contract, CrashPointTest,
                         ::testing::Values(CrashPoint::kBeforePersist, CrashPoint::kAfterPersist,
                                           CrashPoint::kAfterSend),
                         ParamName);

// The Ready that carries a vote also carries the hard state with it, and
// committed entries handed out for applying are in the same Ready's entries
// when they are not durable yet.
TEST(Contract, CommittedEntriesNotYetDurableTravelInTheSameReady) {
  auto f = TestNode::WithLog(1, Voters({1, 2, 3}), {1, 1, 2}, HardState{T(2), N(2), I(3)});
  f->Drain();
  f->Step(AppendEntries(2, 1, 2, 3, 2, MakeEntries(I(4), {2, 2}), 5));
  Ready rd = f->raft().GetReady();
  ASSERT_EQ(rd.committed_entries.size(), 2u);
  ASSERT_EQ(rd.entries.size(), 2u);
  EXPECT_EQ(rd.committed_entries, rd.entries);
  ASSERT_TRUE(rd.hard_state.has_value());
  EXPECT_EQ(rd.hard_state->commit_index, I(5));
}

// Raft thesis §10.2.1 and the contract: the leader counts its own log toward
// a quorum only once its entries are durable (Advance).
TEST(Contract, Section10_2_1_LeaderDoesNotCountItsOwnUnpersistedEntries) {
  Network net({1, 2, 3});
  net.Elect(1);
  Raft& leader = net.raft(1);
  auto r = leader.Propose("x");
  ASSERT_TRUE(r.ok());
  const Index i = r->first;
  Ready rd = leader.GetReady();
  ASSERT_EQ(rd.entries.size(), 1u);
  std::vector<Message> to2 = OfType(rd.messages, MessageType::kAppendEntries, 2);
  ASSERT_EQ(to2.size(), 1u);
  // Node 2 persists and acknowledges before the leader's own write is done.
  net.node(2).Step(to2[0]);
  std::vector<Message> acks = OfType(net.node(2).Drain(), MessageType::kAppendEntriesResponse);
  ASSERT_EQ(acks.size(), 1u);
  ASSERT_EQ(acks[0].match_index, i);
  net.node(1).Step(acks[0]);
  EXPECT_EQ(leader.commit_index(), i - 1) << "counted its own unpersisted entry";
  // The leader's write completes: now the leader and node 2 are a majority.
  PersistBatch batch;
  batch.hard_state = rd.hard_state;
  batch.entries = rd.entries;
  ASSERT_TRUE(net.node(1).storage.Persist(batch).ok());
  leader.Advance(rd);
  EXPECT_EQ(leader.commit_index(), i);
  net.Drain(1);
  net.Deliver();
  EXPECT_EQ(LastAppliedData(net.node(1)), "x");
}

// ... but a majority of followers is a majority: the leader's own copy is
// not needed to commit.
TEST(Contract, Section10_2_1_FollowerMajorityCommitsWithoutLeaderCopy) {
  Network net({1, 2, 3});
  net.Elect(1);
  Raft& leader = net.raft(1);
  auto r = leader.Propose("x");
  ASSERT_TRUE(r.ok());
  Ready rd = leader.GetReady();
  for (uint64_t peer : {2, 3}) {
    std::vector<Message> to = OfType(rd.messages, MessageType::kAppendEntries, peer);
    ASSERT_EQ(to.size(), 1u);
    net.node(peer).Step(to[0]);
    for (const Message& ack : OfType(net.node(peer).Drain(), MessageType::kAppendEntriesResponse)) {
      net.node(1).Step(ack);
    }
  }
  EXPECT_EQ(leader.commit_index(), r->first);
  PersistBatch batch;
  batch.hard_state = rd.hard_state;
  batch.entries = rd.entries;
  ASSERT_TRUE(net.node(1).storage.Persist(batch).ok());
  leader.Advance(rd);
  net.Drain(1);
  EXPECT_EQ(LastAppliedData(net.node(1)), "x");
}

// Under load a leader's Ready both hands out committed entries and appends
// new ones; the node answers the committed ones before it writes the new
// ones (server/node.cc), which is safe only if every committed entry is
// older than every appended one, whoever acknowledged it.
TEST(Contract, LeaderHandsOutOnlyEntriesWrittenBeforeTheReady) {
  Network net({1, 2, 3});
  net.Elect(1);
  Raft& leader = net.raft(1);
  auto x = leader.Propose("x");
  ASSERT_TRUE(x.ok());
  net.Drain(1);  // x is durable on the leader, and on its way
  for (uint64_t peer : {2, 3}) {
    for (const Message& m : net.Take([&](const Message& m) { return m.to == N(peer); })) net.node(peer).Step(m);
    for (const Message& ack : OfType(net.node(peer).Drain(), MessageType::kAppendEntriesResponse)) {
      net.node(1).Step(ack);
    }
  }
  ASSERT_EQ(leader.commit_index(), x->first);
  // Before the leader's next Ready, more proposals arrive.
  auto y = leader.Propose("y");
  auto z = leader.Propose("z");
  ASSERT_TRUE(y.ok() && z.ok());
  Ready rd = leader.GetReady();
  ASSERT_FALSE(rd.committed_entries.empty());
  ASSERT_FALSE(rd.entries.empty());
  EXPECT_EQ(rd.committed_entries.back().index, x->first);
  EXPECT_EQ(rd.entries.front().index, y->first);
  EXPECT_LT(rd.committed_entries.back().index, rd.entries.front().index);
}

// A leader applies before it writes the Ready's hard state (server/node.cc),
// so a crash can leave its state machine ahead of the persisted commit
// index. The restarted core starts from the durable commit index and hands
// the entries above it out again once they are known committed; the state
// machine skips what it has (kv: kAlreadyApplied).
TEST(Contract, RestartWithStateMachineAheadOfTheDurableCommitIndex) {
  auto f = TestNode::WithLog(1, Voters({1, 2, 3}), {1, 1, 1, 1}, HardState{T(1), N(2), I(2)});
  f->Drain();
  f->Crash();
  f->applied_index = I(4);  // applied 3 and 4 before the commit index was written
  f->Restart();
  EXPECT_EQ(f->raft().commit_index(), I(2));
  EXPECT_EQ(f->raft().applied_index(), I(2));
  f->Step(Heartbeat(2, 1, 1, 4));
  Ready rd = f->raft().GetReady();
  ASSERT_EQ(rd.committed_entries.size(), 2u);
  EXPECT_EQ(rd.committed_entries.front().index, I(3));
  EXPECT_EQ(rd.committed_entries.back().index, I(4));
}

// A single-voter cluster commits an entry in Advance, once it is durable —
// never in the Ready that asks to persist it.
TEST(Contract, SingleVoterCommitsOnlyOnceDurable) {
  auto node = TestNode::Fresh(1, {1});
  node->Drain();
  ASSERT_TRUE(TickUntil(*node, [&] { return node->raft().role() == Role::kLeader; }, /*drain=*/true));
  auto r = node->raft().Propose("x");
  ASSERT_TRUE(r.ok());
  Ready rd = node->raft().GetReady();
  ASSERT_EQ(rd.entries.size(), 1u);
  for (const Entry& e : rd.committed_entries) EXPECT_LT(e.index, r->first);
  EXPECT_LT(node->raft().commit_index(), r->first);
  PersistBatch batch;
  batch.hard_state = rd.hard_state;
  batch.entries = rd.entries;
  ASSERT_TRUE(node->storage.Persist(batch).ok());
  node->raft().Advance(rd);
  EXPECT_EQ(node->raft().commit_index(), r->first);
  node->Drain();
  EXPECT_EQ(LastAppliedData(*node), "x");
  EXPECT_EQ(node->storage.hard_state().commit_index, r->first);
}

// A restarted node resumes its term, vote and commit, and does not re-apply
// what its state machine already has.
TEST(Contract, RestartResumesHardStateWithoutReapplying) {
  Network net({1, 2, 3});
  net.Elect(1);
  net.ProposeAndCommit(1, "a");
  net.ProposeAndCommit(1, "b");
  const HardState before = net.node(2).storage.hard_state();
  const size_t applied = net.node(2).applied.size();
  net.Crash(2);
  net.Restart(2);
  EXPECT_EQ(net.raft(2).term(), before.current_term);
  EXPECT_EQ(net.raft(2).voted_for(), before.voted_for);
  EXPECT_EQ(net.raft(2).commit_index(), before.commit_index);
  EXPECT_EQ(net.node(2).applied.size(), applied);
  net.ProposeAndCommit(1, "c");
  EXPECT_EQ(net.node(2).applied.size(), applied + 1);
  EXPECT_EQ(LastAppliedData(net.node(2)), "c");
}

// ---------------------------------------------------------------------------
// A three-node cluster under a workload of proposals and leader failures;
// one node crashes at its k-th Ready, at each crash point, then restarts.
// The promises of every message that left a node must hold.

// Which Readies a run counts, to crash at the k-th of them.
enum class ReadyKind { kAny, kVoteGrant, kCampaign, kAppendAck, kLeaderAppend };

const char* KindName(ReadyKind k) {
  switch (k) {
    case ReadyKind::kAny: return "any";
    case ReadyKind::kVoteGrant: return "vote grant";
    case ReadyKind::kCampaign: return "campaign";
    case ReadyKind::kAppendAck: return "append ack";
    case ReadyKind::kLeaderAppend: return "leader append";
  }
  return "?";
}

bool IsKind(const Ready& rd, ReadyKind kind) {
  for (const Message& m : rd.messages) {
    switch (kind) {
      case ReadyKind::kAny: return true;
      case ReadyKind::kVoteGrant:
        if (m.type == MessageType::kRequestVoteResponse && m.vote_granted && !m.pre_vote) return true;
        break;
      case ReadyKind::kCampaign:
        if (m.type == MessageType::kRequestVote && !m.pre_vote) return true;
        break;
      case ReadyKind::kAppendAck:
        if (m.type == MessageType::kAppendEntriesResponse && m.success && !m.heartbeat) return true;
        break;
      case ReadyKind::kLeaderAppend:
        if (m.type == MessageType::kAppendEntries && !m.entries.empty()) return true;
        break;
    }
  }
  return kind == ReadyKind::kAny;
}

struct CrashRun {
  CrashPoint point;
  uint64_t victim;
  ReadyKind kind;
  int crash_at;  // crash at the crash_at-th Ready of `kind` of the victim
};

void CheckHistory(const Network& net) {
  // Election Safety: at most one leader (sender of AppendEntries) per term.
  std::map<Term, std::set<NodeId>> leaders;
  // One vote per voter per term.
  std::map<std::pair<NodeId, Term>, std::set<NodeId>> votes;
  for (const Message& m : net.sent) {
    if (m.type == MessageType::kAppendEntries) leaders[m.term].insert(m.from);
    if (m.type == MessageType::kRequestVoteResponse && m.vote_granted && !m.pre_vote) {
      votes[{m.from, m.term}].insert(m.to);
    }
  }
  for (const auto& [term, who] : leaders) EXPECT_LE(who.size(), 1u) << "two leaders in term " << term;
  for (const auto& [key, who] : votes) {
    EXPECT_LE(who.size(), 1u) << "node " << key.first << " voted twice in term " << key.second;
  }
}

// What the crashed Readies carried, so the scenario cannot silently stop
// covering the interesting cases.
struct Coverage {
  int crashes = 0;
  int vote_grants = 0;
  int campaigns = 0;
  int append_acks = 0;
  int leader_appends = 0;
  int hard_states = 0;
  int elections = 0;
};

void RunCrashScenario(const CrashRun& run, Coverage& coverage) {
  SCOPED_TRACE(std::string("crash point ") + PointName(run.point) + ", victim " + std::to_string(run.victim) +
               ", at " + KindName(run.kind) + " Ready #" + std::to_string(run.crash_at));
  NetworkOptions options;
  options.fixed_timeouts = false;
  options.seed = 11;
  Network net({1, 2, 3}, options);
  int readies = 0;
  bool crashed = false;
  net.crash_hook = [&](uint64_t id, const Ready& rd) {
    if (id != run.victim || crashed || !IsKind(rd, run.kind)) return CrashPoint::kNone;
    if (readies++ == run.crash_at) {
      crashed = true;
      return run.point;
    }
    return CrashPoint::kNone;
  };
  int down_since = -1;
  uint64_t cut_leader = 0;  // 0: none
  for (int t = 0; t < 320; ++t) {
    net.TickAll(1);
    if (crashed && !net.node(run.victim).alive()) {
      if (down_since < 0) down_since = t;
      if (t - down_since >= 5) {
        // What the victim acknowledged in its durable term is still there.
        TestNode& v = net.node(run.victim);
        const Term term = v.storage.hard_state().current_term;
        Index acked;
        for (const Message& m : net.sent) {
          if (m.from == N(run.victim) && m.type == MessageType::kAppendEntriesResponse && m.success &&
              !m.heartbeat) {
            EXPECT_LE(m.term, term) << "acknowledged in a term it forgot";
            if (m.term == term) acked = std::max(acked, m.match_index);
          }
        }
        net.Restart(run.victim);
        EXPECT_GE(net.raft(run.victim).last_index(), acked) << "lost an acknowledged entry";
        down_since = -1;
      }
    }
    for (uint64_t id : net.ids()) {
      TestNode& n = net.node(id);
      if (n.alive() && n->role() == Role::kLeader && t % 3 == 0) {
        if (n->Propose("v" + std::to_string(t)).ok()) net.Drain(id);
      }
    }
    net.Deliver();
    // Every 40 ticks the leader is cut off for 25: a new election.
    if (t % 40 == 10) {
      for (uint64_t id : net.ids()) {
        if (net.node(id).alive() && net.raft(id).role() == Role::kLeader) cut_leader = id;
      }
      if (cut_leader != 0) net.Isolate(cut_leader);
    }
    if (t % 40 == 35 && cut_leader != 0) {
      net.Rejoin(cut_leader);
      cut_leader = 0;
    }
  }
  // Heal, restart everything, let the cluster settle.
  net.Heal();
  net.crash_hook = nullptr;
  for (uint64_t id : net.ids()) {
    if (!net.node(id).alive()) net.Restart(id);
  }
  net.TickAll(6 * kElection);
  uint64_t leader = 0;
  for (uint64_t id : net.ids()) {
    if (net.raft(id).role() == Role::kLeader) leader = id;
  }
  ASSERT_NE(leader, 0u) << "no leader after healing";
  net.ProposeAndCommit(leader, "final");
  net.TickAll(2);
  CheckHistory(net);
  if (const std::optional<Ready>& rd = net.node(run.victim).crashed_ready) {
    ++coverage.crashes;
    coverage.vote_grants += IsKind(*rd, ReadyKind::kVoteGrant);
    coverage.campaigns += IsKind(*rd, ReadyKind::kCampaign);
    coverage.append_acks += IsKind(*rd, ReadyKind::kAppendAck);
    coverage.leader_appends += IsKind(*rd, ReadyKind::kLeaderAppend);
    coverage.hard_states += rd->hard_state.has_value();
  }
  std::set<Term> terms;
  for (const Message& m : net.sent) {
    if (m.type == MessageType::kAppendEntries) terms.insert(m.term);
  }
  coverage.elections += static_cast<int>(terms.size());
  // State Machine Safety: every node applied the same entry at each index,
  // and every applied entry is in the final leader's log.
  std::map<Index, Entry> by_index;
  for (uint64_t id : net.ids()) {
    for (const Entry& e : net.node(id).applied) {
      auto [it, inserted] = by_index.emplace(e.index, e);
      if (!inserted) {
        EXPECT_EQ(it->second, e) << "nodes applied different entries at " << e.index;
      }
    }
  }
  std::vector<Entry> final_log = StoredEntries(net.node(leader).storage);
  for (const auto& [index, e] : by_index) {
    if (index < net.node(leader).storage.FirstIndex()) continue;
    ASSERT_LE(index, net.node(leader).storage.LastIndex());
    EXPECT_EQ(final_log[index - net.node(leader).storage.FirstIndex()], e) << "committed entry lost at " << index;
  }
  for (uint64_t id : net.ids()) {
    ASSERT_FALSE(net.node(id).applied.empty()) << "node " << id;
    EXPECT_EQ(LastAppliedData(net.node(id)), "final") << "node " << id;
  }
}

TEST(Contract, CrashAtEveryPointKeepsEveryPromise) {
  // Crash at the k-th Ready of each kind: any Ready (every 8th of the first
  // 240), and specifically those granting a vote, starting a campaign,
  // acknowledging entries and sending a leader's new entries.
  std::vector<std::pair<ReadyKind, std::vector<int>>> plan;
  std::vector<int> any;
  for (int k = 0; k < 240; k += 8) any.push_back(k);
  plan.push_back({ReadyKind::kAny, any});
  plan.push_back({ReadyKind::kVoteGrant, {0, 1, 2, 3, 4, 5}});
  plan.push_back({ReadyKind::kCampaign, {0, 1, 2, 3, 4, 5}});
  plan.push_back({ReadyKind::kAppendAck, {0, 1, 3, 7, 15, 25}});
  plan.push_back({ReadyKind::kLeaderAppend, {0, 1, 3, 7, 15, 25}});
  for (CrashPoint point : {CrashPoint::kBeforePersist, CrashPoint::kAfterPersist, CrashPoint::kAfterSend}) {
    Coverage coverage;
    int runs = 0;
    for (uint64_t victim : {1, 2, 3}) {
      for (const auto& [kind, ks] : plan) {
        for (int k : ks) {
          RunCrashScenario(CrashRun{point, victim, kind, k}, coverage);
          ++runs;
          if (::testing::Test::HasFailure()) return;
        }
      }
    }
    EXPECT_GT(coverage.vote_grants, 8) << PointName(point);
    EXPECT_GT(coverage.campaigns, 8) << PointName(point);
    EXPECT_GT(coverage.append_acks, 20) << PointName(point);
    EXPECT_GT(coverage.leader_appends, 20) << PointName(point);
    EXPECT_GT(coverage.hard_states, 20) << PointName(point);
    EXPECT_GE(coverage.elections, 3 * runs) << PointName(point);
    std::printf("[ coverage ] %s: %d runs, %d crashes; crashed Readies with vote grants %d, campaigns %d, "
                "acks %d, leader appends %d, hard states %d; %d leader terms in all\n",
                PointName(point), runs, coverage.crashes, coverage.vote_grants, coverage.campaigns,
                coverage.append_acks, coverage.leader_appends, coverage.hard_states, coverage.elections);
  }
}

// Ready::must_sync: entries, a snapshot, a term or a vote need fsync before
// the messages that promise them; a commit index alone does not (it is
// learned again from the leader after a crash), which saves every node a
// second fsync per write.
TEST(Contract, OnlyCommitIndexChangesMayBeWrittenWithoutSync) {
  auto f = TestNode::WithLog(1, Voters({1, 2, 3}), {1, 1, 2}, HardState{T(2), kNoNode, I(1)});
  f->Drain();
  auto next_ready = [&]() {
    EXPECT_TRUE(f->raft().HasReady());
    Ready rd = f->raft().GetReady();
    PersistBatch batch;
    batch.hard_state = rd.hard_state;
    batch.entries = rd.entries;
    EXPECT_TRUE(f->storage.Persist(batch).ok());
    f->raft().Advance(rd);
    return rd;
  };
  f->Step(AppendEntries(2, 1, 2, 3, 2, MakeEntries(I(4), {2}), 1));
  EXPECT_TRUE(next_ready().must_sync);  // an entry
  f->Step(Heartbeat(2, 1, 2, 4));
  Ready commit_only = next_ready();
  ASSERT_TRUE(commit_only.hard_state.has_value());
  EXPECT_EQ(commit_only.hard_state->commit_index, I(4));
  EXPECT_FALSE(commit_only.must_sync);
  f->Step(Heartbeat(3, 1, 3, 4));  // a new term
  EXPECT_TRUE(next_ready().must_sync);
  f->Tick(kElection);  // the leader's stickiness runs out
  f->Step(VoteRequest(2, 1, 4, 4, 2));
  Ready vote = next_ready();
  ASSERT_TRUE(vote.hard_state.has_value());
  EXPECT_EQ(vote.hard_state->voted_for, N(2));
  EXPECT_TRUE(vote.must_sync);
}

}  // namespace
}  // namespace quorumkv::raft::testing
