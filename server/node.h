// The node driver: one thread owns the Raft core (DESIGN.md §5) and turns
// its Ready batches into disk writes (LevelDB log), network sends (the peer
// transport), state-machine applies (the KV LevelDB) and answers to the
// waiting client calls, following the persistence contract of raft/raft.h.
//
// Threads:
//   - the node thread: the only one that touches the core, the log storage
//     and the apply path. It drains an event queue (peer messages, client
//     requests, transport feedback), first catching its ticks up with the
//     steady clock so leases and CheckQuorum see the time that really
//     passed (a paused or stalled process must not serve a lease read on a
//     lease that expired while it was stopped);
//   - gRPC and transport threads only enqueue events and wait for their
//     completion callbacks, which run on the node thread (or, for forwarded
//     writes and serializable reads, on the calling thread).
// Every queue has a bound: events beyond max_queued_events are refused
// (peer messages are dropped, Raft retransmits; requests get UNAVAILABLE),
// client requests beyond max_pending_requests get RESOURCE_EXHAUSTED.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "kv/command.h"
#include "kv/compaction_policy.h"
#include "kv/kv_state_machine.h"
#include "raft/raft.h"
#include "raft/storage/leveldb_log_storage.h"
#include "server/member_list.h"
#include "server/metrics.h"
#include "server/not_proposed.h"
#include "server/peer_transport.h"

namespace quorumkv::server {

enum class ReadConsistency { kLinearizable, kLease, kSerializable };

struct NodeOptions {
  raft::NodeId id;
  uint64_t cluster_id = 0;
  std::string data_dir;
  // This node's addresses, as other nodes and clients should reach it.
  std::string peer_address;
  std::string client_address;
  // A new cluster's founding members (ignored once the data dir holds
  // state). Empty for a node that joins an existing cluster: it then waits
  // for the leader to contact it (after `kvctl member add`).
  std::vector<Member> initial_members;
  // Peers to know about at start when joining (their addresses), so this
  // node can answer the leader before it has the log.
  std::vector<Member> known_peers;

  absl::Duration tick_interval = absl::Milliseconds(10);
  // etcd-like defaults (heartbeat 50 ms, election 500-1000 ms): a shared
  // or busy machine does not trigger spurious elections.
  int election_timeout_ticks = 50;
  int heartbeat_interval_ticks = 5;
  int lease_drift_margin_ticks = 10;
  uint64_t max_entries_per_message = 512;
  uint64_t max_bytes_per_message = 2 << 20;
  int max_inflight_messages = 64;
  bool auto_promote_learners = true;
  // How long a leader holds a commit notice (an AppendEntries that only
  // carries a new commit index) for a follower, in case an AppendEntries
  // with entries, which carries the commit index too, goes to it first.
  // Only followers' serializable reads see later data; 0 sends at once.
  absl::Duration commit_notice_delay = absl::Milliseconds(1);

  size_t max_key_bytes = 4096;
  size_t max_value_bytes = 1 << 20;
  size_t max_pending_requests = 20000;
  size_t max_queued_events = 100000;

  kv::CompactionPolicyOptions compaction;
  uint64_t session_ttl_ms = 24 * 3600 * 1000;
  // The state machine's key size cache (kv::KvOptions); 0 turns it off.
  size_t key_size_cache_bytes = 32 << 20;
};

// What the node answers besides the result.
struct ResponseInfo {
  uint64_t node_id = 0;
  uint64_t term = 0;
  uint64_t applied_index = 0;
};

struct WriteOutcome {
  kv::CommandResult result;
  ResponseInfo info;
};

struct ReadOutcome {
  std::optional<std::string> value;
  uint64_t read_index = 0;
  ResponseInfo info;
};

struct NodeStatusInfo {
  uint64_t node_id = 0;
  std::string role;
  uint64_t term = 0;
  uint64_t leader_id = 0;
  uint64_t commit_index = 0;
  uint64_t applied_index = 0;
  uint64_t first_index = 0;
  uint64_t last_index = 0;
  uint64_t cluster_id = 0;
  std::vector<Member> members;
  ResponseInfo info;
};

class Node : public PeerHandler {
 public:
  // Opens (or creates) the data dir: the Raft log, the state machine, and
  // the core. Refuses a data dir of another cluster or node, and reports
  // corruption as DATA_LOSS naming the file and index.
  static absl::StatusOr<std::unique_ptr<Node>> Open(const NodeOptions& options);
  ~Node() override;

