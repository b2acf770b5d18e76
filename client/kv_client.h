// The C++ client of quorumkv: a KvClient talks to any nodes of one cluster,
// finds the leader, retries what is safe to retry, and makes retried writes
// take effect once.
//
// Retry policy (the reasons are in kv_client.cc, next to RetryPolicyFor):
//   retried, with exponential back-off and jitter, rotating through the
//   endpoints, within max_attempts and total_timeout:
//     UNAVAILABLE         no leader yet, node shutting down, connection failed
//     RESOURCE_EXHAUSTED  back-pressure (too many pending proposals); not
//                         gRPC's "message larger than max" (permanent)
//     DEADLINE_EXCEEDED   of one attempt; a write is resent with the same
//                         (client_id, sequence), so it still takes effect once
//     FAILED_PRECONDITION for AddMember / RemoveMember / PromoteMember only
//                         (an earlier membership change still in flight)
//   returned at once: every other code, among them INVALID_ARGUMENT,
//   NOT_FOUND, ALREADY_EXISTS, FAILED_PRECONDITION (KV calls, leadership
//   transfer), ABORTED, DATA_LOSS, UNIMPLEMENTED.
//
// The outcome of a write that fails with UNAVAILABLE or DEADLINE_EXCEEDED
// after its retries is unknown: it may still take effect (once).
//
// Membership changes carry no request id. When an attempt may have taken
// effect (timed out, or UNAVAILABLE other than a failed connection) and a
// retry is then refused with ALREADY_EXISTS, NOT_FOUND or
// FAILED_PRECONDITION, the client reads the member list and reports success
// if the change it asked for is in place (same id and peer address, and
// voter if asked; id absent; id a voter).
//
// When retries run out the error is the last attempt's, with its code, the
// endpoint that answered and the number of attempts in the message.
//
// Leader discovery: the client prefers, for writes and cluster calls, the
// endpoint of the leader when it knows it, else the endpoint that last
// answered. It learns the leader from the trailers "quorumkv-leader-id"
// (decimal node id) and "quorumkv-leader-address" (the leader's client
// host:port) of any response, from Status responses (node_id, leader_id) and
// from the members' client addresses; it learns which node answers on which
// endpoint from the header of every response.
//
// Thread-safe: several threads may share one KvClient. Each concurrent write
// takes its own client session (client_id, next sequence) from a pool, so a
// session never has two writes outstanding (the server's de-duplication
// table keeps one result per client id). The first session uses
// ClientOptions::client_id.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "kv.pb.h"

namespace quorumkv::client {

struct ClientOptions {
  // host:port (or [v6-address]:port) of any nodes of the cluster.
  std::vector<std::string> endpoints;
  // Deadline of one attempt.
  absl::Duration request_timeout = absl::Seconds(5);
  // Deadline of a whole call, retries and back-off included.
  absl::Duration total_timeout = absl::Seconds(15);
  // Attempts per call (RPCs sent), at least 1. The default back-off
  // schedule (20, 40, 80, 160, 320 ms, with jitter) spans well under a
  // second: to ride out the election that follows a leader's crash, raise
  // max_attempts and let total_timeout bound the call (kvctl does).
  int max_attempts = 6;
  // Back-off before attempt k+1 (k >= 1): min(backoff_max,
  // backoff_min * 2^(k-1)), scaled by a random factor in [0.5, 1].
  absl::Duration backoff_min = absl::Milliseconds(20);
  absl::Duration backoff_max = absl::Milliseconds(500);
  // Client id of the first write session; 0 picks a random non-zero id.
  uint64_t client_id = 0;
};

// The standard gRPC health service's answer (grpc.health.v1).
enum class HealthStatus { kUnknown, kServing, kNotServing, kServiceUnknown };
// "UNKNOWN", "SERVING", "NOT_SERVING", "SERVICE_UNKNOWN".
std::string_view HealthStatusName(HealthStatus status);

// OK if `endpoint` is host:port or [ipv6]:port with a port in 1..65535.
absl::Status ValidateEndpoint(std::string_view endpoint);

class KvClient {
 public:
  // Validates the options (at least one endpoint, each well-formed and
  // listed once; positive timeouts; max_attempts >= 1; 0 < backoff_min <=
  // backoff_max). Creates the channels; connects lazily.
  static absl::StatusOr<std::unique_ptr<KvClient>> Create(ClientOptions options);
  ~KvClient();
  KvClient(const KvClient&) = delete;
  KvClient& operator=(const KvClient&) = delete;

  absl::Status Put(std::string_view key, std::string_view value);
  // nullopt when the key does not exist.
  absl::StatusOr<std::optional<std::string>> Get(
      std::string_view key, quorumkv::v1::Consistency c = quorumkv::v1::LINEARIZABLE);
  // True if the key existed. A retried delete reports the first attempt's
  // answer (the server returns the de-duplicated result).
  absl::StatusOr<bool> Delete(std::string_view key);
  // A linearizable read barrier; returns the index the node has applied.
  absl::StatusOr<uint64_t> ReadIndex();

  // One endpoint, one attempt (request_timeout), no retry. The endpoint need
  // not be one of the configured ones.
  absl::StatusOr<quorumkv::v1::StatusResponse> Status(const std::string& endpoint);
  // grpc.health.v1.Health/Check of `service` ("" = the whole server) on one
  // endpoint, one attempt. An error means the endpoint did not answer.
  absl::StatusOr<HealthStatus> CheckHealth(const std::string& endpoint,
                                           const std::string& service = "");

  // Cluster management, sent to the leader if known (any node accepts them).
  absl::StatusOr<std::vector<quorumkv::v1::Member>> ListMembers();
  absl::StatusOr<std::vector<quorumkv::v1::Member>> AddMember(uint64_t id, std::string peer_address,
                                                             std::string client_address,
                                                             bool as_voter);
  absl::StatusOr<std::vector<quorumkv::v1::Member>> RemoveMember(uint64_t id);
  absl::StatusOr<std::vector<quorumkv::v1::Member>> PromoteMember(uint64_t id);
  // target_id 0: the server picks the most up-to-date other voter. Returns
  // the leader after the transfer.
  absl::StatusOr<uint64_t> TransferLeadership(uint64_t target_id);

  // The client id of the first write session (never 0).
  uint64_t client_id() const;
  // The leader this client currently believes in; 0 when unknown.
  uint64_t known_leader_id() const;

 private:
  class Impl;
  explicit KvClient(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace quorumkv::client
