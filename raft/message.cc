#include "raft/message.h"

#include <sstream>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"

namespace quorumkv::raft {

const char* MessageTypeName(MessageType type) {
  switch (type) {
    case MessageType::kRequestVote: return "RequestVote";
    case MessageType::kRequestVoteResponse: return "RequestVoteResponse";
    case MessageType::kAppendEntries: return "AppendEntries";
    case MessageType::kAppendEntriesResponse: return "AppendEntriesResponse";
    case MessageType::kInstallSnapshot: return "InstallSnapshot";
    case MessageType::kInstallSnapshotResponse: return "InstallSnapshotResponse";
    case MessageType::kTimeoutNow: return "TimeoutNow";
    case MessageType::kReadIndex: return "ReadIndex";
    case MessageType::kReadIndexResponse: return "ReadIndexResponse";
  }
  return "?";
}

std::string Message::DebugString() const {
  std::ostringstream os;
  os << MessageTypeName(type) << " " << from << "->" << to << " term=" << term;
  switch (type) {
    case MessageType::kRequestVote:
      os << (pre_vote ? " pre" : "") << (leadership_transfer ? " transfer" : "")
         << " last=" << last_log_index << "/" << last_log_term;
      break;
    case MessageType::kRequestVoteResponse:
      os << (pre_vote ? " pre" : "") << (vote_granted ? " granted" : " rejected");
      break;
    case MessageType::kAppendEntries:
      if (heartbeat) {
        os << " heartbeat";
      } else {
        os << " prev=" << prev_log_index << "/" << prev_log_term << " n=" << entries.size();
        if (!entries.empty()) os << " [" << entries.front().index << ".." << entries.back().index << "]";
      }
      os << " commit=" << leader_commit << " round=" << read_round;
      break;
    case MessageType::kAppendEntriesResponse:
      os << (heartbeat ? " heartbeat" : "") << (success ? " ok match=" : " reject at=");
      if (success) {
        os << match_index;
      } else {
        os << rejected_index << " hint=" << conflict_index << "/" << conflict_term;
      }
      os << " round=" << read_round;
      break;
    case MessageType::kInstallSnapshot:
      os << " snap=" << snapshot.meta.index << "/" << snapshot.meta.term << " "
         << snapshot.meta.conf_state.ToString();
      break;
    case MessageType::kInstallSnapshotResponse:
      os << (success ? " ok match=" : " failed match=") << match_index;
      break;
    case MessageType::kTimeoutNow:
      break;
    case MessageType::kReadIndex:
      os << " read=" << read_id;
      break;
    case MessageType::kReadIndexResponse:
      os << " read=" << read_id << (success ? " index=" : " failed") ;
      if (success) os << read_index;
      break;
  }
  return os.str();
}

namespace {

absl::Status Malformed(const Message& m, const std::string& what) {
  return absl::InvalidArgumentError(absl::StrCat("malformed ", MessageTypeName(m.type),
                                                 " from node ", m.from.value(), ": ", what));
}

absl::Status CheckRange(const Message& m, const char* field, uint64_t value) {
  if (value < kMaxPeerTermOrIndex) return absl::OkStatus();
  return Malformed(m, absl::StrCat(field, " ", value, " is beyond any reachable term or index"));
}

absl::Status CheckAppendedEntries(const Message& m) {
  if (m.heartbeat && !m.entries.empty()) return Malformed(m, "a heartbeat carries entries");
  if (m.prev_log_term > m.term) return Malformed(m, "prev_log_term is above the message's term");
  Term last_term = m.prev_log_term;
  for (size_t i = 0; i < m.entries.size(); ++i) {
    const Entry& e = m.entries[i];
    // prev_log_index < 2^62 and a vector's size keep this from wrapping.
    const uint64_t expected = m.prev_log_index.value() + 1 + i;
    if (e.index.value() != expected) {
      return Malformed(m, absl::StrCat("entry ", i, " has index ", e.index.value(), ", expected ", expected));
    }
    if (e.term < last_term) {
      return Malformed(m, absl::StrCat("entry ", expected, " has term ", e.term.value(),
                                       ", below the term before it (", last_term.value(), ")"));
    }
    if (e.term > m.term) {
      return Malformed(m, absl::StrCat("entry ", expected, " has term ", e.term.value(),
                                       ", above the message's term ", m.term.value()));
    }
    if (e.type == EntryType::kConfChange && !ConfChange::Decode(e.data).has_value()) {
      return Malformed(m, absl::StrCat("configuration entry ", expected, " does not decode"));
    }
    last_term = e.term;
  }
  return absl::OkStatus();
}

// Both lists strictly ascending without node 0, no node in both: what
// ConfState's members (IsLearner, Contains) assume.
absl::Status CheckConfState(const Message& m, const ConfState& conf) {
  for (const std::vector<NodeId>* ids : {&conf.voters, &conf.learners}) {
    for (size_t i = 0; i < ids->size(); ++i) {
      if ((*ids)[i] == kNoNode) return Malformed(m, "the snapshot's configuration holds node 0");
      if (i > 0 && (*ids)[i] <= (*ids)[i - 1]) {
        return Malformed(m, "the snapshot's configuration is not strictly ascending");
      }
    }
  }
  for (NodeId v : conf.voters) {
    if (conf.IsLearner(v)) {
      return Malformed(m, absl::StrCat("node ", v.value(), " is both a voter and a learner in the snapshot"));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status ValidatePeerMessage(const Message& m) {
  const std::pair<const char*, uint64_t> fields[] = {
      {"term", m.term.value()},
      {"last_log_index", m.last_log_index.value()},
      {"last_log_term", m.last_log_term.value()},
      {"prev_log_index", m.prev_log_index.value()},
      {"prev_log_term", m.prev_log_term.value()},
      {"leader_commit", m.leader_commit.value()},
      {"match_index", m.match_index.value()},
      {"rejected_index", m.rejected_index.value()},
      {"conflict_index", m.conflict_index.value()},
      {"conflict_term", m.conflict_term.value()},
      {"snapshot index", m.snapshot.meta.index.value()},
      {"snapshot term", m.snapshot.meta.term.value()},
      {"read_index", m.read_index.value()},
  };
  for (const auto& [field, value] : fields) {
    if (absl::Status s = CheckRange(m, field, value); !s.ok()) return s;
  }
  switch (m.type) {
    case MessageType::kAppendEntries:
      return CheckAppendedEntries(m);
    case MessageType::kInstallSnapshot:
      if (m.snapshot.meta.index == Index(0) || m.snapshot.meta.term == Term(0)) {
        return Malformed(m, "the snapshot's last entry has index or term 0");
      }
      if (m.snapshot.meta.term > m.term) return Malformed(m, "the snapshot's term is above the message's");
      return CheckConfState(m, m.snapshot.meta.conf_state);
    default:
      return absl::OkStatus();
  }
}

}  // namespace quorumkv::raft
