#include "server/raft_wire.h"

#include <limits>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

namespace quorumkv::server {
namespace {

absl::Status Invalid(absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat("malformed raft message: ", what));
}

// Checks one of ConfState's id lists: non-zero, strictly ascending.
absl::Status CheckIdList(const google::protobuf::RepeatedField<uint64_t>& ids,
                         absl::string_view name) {
  uint64_t previous = 0;
  for (int i = 0; i < ids.size(); ++i) {
    if (ids.Get(i) == 0) return Invalid(absl::StrCat("conf_state.", name, " holds node id 0"));
    if (i > 0 && ids.Get(i) <= previous) {
      return Invalid(absl::StrCat("conf_state.", name, " is not strictly ascending at ",
                                  ids.Get(i)));
    }
    previous = ids.Get(i);
  }
  return absl::OkStatus();
}

}  // namespace

void EncodeEntry(const raft::Entry& entry, raftpb::Entry* out) {
  out->set_index(entry.index.value());
  out->set_term(entry.term.value());
  switch (entry.type) {
    case raft::EntryType::kNormal: out->set_type(raftpb::ENTRY_TYPE_NORMAL); break;
    case raft::EntryType::kNoOp: out->set_type(raftpb::ENTRY_TYPE_NO_OP); break;
    case raft::EntryType::kConfChange: out->set_type(raftpb::ENTRY_TYPE_CONF_CHANGE); break;
  }
  out->set_data(entry.data);
}

absl::StatusOr<raft::Entry> DecodeEntry(const raftpb::Entry& in) {
  raft::Entry entry;
  if (in.index() == 0) return Invalid("entry with index 0");
  if (in.term() == 0) return Invalid(absl::StrCat("entry ", in.index(), " has term 0"));
  entry.index = raft::Index(in.index());
  entry.term = raft::Term(in.term());
  switch (in.type()) {
    case raftpb::ENTRY_TYPE_NORMAL: entry.type = raft::EntryType::kNormal; break;
    case raftpb::ENTRY_TYPE_NO_OP: entry.type = raft::EntryType::kNoOp; break;
    case raftpb::ENTRY_TYPE_CONF_CHANGE: entry.type = raft::EntryType::kConfChange; break;
    default:
      return Invalid(absl::StrCat("entry ", in.index(), " has unknown type ",
                                  static_cast<int>(in.type())));
  }
  entry.data = in.data();
  return entry;
}

void EncodeConfState(const raft::ConfState& conf, raftpb::ConfState* out) {
  out->clear_voters();
  out->clear_learners();
  for (raft::NodeId id : conf.voters) out->add_voters(id.value());
  for (raft::NodeId id : conf.learners) out->add_learners(id.value());
}

absl::StatusOr<raft::ConfState> DecodeConfState(const raftpb::ConfState& in) {
  if (absl::Status s = CheckIdList(in.voters(), "voters"); !s.ok()) return s;
  if (absl::Status s = CheckIdList(in.learners(), "learners"); !s.ok()) return s;
  raft::ConfState conf;
  conf.voters.reserve(in.voters_size());
  for (uint64_t id : in.voters()) conf.voters.push_back(raft::NodeId(id));
  conf.learners.reserve(in.learners_size());
  // Both lists are sorted: a merge walk finds an id in both.
  size_t v = 0;
  for (uint64_t id : in.learners()) {
    while (v < conf.voters.size() && conf.voters[v].value() < id) ++v;
    if (v < conf.voters.size() && conf.voters[v].value() == id) {
      return Invalid(absl::StrCat("node ", id, " is both a voter and a learner"));
    }
    conf.learners.push_back(raft::NodeId(id));
  }
  return conf;
}

void EncodeSnapshotMeta(const raft::SnapshotMeta& meta, raftpb::SnapshotMeta* out) {
  out->set_index(meta.index.value());
  out->set_term(meta.term.value());
  EncodeConfState(meta.conf_state, out->mutable_conf_state());
}

absl::StatusOr<raft::SnapshotMeta> DecodeSnapshotMeta(const raftpb::SnapshotMeta& in) {
  raft::SnapshotMeta meta;
  meta.index = raft::Index(in.index());
  meta.term = raft::Term(in.term());
  absl::StatusOr<raft::ConfState> conf = DecodeConfState(in.conf_state());
  if (!conf.ok()) return conf.status();
  meta.conf_state = *std::move(conf);
  return meta;
}

