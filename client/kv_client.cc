#include "client/kv_client.h"

#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <cstddef>
#include <functional>
#include <limits>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/random/random.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "health.grpc.pb.h"
#include "kv.grpc.pb.h"

namespace quorumkv::client {
namespace {

namespace v1 = ::quorumkv::v1;
namespace health = ::grpc::health::v1;

// Trailers a node sets on UNAVAILABLE (and may set on any answer): the id of
// the leader it knows, and that leader's client host:port when known.
constexpr char kLeaderIdTrailer[] = "quorumkv-leader-id";
constexpr char kLeaderAddressTrailer[] = "quorumkv-leader-address";

// Endpoints learnt from trailers and member lists beyond the configured
// ones. A bound, so a confused server cannot make the client open channels
// without end.
constexpr size_t kMaxDiscoveredEndpoints = 16;

// One channel and its stubs; stubs and channels are thread-safe.
struct Endpoint {
  std::string address;
  std::shared_ptr<grpc::Channel> channel;
  std::unique_ptr<v1::KV::Stub> kv;
  std::unique_ptr<v1::Cluster::Stub> cluster;
  std::unique_ptr<health::Health::Stub> health;
};

std::shared_ptr<Endpoint> MakeEndpoint(std::string address) {
  grpc::ChannelArguments args;
  // After a failed connection gRPC waits before reconnecting (1 s, growing
  // to 120 s by default) and fails calls at once in between: a node that
  // restarts must become reachable again within a retry or two.
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
  // The server bounds value sizes; a second, smaller bound here (gRPC's
  // default is 4 MiB) would only turn a large stored value into an error.
  args.SetMaxReceiveMessageSize(-1);
  auto endpoint = std::make_shared<Endpoint>();
  endpoint->address = std::move(address);
  endpoint->channel =
      grpc::CreateCustomChannel(endpoint->address, grpc::InsecureChannelCredentials(), args);
  endpoint->kv = v1::KV::NewStub(endpoint->channel);
  endpoint->cluster = v1::Cluster::NewStub(endpoint->channel);
  endpoint->health = health::Health::NewStub(endpoint->channel);
  return endpoint;
}

// gRPC's codes 0..16 are absl's, one to one.
absl::Status ToAbslStatus(const grpc::Status& status, const std::string& endpoint) {
  return absl::Status(static_cast<absl::StatusCode>(status.error_code()),
                      absl::StrCat(endpoint, ": ", status.error_message()));
}

uint64_t RandomNonZeroId() {
  static thread_local absl::BitGen gen;
  return absl::Uniform<uint64_t>(absl::IntervalClosedClosed, gen, 1,
                                 std::numeric_limits<uint64_t>::max());
}

struct LeaderHint {
  uint64_t leader_id = 0;
  std::string leader_address;
};

LeaderHint ReadLeaderHint(const grpc::ClientContext& context) {
  LeaderHint hint;
  const auto& trailers = context.GetServerTrailingMetadata();
  if (auto it = trailers.find(kLeaderIdTrailer); it != trailers.end()) {
    const std::string text(it->second.data(), it->second.size());
    uint64_t id = 0;
    if (absl::SimpleAtoi(text, &id)) hint.leader_id = id;  // a malformed hint is ignored
  }
  if (auto it = trailers.find(kLeaderAddressTrailer); it != trailers.end()) {
    std::string address(it->second.data(), it->second.size());
    if (ValidateEndpoint(address).ok()) hint.leader_address = std::move(address);
  }
  return hint;
}

// What a call may retry, and where it prefers to go.
struct RetryPolicy {
  // Whether an attempt that timed out is sent again. Always for reads (each
  // retry takes a fresh read index on the server, PITFALLS "ReadIndex reused
  // on retry") and for writes (same client_id and sequence, applied once).
  bool retry_deadline_exceeded = true;
  // Writes and cluster calls go to the leader when it is known; reads go to
  // the endpoint that answered last (any node serves them).
  bool prefer_leader = false;
};

enum class CallKind { kRead, kWrite, kMembershipChange, kTransfer, kTransferToAny };

// The retry policy, with its reasons:
// - UNAVAILABLE (no leader, shutting down, connection failed) and
//   RESOURCE_EXHAUSTED (back-pressure) are transient by definition
//   (proto/kv.proto): always retried, after a back-off. The exception is
//   gRPC's "Received message larger than max": a request too large for the
//   server's message size limit will stay too large.
// - DEADLINE_EXCEEDED of one attempt: reads are side-effect free, and writes
//   carry the same (client_id, sequence) on every attempt, so the state
//   machine applies them once (Raft thesis §6.3). A leadership transfer to
//   "any" voter is the exception: it is not idempotent (a second transfer
//   would move leadership again), so its timeout is returned.
// - FAILED_PRECONDITION is returned at once: a stale session sequence, a
//   change that can never apply ("cannot remove the last voter"), another
//   transfer in progress (the operator decides) will not mend themselves by
//   retrying. A membership change refused only for now (the previous change
//   still in flight, a new leader that has not committed in its term) comes
//   back UNAVAILABLE and not proposed, and is retried like any UNAVAILABLE.
// - Every other code (INVALID_ARGUMENT, NOT_FOUND, ALREADY_EXISTS, ABORTED,
//   DATA_LOSS, UNIMPLEMENTED, ...) is an answer, returned at once.
RetryPolicy RetryPolicyFor(CallKind kind) {
  RetryPolicy policy;
  switch (kind) {
    case CallKind::kRead:
      break;
    case CallKind::kWrite:
    case CallKind::kTransfer:
      policy.prefer_leader = true;
      break;
    case CallKind::kMembershipChange:
      policy.prefer_leader = true;
      break;
    case CallKind::kTransferToAny:
      policy.prefer_leader = true;
      policy.retry_deadline_exceeded = false;
      break;
  }
  return policy;
}

bool IsRetryable(const grpc::Status& status, const RetryPolicy& policy) {
  switch (status.error_code()) {
    case grpc::StatusCode::UNAVAILABLE:
      return true;
    case grpc::StatusCode::RESOURCE_EXHAUSTED:
      // gRPC's own refusal of a request above the server's message size
      // limit has this code too, and it is permanent.
      return status.error_message().find("larger than max") == std::string::npos;
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      return policy.retry_deadline_exceeded;
    default:
      return false;
  }
}

// Whether a failed attempt may still have taken effect: it timed out, or
// the server (or a broken connection) answered UNAVAILABLE, which a node
// also says when it loses leadership with the request pending. Not when
// no connection could be made at all: gRPC then says "failed to connect to
// all addresses" and the request never left the client.
bool MayHaveTakenEffect(const grpc::Status& status) {
  switch (status.error_code()) {
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      return true;
    case grpc::StatusCode::UNAVAILABLE:
      return status.error_message().find("failed to connect to all addresses") ==
             std::string::npos;
    default:
      return false;
  }
}

// What a call's attempts did, beyond its result.
struct CallTrace {
  // Some attempt failed in a way that leaves its effect unknown (timed out,
  // or the connection failed after the request may have been sent).
  bool outcome_unknown = false;
};

}  // namespace

std::string_view HealthStatusName(HealthStatus status) {
  switch (status) {
    case HealthStatus::kUnknown:
      return "UNKNOWN";
    case HealthStatus::kServing:
      return "SERVING";
    case HealthStatus::kNotServing:
      return "NOT_SERVING";
    case HealthStatus::kServiceUnknown:
      return "SERVICE_UNKNOWN";
  }
  return "UNKNOWN";
}

absl::Status ValidateEndpoint(std::string_view endpoint_text) {
  // absl::string_view is not std::string_view in this abseil.
  const absl::string_view endpoint(endpoint_text.data(), endpoint_text.size());
  auto bad = [&](absl::string_view why) {
    return absl::InvalidArgumentError(
        absl::StrCat("bad endpoint \"", endpoint, "\": ", why, " (want host:port)"));
  };
  absl::string_view host;
  absl::string_view port;
  if (!endpoint.empty() && endpoint.front() == '[') {
    const size_t close = endpoint.find("]:");
    if (close == absl::string_view::npos) return bad("no ]:port after an [IPv6 address]");
    host = endpoint.substr(1, close - 1);
    port = endpoint.substr(close + 2);
  } else {
    const size_t colon = endpoint.rfind(':');
    if (colon == absl::string_view::npos) return bad("no port");
    host = endpoint.substr(0, colon);
    port = endpoint.substr(colon + 1);
    if (host.find(':') != absl::string_view::npos) {
      return bad("an IPv6 address must be in brackets");
    }
  }
  if (host.empty()) return bad("empty host");
  for (char c : host) {
    if (absl::ascii_isspace(static_cast<unsigned char>(c)) || c == '/' || c == '[' || c == ']') {
      return bad("invalid character in host");
    }
  }
  if (port.empty() || port.size() > 5 ||
      !std::all_of(port.begin(), port.end(),
                   [](char c) { return absl::ascii_isdigit(static_cast<unsigned char>(c)); })) {
    return bad("port is not a number");
  }
  int port_number = 0;
  if (!absl::SimpleAtoi(port, &port_number) || port_number < 1 || port_number > 65535) {
    return bad("port out of range 1..65535");
  }
  return absl::OkStatus();
}

class KvClient::Impl {
 public:
  explicit Impl(ClientOptions options) : options_(std::move(options)) {
    for (const std::string& address : options_.endpoints) {
      endpoints_.push_back(MakeEndpoint(address));
    }
    first_client_id_ = options_.client_id != 0 ? options_.client_id : RandomNonZeroId();
    free_sessions_.push_back(Session{first_client_id_, 1});
  }

