#include "raft/config.h"

#include <set>

namespace quorumkv::raft {

absl::Status Config::Validate() const {
  if (id == kNoNode) return absl::InvalidArgumentError("node id must be > 0");
  if (heartbeat_interval_ticks <= 0) {
    return absl::InvalidArgumentError("heartbeat interval must be at least one tick");
  }
  if (election_timeout_ticks <= heartbeat_interval_ticks) {
    return absl::InvalidArgumentError("election timeout must exceed the heartbeat interval");
  }
  if (lease_drift_margin_ticks < 0 || lease_ticks() <= heartbeat_interval_ticks) {
    return absl::InvalidArgumentError(
        "lease drift margin must be >= 0 and leave a lease longer than the heartbeat interval");
  }
  if (max_entries_per_message == 0 || max_bytes_per_message == 0 || max_inflight_messages <= 0) {
    return absl::InvalidArgumentError("message batching limits must be positive");
  }
  if (max_uncommitted_entries == 0) return absl::InvalidArgumentError("max uncommitted entries must be > 0");
  std::set<NodeId> seen;
  for (NodeId v : initial_voters) {
    if (v == kNoNode) return absl::InvalidArgumentError("initial voter id 0");
    if (!seen.insert(v).second) return absl::InvalidArgumentError("initial voter listed twice");
  }
  if (!initial_voters.empty() && !seen.contains(id)) {
    return absl::InvalidArgumentError("initial voters must include this node");
  }
  if (!random) return absl::InvalidArgumentError("a random source is required");
  return absl::OkStatus();
}

}  // namespace quorumkv::raft
