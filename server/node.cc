#include "server/node.h"

#include <pthread.h>

#include <algorithm>
#include <cstdio>
#include <random>

#include "absl/strings/cord.h"
#include "absl/strings/str_cat.h"
#include "server/log.h"

namespace quorumkv::server {

namespace {

using raft::Index;
using raft::NodeId;
using raft::Role;
using raft::Term;

absl::Status UnavailableWithLeader(const std::string& what, uint64_t leader) {
  return absl::UnavailableError(leader == 0 ? what + "; no leader is known yet, retry"
                                            : what + "; the leader is node " + std::to_string(leader));
}

absl::Status TooManyPendingError() {
  return NotProposed(absl::ResourceExhaustedError("too many pending requests on this node; back off and retry"));
}

}  // namespace

// One client call waiting on the node thread.
struct Node::PendingOp {
  enum class Kind { kWrite, kRead, kConfChange, kTransfer } kind = Kind::kWrite;
  absl::Time deadline;
  // Proposals: the entry that must be applied with this term.
  Index index;
  Term term;
  // Reads: the key (empty with `barrier`), and the read index once known.
  std::string key;
  bool barrier = false;
  ReadConsistency consistency = ReadConsistency::kLinearizable;
  bool has_read_index = false;
  Index read_index;
  raft::NodeId transfer_target;
  // Results.
  kv::CommandResult command_result;
  std::function<void(absl::StatusOr<WriteOutcome>)> write_done;
  std::function<void(absl::StatusOr<ReadOutcome>)> read_done;
  std::function<void(absl::StatusOr<std::vector<Member>>)> conf_done;
  std::function<void(absl::StatusOr<uint64_t>)> transfer_done;
};

// Receives a snapshot stream into a staged restore of the state machine.
// When the stream is complete, the node hands the core an InstallSnapshot
// message; the staged image is swapped in when the core's Ready says so.
class Node::StagedSnapshotReceiver : public SnapshotReceiver {
 public:
  StagedSnapshotReceiver(Node* node, NodeId from, Term term, raft::SnapshotMeta meta,
                         std::unique_ptr<kv::SnapshotWriter> writer)
      : node_(node), from_(from), term_(term), meta_(std::move(meta)), writer_(std::move(writer)) {}

  absl::Status Write(uint64_t offset, std::string_view data) override {
    kv::SnapshotChunk chunk;
    chunk.offset = offset;
    chunk.data.assign(data.data(), data.size());
    return writer_->Write(chunk);
  }

  absl::Status Finish() override {
    // The image's own trailer tells the writer it is complete; Finish only
    // hands it over, and FinishRestore checks completeness.
    {
      absl::MutexLock lock(&node_->staged_mu_);
      node_->finished_snapshots_[meta_.index.value()] = std::move(writer_);
    }
    raft::Message m;
    m.type = raft::MessageType::kInstallSnapshot;
    m.from = from_;
    m.to = node_->options_.id;
    m.term = term_;
    m.snapshot.meta = meta_;
    std::vector<raft::Message> batch;
    batch.push_back(std::move(m));
    node_->OnMessages(std::move(batch));
    return absl::OkStatus();
  }

  void Abort() override { writer_.reset(); }

 private:
  Node* node_;
  NodeId from_;
  Term term_;
  raft::SnapshotMeta meta_;
  std::unique_ptr<kv::SnapshotWriter> writer_;
};

// Streams the state machine's current snapshot to a follower.
class KvSnapshotStream : public SnapshotStream {
 public:
  KvSnapshotStream(raft::SnapshotMeta meta, std::unique_ptr<kv::SnapshotReader> reader)
      : meta_(std::move(meta)), reader_(std::move(reader)) {}
  const raft::SnapshotMeta& meta() const override { return meta_; }
  absl::StatusOr<Chunk> Next() override {
    absl::StatusOr<kv::SnapshotChunk> c = reader_->Next();
    if (!c.ok()) return c.status();
    return Chunk{c->offset, std::move(c->data), c->last};
  }