  const ClientOptions& options() const { return options_; }
  uint64_t first_client_id() const { return first_client_id_; }

  uint64_t known_leader_id() const {
    absl::MutexLock lock(&mu_);
    return leader_id_;
  }

  // A write session: one client id with one write outstanding at a time.
  struct Session {
    uint64_t client_id = 0;
    uint64_t next_sequence = 1;
  };

  // Takes a free session (the most recently used first, so a client used
  // by one thread keeps one client id), or opens one with a fresh id.
  Session AcquireSession() {
    absl::MutexLock lock(&mu_);
    if (free_sessions_.empty()) return Session{RandomNonZeroId(), 1};
    Session session = free_sessions_.back();
    free_sessions_.pop_back();
    return session;
  }
  void ReleaseSession(Session session) {
    absl::MutexLock lock(&mu_);
    free_sessions_.push_back(session);
  }

  // Runs one logical call: attempts invoke(endpoint, context, response)
  // until it succeeds, fails in a way `policy` does not retry, max_attempts
  // are spent or total_deadline passes.
  template <typename Response, typename Invoke>
  absl::StatusOr<Response> Call(const RetryPolicy& policy, absl::Time total_deadline,
                                Invoke invoke, CallTrace* trace) {
    const absl::Time start = absl::Now();
    size_t index = PickEndpoint(policy.prefer_leader);
    bool redirected_once = false;
    bool redirect = false;
    absl::Status last;
    bool out_of_time = false;
    int attempt = 0;
    while (attempt < options_.max_attempts) {
      if (attempt > 0) {
        // The first redirection to a named leader goes at once; everything
        // else waits, so a cluster without a leader is not hammered.
        const absl::Duration pause =
            redirect && !redirected_once ? absl::ZeroDuration() : Backoff(attempt);
        if (redirect) redirected_once = true;
        if (absl::Now() + pause + absl::Milliseconds(1) >= total_deadline) {
          out_of_time = true;
          break;
        }
        absl::SleepFor(pause);
      }
      ++attempt;
      std::shared_ptr<Endpoint> endpoint = EndpointAt(index);
      grpc::ClientContext context;
      context.set_deadline(
          absl::ToChronoTime(std::min(absl::Now() + options_.request_timeout, total_deadline)));
      Response response;
      const grpc::Status status = invoke(*endpoint, &context, &response);
      const LeaderHint hint = ReadLeaderHint(context);
      if (status.ok()) {
        NoteAnswer(index, response.header().node_id(), hint);
        return response;
      }
      last = ToAbslStatus(status, endpoint->address);
      if (!IsRetryable(status, policy)) {
        // An answer from a node: it still tells who answers there.
        NoteFailure(index, status.error_code(), hint);
        return last;
      }
      // A node that refused before proposing says so in a trailer.
      const bool not_proposed =
          context.GetServerTrailingMetadata().find("quorumkv-not-proposed") !=
          context.GetServerTrailingMetadata().end();
      if (trace != nullptr && MayHaveTakenEffect(status) && !not_proposed) trace->outcome_unknown = true;
      const auto [next, is_redirect] = NoteFailure(index, status.error_code(), hint);
      index = next;
      redirect = is_redirect;
      if (absl::Now() >= total_deadline) {
        out_of_time = true;
        break;
      }
    }
    const std::string limit =
        out_of_time ? absl::StrCat("total timeout ", absl::FormatDuration(options_.total_timeout))
                    : absl::StrCat("max attempts ", options_.max_attempts);
    return absl::Status(
        last.code(),
        absl::StrCat(last.message(), " (gave up after ", attempt,
                     attempt == 1 ? " attempt in " : " attempts in ",
                     absl::FormatDuration(absl::Trunc(absl::Now() - start, absl::Milliseconds(1))),
                     ", ", limit, ")"));
  }

