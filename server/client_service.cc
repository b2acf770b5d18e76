#include "server/client_service.h"

#include <memory>

#include "absl/strings/str_cat.h"

namespace quorumkv::server {

namespace {

using grpc::ServerUnaryReactor;

// Requests without a deadline still get one: nothing waits forever.
constexpr absl::Duration kDefaultDeadline = absl::Seconds(30);

absl::Time DeadlineOf(grpc::CallbackServerContext* ctx) {
  const auto d = ctx->deadline();
  if (d == std::chrono::system_clock::time_point::max()) return absl::Now() + kDefaultDeadline;
  return std::min(absl::FromChrono(d), absl::Now() + absl::Hours(1));
}

grpc::Status ToGrpc(const absl::Status& s) {
  if (s.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(s.code()), std::string(s.message()));
}

const char* CodeName(absl::StatusCode code) {
  static const char* const kNames[] = {"OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED",
                                       "NOT_FOUND", "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED",
                                       "FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED",
                                       "INTERNAL", "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED"};
  const int i = static_cast<int>(code);
  return i >= 0 && i < 17 ? kNames[i] : "UNKNOWN";
}

// Finishes a call with `s`, adding the leader hint trailers to UNAVAILABLE
// and FAILED_PRECONDITION, and the not-proposed mark to whatever refusal
// carries it (RESOURCE_EXHAUSTED and DEADLINE_EXCEEDED can too).
void Finish(ServerUnaryReactor* reactor, grpc::CallbackServerContext* ctx, Node* node, const char* method,
            absl::Time start, const absl::Status& s) {
  node->metrics().ObserveRequest(method, CodeName(s.code()), absl::ToDoubleSeconds(absl::Now() - start));
  if (s.code() == absl::StatusCode::kUnavailable || s.code() == absl::StatusCode::kFailedPrecondition) {
    const uint64_t leader = node->leader_id();
    if (leader != 0) {
      ctx->AddTrailingMetadata("quorumkv-leader-id", std::to_string(leader));
      const std::string address = node->LeaderClientAddress();
      if (!address.empty()) ctx->AddTrailingMetadata("quorumkv-leader-address", address);
    }
  }
  if (IsNotProposed(s)) ctx->AddTrailingMetadata("quorumkv-not-proposed", "1");
  reactor->Finish(ToGrpc(s));
}

// A read changes nothing, so a refused one surely took no effect: it is
// marked like a write refused before it was proposed, and clients keep one
// rule for both.
absl::Status MarkRefusedRead(absl::Status s) {
  if (s.code() == absl::StatusCode::kUnavailable) return NotProposed(std::move(s));
  return s;
}

void FillHeader(quorumkv::v1::ResponseHeader* h, const ResponseInfo& info) {
  h->set_node_id(info.node_id);
  h->set_term(info.term);
  h->set_applied_index(info.applied_index);
}

void FillMember(quorumkv::v1::Member* out, const Member& m) {
  out->set_id(m.id);
  out->set_peer_address(m.peer_address);
  out->set_client_address(m.client_address);
  out->set_role(m.voter ? quorumkv::v1::VOTER : quorumkv::v1::LEARNER);
}

absl::Status ValidateValue(const std::string& value, size_t max_bytes) {
  if (value.size() > max_bytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("value is ", value.size(), " bytes; the limit is ", max_bytes, " (--max-value-bytes)"));
  }
  return absl::OkStatus();
}

}  // namespace

