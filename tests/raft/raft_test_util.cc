#include "tests/raft/raft_test_util.h"

#include <gtest/gtest.h>

#include <algorithm>

namespace quorumkv::raft::testing {

std::vector<NodeId> Ids(const std::vector<uint64_t>& ids) {
  std::vector<NodeId> out;
  for (uint64_t id : ids) out.push_back(NodeId(id));
  return out;
}

uint64_t TestRandom::Next(uint64_t n) {
  uint64_t result;
  if (fixed) {
    result = std::min(*fixed, n - 1);
  } else {
    // splitmix64
    uint64_t z = (state_ += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    result = z % n;
  }
  bounds.push_back(n);
  results.push_back(result);
  return result;
}

Config MakeConfig(NodeId id, std::vector<NodeId> initial_voters, std::shared_ptr<TestRandom> random) {
  Config c;
  c.id = id;
  c.initial_voters = std::move(initial_voters);
  c.election_timeout_ticks = 10;
  c.heartbeat_interval_ticks = 1;
  c.lease_drift_margin_ticks = 2;
  c.random = [random](uint64_t n) { return random->Next(n); };
  return c;
}

Entry MakeEntry(Index index, Term term, EntryType type, std::string data) {
  return Entry{index, term, type, std::move(data)};
}

std::vector<Entry> MakeEntries(Index first, const std::vector<uint64_t>& terms) {
  std::vector<Entry> out;
  for (size_t k = 0; k < terms.size(); ++k) {
    Index index = first + k;
    out.push_back(MakeEntry(index, Term(terms[k]), EntryType::kNormal, "e" + std::to_string(index.value())));
  }
  return out;
}

Entry ConfEntry(Index index, Term term, ConfChangeType type, NodeId node) {
  return MakeEntry(index, term, EntryType::kConfChange, ConfChange{type, node, ""}.Encode());
}

ConfState Voters(const std::vector<uint64_t>& voters, const std::vector<uint64_t>& learners) {
  ConfState conf;
  conf.voters = Ids(voters);
  conf.learners = Ids(learners);
  std::sort(conf.voters.begin(), conf.voters.end());
  std::sort(conf.learners.begin(), conf.learners.end());
  return conf;
}

void PreloadStorage(MemoryLogStorage& storage, const ConfState& conf,
                    const std::vector<uint64_t>& terms, const HardState& hard_state) {
  PersistBatch first;
  first.snapshot = SnapshotMeta{Index(0), Term(0), conf};
  ASSERT_TRUE(storage.Persist(first).ok());
  PersistBatch batch;
  batch.entries = MakeEntries(Index(1), terms);
  batch.hard_state = hard_state;
  ASSERT_TRUE(storage.Persist(batch).ok());
}

std::vector<uint64_t> StoredTerms(const MemoryLogStorage& storage) {
  std::vector<uint64_t> out;
  for (Index i = storage.FirstIndex(); i <= storage.LastIndex(); ++i) {
    auto t = storage.TermAt(i);
    out.push_back(t.ok() ? t->value() : 0);
  }
  return out;
}

std::vector<Entry> StoredEntries(const MemoryLogStorage& storage) {
  if (storage.LastIndex() < storage.FirstIndex()) return {};
  auto entries = storage.Entries(storage.FirstIndex(), storage.LastIndex() + 1, UINT64_MAX);
  EXPECT_TRUE(entries.ok()) << entries.status();
  return entries.ok() ? *entries : std::vector<Entry>{};
}

// ---------------------------------------------------------------------------
// TestNode

TestNode::TestNode(const Config& config, std::shared_ptr<TestRandom> random)
    : config_(config), random_(std::move(random)) {}

namespace {
std::shared_ptr<TestRandom> DefaultRandom(uint64_t id) {
  auto random = std::make_shared<TestRandom>(id);
  random->fixed = UINT64_MAX;  // the maximum timeout unless the test says otherwise
  return random;
}
}  // namespace

std::unique_ptr<TestNode> TestNode::Fresh(uint64_t id, const std::vector<uint64_t>& initial_voters,
                                          std::function<void(Config&)> tweak,
                                          std::shared_ptr<TestRandom> random) {
  if (!random) random = DefaultRandom(id);
  Config c = MakeConfig(NodeId(id), Ids(initial_voters), random);
  if (tweak) tweak(c);
  std::unique_ptr<TestNode> node(new TestNode(c, random));
  node->Restart();
  return node;
}

std::unique_ptr<TestNode> TestNode::WithLog(uint64_t id, const ConfState& conf,
                                            const std::vector<uint64_t>& terms,
                                            const HardState& hard_state,
                                            std::function<void(Config&)> tweak,
                                            std::shared_ptr<TestRandom> random) {
  if (!random) random = DefaultRandom(id);
  Config c = MakeConfig(NodeId(id), {}, random);
  if (tweak) tweak(c);
  std::unique_ptr<TestNode> node(new TestNode(c, random));
  PreloadStorage(node->storage, conf, terms, hard_state);
  node->applied_index = std::min(hard_state.commit_index, node->storage.LastIndex());
  node->Restart();
  return node;
}

void TestNode::Restart() {
  auto core = Raft::Create(config_, &storage, applied_index);
  ASSERT_TRUE(core.ok()) << core.status();
  core_ = std::move(*core);
}

void TestNode::Crash() { core_.reset(); }

void TestNode::Tick(int n) {
  for (int i = 0; i < n; ++i) {
    absl::Status s = core_->Tick();
    EXPECT_TRUE(s.ok()) << s;
  }
}

void TestNode::Step(const Message& m) {
  absl::Status s = core_->Step(m);
  EXPECT_TRUE(s.ok()) << s << " stepping " << m.DebugString();
}

std::vector<Message> TestNode::Drain() {
  std::vector<Message> out;
  for (int guard = 0; alive() && core_->HasReady(); ++guard) {
    if (guard > 1000) {
      ADD_FAILURE() << "node " << id() << " never runs out of Readies";
      break;
    }
    std::vector<Message> msgs = ProcessReady(CrashPoint::kNone);
    out.insert(out.end(), msgs.begin(), msgs.end());
  }
  return out;
}

std::vector<Message> TestNode::ProcessReady(CrashPoint point) {
  return ProcessReady([point](const Ready&) { return point; });
}

std::vector<Message> TestNode::ProcessReady(const std::function<CrashPoint(const Ready&)>& decide) {
  if (!alive() || !core_->HasReady()) return {};
  Ready rd = core_->GetReady();
  const CrashPoint point = decide(rd);
  if (point != CrashPoint::kNone) crashed_ready = rd;
  if (point == CrashPoint::kBeforePersist) {
    Crash();
    return {};
  }
  // 1. Persist hard state, snapshot and entries in one write.
  if (rd.hard_state || rd.snapshot || !rd.entries.empty()) {
    PersistBatch batch;
    batch.hard_state = rd.hard_state;
    if (rd.snapshot) batch.snapshot = rd.snapshot->meta;
    batch.entries = rd.entries;
    absl::Status s = storage.Persist(batch);
    EXPECT_TRUE(s.ok()) << s;
  }
  CheckReadyAgainstContract(rd);
  if (point == CrashPoint::kAfterPersist) {
    Crash();
    return {};
  }
  // 2. Send.
  std::vector<Message> out = rd.messages;
  if (point == CrashPoint::kAfterSend) {
    Crash();
    return out;
  }
  // 3. Apply, then 4. Advance.
  Apply(rd);
  core_->Advance(rd);
  return out;
}

void TestNode::CheckReadyAgainstContract(const Ready& rd) {
  const HardState hs = storage.hard_state();
  for (const Message& m : rd.messages) {
    // Pre-votes carry the term the sender would campaign in: a promise of
    // nothing, never persisted (etcd #8334).
    const bool future_term = (m.type == MessageType::kRequestVote && m.pre_vote) ||
                             (m.type == MessageType::kRequestVoteResponse && m.pre_vote && m.vote_granted);
    if (!future_term) {
      // Equal, not at most: a message of an older term may promise a state
      // the node has since left (an acknowledgement of truncated entries).
      EXPECT_EQ(m.term, hs.current_term) << "node " << id() << " sends " << m.DebugString()
                                         << " outside its durable term";
    }
    if (m.type == MessageType::kRequestVoteResponse && !m.pre_vote && m.vote_granted) {
      EXPECT_EQ(hs.current_term, m.term) << "vote granted before its term is durable: " << m.DebugString();
      EXPECT_EQ(hs.voted_for, m.to) << "vote granted before it is durable: " << m.DebugString();
    }
    if (m.type == MessageType::kRequestVote && !m.pre_vote) {
      EXPECT_EQ(hs.current_term, m.term) << "campaign before its term is durable";
      EXPECT_EQ(hs.voted_for, id()) << "campaign before the self-vote is durable";
    }
    if (AcknowledgesEntries(m)) {
      EXPECT_GE(storage.LastIndex(), m.match_index)
          << "node " << id() << " acknowledges entries it has not persisted: " << m.DebugString();
    }
  }
  for (const Entry& e : rd.committed_entries) {
    EXPECT_LE(e.index, storage.LastIndex()) << "committed entry handed out before it is durable";
    if (e.index >= storage.FirstIndex() && e.index <= storage.LastIndex()) {
      auto term = storage.TermAt(e.index);
      EXPECT_TRUE(term.ok() && *term == e.term) << "committed entry " << e.index << " differs from the durable log";
    }
  }
}

void TestNode::Apply(const Ready& rd) {
  if (rd.soft_state) soft_states.push_back(*rd.soft_state);
  if (rd.snapshot) {
    installed_snapshot = *rd.snapshot;
    applied_index = rd.snapshot->meta.index;
  }
  for (const Entry& e : rd.committed_entries) {
    EXPECT_EQ(e.index, applied_index + 1) << "node " << id() << " applies out of order";
    applied.push_back(e);
    applied_index = e.index;
  }
  read_states.insert(read_states.end(), rd.read_states.begin(), rd.read_states.end());
  failed_reads.insert(failed_reads.end(), rd.failed_reads.begin(), rd.failed_reads.end());
}

bool TickUntil(TestNode& node, const std::function<bool()>& done, bool drain, int max_ticks) {
  for (int i = 0; i < max_ticks && !done(); ++i) {
    node.Tick();
    if (drain) node.Drain();
  }
  return done();
}

std::string LastAppliedData(const TestNode& node) {
  return node.applied.empty() ? std::string() : node.applied.back().data;
}

std::vector<Message> ElectByHand(TestNode& node) {
  std::vector<Message> msgs = node.Drain();
  const int limit = 4 * node.config().election_timeout_ticks;
  for (int i = 0; i < limit && node->role() == Role::kFollower; ++i) {
    node.Tick();
    msgs = node.Drain();
  }
  if (node->role() == Role::kPreCandidate) {
    for (const Message& m : OfType(msgs, MessageType::kRequestVote)) {
      if (node->role() != Role::kPreCandidate) break;
      node.Step(VoteResponse(m.to.value(), node.id().value(), m.term.value(), true, true));
    }
    msgs = node.Drain();
  }
  if (node->role() == Role::kCandidate) {
    for (const Message& m : OfType(msgs, MessageType::kRequestVote)) {
      if (node->role() != Role::kCandidate) break;
      node.Step(VoteResponse(m.to.value(), node.id().value(), m.term.value(), true, false));
    }
    msgs = node.Drain();
  }
  EXPECT_EQ(node->role(), Role::kLeader) << "ElectByHand(" << node.id() << ") failed";
  return msgs;
}

// ---------------------------------------------------------------------------
// Network

Network::Network(const std::vector<uint64_t>& ids, NetworkOptions options) : options_(std::move(options)) {
  if (options_.voters.empty()) options_.voters = ids;
  for (uint64_t id : ids) {
    auto random = std::make_shared<TestRandom>(options_.seed * 1000003 + id);
    if (options_.fixed_timeouts) random->fixed = UINT64_MAX;
    auto it = options_.log_terms.find(id);
    std::unique_ptr<TestNode> node;
    if (it != options_.log_terms.end()) {
      HardState hs = options_.hard_states.contains(id) ? options_.hard_states[id] : HardState{};
      node = TestNode::WithLog(id, Voters(options_.voters), it->second, hs, options_.tweak, random);
    } else {
      node = TestNode::Fresh(id, options_.voters, options_.tweak, random);
    }
    nodes_[id] = std::move(node);
    Drain(id);
  }
}

TestNode& Network::node(uint64_t id) {
  auto it = nodes_.find(id);
  if (it == nodes_.end()) {
    ADD_FAILURE() << "no node " << id;
    std::abort();
  }
  return *it->second;
}

TestNode& Network::AddJoiningNode(uint64_t id) {
  nodes_[id] = TestNode::Fresh(id, {}, options_.tweak);
  Drain(id);
  return *nodes_[id];
}

std::vector<uint64_t> Network::ids() const {
  std::vector<uint64_t> out;
  for (const auto& [id, n] : nodes_) out.push_back(id);
  return out;
}

void Network::Tick(uint64_t id) {
  TestNode& n = node(id);
  if (!n.alive()) return;
  n.Tick();
  Drain(id);
}

void Network::TickAll(int n) {
  for (int i = 0; i < n; ++i) {
    for (auto& [id, nd] : nodes_) Tick(id);
    Deliver();
  }
}

void Network::TickNodes(const std::vector<uint64_t>& ids, int n) {
  for (int i = 0; i < n; ++i) {
    for (uint64_t id : ids) Tick(id);
    Deliver();
  }
}

void Network::Drain(uint64_t id) {
  TestNode& n = node(id);
  for (int guard = 0; n.alive() && n->HasReady(); ++guard) {
    if (guard > 1000) {
      ADD_FAILURE() << "node " << id << " never runs out of Readies";
      return;
    }
    auto decide = [this, id](const Ready& rd) { return crash_hook ? crash_hook(id, rd) : CrashPoint::kNone; };
    for (Message& m : n.ProcessReady(decide)) {
      sent.push_back(m);
      queue_.push_back(std::move(m));
    }
  }
}

void Network::DrainAll() {
  for (auto& [id, n] : nodes_) Drain(id);
}

bool Network::Dropped(const Message& m) const {
  return isolated_.contains(m.from.value()) || isolated_.contains(m.to.value()) ||
         cut_.contains({m.from.value(), m.to.value()}) || (drop && drop(m));
}

bool Network::DeliverOne() {
  if (queue_.empty()) return false;
  Message m = std::move(queue_.front());
  queue_.pop_front();
  if (Dropped(m)) return true;
  auto it = nodes_.find(m.to.value());
  if (it == nodes_.end() || !it->second->alive()) return true;
  delivered.push_back(m);
  it->second->Step(m);
  Drain(m.to.value());
  return true;
}

void Network::Deliver() {
  for (int steps = 0; DeliverOne(); ++steps) {
    if (steps > 1000000) {
      ADD_FAILURE() << "network never quiets down";
      return;
    }
  }
}

std::vector<Message> Network::Take(const std::function<bool(const Message&)>& pred) {
  std::vector<Message> out;
  std::deque<Message> keep;
  for (Message& m : queue_) {
    if (pred(m)) {
      out.push_back(std::move(m));
    } else {
      keep.push_back(std::move(m));
    }
  }
  queue_ = std::move(keep);
  return out;
}

void Network::Heal() {
  isolated_.clear();
  cut_.clear();
  drop = nullptr;
}

void Network::Crash(uint64_t id) { node(id).Crash(); }

void Network::Restart(uint64_t id) {
  node(id).Restart();
  Drain(id);
}

void Network::Elect(uint64_t id) {
  const int e = node(id).config().election_timeout_ticks;
  for (int k = 0; k < e; ++k) {
    for (auto& [other, n] : nodes_) {
      if (other != id && !isolated_.contains(other)) Tick(other);
    }
    Deliver();
  }
  for (int k = 0; k < 3 * e; ++k) {
    if (node(id).alive() && raft(id).role() == Role::kLeader) break;
    Tick(id);
    Deliver();
  }
  Deliver();
  ASSERT_EQ(raft(id).role(), Role::kLeader) << "Elect(" << id << ") failed";
}

Index Network::ProposeAndCommit(uint64_t leader, const std::string& data) {
  auto r = raft(leader).Propose(data);
  EXPECT_TRUE(r.ok()) << r.status();
  if (!r.ok()) return Index(0);
  Drain(leader);
  Deliver();
  EXPECT_GE(raft(leader).commit_index(), r->first) << "proposal did not commit";
  return r->first;
}

// ---------------------------------------------------------------------------
// Hand-made messages

namespace {
Message Base(MessageType type, uint64_t from, uint64_t to, uint64_t term) {
  Message m;
  m.type = type;
  m.from = NodeId(from);
  m.to = NodeId(to);
  m.term = Term(term);
  return m;
}
}  // namespace

Message VoteRequest(uint64_t from, uint64_t to, uint64_t term, uint64_t last_index,
                    uint64_t last_term, bool pre_vote, bool transfer) {
  Message m = Base(MessageType::kRequestVote, from, to, term);
  m.last_log_index = Index(last_index);
  m.last_log_term = Term(last_term);
  m.pre_vote = pre_vote;
  m.leadership_transfer = transfer;
  return m;
}

Message VoteResponse(uint64_t from, uint64_t to, uint64_t term, bool granted, bool pre_vote) {
  Message m = Base(MessageType::kRequestVoteResponse, from, to, term);
  m.vote_granted = granted;
  m.pre_vote = pre_vote;
  return m;
}

Message AppendEntries(uint64_t from, uint64_t to, uint64_t term, uint64_t prev_index,
                      uint64_t prev_term, std::vector<Entry> entries, uint64_t leader_commit) {
  Message m = Base(MessageType::kAppendEntries, from, to, term);
  m.prev_log_index = Index(prev_index);
  m.prev_log_term = Term(prev_term);
  m.entries = std::move(entries);
  m.leader_commit = Index(leader_commit);
  return m;
}

Message Heartbeat(uint64_t from, uint64_t to, uint64_t term, uint64_t commit, uint64_t round) {
  Message m = Base(MessageType::kAppendEntries, from, to, term);
  m.heartbeat = true;
  m.leader_commit = Index(commit);
  m.read_round = round;
  return m;
}

Message AppendAccepted(uint64_t from, uint64_t to, uint64_t term, uint64_t match_index, uint64_t round) {
  Message m = Base(MessageType::kAppendEntriesResponse, from, to, term);
  m.success = true;
  m.match_index = Index(match_index);
  m.read_round = round;
  return m;
}

Message AppendRejected(uint64_t from, uint64_t to, uint64_t term, uint64_t rejected_index,
                       uint64_t conflict_index, uint64_t conflict_term) {
  Message m = Base(MessageType::kAppendEntriesResponse, from, to, term);
  m.success = false;
  m.rejected_index = Index(rejected_index);
  m.conflict_index = Index(conflict_index);
  m.conflict_term = Term(conflict_term);
  return m;
}

Message HeartbeatResponse(uint64_t from, uint64_t to, uint64_t term, uint64_t round) {
  Message m = Base(MessageType::kAppendEntriesResponse, from, to, term);
  m.heartbeat = true;
  m.success = true;
  m.read_round = round;
  return m;
}

Message InstallSnapshot(uint64_t from, uint64_t to, uint64_t term, const SnapshotMeta& meta) {
  Message m = Base(MessageType::kInstallSnapshot, from, to, term);
  m.snapshot.meta = meta;
  return m;
}

Message TimeoutNow(uint64_t from, uint64_t to, uint64_t term) {
  return Base(MessageType::kTimeoutNow, from, to, term);
}

Message ReadIndexRequest(uint64_t from, uint64_t to, uint64_t term, uint64_t read_id, bool lease) {
  Message m = Base(MessageType::kReadIndex, from, to, term);
  m.read_id = read_id;
  m.lease_read = lease;
  return m;
}

std::vector<Message> OfType(const std::vector<Message>& msgs, MessageType type, std::optional<uint64_t> to) {
  std::vector<Message> out;
  for (const Message& m : msgs) {
    if (m.type == type && (!to || m.to.value() == *to)) out.push_back(m);
  }
  return out;
}

}  // namespace quorumkv::raft::testing