 private:
  raft::SnapshotMeta meta_;
  std::unique_ptr<kv::SnapshotReader> reader_;
};

// ---------------------------------------------------------------------------
// Opening.

Node::Node(const NodeOptions& options) : options_(options), metrics_(std::make_unique<NodeMetrics>()) {}

Node::~Node() { Stop(); }

absl::StatusOr<std::unique_ptr<Node>> Node::Open(const NodeOptions& options) {
  if (options.id == raft::kNoNode) return absl::InvalidArgumentError("node id must be > 0");
  if (options.data_dir.empty()) return absl::InvalidArgumentError("a data directory is required");
  std::unique_ptr<Node> node(new Node(options));
  if (absl::Status s = node->OpenStores(); !s.ok()) return s;
  return node;
}

absl::Status Node::OpenStores() {
  raft::LevelDbLogStorage::Options log_options;
  auto storage = raft::LevelDbLogStorage::Open(options_.data_dir + "/raft", log_options);
  if (!storage.ok()) return storage.status();
  storage_ = std::move(*storage);
  // A data dir remembers whose it is: refuse another cluster's or node's.
  if (absl::Status s = storage_->SetIdentity(options_.cluster_id, options_.id); !s.ok()) {
    return absl::FailedPreconditionError(absl::StrCat("data dir ", options_.data_dir,
                                                      " belongs to another cluster or node: ", s.message()));
  }

  kv::KvOptions kv_options;
  kv_options.session_ttl_ms = options_.session_ttl_ms;
  kv_options.key_size_cache_bytes = options_.key_size_cache_bytes;
  // The state machine does not fsync its applies: the Raft log is synced,
  // and after a crash the node re-applies from it (idempotently). Snapshots
  // are made durable before the log is compacted.
  kv_options.sync_writes = false;
  auto kv = kv::KvStateMachine::Open(options_.data_dir + "/kv", kv_options);
  if (!kv.ok()) return kv.status();
  kv_ = std::move(*kv);
  if (absl::Status s = CheckStoresAgree(); !s.ok()) return s;

  auto policy = kv::CompactionPolicy::Create(options_.compaction);
  if (!policy.ok()) return policy.status();
  compaction_ = *policy;

  {
    absl::MutexLock lock(&members_mu_);
    auto stored = kv_->Get(absl::string_view(kMembersKey, kMembersKeyLength));
    if (!stored.ok()) return stored.status();
    if (stored->has_value()) {
      auto list = MemberList::Decode(**stored);
      if (!list.ok()) return list.status();
      members_ = *list;
    }
    for (const Member& m : options_.initial_members) announced_[m.id] = m;
    for (const Member& m : options_.known_peers) announced_[m.id] = m;
  }

  raft::Config config;
  config.id = options_.id;
  for (const Member& m : options_.initial_members) {
    config.initial_voters.push_back(NodeId(m.id));
    config.initial_voter_contexts[NodeId(m.id)] = EncodeMemberContext(m);
  }
  config.election_timeout_ticks = options_.election_timeout_ticks;
  config.heartbeat_interval_ticks = options_.heartbeat_interval_ticks;
  config.lease_drift_margin_ticks = options_.lease_drift_margin_ticks;
  config.max_entries_per_message = options_.max_entries_per_message;
  config.max_bytes_per_message = options_.max_bytes_per_message;
  config.max_inflight_messages = options_.max_inflight_messages;
  config.max_uncommitted_entries = options_.max_pending_requests;
  config.auto_promote_learners = options_.auto_promote_learners;
  // Randomized election timeouts: this is the real world, so the seed comes
  // from the OS; the core stays deterministic given the generator.
  auto gen = std::make_shared<std::mt19937_64>(std::random_device{}() ^ options_.id.value());
  config.random = [gen](uint64_t n) { return std::uniform_int_distribution<uint64_t>(0, n - 1)(*gen); };

  auto core = raft::Raft::Create(config, storage_.get(), Index(kv_->applied_index()));
  if (!core.ok()) return core.status();
  core_ = std::move(*core);
  persisted_term_ = storage_->hard_state().current_term.value();
  // Configuration entries in the retained log may announce members the
  // state machine has not applied yet.
  if (core_->last_index() >= core_->raft_log().FirstIndex()) {
    LearnAddresses(core_->raft_log().Slice(core_->raft_log().FirstIndex(), core_->last_index() + 1, 64 << 20));
  }
  if (!core_->storage_error().ok()) return core_->storage_error();
  PublishObservables();
  LOG_INFO("node %llu opened %s: term %llu, commit %llu, applied %llu, %s",
           static_cast<unsigned long long>(options_.id.value()), options_.data_dir.c_str(),
           static_cast<unsigned long long>(core_->term().value()),
           static_cast<unsigned long long>(core_->commit_index().value()),
           static_cast<unsigned long long>(kv_->applied_index()),
           core_->conf_state().ToString().c_str());
  return absl::OkStatus();
}

// The Raft log and the state machine are two LevelDB databases in one data
// dir; losing either one's files must stop the node rather than let it run
// on what is left. LevelDB creates a database that is missing, so an empty
// log next to a state machine that applied entries means the log's files
// are gone (and with them this node's term and vote: running on would let
// it vote twice in one term). A state machine behind the log's snapshot
// means the state machine's files are gone (the entries it would need were
// compacted away).
absl::Status Node::CheckStoresAgree() const {
  const uint64_t applied = kv_->applied_index();
  const raft::HardState hs = storage_->hard_state();
  const uint64_t snapshot = storage_->snapshot_meta().index.value();
  const bool log_pristine = hs.current_term.value() == 0 && hs.voted_for == raft::kNoNode && snapshot == 0 &&
                            storage_->LastIndex().value() == 0;
  if (log_pristine && applied > 0) {
    return absl::DataLossError(absl::StrCat(
        "data dir ", options_.data_dir, ": the state machine has applied entries up to ", applied,
        " but the Raft log (", options_.data_dir,
        "/raft) is empty: its files were lost, and with them this node's term and vote. Remove node ",
        options_.id.value(), " from the cluster and add it back with an empty data dir"));
  }
  if (applied < snapshot) {
    return absl::DataLossError(absl::StrCat(
        "data dir ", options_.data_dir, ": the Raft log was compacted up to ", snapshot,
        " but the state machine (", options_.data_dir, "/kv) has applied only up to ", applied,
        ": its files were lost. Remove node ", options_.id.value(),
        " from the cluster and add it back with an empty data dir"));
  }
  return absl::OkStatus();
}

void Node::Start(PeerTransport* transport) {
  transport_ = transport;
  {
    absl::MutexLock lock(&members_mu_);
    for (const auto& [id, m] : members_.members()) {
      if (id != options_.id.value()) transport_->UpsertPeer(NodeId(id), m.peer_address);
    }
    for (const auto& [id, m] : announced_) {
      if (id != options_.id.value()) transport_->UpsertPeer(NodeId(id), m.peer_address);
    }
  }
  next_tick_ = std::chrono::steady_clock::now() + absl::ToChronoNanoseconds(options_.tick_interval);
  started_ = true;
  thread_ = std::thread([this] {
    pthread_setname_np(pthread_self(), "raft-loop");  // for top -H and perf
    Loop();
  });
}

void Node::Stop() {
  {
    absl::MutexLock lock(&mu_);
    if (stopping_) return;
    stopping_ = true;
    cv_.Signal();
  }
  if (thread_.joinable()) thread_.join();
  FailAll(absl::UnavailableError("node is shutting down; retry on another node"));
}

// ---------------------------------------------------------------------------
// The event loop.

bool Node::Post(std::function<void()> event) {
  absl::MutexLock lock(&mu_);
  if (stopping_ || !started_) return false;
  if (events_.size() >= options_.max_queued_events) return false;
  events_.push_back(std::move(event));
  cv_.Signal();
  return true;
}

void Node::Loop() {
  std::deque<std::function<void()>> batch;
  while (true) {
    {
      absl::MutexLock lock(&mu_);
      const auto wake_at = std::min(next_tick_, notices_due_);
      while (!stopping_ && events_.empty() && std::chrono::steady_clock::now() < wake_at) {
        cv_.WaitWithTimeout(&mu_, absl::FromChrono(wake_at - std::chrono::steady_clock::now()));
      }
      if (stopping_) {
        // Answer whatever is still queued: every queued request carries a
        // `done` someone waits on (a client, or a follower's forwarded
        // write that keeps the peer server's shutdown waiting).
        batch.swap(events_);
        shutting_down_ = true;
      }
      if (!shutting_down_) batch.swap(events_);
    }
    if (shutting_down_) {
      lease_until_ns_ = 0;
      for (auto& e : batch) e();
      return;
    }
    if (!fatal_.ok()) {
      // A failed node answers every request with its error and does nothing
      // else; it wakes only for requests (no busy loop on a stale tick).
      for (auto& e : batch) e();
      batch.clear();
      next_tick_ = std::chrono::steady_clock::now() + std::chrono::seconds(1);
      continue;
    }
    // Time first: a process that was stopped or stalled must not act on a
    // lease or leadership that expired meanwhile.
    TickUpToNow();
    for (auto& e : batch) {
      e();
      if (!fatal_.ok()) break;
    }
    batch.clear();
    ExpireDeadlines();
    ProcessReady();
    SendDueNotices();
    PublishLease();
    if (absl::Now() >= next_lag_update_ && core_->role() == Role::kLeader) {
      next_lag_update_ = absl::Now() + absl::Milliseconds(200);
      const raft::NodeStatus st = core_->GetStatus();
      for (const auto& [peer, pr] : st.progress) {
        metrics_->SetReplicationLag(peer.value(), static_cast<double>(st.last_index - pr.match_index));
      }
    }
  }
}

void Node::TickUpToNow() {
  const auto now = std::chrono::steady_clock::now();
  int ticks = 0;
  // Catch up, but a very long stall needs no more than a few election
  // timeouts' worth of ticks to have its full effect.
  const int max_ticks = 3 * options_.election_timeout_ticks;
  while (next_tick_ <= now) {
    if (ticks < max_ticks) {
      (void)core_->Tick();
      ++ticks;
    }
    next_tick_ += absl::ToChronoNanoseconds(options_.tick_interval);
  }
}

void Node::ProcessReady() {
  while (fatal_.ok() && core_->HasReady()) {
    raft::Ready rd = core_->GetReady();
    if (rd.soft_state) {
      const uint64_t old_leader = leader_id_.load();
      LOG_INFO("node %llu is %s in term %llu, leader %llu",
               static_cast<unsigned long long>(options_.id.value()), raft::RoleName(rd.soft_state->role),
               static_cast<unsigned long long>(core_->term().value()),
               static_cast<unsigned long long>(rd.soft_state->leader.value()));
      leader_id_ = rd.soft_state->leader.value();
      if (rd.soft_state->role == Role::kCandidate) metrics_->elections_started->Increment();
      if (rd.soft_state->role == Role::kLeader) metrics_->elections_won->Increment();
      if (rd.soft_state->role != Role::kLeader) metrics_->ClearReplicationLag();
      if (rd.soft_state->leader != raft::kNoNode && rd.soft_state->leader.value() != old_leader) {
        metrics_->leader_changes->Increment();
      }
      metrics_->is_leader->Set(rd.soft_state->role == Role::kLeader ? 1 : 0);
      if (transfer_op_ && rd.soft_state->leader != raft::kNoNode &&
          rd.soft_state->leader.value() != old_leader) {
        uint64_t op = *transfer_op_;
        auto it = ops_.find(op);
        if (it != ops_.end() && it->second->transfer_target == rd.soft_state->leader) {
          CompleteOp(op, absl::OkStatus());
        }
      }
    }
    // A received snapshot: the state machine swaps in the staged image
    // first, then the log records it. A crash in between leaves a state
    // machine ahead of the log's commit index, which is safe (re-applying
    // is idempotent; the leader resends a snapshot if needed); the reverse
    // order could leave a log that claims entries the state machine lacks.
    if (rd.snapshot) InstallSnapshot(rd.snapshot->meta);
    if (!fatal_.ok()) return;

    // A leader's AppendEntries without entries that is no heartbeat only
    // tells a follower the new commit index: nothing waits for it but the
    // follower's own apply. It goes out after this node has applied the
    // committed entries and answered their clients, and is held a moment
    // (HoldCommitNotices) in case the next AppendEntries with entries
    // carries the news anyway. Sent at once, the notices put two stream
    // writes on every write's path at one request in flight, and the
    // followers' handling of them (a read, a hard-state write, an apply, an
    // answer) took the CPU from the next write (bench/RESULTS.md).
    //
    // Thesis §10.2.1: a leader sends AppendEntries for entries it is still
    // writing, so its fsync overlaps its followers'. Safe because the core
    // counts the leader's own entries toward commit only once they are
    // durable (Advance), and a leader's term and vote were made durable
    // before it could win. Everything else waits for the disk.
    std::vector<raft::Message> commit_notices;
    // (follower, commit index) of the other AppendEntries sent this Ready.
    std::vector<std::pair<uint64_t, raft::Index>> commits_sent;
    if (core_->role() == Role::kLeader) {
      const bool send_early = !rd.hard_state || rd.hard_state->current_term.value() == persisted_term_;
      std::vector<raft::Message> early;
      std::vector<raft::Message> later;
      for (raft::Message& m : rd.messages) {
        if (m.type != raft::MessageType::kAppendEntries) {
          later.push_back(std::move(m));
        } else if (!m.heartbeat && m.entries.empty()) {
          commit_notices.push_back(std::move(m));
        } else {
          commits_sent.emplace_back(m.to.value(), m.leader_commit);
          (send_early ? early : later).push_back(std::move(m));
        }
      }
      rd.messages = std::move(later);
      SendMessages(std::move(early));
    } else {
      held_notices_.clear();  // from a leadership this node no longer holds
      notices_due_ = std::chrono::steady_clock::time_point::max();
    }

    // A leader answers the writes this Ready commits before it writes the
    // entries this Ready appends: those answers need only entries that are
    // durable already (the core counts the leader's own entries toward
    // commit only after Advance), and behind the fsync they waited a whole
    // disk write for nothing (puts at 16 in flight: p50 2.06 -> 1.91 ms,
    // bench/RESULTS.md). A follower keeps the order: its answer to the
    // leader comes first, and its applying can wait. The index test holds
    // for every leader Ready (tested:
    // Contract.LeaderHandsOutOnlyEntriesWrittenBeforeTheReady); it is there
    // so that this can never apply an entry not yet on disk here. A crash
    // after applying leaves the state machine ahead of the persisted commit
    // index, which restarts fine (the state machine skips what it has
    // applied; Contract.RestartWithStateMachineAheadOfTheDurableCommitIndex).
    const bool apply_first = core_->role() == Role::kLeader && !rd.snapshot &&
                             (rd.entries.empty() || rd.committed_entries.empty() ||
                              rd.committed_entries.back().index < rd.entries.front().index);
    // Applies, answers, and holds the commit notices; false if the node failed.
    auto apply_committed = [&] {
      ApplyCommitted(rd.committed_entries);
      if (!fatal_.ok()) return false;
      HoldCommitNotices(std::move(commit_notices), commits_sent);
      return true;
    };
    if (apply_first && !apply_committed()) return;

    raft::PersistBatch batch;
    batch.hard_state = rd.hard_state;
    if (rd.snapshot) batch.snapshot = rd.snapshot->meta;
    // Lent to the batch, not copied: the Ready needs them back below.
    batch.entries = std::move(rd.entries);
    batch.sync = rd.must_sync;
    if (batch.hard_state || batch.snapshot || !batch.entries.empty()) {
      const absl::Time persist_start = absl::Now();
      absl::Status persisted = storage_->Persist(batch);
      const absl::Duration persist_time = absl::Now() - persist_start;
      rd.entries = std::move(batch.entries);
      if (batch.sync) metrics_->fsync_seconds->Observe(absl::ToDoubleSeconds(persist_time));
      if (persist_time > options_.tick_interval && core_->role() != Role::kLeader) {
        // A follower stalled by its own disk must not time out its leader
        // for it (LogCabin #200): the stalled time does not count toward
        // its election timeout. Slowing a follower's clock only makes it
        // refuse votes longer, which leases tolerate; a leader's clock is
        // never slowed (its lease and CheckQuorum need the real time).
        next_tick_ = std::max(next_tick_, std::chrono::steady_clock::now() +
                                              absl::ToChronoNanoseconds(options_.tick_interval));
      }
      if (absl::Status s = persisted; !s.ok()) {
        // An fsync error is fatal, never retried (PITFALLS: fsync and files).
        Fatal(s);
        return;
      }
      for (const raft::Entry& e : rd.entries) log_bytes_since_compaction_ += e.ByteSize();
      if (rd.hard_state) persisted_term_ = rd.hard_state->current_term.value();
    }
    LearnAddresses(rd.entries);
    // Only after the disk write: messages may promise what was persisted.
    SendMessages(std::move(rd.messages));

    if (!apply_first && !apply_committed()) return;

    for (const raft::ReadState& rs : rd.read_states) {
      auto it = ops_.find(rs.read_id);
      if (it == ops_.end()) continue;
      it->second->has_read_index = true;
      it->second->read_index = rs.read_index;
      reads_waiting_.emplace(rs.read_index.value(), rs.read_id);
    }
    for (uint64_t read_id : rd.failed_reads) {
      if (ops_.contains(read_id)) {
        CompleteOp(read_id, UnavailableWithLeader("the read could not be confirmed by the leader", leader_id_));
      }
    }
    core_->Advance(rd);
    PublishObservables();
    ServeReads();
    MaybeCompact();
  }
  if (!core_->storage_error().ok()) Fatal(core_->storage_error());
}

void Node::HoldCommitNotices(std::vector<raft::Message> notices,
                             const std::vector<std::pair<uint64_t, raft::Index>>& commits_sent) {
  for (raft::Message& n : notices) {
    auto [it, inserted] = held_notices_.try_emplace(n.to.value(), n);
    if (!inserted && n.leader_commit >= it->second.leader_commit) it->second = std::move(n);
  }
  // Whatever carried a commit index at least as new makes the notice moot.
  for (const auto& [peer, commit] : commits_sent) {
    auto it = held_notices_.find(peer);
    if (it != held_notices_.end() && commit >= it->second.leader_commit) held_notices_.erase(it);
  }
  if (held_notices_.empty()) {
    notices_due_ = std::chrono::steady_clock::time_point::max();
  } else if (notices_due_ == std::chrono::steady_clock::time_point::max()) {
    notices_due_ = std::chrono::steady_clock::now() + absl::ToChronoNanoseconds(options_.commit_notice_delay);
  }
  SendDueNotices();  // at once if the delay is 0
}

void Node::SendDueNotices() {
  if (held_notices_.empty() || std::chrono::steady_clock::now() < notices_due_) return;
  std::vector<raft::Message> due;
  due.reserve(held_notices_.size());
  for (auto& [peer, m] : held_notices_) due.push_back(std::move(m));
  held_notices_.clear();
  notices_due_ = std::chrono::steady_clock::time_point::max();
  SendMessages(std::move(due));
}

void Node::SendMessages(std::vector<raft::Message> messages) {
  if (messages.empty()) return;
  // Before anything leaves: these messages may hand another node a commit
  // index above what this store holds yet (the AppendEntries a leader sends
  // before it applies, thesis 10.2.1; a read index). A read there could then
  // return a write that a lease read here, after it, would miss: so no lease
  // read is served off this thread until the store has caught up (found by
  // fault_test --seed 22 when only the lease itself was checked here). A
  // TimeoutNow ends the lease too (its target may win at once).
  PublishLease();
  for (const raft::Message& m : messages) {
    if (m.type == raft::MessageType::kAppendEntries) {
      (m.heartbeat ? metrics_->heartbeats_sent : metrics_->append_entries_sent)->Increment();
    }
  }
  transport_->Send(std::move(messages));
}

void Node::PublishObservables() {
  term_ = core_->term().value();
  leader_id_ = core_->leader().value();
  commit_index_ = core_->commit_index().value();
  applied_index_ = kv_->applied_index();
  metrics_->term->Set(static_cast<double>(term_.load()));
  metrics_->commit_index->Set(static_cast<double>(commit_index_.load()));
  metrics_->applied_index->Set(static_cast<double>(applied_index_.load()));
  const uint64_t first = core_->raft_log().FirstIndex().value();
  const uint64_t last = core_->last_index().value();
  metrics_->log_entries->Set(last >= first ? static_cast<double>(last - first + 1) : 0);
  metrics_->log_bytes->Set(static_cast<double>(log_bytes_since_compaction_));
  metrics_->pending_proposals->Set(static_cast<double>(pending_requests_.load()));
}

void Node::LearnAddresses(const std::vector<raft::Entry>& entries) {
  for (const raft::Entry& e : entries) {
    if (e.type != raft::EntryType::kConfChange) continue;
    auto cc = raft::ConfChange::Decode(e.data);
    if (!cc) continue;
    std::optional<Member> m = DecodeMemberContext(cc->context);
    if (!m || m->peer_address.empty()) continue;
    m->id = cc->node_id.value();
    {
      absl::MutexLock lock(&members_mu_);
      announced_[m->id] = *m;
    }
    if (transport_ != nullptr && m->id != options_.id.value()) {
      transport_->UpsertPeer(NodeId(m->id), m->peer_address);
    }
  }
}

void Node::ApplyCommitted(std::vector<raft::Entry>& entries) {
  if (entries.empty()) return;
  std::vector<kv::ApplyItem> items;
  items.reserve(entries.size());
  // The member list is copied only when a configuration entry is applied:
  // the common batch of client commands pays nothing for it.
  std::optional<MemberList> members;
  for (raft::Entry& e : entries) {
    kv::ApplyItem item;
    item.index = e.index.value();
    item.term = e.term.value();
    switch (e.type) {
      case raft::EntryType::kNormal:
        item.type = kv::ApplyItemType::kCommand;
        item.data = std::move(e.data);
        break;
      case raft::EntryType::kNoOp:
        item.type = kv::ApplyItemType::kNoOp;
        break;
      case raft::EntryType::kConfChange: {
        // The committed member list is replicated state: every replica
        // rewrites it identically when it applies the change.
        auto cc = raft::ConfChange::Decode(e.data);
        if (!cc) {
          item.type = kv::ApplyItemType::kOtherRaftEntry;
          break;
        }
        if (!members) {
          absl::MutexLock lock(&members_mu_);
          members = members_;
        }
        members = members->Apply(*cc);
        kv::Command put = kv::Command::Put(std::string(kMembersKey, kMembersKeyLength), members->Encode());
        item.type = kv::ApplyItemType::kCommand;
        item.data = kv::EncodeCommand(put);
        LOG_INFO("node %llu: membership change at %llu committed: %s node %llu",
                 static_cast<unsigned long long>(options_.id.value()),
                 static_cast<unsigned long long>(e.index.value()),
                 cc->type == raft::ConfChangeType::kRemoveNode       ? "removed"
                 : cc->type == raft::ConfChangeType::kPromoteLearner ? "promoted"
                 : cc->type == raft::ConfChangeType::kAddVoter       ? "added voter"
                                                                      : "added learner",
                 static_cast<unsigned long long>(cc->node_id.value()));
        break;
      }
    }
    items.push_back(std::move(item));
  }
  metrics_->apply_batch_entries->Observe(static_cast<double>(items.size()));
  auto results = kv_->Apply(items);
  if (!results.ok()) {
    Fatal(results.status());
    return;
  }
  if (members) {
    absl::MutexLock lock(&members_mu_);
    members_ = std::move(*members);
  }
  applied_index_ = kv_->applied_index();
  for (size_t i = 0; i < entries.size(); ++i) {
    auto it = ops_by_index_.find(entries[i].index.value());
    if (it == ops_by_index_.end()) continue;
    const uint64_t op_id = it->second;
    ops_by_index_.erase(it);
    auto op = ops_.find(op_id);
    if (op == ops_.end()) continue;
    if (op->second->term != entries[i].term) {
      // Another leader's entry took our index: ours was never committed.
      metrics_->Proposals("superseded").Increment();
      CompleteOp(op_id, NotProposed(UnavailableWithLeader(
                            "leadership changed before the write committed (it did not take effect)", leader_id_)));
      continue;
    }
    const kv::ApplyResult& r = (*results)[i];
    metrics_->Proposals(r.ToStatus().ok() ? "ok" : "failed").Increment();
    op->second->command_result = r.result;
    CompleteOp(op_id, r.ToStatus());
  }
}

void Node::InstallSnapshot(const raft::SnapshotMeta& meta) {
  std::unique_ptr<kv::SnapshotWriter> writer;
  {
    absl::MutexLock lock(&staged_mu_);
    auto it = finished_snapshots_.find(meta.index.value());
    if (it != finished_snapshots_.end()) {
      writer = std::move(it->second);
      finished_snapshots_.erase(it);
    }
    // Older staged images are useless now.
    finished_snapshots_.erase(finished_snapshots_.begin(), finished_snapshots_.lower_bound(meta.index.value()));
  }
  if (writer == nullptr) {
    Fatal(absl::InternalError(absl::StrCat("no staged snapshot image at index ", meta.index.value())));
    return;
  }
  const absl::Time start = absl::Now();
  absl::StatusOr<kv::SnapshotHeader> header = kv_->FinishRestore(std::move(writer));
  if (!header.ok() && header.status().code() != absl::StatusCode::kFailedPrecondition) {
    Fatal(header.status());
    return;
  }
  auto stored = kv_->Get(absl::string_view(kMembersKey, kMembersKeyLength));
  if (stored.ok() && stored->has_value()) {
    if (auto list = MemberList::Decode(**stored); list.ok()) {
      absl::MutexLock lock(&members_mu_);
      members_ = *list;
      for (const auto& [id, m] : members_.members()) {
        if (id != options_.id.value() && transport_ != nullptr) transport_->UpsertPeer(NodeId(id), m.peer_address);
      }
    }
  }
  applied_index_ = kv_->applied_index();
  metrics_->snapshots_installed->Increment();
  metrics_->snapshot_install_seconds->Observe(absl::ToDoubleSeconds(absl::Now() - start));
  LOG_INFO("node %llu installed a snapshot at index %llu (term %llu) in %.1f ms",
           static_cast<unsigned long long>(options_.id.value()), static_cast<unsigned long long>(meta.index.value()),
           static_cast<unsigned long long>(meta.term.value()), absl::ToDoubleMilliseconds(absl::Now() - start));
}

namespace {
int64_t SteadyNowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}
}  // namespace

