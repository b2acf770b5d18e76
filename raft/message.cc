#include "raft/message.h"

#include <sstream>

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

}  // namespace quorumkv::raft