  // Membership changes carry no (client_id, sequence): a change whose first
  // attempt took effect but timed out is answered by its retry with
  // ALREADY_EXISTS, NOT_FOUND or FAILED_PRECONDITION. When an earlier
  // attempt's outcome is unknown and the server then refuses, the client
  // reads the member list: if the change it asked for is in place, the call
  // succeeded. Both calls share one total deadline.
  template <typename Response, typename Invoke, typename Reached>
  absl::StatusOr<std::vector<v1::Member>> ChangeMembership(Invoke invoke, Reached reached) {
    const absl::Time deadline = NewDeadline();
    CallTrace trace;
    auto result =
        Call<Response>(RetryPolicyFor(CallKind::kMembershipChange), deadline, invoke, &trace);
    if (result.ok()) {
      NoteMembers(result->members());
      return std::vector<v1::Member>(result->members().begin(), result->members().end());
    }
    const absl::StatusCode code = result.status().code();
    const bool refused = code == absl::StatusCode::kAlreadyExists ||
                         code == absl::StatusCode::kNotFound ||
                         code == absl::StatusCode::kFailedPrecondition;
    if (!trace.outcome_unknown || !refused) return result.status();
    auto members = Call<v1::ListMembersResponse>(
        RetryPolicyFor(CallKind::kRead), deadline,
        [&](Endpoint& e, grpc::ClientContext* c, v1::ListMembersResponse* r) {
          return e.cluster->ListMembers(c, v1::ListMembersRequest(), r);
        },
        nullptr);
    if (!members.ok() || !reached(members->members())) return result.status();
    NoteMembers(members->members());
    return std::vector<v1::Member>(members->members().begin(), members->members().end());
  }