// The core's lease holds while fewer than `left` more ticks happen; the
// next tick is due at next_tick_, so the lease ends when tick `left` is due.
// Only while everything committed is applied: a lease read off the node
// thread comes from the store as it is, which must hold every write that a
// completed operation may have seen: acknowledged in this term or by
// earlier leaders (etcd #7331), or read on a follower at a commit index
// this leader sent it. Every commit index leaves through SendMessages,
// which calls this first.
void Node::PublishLease() {
  int64_t until = 0;
  const int64_t left = fatal_.ok() ? core_->LeaseTicksLeft() : 0;
  if (left > 0 && kv_->applied_index() >= core_->commit_index().value()) {
    const int64_t next_tick_ns =
        std::chrono::duration_cast<std::chrono::nanoseconds>(next_tick_.time_since_epoch()).count();
    until = next_tick_ns + (left - 1) * absl::ToInt64Nanoseconds(options_.tick_interval);
  }
  lease_until_ns_.store(until);
}

bool Node::LeaseHeld() const {
  const int64_t until = lease_until_ns_.load();
  return until != 0 && SteadyNowNs() < until;
}

void Node::ServeReads() {
  const uint64_t applied = kv_->applied_index();
  while (!reads_waiting_.empty() && reads_waiting_.begin()->first <= applied) {
    const uint64_t op_id = reads_waiting_.begin()->second;
    reads_waiting_.erase(reads_waiting_.begin());
    CompleteOp(op_id, absl::OkStatus());
  }
}

