#include "tests/client/fake_kv_server.h"

#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>

#include <algorithm>
#include <deque>
#include <utility>

#include "absl/strings/str_cat.h"
#include "kv.grpc.pb.h"

namespace quorumkv::client::testing {
namespace {

namespace v1 = ::quorumkv::v1;

constexpr char kLeaderIdTrailer[] = "quorumkv-leader-id";
constexpr char kLeaderAddressTrailer[] = "quorumkv-leader-address";

grpc::Status ToGrpc(const absl::Status& status) {
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()),
                      std::string(status.message()));
}

}  // namespace

// ---- FakeCluster ----

FakeCluster::FakeCluster() = default;

void FakeCluster::SetFollowersRedirect(bool redirect, bool with_address) {
  absl::MutexLock lock(&mu_);
  followers_redirect_ = redirect;
  redirect_with_address_ = with_address;
}

void FakeCluster::SetLeader(uint64_t leader_id) {
  absl::MutexLock lock(&mu_);
  leader_id_ = leader_id;
}

uint64_t FakeCluster::leader_id() const {
  absl::MutexLock lock(&mu_);
  return leader_id_;
}

void FakeCluster::SetMembers(std::vector<v1::Member> members) {
  absl::MutexLock lock(&mu_);
  members_ = std::move(members);
}

std::vector<v1::Member> FakeCluster::members() const {
  absl::MutexLock lock(&mu_);
  return members_;
}

std::optional<std::string> FakeCluster::Value(const std::string& key) const {
  absl::MutexLock lock(&mu_);
  auto it = data_.find(key);
  if (it == data_.end()) return std::nullopt;
  return it->second;
}

void FakeCluster::SetValue(const std::string& key, const std::string& value) {
  absl::MutexLock lock(&mu_);
  data_[key] = value;
}

int FakeCluster::applied_writes() const {
  absl::MutexLock lock(&mu_);
  return applied_writes_;
}

int FakeCluster::ApplyCount(uint64_t client_id, uint64_t sequence) const {
  absl::MutexLock lock(&mu_);
  auto it = apply_count_.find({client_id, sequence});
  return it == apply_count_.end() ? 0 : it->second;
}

FakeCluster::View FakeCluster::view() const {
  absl::MutexLock lock(&mu_);
  return View{term_, applied_index_, leader_id_, followers_redirect_, redirect_with_address_};
}

absl::Status FakeCluster::ApplyWrite(bool is_delete, const std::string& key,
                                     const std::string& value, uint64_t client_id,
                                     uint64_t sequence, bool* deleted) {
  absl::MutexLock lock(&mu_);
  if (client_id != 0) {
    Session& session = sessions_[client_id];
    if (sequence == session.last_sequence) {
      *deleted = session.last_deleted;  // a retry: the first result, not applied again
      return absl::OkStatus();
    }
    if (sequence < session.last_sequence) {
      return absl::FailedPreconditionError(absl::StrCat("client ", client_id, " sequence ",
                                                        sequence, " is older than its last ",
                                                        session.last_sequence));
    }
  }
  if (is_delete) {
    *deleted = data_.erase(key) > 0;
  } else {
    data_[key] = value;
    *deleted = false;
  }
  ++applied_writes_;
  ++applied_index_;
  if (client_id != 0) {
    ++apply_count_[{client_id, sequence}];
    sessions_[client_id] = Session{sequence, *deleted};
  }
  return absl::OkStatus();
}

absl::Status FakeCluster::AddMember(const v1::Member& member) {
  absl::MutexLock lock(&mu_);
  if (member.id() == 0 || member.peer_address().empty()) {
    return absl::InvalidArgumentError("member id and peer address are required");
  }
  for (const v1::Member& m : members_) {
    if (m.id() == member.id()) {
      return absl::AlreadyExistsError(absl::StrCat("member ", member.id(), " already exists"));
    }
  }
  members_.push_back(member);
  ++applied_index_;
  return absl::OkStatus();
}

absl::Status FakeCluster::RemoveMember(uint64_t id) {
  absl::MutexLock lock(&mu_);
  auto it = std::find_if(members_.begin(), members_.end(),
                         [&](const v1::Member& m) { return m.id() == id; });
  if (it == members_.end()) return absl::NotFoundError(absl::StrCat("no member ", id));
  members_.erase(it);
  ++applied_index_;
  return absl::OkStatus();
}

absl::Status FakeCluster::PromoteMember(uint64_t id) {
  absl::MutexLock lock(&mu_);
  for (v1::Member& m : members_) {
    if (m.id() == id) {
      m.set_role(v1::VOTER);  // promoting a voter changes nothing
      ++applied_index_;
      return absl::OkStatus();
    }
  }
  return absl::NotFoundError(absl::StrCat("no member ", id));
}