  absl::Time NewDeadline() const { return absl::Now() + options_.total_timeout; }

  // The endpoint for `address`: a configured or discovered one, else a new
  // channel that is not kept (Status and CheckHealth of any host).
  std::pair<std::shared_ptr<Endpoint>, std::optional<size_t>> EndpointFor(
      const std::string& address) {
    {
      absl::MutexLock lock(&mu_);
      for (size_t i = 0; i < endpoints_.size(); ++i) {
        if (endpoints_[i]->address == address) return {endpoints_[i], i};
      }
    }
    return {MakeEndpoint(address), std::nullopt};
  }

  // What a Status answer says about the cluster.
  void NoteStatus(std::optional<size_t> index, const v1::StatusResponse& status) {
    absl::MutexLock lock(&mu_);
    if (index.has_value() && status.node_id() != 0) MapNodeLocked(status.node_id(), *index);
    NoteMembersLocked(status.members());
    if (status.leader_id() != 0) leader_id_ = status.leader_id();
    ResolveLeaderLocked(LeaderHint{});
  }

  void NoteMembers(const google::protobuf::RepeatedPtrField<v1::Member>& members) {
    absl::MutexLock lock(&mu_);
    NoteMembersLocked(members);
    ResolveLeaderLocked(LeaderHint{});
  }

  void NoteLeader(uint64_t leader_id) {
    if (leader_id == 0) return;
    absl::MutexLock lock(&mu_);
    leader_id_ = leader_id;
    ResolveLeaderLocked(LeaderHint{});
  }