void Node::ExpireDeadlines() {
  const absl::Time now = absl::Now();
  while (!deadlines_.empty() && deadlines_.begin()->first <= now) {
    const uint64_t op_id = deadlines_.begin()->second;
    deadlines_.erase(deadlines_.begin());
    if (ops_.contains(op_id)) {
      CompleteOp(op_id, absl::DeadlineExceededError(
                            "deadline exceeded before the outcome was known (a write may still take effect)"));
    }
  }
}

void Node::MaybeCompact() {
  const uint64_t first = core_->raft_log().FirstIndex().value();
  const uint64_t last = core_->last_index().value();
  const uint64_t entries = last >= first ? last - first + 1 : 0;
  if (!compaction_->ShouldSnapshot(entries, log_bytes_since_compaction_)) return;
  // Make the state machine durable at its applied index, then drop the log
  // below it, keeping a tail for followers slightly behind.
  const absl::Time start = absl::Now();
  auto reader = kv_->CreateSnapshot();
  if (!reader.ok()) {
    LOG_WARN("snapshot failed: %s", reader.status().ToString().c_str());
    return;
  }
  const uint64_t snapshot_index = (*reader)->header().applied_index;
  reader->reset();
  const uint64_t compact_to = compaction_->CompactIndex(snapshot_index);
  if (compact_to < first) return;
  if (absl::Status s = core_->Compact(Index(compact_to)); !s.ok()) {
    LOG_WARN("log compaction to %llu failed: %s", static_cast<unsigned long long>(compact_to), s.ToString().c_str());
    return;
  }
  auto stats = kv_->Stats();
  kv::CompactionState state;
  state.remaining_log_entries = last > compact_to ? last - compact_to : 0;
  state.remaining_log_bytes = entries == 0 ? 0 : log_bytes_since_compaction_ * state.remaining_log_entries / entries;
  if (stats.ok()) {
    state.state_keys = stats->key_count;
    state.state_bytes = stats->user_bytes;
  }
  log_bytes_since_compaction_ = state.remaining_log_bytes;
  compaction_->OnCompacted(state);
  metrics_->snapshots_taken->Increment();
  metrics_->snapshot_take_seconds->Observe(absl::ToDoubleSeconds(absl::Now() - start));
  LOG_INFO("node %llu took a snapshot at %llu and compacted its log up to %llu",
           static_cast<unsigned long long>(options_.id.value()), static_cast<unsigned long long>(snapshot_index),
           static_cast<unsigned long long>(compact_to));
}