bool IsValidUtf8(const std::string& s) {
  size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    size_t n = 0;
    uint32_t cp = 0;
    if (c < 0x80) {
      ++i;
      continue;
    } else if ((c & 0xE0) == 0xC0) {
      n = 1;
      cp = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
      n = 2;
      cp = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
      n = 3;
      cp = c & 0x07;
    } else {
      return false;
    }
    for (size_t k = 1; k <= n; ++k) {
      if (i + k >= s.size()) return false;
      const auto cc = static_cast<unsigned char>(s[i + k]);
      if ((cc & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (cc & 0x3F);
    }
    // Overlong forms, surrogates and values beyond U+10FFFF are invalid.
    if ((n == 1 && cp < 0x80) || (n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) || cp > 0x10FFFF ||
        (cp >= 0xD800 && cp <= 0xDFFF)) {
      return false;
    }
    i += n + 1;
  }
  return true;
}

absl::Status ValidateKey(const std::string& key, size_t max_bytes) {
  if (key.empty()) return absl::InvalidArgumentError("key must not be empty");
  if (key.size() > max_bytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("key is ", key.size(), " bytes; the limit is ", max_bytes, " (--max-key-bytes)"));
  }
  if (!IsValidUtf8(key)) return absl::InvalidArgumentError("key must be valid UTF-8");
  if (key[0] == '\0') return absl::InvalidArgumentError("keys starting with a NUL byte are reserved");
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------
// KV

ServerUnaryReactor* KvService::Put(grpc::CallbackServerContext* ctx, const quorumkv::v1::PutRequest* req,
                                   quorumkv::v1::PutResponse* resp) {
  ServerUnaryReactor* reactor = ctx->DefaultReactor();
  const absl::Time start = absl::Now();
  const NodeOptions& o = node_->options();
  if (absl::Status s = ValidateKey(req->key(), o.max_key_bytes); !s.ok()) {
    Finish(reactor, ctx, node_, "Put", start, s);
    return reactor;
  }
  if (absl::Status s = ValidateValue(req->value(), o.max_value_bytes); !s.ok()) {
    Finish(reactor, ctx, node_, "Put", start, s);
    return reactor;
  }
  kv::Command cmd = kv::Command::Put(req->key(), req->value());
  cmd.client_id = req->client_id();
  cmd.sequence = req->sequence();
  node_->Write(std::move(cmd), DeadlineOf(ctx), [this, reactor, ctx, resp, start](absl::StatusOr<WriteOutcome> r) {
    if (r.ok()) FillHeader(resp->mutable_header(), r->info);
    Finish(reactor, ctx, node_, "Put", start, r.status());
  });
  return reactor;
}

ServerUnaryReactor* KvService::Delete(grpc::CallbackServerContext* ctx, const quorumkv::v1::DeleteRequest* req,
                                      quorumkv::v1::DeleteResponse* resp) {
  ServerUnaryReactor* reactor = ctx->DefaultReactor();
  const absl::Time start = absl::Now();
  if (absl::Status s = ValidateKey(req->key(), node_->options().max_key_bytes); !s.ok()) {
    Finish(reactor, ctx, node_, "Delete", start, s);
    return reactor;
  }
  kv::Command cmd = kv::Command::Delete(req->key());
  cmd.client_id = req->client_id();
  cmd.sequence = req->sequence();
  node_->Write(std::move(cmd), DeadlineOf(ctx), [this, reactor, ctx, resp, start](absl::StatusOr<WriteOutcome> r) {
    if (r.ok()) {
      FillHeader(resp->mutable_header(), r->info);
      resp->set_deleted(r->result.found);
    }
    Finish(reactor, ctx, node_, "Delete", start, r.status());
  });
  return reactor;
}

ServerUnaryReactor* KvService::Get(grpc::CallbackServerContext* ctx, const quorumkv::v1::GetRequest* req,
                                   quorumkv::v1::GetResponse* resp) {
  ServerUnaryReactor* reactor = ctx->DefaultReactor();
  const absl::Time start = absl::Now();
  if (absl::Status s = ValidateKey(req->key(), node_->options().max_key_bytes); !s.ok()) {
    Finish(reactor, ctx, node_, "Get", start, s);
    return reactor;
  }
  ReadConsistency c;
  switch (req->consistency()) {
    case quorumkv::v1::CONSISTENCY_UNSPECIFIED:
    case quorumkv::v1::LINEARIZABLE:
      c = ReadConsistency::kLinearizable;
      break;
    case quorumkv::v1::LEASE:
      c = ReadConsistency::kLease;
      break;
    case quorumkv::v1::SERIALIZABLE:
      c = ReadConsistency::kSerializable;
      break;
    default:
      Finish(reactor, ctx, node_, "Get", start,
             absl::InvalidArgumentError(absl::StrCat("unknown consistency level ", static_cast<int>(req->consistency()),
                                                     "; use LINEARIZABLE, LEASE or SERIALIZABLE")));
      return reactor;
  }
  node_->Read(req->key(), c, DeadlineOf(ctx), [this, reactor, ctx, resp, start](absl::StatusOr<ReadOutcome> r) {
    if (r.ok()) {
      FillHeader(resp->mutable_header(), r->info);
      resp->set_found(r->value.has_value());
      if (r->value) resp->set_value(*r->value);
    }
    Finish(reactor, ctx, node_, "Get", start, MarkRefusedRead(r.status()));
  });
  return reactor;
}

ServerUnaryReactor* KvService::ReadIndex(grpc::CallbackServerContext* ctx, const quorumkv::v1::ReadIndexRequest*,
                                         quorumkv::v1::ReadIndexResponse* resp) {
  ServerUnaryReactor* reactor = ctx->DefaultReactor();
  const absl::Time start = absl::Now();
  node_->ReadBarrier(DeadlineOf(ctx), [this, reactor, ctx, resp, start](absl::StatusOr<ReadOutcome> r) {
    if (r.ok()) {
      FillHeader(resp->mutable_header(), r->info);
      resp->set_read_index(r->read_index);
    }
    Finish(reactor, ctx, node_, "ReadIndex", start, MarkRefusedRead(r.status()));
  });
  return reactor;
}

// ---------------------------------------------------------------------------
// Cluster

ServerUnaryReactor* ClusterService::Status(grpc::CallbackServerContext* ctx, const quorumkv::v1::StatusRequest*,
                                           quorumkv::v1::StatusResponse* resp) {
  ServerUnaryReactor* reactor = ctx->DefaultReactor();
  node_->Status([reactor, resp](NodeStatusInfo s) {
    FillHeader(resp->mutable_header(), s.info);
    resp->set_node_id(s.node_id);
    resp->set_role(s.role);
    resp->set_term(s.term);
    resp->set_leader_id(s.leader_id);
    resp->set_commit_index(s.commit_index);
    resp->set_applied_index(s.applied_index);
    resp->set_first_index(s.first_index);
    resp->set_last_index(s.last_index);
    resp->set_cluster_id(s.cluster_id);
    resp->set_version(QUORUMKV_VERSION);
    for (const Member& m : s.members) FillMember(resp->add_members(), m);
    reactor->Finish(grpc::Status::OK);
  });
  return reactor;
}

ServerUnaryReactor* ClusterService::ListMembers(grpc::CallbackServerContext* ctx,
                                                const quorumkv::v1::ListMembersRequest*,
                                                quorumkv::v1::ListMembersResponse* resp) {
  ServerUnaryReactor* reactor = ctx->DefaultReactor();
  node_->Status([reactor, resp](NodeStatusInfo s) {
    FillHeader(resp->mutable_header(), s.info);
    for (const Member& m : s.members) FillMember(resp->add_members(), m);
    reactor->Finish(grpc::Status::OK);
  });
  return reactor;
}

ServerUnaryReactor* ClusterService::ChangeMembership(grpc::CallbackServerContext* ctx, const char* method,
                                                     raft::ConfChange change,
                                                     google::protobuf::RepeatedPtrField<quorumkv::v1::Member>* out,
                                                     quorumkv::v1::ResponseHeader* header) {
  ServerUnaryReactor* reactor = ctx->DefaultReactor();
  const absl::Time start = absl::Now();
  node_->ChangeMembership(std::move(change), DeadlineOf(ctx),
                          [this, reactor, ctx, out, header, method, start](absl::StatusOr<std::vector<Member>> r) {
                            if (r.ok()) {
                              header->set_node_id(node_->options().id.value());
                              header->set_term(node_->term());
                              for (const Member& m : *r) FillMember(out->Add(), m);
                            }
                            Finish(reactor, ctx, node_, method, start, r.status());
                          });
  return reactor;
}

ServerUnaryReactor* ClusterService::AddMember(grpc::CallbackServerContext* ctx,
                                              const quorumkv::v1::AddMemberRequest* req,
                                              quorumkv::v1::AddMemberResponse* resp) {
  absl::Status bad;
  if (req->id() == 0) {
    bad = absl::InvalidArgumentError("member id must be > 0");
  } else if (!ValidHostPort(req->peer_address())) {
    bad = absl::InvalidArgumentError("peer address \"" + req->peer_address() + "\" is not host:port");
  } else if (!req->client_address().empty() && !ValidHostPort(req->client_address())) {
    bad = absl::InvalidArgumentError("client address \"" + req->client_address() + "\" is not host:port");
  }
  if (!bad.ok()) {
    ServerUnaryReactor* reactor = ctx->DefaultReactor();
  const absl::Time start = absl::Now();
    Finish(reactor, ctx, node_, "AddMember", start, bad);
    return reactor;
  }
  Member m{req->id(), req->peer_address(), req->client_address(), req->as_voter()};
  raft::ConfChange change{req->as_voter() ? raft::ConfChangeType::kAddVoter : raft::ConfChangeType::kAddLearner,
                          raft::NodeId(req->id()), EncodeMemberContext(m)};
  return ChangeMembership(ctx, "AddMember", std::move(change), resp->mutable_members(), resp->mutable_header());
}

ServerUnaryReactor* ClusterService::RemoveMember(grpc::CallbackServerContext* ctx,
                                                 const quorumkv::v1::RemoveMemberRequest* req,
                                                 quorumkv::v1::RemoveMemberResponse* resp) {
  if (req->id() == 0) {
    ServerUnaryReactor* reactor = ctx->DefaultReactor();
  const absl::Time start = absl::Now();
    Finish(reactor, ctx, node_, "RemoveMember", start, absl::InvalidArgumentError("member id must be > 0"));
    return reactor;
  }
  raft::ConfChange change{raft::ConfChangeType::kRemoveNode, raft::NodeId(req->id()), ""};
  return ChangeMembership(ctx, "RemoveMember", std::move(change), resp->mutable_members(), resp->mutable_header());
}

ServerUnaryReactor* ClusterService::PromoteMember(grpc::CallbackServerContext* ctx,
                                                  const quorumkv::v1::PromoteMemberRequest* req,
                                                  quorumkv::v1::PromoteMemberResponse* resp) {
  if (req->id() == 0) {
    ServerUnaryReactor* reactor = ctx->DefaultReactor();
  const absl::Time start = absl::Now();
    Finish(reactor, ctx, node_, "PromoteMember", start, absl::InvalidArgumentError("member id must be > 0"));
    return reactor;
  }
  raft::ConfChange change{raft::ConfChangeType::kPromoteLearner, raft::NodeId(req->id()), ""};
  return ChangeMembership(ctx, "PromoteMember", std::move(change), resp->mutable_members(), resp->mutable_header());
}

ServerUnaryReactor* ClusterService::TransferLeadership(grpc::CallbackServerContext* ctx,
                                                       const quorumkv::v1::TransferLeadershipRequest* req,
                                                       quorumkv::v1::TransferLeadershipResponse* resp) {
  ServerUnaryReactor* reactor = ctx->DefaultReactor();
  const absl::Time start = absl::Now();
  node_->TransferLeadership(raft::NodeId(req->target_id()), DeadlineOf(ctx),
                            [this, reactor, ctx, resp, start](absl::StatusOr<uint64_t> r) {
                              if (r.ok()) {
                                resp->set_leader_id(*r);
                                resp->mutable_header()->set_node_id(node_->options().id.value());
                                resp->mutable_header()->set_term(node_->term());
                              }
                              Finish(reactor, ctx, node_, "TransferLeadership", start, r.status());
                            });
  return reactor;
}

}  // namespace quorumkv::server