 private:
  // Exponential back-off before attempt `attempt` + 1, with jitter in
  // [0.5, 1] so clients that failed together do not retry together.
  absl::Duration Backoff(int attempt) const {
    absl::Duration base = options_.backoff_min;
    for (int i = 1; i < attempt && base < options_.backoff_max; ++i) base *= 2;
    base = std::min(base, options_.backoff_max);
    static thread_local absl::BitGen gen;
    return base * absl::Uniform<double>(absl::IntervalClosedClosed, gen, 0.5, 1.0);
  }

  std::shared_ptr<Endpoint> EndpointAt(size_t index) {
    absl::MutexLock lock(&mu_);
    return endpoints_[index];
  }

  size_t PickEndpoint(bool prefer_leader) {
    absl::MutexLock lock(&mu_);
    if (prefer_leader && leader_id_ != 0) {
      if (auto it = node_endpoint_.find(leader_id_); it != node_endpoint_.end()) return it->second;
    }
    return last_answered_;
  }

  // A node answered (successfully) on endpoint `index`.
  void NoteAnswer(size_t index, uint64_t node_id, const LeaderHint& hint) {
    absl::MutexLock lock(&mu_);
    last_answered_ = index;
    if (node_id != 0) MapNodeLocked(node_id, index);
    if (hint.leader_id != 0) {
      leader_id_ = hint.leader_id;
      ResolveLeaderLocked(hint);
    }
  }

  // An attempt on endpoint `index` failed with `code`. Returns where the
  // next attempt goes, and whether that is a redirection to the leader.
  std::pair<size_t, bool> NoteFailure(size_t index, grpc::StatusCode code,
                                      const LeaderHint& hint) {
    absl::MutexLock lock(&mu_);
    if (hint.leader_id != 0) {
      leader_id_ = hint.leader_id;
      ResolveLeaderLocked(hint);
    } else if (code == grpc::StatusCode::UNAVAILABLE && leader_id_ != 0) {
      // The believed leader's endpoint failed without naming a leader: it is
      // down or no longer leads. Forget it rather than keep coming back.
      if (auto it = node_endpoint_.find(leader_id_);
          it != node_endpoint_.end() && it->second == index) {
        leader_id_ = 0;
      }
    }
    // Back-pressure comes from the leader (or through it): asking another
    // node only adds a hop.
    if (code == grpc::StatusCode::RESOURCE_EXHAUSTED) return {index, false};
    if (leader_id_ != 0) {
      if (auto it = node_endpoint_.find(leader_id_);
          it != node_endpoint_.end() && it->second != index) {
        return {it->second, true};
      }
    }
    return {(index + 1) % endpoints_.size(), false};
  }

  // node_id answers on endpoint `index` (and no other node does any more).
  void MapNodeLocked(uint64_t node_id, size_t index) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    for (auto it = node_endpoint_.begin(); it != node_endpoint_.end();) {
      if (it->second == index && it->first != node_id) {
        node_endpoint_.erase(it++);
      } else {
        ++it;
      }
    }
    node_endpoint_[node_id] = index;
  }

