#include "tests/sim/simulation.h"

#include <algorithm>
#include <deque>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <sstream>
#include <stdexcept>

#include "raft/check.h"
#include "raft/memory_log_storage.h"
#include "raft/raft.h"
#include "tests/lincheck/history.h"
#include "tests/lincheck/linearizability_checker.h"
#include "tests/sim/safety_checker.h"
#include "tests/sim/sim_random.h"

namespace quorumkv::sim {

namespace {

using raft::ConfChange;
using raft::ConfChangeType;
using raft::Message;
using raft::MessageType;
using raft::Ready;
using raft::Role;
using lincheck::Consistency;
using lincheck::EventType;
using lincheck::Function;

constexpr int64_t kTickUs = 10'000;  // one tick = 10 ms of virtual time
constexpr int kElectionTicks = 10;
constexpr int kHeartbeatTicks = 1;
constexpr int kLeaseMarginTicks = 2;
constexpr int64_t kClientTimeoutUs = 1'500'000;
constexpr int kMaxExtraNodes = 4;

// A core invariant (QKV_CHECK) fired: unwinds to RunSimulation.
struct CoreCheckFailure : std::runtime_error {
  using std::runtime_error::runtime_error;
};
void ThrowOnCheckFailure(const std::string& message) { throw CoreCheckFailure(message); }

std::string S(uint64_t v) { return std::to_string(v); }
template <typename T>
std::string S(T v) { return std::to_string(v.value()); }

// Commands of the simulated key-value state machine.
constexpr char kSep = '\x1f';
std::string EncodePut(const std::string& key, const std::string& value) {
  return std::string("P") + kSep + key + kSep + value;
}
std::string EncodeDelete(const std::string& key) { return std::string("D") + kSep + key; }

using KvMap = std::map<std::string, std::string>;

void ApplyCommand(const std::string& data, KvMap& kv) {
  if (data.size() < 2) return;
  const size_t key_start = 2;
  size_t key_end = data.find(kSep, key_start);
  if (data[0] == 'P' && key_end != std::string::npos) {
    kv[data.substr(key_start, key_end - key_start)] = data.substr(key_end + 1);
  } else if (data[0] == 'D') {
    kv.erase(data.substr(key_start));
  }
}

std::string EncodeKv(const KvMap& kv) {
  std::string out;
  for (const auto& [k, v] : kv) {
    out += S(k.size()) + ":" + k + S(v.size()) + ":" + v;
  }
  return out;
}

KvMap DecodeKv(const std::string& in) {
  KvMap kv;
  size_t pos = 0;
  auto read = [&](std::string& s) {
    size_t colon = in.find(':', pos);
    size_t n = std::stoul(in.substr(pos, colon - pos));
    s = in.substr(colon + 1, n);
    pos = colon + 1 + n;
  };
  while (pos < in.size()) {
    std::string k, v;
    read(k);
    read(v);
    kv[k] = v;
  }
  return kv;
}

struct ClientOp {
  uint64_t op_id = 0;
  int client = 0;
  int64_t process = 0;
  Function f = Function::kGet;
  Consistency consistency = Consistency::kLinearizable;
  std::string key;
  std::string value;
  NodeId node;
  // A write waits for its (index, term) to be applied on `node`.
  bool proposed = false;
  Index index;
  Term term;
  // A read waits for its read index, then for `node` to apply up to it.
  uint64_t read_id = 0;
  bool has_read_index = false;
  Index read_index;
};

enum class EvKind : uint8_t {
  kTick,
  kDeliver,
  kPersistDone,
  kClientNext,
  kClientTimeout,
  kNemesis,
  kRestart,
  kHealPartition,
  kCalmNetwork,
  kSnapshotDone,
  kRetire,
  kClientArrive,  // a client request reaches its node (node, aux = op id)
  kResume,        // a paused node resumes (node, incarnation)
};

struct Event {
  int64_t time = 0;
  uint64_t seq = 0;
  EvKind kind = EvKind::kTick;
  uint64_t node = 0;  // node id value, or client index
  uint64_t incarnation = 0;
  uint64_t aux = 0;
  uint64_t aux2 = 0;
  std::shared_ptr<Message> msg;
};

struct EventLater {
  bool operator()(const Event& a, const Event& b) const {
    return a.time != b.time ? a.time > b.time : a.seq > b.seq;
  }
};

struct SimNode {
  NodeId id;
  bool exists = false;   // created (initial member or added later)
  bool alive = false;
  bool retired = false;  // removed from the cluster and shut down for good
  uint64_t incarnation = 0;
  // The disk: the Raft log storage and the state machine's durable state,
  // which a crash keeps.
  raft::MemoryLogStorage storage;
  // The commit index as of the last synced write: a crash rolls the stored
  // one back to it (Ready::must_sync lets commit-only writes skip fsync).
  Index synced_commit;
  KvMap kv;
  Index applied;
  Index snapshot_index;
  std::string snapshot_data;
  // Volatile.
  std::unique_ptr<raft::Raft> core;
  std::optional<Ready> ready_in_flight;
  double tick_scale = 1.0;
  std::vector<NodeId> initial_voters;
  Index leader_commit_checked;  // 0 until checked as leader of this term
  raft::ConfState last_conf;
  std::map<uint64_t, uint64_t> pending_writes;  // index -> op id
  std::map<uint64_t, uint64_t> pending_reads;   // read id -> op id
  std::set<uint64_t> reads_waiting_apply;       // op ids
  // A paused process (SIGSTOP): its events wait here until it resumes.
  bool paused = false;
  int64_t paused_at = 0;
  std::vector<Event> held;
};

class Simulation {
 public:
  explicit Simulation(const SimOptions& o) : opts_(o), rng_(o.seed * 0x9e3779b97f4a7c15ull + 17) {}

  SimResult Run();
  const std::map<uint64_t, SimNode>& nodes() const { return nodes_; }

 private:
  // Set-up.
  raft::Config NodeConfig(const SimNode& n);
  void CreateNode(NodeId id, std::vector<NodeId> initial_voters);
  void StartNode(SimNode& n);
  void CrashNode(SimNode& n);

  // Events.
  void Schedule(int64_t at, EvKind kind, uint64_t node = 0, uint64_t incarnation = 0, uint64_t aux = 0,
                uint64_t aux2 = 0, std::shared_ptr<Message> msg = nullptr);
  void Dispatch(Event& ev);
  void OnTick(SimNode& n);
  void OnDeliver(const Message& m);