  // Starts the node thread, sending through `transport` (which must outlive
  // the node's Stop()).
  void Start(PeerTransport* transport);
  // Fails everything pending with UNAVAILABLE and joins the node thread.
  void Stop();

  // Client operations, callable from any thread. `done` is called exactly
  // once. Writes are proposed on the leader, or forwarded to it.
  void Write(kv::Command command, absl::Time deadline,
             std::function<void(absl::StatusOr<WriteOutcome>)> done);
  void Read(std::string key, ReadConsistency consistency, absl::Time deadline,
            std::function<void(absl::StatusOr<ReadOutcome>)> done);
  // A linearizable barrier: done once this node applied the read index.
  void ReadBarrier(absl::Time deadline, std::function<void(absl::StatusOr<ReadOutcome>)> done);
  void Status(std::function<void(NodeStatusInfo)> done);
  void ChangeMembership(raft::ConfChange change, absl::Time deadline,
                        std::function<void(absl::StatusOr<std::vector<Member>>)> done);
  // target kNoNode: the most up-to-date other voter.
  void TransferLeadership(raft::NodeId target, absl::Time deadline,
                          std::function<void(absl::StatusOr<uint64_t>)> done);

  // Cheap, lock-free observers (for health checks, error hints, metrics).
  uint64_t leader_id() const { return leader_id_.load(); }
  uint64_t term() const { return term_.load(); }
  bool is_leader() const { return leader_id_.load() == options_.id.value(); }
  // Healthy: a leader is known and this node applied everything it knows
  // to be committed.
  bool Healthy() const;
  // The client address of the leader, if known.
  std::string LeaderClientAddress() const;
  const absl::Status& fatal_error() const { return fatal_; }
  NodeMetrics& metrics() { return *metrics_; }
  const NodeOptions& options() const { return options_; }

  // PeerHandler (called on transport threads).
  void OnMessages(std::vector<raft::Message> messages) override;
  absl::StatusOr<std::unique_ptr<SnapshotReceiver>> BeginSnapshot(raft::NodeId from, raft::Term term,
                                                                  const raft::SnapshotMeta& meta) override;
  void OnForwardPropose(raft::NodeId from, std::string command,
                        std::function<void(ForwardResult)> done) override;
  absl::StatusOr<std::unique_ptr<SnapshotStream>> OpenSnapshot(const raft::SnapshotMeta& requested) override;
  void OnUnreachable(raft::NodeId peer) override;
  void OnSnapshotStatus(raft::NodeId peer, bool delivered) override;

 private:
  struct PendingOp;
  class StagedSnapshotReceiver;
  friend class StagedSnapshotReceiver;

  explicit Node(const NodeOptions& options);
  absl::Status OpenStores();
  absl::Status CheckStoresAgree() const;

  // The event queue. Post returns false (and runs nothing) when full or
  // stopped.
  bool Post(std::function<void()> event);
  void Loop();
  void TickUpToNow();
  void ProcessReady();
  // Takes the entries' data (the state machine gets it without a copy);
  // their indexes and terms stay.
  void ApplyCommitted(std::vector<raft::Entry>& entries);
  // Holds the leader's commit notices; an AppendEntries with entries to a
  // follower makes its held notice moot. SendDueNotices sends them once due.
  void HoldCommitNotices(std::vector<raft::Message> notices,
                         const std::vector<std::pair<uint64_t, raft::Index>>& commits_sent);
  void SendDueNotices();
  void InstallSnapshot(const raft::SnapshotMeta& meta);
  void LearnAddresses(const std::vector<raft::Entry>& entries);
  void ServeReads();
  // Publishes until when lease reads may be served on the callers' threads
  // (0: not now). Called before any message leaves and after each loop turn.
  void PublishLease();
  bool LeaseHeld() const;
  void ExpireDeadlines();
  void MaybeCompact();
  void Fatal(absl::Status status);
  void PublishObservables();
  void SendMessages(std::vector<raft::Message> messages);