  void NoteMembersLocked(const google::protobuf::RepeatedPtrField<v1::Member>& members)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    for (const v1::Member& member : members) {
      if (member.id() != 0 && !member.client_address().empty() &&
          ValidateEndpoint(member.client_address()).ok()) {
        member_client_address_[member.id()] = member.client_address();
      }
    }
  }

  // Finds an endpoint for the known leader when none is mapped yet: the
  // address in the hint, else the member list's client address for it.
  void ResolveLeaderLocked(const LeaderHint& hint) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (leader_id_ == 0) return;
    std::string address;
    if (hint.leader_id == leader_id_ && !hint.leader_address.empty()) {
      address = hint.leader_address;
    } else if (node_endpoint_.contains(leader_id_)) {
      return;
    } else if (auto it = member_client_address_.find(leader_id_);
               it != member_client_address_.end()) {
      address = it->second;
    } else {
      return;
    }
    for (size_t i = 0; i < endpoints_.size(); ++i) {
      if (endpoints_[i]->address == address) {
        MapNodeLocked(leader_id_, i);
        return;
      }
    }
    if (endpoints_.size() >= options_.endpoints.size() + kMaxDiscoveredEndpoints) return;
    endpoints_.push_back(MakeEndpoint(address));
    MapNodeLocked(leader_id_, endpoints_.size() - 1);
  }

  const ClientOptions options_;
  uint64_t first_client_id_ = 0;

  mutable absl::Mutex mu_;
  // The configured endpoints, then discovered ones; only ever appended to,
  // so an index stays valid.
  std::vector<std::shared_ptr<Endpoint>> endpoints_ ABSL_GUARDED_BY(mu_);
  // The endpoint that answered last; the first call goes to the first one.
  size_t last_answered_ ABSL_GUARDED_BY(mu_) = 0;
  // The leader as last reported by any node; 0 when unknown.
  uint64_t leader_id_ ABSL_GUARDED_BY(mu_) = 0;
  // Which node answers on which endpoint (from response headers).
  absl::flat_hash_map<uint64_t, size_t> node_endpoint_ ABSL_GUARDED_BY(mu_);
  // Members' client addresses (from member lists).
  absl::flat_hash_map<uint64_t, std::string> member_client_address_ ABSL_GUARDED_BY(mu_);
  std::vector<Session> free_sessions_ ABSL_GUARDED_BY(mu_);
};

absl::StatusOr<std::unique_ptr<KvClient>> KvClient::Create(ClientOptions options) {
  if (options.endpoints.empty()) {
    return absl::InvalidArgumentError("no endpoints given (want host:port of any node)");
  }
  for (size_t i = 0; i < options.endpoints.size(); ++i) {
    if (absl::Status status = ValidateEndpoint(options.endpoints[i]); !status.ok()) return status;
    for (size_t j = 0; j < i; ++j) {
      if (options.endpoints[j] == options.endpoints[i]) {
        return absl::InvalidArgumentError(
            absl::StrCat("endpoint \"", options.endpoints[i], "\" listed twice"));
      }
    }
  }
  if (options.request_timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("request_timeout must be positive");
  }
  if (options.total_timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("total_timeout must be positive");
  }
  if (options.max_attempts < 1) {
    return absl::InvalidArgumentError("max_attempts must be at least 1");
  }
  if (options.backoff_min <= absl::ZeroDuration() || options.backoff_max < options.backoff_min) {
    return absl::InvalidArgumentError("want 0 < backoff_min <= backoff_max");
  }
  return std::unique_ptr<KvClient>(new KvClient(std::make_unique<Impl>(std::move(options))));
}