  // The driver loop of one node: Ready -> persist -> apply -> send -> Advance.
  void ProcessReady(SimNode& n);
  void CheckLeaderCommit(SimNode& n);
  void FinishReady(SimNode& n);
  void SendMessages(SimNode& n, std::vector<Message>& msgs);
  void MaybeCompact(SimNode& n);
  void ServeReads(SimNode& n);

  // Network.
  bool LinkBlocked(NodeId from, NodeId to) const { return blocked_.contains({from.value(), to.value()}); }
  void BlockLink(NodeId from, NodeId to) { blocked_.insert({from.value(), to.value()}); }

  // Clients.
  void ClientNext(int client);
  void ClientArrive(uint64_t op_id);
  void Pause();
  void Resume(SimNode& n);
  bool HoldIfPaused(const Event& ev);
  void CompleteOp(uint64_t op_id, EventType type, std::optional<std::string> value = std::nullopt);
  void RecordInvoke(const ClientOp& op);
  NodeId PickTarget(int client);

  // Nemesis.
  void Nemesis();
  void Partition();
  void MembershipChange();
  void HealAll();
  void CheckLiveness();
  void CheckLeases();

  // Helpers.
  SimNode* Node(NodeId id) {
    auto it = nodes_.find(id.value());
    return it == nodes_.end() ? nullptr : &it->second;
  }
  SimNode* CurrentLeader();
  std::vector<SimNode*> AliveNodes();
  void Fail(const std::string& invariant, const std::string& detail);
  void Check(const Violation& v) {
    if (!v.empty()) Fail(v.invariant, v.detail);
  }
  void Trace(const std::string& line);
  std::string Now() const;
  std::string DescribeCluster();

  const SimOptions opts_;
  SimRandom rng_;
  SafetyChecker checker_;
  SimResult result_;
  bool stopped_ = false;

  int64_t now_ = 0;
  uint64_t seq_ = 0;
  std::vector<Event> queue_;
  std::map<uint64_t, SimNode> nodes_;
  uint64_t next_node_id_ = 1;
  bool auto_promote_ = true;
  uint64_t compact_threshold_ = 32;

  // Network state.
  std::set<std::pair<uint64_t, uint64_t>> blocked_;
  uint64_t partition_generation_ = 0;
  double drop_rate_ = 0.0;
  double dup_rate_ = 0.0;
  int64_t max_delay_us_ = 3000;
  double slow_rate_ = 0.0;

  // Clients and their history.
  std::vector<std::optional<uint64_t>> client_op_;  // outstanding op per client
  std::vector<int64_t> client_process_;
  std::vector<NodeId> client_leader_hint_;
  int64_t next_process_ = 0;
  uint64_t next_op_id_ = 1;
  uint64_t next_read_id_ = 1;
  uint64_t value_counter_ = 0;
  std::map<uint64_t, ClientOp> ops_;
  std::vector<lincheck::Event> history_;

  // Healing and liveness.
  bool healed_ = false;
  int64_t heal_time_ = 0;
  std::optional<std::pair<NodeId, std::pair<Index, Term>>> probe_;

