// The Raft core: a deterministic state machine with no threads, clocks,
// sockets, files or randomness of its own (DESIGN.md §1).
//
// Inputs:  Tick(), Step(message), Propose(data), ProposeConfChange(change),
//          ReadIndex(read_id, mode), TransferLeadership(target),
//          ReportSnapshot(peer, ok), Compact(...).
// Output:  a Ready batch (GetReady), which the driver processes and then
//          acknowledges with Advance(ready).
//
// THE PERSISTENCE CONTRACT. For every Ready, the driver must:
//  1. persist ready.hard_state, ready.snapshot and ready.entries (one atomic
//     LogStorage::Persist) before sending any of ready.messages: a vote, an
//     AppendEntries acknowledgement or a term in a message is a promise that
//     must survive a crash (Raft Figure 2, "respond after persisting").
//     A leader's AppendEntries promise nothing about its own log and may go
//     first (thesis §10.2.1) when the Ready does not change the term;
//  2. apply ready.committed_entries in order, and install ready.snapshot in
//     the state machine before applying them. Committed entries that are
//     among ready.entries (a follower's, possible) wait for step 1; those
//     older than ready.entries are durable already and may be applied
//     before it (a leader's always are: its own entries count toward commit
//     only once durable);
//  3. answer a client only after its entry is applied on this node, or, for
//     reads, after this node has applied up to the read state's index;
//  4. call Advance(ready) once all of the above is done, before the next
//     GetReady.
// A crash may happen anywhere; it loses everything not persisted. The core
// never counts its own unpersisted entries toward a quorum: the leader's own
// match index advances in Advance(), when its entries are durable.
//
// Every input returns a non-OK status only for a refused request (not
// leader, bad argument, back-pressure) or for a storage failure; a storage
// failure is sticky (the core halts and reports it from every later call).
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "raft/config.h"
#include "raft/log_storage.h"
#include "raft/message.h"
#include "raft/progress.h"
#include "raft/raft_log.h"
#include "raft/read_index_queue.h"
#include "raft/types.h"

namespace quorumkv::raft {

// Volatile facts a driver wants to know when they change.
struct SoftState {
  NodeId leader = kNoNode;
  Role role = Role::kFollower;
  bool operator==(const SoftState&) const = default;
};

// A read that may be served once the node has applied up to `read_index`.
struct ReadState {
  uint64_t read_id = 0;
  Index read_index;
};

struct Ready {
  std::optional<SoftState> soft_state;  // set when leader or role changed
  std::optional<HardState> hard_state;  // set when it changed: persist
  std::optional<Snapshot> snapshot;     // received from the leader: persist, install
  std::vector<Entry> entries;           // persist (may overwrite a stored suffix)
  std::vector<Entry> committed_entries; // apply, in order
  std::vector<Message> messages;        // send after persisting
  std::vector<ReadState> read_states;   // serve once applied up to read_index
  std::vector<uint64_t> failed_reads;   // reads that will never be released
  // Entries, a snapshot, a new term or a new vote: persist with fsync. A
  // hard state whose only change is the commit index may be written without
  // (etcd's MustSync): a commit index lost in a crash is learned again from
  // the leader, and nothing was promised on it. Without this every commit
  // cost each node a second fsync on the write path.
  bool must_sync = false;

  bool empty() const {
    return !soft_state && !hard_state && !snapshot && entries.empty() &&
           committed_entries.empty() && messages.empty() && read_states.empty() &&
           failed_reads.empty();
  }
};

enum class ReadMode : uint8_t {
  kReadIndex,  // a quorum heartbeat round confirms leadership (thesis §6.4)
  kLease,      // the leader's lease replaces the round (thesis §6.4.1)
};

// A snapshot of the core's state, for status pages and the simulator.
struct NodeStatus {
  NodeId id;
  Role role = Role::kFollower;
  NodeId leader;
  HardState hard_state;
  Index applied_index;
  Index last_index;
  Index first_index;
  ConfState conf_state;
  NodeId transferee;  // a leadership transfer in progress, else kNoNode
  std::map<NodeId, Progress> progress;  // the leader's view of its peers
};

class Raft {
 public:
  // `storage` must outlive the core. `applied_index` is how far the state
  // machine has durably applied (at least the storage's snapshot index), so a
  // restart does not re-apply (or re-install) what the state machine has.
  static absl::StatusOr<std::unique_ptr<Raft>> Create(const Config& config,
                                                      LogStorage* storage,
                                                      Index applied_index = Index(0));
  ~Raft();

  // Advances logical time by one tick: elections, heartbeats, CheckQuorum,
  // lease expiry and transfer time-outs all count ticks.
  absl::Status Tick();

