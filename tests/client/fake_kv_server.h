// An in-process fake of a quorumkv cluster for the client's tests: nodes
// that serve quorumkv.v1.KV, quorumkv.v1.Cluster and grpc.health.v1.Health
// on 127.0.0.1:<free port>, over one shared in-memory state (map, member
// list, leader, de-duplication table), with scripted failures.
//
// The fake keeps the server's contract from proto/kv.proto: a write with a
// client id takes effect once per (client_id, sequence) (a retry gets the
// first result), an older sequence is refused with FAILED_PRECONDITION; an
// unknown member is NOT_FOUND, a member added twice ALREADY_EXISTS.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "kv.pb.h"

namespace quorumkv::client::testing {

// A failure a node answers a call with, in place of (or after) serving it.
struct Fault {
  std::string method = "";  // "Put", "Get", "Delete", "ReadIndex", "Status", "AddMember", ...; "" = any
  absl::StatusCode code = absl::StatusCode::kUnavailable;
  std::string message = "scripted failure";
  // Serve the call (apply a write) first, then fail: a write whose reply is
  // lost.
  bool apply_first = false;
  // Wait this long before answering (until the call is cancelled, at most
  // this long): longer than the client's deadline, an attempt that times
  // out.
  absl::Duration delay = absl::ZeroDuration();
  // Trailers "quorumkv-leader-id" / "quorumkv-leader-address" when set.
  uint64_t leader_id = 0;
  std::string leader_address = "";
  // How many matching calls it answers; -1 = every one.
  int times = 1;
};

// One call as a node received it.
struct CallRecord {
  uint64_t node_id = 0;
  std::string method = "";
  std::string key = "";
  uint64_t client_id = 0;
  uint64_t sequence = 0;
  quorumkv::v1::Consistency consistency = quorumkv::v1::CONSISTENCY_UNSPECIFIED;
};

// The state the nodes share, as a replicated cluster would.
class FakeCluster {
 public:
  FakeCluster();

  // When set, nodes other than the leader refuse writes and cluster changes
  // with UNAVAILABLE naming the leader in the trailers (with its client
  // address too if `with_address`), as a node that cannot forward would.
  void SetFollowersRedirect(bool redirect, bool with_address);
  void SetLeader(uint64_t leader_id);
  uint64_t leader_id() const;
  void SetMembers(std::vector<quorumkv::v1::Member> members);
  std::vector<quorumkv::v1::Member> members() const;

  std::optional<std::string> Value(const std::string& key) const;
  void SetValue(const std::string& key, const std::string& value);
  // Writes applied (not counting de-duplicated retries).
  int applied_writes() const;
  // Times the write (client_id, sequence) was applied.
  int ApplyCount(uint64_t client_id, uint64_t sequence) const;

  // Used by the nodes. Applies a write unless it is a retry of its client's
  // last sequence (then *deleted is the first result); FAILED_PRECONDITION
  // for an older sequence.
  absl::Status ApplyWrite(bool is_delete, const std::string& key, const std::string& value,
                          uint64_t client_id, uint64_t sequence, bool* deleted);
  // Used by the nodes: a consistent view for one answer.
  struct View {
    uint64_t term = 0;
    uint64_t applied_index = 0;
    uint64_t leader_id = 0;
    bool followers_redirect = false;
    bool redirect_with_address = false;
  };
  View view() const;
  // Member changes as the fake server applies them (see fake_kv_server.cc).
  absl::Status AddMember(const quorumkv::v1::Member& member);
  absl::Status RemoveMember(uint64_t id);
  absl::Status PromoteMember(uint64_t id);
  absl::StatusOr<uint64_t> TransferLeadership(uint64_t target_id);

 private:
  struct Session {
    uint64_t last_sequence = 0;
    bool last_deleted = false;  // the stored result of the last write
  };
  mutable absl::Mutex mu_;
  std::map<std::string, std::string> data_ ABSL_GUARDED_BY(mu_);
  std::map<uint64_t, Session> sessions_ ABSL_GUARDED_BY(mu_);
  std::map<std::pair<uint64_t, uint64_t>, int> apply_count_ ABSL_GUARDED_BY(mu_);
  int applied_writes_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t applied_index_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t term_ ABSL_GUARDED_BY(mu_) = 1;
  uint64_t leader_id_ ABSL_GUARDED_BY(mu_) = 0;
  bool followers_redirect_ ABSL_GUARDED_BY(mu_) = false;
  bool redirect_with_address_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<quorumkv::v1::Member> members_ ABSL_GUARDED_BY(mu_);
};

// One node: a gRPC server on 127.0.0.1:<free port>.
class FakeNode {
 public:
  // Starts serving as node `node_id` of `cluster`, on `port` (0: a free one).
  static absl::StatusOr<std::unique_ptr<FakeNode>> Start(std::shared_ptr<FakeCluster> cluster,
                                                         uint64_t node_id, int port = 0);
  ~FakeNode();  // stops the server
  FakeNode(const FakeNode&) = delete;
  FakeNode& operator=(const FakeNode&) = delete;

  uint64_t node_id() const { return node_id_; }
  // "127.0.0.1:PORT"; stays the same after Stop (nothing listens there then).
  const std::string& endpoint() const { return endpoint_; }

  void AddFault(Fault fault);
  // The health service's answer for "" (SERVING after Start).
  void SetServing(bool serving);
  // Stops serving (bounded: pending calls are cancelled).
  void Stop();

  std::vector<CallRecord> calls() const;
  int CallCount(const std::string& method) const;

 private:
  class Handler;
  class KvService;
  class ClusterService;
  struct Impl;
  FakeNode(std::shared_ptr<FakeCluster> cluster, uint64_t node_id);

  std::shared_ptr<FakeCluster> cluster_;
  const uint64_t node_id_;
  std::string endpoint_;
  std::unique_ptr<Impl> impl_;
};

// A started cluster: nodes 1..n over one FakeCluster, all voters (peer
// address 127.0.0.1:<7000 + id>, client address the node's endpoint), node
// 1 the leader.
struct StartedCluster {
  std::shared_ptr<FakeCluster> cluster;
  std::vector<std::unique_ptr<FakeNode>> nodes;  // nodes[id - 1]
};
absl::StatusOr<StartedCluster> StartFakeCluster(int n);

}  // namespace quorumkv::client::testing