KvClient::KvClient(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
KvClient::~KvClient() = default;

uint64_t KvClient::client_id() const { return impl_->first_client_id(); }
uint64_t KvClient::known_leader_id() const { return impl_->known_leader_id(); }

absl::Status KvClient::Put(std::string_view key, std::string_view value) {
  Impl::Session session = impl_->AcquireSession();
  v1::PutRequest request;
  request.set_key(std::string(key));
  request.set_value(std::string(value));
  request.set_client_id(session.client_id);
  request.set_sequence(session.next_sequence++);
  // Every attempt sends this same request: same (client_id, sequence).
  auto result = impl_->Call<v1::PutResponse>(
      RetryPolicyFor(CallKind::kWrite), impl_->NewDeadline(),
      [&](Endpoint& e, grpc::ClientContext* c, v1::PutResponse* r) {
        return e.kv->Put(c, request, r);
      },
      nullptr);
  impl_->ReleaseSession(session);
  return result.status();
}

absl::StatusOr<std::optional<std::string>> KvClient::Get(std::string_view key,
                                                         v1::Consistency consistency) {
  if (!v1::Consistency_IsValid(consistency)) {
    return absl::InvalidArgumentError(
        absl::StrCat("unknown consistency level ", static_cast<int>(consistency)));
  }
  v1::GetRequest request;
  request.set_key(std::string(key));
  request.set_consistency(consistency);
  auto result = impl_->Call<v1::GetResponse>(
      RetryPolicyFor(CallKind::kRead), impl_->NewDeadline(),
      [&](Endpoint& e, grpc::ClientContext* c, v1::GetResponse* r) {
        return e.kv->Get(c, request, r);
      },
      nullptr);
  if (!result.ok()) return result.status();
  if (!result->found()) return std::optional<std::string>();
  return std::optional<std::string>(std::move(*result->mutable_value()));
}

absl::StatusOr<bool> KvClient::Delete(std::string_view key) {
  Impl::Session session = impl_->AcquireSession();
  v1::DeleteRequest request;
  request.set_key(std::string(key));
  request.set_client_id(session.client_id);
  request.set_sequence(session.next_sequence++);
  auto result = impl_->Call<v1::DeleteResponse>(
      RetryPolicyFor(CallKind::kWrite), impl_->NewDeadline(),
      [&](Endpoint& e, grpc::ClientContext* c, v1::DeleteResponse* r) {
        return e.kv->Delete(c, request, r);
      },
      nullptr);
  impl_->ReleaseSession(session);
  if (!result.ok()) return result.status();
  return result->deleted();
}

absl::StatusOr<uint64_t> KvClient::ReadIndex() {
  const v1::ReadIndexRequest request;
  auto result = impl_->Call<v1::ReadIndexResponse>(
      RetryPolicyFor(CallKind::kRead), impl_->NewDeadline(),
      [&](Endpoint& e, grpc::ClientContext* c, v1::ReadIndexResponse* r) {
        return e.kv->ReadIndex(c, request, r);
      },
      nullptr);
  if (!result.ok()) return result.status();
  return result->read_index();
}

namespace {

// A probe of one endpoint (Status, health check): one attempt, since its
// answer is about that endpoint. Except when the connection itself failed
// (the channel is in TRANSIENT_FAILURE; seen at once on loopback under
// load, or left by an earlier probe of a node that was down): the channel
// then waits out its reconnect back-off and the probe would call a live
// node unreachable. The probe resets the back-off (a probe asks about now,
// and earlier failures may have grown the back-off past the wait below) and
// a second attempt waits for the reconnection, half a second at most, so a
// dead node is still reported quickly; an answer from the server is never
// asked again.
constexpr absl::Duration kProbeReconnectWait = absl::Milliseconds(500);

grpc::Status Probe(grpc::Channel& channel, absl::Duration timeout,
                   const std::function<grpc::Status(grpc::ClientContext*)>& rpc) {
  const absl::Time deadline = absl::Now() + timeout;
  grpc::Status status;
  {
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(deadline));
    status = rpc(&context);
  }
  if (status.error_code() != grpc::StatusCode::UNAVAILABLE || absl::Now() >= deadline ||
      channel.GetState(/*try_to_connect=*/false) != GRPC_CHANNEL_TRANSIENT_FAILURE) {
    return status;
  }
  grpc::experimental::ChannelResetConnectionBackoff(&channel);
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(std::min(deadline, absl::Now() + kProbeReconnectWait)));
  context.set_wait_for_ready(true);
  const grpc::Status retried = rpc(&context);
  // A retry that only timed out waiting for a connection tells nothing new.
  return retried.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED ? status : retried;
}

}  // namespace

absl::StatusOr<v1::StatusResponse> KvClient::Status(const std::string& endpoint) {
  if (absl::Status valid = ValidateEndpoint(endpoint); !valid.ok()) return valid;
  auto [target, index] = impl_->EndpointFor(endpoint);
  v1::StatusResponse response;
  const grpc::Status status =
      Probe(*target->channel, impl_->options().request_timeout, [&, target = target](grpc::ClientContext* context) {
        return target->cluster->Status(context, v1::StatusRequest(), &response);
      });
  if (!status.ok()) return ToAbslStatus(status, endpoint);
  impl_->NoteStatus(index, response);
  return response;
}

absl::StatusOr<HealthStatus> KvClient::CheckHealth(const std::string& endpoint,
                                                   const std::string& service) {
  if (absl::Status valid = ValidateEndpoint(endpoint); !valid.ok()) return valid;
  auto [target, index] = impl_->EndpointFor(endpoint);
  health::HealthCheckRequest request;
  request.set_service(service);
  health::HealthCheckResponse response;
  const grpc::Status status =
      Probe(*target->channel, impl_->options().request_timeout, [&, target = target](grpc::ClientContext* context) {
        return target->health->Check(context, request, &response);
      });
  if (!status.ok()) return ToAbslStatus(status, endpoint);
  switch (response.status()) {
    case health::HealthCheckResponse::SERVING:
      return HealthStatus::kServing;
    case health::HealthCheckResponse::NOT_SERVING:
      return HealthStatus::kNotServing;
    case health::HealthCheckResponse::SERVICE_UNKNOWN:
      return HealthStatus::kServiceUnknown;
    default:
      return HealthStatus::kUnknown;
  }
}