void Node::Fatal(absl::Status status) {
  if (!fatal_.ok()) return;
  fatal_ = status;
  failed_ = true;
  lease_until_ns_ = 0;
  LOG_ERROR("node %llu stopped serving: %s", static_cast<unsigned long long>(options_.id.value()),
            status.ToString().c_str());
  // Whatever the cause (a full disk, a failed fsync, damage found), the
  // requests in flight may or may not have taken effect on the cluster.
  FailAll(absl::UnavailableError("this node failed: " + std::string(status.message()) +
                                 "; the request may or may not have taken effect; retry on another node"));
}

// Unavailable, not DATA_LOSS: the cluster is fine and another node serves
// the request; not proposed, so a client may retry it anywhere.
absl::Status Node::FailedNodeError() const {
  return NotProposed(
      absl::UnavailableError("this node failed: " + std::string(fatal_.message()) + "; retry on another node"));
}

// ---------------------------------------------------------------------------
// Pending operations.

uint64_t Node::AddOp(PendingOp op) {
  const uint64_t id = next_op_id_++;
  deadlines_.emplace(op.deadline, id);
  ops_[id] = std::make_unique<PendingOp>(std::move(op));
  return id;
}

ResponseInfo Node::Info() const {
  return ResponseInfo{options_.id.value(), term_.load(), applied_index_.load()};
}

