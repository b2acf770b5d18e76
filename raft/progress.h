// The leader's view of one peer's log (Raft Figure 2: next_index and
// match_index), with the flow-control states of etcd's raft:
//   kProbe:     one AppendEntries at a time, until the peer's log position
//               is found (after start-up or a rejection);
//   kReplicate: optimistic pipelining, up to a window of messages in flight;
//   kSnapshot:  an InstallSnapshot is under way; nothing else is sent.
#pragma once

#include <cstdint>
#include <deque>

#include "raft/types.h"

namespace quorumkv::raft {

enum class ProgressState : uint8_t { kProbe, kReplicate, kSnapshot };
const char* ProgressStateName(ProgressState state);

class Progress {
 public:
  Progress() = default;
  Progress(Index next_index, int max_inflight) : next_index(next_index), max_inflight_(max_inflight) {}

  // Invariant: match_index < next_index.
  Index match_index;
  Index next_index{1};
  ProgressState state = ProgressState::kProbe;
  // kProbe: one message was sent since the last response; wait.
  bool probe_sent = false;
  // kSnapshot: the index of the snapshot being sent.
  Index pending_snapshot;
  // The highest heartbeat round this peer has echoed in the current term.
  uint64_t acked_round = 0;
  // The leader's tick when this peer last responded (CheckQuorum).
  int64_t last_contact_tick = 0;
  bool is_learner = false;

  void BecomeProbe();
  void BecomeReplicate();
  void BecomeSnapshot(Index snapshot_index);

  // A successful response: returns false if it was stale (no progress).
  bool MaybeUpdate(Index match);
  // Pipelining: an AppendEntries ending at `last` is now in flight.
  void OptimisticUpdate(Index last) { next_index = last + 1; }
  // A rejection of an AppendEntries with prev_log_index `rejected`; `hint`
  // is where to try next. Returns false if the rejection is stale.
  bool MaybeDecreaseTo(Index rejected, Index hint);

  // Whether the leader must hold further AppendEntries to this peer.
  bool IsPaused() const;
  void SentAppend(Index last_index_sent, bool had_entries);
  // Frees the in-flight slots of messages ending at or below `index`.
  void FreeInflightsTo(Index index);
  // Frees the oldest in-flight slot, whatever it holds: a heartbeat answer
  // proves the peer is reachable, so a window filled by lost messages must
  // not stall replication forever (etcd's FreeFirstOne).
  void FreeFirstInflight() {
    if (!inflight_.empty()) inflight_.pop_front();
  }
  size_t inflight_count() const { return inflight_.size(); }

 private:
  int max_inflight_ = 64;
  // Last index of each AppendEntries in flight (kReplicate), ascending.
  std::deque<Index> inflight_;
};

}  // namespace quorumkv::raft
