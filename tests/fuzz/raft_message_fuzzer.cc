// libFuzzer target: the Raft core's handling of its inputs (raft/raft.h).
//
// One node (id 1) over a MemoryLogStorage, set up from the first input
// bytes as one of: a fresh 1-, 3- or 5-voter cluster, a node joining with no
// configuration, or a restarted node whose disk already holds a snapshot,
// a log (configuration entries included) and a hard state. The rest of the
// input is a sequence of operations:
//   Tick (a few, each optionally followed by Ready processing), Step(an
//   arbitrary message: type, sender, term, indexes, entries, snapshot, read
//   ids all drawn from the input), Reply (a peer's answer to one of the
//   messages the node sent), Propose, ProposeConfChange, ReadIndex,
//   TransferLeadership, Compact, ReportSnapshot, ReportUnreachable,
//   Ready processing (optionally crashing before persisting, after
//   persisting or after sending), Crash + restart, and a disk that starts
//   failing its reads (the error must be sticky; the node is then restarted
//   over the repaired disk).
// Ready processing follows the persistence contract of raft.h to the letter:
// persist (one MemoryLogStorage::Persist), send, apply, Advance.
//
// Checked after every operation: Raft::CheckInvariants() (QKV_CHECK; the
// check handler is set to __builtin_trap() so libFuzzer reports it), and by
// this harness: every Ready keeps the persistence contract (no message
// promises a term, vote or entry that is not durable; committed entries are
// durable before they are handed out); entries are applied in order, and an
// index once committed keeps its term forever (also across restarts); the
// durable term, commit index and (within a term) vote never go back; the
// node grants at most one vote per term; API calls fail only with their
// documented codes; a message with bad ids is refused; a node always runs
// out of Readies.
//
// THE PEER MODEL. The core refuses (InvalidArgument, nothing changed) what
// no correct peer sends and it can see locally: malformed messages
// (raft::ValidatePeerMessage) and claims beyond its log (a heartbeat
// committing past the follower's last index, an acknowledgement past the
// leader's). What it cannot see locally (two leaders in one term, say) it
// must trust. The environment variable QKV_FUZZ_PEERS chooses what the
// other nodes may send:
//   correct (default; what ctest runs): only what correct peers could send,
//       over a network that loses, duplicates, delays and reorders: the
//       wire checks below, plus
//       - at most one leader per term (Election Safety): AppendEntries,
//         InstallSnapshot and TimeoutNow of term T come from one node, never
//         in a term this node led;
//       - a leader's log only grows within its term: its AppendEntries of
//         one term agree on the term of every index (and prev) they carry;
//       - a heartbeat's leader_commit is at most what this node acknowledged
//         to that leader in that term (a leader sends min(match, commit));
//       - an InstallSnapshot covers more than this node acknowledged to its
//         leader in that term, and its term is not above the message's;
//       - a response to this node as leader acknowledges no entry beyond its
//         log, and echoes no heartbeat round it did not send to that peer in
//         that term;
//       - configuration entries decode; terms and indexes stay below 2^62.
//   wire: anything that passes the transport's decoding (server/raft_wire.cc
//       DecodeMessage and DecodeSnapshotChunkHeader, mirrored in WireValid
//       below): what a buggy or malicious peer can deliver to a real node.
//   raw: anything at all, to test the core on its own.
// In every mode the node must never crash; only the correct mode also
// checks the safety invariants that depend on correct peers. ctest fuzzes
// the correct and the raw modes.
#include <fuzzer/FuzzedDataProvider.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "raft/check.h"
#include "raft/config.h"
#include "raft/memory_log_storage.h"
#include "raft/message.h"
#include "raft/raft.h"
#include "raft/types.h"