void Node::CompleteOp(uint64_t op_id, absl::Status status) {
  auto it = ops_.find(op_id);
  if (it == ops_.end()) return;
  std::unique_ptr<PendingOp> op = std::move(it->second);
  ops_.erase(it);
  if (transfer_op_ == op_id) transfer_op_.reset();
  --pending_requests_;
  const ResponseInfo info = Info();
  switch (op->kind) {
    case PendingOp::Kind::kWrite:
      if (status.ok()) {
        op->write_done(WriteOutcome{op->command_result, info});
      } else {
        op->write_done(status);
      }
      break;
    case PendingOp::Kind::kRead:
      if (!status.ok()) {
        op->read_done(status);
        break;
      }
      (op->consistency == ReadConsistency::kLease ? metrics_->lease_reads : metrics_->read_index_reads)->Increment();
      if (op->barrier) {
        op->read_done(ReadOutcome{std::nullopt, op->read_index.value(), info});
      } else {
        auto value = kv_->Get(op->key);
        if (!value.ok()) {
          op->read_done(value.status());
        } else {
          op->read_done(ReadOutcome{*value, op->read_index.value(), info});
        }
      }
      break;
    case PendingOp::Kind::kConfChange:
      if (status.ok()) {
        absl::MutexLock lock(&members_mu_);
        op->conf_done(members_.ToVector());
      } else {
        op->conf_done(status);
      }
      break;
    case PendingOp::Kind::kTransfer:
      if (status.ok()) {
        op->transfer_done(leader_id_.load());
      } else {
        op->transfer_done(status);
      }
      break;
  }
}

void Node::FailAll(const absl::Status& status) {
  std::vector<uint64_t> ids;
  for (const auto& [id, op] : ops_) ids.push_back(id);
  for (uint64_t id : ids) CompleteOp(id, status);
  ops_by_index_.clear();
  reads_waiting_.clear();
  deadlines_.clear();
}

absl::Status Node::NotLeaderError(const std::string& what) const {
  return NotProposed(UnavailableWithLeader(what, leader_id_.load()));
}

// ---------------------------------------------------------------------------
// Client operations.

void Node::Write(kv::Command command, absl::Time deadline,
                 std::function<void(absl::StatusOr<WriteOutcome>)> done) {
  if (failed_) {
    done(FailedNodeError());
    return;
  }
  if (pending_requests_.load() >= options_.max_pending_requests) {
    done(TooManyPendingError());
    return;
  }
  ++pending_requests_;
  auto shared_done = std::make_shared<std::function<void(absl::StatusOr<WriteOutcome>)>>(std::move(done));
  const bool posted = Post([this, command = std::move(command), deadline, shared_done]() mutable {
    --pending_requests_;
    ProposeWrite(std::move(command), deadline, std::move(*shared_done));
  });
  if (!posted) {
    --pending_requests_;
    // The event never ran, so nothing reached the log: a retry is safe.
    (*shared_done)(NotProposed(absl::UnavailableError("node is shutting down or overloaded; retry")));
  }
}

void Node::ProposeWrite(kv::Command command, absl::Time deadline,
                        std::function<void(absl::StatusOr<WriteOutcome>)> done) {
  if (shutting_down_) {
    done(NotProposed(absl::UnavailableError("node is shutting down; retry on another node")));
    return;
  }
  if (!fatal_.ok()) {
    done(FailedNodeError());
    return;
  }
  if (absl::Now() >= deadline) {
    done(NotProposed(
        absl::DeadlineExceededError("deadline exceeded before the write was proposed (it did not take effect)")));
    return;
  }
  if (core_->role() != Role::kLeader) {
    const uint64_t leader = core_->leader().value();
    if (leader == 0 || transport_ == nullptr) {
      done(NotLeaderError("this node is not the leader"));
      return;
    }
    // Forward to the leader; the answer comes back on a transport thread.
    metrics_->Proposals("forwarded").Increment();
    transport_->ForwardPropose(NodeId(leader), kv::EncodeCommand(command), deadline - absl::Now(),
                               [this, done = std::move(done)](ForwardResult r) {
                                 if (!r.status.ok()) {
                                   done(r.status);
                                   return;
                                 }
                                 auto result = kv::DecodeCommandResult(r.result);
                                 if (!result.ok()) {
                                   done(absl::InternalError("the leader's answer did not decode: " +
                                                            std::string(result.status().message())));
                                   return;
                                 }
                                 done(WriteOutcome{*result, ResponseInfo{options_.id.value(), r.term,
                                                                         r.applied_index}});
                               });
    return;
  }
  // The leader stamps the command with its clock: session expiry is decided
  // from time carried in the log, never from a replica's clock.
  command.proposed_at_unix_ms = static_cast<uint64_t>(absl::ToUnixMillis(absl::Now()));
  auto proposed = core_->Propose(kv::EncodeCommand(command));
  if (!proposed.ok()) {
    absl::Status s = proposed.status();
    if (s.code() == absl::StatusCode::kFailedPrecondition) {
      // Not proposed, and passing: not the leader any more, a leadership
      // transfer under way, or quorum contact lost. Clients retry these.
      s = core_->role() != Role::kLeader ? NotLeaderError("this node is not the leader")
                                         : NotProposed(absl::UnavailableError(std::string(s.message()) + "; retry"));
    }
    metrics_->Proposals("failed").Increment();
    done(s);
    return;
  }
  PendingOp op;
  op.kind = PendingOp::Kind::kWrite;
  op.deadline = deadline;
  op.index = proposed->first;
  op.term = proposed->second;
  op.write_done = std::move(done);
  ++pending_requests_;
  const uint64_t id = AddOp(std::move(op));
  ops_by_index_[proposed->first.value()] = id;
}

