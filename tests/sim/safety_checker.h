// Cluster-wide Raft invariants, checked by the simulator after every event
// (Raft paper Figure 3, thesis §3.6):
//   Election Safety      at most one leader per term, across configurations;
//   Log Matching         two durable logs with an entry of the same index and
//                        term are identical up to it (checked with a prefix
//                        hash per entry);
//   Leader Completeness  a new leader's log holds every committed entry;
//   State Machine Safety no two nodes apply different entries at an index;
//   Durability           nothing committed is ever overwritten, a node's
//                        durable term never decreases and its vote in a term
//                        never changes, and an entry is committed only once it
//                        is durable on a quorum of the committing leader's
//                        configuration (so a removed node never counts).
// A violation is reported as a string naming the invariant; empty = fine.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <unordered_map>
#include <vector>

#include "raft/memory_log_storage.h"
#include "raft/raft.h"

namespace quorumkv::sim {

using raft::ConfState;
using raft::Entry;
using raft::HardState;
using raft::Index;
using raft::NodeId;
using raft::Term;

struct Violation {
  std::string invariant;
  std::string detail;
  bool empty() const { return invariant.empty(); }
};

class SafetyChecker {
 public:
  // A node made `batch` durable; `storage` is its disk afterwards.
  Violation OnPersist(NodeId node, const raft::PersistBatch& batch,
                      const raft::MemoryLogStorage& storage);
  // A node compacted its durable log.
  Violation OnCompact(NodeId node, const raft::MemoryLogStorage& storage);
  // The node reported being leader of `term` (from a Ready's soft state).
  Violation OnLeader(NodeId node, Term term, const raft::Raft& core);
  // A leader's commit index advanced to `commit`, an entry of `entry_term`,
  // with configuration `conf`: it must be durable on a quorum of its voters.
  Violation OnLeaderCommit(NodeId leader, Index commit, Term entry_term, const ConfState& conf);
  // A node applied `entry`.
  Violation OnApply(NodeId node, const Entry& entry);

  Index max_committed() const { return Index(committed_.size()); }
  uint64_t leaders_elected() const { return leaders_.size(); }
  // The committed (term, prefix hash) at index i (1-based), if known.
  bool CommittedTermAt(Index i, Term* term) const;

 private:
  struct NodeLog {
    Index base_index;        // storage snapshot index
    uint64_t base_hash = 0;  // prefix hash at base_index
    std::vector<uint64_t> prefix;  // prefix hash of base_index + 1 + k
    std::vector<Term> terms;
    HardState hard_state;
    Index known_commit;
  };
  static uint64_t HashEntry(uint64_t prev, const Entry& e);
  Violation RecordCommitted(NodeId node, Index index, Term term, uint64_t hash);
  bool NodeHasDurable(const NodeLog& log, Index index, uint64_t hash) const;

  std::map<NodeId, NodeLog> nodes_;
  // (index, term) -> prefix hash, for every entry ever made durable anywhere.
  std::map<std::pair<uint64_t, uint64_t>, uint64_t> entry_hash_;
  // committed_[i-1] = (term, prefix hash) of committed entry i; term 0 =
  // not observed (an index a node only ever saw inside a snapshot).
  std::vector<std::pair<Term, uint64_t>> committed_;
  // applied_[i-1] = hash of the entry applied at i (any node).
  std::vector<uint64_t> applied_;
  std::map<uint64_t, NodeId> leaders_;  // term -> leader
};

}  // namespace quorumkv::sim