absl::Status EncodeMessage(const raft::Message& m, uint64_t cluster_id, raftpb::RaftMessage* out) {
  out->Clear();
  out->set_from(m.from.value());
  out->set_to(m.to.value());
  out->set_cluster_id(cluster_id);
  switch (m.type) {
    case raft::MessageType::kRequestVote: {
      raftpb::RequestVoteRequest* b = out->mutable_request_vote();
      b->set_term(m.term.value());
      b->set_last_log_index(m.last_log_index.value());
      b->set_last_log_term(m.last_log_term.value());
      b->set_pre_vote(m.pre_vote);
      b->set_leadership_transfer(m.leadership_transfer);
      return absl::OkStatus();
    }
    case raft::MessageType::kRequestVoteResponse: {
      raftpb::RequestVoteResponse* b = out->mutable_request_vote_response();
      b->set_term(m.term.value());
      b->set_vote_granted(m.vote_granted);
      b->set_pre_vote(m.pre_vote);
      return absl::OkStatus();
    }
    case raft::MessageType::kAppendEntries: {
      raftpb::AppendEntriesRequest* b = out->mutable_append_entries();
      b->set_term(m.term.value());
      b->set_prev_log_index(m.prev_log_index.value());
      b->set_prev_log_term(m.prev_log_term.value());
      b->mutable_entries()->Reserve(static_cast<int>(m.entries.size()));
      for (const raft::Entry& e : m.entries) EncodeEntry(e, b->add_entries());
      b->set_leader_commit(m.leader_commit.value());
      b->set_heartbeat(m.heartbeat);
      b->set_read_round(m.read_round);
      return absl::OkStatus();
    }
    case raft::MessageType::kAppendEntriesResponse: {
      raftpb::AppendEntriesResponse* b = out->mutable_append_entries_response();
      b->set_term(m.term.value());
      b->set_success(m.success);
      b->set_match_index(m.match_index.value());
      b->set_conflict_index(m.conflict_index.value());
      b->set_conflict_term(m.conflict_term.value());
      b->set_rejected_index(m.rejected_index.value());
      b->set_heartbeat(m.heartbeat);
      b->set_read_round(m.read_round);
      return absl::OkStatus();
    }
    case raft::MessageType::kInstallSnapshot:
      out->Clear();
      return absl::InvalidArgumentError(
          "an InstallSnapshot message travels as an InstallSnapshot stream, not in a batch");
    case raft::MessageType::kInstallSnapshotResponse: {
      raftpb::InstallSnapshotResponse* b = out->mutable_install_snapshot_response();
      b->set_term(m.term.value());
      b->set_success(m.success);
      b->set_match_index(m.match_index.value());
      return absl::OkStatus();
    }
    case raft::MessageType::kTimeoutNow:
      out->mutable_timeout_now()->set_term(m.term.value());
      return absl::OkStatus();
    case raft::MessageType::kReadIndex: {
      raftpb::ReadIndexRequest* b = out->mutable_read_index();
      b->set_term(m.term.value());
      b->set_read_id(m.read_id);
      return absl::OkStatus();
    }
    case raft::MessageType::kReadIndexResponse: {
      raftpb::ReadIndexResponse* b = out->mutable_read_index_response();
      b->set_term(m.term.value());
      b->set_read_id(m.read_id);
      b->set_read_index(m.read_index.value());
      b->set_success(m.success);
      return absl::OkStatus();
    }
  }
  out->Clear();
  return absl::InvalidArgumentError(
      absl::StrCat("unknown raft message type ", static_cast<int>(m.type)));
}

