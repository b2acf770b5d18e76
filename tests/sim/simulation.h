// The deterministic cluster simulator behind `raft_sim` (DESIGN.md §6).
//
// N Raft cores run in one thread on a virtual clock (microseconds). Every
// node is driven exactly as the real server drives it: Ready -> persist
// (taking simulated disk time, during which the node keeps receiving
// input) -> apply -> send -> Advance. Around the cores:
//   - a network that delays, drops, duplicates and reorders messages, and
//     blocks links (symmetric and one-way partitions, bridges);
//   - crashes that lose everything not yet persisted, and restarts from
//     the "disk" (a MemoryLogStorage plus the state machine's durable state);
//   - membership changes (grow, shrink, replace), leadership transfers, log
//     compaction and snapshot transfers, clock-rate skew;
//   - clients issuing puts, deletes and gets (ReadIndex, lease and
//     serializable, on leaders and followers) and recording a history that
//     the linearizability checker verifies.
// After every event the SafetyChecker's invariants are checked. When the
// faults stop, a leader must emerge and a write must commit everywhere
// within a bounded virtual time.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace quorumkv::sim {

struct SimOptions {
  uint64_t seed = 1;
  int nodes = 3;  // initial voters: 3, 5 or 7
  // Virtual time with faults, then the bound for recovery after healing.
  int64_t fault_ms = 6000;
  int64_t liveness_ms = 6000;
  int clients = 4;
  int keys = 3;
  // Fault kinds; all on by default.
  bool crashes = true;
  bool pauses = true;  // SIGSTOP-like pauses, leaders included
  bool partitions = true;
  bool lossy_network = true;
  bool membership = true;
  bool transfers = true;
  bool snapshots = true;
  bool clock_skew = true;
  bool lease_reads = true;
  bool follower_reads = true;
  // Record a readable trace of every event (slow; used to replay a failure).
  bool trace = false;
  size_t trace_tail = 120;  // how many of the last events a failure prints
  std::string history_out;  // write the client history here (JSON Lines)
};

struct SimStats {
  uint64_t events = 0;
  uint64_t messages = 0;
  uint64_t ops_invoked = 0;
  uint64_t ops_ok = 0;
  uint64_t ops_failed = 0;
  uint64_t ops_info = 0;
  uint64_t reads_ok = 0;
  uint64_t crashes = 0;
  uint64_t commit_rollbacks = 0;  // crashes that lost an unsynced commit index
  uint64_t partitions = 0;
  uint64_t conf_changes = 0;
  uint64_t transfers = 0;
  uint64_t snapshots_sent = 0;
  uint64_t compactions = 0;
  uint64_t leaders = 0;
  uint64_t committed = 0;
  int64_t recovery_ms = 0;  // from healing to a committed write everywhere
};

struct SimResult {
  bool ok = true;
  std::string invariant;  // the violated invariant, when !ok
  std::string detail;
  std::vector<std::string> trace;  // last events, when traced
  SimStats stats;
  std::string lincheck_outcome;
};

SimResult RunSimulation(const SimOptions& options);

// A one-line fingerprint of a run (its stats and final state), used to test
// that the same seed always gives the same run.
std::string RunFingerprint(const SimOptions& options);

}  // namespace quorumkv::sim