void Node::Read(std::string key, ReadConsistency consistency, absl::Time deadline,
                std::function<void(absl::StatusOr<ReadOutcome>)> done) {
  if (failed_) {
    done(FailedNodeError());
    return;
  }
  // A serializable read, or a lease read while this leader's lease holds,
  // is served from the applied state on the caller's thread: no trip
  // through the node thread. A lease read is linearizable here because the
  // store holds every write any completed operation may have seen
  // (PublishLease) and no other leader can exist before the lease ends. As
  // PITFALLS asks, the lease must still hold once the value is read (the
  // fence keeps the store's reads before that second look), or the read
  // takes the node thread's path. A serializable read may be stale.
  if (consistency == ReadConsistency::kSerializable ||
      (consistency == ReadConsistency::kLease && LeaseHeld())) {
    auto value = kv_->Get(key);
    if (!value.ok()) {
      done(value.status());
      return;
    }
    const uint64_t applied = kv_->applied_index();
    if (consistency == ReadConsistency::kSerializable) {
      metrics_->serializable_reads->Increment();
      done(ReadOutcome{*value, applied, Info()});
      return;
    }
    std::atomic_thread_fence(std::memory_order_seq_cst);
    if (LeaseHeld()) {
      metrics_->lease_reads->Increment();
      done(ReadOutcome{*value, applied, Info()});
      return;
    }
  }
  if (pending_requests_.load() >= options_.max_pending_requests) {
    done(TooManyPendingError());
    return;
  }
  ++pending_requests_;
  auto shared_done = std::make_shared<std::function<void(absl::StatusOr<ReadOutcome>)>>(std::move(done));
  const bool posted = Post([this, key = std::move(key), consistency, deadline, shared_done]() mutable {
    --pending_requests_;
    StartRead(std::move(key), false, consistency, deadline, std::move(*shared_done));
  });
  if (!posted) {
    --pending_requests_;
    (*shared_done)(absl::UnavailableError("node is shutting down or overloaded; retry"));
  }
}

void Node::ReadBarrier(absl::Time deadline, std::function<void(absl::StatusOr<ReadOutcome>)> done) {
  if (failed_) {
    done(FailedNodeError());
    return;
  }
  ++pending_requests_;
  auto shared_done = std::make_shared<std::function<void(absl::StatusOr<ReadOutcome>)>>(std::move(done));
  if (!Post([this, deadline, shared_done]() mutable {
        --pending_requests_;
        StartRead("", true, ReadConsistency::kLinearizable, deadline, std::move(*shared_done));
      })) {
    --pending_requests_;
    (*shared_done)(absl::UnavailableError("node is shutting down or overloaded; retry"));
  }
}

void Node::StartRead(std::string key, bool barrier, ReadConsistency consistency, absl::Time deadline,
                     std::function<void(absl::StatusOr<ReadOutcome>)> done) {
  if (shutting_down_ || !fatal_.ok()) {
    done(absl::UnavailableError(shutting_down_ ? "node is shutting down; retry on another node"
                                               : "this node failed; retry on another node"));
    return;
  }
  PendingOp op;
  op.kind = PendingOp::Kind::kRead;
  op.deadline = deadline;
  op.key = std::move(key);
  op.barrier = barrier;
  op.consistency = consistency;
  op.read_done = std::move(done);
  ++pending_requests_;
  const uint64_t id = AddOp(std::move(op));
  // Every read, and every retry, takes a fresh read index (etcd #20418).
  absl::Status s = core_->ReadIndex(
      id, consistency == ReadConsistency::kLease ? raft::ReadMode::kLease : raft::ReadMode::kReadIndex);
  if (!s.ok()) {
    CompleteOp(id, s.code() == absl::StatusCode::kUnavailable ? NotLeaderError(std::string(s.message())) : s);
  }
}

void Node::Status(std::function<void(NodeStatusInfo)> done) {
  auto shared_done = std::make_shared<std::function<void(NodeStatusInfo)>>(std::move(done));
  auto fill = [this](NodeStatusInfo& s) {
    s.node_id = options_.id.value();
    s.cluster_id = options_.cluster_id;
    absl::MutexLock lock(&members_mu_);
    MemberList view = members_;
    for (const auto& [id, m] : announced_) {
      if (const Member* existing = view.Find(id); existing != nullptr && existing->client_address.empty()) {
        Member merged = *existing;
        merged.client_address = m.client_address;
        view.Upsert(merged);
      }
    }
    s.members = view.ToVector();
  };
  if (!Post([this, shared_done, fill] {
        NodeStatusInfo s;
        fill(s);
        s.role = raft::RoleName(core_->role());
        s.term = core_->term().value();
        s.leader_id = core_->leader().value();
        s.commit_index = core_->commit_index().value();
        s.applied_index = kv_->applied_index();
        s.first_index = core_->raft_log().FirstIndex().value();
        s.last_index = core_->last_index().value();
        s.info = Info();
        (*shared_done)(std::move(s));
      })) {
    NodeStatusInfo s;
    fill(s);
    s.role = failed_ ? "failed" : "stopped";
    s.term = term_.load();
    s.leader_id = leader_id_.load();
    s.commit_index = commit_index_.load();
    s.applied_index = applied_index_.load();
    s.info = Info();
    (*shared_done)(std::move(s));
  }
}

void Node::ChangeMembership(raft::ConfChange change, absl::Time deadline,
                            std::function<void(absl::StatusOr<std::vector<Member>>)> done) {
  auto shared_done = std::make_shared<std::function<void(absl::StatusOr<std::vector<Member>>)>>(std::move(done));
  if (!Post([this, change, deadline, shared_done] {
        if (shutting_down_) {
          (*shared_done)(NotProposed(absl::UnavailableError("node is shutting down; retry")));
          return;
        }
        if (core_->role() != Role::kLeader) {
          (*shared_done)(NotLeaderError("membership changes go to the leader"));
          return;
        }
        auto proposed = core_->ProposeConfChange(change);
        if (!proposed.ok()) {
          // UNAVAILABLE for a refusal that passes (another change in
          // flight...), FAILED_PRECONDITION for one that does not: the
          // client retries only the first.
          (*shared_done)(NotProposed(proposed.status()));
          return;
        }
        PendingOp op;
        op.kind = PendingOp::Kind::kConfChange;
        op.deadline = deadline;
        op.index = proposed->first;
        op.term = proposed->second;
        op.conf_done = std::move(*shared_done);
        ++pending_requests_;
        const uint64_t id = AddOp(std::move(op));
        ops_by_index_[proposed->first.value()] = id;
      })) {
    (*shared_done)(NotProposed(absl::UnavailableError("node is shutting down or overloaded; retry")));
  }
}