absl::StatusOr<uint64_t> FakeCluster::TransferLeadership(uint64_t target_id) {
  absl::MutexLock lock(&mu_);
  uint64_t target = 0;
  for (const v1::Member& m : members_) {
    if (target_id == 0 ? (m.role() == v1::VOTER && m.id() != leader_id_) : m.id() == target_id) {
      if (m.role() != v1::VOTER) {
        return absl::FailedPreconditionError(absl::StrCat("member ", m.id(), " is a learner"));
      }
      target = m.id();
      break;
    }
  }
  if (target == 0) return absl::NotFoundError("no such voter");
  leader_id_ = target;
  ++term_;
  return target;
}

// ---- FakeNode ----

struct FakeNode::Impl {
  absl::Mutex mu;
  std::deque<Fault> faults ABSL_GUARDED_BY(mu);
  std::vector<CallRecord> calls ABSL_GUARDED_BY(mu);
  std::unique_ptr<KvService> kv;
  std::unique_ptr<ClusterService> cluster;
  std::unique_ptr<grpc::Server> server;
  bool stopped = false;  // owned by the test thread
};

namespace {

void SetLeaderTrailers(grpc::ServerContext* context, uint64_t leader_id,
                       const std::string& leader_address) {
  if (leader_id != 0) context->AddTrailingMetadata(kLeaderIdTrailer, absl::StrCat(leader_id));
  if (!leader_address.empty()) context->AddTrailingMetadata(kLeaderAddressTrailer, leader_address);
}

// Waits `delay`, or until the call is cancelled (the client gave up, or the
// server is stopping): never longer than `delay`.
void Delay(grpc::ServerContext* context, absl::Duration delay) {
  const absl::Time end = absl::Now() + delay;
  while (absl::Now() < end && !context->IsCancelled()) {
    absl::SleepFor(std::min(absl::Milliseconds(5), end - absl::Now()));
  }
}

}  // namespace

// Shared by both services: records the call, plays a scripted fault or the
// follower redirection, else serves it.
class FakeNode::Handler {
 public:
  template <typename Serve>
  static grpc::Status Handle(FakeNode* node, FakeCluster* cluster, FakeNode::Impl* impl,
                             grpc::ServerContext* context, CallRecord record,
                             bool leader_only, Serve serve);
};

template <typename Serve>
grpc::Status FakeNode::Handler::Handle(FakeNode* node, FakeCluster* cluster, FakeNode::Impl* impl,
                                     grpc::ServerContext* context, CallRecord record,
                                     bool leader_only, Serve serve) {
  record.node_id = node->node_id();
  std::optional<Fault> fault;
  {
    absl::MutexLock lock(&impl->mu);
    impl->calls.push_back(record);
    for (auto it = impl->faults.begin(); it != impl->faults.end(); ++it) {
      if (!it->method.empty() && it->method != record.method) continue;
      fault = *it;
      if (it->times > 0 && --it->times == 0) impl->faults.erase(it);
      break;
    }
  }
  if (fault.has_value()) {
    if (fault->apply_first) serve().IgnoreError();
    Delay(context, fault->delay);
    SetLeaderTrailers(context, fault->leader_id, fault->leader_address);
    return grpc::Status(static_cast<grpc::StatusCode>(fault->code), fault->message);
  }
  const FakeCluster::View view = cluster->view();
  if (leader_only && view.followers_redirect && view.leader_id != node->node_id()) {
    std::string address;
    if (view.redirect_with_address) {
      for (const v1::Member& m : cluster->members()) {
        if (m.id() == view.leader_id) address = m.client_address();
      }
    }
    SetLeaderTrailers(context, view.leader_id, address);
    return grpc::Status(grpc::StatusCode::UNAVAILABLE,
                        absl::StrCat("node ", node->node_id(), " is not the leader"));
  }
  return ToGrpc(serve());
}

namespace {

template <typename Response>
void FillHeader(uint64_t node_id, FakeCluster* cluster, Response* response) {
  const FakeCluster::View view = cluster->view();
  response->mutable_header()->set_node_id(node_id);
  response->mutable_header()->set_term(view.term);
  response->mutable_header()->set_applied_index(view.applied_index);
}

template <typename Response>
void FillMembers(FakeCluster* cluster, Response* response) {
  for (const v1::Member& m : cluster->members()) *response->add_members() = m;
}

}  // namespace

class FakeNode::KvService final : public v1::KV::Service {
 public:
  explicit KvService(FakeNode* node) : node_(node) {}

  grpc::Status Put(grpc::ServerContext* context, const v1::PutRequest* request,
                   v1::PutResponse* response) override {
    CallRecord record{0, "Put", request->key(), request->client_id(), request->sequence()};
    return Handle(context, record, true, [&]() -> absl::Status {
      if (request->key().empty()) return absl::InvalidArgumentError("empty key");
      bool deleted = false;
      absl::Status status = node_->cluster_->ApplyWrite(false, request->key(), request->value(),
                                                        request->client_id(),
                                                        request->sequence(), &deleted);
      FillHeader(node_->node_id(), node_->cluster_.get(), response);
      return status;
    });
  }

