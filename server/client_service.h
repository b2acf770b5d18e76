// The client API (proto/kv.proto, package quorumkv.v1) on gRPC's callback
// API: handlers validate the request, hand it to the Node and finish the
// call from the Node's completion callback, so no gRPC thread waits on Raft.
#pragma once

#include <string>

#include "kv.grpc.pb.h"
#include "server/node.h"

namespace quorumkv::server {

// Validates a user key: non-empty, at most max_bytes, valid UTF-8, and not
// in the reserved space (a leading NUL byte). Returns INVALID_ARGUMENT with
// a message naming the problem.
absl::Status ValidateKey(const std::string& key, size_t max_bytes);
bool IsValidUtf8(const std::string& s);

class KvService final : public quorumkv::v1::KV::CallbackService {
 public:
  explicit KvService(Node* node) : node_(node) {}
  grpc::ServerUnaryReactor* Put(grpc::CallbackServerContext* ctx, const quorumkv::v1::PutRequest* req,
                                quorumkv::v1::PutResponse* resp) override;
  grpc::ServerUnaryReactor* Get(grpc::CallbackServerContext* ctx, const quorumkv::v1::GetRequest* req,
                                quorumkv::v1::GetResponse* resp) override;
  grpc::ServerUnaryReactor* Delete(grpc::CallbackServerContext* ctx, const quorumkv::v1::DeleteRequest* req,
                                   quorumkv::v1::DeleteResponse* resp) override;
  grpc::ServerUnaryReactor* ReadIndex(grpc::CallbackServerContext* ctx, const quorumkv::v1::ReadIndexRequest* req,
                                      quorumkv::v1::ReadIndexResponse* resp) override;

 private:
  Node* node_;
};

class ClusterService final : public quorumkv::v1::Cluster::CallbackService {
 public:
  explicit ClusterService(Node* node) : node_(node) {}
  grpc::ServerUnaryReactor* Status(grpc::CallbackServerContext* ctx, const quorumkv::v1::StatusRequest* req,
                                   quorumkv::v1::StatusResponse* resp) override;
  grpc::ServerUnaryReactor* ListMembers(grpc::CallbackServerContext* ctx,
                                        const quorumkv::v1::ListMembersRequest* req,
                                        quorumkv::v1::ListMembersResponse* resp) override;
  grpc::ServerUnaryReactor* AddMember(grpc::CallbackServerContext* ctx, const quorumkv::v1::AddMemberRequest* req,
                                      quorumkv::v1::AddMemberResponse* resp) override;
  grpc::ServerUnaryReactor* RemoveMember(grpc::CallbackServerContext* ctx,
                                         const quorumkv::v1::RemoveMemberRequest* req,
                                         quorumkv::v1::RemoveMemberResponse* resp) override;
  grpc::ServerUnaryReactor* PromoteMember(grpc::CallbackServerContext* ctx,
                                          const quorumkv::v1::PromoteMemberRequest* req,
                                          quorumkv::v1::PromoteMemberResponse* resp) override;
  grpc::ServerUnaryReactor* TransferLeadership(grpc::CallbackServerContext* ctx,
                                               const quorumkv::v1::TransferLeadershipRequest* req,
                                               quorumkv::v1::TransferLeadershipResponse* resp) override;

 private:
  grpc::ServerUnaryReactor* ChangeMembership(grpc::CallbackServerContext* ctx, const char* method,
                                             raft::ConfChange change,
                                             google::protobuf::RepeatedPtrField<quorumkv::v1::Member>* out,
                                             quorumkv::v1::ResponseHeader* header);
  Node* node_;
};

}  // namespace quorumkv::server
