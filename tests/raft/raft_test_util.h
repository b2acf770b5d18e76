// Test harness for the pure Raft core: nodes over a MemoryLogStorage, a
// Ready "drain" that follows the persistence contract of raft/raft.h to the
// letter (and checks it on every Ready), a small deterministic in-process
// network, and constructors for hand-made messages.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "raft/memory_log_storage.h"
#include "raft/message.h"
#include "raft/raft.h"
#include "raft/types.h"

namespace quorumkv::raft::testing {

// Short spellings for the strong types, so tests read like the paper.
inline NodeId N(uint64_t v) { return NodeId(v); }
inline Term T(uint64_t v) { return Term(v); }
inline Index I(uint64_t v) { return Index(v); }
std::vector<NodeId> Ids(const std::vector<uint64_t>& ids);

// A small seeded generator (splitmix64) for Config::random. `fixed` pins
// the value it returns (clamped to n - 1), so a test can choose a node's
// election timeout; every call is recorded.
class TestRandom {
 public:
  explicit TestRandom(uint64_t seed) : state_(seed) {}
  uint64_t Next(uint64_t n);

  std::optional<uint64_t> fixed;
  std::vector<uint64_t> bounds;   // the n of every call
  std::vector<uint64_t> results;  // what every call returned

 private:
  uint64_t state_;
};

// The default test configuration: election timeout 10 ticks, heartbeat 1.
Config MakeConfig(NodeId id, std::vector<NodeId> initial_voters, std::shared_ptr<TestRandom> random);

// Entries with the given terms at indexes first, first + 1, ... (normal,
// data "e<index>").
std::vector<Entry> MakeEntries(Index first, const std::vector<uint64_t>& terms);
Entry MakeEntry(Index index, Term term, EntryType type = EntryType::kNormal, std::string data = "");
Entry ConfEntry(Index index, Term term, ConfChangeType type, NodeId node);

// Writes a log into an empty storage, as if a node had run before: the
// configuration sits in a snapshot at index 0 (so the log itself holds
// exactly the entries `terms` at indexes 1..n, like the paper's figures).
void PreloadStorage(MemoryLogStorage& storage, const ConfState& conf,
                    const std::vector<uint64_t>& terms, const HardState& hard_state);
ConfState Voters(const std::vector<uint64_t>& voters, const std::vector<uint64_t>& learners = {});

// Where a simulated crash interrupts the processing of one Ready.
enum class CrashPoint {
  kNone,
  kBeforePersist,  // nothing of the Ready is durable, nothing sent
  kAfterPersist,   // durable, but no message left the node
  kAfterSend,      // durable and sent, but not applied nor Advanced
};

// One node: a core over its own "disk" (storage) and "state machine"
// (the list of applied entries). A crash drops the core and keeps both.
class TestNode {
 public:
  // A brand-new node: bootstraps with `initial_voters` (empty: a node that
  // joins an existing cluster). Without `random`, the node's generator is
  // pinned to the maximum election timeout (2E - 1 ticks).
  static std::unique_ptr<TestNode> Fresh(uint64_t id, const std::vector<uint64_t>& initial_voters,
                                         std::function<void(Config&)> tweak = nullptr,
                                         std::shared_ptr<TestRandom> random = nullptr);
  // A restarted node whose disk holds `terms` (see PreloadStorage).
  static std::unique_ptr<TestNode> WithLog(uint64_t id, const ConfState& conf,
                                           const std::vector<uint64_t>& terms,
                                           const HardState& hard_state,
                                           std::function<void(Config&)> tweak = nullptr,
                                           std::shared_ptr<TestRandom> random = nullptr);

  Raft& raft() { return *core_; }
  Raft* operator->() { return core_.get(); }
  bool alive() const { return core_ != nullptr; }
  NodeId id() const { return config_.id; }
  const Config& config() const { return config_; }
  TestRandom& random() { return *random_; }