  grpc::Status Get(grpc::ServerContext* context, const v1::GetRequest* request,
                   v1::GetResponse* response) override {
    CallRecord record{0, "Get", request->key(), 0, 0, request->consistency()};
    return Handle(context, record, false, [&]() -> absl::Status {
      if (request->key().empty()) return absl::InvalidArgumentError("empty key");
      std::optional<std::string> value = node_->cluster_->Value(request->key());
      response->set_found(value.has_value());
      if (value.has_value()) response->set_value(*value);
      FillHeader(node_->node_id(), node_->cluster_.get(), response);
      return absl::OkStatus();
    });
  }

  grpc::Status Delete(grpc::ServerContext* context, const v1::DeleteRequest* request,
                      v1::DeleteResponse* response) override {
    CallRecord record{0, "Delete", request->key(), request->client_id(), request->sequence()};
    return Handle(context, record, true, [&]() -> absl::Status {
      if (request->key().empty()) return absl::InvalidArgumentError("empty key");
      bool deleted = false;
      absl::Status status = node_->cluster_->ApplyWrite(true, request->key(), "",
                                                        request->client_id(),
                                                        request->sequence(), &deleted);
      response->set_deleted(deleted);
      FillHeader(node_->node_id(), node_->cluster_.get(), response);
      return status;
    });
  }

  grpc::Status ReadIndex(grpc::ServerContext* context, const v1::ReadIndexRequest* request,
                         v1::ReadIndexResponse* response) override {
    return Handle(context, CallRecord{0, "ReadIndex"}, false, [&]() -> absl::Status {
      FillHeader(node_->node_id(), node_->cluster_.get(), response);
      response->set_read_index(response->header().applied_index());
      return absl::OkStatus();
    });
  }

 private:
  template <typename Serve>
  grpc::Status Handle(grpc::ServerContext* context, const CallRecord& record, bool leader_only,
                      Serve serve) {
    return Handler::Handle(node_, node_->cluster_.get(), node_->impl_.get(), context,
                                   record, leader_only, serve);
  }

  FakeNode* node_;
};

class FakeNode::ClusterService final : public v1::Cluster::Service {
 public:
  explicit ClusterService(FakeNode* node) : node_(node) {}

  grpc::Status Status(grpc::ServerContext* context, const v1::StatusRequest* request,
                      v1::StatusResponse* response) override {
    return Handle(context, CallRecord{0, "Status"}, false, [&]() -> absl::Status {
      const FakeCluster::View view = node_->cluster_->view();
      FillHeader(node_->node_id(), node_->cluster_.get(), response);
      response->set_node_id(node_->node_id());
      response->set_role(view.leader_id == node_->node_id() ? "leader" : "follower");
      response->set_term(view.term);
      response->set_leader_id(view.leader_id);
      response->set_commit_index(view.applied_index);
      response->set_applied_index(view.applied_index);
      response->set_first_index(1);
      response->set_last_index(view.applied_index);
      FillMembers(node_->cluster_.get(), response);
      response->set_cluster_id(42);
      response->set_version("fake");
      return absl::OkStatus();
    });
  }

  grpc::Status ListMembers(grpc::ServerContext* context, const v1::ListMembersRequest* request,
                           v1::ListMembersResponse* response) override {
    return Handle(context, CallRecord{0, "ListMembers"}, false, [&]() -> absl::Status {
      FillHeader(node_->node_id(), node_->cluster_.get(), response);
      FillMembers(node_->cluster_.get(), response);
      return absl::OkStatus();
    });
  }

  grpc::Status AddMember(grpc::ServerContext* context, const v1::AddMemberRequest* request,
                         v1::AddMemberResponse* response) override {
    return Handle(context, CallRecord{0, "AddMember"}, true, [&]() -> absl::Status {
      v1::Member member;
      member.set_id(request->id());
      member.set_peer_address(request->peer_address());
      member.set_client_address(request->client_address());
      member.set_role(request->as_voter() ? v1::VOTER : v1::LEARNER);
      absl::Status status = node_->cluster_->AddMember(member);
      FillHeader(node_->node_id(), node_->cluster_.get(), response);
      FillMembers(node_->cluster_.get(), response);
      return status;
    });
  }

  grpc::Status RemoveMember(grpc::ServerContext* context, const v1::RemoveMemberRequest* request,
                            v1::RemoveMemberResponse* response) override {
    return Handle(context, CallRecord{0, "RemoveMember"}, true, [&]() -> absl::Status {
      absl::Status status = node_->cluster_->RemoveMember(request->id());
      FillHeader(node_->node_id(), node_->cluster_.get(), response);
      FillMembers(node_->cluster_.get(), response);
      return status;
    });
  }

