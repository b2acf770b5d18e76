// Messages between Raft cores. One flat struct for every type, as in etcd's
// raftpb.Message: the fields a type does not use stay at their defaults.
// The wire form lives in proto/raft.proto; server/ converts.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "raft/types.h"

namespace quorumkv::raft {

enum class MessageType : uint8_t {
  kRequestVote,
  kRequestVoteResponse,
  kAppendEntries,  // also the heartbeat, with `heartbeat` set
  kAppendEntriesResponse,
  kInstallSnapshot,
  kInstallSnapshotResponse,
  kTimeoutNow,
  kReadIndex,          // follower -> leader: "give me a read index"
  kReadIndexResponse,  // leader -> follower
};
const char* MessageTypeName(MessageType type);

struct Message {
  MessageType type = MessageType::kAppendEntries;
  NodeId from;
  NodeId to;
  Term term;

  // kRequestVote / kRequestVoteResponse
  bool pre_vote = false;
  bool leadership_transfer = false;  // campaign started by TimeoutNow
  Index last_log_index;
  Term last_log_term;
  bool vote_granted = false;

  // kAppendEntries
  Index prev_log_index;
  Term prev_log_term;
  std::vector<Entry> entries;
  Index leader_commit;
  bool heartbeat = false;
  // The leader's heartbeat round this message belongs to; echoed in the
  // response. A quorum of echoes of round r proves the leader was still
  // leader after round r was sent (ReadIndex, leases).
  uint64_t read_round = 0;

  // kAppendEntriesResponse / kInstallSnapshotResponse
  bool success = false;
  Index match_index;     // on success: last index known to match
  Index rejected_index;  // on rejection: the request's prev_log_index
  Index conflict_index;  // on rejection: fast back-tracking hint
  Term conflict_term;

  // kInstallSnapshot
  Snapshot snapshot;

  // kReadIndex / kReadIndexResponse
  uint64_t read_id = 0;
  Index read_index;
  bool lease_read = false;  // kReadIndex: the leader may answer from its lease

  std::string DebugString() const;
};

// A success AppendEntriesResponse (not a heartbeat's) or
// InstallSnapshotResponse: the sender holds the entries up to match_index.
inline bool AcknowledgesEntries(const Message& m) {
  return m.success && ((m.type == MessageType::kAppendEntriesResponse && !m.heartbeat) ||
                       m.type == MessageType::kInstallSnapshotResponse);
}

// Terms and indexes at or above this are refused in peer messages: no
// cluster reaches them (2^62 one-millisecond terms take 146 million years),
// and accepting one lets a faulty peer make `term + 1` or `index + n` wrap.
inline constexpr uint64_t kMaxPeerTermOrIndex = uint64_t{1} << 62;

// What a message from a peer must look like before any state depends on it
// (Raft::Step refuses the rest with InvalidArgument; the transport refuses
// them on the wire): terms and indexes below kMaxPeerTermOrIndex; an
// AppendEntries' entries extend prev_log_index one by one with terms that
// never decrease, never precede prev_log_term and never exceed the message's
// term, and its configuration entries decode; a heartbeat carries no
// entries; a snapshot's last entry has an index and a term no later than
// the message's.
absl::Status ValidatePeerMessage(const Message& m);

}  // namespace quorumkv::raft
