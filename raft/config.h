// Tunables of one Raft core. All times are in ticks: the core has no clock,
// the driver calls Tick() at a fixed interval (the simulator: virtual time).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "raft/types.h"

namespace quorumkv::raft {

struct Config {
  NodeId id;

  // Voters of a brand-new cluster; used only when the log storage is empty
  // (no hard state, no snapshot). A node that joins an existing cluster
  // leaves this empty and learns its configuration from the leader.
  std::vector<NodeId> initial_voters;
  // Opaque context of each initial voter's bootstrap entry (the server puts
  // the member's addresses there); must be the same on every founding node.
  std::map<NodeId, std::string> initial_voter_contexts;

  // A follower starts an election after a randomized timeout in
  // [election_timeout_ticks, 2 * election_timeout_ticks).
  int election_timeout_ticks = 10;
  int heartbeat_interval_ticks = 1;

  // Leader lease (thesis §6.4.1): lease reads are served for
  // election_timeout_ticks - lease_drift_margin_ticks after the send of the
  // last heartbeat round a quorum acknowledged. The margin covers clock-rate
  // differences between nodes.
  int lease_drift_margin_ticks = 2;

  // Batching and pipelining of AppendEntries.
  uint64_t max_entries_per_message = 256;
  uint64_t max_bytes_per_message = 1 << 20;
  // AppendEntries in flight per peer in the replicate state.
  int max_inflight_messages = 64;

  // A leader refuses proposals beyond this many uncommitted entries
  // (back-pressure) and returns RESOURCE_EXHAUSTED.
  uint64_t max_uncommitted_entries = 10000;

  // A caught-up learner is promoted to voter by the leader.
  bool auto_promote_learners = true;

  // Source of the randomness: returns a uniform value in [0, n). The caller
  // owns the generator and its seed, so a run is reproducible.
  std::function<uint64_t(uint64_t n)> random;

  int lease_ticks() const { return election_timeout_ticks - lease_drift_margin_ticks; }
  absl::Status Validate() const;
};

}  // namespace quorumkv::raft