  grpc::Status PromoteMember(grpc::ServerContext* context,
                             const v1::PromoteMemberRequest* request,
                             v1::PromoteMemberResponse* response) override {
    return Handle(context, CallRecord{0, "PromoteMember"}, true, [&]() -> absl::Status {
      absl::Status status = node_->cluster_->PromoteMember(request->id());
      FillHeader(node_->node_id(), node_->cluster_.get(), response);
      FillMembers(node_->cluster_.get(), response);
      return status;
    });
  }

  grpc::Status TransferLeadership(grpc::ServerContext* context,
                                  const v1::TransferLeadershipRequest* request,
                                  v1::TransferLeadershipResponse* response) override {
    return Handle(context, CallRecord{0, "TransferLeadership"}, true, [&]() -> absl::Status {
      absl::StatusOr<uint64_t> leader = node_->cluster_->TransferLeadership(request->target_id());
      FillHeader(node_->node_id(), node_->cluster_.get(), response);
      if (!leader.ok()) return leader.status();
      response->set_leader_id(*leader);
      return absl::OkStatus();
    });
  }

 private:
  template <typename Serve>
  grpc::Status Handle(grpc::ServerContext* context, const CallRecord& record, bool leader_only,
                      Serve serve) {
    return Handler::Handle(node_, node_->cluster_.get(), node_->impl_.get(), context,
                                   record, leader_only, serve);
  }

  FakeNode* node_;
};

FakeNode::FakeNode(std::shared_ptr<FakeCluster> cluster, uint64_t node_id)
    : cluster_(std::move(cluster)), node_id_(node_id), impl_(std::make_unique<Impl>()) {}

absl::StatusOr<std::unique_ptr<FakeNode>> FakeNode::Start(std::shared_ptr<FakeCluster> cluster,
                                                          uint64_t node_id, int port) {
  std::unique_ptr<FakeNode> node(new FakeNode(std::move(cluster), node_id));
  node->impl_->kv = std::make_unique<KvService>(node.get());
  node->impl_->cluster = std::make_unique<ClusterService>(node.get());
  // gRPC's own grpc.health.v1.Health service, as kvserver uses it.
  grpc::EnableDefaultHealthCheckService(true);
  grpc::ServerBuilder builder;
  const std::string address = absl::StrCat("127.0.0.1:", port);
  builder.AddListeningPort(address, grpc::InsecureServerCredentials(), &port);
  builder.RegisterService(node->impl_->kv.get());
  builder.RegisterService(node->impl_->cluster.get());
  node->impl_->server = builder.BuildAndStart();
  if (node->impl_->server == nullptr || port == 0) {
    return absl::InternalError(absl::StrCat("fake node: cannot listen on ", address));
  }
  node->endpoint_ = absl::StrCat("127.0.0.1:", port);
  return node;
}

FakeNode::~FakeNode() { Stop(); }

void FakeNode::Stop() {
  if (impl_->stopped) return;
  impl_->stopped = true;
  // Pending calls are cancelled at the deadline; scripted delays notice.
  impl_->server->Shutdown(std::chrono::system_clock::now() + std::chrono::milliseconds(500));
  impl_->server->Wait();
}

void FakeNode::AddFault(Fault fault) {
  absl::MutexLock lock(&impl_->mu);
  impl_->faults.push_back(std::move(fault));
}

void FakeNode::SetServing(bool serving) {
  impl_->server->GetHealthCheckService()->SetServingStatus(serving);
}

std::vector<CallRecord> FakeNode::calls() const {
  absl::MutexLock lock(&impl_->mu);
  return impl_->calls;
}

int FakeNode::CallCount(const std::string& method) const {
  absl::MutexLock lock(&impl_->mu);
  return static_cast<int>(std::count_if(impl_->calls.begin(), impl_->calls.end(),
                                        [&](const CallRecord& c) { return c.method == method; }));
}

absl::StatusOr<StartedCluster> StartFakeCluster(int n) {
  StartedCluster started;
  started.cluster = std::make_shared<FakeCluster>();
  std::vector<v1::Member> members;
  for (int id = 1; id <= n; ++id) {
    auto node = FakeNode::Start(started.cluster, id);
    if (!node.ok()) return node.status();
    v1::Member member;
    member.set_id(id);
    member.set_peer_address(absl::StrCat("127.0.0.1:", 7000 + id));
    member.set_client_address((*node)->endpoint());
    member.set_role(v1::VOTER);
    members.push_back(member);
    started.nodes.push_back(*std::move(node));
  }
  started.cluster->SetMembers(members);
  started.cluster->SetLeader(1);
  return started;
}

}  // namespace quorumkv::client::testing
