#include "raft/progress.h"

#include <algorithm>

namespace quorumkv::raft {

const char* ProgressStateName(ProgressState state) {
  switch (state) {
    case ProgressState::kProbe: return "probe";
    case ProgressState::kReplicate: return "replicate";
    case ProgressState::kSnapshot: return "snapshot";
  }
  return "?";
}

void Progress::BecomeProbe() {
  // Coming back from a snapshot, resume after it (etcd: pendingSnapshot).
  if (state == ProgressState::kSnapshot) {
    next_index = std::max(match_index + 1, pending_snapshot + 1);
  } else {
    next_index = match_index + 1;
  }
  state = ProgressState::kProbe;
  probe_sent = false;
  pending_snapshot = Index(0);
  inflight_.clear();
}

void Progress::BecomeReplicate() {
  state = ProgressState::kReplicate;
  next_index = match_index + 1;
  probe_sent = false;
  pending_snapshot = Index(0);
  inflight_.clear();
}

void Progress::BecomeSnapshot(Index snapshot_index) {
  state = ProgressState::kSnapshot;
  pending_snapshot = snapshot_index;
  probe_sent = false;
  inflight_.clear();
}

bool Progress::MaybeUpdate(Index match) {
  bool updated = false;
  if (match > match_index) {
    match_index = match;
    updated = true;
    probe_sent = false;
  }
  next_index = std::max(next_index, match + 1);
  return updated;
}

bool Progress::MaybeDecreaseTo(Index rejected, Index hint) {
  if (state == ProgressState::kReplicate) {
    // A rejection at or below match_index is stale: that prefix matched.
    if (rejected <= match_index) return false;
    next_index = match_index + 1;
    return true;
  }
  // kProbe: only the answer to the probe in flight (next_index - 1) counts.
  if (next_index == Index(0) || rejected != next_index - 1) return false;
  next_index = std::max(std::min(rejected, hint), match_index + 1);
  probe_sent = false;
  return true;
}

bool Progress::IsPaused() const {
  switch (state) {
    case ProgressState::kProbe: return probe_sent;
    case ProgressState::kReplicate: return inflight_.size() >= static_cast<size_t>(max_inflight_);
    case ProgressState::kSnapshot: return true;
  }
  return true;
}

void Progress::SentAppend(Index last_index_sent, bool had_entries) {
  if (state == ProgressState::kReplicate) {
    if (had_entries) {
      OptimisticUpdate(last_index_sent);
      inflight_.push_back(last_index_sent);
    }
  } else if (state == ProgressState::kProbe) {
    probe_sent = true;
  }
}

void Progress::FreeInflightsTo(Index index) {
  while (!inflight_.empty() && inflight_.front() <= index) inflight_.pop_front();
}

}  // namespace quorumkv::raft
