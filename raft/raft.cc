#include "raft/raft.h"

#include <algorithm>
#include <string>
#include <utility>

#include "raft/check.h"
#include "raft/quorum.h"

namespace quorumkv::raft {

namespace {

template <typename T>
std::string Str(T v) { return std::to_string(v.value()); }

// Committed entries handed out per Ready, so one Ready stays bounded.
constexpr uint64_t kMaxCommittedBytesPerReady = 64ull << 20;

}  // namespace

// ---------------------------------------------------------------------------
// Construction and restart.

absl::StatusOr<std::unique_ptr<Raft>> Raft::Create(const Config& config, LogStorage* storage,
                                                   Index applied_index) {
  if (absl::Status s = config.Validate(); !s.ok()) return s;
  if (storage == nullptr) return absl::InvalidArgumentError("log storage is required");
  std::unique_ptr<Raft> raft(new Raft(config, storage));
  if (absl::Status s = raft->Init(applied_index); !s.ok()) return s;
  return raft;
}

Raft::Raft(const Config& config, LogStorage* storage)
    : config_(config), id_(config.id), storage_(storage), log_(storage) {}

Raft::~Raft() = default;

absl::Status Raft::Init(Index applied_index) {
  const HardState hs = storage_->hard_state();
  const SnapshotMeta snap = storage_->snapshot_meta();
  term_ = hs.current_term;
  voted_for_ = hs.voted_for;
  base_conf_ = snap.conf_state;

  const bool fresh = hs == HardState{} && snap.index == Index(0) && storage_->LastIndex() == Index(0);
  if (fresh && !config_.initial_voters.empty()) {
    // Bootstrap: the initial configuration goes into the log as committed
    // entries 1..n of term 1, identical on every founding node (as etcd
    // does), so a node that joins later learns it from the log like any
    // other change.
    std::vector<NodeId> voters = config_.initial_voters;
    std::sort(voters.begin(), voters.end());
    std::vector<Entry> entries;
    for (size_t i = 0; i < voters.size(); ++i) {
      auto context = config_.initial_voter_contexts.find(voters[i]);
      ConfChange cc{ConfChangeType::kAddVoter, voters[i],
                    context == config_.initial_voter_contexts.end() ? "" : context->second};
      entries.push_back(Entry{Index(i + 1), Term(1), EntryType::kConfChange, cc.Encode()});
    }
    log_.Append(entries);
    term_ = Term(1);
    log_.CommitTo(Index(voters.size()));
  } else {
    log_.SetInitialPositions(hs.commit_index, std::max(applied_index, snap.index));
  }
  RebuildConfiguration();
  if (!log_.error().ok()) return log_.error();

  // Fresh nodes report their bootstrap state in the first Ready; restarted
  // ones report nothing until something changes.
  prev_hard_ = fresh ? HardState{} : HardState{term_, voted_for_, log_.committed()};
  prev_soft_ = SoftState{kNoNode, Role::kFollower};
  ResetRandomizedElectionTimeout();
  CheckInvariants();
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------
// Role transitions.

void Raft::ResetRandomizedElectionTimeout() {
  randomized_election_timeout_ =
      config_.election_timeout_ticks +
      static_cast<int>(config_.random(static_cast<uint64_t>(config_.election_timeout_ticks)));
}

void Raft::BecomeFollower(Term term, NodeId leader) {
  if (term != term_) {
    term_ = term;
    voted_for_ = kNoNode;
  }
  // After the term update: the refusals must carry the term we are in, or
  // GetReady would drop them as messages of a term we have left.
  if (role_ == Role::kLeader) FailPendingReads();
  if (leader != leader_) FailForwardedReads();
  role_ = Role::kFollower;
  leader_ = leader;
  election_elapsed_ = 0;
  heartbeat_elapsed_ = 0;
  ResetRandomizedElectionTimeout();
  votes_.clear();
  progress_.clear();
  lead_transferee_ = kNoNode;
  append_pending_ = false;
  commit_broadcast_pending_ = false;
  read_round_requested_ = false;
}

// Reads forwarded to a leader we no longer follow will not be answered.
void Raft::FailForwardedReads() {
  for (const auto& [read_id, tick] : forwarded_reads_) failed_reads_.push_back(read_id);
  forwarded_reads_.clear();
}

void Raft::BecomePreCandidate() {
  QKV_CHECK(role_ != Role::kLeader, "leader cannot become pre-candidate");
  // A pre-candidate changes neither its term nor its vote (etcd #8334), and
  // forgets its leader, or pre-votes can deadlock (etcd #9586).
  FailForwardedReads();
  role_ = Role::kPreCandidate;
  leader_ = kNoNode;
  votes_.clear();
}

void Raft::BecomeCandidate() {
  QKV_CHECK(role_ != Role::kLeader, "leader cannot become candidate");
  FailForwardedReads();
  role_ = Role::kCandidate;
  term_ = term_ + 1;
  voted_for_ = id_;
  leader_ = kNoNode;
  votes_.clear();
  election_elapsed_ = 0;
  ResetRandomizedElectionTimeout();
}

void Raft::BecomeLeader() {
  QKV_CHECK(role_ == Role::kCandidate, "only a candidate becomes leader");
  role_ = Role::kLeader;
  leader_ = id_;
  election_elapsed_ = 0;
  heartbeat_elapsed_ = 0;
  lead_transferee_ = kNoNode;
  timeout_now_sent_ = false;
  read_round_ = 0;
  round_sent_ticks_.clear();
  quorum_acked_round_ = 0;
  lease_start_tick_ = -1;
  read_round_voters_.clear();
  read_round_partial_ = false;
  progress_.clear();
  for (NodeId peer : conf_.voters) {
    if (peer == id_) continue;
    progress_[peer] = Progress(log_.LastIndex() + 1, config_.max_inflight_messages);
    progress_[peer].last_contact_tick = now_ticks_;
  }
  for (NodeId peer : conf_.learners) {
    progress_[peer] = Progress(log_.LastIndex() + 1, config_.max_inflight_messages);
    progress_[peer].is_learner = true;
    progress_[peer].last_contact_tick = now_ticks_;
  }
  // Raft §8: a no-op of the new term, so that the leader can learn what is
  // committed (entries of older terms commit only indirectly, Figure 8).
  AppendToLeaderLog({Entry{log_.LastIndex() + 1, term_, EntryType::kNoOp, ""}});
}

void Raft::Campaign(bool pre_vote, bool transfer) {
  Term vote_term;
  if (pre_vote) {
    BecomePreCandidate();
    vote_term = term_ + 1;  // the term it would campaign in; nothing changes yet
  } else {
    BecomeCandidate();
    vote_term = term_;
  }
  votes_[id_] = true;
  if (TallyVotes(conf_.voters.size(), 1, 0) == VoteResult::kWon) {
    if (pre_vote) {
      Campaign(false, transfer);
    } else {
      BecomeLeader();
    }
    return;
  }
  for (NodeId peer : conf_.voters) {
    if (peer == id_) continue;
    Message m;
    m.type = MessageType::kRequestVote;
    m.to = peer;
    m.term = vote_term;
    m.pre_vote = pre_vote;
    m.leadership_transfer = transfer;
    m.last_log_index = log_.LastIndex();
    m.last_log_term = log_.LastTerm();
    Send(std::move(m));
  }
}

bool Raft::Promotable() const {
  return conf_.IsVoter(id_) && !log_.unstable_snapshot().has_value();
}

// ---------------------------------------------------------------------------
// Ticks.

absl::Status Raft::Tick() {
  if (!log_.error().ok()) return log_.error();
  ++now_ticks_;
  if (role_ == Role::kLeader) {
    TickHeartbeat();
  } else {
    TickElection();
  }
  CheckInvariants();
  return log_.error();
}

void Raft::TickElection() {
  // Forwarded reads whose answer was lost fail after an election timeout.
  for (auto it = forwarded_reads_.begin(); it != forwarded_reads_.end();) {
    if (now_ticks_ - it->second >= config_.election_timeout_ticks) {
      failed_reads_.push_back(it->first);
      it = forwarded_reads_.erase(it);
    } else {
      ++it;
    }
  }
  ++election_elapsed_;
  if (Promotable() && election_elapsed_ >= randomized_election_timeout_) {
    election_elapsed_ = 0;
    Campaign(/*pre_vote=*/true, /*transfer=*/false);
  } else if (role_ != Role::kFollower && election_elapsed_ >= randomized_election_timeout_) {
    // A (pre-)candidate that is no longer a voter gives up.
    BecomeFollower(term_, kNoNode);
  }
}

void Raft::TickHeartbeat() {
  ++heartbeat_elapsed_;
  // CheckQuorum: a leader that has not heard from a quorum within an
  // election timeout steps down, so a partitioned leader does not linger
  // (and PreVote plus CheckQuorum keep partial partitions live). This holds
  // for a leader that removed itself too (the quorum is then of the other
  // voters): cut off from them, it could never commit its removal.
  if (!QuorumRecentlyActive(config_.election_timeout_ticks)) {
    BecomeFollower(term_, kNoNode);
    return;
  }
  if (lead_transferee_ != kNoNode && ++transfer_elapsed_ >= config_.election_timeout_ticks) {
    AbortTransfer();  // thesis §3.10: give up after an election timeout
  }
  if (heartbeat_elapsed_ >= config_.heartbeat_interval_ticks) {
    heartbeat_elapsed_ = 0;
    BroadcastHeartbeat();
  } else {
    MaybeWidenReadRound();
  }
}

// ---------------------------------------------------------------------------
// Step: term checks first (Figure 2, "all servers"), then by role.

absl::Status Raft::Step(const Message& m) {
  if (!log_.error().ok()) return log_.error();
  if (m.to != id_) return absl::InvalidArgumentError("message for node " + Str(m.to));
  if (m.from == id_ || m.from == kNoNode) return absl::InvalidArgumentError("message from an invalid sender");
  if (absl::Status s = ValidatePeerMessage(m); !s.ok()) return s;
  if (absl::Status s = CheckPeerClaims(m); !s.ok()) return s;

  const bool is_vote_request = m.type == MessageType::kRequestVote;
  if (is_vote_request && !m.leadership_transfer && HeardFromLeaderRecently()) {
    // Leader stickiness (thesis §4.2.3): while a live leader is heard, a
    // (pre-)vote request is refused whatever its term, so a rejoining or
    // removed node cannot depose a healthy leader, and no new leader can be
    // elected while the current one may still hold a lease.
    Message resp;
    resp.type = MessageType::kRequestVoteResponse;
    resp.to = m.from;
    resp.term = term_;
    resp.pre_vote = m.pre_vote;
    resp.vote_granted = false;
    Send(std::move(resp));
    CheckInvariants();
    return absl::OkStatus();
  }

  if (m.term > term_) {
    if (is_vote_request && m.pre_vote) {
      // A pre-vote never changes our term or vote.
    } else if (m.type == MessageType::kRequestVoteResponse && m.pre_vote && m.vote_granted) {
      // A granted pre-vote carries the term we would campaign in.
    } else if (m.type == MessageType::kAppendEntries || m.type == MessageType::kInstallSnapshot) {
      BecomeFollower(m.term, m.from);
    } else {
      BecomeFollower(m.term, kNoNode);
    }
  } else if (m.term < term_) {
    if (m.type == MessageType::kAppendEntries) {
      // A stale leader learns of the new term from the rejection and steps
      // down (needed with PreVote/CheckQuorum: it may never see a vote).
      Message resp;
      resp.type = MessageType::kAppendEntriesResponse;
      resp.to = m.from;
      resp.term = term_;
      resp.success = false;
      resp.heartbeat = m.heartbeat;
      resp.rejected_index = m.prev_log_index;
      Send(std::move(resp));
    } else if (is_vote_request) {
      Message resp;
      resp.type = MessageType::kRequestVoteResponse;
      resp.to = m.from;
      resp.term = term_;
      resp.pre_vote = m.pre_vote;
      resp.vote_granted = false;
      Send(std::move(resp));
    } else if (m.type == MessageType::kReadIndex) {
      FailRead(m.read_id, m.from);
    }
    CheckInvariants();
    return log_.error();
  }

  if (is_vote_request) {
    HandleRequestVote(m);
  } else {
    switch (role_) {
      case Role::kLeader: StepLeader(m); break;
      case Role::kPreCandidate:
      case Role::kCandidate: StepCandidate(m); break;
      case Role::kFollower: StepFollower(m); break;
    }
  }
  CheckInvariants();
  return log_.error();
}

void Raft::HandleRequestVote(const Message& m) {
  // Figure 2, RequestVote receiver: grant if we have not voted for another
  // in this term and the candidate's log is at least as up to date (§5.4.1).
  // A pre-vote for a later term may be granted whatever our vote.
  const bool can_vote = voted_for_ == m.from || (voted_for_ == kNoNode && leader_ == kNoNode) ||
                        (m.pre_vote && m.term > term_);
  // Membership is not checked: our configuration may be stale (a node that
  // missed the change adding the candidate must still vote for it, or a
  // cluster whose new configuration reached only some nodes deadlocks:
  // simulator seed 9704). Removed nodes are kept out by leader stickiness
  // and PreVote (thesis §4.2.3), and their logs lack the removal.
  const bool granted = can_vote && log_.IsUpToDate(m.last_log_index, m.last_log_term);
  Message resp;
  resp.type = MessageType::kRequestVoteResponse;
  resp.to = m.from;
  resp.pre_vote = m.pre_vote;
  resp.vote_granted = granted;
  // Granted pre-votes answer in the candidate's future term (etcd), so the
  // pre-candidate can match them to its campaign.
  resp.term = (granted && m.pre_vote) ? m.term : term_;
  if (granted && !m.pre_vote) {
    election_elapsed_ = 0;
    voted_for_ = m.from;  // persisted (hard state) before resp is sent
  }
  Send(std::move(resp));
}

void Raft::StepFollower(const Message& m) {
  switch (m.type) {
    case MessageType::kAppendEntries:
      election_elapsed_ = 0;
      leader_ = m.from;
      leader_contact_tick_ = now_ticks_;
      HandleAppendEntries(m);
      break;
    case MessageType::kInstallSnapshot:
      election_elapsed_ = 0;
      leader_ = m.from;
      leader_contact_tick_ = now_ticks_;
      HandleSnapshot(m);
      break;
    case MessageType::kTimeoutNow:
      // Thesis §3.10: campaign at once, skipping PreVote, and tell voters
      // to ignore their leader stickiness.
      if (Promotable()) Campaign(/*pre_vote=*/false, /*transfer=*/true);
      break;
    case MessageType::kReadIndex:
      FailRead(m.read_id, m.from);  // not the leader (any more)
      break;
    case MessageType::kReadIndexResponse: {
      auto it = forwarded_reads_.find(m.read_id);
      if (it == forwarded_reads_.end()) break;
      forwarded_reads_.erase(it);
      if (m.success) {
        read_states_.push_back(ReadState{m.read_id, m.read_index});
      } else {
        failed_reads_.push_back(m.read_id);
      }
      break;
    }
    default:
      break;  // stale responses
  }
}

void Raft::StepCandidate(const Message& m) {
  switch (m.type) {
    case MessageType::kAppendEntries:
    case MessageType::kInstallSnapshot:
      // A leader of our term exists (Figure 2, Candidates): follow it.
      BecomeFollower(m.term, m.from);
      StepFollower(m);
      break;
    case MessageType::kRequestVoteResponse: {
      const bool mine = (role_ == Role::kPreCandidate) == m.pre_vote;
      if (!mine) break;
      if (!conf_.IsVoter(m.from)) break;  // only voters' answers count
      votes_.emplace(m.from, m.vote_granted);
      size_t granted = 0, rejected = 0;
      for (const auto& [id, yes] : votes_) (yes ? granted : rejected)++;
      switch (TallyVotes(conf_.voters.size(), granted, rejected)) {
        case VoteResult::kWon:
          if (role_ == Role::kPreCandidate) {
            Campaign(/*pre_vote=*/false, /*transfer=*/false);
          } else {
            BecomeLeader();
          }
          break;
        case VoteResult::kLost:
          BecomeFollower(term_, kNoNode);
          break;
        case VoteResult::kPending:
          break;
      }
      break;
    }
    case MessageType::kReadIndex:
      FailRead(m.read_id, m.from);
      break;
    default:
      break;
  }
}

void Raft::StepLeader(const Message& m) {
  Progress* pr = FindProgress(m.from);
  switch (m.type) {
    case MessageType::kAppendEntriesResponse:
      if (pr != nullptr) HandleAppendResponse(m);
      break;
    case MessageType::kInstallSnapshotResponse:
      if (pr == nullptr) break;
      pr->last_contact_tick = now_ticks_;
      if (pr->state != ProgressState::kSnapshot) break;
      if (m.success) {
        pr->MaybeUpdate(m.match_index);
        pr->BecomeProbe();
        FlushAppendTo(m.from, false);
      } else {
        pr->pending_snapshot = Index(0);
        pr->BecomeProbe();
      }
      break;
    case MessageType::kReadIndex:
      if (pr == nullptr) {
        FailRead(m.read_id, m.from);
        break;
      }
      HandleReadIndexRequest(m);
      break;
    default:
      break;
  }
}

// A correct peer never claims more of this node's log than exists: a
// leader's heartbeat commits at most what this node acknowledged to it, and
// a follower acknowledges at most what this leader sent. Such a message
// comes from a faulty peer (or a disk that lost acknowledged data); acting
// on it would commit unknown entries or break the leader's progress
// invariants, so it is refused before it changes anything.
absl::Status Raft::CheckPeerClaims(const Message& m) const {
  if (m.type == MessageType::kAppendEntries && m.heartbeat && m.term >= term_ &&
      m.leader_commit > log_.LastIndex()) {
    return absl::InvalidArgumentError("heartbeat from node " + Str(m.from) + " commits index " +
                                      Str(m.leader_commit) + ", beyond this node's last index " +
                                      Str(log_.LastIndex()));
  }
  if (AcknowledgesEntries(m) && role_ == Role::kLeader && m.term == term_ && m.match_index > log_.LastIndex()) {
    return absl::InvalidArgumentError("node " + Str(m.from) + " acknowledges index " + Str(m.match_index) +
                                      ", beyond the leader's last index " + Str(log_.LastIndex()));
  }
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------
// Follower side of replication.

void Raft::HandleAppendEntries(const Message& m) {
  Message resp;
  resp.type = MessageType::kAppendEntriesResponse;
  resp.to = m.from;
  resp.term = term_;
  resp.heartbeat = m.heartbeat;
  resp.read_round = m.read_round;

  if (m.heartbeat) {
    // The leader sends min(our match index, its commit): always in our log.
    log_.CommitTo(m.leader_commit);
    resp.success = true;
    resp.match_index = Index(0);
    Send(std::move(resp));
    return;
  }

  if (m.prev_log_index < log_.committed()) {
    // Everything up to our commit index matches the leader already (and may
    // be compacted here); tell the leader where we are.
    resp.success = true;
    resp.match_index = log_.committed();
    Send(std::move(resp));
    return;
  }

  std::optional<Index> truncated_from;
  if (auto last = log_.MaybeAppend(m.prev_log_index, m.prev_log_term, m.leader_commit, m.entries,
                                   &truncated_from)) {
    if (truncated_from) ForgetAcknowledgementsFrom(*truncated_from);
    ApplyConfChangesIn(m.entries);
    resp.success = true;
    resp.match_index = *last;
    Send(std::move(resp));
    return;
  }

  // Rejection with the fast back-tracking hint.
  resp.success = false;
  resp.rejected_index = m.prev_log_index;
  if (m.prev_log_index > log_.LastIndex()) {
    resp.conflict_index = log_.LastIndex() + 1;
    resp.conflict_term = Term(0);
  } else {
    Term t = log_.TermAt(m.prev_log_index).value_or(Term(0));
    resp.conflict_term = t;
    resp.conflict_index = log_.FirstIndexOfTermAtOrBelow(m.prev_log_index, t);
  }
  Send(std::move(resp));
}

void Raft::HandleSnapshot(const Message& m) {
  const SnapshotMeta& meta = m.snapshot.meta;
  Message resp;
  resp.type = MessageType::kInstallSnapshotResponse;
  resp.to = m.from;
  resp.term = term_;
  resp.success = true;
  if (meta.index <= log_.committed()) {
    resp.match_index = log_.committed();
  } else if (log_.MatchTerm(meta.index, meta.term)) {
    // Figure 13, rule 6: our log already holds the snapshot's last entry;
    // keep the suffix after it and just commit (hashicorp/raft #704).
    log_.CommitTo(meta.index);
    resp.match_index = meta.index;
  } else {
    ForgetAcknowledgementsFrom(meta.index + 1);
    log_.Restore(m.snapshot);
    base_conf_ = meta.conf_state;
    conf_log_.clear();
    SetConf(base_conf_);
    resp.match_index = meta.index;
  }
  Send(std::move(resp));
}

// An acknowledgement still queued speaks for entries that have just been
// replaced before they were persisted; sent, it would let a leader count
// entries this node never stored. A correct leader replaces them only from a
// later term (GetReady drops messages of older terms anyway); this covers
// any leader.
void Raft::ForgetAcknowledgementsFrom(Index first_gone) {
  std::erase_if(msgs_, [first_gone](const Message& q) { return AcknowledgesEntries(q) && q.match_index >= first_gone; });
}

// ---------------------------------------------------------------------------
// Leader side of replication.

Progress* Raft::FindProgress(NodeId id) {
  auto it = progress_.find(id);
  return it == progress_.end() ? nullptr : &it->second;
}

void Raft::AppendToLeaderLog(std::vector<Entry> entries) {
  std::vector<Entry> conf_entries;
  for (const Entry& e : entries) {
    if (e.type == EntryType::kConfChange) conf_entries.push_back(e);
  }
  log_.Append(std::move(entries));
  // A configuration takes effect when appended (thesis §4.1).
  if (!conf_entries.empty()) ApplyConfChangesIn(conf_entries);
  append_pending_ = true;
  // A single-voter cluster commits in Advance(), once the entry is durable.
}

void Raft::HandleAppendResponse(const Message& m) {
  Progress& pr = progress_[m.from];
  pr.last_contact_tick = now_ticks_;
  if (m.read_round > pr.acked_round) {
    pr.acked_round = m.read_round;
    OnReadRoundAcked();
  }
  if (role_ != Role::kLeader) return;  // a read release cannot depose, but be safe

  if (m.heartbeat) {
    // A heartbeat answer unblocks a probe whose message may have been lost,
    // and frees one in-flight slot of a full pipeline (etcd).
    if (pr.state == ProgressState::kProbe) pr.probe_sent = false;
    if (pr.state == ProgressState::kReplicate && pr.IsPaused()) pr.FreeFirstInflight();
    // Send even if there is nothing new (etcd's sendAppend): in the replicate
    // state next_index may already be past entries whose message was lost;
    // the (possibly empty) append gets rejected and replication backs up.
    if (pr.match_index < log_.LastIndex()) FlushAppendTo(m.from, true);
    return;
  }

  if (!m.success) {
    // Fast back-tracking: jump over the whole conflicting term.
    Index hint = m.conflict_index;
    if (m.conflict_term > Term(0)) {
      if (auto last = log_.LastIndexOfTerm(m.conflict_term)) hint = *last + 1;
    }
    hint = std::min(hint, m.rejected_index);
    if (pr.MaybeDecreaseTo(m.rejected_index, hint)) {
      if (pr.state == ProgressState::kReplicate) {
        pr.BecomeProbe();
        pr.next_index = std::max(std::min(hint, m.rejected_index), pr.match_index + 1);
      }
      FlushAppendTo(m.from, true);
    }
    return;
  }

  const bool was_paused = pr.IsPaused();
  if (pr.state == ProgressState::kReplicate) pr.FreeInflightsTo(m.match_index);
  if (pr.MaybeUpdate(m.match_index)) {
    if (pr.state == ProgressState::kProbe) {
      pr.BecomeReplicate();
    } else if (pr.state == ProgressState::kSnapshot && pr.match_index >= pr.pending_snapshot) {
      pr.BecomeProbe();
    }
    if (MaybeCommit()) {
      commit_broadcast_pending_ = true;
      if (role_ != Role::kLeader) return;  // stepped down after its removal committed
    }
    if (m.from == lead_transferee_ && pr.match_index == log_.LastIndex()) SendTimeoutNow(m.from);
    MaybePromoteLearners();
    if (role_ == Role::kLeader) FlushAppendTo(m.from, false);
  } else if (was_paused && !pr.IsPaused()) {
    FlushAppendTo(m.from, false);
  }
}

bool Raft::SendAppend(NodeId to, bool send_if_empty) {
  Progress* prp = FindProgress(to);
  if (prp == nullptr) return false;
  Progress& pr = *prp;
  if (pr.IsPaused()) return false;
  const Index prev = pr.next_index - 1;
  const std::optional<Term> prev_term = log_.TermAt(prev);
  if (!prev_term || pr.next_index < log_.FirstIndex()) {
    if (log_.error().ok()) SendSnapshot(to, pr);
    return false;
  }
  std::vector<Entry> entries;
  if (pr.next_index <= log_.LastIndex()) {
    Index hi = std::min(log_.LastIndex() + 1, pr.next_index + config_.max_entries_per_message);
    entries = log_.Slice(pr.next_index, hi, config_.max_bytes_per_message);
    if (!log_.error().ok()) return false;
  }
  if (entries.empty() && !send_if_empty) return false;
  const bool has_entries = !entries.empty();
  const Index last_sent = has_entries ? entries.back().index : prev;
  Message m;
  m.type = MessageType::kAppendEntries;
  m.to = to;
  m.term = term_;
  m.prev_log_index = prev;
  m.prev_log_term = *prev_term;
  m.entries = std::move(entries);
  m.leader_commit = log_.committed();
  m.read_round = read_round_;
  Send(std::move(m));
  pr.SentAppend(last_sent, has_entries);
  return has_entries;
}

void Raft::FlushAppendTo(NodeId to, bool send_if_empty) {
  bool sent = false;
  // Bounded: each call either sends entries and advances next_index (in the
  // replicate state) or pauses the peer, and the log is finite.
  while (SendAppend(to, false)) sent = true;
  if (!sent && send_if_empty) SendAppend(to, true);
}

void Raft::SendSnapshot(NodeId to, Progress& pr) {
  SnapshotMeta meta = log_.SnapshotToSend();
  Message m;
  m.type = MessageType::kInstallSnapshot;
  m.to = to;
  m.term = term_;
  // The state machine image is attached by the transport, which streams it
  // from the state machine's own snapshot at meta.index.
  m.snapshot.meta = meta;
  pr.BecomeSnapshot(meta.index);
  Send(std::move(m));
}

void Raft::SendHeartbeat(NodeId to) {
  Progress* pr = FindProgress(to);
  if (pr == nullptr) return;
  Message m;
  m.type = MessageType::kAppendEntries;
  m.heartbeat = true;
  m.to = to;
  m.term = term_;
  m.leader_commit = std::min(pr->match_index, log_.committed());
  m.read_round = read_round_;
  Send(std::move(m));
}

void Raft::BroadcastHeartbeat() { SendRound(std::nullopt); }

// A round for waiting reads goes to the voters that answered the last
// acknowledged round first, as many as a quorum needs besides this node
// (to every peer while too few are known). Safety does not depend on the
// choice (a read is released only once a quorum acked a round sent after it
// arrived, whoever answered); liveness does, hence MaybeWidenReadRound.
// Periodic heartbeats still go to every peer, so elections, CheckQuorum and
// the lease see what they did before.
void Raft::SendReadRound() {
  const size_t needed = conf_.voters.size() / 2 + 1 - (conf_.IsVoter(id_) ? 1 : 0);
  std::vector<NodeId> chosen;
  for (NodeId v : read_round_voters_) {
    if (chosen.size() == needed) break;
    if (conf_.IsVoter(v) && progress_.contains(v)) chosen.push_back(v);
  }
  SendRound(chosen.size() == needed ? std::optional(std::move(chosen)) : std::nullopt);
}

// Starts the next round: to `voters`, or to every peer.
void Raft::SendRound(std::optional<std::vector<NodeId>> voters) {
  ++read_round_;
  round_sent_ticks_.emplace_back(read_round_, now_ticks_);
  read_round_requested_ = false;
  read_round_partial_ = voters.has_value();
  read_round_sent_tick_ = now_ticks_;
  if (voters) {
    for (NodeId v : *voters) SendHeartbeat(v);
  } else {
    for (auto& [peer, pr] : progress_) SendHeartbeat(peer);
  }
  OnReadRoundAcked();  // a single-voter cluster acks its own round
}

// A partial round unanswered for a full tick (a chosen voter slowed down,
// crashed or lost the message) goes to every peer: its reads wait one to
// two ticks, not a heartbeat interval.
void Raft::MaybeWidenReadRound() {
  if (!read_round_partial_ || quorum_acked_round_ >= read_round_) return;
  if (now_ticks_ - read_round_sent_tick_ < 2) return;
  read_round_partial_ = false;
  for (auto& [peer, pr] : progress_) SendHeartbeat(peer);
}

// Reads that arrive while a round is unanswered wait for the next one,
// sent once a quorum acks the current one: a busy leader sends a round per
// round trip rather than one per batch of reads (etcd's linearizable read
// loop does the same). A lost round delays them to the next heartbeat tick,
// which starts a round anyway.
bool Raft::ReadRoundDue() const { return read_round_requested_ && quorum_acked_round_ >= read_round_; }

void Raft::FlushLeaderMessages() {
  if (role_ != Role::kLeader) return;
  if (ReadRoundDue()) SendReadRound();
  if (append_pending_ || commit_broadcast_pending_) {
    for (auto& [peer, pr] : progress_) FlushAppendTo(peer, commit_broadcast_pending_);
  }
  append_pending_ = false;
  commit_broadcast_pending_ = false;
}

bool Raft::MaybeCommit() {
  std::vector<Index> matches;
  for (NodeId v : conf_.voters) {
    if (v == id_) {
      matches.push_back(log_.StableLastIndex());  // only what is durable here
    } else {
      matches.push_back(progress_[v].match_index);
    }
  }
  const Index old_commit = log_.committed();
  // Only an entry of the current term commits by counting (Raft §5.4.2,
  // Figure 8); earlier ones commit with it.
  if (!log_.MaybeCommit(QuorumValue(matches), term_)) return false;
  if (old_commit < log_.committed() && !reads_awaiting_term_commit_.empty() &&
      CommittedEntryInCurrentTerm()) {
    std::vector<PendingRead> waiting = std::move(reads_awaiting_term_commit_);
    reads_awaiting_term_commit_.clear();
    for (PendingRead& r : waiting) AddRead(r, ReadMode::kReadIndex);
  }
  MaybeStepDownAfterRemoval();
  return true;
}

bool Raft::CommittedEntryInCurrentTerm() const {
  return log_.TermAt(log_.committed()).value_or(Term(0)) == term_;
}

// ---------------------------------------------------------------------------
// Proposals.

absl::StatusOr<std::pair<Index, Term>> Raft::Propose(std::string data) {
  if (!log_.error().ok()) return log_.error();
  if (role_ != Role::kLeader) {
    return absl::FailedPreconditionError("not the leader (leader: " +
                                         (leader_ == kNoNode ? std::string("unknown") : Str(leader_)) + ")");
  }
  if (lead_transferee_ != kNoNode) {
    return absl::FailedPreconditionError("leadership transfer to " + Str(lead_transferee_) +
                                         " in progress");
  }
  if (!QuorumRecentlyActive(config_.lease_ticks())) {
    // Lease check on writes: do not accept what likely cannot commit.
    return absl::FailedPreconditionError("leader has lost contact with a quorum");
  }
  if (log_.LastIndex() - log_.committed() >= config_.max_uncommitted_entries) {
    return absl::ResourceExhaustedError("too many uncommitted entries; retry later");
  }
  Entry e{log_.LastIndex() + 1, term_, EntryType::kNormal, std::move(data)};
  const Index index = e.index;
  AppendToLeaderLog({std::move(e)});
  CheckInvariants();
  return std::make_pair(index, term_);
}

absl::StatusOr<std::pair<Index, Term>> Raft::ProposeConfChange(const ConfChange& cc) {
  if (!log_.error().ok()) return log_.error();
  if (role_ != Role::kLeader) return absl::FailedPreconditionError("not the leader");
  if (cc.node_id == kNoNode) return absl::InvalidArgumentError("member id must be > 0");
  if (lead_transferee_ != kNoNode) {
    return absl::UnavailableError("leadership transfer in progress; retry");
  }
  // The single-server change bug (Ongaro, raft-dev 2015): a new leader must
  // commit an entry of its own term before it changes the configuration.
  if (!CommittedEntryInCurrentTerm()) {
    return absl::UnavailableError("leader has not yet committed an entry of its term; retry");
  }
  if (HasPendingConfChange()) {
    return absl::UnavailableError("another membership change is in flight; retry when it commits");
  }
  switch (cc.type) {
    case ConfChangeType::kAddLearner:
    case ConfChangeType::kAddVoter:
      if (conf_.Contains(cc.node_id)) {
        return absl::AlreadyExistsError("node " + Str(cc.node_id) + " is already a member");
      }
      break;
    case ConfChangeType::kPromoteLearner:
      if (!conf_.IsLearner(cc.node_id)) {
        return absl::FailedPreconditionError("node " + Str(cc.node_id) + " is not a learner");
      }
      break;
    case ConfChangeType::kRemoveNode:
      if (!conf_.Contains(cc.node_id)) {
        return absl::NotFoundError("node " + Str(cc.node_id) + " is not a member");
      }
      if (conf_.IsVoter(cc.node_id) && conf_.voters.size() == 1) {
        return absl::FailedPreconditionError("cannot remove the last voter");
      }
      break;
  }
  if (!QuorumRecentlyActive(config_.lease_ticks())) {
    return absl::UnavailableError("leader has lost contact with a quorum; retry");
  }
  Entry e{log_.LastIndex() + 1, term_, EntryType::kConfChange, cc.Encode()};
  const Index index = e.index;
  AppendToLeaderLog({std::move(e)});
  CheckInvariants();
  return std::make_pair(index, term_);
}

// ---------------------------------------------------------------------------
// Membership.

bool Raft::HasPendingConfChange() const {
  return !conf_log_.empty() && conf_log_.back().index > log_.committed();
}

void Raft::RebuildConfiguration() {
  conf_log_.clear();
  ConfState conf = base_conf_;
  const Index first = log_.FirstIndex();
  const Index last = log_.LastIndex();
  for (Index lo = first; lo <= last;) {
    std::vector<Entry> batch = log_.Slice(lo, last + 1, 4 << 20);
    if (batch.empty()) break;  // a storage error; reported by the caller
    for (const Entry& e : batch) {
      if (e.type != EntryType::kConfChange) continue;
      if (auto cc = ConfChange::Decode(e.data)) {
        conf = ApplyConfChange(conf, *cc);
        conf_log_.push_back(ConfEntry{e.index, e.term, conf});
      }
    }
    lo = batch.back().index + 1;
  }
  SetConf(conf);
}

void Raft::ApplyConfChangesIn(const std::vector<Entry>& entries) {
  // Drop configurations whose entries were truncated (thesis §4.1: fall
  // back to the previous configuration).
  bool dropped = false;
  while (!conf_log_.empty() && !log_.MatchTerm(conf_log_.back().index, conf_log_.back().term)) {
    conf_log_.pop_back();
    dropped = true;
  }
  ConfState conf = conf_log_.empty() ? base_conf_ : conf_log_.back().conf;
  bool added = false;
  for (const Entry& e : entries) {
    if (e.type != EntryType::kConfChange) continue;
    if (!conf_log_.empty() && e.index <= conf_log_.back().index) continue;  // already known
    if (!log_.MatchTerm(e.index, e.term)) continue;
    auto cc = ConfChange::Decode(e.data);
    QKV_CHECK(cc.has_value(), "undecodable configuration entry at " + Str(e.index));
    conf = ApplyConfChange(conf, *cc);
    conf_log_.push_back(ConfEntry{e.index, e.term, conf});
    added = true;
  }
  if (dropped || added) SetConf(conf);
}

void Raft::SetConf(const ConfState& conf) {
  conf_ = conf;
  if (role_ != Role::kLeader) return;
  // Keep one Progress per other member.
  for (auto it = progress_.begin(); it != progress_.end();) {
    if (!conf_.Contains(it->first)) {
      if (it->first == lead_transferee_) AbortTransfer();
      it = progress_.erase(it);
    } else {
      it->second.is_learner = conf_.IsLearner(it->first);
      ++it;
    }
  }
  auto add = [&](NodeId peer, bool learner) {
    if (peer == id_ || progress_.contains(peer)) return;
    Progress pr(log_.LastIndex() + 1, config_.max_inflight_messages);
    pr.is_learner = learner;
    pr.last_contact_tick = now_ticks_;
    progress_[peer] = pr;
  };
  for (NodeId v : conf_.voters) add(v, false);
  for (NodeId l : conf_.learners) add(l, true);
}

void Raft::MaybePromoteLearners() {
  if (!config_.auto_promote_learners || role_ != Role::kLeader) return;
  if (HasPendingConfChange() || !CommittedEntryInCurrentTerm() || lead_transferee_ != kNoNode) return;
  for (NodeId learner : conf_.learners) {
    auto it = progress_.find(learner);
    if (it == progress_.end()) continue;
    const Progress& pr = it->second;
    // Caught up: it has everything committed, so promoting it cannot stall
    // commits while it catches up (thesis §4.2.1).
    if (pr.match_index >= log_.committed()) {
      ConfChange cc{ConfChangeType::kPromoteLearner, learner, ""};
      auto result = ProposeConfChange(cc);
      (void)result;  // refused only for a reason checked above
      return;
    }
  }
}

void Raft::MaybeStepDownAfterRemoval() {
  if (role_ != Role::kLeader || conf_.IsVoter(id_)) return;
  if (HasPendingConfChange()) return;
  // Thesis §4.2.2: a leader removed from the configuration steps down once
  // the change is committed. Hand over to the most up-to-date voter so the
  // cluster need not wait for an election timeout.
  NodeId best = kNoNode;
  Index best_match;
  for (NodeId v : conf_.voters) {
    const Progress& pr = progress_[v];
    if (best == kNoNode || pr.match_index > best_match) {
      best = v;
      best_match = pr.match_index;
    }
  }
  if (best != kNoNode && best_match == log_.LastIndex()) SendTimeoutNow(best);
  BecomeFollower(term_, kNoNode);
}

// ---------------------------------------------------------------------------
// Leadership transfer (thesis §3.10).

absl::Status Raft::TransferLeadership(NodeId target) {
  if (!log_.error().ok()) return log_.error();
  if (role_ != Role::kLeader) return absl::FailedPreconditionError("not the leader");
  if (target == id_) return absl::OkStatus();
  if (!conf_.IsVoter(target)) {
    return absl::InvalidArgumentError("node " + Str(target) + " is not a voter");
  }
  if (lead_transferee_ == target) return absl::OkStatus();
  lead_transferee_ = target;
  transfer_elapsed_ = 0;
  Progress& pr = progress_[target];
  if (pr.match_index == log_.LastIndex()) {
    SendTimeoutNow(target);
  } else {
    FlushAppendTo(target, true);
  }
  CheckInvariants();
  return absl::OkStatus();
}

void Raft::SendTimeoutNow(NodeId to) {
  // From now on the target may win an election without waiting for our
  // lease to expire: no more lease reads in this term.
  timeout_now_sent_ = true;
  Message m;
  m.type = MessageType::kTimeoutNow;
  m.to = to;
  m.term = term_;
  Send(std::move(m));
}

void Raft::AbortTransfer() {
  lead_transferee_ = kNoNode;
  transfer_elapsed_ = 0;
}

// ---------------------------------------------------------------------------
// Reads: ReadIndex and leases (thesis §6.4).

absl::Status Raft::ReadIndex(uint64_t read_id, ReadMode mode) {
  if (!log_.error().ok()) return log_.error();
  if (role_ == Role::kLeader) {
    AddRead(PendingRead{read_id, id_, Index(0), 0}, mode);
    CheckInvariants();
    return absl::OkStatus();
  }
  if (role_ != Role::kFollower || leader_ == kNoNode) {
    return absl::UnavailableError("no leader known; retry");
  }
  Message m;
  m.type = MessageType::kReadIndex;
  m.to = leader_;
  m.term = term_;
  m.read_id = read_id;
  m.lease_read = mode == ReadMode::kLease;
  forwarded_reads_[read_id] = now_ticks_;
  Send(std::move(m));
  return absl::OkStatus();
}

void Raft::HandleReadIndexRequest(const Message& m) {
  AddRead(PendingRead{m.read_id, m.from, Index(0), 0},
          m.lease_read ? ReadMode::kLease : ReadMode::kReadIndex);
}

void Raft::AddRead(const PendingRead& read, ReadMode mode) {
  if (!CommittedEntryInCurrentTerm()) {
    // etcd #7331: until its no-op commits, the leader's commit index may be
    // behind what earlier leaders committed.
    reads_awaiting_term_commit_.push_back(read);
    return;
  }
  PendingRead r = read;
  r.read_index = log_.committed();
  if (mode == ReadMode::kLease && LeaseValid()) {
    ReleaseRead(r);
    return;
  }
  // Every read takes a fresh round, sent after it arrived (etcd #20418).
  r.round = read_round_ + 1;
  read_queue_.Add(r);
  read_round_requested_ = true;
}

void Raft::ReleaseRead(const PendingRead& r) {
  if (r.from == id_) {
    read_states_.push_back(ReadState{r.read_id, r.read_index});
    return;
  }
  Message m;
  m.type = MessageType::kReadIndexResponse;
  m.to = r.from;
  m.term = term_;
  m.read_id = r.read_id;
  m.read_index = r.read_index;
  m.success = true;
  Send(std::move(m));
}

void Raft::FailRead(uint64_t read_id, NodeId from) {
  if (from == id_) {
    failed_reads_.push_back(read_id);
    return;
  }
  Message m;
  m.type = MessageType::kReadIndexResponse;
  m.to = from;
  m.term = term_;
  m.read_id = read_id;
  m.success = false;
  Send(std::move(m));
}

void Raft::FailPendingReads() {
  for (const PendingRead& r : read_queue_.TakeAll()) FailRead(r.read_id, r.from);
  for (const PendingRead& r : reads_awaiting_term_commit_) FailRead(r.read_id, r.from);
  reads_awaiting_term_commit_.clear();
}

void Raft::OnReadRoundAcked() {
  const uint64_t acked = QuorumAckedRound();
  if (acked <= quorum_acked_round_) return;
  quorum_acked_round_ = acked;
  // The voters whose answers made this quorum: the next read round's.
  read_round_voters_.clear();
  for (NodeId v : conf_.voters) {
    auto it = progress_.find(v);
    if (it != progress_.end() && it->second.acked_round >= acked) read_round_voters_.push_back(v);
  }
  while (!round_sent_ticks_.empty() && round_sent_ticks_.front().first <= acked) {
    if (round_sent_ticks_.front().first == acked) lease_start_tick_ = round_sent_ticks_.front().second;
    round_sent_ticks_.pop_front();
  }
  for (const PendingRead& r : read_queue_.ReleaseUpTo(acked)) ReleaseRead(r);
}

uint64_t Raft::QuorumAckedRound() const {
  std::vector<uint64_t> rounds;
  for (NodeId v : conf_.voters) {
    if (v == id_) {
      rounds.push_back(read_round_);
    } else {
      auto it = progress_.find(v);
      rounds.push_back(it == progress_.end() ? 0 : it->second.acked_round);
    }
  }
  return QuorumValue(rounds);
}

int64_t Raft::QuorumLastContactTick() const {
  std::vector<int64_t> ticks;
  for (NodeId v : conf_.voters) {
    if (v == id_) {
      ticks.push_back(now_ticks_);
    } else {
      auto it = progress_.find(v);
      ticks.push_back(it == progress_.end() ? 0 : it->second.last_contact_tick);
    }
  }
  return QuorumValue(ticks);
}

bool Raft::QuorumRecentlyActive(int within_ticks) const {
  return now_ticks_ - QuorumLastContactTick() < within_ticks;
}

int64_t Raft::LeaseTicksLeft() const {
  // The lease starts when the quorum-acked round was *sent* and is shorter
  // than the election timeout by the drift margin; voters that acked it
  // refuse votes for a full election timeout after receiving it.
  if (role_ != Role::kLeader || lead_transferee_ != kNoNode || timeout_now_sent_ || !conf_.IsVoter(id_) ||
      !CommittedEntryInCurrentTerm() || lease_start_tick_ < 0) {
    return 0;
  }
  return std::max<int64_t>(0, lease_start_tick_ + config_.lease_ticks() - now_ticks_);
}

bool Raft::HeardFromLeaderRecently() const {
  if (role_ == Role::kLeader) return true;
  return now_ticks_ - leader_contact_tick_ < config_.election_timeout_ticks;
}

// ---------------------------------------------------------------------------
// Transport feedback and compaction.

void Raft::ReportSnapshot(NodeId peer, bool delivered) {
  Progress* pr = FindProgress(peer);
  if (role_ != Role::kLeader || pr == nullptr || pr->state != ProgressState::kSnapshot) return;
  if (!delivered) pr->pending_snapshot = Index(0);
  // Wait for the follower's answer (or, if lost, the next heartbeat answer).
  pr->BecomeProbe();
  pr->probe_sent = true;
}

void Raft::ReportUnreachable(NodeId peer) {
  Progress* pr = FindProgress(peer);
  if (role_ != Role::kLeader || pr == nullptr) return;
  if (pr->state == ProgressState::kReplicate) pr->BecomeProbe();
}

absl::Status Raft::Compact(Index index) {
  if (!log_.error().ok()) return log_.error();
  if (index > log_.applied()) {
    return absl::InvalidArgumentError("cannot compact beyond the applied index " + Str(log_.applied()));
  }
  if (index < log_.FirstIndex()) return absl::OkStatus();  // already compacted
  if (index > log_.StableLastIndex()) return absl::InvalidArgumentError("cannot compact unpersisted entries");
  std::optional<Term> term = log_.TermAt(index);
  if (!term) return log_.error().ok() ? absl::InternalError("no term for compaction point") : log_.error();
  ConfState conf = base_conf_;
  for (const ConfEntry& c : conf_log_) {
    if (c.index <= index) conf = c.conf;
  }
  SnapshotMeta meta{index, *term, conf};
  if (absl::Status s = storage_->Compact(meta); !s.ok()) return s;
  base_conf_ = conf;
  conf_log_.erase(std::remove_if(conf_log_.begin(), conf_log_.end(),
                                 [&](const ConfEntry& c) { return c.index <= index; }),
                  conf_log_.end());
  CheckInvariants();
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------
// Ready / Advance.

void Raft::Send(Message m) {
  m.from = id_;
  msgs_.push_back(std::move(m));
}

bool Raft::HasReady() const {
  if (role_ == Role::kLeader && (append_pending_ || commit_broadcast_pending_ || ReadRoundDue())) {
    return true;
  }
  if (SoftState{leader_, role_} != prev_soft_) return true;
  if (HardState{term_, voted_for_, log_.committed()} != prev_hard_) return true;
  return log_.unstable_snapshot().has_value() || !log_.unstable_entries().empty() ||
         log_.HasNextCommittedEntries() || !msgs_.empty() || !read_states_.empty() ||
         !failed_reads_.empty();
}

Ready Raft::GetReady() {
  FlushLeaderMessages();
  Ready rd;
  SoftState soft{leader_, role_};
  if (soft != prev_soft_) {
    rd.soft_state = soft;
    prev_soft_ = soft;
  }
  HardState hard{term_, voted_for_, log_.committed()};
  if (hard != prev_hard_) {
    rd.hard_state = hard;
    rd.must_sync = hard.current_term != prev_hard_.current_term || hard.voted_for != prev_hard_.voted_for;
    prev_hard_ = hard;
  }
  rd.snapshot = log_.unstable_snapshot();
  rd.entries = log_.unstable_entries();
  if (rd.snapshot || !rd.entries.empty()) rd.must_sync = true;
  rd.committed_entries = log_.NextCommittedEntries(kMaxCommittedBytesPerReady);
  // A message queued in an older term speaks for a state that may be gone:
  // a success AppendEntriesResponse whose entries a newer leader truncated
  // before they were persisted, or a vote whose term was superseded before
  // it became durable. Its recipient may still be in that older term and
  // would count it, so it is never sent (found by raft_message_fuzzer).
  std::erase_if(msgs_, [this](const Message& m) { return m.term < term_; });
  rd.messages = std::move(msgs_);
  msgs_.clear();
  rd.read_states = std::move(read_states_);
  read_states_.clear();
  rd.failed_reads = std::move(failed_reads_);
  failed_reads_.clear();
  return rd;
}

void Raft::Advance(const Ready& rd) {
  if (rd.snapshot) {
    log_.StableSnapshotTo(rd.snapshot->meta.index);
    log_.AppliedTo(rd.snapshot->meta.index);
  }
  if (!rd.entries.empty()) log_.StableTo(rd.entries.back().index, rd.entries.back().term);
  if (!rd.committed_entries.empty()) log_.AppliedTo(rd.committed_entries.back().index);
  if (role_ == Role::kLeader && !rd.entries.empty()) {
    // Our own entries are durable now and count toward the quorum.
    if (MaybeCommit()) commit_broadcast_pending_ = true;
  }
  CheckInvariants();
}

// ---------------------------------------------------------------------------
// Introspection.

NodeStatus Raft::GetStatus() const {
  NodeStatus s;
  s.id = id_;
  s.role = role_;
  s.leader = leader_;
  s.hard_state = HardState{term_, voted_for_, log_.committed()};
  s.applied_index = log_.applied();
  s.last_index = log_.LastIndex();
  s.first_index = log_.FirstIndex();
  s.conf_state = conf_;
  s.transferee = lead_transferee_;
  if (role_ == Role::kLeader) s.progress = progress_;
  return s;
}

void Raft::CheckInvariants() const {
  QKV_CHECK(log_.applied() <= log_.committed(), "applied > committed");
  QKV_CHECK(log_.committed() <= log_.LastIndex(), "committed > last index");
  QKV_CHECK(log_.FirstIndex() <= log_.LastIndex() + 1, "first index > last index + 1");
  if (role_ == Role::kLeader) {
    QKV_CHECK(leader_ == id_, "leader does not know itself as leader");
    QKV_CHECK(voted_for_ == id_, "leader did not vote for itself in its term");
    for (const auto& [peer, pr] : progress_) {
      QKV_CHECK(pr.match_index < pr.next_index,
                "progress of " + Str(peer) + ": match " + Str(pr.match_index) + " >= next " +
                    Str(pr.next_index));
      QKV_CHECK(pr.match_index <= log_.LastIndex(), "progress match beyond leader's log");
      QKV_CHECK(conf_.Contains(peer), "progress for a non-member");
    }
  } else {
    QKV_CHECK(progress_.empty(), "non-leader keeps progress");
  }
  if (role_ == Role::kCandidate) QKV_CHECK(voted_for_ == id_, "candidate did not vote for itself");
  for (size_t i = 1; i < conf_log_.size(); ++i) {
    QKV_CHECK(conf_log_[i - 1].index < conf_log_[i].index, "configuration entries out of order");
  }
  const ConfState& expected = conf_log_.empty() ? base_conf_ : conf_log_.back().conf;
  QKV_CHECK(expected == conf_, "configuration in effect is not the latest in the log");
  for (NodeId v : conf_.voters) QKV_CHECK(!conf_.IsLearner(v), "node both voter and learner");
}

}  // namespace quorumkv::raft