  // Handles a message from a peer. Messages from an older term are answered
  // or dropped per Figure 2; messages from a node in no known configuration
  // are accepted only as a leader's replication traffic (a joining node).
  absl::Status Step(const Message& message);

  // Leader only. Appends a normal entry; returns its index. The entry may
  // still be lost (a new leader may overwrite it); the driver knows it took
  // effect when an entry with this index *and* the returned term is applied.
  // FAILED_PRECONDITION: not leader, lost quorum contact, transfer in
  // progress. RESOURCE_EXHAUSTED: too many uncommitted entries.
  absl::StatusOr<std::pair<Index, Term>> Propose(std::string data);

  // Leader only. One single-server change at a time (thesis §4.1), and only
  // after the leader has committed an entry of its term.
  // UNAVAILABLE: refused for now, the same change may succeed shortly
  // (another change in flight, no entry of the leader's term committed yet,
  // a transfer in progress, quorum contact lost). FAILED_PRECONDITION: not
  // the leader, or the change can never apply here (removing the last
  // voter, promoting a node that is not a learner). ALREADY_EXISTS,
  // NOT_FOUND, INVALID_ARGUMENT: as named.
  absl::StatusOr<std::pair<Index, Term>> ProposeConfChange(const ConfChange& change);

  // Asks for a read index. On a follower the request is forwarded to the
  // leader. The answer is a ReadState (or a failed read) in a later Ready.
  absl::Status ReadIndex(uint64_t read_id, ReadMode mode);

  // Leader only: hands leadership to `target` (thesis §3.10).
  absl::Status TransferLeadership(NodeId target);

  // The transport tells the leader whether a snapshot reached `peer`.
  void ReportSnapshot(NodeId peer, bool delivered);
  // The transport tells the leader that a message to `peer` was lost; the
  // leader falls back to probing that peer.
  void ReportUnreachable(NodeId peer);

  // The state machine took a snapshot at `index` (<= applied): compact the
  // log up to `index`, keeping it as the snapshot to send to slow followers.
  absl::Status Compact(Index index);

  bool HasReady() const;
  Ready GetReady();
  void Advance(const Ready& ready);

  // Observers.
  NodeId id() const { return id_; }
  Role role() const { return role_; }
  Term term() const { return term_; }
  NodeId leader() const { return leader_; }
  NodeId voted_for() const { return voted_for_; }
  Index commit_index() const { return log_.committed(); }
  Index applied_index() const { return log_.applied(); }
  Index last_index() const { return log_.LastIndex(); }
  // The configuration in effect: the latest one in the log, committed or not.
  const ConfState& conf_state() const { return conf_; }
  // Whether the latest configuration entry in the log is not yet committed.
  bool HasPendingConfChange() const;
  // Whether a lease read would be served now (leader only).
  bool LeaseValid() const { return LeaseTicksLeft() > 0; }
  // Ticks until the lease ends: the lease holds while fewer than this many
  // more ticks happen (0: no lease now). For drivers that serve lease reads
  // off the core's thread, by a clock that follows the ticks.
  int64_t LeaseTicksLeft() const;
  NodeStatus GetStatus() const;
  // The whole log (durable and not yet durable), read-only: for tests and
  // the simulator's invariant checks.
  const RaftLog& raft_log() const { return log_; }
  // The first storage failure, if any (sticky).
  const absl::Status& storage_error() const { return log_.error(); }

  // Checks the internal invariants (raises on violation, also in release
  // builds); the simulator and tests call it after every input.
  void CheckInvariants() const;

 private:
  Raft(const Config& config, LogStorage* storage);
  absl::Status Init(Index applied_index);

  // Role transitions (etcd style: each role has its own step and tick).
  void BecomeFollower(Term term, NodeId leader);
  void BecomePreCandidate();
  void BecomeCandidate();
  void BecomeLeader();
  void Campaign(bool pre_vote, bool transfer);

  void TickElection();
  void TickHeartbeat();

  void StepLeader(const Message& m);
  void StepCandidate(const Message& m);
  void StepFollower(const Message& m);

  void HandleRequestVote(const Message& m);
  absl::Status CheckPeerClaims(const Message& m) const;
  void ForgetAcknowledgementsFrom(Index first_gone);
  void HandleAppendEntries(const Message& m);
  void HandleSnapshot(const Message& m);
  void HandleAppendResponse(const Message& m);
  void HandleReadIndexRequest(const Message& m);