  // Processes every pending Ready as the contract says: persist (one
  // LogStorage::Persist), then hand out the messages, then apply the
  // committed entries, then Advance. Returns the messages "sent". Checks on
  // each Ready that no message promises anything not yet durable.
  std::vector<Message> Drain();
  // Processes one Ready and crashes at `point` (kNone: no crash). Returns
  // the messages that left the node.
  std::vector<Message> ProcessReady(CrashPoint point);
  // The same, where `decide` sees the Ready and picks the crash point.
  std::vector<Message> ProcessReady(const std::function<CrashPoint(const Ready&)>& decide);

  // Tick (without draining), n times.
  void Tick(int n = 1);
  // Steps a message, expecting OK.
  void Step(const Message& m);

  // Drops the core (unpersisted state is lost); Restart re-creates it over
  // the same storage and state machine.
  void Crash();
  void Restart();

  MemoryLogStorage storage;
  std::vector<Entry> applied;          // the state machine: entries applied
  Index applied_index;                 // and how far (snapshots included)
  std::optional<Snapshot> installed_snapshot;
  std::vector<ReadState> read_states;  // every read state released here
  std::vector<uint64_t> failed_reads;  // every failed read reported here
  std::vector<SoftState> soft_states;  // every soft state change seen
  std::optional<Ready> crashed_ready;  // the Ready being processed at the last crash

 private:
  TestNode(const Config& config, std::shared_ptr<TestRandom> random);
  void CheckReadyAgainstContract(const Ready& rd);
  void Apply(const Ready& rd);

  Config config_;
  std::shared_ptr<TestRandom> random_;
  std::unique_ptr<Raft> core_;
};

// Ticks `node` (draining after each tick if `drain`) until `done` holds,
// at most `max_ticks` times; returns whether it holds.
bool TickUntil(TestNode& node, const std::function<bool()>& done, bool drain = false, int max_ticks = 100);
// The data of the last entry the node applied ("" if none).
std::string LastAppliedData(const TestNode& node);

// Makes `node` (a follower) leader by hand: ticks it until it starts a
// pre-vote, answers every (pre-)vote request it sends with a grant, and
// drains it. Returns the messages it sent as a new leader.
std::vector<Message> ElectByHand(TestNode& node);

struct NetworkOptions {
  // Voters of a fresh cluster; by default every node of the network.
  std::vector<uint64_t> voters;
  // Applied to every node's Config.
  std::function<void(Config&)> tweak;
  // Pre-loaded disks (instead of bootstrapping) for some nodes.
  std::map<uint64_t, std::vector<uint64_t>> log_terms;
  std::map<uint64_t, HardState> hard_states;
  // true: every node's election timeout is the maximum (2E - 1 ticks), so
  // elections happen only where a test asks (Elect). false: seeded.
  bool fixed_timeouts = true;
  uint64_t seed = 1;
};

// A deterministic network of nodes: one FIFO queue of messages in flight,
// delivered one by one; the receiver's Readies are drained after each step.
class Network {
 public:
  explicit Network(const std::vector<uint64_t>& ids, NetworkOptions options = {});

  TestNode& node(uint64_t id);
  Raft& raft(uint64_t id) { return node(id).raft(); }
  // A node that joins later (no initial voters), not yet in any config.
  TestNode& AddJoiningNode(uint64_t id);
  std::vector<uint64_t> ids() const;

  // Ticks one node once and queues what it sends (no delivery).
  void Tick(uint64_t id);
  // n rounds of: tick every live node, then deliver until quiet.
  void TickAll(int n = 1);
  // Ticks only the given nodes, delivering after each round.
  void TickNodes(const std::vector<uint64_t>& ids, int n = 1);
  // Drains a node's Readies into the queue (after a Propose, ReadIndex...).
  void Drain(uint64_t id);
  void DrainAll();
  // Queues a hand-made message.
  void Send(const Message& m) { queue_.push_back(m); }