namespace quorumkv::raft::fuzz {
namespace {

enum class PeerModel { kCorrect, kWire, kRaw };
PeerModel g_model = PeerModel::kCorrect;
bool g_verbose = false;

#define FUZZ_CHECK(cond, ...)                                                              \
  do {                                                                                     \
    if (!(cond)) {                                                                         \
      std::fprintf(stderr, "raft_message_fuzzer: %s:%d: check failed: %s: ", __FILE__, __LINE__, \
                   #cond);                                                                 \
      std::fprintf(stderr, __VA_ARGS__);                                                   \
      std::fprintf(stderr, "\n");                                                          \
      __builtin_trap();                                                                    \
    }                                                                                      \
  } while (0)

void TrapOnCheckFailure(const std::string& message) {
  std::fprintf(stderr, "raft_message_fuzzer: QKV_CHECK failed: %s\n", message.c_str());
  __builtin_trap();
}

constexpr NodeId kSelf{1};
constexpr uint64_t kStranger = 9;  // never in any configuration we build
constexpr uint64_t kTooBig = uint64_t{1} << 62;
constexpr int kMaxOps = 3000;
constexpr size_t kSentKept = 64;

uint64_t SplitMix(uint64_t& state) {
  uint64_t z = (state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

// What the transport lets through (server/raft_wire.cc): DecodeMessage's own
// field checks (entries with non-zero index and term and a known type),
// then raft::ValidatePeerMessage, which DecodeMessage and the snapshot
// receiver call. Sender and receiver ids are left to the core, which
// refuses them itself (checked).
bool WireValid(const Message& m) {
  for (const Entry& e : m.entries) {
    if (e.index == Index(0) || e.term == Term(0)) return false;
    if (static_cast<uint8_t>(e.type) > static_cast<uint8_t>(EntryType::kConfChange)) return false;
  }
  return ValidatePeerMessage(m).ok();
}

// The harness's disk: a MemoryLogStorage whose reads (and compactions) can
// be made to fail, as a damaged disk would. The core must then report the
// failure from every later call (it is sticky) and never crash; the harness
// restarts the node over the repaired disk.
class FaultyStorage : public LogStorage {
 public:
  HardState hard_state() const override { return disk_.hard_state(); }
  SnapshotMeta snapshot_meta() const override { return disk_.snapshot_meta(); }
  Index FirstIndex() const override { return disk_.FirstIndex(); }
  Index LastIndex() const override { return disk_.LastIndex(); }
  absl::StatusOr<Term> TermAt(Index i) const override {
    if (failing && i != disk_.snapshot_meta().index && i >= disk_.FirstIndex() && i <= disk_.LastIndex()) {
      return absl::DataLossError("entry " + std::to_string(i.value()) + " is unreadable (injected)");
    }
    return disk_.TermAt(i);
  }
  absl::StatusOr<std::vector<Entry>> Entries(Index lo, Index hi, uint64_t max_bytes) const override {
    if (failing) return absl::DataLossError("entries unreadable (injected)");
    return disk_.Entries(lo, hi, max_bytes);
  }
  absl::Status Persist(const PersistBatch& batch) override { return disk_.Persist(batch); }
  absl::Status Compact(const SnapshotMeta& meta) override {
    if (failing) return absl::DataLossError("compaction failed (injected)");
    return disk_.Compact(meta);
  }

  // What is really on the disk, for the harness's own checks.
  const MemoryLogStorage& disk() const { return disk_; }
  bool failing = false;

 private:
  MemoryLogStorage disk_;
};

class Harness {
 public:
  explicit Harness(FuzzedDataProvider& fdp) : fdp_(fdp) {}

  void Run() {
    Setup();
    for (int op = 0; op < kMaxOps && fdp_.remaining_bytes() > 0 && alive_; ++op) {
      Step();
      if (!alive_) break;
      if (!core_->storage_error().ok()) HandleStorageFailure();
      NoteLeadership();
      core_->CheckInvariants();
      CheckCommittedStable();
    }
    if (alive_) DrainAll();
  }

 private:
  // --- set-up -------------------------------------------------------------

  void Setup() {
    const uint64_t seed = fdp_.ConsumeIntegral<uint64_t>();
    config_.id = kSelf;
    config_.election_timeout_ticks = fdp_.ConsumeIntegralInRange<int>(3, 12);
    config_.heartbeat_interval_ticks =
        fdp_.ConsumeIntegralInRange<int>(1, std::max(1, config_.election_timeout_ticks / 3));
    config_.lease_drift_margin_ticks = fdp_.ConsumeIntegralInRange<int>(
        0, config_.election_timeout_ticks - config_.heartbeat_interval_ticks - 1);
    config_.max_entries_per_message = fdp_.ConsumeIntegralInRange<uint64_t>(1, 8);
    config_.max_bytes_per_message = fdp_.ConsumeIntegralInRange<uint64_t>(1, 512);
    config_.max_inflight_messages = fdp_.ConsumeIntegralInRange<int>(1, 4);
    config_.max_uncommitted_entries = fdp_.ConsumeIntegralInRange<uint64_t>(1, 32);
    config_.auto_promote_learners = fdp_.ConsumeBool();
    auto state = std::make_shared<uint64_t>(seed);
    config_.random = [state](uint64_t n) { return SplitMix(*state) % n; };

    switch (fdp_.ConsumeIntegralInRange<int>(0, 4)) {
      case 0:
        config_.initial_voters = {NodeId(1), NodeId(2), NodeId(3)};
        break;
      case 1:
        config_.initial_voters = {NodeId(1)};
        break;
      case 2:
        config_.initial_voters = {NodeId(1), NodeId(2), NodeId(3), NodeId(4), NodeId(5)};
        break;
      case 3:
        break;  // joining: no configuration until a leader sends one
      case 4:
        Preload();
        break;
    }
    for (NodeId v : config_.initial_voters) {
      config_.initial_voter_contexts[v] = "ctx" + std::to_string(v.value());
    }
    FUZZ_CHECK(config_.Validate().ok(), "bad harness config: %s", config_.Validate().ToString().c_str());
    Restart();
  }

  // A restarted node: snapshot (index k, with a configuration), entries
  // after it (some configuration entries), a hard state.
  void Preload() {
    const uint64_t k = fdp_.ConsumeIntegralInRange<uint64_t>(0, 6);
    uint64_t term = k == 0 ? 0 : fdp_.ConsumeIntegralInRange<uint64_t>(1, 3);
    SnapshotMeta meta;
    meta.index = Index(k);
    meta.term = Term(term);
    meta.conf_state.voters = {NodeId(1), NodeId(2), NodeId(3)};
    if (fdp_.ConsumeBool()) meta.conf_state.learners = {NodeId(4)};
    PersistBatch first;
    first.snapshot = meta;
    FUZZ_CHECK(storage_.Persist(first).ok(), "preload snapshot");
    PersistBatch batch;
    const uint64_t n = fdp_.ConsumeIntegralInRange<uint64_t>(0, 10);
    for (uint64_t i = 0; i < n; ++i) {
      term = std::max<uint64_t>(1, term + fdp_.ConsumeIntegralInRange<uint64_t>(0, 1));
      Entry e{Index(k + 1 + i), Term(term), EntryType::kNormal, "p" + std::to_string(i)};
      if (fdp_.ConsumeIntegralInRange<int>(0, 5) == 0) {
        e.type = EntryType::kConfChange;
        e.data = GenConfChange().Encode();
      }
      batch.entries.push_back(e);
    }
    HardState hs;
    hs.current_term = Term(term + fdp_.ConsumeIntegralInRange<uint64_t>(0, 2));
    hs.voted_for = NodeId(fdp_.ConsumeIntegralInRange<uint64_t>(0, 3));
    hs.commit_index = Index(fdp_.ConsumeIntegralInRange<uint64_t>(k, k + n));
    batch.hard_state = hs;
    FUZZ_CHECK(storage_.Persist(batch).ok(), "preload entries");
    applied_ = Index(fdp_.ConsumeIntegralInRange<uint64_t>(k, hs.commit_index.value()));
    last_hard_ = hs;
  }

  void Restart() {
    // The state machine holds at least the storage's snapshot (the core
    // treats it as applied; so does a real server after a restart).
    applied_ = std::max(applied_, storage_.snapshot_meta().index);
    if (storage_.failing) {
      // Over a damaged disk the node refuses to start, or starts without
      // needing the damaged part; then the disk is repaired.
      auto damaged = Raft::Create(config_, &storage_, applied_);
      FUZZ_CHECK(damaged.ok() || damaged.status().code() == absl::StatusCode::kDataLoss,
                 "Raft::Create over a damaged disk: %s", damaged.status().ToString().c_str());
      storage_.failing = false;
    }
    auto core = Raft::Create(config_, &storage_, applied_);
    FUZZ_CHECK(core.ok(), "Raft::Create over a valid storage failed: %s", core.status().ToString().c_str());
    core_ = std::move(*core);
    alive_ = true;
    FUZZ_CHECK(core_->commit_index() >= last_hard_.commit_index,
               "restart lost the durable commit index (%llu < %llu)",
               static_cast<unsigned long long>(core_->commit_index().value()),
               static_cast<unsigned long long>(last_hard_.commit_index.value()));
  }

  // --- generators ---------------------------------------------------------

  uint64_t PickNode() {
    static constexpr uint64_t kNodes[] = {2, 3, 2, 3, 4, 5, 6, kStranger, 0, 1};
    return fdp_.PickValueInArray(kNodes);
  }

  Term PickTerm() {
    const int how = fdp_.ConsumeIntegralInRange<int>(0, 15);
    if (how == 0) return Term(0);
    if (how == 1) return Term(UINT64_MAX - fdp_.ConsumeIntegralInRange<uint64_t>(0, 1));
    const int64_t delta = fdp_.ConsumeIntegralInRange<int64_t>(-2, 3);
    const uint64_t t = core_->term().value();
    return Term(delta < 0 && static_cast<uint64_t>(-delta) > t ? 0 : t + delta);
  }

  Index PickIndex() {
    const int how = fdp_.ConsumeIntegralInRange<int>(0, 15);
    if (how == 0) return Index(UINT64_MAX - fdp_.ConsumeIntegralInRange<uint64_t>(0, 2));
    uint64_t base = 0;
    switch (how % 5) {
      case 0: base = 0; break;
      case 1: base = core_->last_index().value(); break;
      case 2: base = core_->commit_index().value(); break;
      case 3: base = core_->raft_log().FirstIndex().value(); break;
      case 4: base = core_->applied_index().value(); break;
    }
    const int64_t delta = fdp_.ConsumeIntegralInRange<int64_t>(-3, 3);
    return Index(delta < 0 && static_cast<uint64_t>(-delta) > base ? 0 : base + delta);
  }

  // The term of an entry of the node's log, as a peer that shares the log
  // would know it; 0 if absent. Not through the core while the disk fails
  // (the read would record a storage error in it).
  Term TermOf(Index i) {
    if (storage_.failing) return Term(0);
    return core_->raft_log().TermAt(i).value_or(Term(0));
  }

  ConfChange GenConfChange() {
    ConfChange cc;
    cc.type = static_cast<ConfChangeType>(fdp_.ConsumeIntegralInRange<uint8_t>(0, 3));
    cc.node_id = NodeId(fdp_.ConsumeIntegralInRange<uint64_t>(0, 6));
    cc.context = fdp_.ConsumeRandomLengthString(8);
    return cc;
  }

  ConfState GenConfState() {
    ConfState c;
    const uint8_t voters = fdp_.ConsumeIntegral<uint8_t>();
    const uint8_t learners = fdp_.ConsumeIntegral<uint8_t>();
    for (uint64_t id = 1; id <= 6; ++id) {
      if (voters & (1u << (id - 1))) {
        c.voters.push_back(NodeId(id));
      } else if (learners & (1u << (id - 1))) {
        c.learners.push_back(NodeId(id));
      }
    }
    if (g_model != PeerModel::kCorrect && fdp_.ConsumeIntegralInRange<int>(0, 7) == 0) {
      // Malformed: unsorted, duplicated, zero ids, a voter also a learner.
      switch (fdp_.ConsumeIntegralInRange<int>(0, 3)) {
        case 0: std::reverse(c.voters.begin(), c.voters.end()); c.voters.push_back(NodeId(1)); break;
        case 1: c.voters.push_back(NodeId(0)); break;
        case 2: c.learners.push_back(NodeId(1)); break;
        case 3: c.voters.push_back(c.voters.empty() ? NodeId(2) : c.voters.front()); break;
      }
    }
    return c;
  }

  std::vector<Entry> GenEntries(Index prev, Term prev_term, Term msg_term) {
    std::vector<Entry> entries;
    const size_t n = fdp_.ConsumeIntegralInRange<size_t>(0, 5);
    Term t = prev_term;
    for (size_t i = 0; i < n; ++i) {
      if (fdp_.ConsumeBool() && t < msg_term) t = t + 1;
      if (t == Term(0)) t = Term(1);
      Entry e;
      e.index = prev + (i + 1);
      e.term = t;
      const int kind = fdp_.ConsumeIntegralInRange<int>(0, 7);
      if (kind == 0) {
        e.type = EntryType::kNoOp;
      } else if (kind == 1) {
        e.type = EntryType::kConfChange;
        e.data = GenConfChange().Encode();
        if (g_model != PeerModel::kCorrect && fdp_.ConsumeIntegralInRange<int>(0, 3) == 0) {
          e.data = fdp_.ConsumeRandomLengthString(12);  // not a ConfChange
        }
      } else {
        e.data = fdp_.ConsumeRandomLengthString(40);
      }
      if (g_model == PeerModel::kRaw && fdp_.ConsumeIntegralInRange<int>(0, 7) == 0) {
        // Whatever the fuzzer likes, checks or not.
        e.index = Index(fdp_.ConsumeIntegralInRange<uint64_t>(0, 40));
        e.term = Term(fdp_.ConsumeIntegralInRange<uint64_t>(0, 8));
        e.type = static_cast<EntryType>(fdp_.ConsumeIntegralInRange<uint8_t>(0, 4));
      }
      entries.push_back(std::move(e));
    }
    return entries;
  }

  Message GenMessage() {
    Message m;
    m.type = static_cast<MessageType>(fdp_.ConsumeIntegralInRange<uint8_t>(0, 8));
    m.from = NodeId(PickNode());
    m.to = fdp_.ConsumeIntegralInRange<int>(0, 31) == 0 ? NodeId(PickNode()) : kSelf;
    m.term = PickTerm();
    switch (m.type) {
      case MessageType::kRequestVote:
        m.pre_vote = fdp_.ConsumeBool();
        m.leadership_transfer = fdp_.ConsumeIntegralInRange<int>(0, 3) == 0;
        m.last_log_index = PickIndex();
        m.last_log_term = std::min(PickTerm(), m.term);
        break;
      case MessageType::kRequestVoteResponse:
        m.pre_vote = fdp_.ConsumeBool();
        m.vote_granted = fdp_.ConsumeBool();
        break;
      case MessageType::kAppendEntries:
        m.heartbeat = fdp_.ConsumeIntegralInRange<int>(0, 2) == 0;
        m.leader_commit = PickIndex();
        m.read_round = fdp_.ConsumeIntegralInRange<uint64_t>(0, 6);
        if (!m.heartbeat) {
          m.prev_log_index = PickIndex();
          m.prev_log_term = fdp_.ConsumeIntegralInRange<int>(0, 3) != 0 ? TermOf(m.prev_log_index) : PickTerm();
          if (m.prev_log_term > m.term && g_model == PeerModel::kCorrect) m.prev_log_term = m.term;
          m.entries = GenEntries(m.prev_log_index, m.prev_log_term, m.term);
        }
        break;
      case MessageType::kAppendEntriesResponse:
        m.success = fdp_.ConsumeBool();
        m.heartbeat = fdp_.ConsumeIntegralInRange<int>(0, 2) == 0;
        m.match_index = PickIndex();
        m.rejected_index = PickIndex();
        m.conflict_index = PickIndex();
        m.conflict_term = PickTerm();
        m.read_round = fdp_.ConsumeIntegralInRange<uint64_t>(0, 6);
        break;
      case MessageType::kInstallSnapshot:
        m.snapshot.meta.index = PickIndex();
        m.snapshot.meta.term = fdp_.ConsumeBool() ? TermOf(m.snapshot.meta.index) : PickTerm();
        if (m.snapshot.meta.term == Term(0)) m.snapshot.meta.term = m.term;
        m.snapshot.meta.conf_state = GenConfState();
        break;
      case MessageType::kInstallSnapshotResponse:
        m.success = fdp_.ConsumeBool();
        m.match_index = PickIndex();
        break;
      case MessageType::kTimeoutNow:
        break;
      case MessageType::kReadIndex:
        m.read_id = fdp_.ConsumeIntegralInRange<uint64_t>(0, 16);
        m.lease_read = fdp_.ConsumeBool();
        break;
      case MessageType::kReadIndexResponse:
        m.read_id = fdp_.ConsumeIntegralInRange<uint64_t>(0, 16);
        m.read_index = PickIndex();
        m.success = fdp_.ConsumeBool();
        break;
    }
    return m;
  }

  // A peer's answer to one of the messages this node sent.
  std::optional<Message> GenReply() {
    if (sent_.empty()) return std::nullopt;
    const Message& s = sent_[fdp_.ConsumeIntegralInRange<size_t>(0, sent_.size() - 1)];
    Message r;
    r.from = s.to;
    r.to = s.from;
    r.term = s.term;
    // Sometimes the peer has moved on to a later term.
    if (fdp_.ConsumeIntegralInRange<int>(0, 7) == 0) r.term = s.term + 1;
    switch (s.type) {
      case MessageType::kRequestVote:
        r.type = MessageType::kRequestVoteResponse;
        r.pre_vote = s.pre_vote;
        r.vote_granted = r.term == s.term && fdp_.ConsumeIntegralInRange<int>(0, 3) != 0;
        break;
      case MessageType::kAppendEntries:
        r.type = MessageType::kAppendEntriesResponse;
        r.heartbeat = s.heartbeat;
        r.read_round = s.read_round;
        if (s.heartbeat || fdp_.ConsumeIntegralInRange<int>(0, 3) != 0) {
          r.success = true;
          r.match_index = s.heartbeat ? Index(0) : s.prev_log_index + s.entries.size();
        } else {
          r.success = false;
          r.rejected_index = s.prev_log_index;
          r.conflict_index = Index(fdp_.ConsumeIntegralInRange<uint64_t>(0, s.prev_log_index.value() + 1));
          r.conflict_term = Term(fdp_.ConsumeIntegralInRange<uint64_t>(0, s.prev_log_term.value()));
        }
        break;
      case MessageType::kInstallSnapshot:
        r.type = MessageType::kInstallSnapshotResponse;
        r.success = fdp_.ConsumeIntegralInRange<int>(0, 3) != 0;
        r.match_index = s.snapshot.meta.index;
        break;
      case MessageType::kReadIndex:
        r.type = MessageType::kReadIndexResponse;
        r.read_id = s.read_id;
        r.success = fdp_.ConsumeIntegralInRange<int>(0, 3) != 0;
        r.read_index = Index(fdp_.ConsumeIntegralInRange<uint64_t>(0, core_->last_index().value() + 1));
        break;
      case MessageType::kTimeoutNow:
      case MessageType::kRequestVoteResponse:
      case MessageType::kAppendEntriesResponse:
      case MessageType::kInstallSnapshotResponse:
      case MessageType::kReadIndexResponse:
        return std::nullopt;  // nothing answers these
    }
    return r;
  }

  // --- the peer model -------------------------------------------------------

  static bool LeaderMessage(const Message& m) {
    return m.type == MessageType::kAppendEntries || m.type == MessageType::kInstallSnapshot ||
           m.type == MessageType::kTimeoutNow;
  }

  uint64_t Acked(const Message& m) const {
    auto it = acked_.find({m.from.value(), m.term.value()});
    return it == acked_.end() ? 0 : it->second;
  }

  // What a correct peer could send (see the file comment).
  bool CorrectPeerCouldSend(const Message& m) const {
    if (m.term.value() >= kTooBig || m.last_log_term.value() >= kTooBig ||
        m.prev_log_term.value() >= kTooBig || m.conflict_term.value() >= kTooBig ||
        m.snapshot.meta.term.value() >= kTooBig || m.last_log_index.value() >= kTooBig ||
        m.prev_log_index.value() >= kTooBig || m.leader_commit.value() >= kTooBig ||
        m.match_index.value() >= kTooBig || m.rejected_index.value() >= kTooBig ||
        m.conflict_index.value() >= kTooBig || m.snapshot.meta.index.value() >= kTooBig ||
        m.read_index.value() >= kTooBig) {
      return false;
    }
    if (LeaderMessage(m)) {
      if (core_->role() == Role::kLeader && m.term == core_->term()) return false;
      auto led = leader_of_term_.find(m.term.value());
      if (led != leader_of_term_.end() && led->second != m.from.value()) return false;
    }
    if (m.type == MessageType::kAppendEntries) {
      if (m.prev_log_term > m.term) return false;
      for (const Entry& e : m.entries) {
        if (e.type == EntryType::kConfChange && !ConfChange::Decode(e.data)) return false;
      }
      // A leader's log only grows within its term: everything it sends in
      // that term agrees on the term of each index.
      auto sent = leader_log_.find({m.from.value(), m.term.value()});
      if (sent != leader_log_.end()) {
        auto agrees = [&](Index i, Term t) {
          auto it = sent->second.find(i.value());
          return it == sent->second.end() || it->second == t.value();
        };
        if (m.prev_log_index > Index(0) && !agrees(m.prev_log_index, m.prev_log_term)) return false;
        for (const Entry& e : m.entries) {
          if (!agrees(e.index, e.term)) return false;
        }
      }
      if (m.heartbeat && m.leader_commit.value() > Acked(m)) return false;
    }
    if (m.type == MessageType::kInstallSnapshot) {
      if (m.snapshot.meta.term > m.term) return false;
      if (acked_.contains({m.from.value(), m.term.value()}) && m.snapshot.meta.index.value() <= Acked(m)) {
        return false;
      }
    }
    const bool to_leader = core_->role() == Role::kLeader && m.term == core_->term();
    if (to_leader && (m.type == MessageType::kAppendEntriesResponse ||
                      m.type == MessageType::kInstallSnapshotResponse)) {
      if (m.success && m.match_index > core_->last_index()) return false;
    }
    if (to_leader && m.type == MessageType::kAppendEntriesResponse) {
      auto it = rounds_sent_.find({m.from.value(), m.term.value()});
      if (m.read_round > (it == rounds_sent_.end() ? 0 : it->second)) return false;
    }
    return true;
  }

  bool ClaimsTooMuch(const Message& m) const {
    if (m.type == MessageType::kAppendEntries && m.heartbeat && m.term >= core_->term() &&
        m.leader_commit > core_->last_index()) {
      return true;
    }
    return AcknowledgesEntries(m) && core_->role() == Role::kLeader && m.term == core_->term() &&
           m.match_index > core_->last_index();
  }

  bool Admissible(const Message& m) const {
    switch (g_model) {
      case PeerModel::kRaw: return true;
      case PeerModel::kWire: return WireValid(m);
      case PeerModel::kCorrect: return WireValid(m) && CorrectPeerCouldSend(m);
    }
    return false;
  }

  void Deliver(const Message& m) {
    if (!Admissible(m)) return;
    const bool bad_ids = m.to != kSelf || m.from == kSelf || m.from == kNoNode;
    if (g_model == PeerModel::kCorrect && LeaderMessage(m) && !bad_ids) {
      leader_of_term_.emplace(m.term.value(), m.from.value());
      if (m.type == MessageType::kAppendEntries) {
        std::map<uint64_t, uint64_t>& log = leader_log_[{m.from.value(), m.term.value()}];
        if (m.prev_log_index > Index(0)) log.emplace(m.prev_log_index.value(), m.prev_log_term.value());
        for (const Entry& e : m.entries) log.emplace(e.index.value(), e.term.value());
      }
    }
    // Raft::Step refuses, changing nothing, a malformed message and one
    // claiming more of a log than exists (Raft::CheckPeerClaims).
    const bool malformed = !ValidatePeerMessage(m).ok() || ClaimsTooMuch(m);
    const Term term_before = core_->term();
    const Index last_before = core_->last_index();
    const Index commit_before = core_->commit_index();
    if (g_verbose) std::fprintf(stderr, "  step %s\n", m.DebugString().c_str());
    absl::Status s = core_->Step(m);
    NoteLeadership();
    if (storage_.failing && s == core_->storage_error()) return;
    if (malformed && !bad_ids) {
      FUZZ_CHECK(s.code() == absl::StatusCode::kInvalidArgument && !s.message().empty(),
                 "a malformed message was not refused: %s -> %s", m.DebugString().c_str(), s.ToString().c_str());
      FUZZ_CHECK(core_->term() == term_before && core_->last_index() == last_before &&
                     core_->commit_index() == commit_before,
                 "a refused message changed the node: %s", m.DebugString().c_str());
      return;
    }
    if (bad_ids) {
      FUZZ_CHECK(s.code() == absl::StatusCode::kInvalidArgument,
                 "a message with bad ids was not refused: %s -> %s", m.DebugString().c_str(),
                 s.ToString().c_str());
      return;
    }
    FUZZ_CHECK(s.ok() || (storage_.failing && s == core_->storage_error()),
               "Step failed without a storage error: %s -> %s", m.DebugString().c_str(), s.ToString().c_str());
  }

  // --- operations ---------------------------------------------------------

  void CheckCode(const absl::Status& s, std::initializer_list<absl::StatusCode> allowed, const char* what) {
    if (storage_.failing && s.code() == absl::StatusCode::kDataLoss) return;
    for (absl::StatusCode c : allowed) {
      if (s.code() == c) {
        FUZZ_CHECK(s.ok() || !s.message().empty(), "%s failed without a message", what);
        return;
      }
    }
    FUZZ_CHECK(false, "%s returned an undocumented status: %s", what, s.ToString().c_str());
  }

  void Step() {
    const uint8_t op = fdp_.ConsumeIntegral<uint8_t>() % 21;
    if (g_verbose) {
      std::fprintf(stderr, "op %u: role %s term %llu commit %llu last %llu\n", op, RoleName(core_->role()),
                   static_cast<unsigned long long>(core_->term().value()),
                   static_cast<unsigned long long>(core_->commit_index().value()),
                   static_cast<unsigned long long>(core_->last_index().value()));
    }
    switch (op) {
      case 0:
      case 1: {  // ticks, each optionally followed by the Ready
        const int n = fdp_.ConsumeIntegralInRange<int>(1, 2 * config_.election_timeout_ticks);
        const bool drain = fdp_.ConsumeBool();
        for (int i = 0; i < n && alive_ && core_->storage_error().ok(); ++i) {
          CheckCode(core_->Tick(), {absl::StatusCode::kOk}, "Tick");
          NoteLeadership();
          core_->CheckInvariants();
          if (drain) DrainAll();
        }
        break;
      }
      case 2:
      case 3:
      case 4:
        Deliver(GenMessage());
        break;
      case 5:
      case 6:
      case 7:
      case 8:
        if (auto r = GenReply()) Deliver(*r);
        break;
      case 9:
      case 10:
        ProcessReady(static_cast<CrashPoint>(fdp_.ConsumeIntegralInRange<int>(0, 7) == 0
                                                 ? fdp_.ConsumeIntegralInRange<int>(1, 3)
                                                 : 0));
        break;
      case 11: {
        auto r = core_->Propose(fdp_.ConsumeRandomLengthString(32));
        CheckCode(r.status(), {absl::StatusCode::kOk, absl::StatusCode::kFailedPrecondition,
                               absl::StatusCode::kResourceExhausted}, "Propose");
        break;
      }
      case 12: {
        auto r = core_->ProposeConfChange(GenConfChange());
        CheckCode(r.status(), {absl::StatusCode::kOk, absl::StatusCode::kFailedPrecondition,
                               absl::StatusCode::kUnavailable, absl::StatusCode::kInvalidArgument,
                               absl::StatusCode::kAlreadyExists, absl::StatusCode::kNotFound},
                  "ProposeConfChange");
        break;
      }
      case 13: {
        const uint64_t id = fdp_.ConsumeBool() ? ++next_read_id_ : fdp_.ConsumeIntegralInRange<uint64_t>(0, 16);
        CheckCode(core_->ReadIndex(id, fdp_.ConsumeBool() ? ReadMode::kLease : ReadMode::kReadIndex),
                  {absl::StatusCode::kOk, absl::StatusCode::kUnavailable}, "ReadIndex");
        break;
      }
      case 14:
        CheckCode(core_->TransferLeadership(NodeId(PickNode())),
                  {absl::StatusCode::kOk, absl::StatusCode::kFailedPrecondition,
                   absl::StatusCode::kInvalidArgument}, "TransferLeadership");
        break;
      case 15: {
        Index at = PickIndex();
        if (fdp_.ConsumeBool()) at = std::min(at, core_->applied_index());
        CheckCode(core_->Compact(at), {absl::StatusCode::kOk, absl::StatusCode::kInvalidArgument},
                  "Compact");
        break;
      }
      case 16:
        core_->ReportSnapshot(NodeId(PickNode()), fdp_.ConsumeBool());
        break;
      case 17:
        core_->ReportUnreachable(NodeId(PickNode()));
        break;
      case 18:
        Crash();
        Restart();
        break;
      case 19:
        DrainAll();
        break;
      case 20:
        storage_.failing = true;  // the disk goes bad
        break;
    }
  }

  // The core hit a storage error: it must return it from every call from
  // now on. The real server stops; the harness restarts over a repaired disk.
  void HandleStorageFailure() {
    const absl::Status error = core_->storage_error();
    FUZZ_CHECK(error.code() == absl::StatusCode::kDataLoss, "storage error %s", error.ToString().c_str());
    FUZZ_CHECK(core_->Tick() == error, "a storage error is not sticky (Tick)");
    Message m;
    m.type = MessageType::kAppendEntries;
    m.from = NodeId(2);
    m.to = kSelf;
    m.heartbeat = true;
    FUZZ_CHECK(core_->Step(m) == error, "a storage error is not sticky (Step)");
    FUZZ_CHECK(core_->Propose("x").status() == error, "a storage error is not sticky (Propose)");
    FUZZ_CHECK(core_->ReadIndex(1, ReadMode::kReadIndex) == error, "a storage error is not sticky (ReadIndex)");
    Crash();
    Restart();
  }

  // --- Ready processing (the persistence contract) --------------------------

  enum class CrashPoint { kNone = 0, kBeforePersist = 1, kAfterPersist = 2, kAfterSend = 3 };

  void DrainAll() {
    for (int guard = 0; alive_ && core_->storage_error().ok() && core_->HasReady(); ++guard) {
      FUZZ_CHECK(guard < 1000, "the node never runs out of Readies");
      ProcessReady(CrashPoint::kNone);
    }
  }

  void Crash() {
    core_.reset();
    alive_ = false;
  }

  void ProcessReady(CrashPoint point) {
    if (!core_->HasReady()) return;
    Ready rd = core_->GetReady();
    if (!core_->storage_error().ok()) return;  // the node stops; the next check restarts it
    if (point == CrashPoint::kBeforePersist) {
      Crash();
      Restart();
      return;
    }
    // 1. Persist hard state, snapshot and entries in one write.
    if (rd.hard_state || rd.snapshot || !rd.entries.empty()) {
      PersistBatch batch;
      batch.hard_state = rd.hard_state;
      if (rd.snapshot) batch.snapshot = rd.snapshot->meta;
      batch.entries = rd.entries;
      absl::Status s = storage_.Persist(batch);
      FUZZ_CHECK(s.ok(), "a Ready asked for an impossible write: %s", s.ToString().c_str());
    }
    if (rd.hard_state) CheckHardStateProgress(*rd.hard_state);
    CheckReadyAgainstContract(rd);
    if (point == CrashPoint::kAfterPersist) {
      Crash();
      Restart();
      return;
    }
    // 2. Send.
    for (const Message& m : rd.messages) Sent(m);
    if (point == CrashPoint::kAfterSend) {
      Crash();
      Restart();
      return;
    }
    // 3. Apply, then 4. Advance.
    if (rd.snapshot) {
      FUZZ_CHECK(rd.snapshot->meta.index >= applied_, "snapshot below the applied index");
      applied_ = rd.snapshot->meta.index;
    }
    for (const Entry& e : rd.committed_entries) {
      FUZZ_CHECK(e.index == applied_ + 1, "applies entry %llu after %llu",
                 static_cast<unsigned long long>(e.index.value()),
                 static_cast<unsigned long long>(applied_.value()));
      auto [it, inserted] = committed_terms_.emplace(e.index.value(), e.term.value());
      FUZZ_CHECK(inserted || it->second == e.term.value(),
                 "entry %llu committed with term %llu, earlier with term %llu",
                 static_cast<unsigned long long>(e.index.value()),
                 static_cast<unsigned long long>(e.term.value()), static_cast<unsigned long long>(it->second));
      applied_ = e.index;
    }
    core_->Advance(rd);
  }

  void CheckHardStateProgress(const HardState& hs) {
    FUZZ_CHECK(hs.current_term >= last_hard_.current_term, "durable term went back");
    if (hs.current_term == last_hard_.current_term && last_hard_.voted_for != kNoNode) {
      FUZZ_CHECK(hs.voted_for == last_hard_.voted_for, "durable vote changed within term %llu",
                 static_cast<unsigned long long>(hs.current_term.value()));
    }
    FUZZ_CHECK(hs.commit_index >= last_hard_.commit_index, "durable commit index went back");
    last_hard_ = hs;
  }

  // The same checks as tests/raft/raft_test_util.cc, TestNode's.
  void CheckReadyAgainstContract(const Ready& rd) {
    const MemoryLogStorage& disk = storage_.disk();
    const HardState hs = disk.hard_state();
    for (const Message& m : rd.messages) {
      FUZZ_CHECK(m.from == kSelf, "message sent as node %llu", static_cast<unsigned long long>(m.from.value()));
      const bool future_term = (m.type == MessageType::kRequestVote && m.pre_vote) ||
                               (m.type == MessageType::kRequestVoteResponse && m.pre_vote && m.vote_granted);
      if (!future_term) {
        FUZZ_CHECK(m.term <= hs.current_term, "sends %s before its term is durable", m.DebugString().c_str());
      }
      // A vote (or self-vote) is a promise about its term. When the durable
      // term is already later, the promise holds without the vote on disk:
      // the node can never vote in that term again (a message queued before
      // the node moved on to a later term within the same Ready).
      if (m.type == MessageType::kRequestVoteResponse && !m.pre_vote && m.vote_granted) {
        FUZZ_CHECK(hs.current_term > m.term || (hs.current_term == m.term && hs.voted_for == m.to),
                   "vote granted before it is durable: %s", m.DebugString().c_str());
        auto [it, inserted] = votes_.emplace(m.term.value(), m.to.value());
        FUZZ_CHECK(it->second == m.to.value(), "two votes in term %llu: for %llu and %llu",
                   static_cast<unsigned long long>(m.term.value()), static_cast<unsigned long long>(it->second),
                   static_cast<unsigned long long>(m.to.value()));
      }
      if (m.type == MessageType::kRequestVote && !m.pre_vote) {
        FUZZ_CHECK(hs.current_term > m.term || (hs.current_term == m.term && hs.voted_for == kSelf),
                   "campaign before its self-vote is durable: %s", m.DebugString().c_str());
      }
      if (AcknowledgesEntries(m)) {
        FUZZ_CHECK(disk.LastIndex() >= m.match_index, "acknowledges entries it has not persisted: %s",
                   m.DebugString().c_str());
      }
    }
    for (const Entry& e : rd.committed_entries) {
      FUZZ_CHECK(e.index <= disk.LastIndex(), "committed entry %llu handed out before it is durable",
                 static_cast<unsigned long long>(e.index.value()));
      if (e.index >= disk.FirstIndex()) {
        auto term = disk.TermAt(e.index);
        FUZZ_CHECK(term.ok() && *term == e.term, "committed entry %llu differs from the durable log",
                   static_cast<unsigned long long>(e.index.value()));
      }
    }
  }

  // What the rest of the world learns from a message this node sent.
  void Sent(const Message& m) {
    if (AcknowledgesEntries(m)) {
      uint64_t& a = acked_[{m.to.value(), m.term.value()}];
      a = std::max(a, m.match_index.value());
    }
    if (m.type == MessageType::kAppendEntries) {
      uint64_t& r = rounds_sent_[{m.to.value(), m.term.value()}];
      r = std::max(r, m.read_round);
    }
    sent_.push_back(m);
    if (sent_.size() > kSentKept) sent_.pop_front();
  }

  // The peer model: a term this node led has no other leader.
  void NoteLeadership() {
    if (core_->role() == Role::kLeader) leader_of_term_.emplace(core_->term().value(), kSelf.value());
  }

  // An index once committed keeps its term while it is in the log.
  void CheckCommittedStable() {
    if (storage_.failing) return;  // reading would record a storage error in the core
    const RaftLog& log = core_->raft_log();
    const Index hi = std::min(log.committed(), log.LastIndex());
    for (auto it = committed_terms_.lower_bound(log.FirstIndex().value());
         it != committed_terms_.end() && it->first <= hi.value(); ++it) {
      std::optional<Term> t = log.TermAt(Index(it->first));
      FUZZ_CHECK(t.has_value() && t->value() == it->second,
                 "committed entry %llu changed term (%llu, was %llu)", static_cast<unsigned long long>(it->first),
                 static_cast<unsigned long long>(t.value_or(Term(0)).value()),
                 static_cast<unsigned long long>(it->second));
    }
  }

  FuzzedDataProvider& fdp_;
  Config config_;
  FaultyStorage storage_;
  std::unique_ptr<Raft> core_;
  bool alive_ = false;

  Index applied_;                              // the state machine's applied index
  HardState last_hard_;                        // the last durable hard state
  std::map<uint64_t, uint64_t> committed_terms_;  // index -> term of every entry applied
  std::map<uint64_t, uint64_t> votes_;         // term -> the candidate this node voted for
  std::deque<Message> sent_;                   // the last messages sent, for replies
  uint64_t next_read_id_ = 100;

  // The peer model's memory of the world.
  std::map<uint64_t, uint64_t> leader_of_term_;                      // term -> leader
  std::map<std::pair<uint64_t, uint64_t>, uint64_t> acked_;          // (leader, term) -> match acked
  std::map<std::pair<uint64_t, uint64_t>, uint64_t> rounds_sent_;    // (peer, term) -> max round
  // (leader, term) -> index -> term of every entry (and prev) it sent.
  std::map<std::pair<uint64_t, uint64_t>, std::map<uint64_t, uint64_t>> leader_log_;
};

}  // namespace
}  // namespace quorumkv::raft::fuzz

extern "C" int LLVMFuzzerInitialize(int* /*argc*/, char*** /*argv*/) {
  using namespace quorumkv::raft::fuzz;
  quorumkv::raft::SetCheckFailureHandler(&TrapOnCheckFailure);
  if (const char* model = std::getenv("QKV_FUZZ_PEERS")) {
    if (std::strcmp(model, "wire") == 0) {
      g_model = PeerModel::kWire;
    } else if (std::strcmp(model, "raw") == 0) {
      g_model = PeerModel::kRaw;
    } else if (std::strcmp(model, "correct") != 0) {
      std::fprintf(stderr, "QKV_FUZZ_PEERS must be correct, wire or raw (got \"%s\")\n", model);
      std::exit(2);
    }
  }
  g_verbose = std::getenv("QKV_FUZZ_VERBOSE") != nullptr;
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  FuzzedDataProvider fdp(data, size);
  quorumkv::raft::fuzz::Harness harness(fdp);
  harness.Run();
  return 0;
}