void Node::TransferLeadership(raft::NodeId target, absl::Time deadline,
                              std::function<void(absl::StatusOr<uint64_t>)> done) {
  auto shared_done = std::make_shared<std::function<void(absl::StatusOr<uint64_t>)>>(std::move(done));
  if (!Post([this, target, deadline, shared_done] {
        if (shutting_down_) {
          (*shared_done)(absl::UnavailableError("node is shutting down; retry"));
          return;
        }
        if (core_->role() != Role::kLeader) {
          (*shared_done)(NotLeaderError("leadership transfer goes to the leader"));
          return;
        }
        NodeId to = target;
        if (to == raft::kNoNode) {
          // The most up-to-date other voter.
          raft::NodeStatus st = core_->GetStatus();
          Index best;
          for (const auto& [id, pr] : st.progress) {
            if (!pr.is_learner && (to == raft::kNoNode || pr.match_index > best)) {
              to = id;
              best = pr.match_index;
            }
          }
          if (to == raft::kNoNode) {
            (*shared_done)(absl::FailedPreconditionError("there is no other voter to transfer leadership to"));
            return;
          }
        }
        if (to == options_.id) {
          (*shared_done)(options_.id.value());
          return;
        }
        if (transfer_op_) {
          (*shared_done)(absl::FailedPreconditionError("a leadership transfer is already in progress"));
          return;
        }
        if (absl::Status s = core_->TransferLeadership(to); !s.ok()) {
          (*shared_done)(s);
          return;
        }
        LOG_INFO("node %llu transfers leadership to node %llu", static_cast<unsigned long long>(options_.id.value()),
                 static_cast<unsigned long long>(to.value()));
        PendingOp op;
        op.kind = PendingOp::Kind::kTransfer;
        op.deadline = deadline;
        op.transfer_target = to;
        op.transfer_done = std::move(*shared_done);
        ++pending_requests_;
        transfer_op_ = AddOp(std::move(op));
      })) {
    (*shared_done)(absl::UnavailableError("node is shutting down or overloaded; retry"));
  }
}

bool Node::Healthy() const {
  return !failed_ && leader_id_.load() != 0 && applied_index_.load() >= commit_index_.load();
}

std::string Node::LeaderClientAddress() const {
  const uint64_t leader = leader_id_.load();
  if (leader == 0) return "";
  absl::MutexLock lock(&members_mu_);
  if (const Member* m = members_.Find(leader); m != nullptr && !m->client_address.empty()) return m->client_address;
  auto it = announced_.find(leader);
  return it == announced_.end() ? "" : it->second.client_address;
}

// ---------------------------------------------------------------------------
// PeerHandler.

void Node::OnMessages(std::vector<raft::Message> messages) {
  auto shared = std::make_shared<std::vector<raft::Message>>(std::move(messages));
  Post(
      [this, shared] {
        if (shutting_down_) return;
        for (const raft::Message& m : *shared) {
          if (m.type == raft::MessageType::kAppendEntries && !m.heartbeat) metrics_->append_entries_received->Increment();
          absl::Status s = core_->Step(m);
          if (!s.ok() && !core_->storage_error().ok()) return;
        }
      });
}

absl::StatusOr<std::unique_ptr<SnapshotReceiver>> Node::BeginSnapshot(raft::NodeId from, raft::Term term,
                                                                     const raft::SnapshotMeta& meta) {
  if (failed_) return absl::FailedPreconditionError("this node failed");
  auto writer = kv_->BeginRestore();
  if (!writer.ok()) return writer.status();
  LOG_INFO("node %llu receives a snapshot at index %llu from node %llu",
           static_cast<unsigned long long>(options_.id.value()), static_cast<unsigned long long>(meta.index.value()),
           static_cast<unsigned long long>(from.value()));
  return std::unique_ptr<SnapshotReceiver>(new StagedSnapshotReceiver(this, from, term, meta, std::move(*writer)));
}

void Node::OnForwardPropose(raft::NodeId from, std::string command, std::function<void(ForwardResult)> done) {
  auto decoded = kv::DecodeCommand(command);
  if (!decoded.ok()) {
    ForwardResult r;
    r.status = absl::InvalidArgumentError("forwarded command did not decode: " + std::string(decoded.status().message()));
    done(std::move(r));
    return;
  }
  Write(std::move(*decoded), absl::Now() + absl::Seconds(10), [this, done = std::move(done)](absl::StatusOr<WriteOutcome> w) {
    ForwardResult r;
    r.leader_id = leader_id_.load();
    r.term = term_.load();
    if (!w.ok()) {
      r.status = w.status();
    } else {
      r.result = kv::EncodeCommandResult(w->result);
      r.applied_index = w->info.applied_index;
    }
    done(std::move(r));
  });
}

absl::StatusOr<std::unique_ptr<SnapshotStream>> Node::OpenSnapshot(const raft::SnapshotMeta& requested) {
  // Runs on the node thread, so the image, its index and the configuration
  // at that index are taken together.
  struct Result {
    absl::Mutex mu;
    bool ready = false;
    absl::StatusOr<std::unique_ptr<SnapshotStream>> stream = absl::UnavailableError("node stopped");
  };
  auto result = std::make_shared<Result>();
  auto finish = [result](absl::StatusOr<std::unique_ptr<SnapshotStream>> s) {
    absl::MutexLock lock(&result->mu);
    result->stream = std::move(s);
    result->ready = true;
  };
  if (!Post([this, finish, requested] {
        if (shutting_down_) {
          finish(absl::UnavailableError("node is shutting down"));
          return;
        }
        auto reader = kv_->CreateSnapshot();
        if (!reader.ok()) {
          finish(reader.status());
          return;
        }
        raft::SnapshotMeta meta;
        meta.index = Index((*reader)->header().applied_index);
        meta.term = Term((*reader)->header().applied_term);
        if (meta.index < requested.index) {
          finish(absl::InternalError("state machine snapshot is older than the log's compaction point"));
          return;
        }
        // The configuration as of the snapshot: the committed member list
        // is exactly what the state machine applied.
        absl::MutexLock lock(&members_mu_);
        for (const auto& [id, m] : members_.members()) {
          (m.voter ? meta.conf_state.voters : meta.conf_state.learners).push_back(NodeId(id));
        }
        finish(std::unique_ptr<SnapshotStream>(new KvSnapshotStream(meta, std::move(*reader))));
      })) {
    return absl::UnavailableError("node is shutting down");
  }
  absl::MutexLock lock(&result->mu);
  result->mu.AwaitWithTimeout(absl::Condition(&result->ready), absl::Seconds(30));
  if (!result->ready) return absl::DeadlineExceededError("snapshot creation timed out");
  return std::move(result->stream);
}

void Node::OnUnreachable(raft::NodeId peer) {
  Post([this, peer] {
    if (!shutting_down_) core_->ReportUnreachable(peer);
  });
}

void Node::OnSnapshotStatus(raft::NodeId peer, bool delivered) {
  Post([this, peer, delivered] {
    if (!shutting_down_) core_->ReportSnapshot(peer, delivered);
  });
}

}  // namespace quorumkv::server
