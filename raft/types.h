// Value types of the Raft core: strong ids, log entries, hard state,
// configurations and snapshots. Plain structs, no I/O.
#pragma once

#include <compare>
#include <cstdint>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

namespace quorumkv::raft {

// A uint64_t that cannot be mixed up with another kind of uint64_t: a term
// is never passed where an index is expected.
template <typename Tag>
class StrongInt {
 public:
  constexpr StrongInt() = default;
  constexpr explicit StrongInt(uint64_t value) : value_(value) {}
  constexpr uint64_t value() const { return value_; }
  constexpr auto operator<=>(const StrongInt&) const = default;

  constexpr StrongInt operator+(uint64_t n) const { return StrongInt(value_ + n); }
  constexpr StrongInt operator-(uint64_t n) const { return StrongInt(value_ - n); }
  constexpr StrongInt& operator++() { ++value_; return *this; }
  // Distance between two positions: b - a when b >= a.
  constexpr uint64_t operator-(StrongInt other) const { return value_ - other.value_; }

 private:
  uint64_t value_ = 0;
};

template <typename Tag>
std::ostream& operator<<(std::ostream& os, StrongInt<Tag> v) { return os << v.value(); }

struct NodeIdTag {};
struct TermTag {};
struct IndexTag {};
using NodeId = StrongInt<NodeIdTag>;  // 0 is "no node" (kNoNode)
using Term = StrongInt<TermTag>;      // 0 precedes every real term
using Index = StrongInt<IndexTag>;    // log positions start at 1; 0 is "before the log"

inline constexpr NodeId kNoNode{0};

enum class EntryType : uint8_t {
  kNormal = 0,      // a command for the state machine
  kNoOp = 1,        // appended by a new leader to commit its term (Raft §8)
  kConfChange = 2,  // data is an encoded ConfChange
};

struct Entry {
  Index index;
  Term term;
  EntryType type = EntryType::kNormal;
  std::string data;

  // Approximate wire size, used for batching limits.
  uint64_t ByteSize() const { return data.size() + 24; }
  bool operator==(const Entry&) const = default;
};

// What Raft Figure 2 calls "persistent state on all servers", minus the log.
// commit_index is persisted too (as etcd does) so a restarted node can apply
// up to it without waiting for a leader; it is never required for safety.
struct HardState {
  Term current_term;
  NodeId voted_for = kNoNode;
  Index commit_index;
  bool operator==(const HardState&) const = default;
};

// A membership configuration: voters count toward quorums, learners only
// receive the log (thesis §4.2.1). Both sorted, disjoint.
struct ConfState {
  std::vector<NodeId> voters;
  std::vector<NodeId> learners;
  bool operator==(const ConfState&) const = default;

  bool IsVoter(NodeId id) const;
  bool IsLearner(NodeId id) const;
  bool Contains(NodeId id) const { return IsVoter(id) || IsLearner(id); }
  std::string ToString() const;
};

enum class ConfChangeType : uint8_t {
  kAddLearner = 0,
  kPromoteLearner = 1,
  kRemoveNode = 2,
  kAddVoter = 3,  // a learner added and promoted in one step; prefer kAddLearner
};

// One single-server membership change (thesis §4.1). `context` is opaque to
// the core; the server stores the new member's address there.
struct ConfChange {
  ConfChangeType type = ConfChangeType::kAddLearner;
  NodeId node_id;
  std::string context;
  bool operator==(const ConfChange&) const = default;

  std::string Encode() const;
  static std::optional<ConfChange> Decode(const std::string& bytes);
};

// The configuration that results from applying `cc` to `conf`. Total and
// deterministic: a change that does not apply (adding a member twice)
// leaves the configuration as it was; proposals are validated earlier.
ConfState ApplyConfChange(const ConfState& conf, const ConfChange& cc);

struct SnapshotMeta {
  Index index;  // last entry covered by the snapshot
  Term term;    // term of that entry
  ConfState conf_state;  // configuration as of `index`
  bool operator==(const SnapshotMeta&) const = default;
};

// `data` is the state machine's image, opaque to the core. The real server
// streams the image separately and leaves `data` empty here.
struct Snapshot {
  SnapshotMeta meta;
  std::string data;
  bool operator==(const Snapshot&) const = default;
};

enum class Role : uint8_t { kFollower, kPreCandidate, kCandidate, kLeader };
const char* RoleName(Role role);

}  // namespace quorumkv::raft