  // Delivers one queued message (or drops it per the fault rules).
  // Returns false when the queue is empty.
  bool DeliverOne();
  // Delivers until the queue is empty.
  void Deliver();
  std::deque<Message>& queue() { return queue_; }
  // Removes and returns the queued messages matching `pred`.
  std::vector<Message> Take(const std::function<bool(const Message&)>& pred);

  // Faults. An isolated node neither sends nor receives; Cut drops one
  // direction of one link; `drop` drops whatever it matches.
  void Isolate(uint64_t id) { isolated_.insert(id); }
  void Rejoin(uint64_t id) { isolated_.erase(id); }
  void Cut(uint64_t from, uint64_t to) { cut_.insert({from, to}); }
  void Heal();
  std::function<bool(const Message&)> drop;

  void Crash(uint64_t id);
  void Restart(uint64_t id);
  // Asked for each Ready a node processes: where (if anywhere) the node
  // crashes while processing it. The node stays down until Restart.
  std::function<CrashPoint(uint64_t id, const Ready& rd)> crash_hook;

  // A real election that `id` wins: the other live, connected nodes are
  // aged past their stickiness window (they must not campaign: fixed
  // timeouts; isolated ones are not ticked), then
  // `id` is ticked until it is leader. Any current leader must be isolated
  // or crashed. Delivers until quiet.
  void Elect(uint64_t id);
  // Proposes on `leader` and delivers until quiet; returns the index.
  Index ProposeAndCommit(uint64_t leader, const std::string& data);

  // Every message that reached its receiver, in order.
  std::vector<Message> delivered;
  // Every message a node handed to the network, in order.
  std::vector<Message> sent;

 private:
  bool Dropped(const Message& m) const;

  NetworkOptions options_;
  std::map<uint64_t, std::unique_ptr<TestNode>> nodes_;
  std::deque<Message> queue_;
  std::set<uint64_t> isolated_;
  std::set<std::pair<uint64_t, uint64_t>> cut_;
};

// Hand-made messages.
Message VoteRequest(uint64_t from, uint64_t to, uint64_t term, uint64_t last_index,
                    uint64_t last_term, bool pre_vote = false, bool transfer = false);
Message VoteResponse(uint64_t from, uint64_t to, uint64_t term, bool granted, bool pre_vote = false);
Message AppendEntries(uint64_t from, uint64_t to, uint64_t term, uint64_t prev_index,
                      uint64_t prev_term, std::vector<Entry> entries, uint64_t leader_commit);
Message Heartbeat(uint64_t from, uint64_t to, uint64_t term, uint64_t commit, uint64_t round = 0);
Message AppendAccepted(uint64_t from, uint64_t to, uint64_t term, uint64_t match_index,
                       uint64_t round = 0);
Message AppendRejected(uint64_t from, uint64_t to, uint64_t term, uint64_t rejected_index,
                       uint64_t conflict_index, uint64_t conflict_term);
Message HeartbeatResponse(uint64_t from, uint64_t to, uint64_t term, uint64_t round);
Message InstallSnapshot(uint64_t from, uint64_t to, uint64_t term, const SnapshotMeta& meta);
Message TimeoutNow(uint64_t from, uint64_t to, uint64_t term);
Message ReadIndexRequest(uint64_t from, uint64_t to, uint64_t term, uint64_t read_id,
                         bool lease = false);

// Selects messages of one type (and, if given, to one node).
std::vector<Message> OfType(const std::vector<Message>& msgs, MessageType type,
                            std::optional<uint64_t> to = std::nullopt);
// The terms of the durable log, FirstIndex()..LastIndex().
std::vector<uint64_t> StoredTerms(const MemoryLogStorage& storage);
// The durable entries, FirstIndex()..LastIndex().
std::vector<Entry> StoredEntries(const MemoryLogStorage& storage);

}  // namespace quorumkv::raft::testing