  // Node-thread halves of the client operations.
  void ProposeWrite(kv::Command command, absl::Time deadline,
                    std::function<void(absl::StatusOr<WriteOutcome>)> done);
  void StartRead(std::string key, bool barrier, ReadConsistency consistency, absl::Time deadline,
                 std::function<void(absl::StatusOr<ReadOutcome>)> done);
  uint64_t AddOp(PendingOp op);
  void CompleteOp(uint64_t op_id, absl::Status status);
  void FailAll(const absl::Status& status);
  ResponseInfo Info() const;
  absl::Status NotLeaderError(const std::string& what) const;
  absl::Status FailedNodeError() const;

  const NodeOptions options_;
  std::unique_ptr<NodeMetrics> metrics_;
  std::unique_ptr<raft::LevelDbLogStorage> storage_;
  std::unique_ptr<kv::KvStateMachine> kv_;
  std::unique_ptr<raft::Raft> core_;
  std::optional<kv::CompactionPolicy> compaction_;
  PeerTransport* transport_ = nullptr;

  // Members with addresses: the committed list (from the state machine)
  // plus what appended configuration entries announced.
  mutable absl::Mutex members_mu_;
  MemberList members_ ABSL_GUARDED_BY(members_mu_);
  std::map<uint64_t, Member> announced_ ABSL_GUARDED_BY(members_mu_);

  // Event queue.
  absl::Mutex mu_;
  absl::CondVar cv_;
  std::deque<std::function<void()>> events_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  // Node thread only: set when the loop drains the queue for the last time.
  bool shutting_down_ = false;
  std::thread thread_;
  std::atomic<bool> started_{false};
  std::atomic<size_t> pending_requests_{0};

  // Node-thread state.
  // Ticks follow the monotonic clock: a wall clock stepped back would stop
  // the ticks and stretch a leader's lease (found by the clock-step fault test).
  std::chrono::steady_clock::time_point next_tick_;
  // Commit notices held back (commit_notice_delay), the newest per
  // follower, and when they go out.
  std::map<uint64_t, raft::Message> held_notices_;
  std::chrono::steady_clock::time_point notices_due_ = std::chrono::steady_clock::time_point::max();
  uint64_t next_op_id_ = 1;
  std::map<uint64_t, std::unique_ptr<PendingOp>> ops_;
  std::map<uint64_t, uint64_t> ops_by_index_;        // proposal index -> op
  std::multimap<uint64_t, uint64_t> reads_waiting_;  // read index -> op
  std::multimap<absl::Time, uint64_t> deadlines_;
  std::optional<uint64_t> transfer_op_;
  absl::Mutex staged_mu_;
  std::map<uint64_t, std::unique_ptr<kv::SnapshotWriter>> finished_snapshots_ ABSL_GUARDED_BY(staged_mu_);
  absl::Status fatal_;
  uint64_t log_bytes_since_compaction_ = 0;
  uint64_t persisted_term_ = 0;  // the term in the durable hard state
  absl::Time next_lag_update_;

  // Published for other threads.
  std::atomic<uint64_t> leader_id_{0};
  std::atomic<uint64_t> term_{0};
  std::atomic<uint64_t> commit_index_{0};
  std::atomic<uint64_t> applied_index_{0};
  std::atomic<bool> failed_{false};
  // Until when (steady clock, ns) this leader may answer lease reads on the
  // caller's thread, from the store as it is; 0: not now. By the clock the
  // ticks follow, so a stalled node thread does not stretch the lease.
  std::atomic<int64_t> lease_until_ns_{0};
};

}  // namespace quorumkv::server
