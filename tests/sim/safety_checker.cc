#include "tests/sim/safety_checker.h"

#include <algorithm>
#include <sstream>

namespace quorumkv::sim {

namespace {
template <typename T>
std::string S(T v) { return std::to_string(v.value()); }
}  // namespace

uint64_t SafetyChecker::HashEntry(uint64_t prev, const Entry& e) {
  // FNV-1a over the previous prefix hash and the entry's fields.
  uint64_t h = 1469598103934665603ull ^ prev;
  auto mix = [&h](const void* data, size_t n) {
    const auto* p = static_cast<const unsigned char*>(data);
    for (size_t i = 0; i < n; ++i) {
      h ^= p[i];
      h *= 1099511628211ull;
    }
  };
  uint64_t index = e.index.value(), term = e.term.value();
  uint8_t type = static_cast<uint8_t>(e.type);
  mix(&index, sizeof index);
  mix(&term, sizeof term);
  mix(&type, sizeof type);
  mix(e.data.data(), e.data.size());
  return h;
}

bool SafetyChecker::CommittedTermAt(Index i, Term* term) const {
  if (i == Index(0) || i.value() > committed_.size()) return false;
  const auto& c = committed_[i.value() - 1];
  if (c.first == Term(0)) return false;
  *term = c.first;
  return true;
}

Violation SafetyChecker::RecordCommitted(NodeId node, Index index, Term term, uint64_t hash) {
  const size_t i = index.value();
  if (committed_.size() < i) committed_.resize(i, {Term(0), 0});
  auto& slot = committed_[i - 1];
  if (slot.first == Term(0)) {
    slot = {term, hash};
    return {};
  }
  if (slot.first != term || slot.second != hash) {
    return {"State Machine Safety",
            "node " + S(node) + " committed entry " + S(index) + " (term " + S(term) +
                ") but entry " + S(index) + " of term " + S(slot.first) + " was committed before"};
  }
  return {};
}

Violation SafetyChecker::OnPersist(NodeId node, const raft::PersistBatch& batch,
                                   const raft::MemoryLogStorage& storage) {
  NodeLog& log = nodes_[node];
  if (batch.hard_state) {
    const HardState& hs = *batch.hard_state;
    if (hs.current_term < log.hard_state.current_term) {
      return {"Durability", "node " + S(node) + " persisted term " + S(hs.current_term) +
                                " after term " + S(log.hard_state.current_term)};
    }
    if (hs.current_term == log.hard_state.current_term && log.hard_state.voted_for != raft::kNoNode &&
        hs.voted_for != log.hard_state.voted_for) {
      return {"Election Safety", "node " + S(node) + " changed its vote in term " +
                                     S(hs.current_term) + " from " + S(log.hard_state.voted_for) +
                                     " to " + S(hs.voted_for)};
    }
    log.hard_state = hs;
  }
  if (batch.snapshot) {
    const raft::SnapshotMeta& meta = *batch.snapshot;
    const bool has_entry = meta.index > log.base_index &&
                           meta.index.value() - log.base_index.value() <= log.terms.size() &&
                           log.terms[meta.index - log.base_index - 1] == meta.term;
    if (has_entry) {
      size_t drop = meta.index - log.base_index;
      log.base_hash = log.prefix[drop - 1];
      log.prefix.erase(log.prefix.begin(), log.prefix.begin() + drop);
      log.terms.erase(log.terms.begin(), log.terms.begin() + drop);
    } else {
      auto it = entry_hash_.find({meta.index.value(), meta.term.value()});
      if (it == entry_hash_.end()) {
        return {"Log Matching", "node " + S(node) + " installed a snapshot at " + S(meta.index) +
                                    "/" + S(meta.term) + ", an entry no node ever made durable"};
      }
      log.base_hash = it->second;
      log.prefix.clear();
      log.terms.clear();
    }
    log.base_index = meta.index;
    if (Violation v = RecordCommitted(node, meta.index, meta.term, log.base_hash); !v.empty()) return v;
    log.known_commit = std::max(log.known_commit, meta.index);
  }
  if (!batch.entries.empty()) {
    const Index first = batch.entries.front().index;
    size_t keep = first - log.base_index - 1;
    // Entries this node already held durably from `first` on are replaced:
    // none of them may be a committed entry (a stale node may write an
    // uncommitted entry of its own at a committed index, but a node that
    // holds a committed entry never loses it).
    for (size_t k = keep; k < log.prefix.size(); ++k) {
      const Index i = log.base_index + (k + 1);
      Term committed_term;
      if (CommittedTermAt(i, &committed_term) && committed_[i.value() - 1].second == log.prefix[k]) {
        const Entry& replacement = batch.entries[std::min(k - keep, batch.entries.size() - 1)];
        if (replacement.index == i && replacement.term == log.terms[k]) continue;  // rewritten as is
        return {"Durability", "node " + S(node) + " replaced its committed entry " + S(i) + " (term " +
                                  S(committed_term) + ")"};
      }
    }
    log.prefix.resize(keep);
    log.terms.resize(keep);
    uint64_t prev = keep == 0 ? log.base_hash : log.prefix.back();
    for (const Entry& e : batch.entries) {
      uint64_t h = HashEntry(prev, e);
      auto [it, inserted] = entry_hash_.emplace(std::make_pair(e.index.value(), e.term.value()), h);
      if (!inserted && it->second != h) {
        return {"Log Matching", "node " + S(node) + " holds entry " + S(e.index) + "/" + S(e.term) +
                                    " whose log prefix differs from another node's entry " +
                                    S(e.index) + "/" + S(e.term)};
      }
      log.prefix.push_back(h);
      log.terms.push_back(e.term);
      prev = h;
    }
  }
  // Everything up to the durable commit index is committed.
  const Index commit = storage.hard_state().commit_index;
  for (Index i = log.known_commit + 1; i <= commit; ++i) {
    if (i <= log.base_index) continue;
    size_t k = i - log.base_index - 1;
    if (k >= log.prefix.size()) {
      return {"Durability", "node " + S(node) + " persisted commit index " + S(commit) +
                                " beyond its durable log (last " + S(log.base_index + log.prefix.size()) + ")"};
    }
    if (Violation v = RecordCommitted(node, i, log.terms[k], log.prefix[k]); !v.empty()) return v;
  }
  log.known_commit = std::max(log.known_commit, commit);
  return {};
}

Violation SafetyChecker::OnCompact(NodeId node, const raft::MemoryLogStorage& storage) {
  NodeLog& log = nodes_[node];
  const Index snap = storage.snapshot_meta().index;
  if (snap <= log.base_index) return {};
  size_t drop = snap - log.base_index;
  if (drop > log.prefix.size()) {
    return {"Durability", "node " + S(node) + " compacted beyond its durable log"};
  }
  log.base_hash = log.prefix[drop - 1];
  log.prefix.erase(log.prefix.begin(), log.prefix.begin() + drop);
  log.terms.erase(log.terms.begin(), log.terms.begin() + drop);
  log.base_index = snap;
  return {};
}

Violation SafetyChecker::OnLeader(NodeId node, Term term, const raft::Raft& core) {
  auto [it, inserted] = leaders_.emplace(term.value(), node);
  if (!inserted && it->second != node) {
    return {"Election Safety", "nodes " + S(it->second) + " and " + S(node) + " both leaders of term " + S(term)};
  }
  // Leader Completeness: every entry committed so far is in the new leader's log.
  const raft::RaftLog& log = core.raft_log();
  const Index max_committed(committed_.size());
  if (log.LastIndex() < max_committed) {
    return {"Leader Completeness", "leader " + S(node) + " of term " + S(term) + " has last index " +
                                       S(log.LastIndex()) + " below committed index " + S(max_committed)};
  }
  for (Index i = std::max(log.FirstIndex(), Index(1)); i <= max_committed; ++i) {
    Term committed_term;
    if (!CommittedTermAt(i, &committed_term)) continue;
    auto t = log.TermAt(i);
    if (!t || *t != committed_term) {
      return {"Leader Completeness", "leader " + S(node) + " of term " + S(term) + " lacks committed entry " +
                                         S(i) + " (term " + S(committed_term) + ")"};
    }
  }
  return {};
}

bool SafetyChecker::NodeHasDurable(const NodeLog& log, Index index, uint64_t hash) const {
  if (index <= log.base_index) return true;  // covered by its snapshot
  size_t k = index - log.base_index - 1;
  return k < log.prefix.size() && log.prefix[k] == hash;
}

Violation SafetyChecker::OnLeaderCommit(NodeId leader, Index commit, Term entry_term, const ConfState& conf) {
  // The leader itself need not hold the entry durably yet (it replicates
  // while writing, thesis §10.2.1): what matters is a quorum of durable
  // copies in its configuration.
  auto it = entry_hash_.find({commit.value(), entry_term.value()});
  if (it == entry_hash_.end()) {
    return {"Durability", "leader " + S(leader) + " committed " + S(commit) + " (term " + S(entry_term) +
                              ") which no node has made durable"};
  }
  const uint64_t hash = it->second;
  size_t durable = 0;
  std::ostringstream who;
  for (NodeId v : conf.voters) {
    auto n = nodes_.find(v);
    if (n != nodes_.end() && NodeHasDurable(n->second, commit, hash)) {
      ++durable;
      who << " " << v;
    }
  }
  if (durable < conf.voters.size() / 2 + 1) {
    return {"Durability", "leader " + S(leader) + " committed " + S(commit) + " durable only on [" + who.str() +
                              " ] of " + conf.ToString()};
  }
  return {};
}

Violation SafetyChecker::OnApply(NodeId node, const Entry& entry) {
  const size_t i = entry.index.value();
  const uint64_t h = HashEntry(0, entry);
  if (applied_.size() < i) applied_.resize(i, 0);
  uint64_t& slot = applied_[i - 1];
  if (slot == 0) {
    slot = h;
  } else if (slot != h) {
    return {"State Machine Safety", "node " + S(node) + " applied a different entry at index " + S(entry.index)};
  }
  return {};
}

}  // namespace quorumkv::sim