namespace {

absl::StatusOr<raft::Message> DecodeMessageFields(const raftpb::RaftMessage& in) {
  if (in.from() == 0) return Invalid("from is 0");
  if (in.to() == 0) return Invalid("to is 0");
  if (in.from() == in.to()) return Invalid(absl::StrCat("node ", in.from(), " sends to itself"));
  raft::Message m;
  m.from = raft::NodeId(in.from());
  m.to = raft::NodeId(in.to());
  switch (in.body_case()) {
    case raftpb::RaftMessage::kRequestVote: {
      const raftpb::RequestVoteRequest& b = in.request_vote();
      m.type = raft::MessageType::kRequestVote;
      m.term = raft::Term(b.term());
      m.last_log_index = raft::Index(b.last_log_index());
      m.last_log_term = raft::Term(b.last_log_term());
      m.pre_vote = b.pre_vote();
      m.leadership_transfer = b.leadership_transfer();
      return m;
    }
    case raftpb::RaftMessage::kRequestVoteResponse: {
      const raftpb::RequestVoteResponse& b = in.request_vote_response();
      m.type = raft::MessageType::kRequestVoteResponse;
      m.term = raft::Term(b.term());
      m.vote_granted = b.vote_granted();
      m.pre_vote = b.pre_vote();
      return m;
    }
    case raftpb::RaftMessage::kAppendEntries: {
      const raftpb::AppendEntriesRequest& b = in.append_entries();
      m.type = raft::MessageType::kAppendEntries;
      m.term = raft::Term(b.term());
      m.prev_log_index = raft::Index(b.prev_log_index());
      m.prev_log_term = raft::Term(b.prev_log_term());
      m.entries.reserve(b.entries_size());
      for (const raftpb::Entry& pe : b.entries()) {
        absl::StatusOr<raft::Entry> e = DecodeEntry(pe);
        if (!e.ok()) return e.status();
        m.entries.push_back(*std::move(e));
      }
      m.leader_commit = raft::Index(b.leader_commit());
      m.heartbeat = b.heartbeat();
      m.read_round = b.read_round();
      return m;
    }
    case raftpb::RaftMessage::kAppendEntriesResponse: {
      const raftpb::AppendEntriesResponse& b = in.append_entries_response();
      m.type = raft::MessageType::kAppendEntriesResponse;
      m.term = raft::Term(b.term());
      m.success = b.success();
      m.match_index = raft::Index(b.match_index());
      m.conflict_index = raft::Index(b.conflict_index());
      m.conflict_term = raft::Term(b.conflict_term());
      m.rejected_index = raft::Index(b.rejected_index());
      m.heartbeat = b.heartbeat();
      m.read_round = b.read_round();
      return m;
    }
    case raftpb::RaftMessage::kInstallSnapshotResponse: {
      const raftpb::InstallSnapshotResponse& b = in.install_snapshot_response();
      m.type = raft::MessageType::kInstallSnapshotResponse;
      m.term = raft::Term(b.term());
      m.success = b.success();
      m.match_index = raft::Index(b.match_index());
      return m;
    }
    case raftpb::RaftMessage::kTimeoutNow:
      m.type = raft::MessageType::kTimeoutNow;
      m.term = raft::Term(in.timeout_now().term());
      return m;
    case raftpb::RaftMessage::kReadIndex: {
      const raftpb::ReadIndexRequest& b = in.read_index();
      m.type = raft::MessageType::kReadIndex;
      m.term = raft::Term(b.term());
      m.read_id = b.read_id();
      return m;
    }
    case raftpb::RaftMessage::kReadIndexResponse: {
      const raftpb::ReadIndexResponse& b = in.read_index_response();
      m.type = raft::MessageType::kReadIndexResponse;
      m.term = raft::Term(b.term());
      m.read_id = b.read_id();
      m.read_index = raft::Index(b.read_index());
      m.success = b.success();
      return m;
    }
    case raftpb::RaftMessage::BODY_NOT_SET:
      // Also what a body field unknown to this version parses as.
      return Invalid(absl::StrCat("message from node ", in.from(),
                                  " has no body this version knows"));
  }
  return Invalid(absl::StrCat("message from node ", in.from(), " has an unknown body case ",
                              static_cast<int>(in.body_case())));
}

}  // namespace

absl::StatusOr<raft::Message> DecodeMessage(const raftpb::RaftMessage& in) {
  absl::StatusOr<raft::Message> m = DecodeMessageFields(in);
  if (!m.ok()) return m.status();
  // The core checks the same on Step; refusing here tells the sender.
  if (absl::Status s = raft::ValidatePeerMessage(*m); !s.ok()) return s;
  return m;
}

void EncodeSnapshotChunkHeader(const SnapshotChunkHeader& header,
                               raftpb::InstallSnapshotChunk* out) {
  out->set_term(header.term.value());
  out->set_leader_id(header.leader.value());
  EncodeSnapshotMeta(header.meta, out->mutable_meta());
}

absl::StatusOr<SnapshotChunkHeader> DecodeSnapshotChunkHeader(
    const raftpb::InstallSnapshotChunk& in) {
  if (in.leader_id() == 0) return Invalid("snapshot chunk with leader_id 0");
  if (in.term() == 0) return Invalid("snapshot chunk with term 0");
  if (!in.has_meta()) return Invalid("snapshot chunk without meta");
  if (in.meta().index() == 0) return Invalid("snapshot chunk whose meta has index 0");
  if (in.meta().term() == 0) return Invalid("snapshot chunk whose meta has term 0");
  absl::StatusOr<raft::SnapshotMeta> meta = DecodeSnapshotMeta(in.meta());
  if (!meta.ok()) return meta.status();
  SnapshotChunkHeader header;
  header.leader = raft::NodeId(in.leader_id());
  header.term = raft::Term(in.term());
  header.meta = *std::move(meta);
  // Refused before any chunk is received, by the checks Raft::Step makes
  // on the message the header becomes.
  if (absl::Status s = raft::ValidatePeerMessage(MakeInstallSnapshotMessage(raft::kNoNode, header)); !s.ok()) {
    return s;
  }
  return header;
}

raft::Message MakeInstallSnapshotMessage(raft::NodeId to, const SnapshotChunkHeader& header) {
  raft::Message m;
  m.type = raft::MessageType::kInstallSnapshot;
  m.from = header.leader;
  m.to = to;
  m.term = header.term;
  m.snapshot.meta = header.meta;
  return m;
}

size_t ApproximateWireSize(const raft::Message& m) {
  // Ids, term and the fixed fields of any body fit in well under 96 bytes;
  // an entry costs its data plus index, term, type and framing.
  size_t size = 96;
  for (const raft::Entry& e : m.entries) size += e.data.size() + 32;
  return size;
}

}  // namespace quorumkv::server
