// Conversion between the Raft core's plain structs (raft/message.h,
// raft/types.h) and their wire form (proto/raft.proto, quorumkv.raft.v1).
//
// The core never sees protobuf; this file is the only place that knows both.
// Decoding is the trust boundary: everything that arrives from the network
// goes through a Decode* function, which checks what the core takes for
// granted (ids set, entry types known, AppendEntries entries contiguous and
// in term order) and answers INVALID_ARGUMENT with a message naming the
// offending field instead of handing the core something it could trip on.
// The decoders never crash on arbitrary input (they are fuzzed).
//
// kInstallSnapshot does not travel as a RaftMessage: its image is streamed
// by the InstallSnapshot RPC, and its header (leader, term, SnapshotMeta)
// rides on every InstallSnapshotChunk (see the *SnapshotChunkHeader pair).
#pragma once

#include <cstddef>
#include <cstdint>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "raft.pb.h"
#include "raft/message.h"
#include "raft/types.h"

namespace quorumkv::server {

// The generated wire types (quorumkv::raft::v1).
namespace raftpb = ::quorumkv::raft::v1;

// Log entries. A decoded entry has index >= 1, term >= 1 and a known type.
void EncodeEntry(const raft::Entry& entry, raftpb::Entry* out);
absl::StatusOr<raft::Entry> DecodeEntry(const raftpb::Entry& in);

// Configurations. A decoded ConfState has non-zero ids, voters and learners
// each strictly ascending, and no id in both (the invariant of ConfState).
void EncodeConfState(const raft::ConfState& conf, raftpb::ConfState* out);
absl::StatusOr<raft::ConfState> DecodeConfState(const raftpb::ConfState& in);

void EncodeSnapshotMeta(const raft::SnapshotMeta& meta, raftpb::SnapshotMeta* out);
absl::StatusOr<raft::SnapshotMeta> DecodeSnapshotMeta(const raftpb::SnapshotMeta& in);

// Every message type except kInstallSnapshot (INVALID_ARGUMENT for it: it
// travels as an InstallSnapshot stream). Only the fields of the message's
// type are written; `cluster_id` is stamped on the wire message.
//
// Known loss: kReadIndex's `lease_read` has no field in raft.proto's
// ReadIndexRequest, so a forwarded lease read arrives as a plain ReadIndex
// read (safe: the leader then confirms leadership with a quorum round; it
// only costs the round trip the lease would have saved).
absl::Status EncodeMessage(const raft::Message& message, uint64_t cluster_id,
                           raftpb::RaftMessage* out);

// The inverse of EncodeMessage. It does not look at cluster_id (refusing
// another cluster is the transport's decision, FAILED_PRECONDITION); it
// checks: a known body, non-zero and distinct `from` and `to`, valid entries
// and, for AppendEntries, entries at prev_log_index + 1, + 2, ... with
// non-decreasing terms between prev_log_term and the message's term, and no
// entries on a heartbeat.
absl::StatusOr<raft::Message> DecodeMessage(const raftpb::RaftMessage& in);

// What every chunk of one InstallSnapshot stream repeats.
struct SnapshotChunkHeader {
  raft::NodeId leader;
  raft::Term term;
  raft::SnapshotMeta meta;
  bool operator==(const SnapshotChunkHeader&) const = default;
};

// Fills term, leader_id and meta of `out` (offset, data and done are the
// streamer's).
void EncodeSnapshotChunkHeader(const SnapshotChunkHeader& header,
                               raftpb::InstallSnapshotChunk* out);
// Checks leader_id != 0, term != 0, meta present with index >= 1 and
// term >= 1, and a valid ConfState.
absl::StatusOr<SnapshotChunkHeader> DecodeSnapshotChunkHeader(
    const raftpb::InstallSnapshotChunk& in);

// The kInstallSnapshot message a node hands its core once a streamed
// snapshot is staged (SnapshotReceiver::Finish): `data` stays empty, the
// image is the state machine's business.
raft::Message MakeInstallSnapshotMessage(raft::NodeId to, const SnapshotChunkHeader& header);

// A cheap upper-bound-ish estimate of a message's encoded size, used for
// the per-RPC batch limit without encoding twice.
size_t ApproximateWireSize(const raft::Message& message);

}  // namespace quorumkv::server