  std::deque<std::string> trace_;
};

// ---------------------------------------------------------------------------

raft::Config Simulation::NodeConfig(const SimNode& n) {
  raft::Config c;
  c.id = n.id;
  c.initial_voters = n.initial_voters;
  c.election_timeout_ticks = kElectionTicks;
  c.heartbeat_interval_ticks = kHeartbeatTicks;
  c.lease_drift_margin_ticks = kLeaseMarginTicks;
  c.max_entries_per_message = 8;  // small, so batching limits are exercised
  c.max_bytes_per_message = 4096;
  c.max_inflight_messages = 4;
  c.max_uncommitted_entries = 200;
  c.auto_promote_learners = auto_promote_;
  // Each incarnation gets its own generator derived from the run's seed.
  auto gen = std::make_shared<SimRandom>(rng_.Next());
  c.random = [gen](uint64_t bound) { return gen->Uniform(bound); };
  return c;
}

void Simulation::CreateNode(NodeId id, std::vector<NodeId> initial_voters) {
  SimNode& n = nodes_[id.value()];
  n.id = id;
  n.exists = true;
  n.initial_voters = std::move(initial_voters);
  n.tick_scale = opts_.clock_skew ? 0.97 + 0.06 * rng_.Real() : 1.0;
  StartNode(n);
}

void Simulation::StartNode(SimNode& n) {
  auto core = raft::Raft::Create(NodeConfig(n), &n.storage, n.applied);
  if (!core.ok()) {
    Fail("Restart", "node " + S(n.id) + " failed to start: " + core.status().ToString());
    return;
  }
  n.core = std::move(*core);
  n.alive = true;
  ++n.incarnation;
  n.leader_commit_checked = Index(0);
  Trace("n" + S(n.id) + " start (incarnation " + S(n.incarnation) + ", applied " + S(n.applied) + ")");
  // Nodes start at different phases of their tick.
  Schedule(now_ + rng_.Range(1, kTickUs), EvKind::kTick, n.id.value(), n.incarnation);
  ProcessReady(n);
}

void Simulation::CrashNode(SimNode& n) {
  if (!n.alive) return;
  Trace("n" + S(n.id) + " CRASH");
  ++result_.stats.crashes;
  n.alive = false;
  n.core.reset();
  n.ready_in_flight.reset();  // an unfinished persist is lost
  // So is a commit index written without fsync since the last synced write.
  raft::HardState hs = n.storage.hard_state();
  if (hs.commit_index > n.synced_commit) {
    Trace("n" + S(n.id) + " loses its unsynced commit index " + S(hs.commit_index) + " (back to " +
          S(n.synced_commit) + ")");
    hs.commit_index = n.synced_commit;
    ++result_.stats.commit_rollbacks;
    raft::PersistBatch rollback;
    rollback.hard_state = hs;
    (void)n.storage.Persist(rollback);
  }
  n.paused = false;
  n.held.clear();
  ++n.incarnation;
  std::vector<uint64_t> lost;
  for (auto& [idx, op] : n.pending_writes) lost.push_back(op);
  for (auto& [rid, op] : n.pending_reads) lost.push_back(op);
  for (uint64_t op : n.reads_waiting_apply) lost.push_back(op);
  n.pending_writes.clear();
  n.pending_reads.clear();
  n.reads_waiting_apply.clear();
  for (uint64_t op : lost) CompleteOp(op, EventType::kInfo);
}

void Simulation::Schedule(int64_t at, EvKind kind, uint64_t node, uint64_t incarnation, uint64_t aux,
                          uint64_t aux2, std::shared_ptr<Message> msg) {
  Event ev;
  ev.time = at;
  ev.seq = seq_++;
  ev.kind = kind;
  ev.node = node;
  ev.incarnation = incarnation;
  ev.aux = aux;
  ev.aux2 = aux2;
  ev.msg = std::move(msg);
  queue_.push_back(std::move(ev));
  std::push_heap(queue_.begin(), queue_.end(), EventLater{});
}

// ---------------------------------------------------------------------------
// The node driver.

void Simulation::OnTick(SimNode& n) {
  (void)n.core->Tick();
  ProcessReady(n);
  Schedule(now_ + static_cast<int64_t>(kTickUs * n.tick_scale), EvKind::kTick, n.id.value(), n.incarnation);
}

void Simulation::OnDeliver(const Message& m) {
  SimNode* n = Node(m.to);
  if (n == nullptr || !n->alive || LinkBlocked(m.from, m.to)) return;
  if (opts_.trace) Trace("deliver " + m.DebugString());
  (void)n->core->Step(m);
  ProcessReady(*n);
}

void Simulation::CheckLeaderCommit(SimNode& n) {
  // Runs after every input to a leader, so the configuration seen the time
  // before is the one its commit was counted in, or the current one (one
  // input appends at most one configuration change).
  if (n.core->role() != Role::kLeader) {
    n.leader_commit_checked = Index(0);
    return;
  }
  if (n.core->commit_index() > n.leader_commit_checked && n.leader_commit_checked > Index(0)) {
    const Term entry_term = n.core->raft_log().TermAt(n.core->commit_index()).value_or(Term(0));
    Violation now = checker_.OnLeaderCommit(n.id, n.core->commit_index(), entry_term, n.core->conf_state());
    if (!now.empty()) {
      Violation before = checker_.OnLeaderCommit(n.id, n.core->commit_index(), entry_term, n.last_conf);
      if (!before.empty()) Check(now);
    }
  }
  n.leader_commit_checked = n.core->commit_index();
  n.last_conf = n.core->conf_state();
}

void Simulation::ProcessReady(SimNode& n) {
  if (stopped_ || !n.alive) return;
  CheckLeaderCommit(n);
  if (n.ready_in_flight || !n.core->HasReady()) return;
  n.ready_in_flight = n.core->GetReady();
  Ready& rd = *n.ready_in_flight;
  if (rd.soft_state) {
    if (opts_.trace) {
      Trace("n" + S(n.id) + " becomes " + raft::RoleName(rd.soft_state->role) + " term " +
            S(n.core->term()) + " leader " + S(rd.soft_state->leader));
    }
    if (rd.soft_state->role == Role::kLeader) {
      ++result_.stats.leaders;
      Check(checker_.OnLeader(n.id, n.core->term(), *n.core));
    }
  }
  // Thesis §10.2.1, as kvserver does it: a leader sends AppendEntries
  // before its own write of the same Ready is durable.
  if (n.core->role() == Role::kLeader &&
      (!rd.hard_state || rd.hard_state->current_term == n.storage.hard_state().current_term)) {
    std::vector<Message> early, later;
    for (Message& m : rd.messages) (m.type == MessageType::kAppendEntries ? early : later).push_back(std::move(m));
    rd.messages = std::move(later);
    SendMessages(n, early);
  }
  const bool needs_disk = rd.hard_state || rd.snapshot || !rd.entries.empty();
  if (!needs_disk) {
    FinishReady(n);
    return;
  }
  // Simulated fsync: usually fast, now and then a stall. The node keeps
  // receiving input meanwhile; a crash before it completes loses the batch.
  int64_t latency = rng_.Chance(0.02) ? rng_.Range(5'000, 40'000) : rng_.Range(50, 1'500);
  Schedule(now_ + latency, EvKind::kPersistDone, n.id.value(), n.incarnation);
}

void Simulation::FinishReady(SimNode& n) {
  Ready rd = std::move(*n.ready_in_flight);
  n.ready_in_flight.reset();
  // 1. Persist (the contract: before anything is sent or applied).
  raft::PersistBatch batch;
  batch.hard_state = rd.hard_state;
  if (rd.snapshot) batch.snapshot = rd.snapshot->meta;
  batch.entries = rd.entries;
  batch.sync = rd.must_sync;
  if (rd.hard_state || rd.snapshot || !rd.entries.empty()) {
    if (opts_.trace && batch.snapshot) Trace("n" + S(n.id) + " persists snapshot " + S(batch.snapshot->index));
    absl::Status s = n.storage.Persist(batch);
    if (!s.ok()) {
      Fail("Persist", "node " + S(n.id) + ": " + s.ToString());
      return;
    }
    // A synced write makes every earlier write durable (one log on disk).
    if (batch.sync) n.synced_commit = n.storage.hard_state().commit_index;
    Check(checker_.OnPersist(n.id, batch, n.storage));
  }
  // 2. Install a received snapshot, then apply committed entries.
  if (rd.snapshot) {
    n.kv = DecodeKv(rd.snapshot->data);
    n.applied = rd.snapshot->meta.index;
    n.snapshot_index = rd.snapshot->meta.index;
    n.snapshot_data = rd.snapshot->data;
    Trace("n" + S(n.id) + " installed snapshot at " + S(rd.snapshot->meta.index));
    // Writes waiting for an index the snapshot covers can no longer be
    // matched to their entry here: their outcome is unknown.
    for (auto it = n.pending_writes.begin(); it != n.pending_writes.end();) {
      if (it->first <= n.applied.value()) {
        uint64_t op_id = it->second;
        it = n.pending_writes.erase(it);
        CompleteOp(op_id, EventType::kInfo);
      } else {
        ++it;
      }
    }
  }
  for (const raft::Entry& e : rd.committed_entries) {
    Check(checker_.OnApply(n.id, e));
    // After a crash lost an unsynced commit index, the core hands out again
    // entries the state machine already holds; like kvserver's, it skips them.
    if (e.index <= n.applied) continue;
    if (e.type == raft::EntryType::kNormal) ApplyCommand(e.data, n.kv);
    n.applied = e.index;
    auto it = n.pending_writes.find(e.index.value());
    if (it != n.pending_writes.end()) {
      const uint64_t op_id = it->second;
      const bool ours = e.term == ops_[op_id].term;  // the entry at our index is ours only if it has our term
      n.pending_writes.erase(it);
      CompleteOp(op_id, ours ? EventType::kOk : EventType::kFail);
    }
  }
  result_.stats.committed = std::max<uint64_t>(result_.stats.committed, n.applied.value());
  for (const raft::ReadState& rs : rd.read_states) {
    auto it = n.pending_reads.find(rs.read_id);
    if (it == n.pending_reads.end()) continue;
    ClientOp& op = ops_[it->second];
    op.has_read_index = true;
    op.read_index = rs.read_index;
    n.reads_waiting_apply.insert(op.op_id);
    n.pending_reads.erase(it);
  }
  for (uint64_t read_id : rd.failed_reads) {
    auto it = n.pending_reads.find(read_id);
    if (it == n.pending_reads.end()) continue;
    const uint64_t op_id = it->second;
    n.pending_reads.erase(it);
    CompleteOp(op_id, EventType::kFail);
  }
  // 3. Send.
  SendMessages(n, rd.messages);
  // 4. Advance.
  n.core->Advance(rd);
  ServeReads(n);
  MaybeCompact(n);
  if (stopped_) return;
  ProcessReady(n);
}

void Simulation::ServeReads(SimNode& n) {
  for (auto it = n.reads_waiting_apply.begin(); it != n.reads_waiting_apply.end();) {
    ClientOp& op = ops_[*it];
    if (n.applied >= op.read_index) {
      auto v = n.kv.find(op.key);
      uint64_t id = *it;
      it = n.reads_waiting_apply.erase(it);
      CompleteOp(id, EventType::kOk, v == n.kv.end() ? std::nullopt : std::optional<std::string>(v->second));
    } else {
      ++it;
    }
  }
}

void Simulation::MaybeCompact(SimNode& n) {
  // The state machine snapshots its applied state and the log is compacted
  // up to it; the threshold varies per seed so compaction races with
  // everything else at different moments.
  if (!opts_.snapshots || n.applied.value() < n.snapshot_index.value() + compact_threshold_) return;
  std::string image = EncodeKv(n.kv);
  absl::Status s = n.core->Compact(n.applied);
  if (!s.ok()) return;  // e.g. an entry not yet durable; try later
  n.snapshot_index = n.applied;
  n.snapshot_data = std::move(image);
  Trace("n" + S(n.id) + " compacted its log up to " + S(n.applied));
  ++result_.stats.compactions;
  Check(checker_.OnCompact(n.id, n.storage));
}

void Simulation::SendMessages(SimNode& n, std::vector<Message>& msgs) {
  for (Message& m : msgs) {
    ++result_.stats.messages;
    if (m.type == MessageType::kInstallSnapshot) {
      // The transport streams the state machine's latest snapshot in chunks
      // (it may be newer than the one the core named, if the log was
      // compacted since); the stream fails as a whole if a chunk is lost.
      if (n.storage.snapshot_meta().index != n.snapshot_index) {
        Fail("Snapshot", "node " + S(n.id) + " has its log compacted at " + S(n.storage.snapshot_meta().index) +
                             " but its state machine snapshot is at " + S(n.snapshot_index));
        return;
      }
      m.snapshot.meta = n.storage.snapshot_meta();
      m.snapshot.data = n.snapshot_data;
      ++result_.stats.snapshots_sent;
      const int64_t chunks = 1 + static_cast<int64_t>(m.snapshot.data.size() / 64);
      const int64_t duration = chunks * rng_.Range(200, 2'000);
      bool delivered = !LinkBlocked(m.from, m.to) && !rng_.Chance(std::min(0.9, drop_rate_ * chunks));
      auto shared = std::make_shared<Message>(std::move(m));
      if (delivered) Schedule(now_ + duration, EvKind::kDeliver, 0, 0, 0, 0, shared);
      Schedule(now_ + duration + 1, EvKind::kSnapshotDone, n.id.value(), n.incarnation, shared->to.value(),
               delivered ? 1 : 0);
      continue;
    }
    if (LinkBlocked(m.from, m.to) || rng_.Chance(drop_rate_)) {
      if (opts_.trace) Trace("drop " + m.DebugString());
      continue;
    }
    int copies = rng_.Chance(dup_rate_) ? 2 : 1;
    auto shared = std::make_shared<Message>(std::move(m));
    for (int i = 0; i < copies; ++i) {
      // Mostly quick, with a tail of very late messages: a late answer must
      // not be taken as fresh evidence of leadership.
      int64_t delay = rng_.Chance(slow_rate_) ? rng_.Range(50'000, 400'000) : rng_.Range(100, max_delay_us_);
      Schedule(now_ + delay, EvKind::kDeliver, 0, 0, 0, 0, shared);
    }
  }
}

// ---------------------------------------------------------------------------
// Clients.

NodeId Simulation::PickTarget(int client) {
  std::vector<NodeId> candidates;
  for (const auto& [id, n] : nodes_) {
    if (n.exists && !n.retired) candidates.push_back(n.id);
  }
  if (client_leader_hint_[client] != raft::kNoNode && rng_.Chance(0.7)) return client_leader_hint_[client];
  return candidates[rng_.Uniform(candidates.size())];
}

void Simulation::RecordInvoke(const ClientOp& op) {
  lincheck::Event e;
  e.process = op.process;
  e.type = EventType::kInvoke;
  e.f = op.f;
  e.key = op.key;
  if (op.f == Function::kPut) e.value = op.value;
  e.time_ns = now_ * 1000;
  e.consistency = op.consistency;
  history_.push_back(std::move(e));
  ++result_.stats.ops_invoked;
}

void Simulation::CompleteOp(uint64_t op_id, EventType type, std::optional<std::string> value) {
  auto it = ops_.find(op_id);
  if (it == ops_.end()) return;
  ClientOp op = it->second;
  ops_.erase(it);
  if (client_op_[op.client] != op_id) return;
  lincheck::Event e;
  e.process = op.process;
  e.type = type;
  e.f = op.f;
  e.key = op.key;
  if (op.f == Function::kPut) e.value = op.value;
  if (op.f == Function::kGet && type == EventType::kOk) e.value = value;
  e.time_ns = now_ * 1000;
  e.consistency = op.consistency;
  history_.push_back(std::move(e));
  client_op_[op.client].reset();
  if (type == EventType::kOk) {
    ++result_.stats.ops_ok;
    if (op.f == Function::kGet) ++result_.stats.reads_ok;
  } else if (type == EventType::kFail) {
    ++result_.stats.ops_failed;
  } else {
    ++result_.stats.ops_info;
    client_process_[op.client] = next_process_++;  // an info op retires its process
  }
  // Remove the op from wherever it still waits.
  if (SimNode* n = Node(op.node)) {
    if (op.proposed) n->pending_writes.erase(op.index.value());
    if (op.read_id != 0) n->pending_reads.erase(op.read_id);
    n->reads_waiting_apply.erase(op_id);
  }
  Schedule(now_ + rng_.Range(0, 20'000), EvKind::kClientNext, static_cast<uint64_t>(op.client));
}

void Simulation::ClientNext(int client) {
  if (client_op_[client]) return;
  ClientOp op;
  op.op_id = next_op_id_++;
  op.client = client;
  op.process = client_process_[client];
  op.key = "k" + S(rng_.Uniform(static_cast<uint64_t>(opts_.keys)));
  op.node = PickTarget(client);
  const uint64_t r = rng_.Uniform(100);
  if (r < 40) {
    op.f = Function::kPut;
    op.value = "v-" + S(static_cast<uint64_t>(op.process)) + "-" + S(++value_counter_);
  } else if (r < 50) {
    op.f = Function::kDelete;
  } else {
    op.f = Function::kGet;
    const uint64_t c = rng_.Uniform(100);
    if (c < 50 || !opts_.lease_reads) {
      op.consistency = c < 85 ? Consistency::kLinearizable : Consistency::kSerializable;
    } else if (c < 85) {
      op.consistency = Consistency::kLease;
    } else {
      op.consistency = Consistency::kSerializable;
    }
  }
  ops_[op.op_id] = op;
  client_op_[client] = op.op_id;
  RecordInvoke(op);
  Schedule(now_ + kClientTimeoutUs, EvKind::kClientTimeout, op.op_id);
  Schedule(now_ + rng_.Range(50, 500), EvKind::kClientArrive, op.node.value(), 0, op.op_id);
}

void Simulation::ClientArrive(uint64_t id) {
  auto it = ops_.find(id);
  if (it == ops_.end()) return;  // timed out meanwhile
  const ClientOp op = it->second;
  const int client = op.client;
  SimNode* n = Node(op.node);
  if (n == nullptr || !n->alive) {
    CompleteOp(id, EventType::kFail);  // connection refused: nothing was sent
    return;
  }
  if (op.f == Function::kGet && op.consistency == Consistency::kSerializable) {
    auto v = n->kv.find(op.key);
    CompleteOp(id, EventType::kOk, v == n->kv.end() ? std::nullopt : std::optional<std::string>(v->second));
    return;
  }
  if (op.f == Function::kGet) {
    if (!opts_.follower_reads && n->core->role() != Role::kLeader) {
      client_leader_hint_[client] = n->core->leader();
      CompleteOp(id, EventType::kFail);
      return;
    }
    ClientOp& stored = ops_[id];
    stored.read_id = next_read_id_++;
    absl::Status s = n->core->ReadIndex(
        stored.read_id, op.consistency == Consistency::kLease ? raft::ReadMode::kLease : raft::ReadMode::kReadIndex);
    if (!s.ok()) {
      stored.read_id = 0;
      CompleteOp(id, EventType::kFail);
      return;
    }
    n->pending_reads[stored.read_id] = id;
    ProcessReady(*n);
    return;
  }
  if (n->core->role() != Role::kLeader) {
    client_leader_hint_[client] = n->core->leader();
    CompleteOp(id, EventType::kFail);  // not the leader: not proposed
    return;
  }
  auto proposed = n->core->Propose(op.f == Function::kPut ? EncodePut(op.key, op.value) : EncodeDelete(op.key));
  if (!proposed.ok()) {
    CompleteOp(id, EventType::kFail);
    return;
  }
  ClientOp& stored = ops_[id];
  stored.proposed = true;
  stored.index = proposed->first;
  stored.term = proposed->second;
  n->pending_writes[stored.index.value()] = id;
  client_leader_hint_[client] = n->id;
  ProcessReady(*n);
}

// ---------------------------------------------------------------------------
// Nemesis.

SimNode* Simulation::CurrentLeader() {
  SimNode* best = nullptr;
  for (auto& [id, n] : nodes_) {
    if (n.alive && !n.paused && n.core->role() == Role::kLeader &&
        (best == nullptr || n.core->term() > best->core->term())) {
      best = &n;
    }
  }
  return best;
}

std::vector<SimNode*> Simulation::AliveNodes() {
  std::vector<SimNode*> out;
  for (auto& [id, n] : nodes_) {
    if (n.alive) out.push_back(&n);
  }
  return out;
}

void Simulation::Partition() {
  std::vector<NodeId> ids;
  for (auto& [id, n] : nodes_) {
    if (n.exists && !n.retired) ids.push_back(n.id);
  }
  if (ids.size() < 2) return;
  blocked_.clear();
  ++partition_generation_;
  ++result_.stats.partitions;
  SimNode* leader = CurrentLeader();
  const uint64_t kind = rng_.Uniform(6);
  std::string what;
  auto isolate = [&](NodeId x) {
    for (NodeId y : ids) {
      if (y != x) {
        BlockLink(x, y);
        BlockLink(y, x);
      }
    }
  };
  if (kind == 0 || (kind == 1 && leader == nullptr)) {
    NodeId x = ids[rng_.Uniform(ids.size())];
    isolate(x);
    what = "isolate n" + S(x);
  } else if (kind == 1) {
    isolate(leader->id);
    what = "isolate leader n" + S(leader->id);
  } else if (kind == 2 || kind == 4) {
    // Random halves; kind 4 adds a bridge node that sees both sides.
    std::vector<NodeId> shuffled = ids;
    for (size_t i = shuffled.size(); i > 1; --i) std::swap(shuffled[i - 1], shuffled[rng_.Uniform(i)]);
    size_t cut = 1 + rng_.Uniform(shuffled.size() - 1);
    std::set<NodeId> a(shuffled.begin(), shuffled.begin() + cut);
    NodeId bridge = kind == 4 ? shuffled[rng_.Uniform(shuffled.size())] : raft::kNoNode;
    for (NodeId x : ids) {
      for (NodeId y : ids) {
        if (x != y && a.contains(x) != a.contains(y) && x != bridge && y != bridge) BlockLink(x, y);
      }
    }
    what = std::string(kind == 4 ? "bridge" : "halves") + " cut=" + S(cut) +
           (kind == 4 ? " bridge=n" + S(bridge) : "");
  } else if (kind == 5) {
    // Random directed links down: partial and asymmetric partitions, where
    // PreVote and CheckQuorum must cooperate to stay live (Cloudflare 2020).
    const double p = 0.15 + 0.35 * rng_.Real();
    size_t n = 0;
    for (NodeId x : ids) {
      for (NodeId y : ids) {
        if (x != y && rng_.Chance(p)) {
          BlockLink(x, y);
          ++n;
        }
      }
    }
    what = "random links down: " + S(static_cast<uint64_t>(n));
  } else {
    // One-way links: a node that can send but not receive, or the reverse.
    NodeId x = (leader != nullptr && rng_.Chance(0.5)) ? leader->id : ids[rng_.Uniform(ids.size())];
    bool inbound = rng_.Chance(0.5);
    for (NodeId y : ids) {
      if (y == x) continue;
      if (inbound) {
        BlockLink(y, x);
      } else {
        BlockLink(x, y);
      }
    }
    what = std::string("one-way ") + (inbound ? "into" : "out of") + " n" + S(x);
  }
  Trace("PARTITION " + what);
  Schedule(now_ + rng_.Range(200'000, 2'500'000), EvKind::kHealPartition, 0, 0, partition_generation_);
}

void Simulation::MembershipChange() {
  SimNode* leader = CurrentLeader();
  if (leader == nullptr) return;
  const raft::ConfState conf = leader->core->conf_state();
  const uint64_t extra_created = next_node_id_ - 1 - static_cast<uint64_t>(opts_.nodes);
  ConfChange cc;
  const bool can_add = conf.voters.size() + conf.learners.size() < static_cast<size_t>(opts_.nodes) + 2 &&
                       extra_created < static_cast<uint64_t>(kMaxExtraNodes);
  const bool can_remove = conf.voters.size() > 3 || (conf.voters.size() > 1 && rng_.Chance(0.2));
  if (!conf.learners.empty() && (!auto_promote_ || rng_.Chance(0.3))) {
    cc = ConfChange{ConfChangeType::kPromoteLearner, conf.learners.front(), ""};
  } else if (can_add && (!can_remove || rng_.Chance(0.5))) {
    cc = ConfChange{ConfChangeType::kAddLearner, NodeId(next_node_id_), ""};
  } else if (can_remove) {
    std::vector<NodeId> members = conf.voters;
    members.insert(members.end(), conf.learners.begin(), conf.learners.end());
    cc = ConfChange{ConfChangeType::kRemoveNode, members[rng_.Uniform(members.size())], ""};
  } else {
    return;
  }
  auto r = leader->core->ProposeConfChange(cc);
  Trace("CONF n" + S(leader->id) + " " +
        (cc.type == ConfChangeType::kAddLearner ? "add learner"
         : cc.type == ConfChangeType::kPromoteLearner ? "promote"
                                                       : "remove") +
        " n" + S(cc.node_id) + ": " + (r.ok() ? "proposed" : r.status().ToString()));
  if (!r.ok()) return;
  ++result_.stats.conf_changes;
  if (cc.type == ConfChangeType::kAddLearner) {
    ++next_node_id_;
    CreateNode(cc.node_id, {});
  } else if (cc.type == ConfChangeType::kRemoveNode) {
    // Shut the node down for good later, once its removal is committed.
    Schedule(now_ + rng_.Range(200'000, 2'000'000), EvKind::kRetire, cc.node_id.value());
  }
  ProcessReady(*leader);
}

void Simulation::Nemesis() {
  if (healed_) return;
  std::vector<int> kinds;
  if (opts_.crashes) kinds.insert(kinds.end(), {0, 0, 1});
  if (opts_.partitions) kinds.insert(kinds.end(), {2, 2});
  if (opts_.lossy_network) kinds.push_back(3);
  if (opts_.membership) kinds.insert(kinds.end(), {4, 4});
  if (opts_.transfers) kinds.push_back(5);
  if (opts_.pauses) kinds.insert(kinds.end(), {6, 6});
  if (!kinds.empty()) {
    switch (kinds[rng_.Uniform(kinds.size())]) {
      case 0: {  // crash a random node
        std::vector<SimNode*> alive = AliveNodes();
        if (alive.size() > 1) {
          SimNode* n = alive[rng_.Uniform(alive.size())];
          CrashNode(*n);
          Schedule(now_ + rng_.Range(50'000, 2'000'000), EvKind::kRestart, n->id.value(), n->incarnation);
        }
        break;
      }
      case 1: {  // crash the leader
        if (SimNode* n = CurrentLeader()) {
          CrashNode(*n);
          Schedule(now_ + rng_.Range(50'000, 2'000'000), EvKind::kRestart, n->id.value(), n->incarnation);
        }
        break;
      }
      case 2:
        Partition();
        break;
      case 3:
        drop_rate_ = rng_.Real() * 0.25;
        dup_rate_ = rng_.Real() * 0.1;
        max_delay_us_ = rng_.Range(2'000, 60'000);
        slow_rate_ = rng_.Real() * 0.05;
        Trace("NETWORK drop=" + std::to_string(drop_rate_) + " dup=" + std::to_string(dup_rate_) +
              " max_delay_us=" + S(static_cast<uint64_t>(max_delay_us_)));
        Schedule(now_ + rng_.Range(300'000, 3'000'000), EvKind::kCalmNetwork);
        break;
      case 4:
        MembershipChange();
        break;
      case 5:
        if (SimNode* leader = CurrentLeader()) {
          const auto& voters = leader->core->conf_state().voters;
          NodeId target = voters[rng_.Uniform(voters.size())];
          absl::Status s = leader->core->TransferLeadership(target);
          Trace("TRANSFER n" + S(leader->id) + " -> n" + S(target) + ": " + (s.ok() ? "started" : s.ToString()));
          if (s.ok()) ++result_.stats.transfers;
          ProcessReady(*leader);
        }
        break;
      case 6:
        Pause();
        break;
    }
  }
  Schedule(now_ + rng_.Range(100'000, 900'000), EvKind::kNemesis);
}

void Simulation::HealAll() {
  healed_ = true;
  heal_time_ = now_;
  blocked_.clear();
  drop_rate_ = 0;
  dup_rate_ = 0;
  slow_rate_ = 0;
  max_delay_us_ = 3000;
  Trace("HEAL: partitions removed, network calm, crashed nodes restart");
  for (auto& [id, n] : nodes_) {
    if (n.exists && !n.retired && !n.alive) StartNode(n);
  }
}

void Simulation::CheckLeases() {
  // While a leader's lease holds, it is the only leader and the commit index
  // it would serve a lease read at is the newest anywhere: no node may
  // lead a later term or know of a later commit (thesis §6.4.1).
  for (auto& [lid, l] : nodes_) {
    // A paused leader serves nothing; when it resumes it first catches up
    // its ticks, which ends the lease.
    if (!l.alive || l.paused || l.core->role() != Role::kLeader || !l.core->LeaseValid()) continue;
    for (auto& [nid, n] : nodes_) {
      if (!n.alive || nid == lid) continue;
      if (n.core->role() == Role::kLeader && n.core->term() > l.core->term()) {
        Fail("Lease", "node " + S(n.id) + " leads term " + S(n.core->term()) + " while leader " + S(l.id) +
                          " of term " + S(l.core->term()) + " still holds its lease");
        return;
      }
      if (n.core->commit_index() > l.core->commit_index()) {
        Fail("Lease", "node " + S(n.id) + " knows commit index " + S(n.core->commit_index()) + " while leader " +
                          S(l.id) + " holds its lease at commit index " + S(l.core->commit_index()) +
                          ": a lease read would be stale");
        return;
      }
    }
  }
}

void Simulation::CheckLiveness() {
  SimNode* leader = CurrentLeader();
  if (leader == nullptr) return;
  if (!probe_ || probe_->first != leader->id || probe_->second.second != leader->core->term()) {
    auto r = leader->core->Propose(EncodePut("__probe", "t" + S(static_cast<uint64_t>(now_))));
    if (!r.ok()) return;
    probe_ = std::make_pair(leader->id, *r);
    ProcessReady(*leader);
    return;
  }
  const Index probe_index = probe_->second.first;
  if (leader->core->commit_index() < probe_index) return;
  const raft::ConfState& conf = leader->core->conf_state();
  std::vector<NodeId> members = conf.voters;
  members.insert(members.end(), conf.learners.begin(), conf.learners.end());
  for (NodeId m : members) {
    SimNode* n = Node(m);
    if (n == nullptr || !n->alive || n->applied < probe_index) return;
  }
  result_.stats.recovery_ms = (now_ - heal_time_) / 1000;
  stopped_ = true;
}

// ---------------------------------------------------------------------------

bool Simulation::HoldIfPaused(const Event& ev) {
  uint64_t target = 0;
  switch (ev.kind) {
    case EvKind::kTick:
    case EvKind::kPersistDone:
    case EvKind::kSnapshotDone:
    case EvKind::kClientArrive:
      target = ev.node;
      break;
    case EvKind::kDeliver:
      target = ev.msg->to.value();
      break;
    default:
      return false;
  }
  SimNode* n = Node(NodeId(target));
  if (n == nullptr || !n->alive || !n->paused) return false;
  n->held.push_back(ev);
  return true;
}

void Simulation::Pause() {
  std::vector<SimNode*> alive = AliveNodes();
  if (alive.empty()) return;
  SimNode* leader = CurrentLeader();
  SimNode* n = (leader != nullptr && rng_.Chance(0.5)) ? leader : alive[rng_.Uniform(alive.size())];
  if (n->paused) return;
  n->paused = true;
  n->paused_at = now_;
  // Sometimes well beyond an election timeout (etcd #20418).
  const int64_t duration = rng_.Chance(0.5) ? rng_.Range(20'000, 150'000) : rng_.Range(150'000, 1'500'000);
  Trace("PAUSE n" + S(n->id) + " for " + S(static_cast<uint64_t>(duration / 1000)) + "ms");
  Schedule(now_ + duration, EvKind::kResume, n->id.value(), n->incarnation);
}

void Simulation::Resume(SimNode& n) {
  n.paused = false;
  Trace("RESUME n" + S(n.id));
  // The driver first catches its ticks up with the steady clock, then
  // handles what queued up meanwhile (the order kvserver's loop follows:
  // leases and CheckQuorum see the time that really passed).
  const int64_t missed = static_cast<int64_t>((now_ - n.paused_at) / (kTickUs * n.tick_scale));
  for (int64_t i = 0; i < missed && n.alive; ++i) {
    (void)n.core->Tick();
    ProcessReady(n);
  }
  std::vector<Event> held = std::move(n.held);
  n.held.clear();
  for (Event& ev : held) {
    if (stopped_) return;
    Dispatch(ev);
  }
}

void Simulation::Dispatch(Event& ev) {
  if (HoldIfPaused(ev)) return;
  switch (ev.kind) {
    case EvKind::kClientArrive:
      ClientArrive(ev.aux);
      break;
    case EvKind::kResume: {
      SimNode* n = Node(NodeId(ev.node));
      if (n != nullptr && n->alive && n->paused && n->incarnation == ev.incarnation) Resume(*n);
      break;
    }
    case EvKind::kTick: {
      SimNode* n = Node(NodeId(ev.node));
      if (n != nullptr && n->alive && n->incarnation == ev.incarnation) OnTick(*n);
      break;
    }
    case EvKind::kDeliver:
      OnDeliver(*ev.msg);
      break;
    case EvKind::kPersistDone: {
      SimNode* n = Node(NodeId(ev.node));
      if (n != nullptr && n->alive && n->incarnation == ev.incarnation && n->ready_in_flight) FinishReady(*n);
      break;
    }
    case EvKind::kClientNext:
      ClientNext(static_cast<int>(ev.node));
      break;
    case EvKind::kClientTimeout:
      CompleteOp(ev.node, EventType::kInfo);
      break;
    case EvKind::kNemesis:
      Nemesis();
      break;
    case EvKind::kRestart: {
      SimNode* n = Node(NodeId(ev.node));
      if (n != nullptr && !n->alive && !n->retired && n->incarnation == ev.incarnation) StartNode(*n);
      break;
    }
    case EvKind::kHealPartition:
      if (ev.aux == partition_generation_ && !blocked_.empty()) {
        blocked_.clear();
        Trace("partition healed");
      }
      break;
    case EvKind::kCalmNetwork:
      drop_rate_ = 0;
      dup_rate_ = 0;
      slow_rate_ = 0;
      max_delay_us_ = 3000;
      break;
    case EvKind::kSnapshotDone: {
      SimNode* n = Node(NodeId(ev.node));
      if (n != nullptr && n->alive && n->incarnation == ev.incarnation) {
        n->core->ReportSnapshot(NodeId(ev.aux), ev.aux2 == 1);
        ProcessReady(*n);
      }
      break;
    }
    case EvKind::kRetire: {
      SimNode* n = Node(NodeId(ev.node));
      SimNode* leader = CurrentLeader();
      if (n == nullptr || n->retired) break;
      if (leader != nullptr && !leader->core->conf_state().Contains(n->id) && !leader->core->HasPendingConfChange()) {
        Trace("n" + S(n->id) + " retired");
        CrashNode(*n);
        --result_.stats.crashes;
        n->retired = true;
      } else {
        Schedule(now_ + 500'000, EvKind::kRetire, ev.node);
      }
      break;
    }
  }
}

void Simulation::Fail(const std::string& invariant, const std::string& detail) {
  if (!result_.ok) return;
  result_.ok = false;
  result_.invariant = invariant;
  result_.detail = "at " + Now() + ": " + detail;
  stopped_ = true;
}

std::string Simulation::Now() const {
  std::ostringstream os;
  os << now_ / 1000 << "." << (now_ % 1000) / 100 << "ms";
  return os.str();
}

void Simulation::Trace(const std::string& line) {
  if (!opts_.trace) return;
  trace_.push_back(Now() + " " + line);
  if (trace_.size() > opts_.trace_tail) trace_.pop_front();
}

std::string Simulation::DescribeCluster() {
  std::ostringstream os;
  for (auto& [id, n] : nodes_) {
    os << " n" << id;
    if (n.retired) {
      os << "(retired)";
    } else if (!n.alive) {
      os << "(down)";
    } else {
      os << "(" << raft::RoleName(n.core->role()) << " t" << n.core->term() << " commit "
         << n.core->commit_index() << " applied " << n.applied << " " << n.core->conf_state().ToString() << ")";
    }
  }
  return os.str();
}

SimResult Simulation::Run() {
  raft::SetCheckFailureHandler(&ThrowOnCheckFailure);
  auto_promote_ = rng_.Chance(0.6);
  compact_threshold_ = static_cast<uint64_t>(rng_.Range(8, 64));
  std::vector<NodeId> voters;
  for (int i = 1; i <= opts_.nodes; ++i) voters.push_back(NodeId(static_cast<uint64_t>(i)));
  next_node_id_ = static_cast<uint64_t>(opts_.nodes) + 1;
  try {
    for (NodeId v : voters) CreateNode(v, voters);
    client_op_.assign(static_cast<size_t>(opts_.clients), std::nullopt);
    client_leader_hint_.assign(static_cast<size_t>(opts_.clients), raft::kNoNode);
    for (int c = 0; c < opts_.clients; ++c) {
      client_process_.push_back(next_process_++);
      Schedule(rng_.Range(0, 300'000), EvKind::kClientNext, static_cast<uint64_t>(c));
    }
    Schedule(rng_.Range(300'000, 800'000), EvKind::kNemesis);
    const int64_t fault_end = opts_.fault_ms * 1000;
    const int64_t deadline = fault_end + opts_.liveness_ms * 1000;
    while (!queue_.empty() && !stopped_) {
      std::pop_heap(queue_.begin(), queue_.end(), EventLater{});
      Event ev = std::move(queue_.back());
      queue_.pop_back();
      if (!healed_ && ev.time >= fault_end) {
        now_ = fault_end;
        HealAll();
      }
      now_ = ev.time;
      if (now_ > deadline) {
        Fail("Liveness", "no leader committed a write on every member within " + S(static_cast<uint64_t>(opts_.liveness_ms)) +
                             " ms of healing;" + DescribeCluster());
        break;
      }
      ++result_.stats.events;
      Dispatch(ev);
      if (opts_.lease_reads && !stopped_) CheckLeases();
      if (healed_ && !stopped_) CheckLiveness();
    }
  } catch (const CoreCheckFailure& e) {
    Fail("Core invariant", e.what());
  }
  raft::SetCheckFailureHandler(nullptr);

  if (!opts_.history_out.empty()) {
    std::ofstream out(opts_.history_out);
    lincheck::HistoryWriter writer(out);
    for (const lincheck::Event& e : history_) writer.Write(e);
  }
  if (result_.ok) {
    lincheck::CheckResult lin = lincheck::CheckHistory(history_);
    result_.lincheck_outcome = lincheck::OutcomeName(lin.outcome);
    if (lin.outcome == lincheck::CheckResult::Outcome::kNotLinearizable ||
        lin.outcome == lincheck::CheckResult::Outcome::kInvalidHistory) {
      result_.ok = false;
      result_.invariant = "Linearizability";
      result_.detail = "key " + lin.key + ": " + lin.message;
    }
  }
  result_.trace.assign(trace_.begin(), trace_.end());
  return result_;
}

}  // namespace

SimResult RunSimulation(const SimOptions& options) {
  Simulation sim(options);
  return sim.Run();
}

std::string RunFingerprint(const SimOptions& options) {
  Simulation sim(options);
  SimResult r = sim.Run();
  std::ostringstream os;
  const SimStats& s = r.stats;
  os << "ok=" << r.ok << " events=" << s.events << " messages=" << s.messages << " ops=" << s.ops_invoked << "/"
     << s.ops_ok << "/" << s.ops_failed << "/" << s.ops_info << " crashes=" << s.crashes << " leaders=" << s.leaders
     << " committed=" << s.committed << " recovery_ms=" << s.recovery_ms;
  for (const auto& [id, n] : sim.nodes()) os << " n" << id << "=" << EncodeKv(n.kv).size() << "@" << n.applied;
  return os.str();
}

}  // namespace quorumkv::sim