absl::StatusOr<std::vector<v1::Member>> KvClient::ListMembers() {
  auto result = impl_->Call<v1::ListMembersResponse>(
      RetryPolicyFor(CallKind::kRead), impl_->NewDeadline(),
      [&](Endpoint& e, grpc::ClientContext* c, v1::ListMembersResponse* r) {
        return e.cluster->ListMembers(c, v1::ListMembersRequest(), r);
      },
      nullptr);
  if (!result.ok()) return result.status();
  impl_->NoteMembers(result->members());
  return std::vector<v1::Member>(result->members().begin(), result->members().end());
}

namespace {

const v1::Member* FindMember(const google::protobuf::RepeatedPtrField<v1::Member>& members,
                             uint64_t id) {
  for (const v1::Member& member : members) {
    if (member.id() == id) return &member;
  }
  return nullptr;
}

}  // namespace

absl::StatusOr<std::vector<v1::Member>> KvClient::AddMember(uint64_t id, std::string peer_address,
                                                           std::string client_address,
                                                           bool as_voter) {
  v1::AddMemberRequest request;
  request.set_id(id);
  request.set_peer_address(std::move(peer_address));
  request.set_client_address(std::move(client_address));
  request.set_as_voter(as_voter);
  return impl_->ChangeMembership<v1::AddMemberResponse>(
      [&](Endpoint& e, grpc::ClientContext* c, v1::AddMemberResponse* r) {
        return e.cluster->AddMember(c, request, r);
      },
      [&](const google::protobuf::RepeatedPtrField<v1::Member>& members) {
        const v1::Member* member = FindMember(members, id);
        return member != nullptr && member->peer_address() == request.peer_address() &&
               (!as_voter || member->role() == v1::VOTER);
      });
}

absl::StatusOr<std::vector<v1::Member>> KvClient::RemoveMember(uint64_t id) {
  v1::RemoveMemberRequest request;
  request.set_id(id);
  return impl_->ChangeMembership<v1::RemoveMemberResponse>(
      [&](Endpoint& e, grpc::ClientContext* c, v1::RemoveMemberResponse* r) {
        return e.cluster->RemoveMember(c, request, r);
      },
      [&](const google::protobuf::RepeatedPtrField<v1::Member>& members) {
        return FindMember(members, id) == nullptr;
      });
}

absl::StatusOr<std::vector<v1::Member>> KvClient::PromoteMember(uint64_t id) {
  v1::PromoteMemberRequest request;
  request.set_id(id);
  return impl_->ChangeMembership<v1::PromoteMemberResponse>(
      [&](Endpoint& e, grpc::ClientContext* c, v1::PromoteMemberResponse* r) {
        return e.cluster->PromoteMember(c, request, r);
      },
      [&](const google::protobuf::RepeatedPtrField<v1::Member>& members) {
        const v1::Member* member = FindMember(members, id);
        return member != nullptr && member->role() == v1::VOTER;
      });
}

absl::StatusOr<uint64_t> KvClient::TransferLeadership(uint64_t target_id) {
  v1::TransferLeadershipRequest request;
  request.set_target_id(target_id);
  auto result = impl_->Call<v1::TransferLeadershipResponse>(
      RetryPolicyFor(target_id == 0 ? CallKind::kTransferToAny : CallKind::kTransfer),
      impl_->NewDeadline(),
      [&](Endpoint& e, grpc::ClientContext* c, v1::TransferLeadershipResponse* r) {
        return e.cluster->TransferLeadership(c, request, r);
      },
      nullptr);
  if (!result.ok()) return result.status();
  impl_->NoteLeader(result->leader_id());
  return result->leader_id();
}

}  // namespace quorumkv::client