  // Leader replication.
  void BroadcastHeartbeat();
  bool SendAppend(NodeId to, bool send_if_empty);
  void SendHeartbeat(NodeId to);
  bool MaybeCommit();
  void AppendToLeaderLog(std::vector<Entry> entries);
  void OnReadRoundAcked();
  bool ReadRoundDue() const;
  void SendReadRound();
  void SendRound(std::optional<std::vector<NodeId>> voters);
  void MaybeWidenReadRound();
  void AddRead(const PendingRead& read, ReadMode mode);
  void ReleaseRead(const PendingRead& read);
  void FlushLeaderMessages();
  void FlushAppendTo(NodeId to, bool send_if_empty);
  void SendSnapshot(NodeId to, Progress& pr);
  void SendTimeoutNow(NodeId to);
  void FailRead(uint64_t read_id, NodeId from);

  // Membership.
  void ApplyConfChangesIn(const std::vector<Entry>& entries);
  void RebuildConfiguration();
  void SetConf(const ConfState& conf);
  bool CommittedEntryInCurrentTerm() const;
  void MaybePromoteLearners();
  void MaybeStepDownAfterRemoval();

  // Leases and CheckQuorum.
  uint64_t QuorumAckedRound() const;
  int64_t QuorumLastContactTick() const;
  bool QuorumRecentlyActive(int within_ticks) const;
  bool HeardFromLeaderRecently() const;

  void Send(Message m);
  Progress* FindProgress(NodeId id);
  void ResetRandomizedElectionTimeout();
  void AbortTransfer();
  void FailPendingReads();
  void FailForwardedReads();
  bool Promotable() const;

  const Config config_;
  const NodeId id_;
  LogStorage* const storage_;

  // Persistent state (Raft Figure 2): current_term, voted_for, the log.
  Term term_;
  NodeId voted_for_ = kNoNode;
  RaftLog log_;

  Role role_ = Role::kFollower;
  NodeId leader_ = kNoNode;

  // The configuration in effect and where it came from. `conf_log_` lists
  // every configuration entry above the snapshot in log order, with the
  // configuration it produced; `base_conf_` is the snapshot's. A node uses
  // the latest entry, committed or not (thesis §4.1), and falls back to the
  // previous one when that entry is truncated.
  struct ConfEntry {
    Index index;
    Term term;
    ConfState conf;  // the configuration this entry produced
  };
  ConfState base_conf_;
  std::vector<ConfEntry> conf_log_;
  ConfState conf_;

  // Logical clock and timers, in ticks.
  int64_t now_ticks_ = 0;
  int election_elapsed_ = 0;
  int heartbeat_elapsed_ = 0;
  int randomized_election_timeout_ = 0;
  // Ticks since this node last heard from a current leader. Starts at 0 on
  // (re)start: a restarted node must not grant votes before a leader that
  // may hold a lease on its earlier acknowledgement has lost it.
  int64_t leader_contact_tick_ = 0;

  // Candidate state.
  std::map<NodeId, bool> votes_;

  // Leader state.
  std::map<NodeId, Progress> progress_;
  // Heartbeat rounds: each round (periodic or for reads) gets the next
  // number, and the tick it was sent at (for the lease). Rounds above the
  // quorum-acked one.
  uint64_t read_round_ = 0;
  std::deque<std::pair<uint64_t, int64_t>> round_sent_ticks_;
  uint64_t quorum_acked_round_ = 0;
  int64_t lease_start_tick_ = -1;  // send tick of quorum_acked_round_
  ReadIndexQueue read_queue_;
  bool read_round_requested_ = false;  // reads wait for a round not yet sent
  // A round asked for by reads goes only to as many voters as a quorum
  // needs: those that answered the last acknowledged round first. A round
  // is a message and an answer per follower, and on a busy leader rounds
  // are most of a linearizable read's cost. If the chosen voters do not
  // answer within a tick, the round goes to every voter.
  std::vector<NodeId> read_round_voters_;  // answered the last acked round
  bool read_round_partial_ = false;        // read_round_ went to a subset
  int64_t read_round_sent_tick_ = 0;
  NodeId lead_transferee_ = kNoNode;
  int transfer_elapsed_ = 0;

  // Reads waiting for this leader's first commit in its term (etcd #7331).
  std::vector<PendingRead> reads_awaiting_term_commit_;
  // Set once TimeoutNow went out in this term: the target may win without
  // waiting for our lease to expire, so no more lease reads (thesis §6.4.1).
  bool timeout_now_sent_ = false;
  // Leader: proposals or a commit advance wait for the next GetReady, so
  // that everything of one event-loop turn travels in one AppendEntries.
  bool append_pending_ = false;
  bool commit_broadcast_pending_ = false;

  // Follower reads forwarded to the leader: read id -> tick sent. They fail
  // when the leader changes or after an election timeout.
  std::map<uint64_t, int64_t> forwarded_reads_;

  // Ready bookkeeping.
  std::vector<Message> msgs_;
  std::vector<ReadState> read_states_;
  std::vector<uint64_t> failed_reads_;
  SoftState prev_soft_;
  HardState prev_hard_;
};

}  // namespace quorumkv::raft
