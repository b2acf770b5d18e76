// kvserver: one quorumkv node. See `kvserver --help` for every flag.
//
// A three-node cluster on one machine:
//   kvserver --id 1 --data-dir d/1 --client-addr 127.0.0.1:2379 --peer-addr 127.0.0.1:2380
//            --initial-cluster 1=127.0.0.1:2380,2=127.0.0.1:22380,3=127.0.0.1:32380
//   (and the same for ids 2 and 3 with their own addresses)
// A fourth node joining it (after `kvctl member add 4 127.0.0.1:42380`):
//   kvserver --id 4 --data-dir d/4 --client-addr 127.0.0.1:42379 --peer-addr 127.0.0.1:42380
//            --join 1=127.0.0.1:2380,2=127.0.0.1:22380,3=127.0.0.1:32380
#include <algorithm>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "grpcpp/ext/proto_server_reflection_plugin.h"
#include "grpcpp/grpcpp.h"
#include "grpcpp/health_check_service_interface.h"
#include "prometheus/exposer.h"
#include "server/client_service.h"
#include "server/log.h"
#include "server/node.h"
#include "server/peer_transport.h"

ABSL_FLAG(uint64_t, id, 0, "This node's id (> 0), unique in the cluster.");
ABSL_FLAG(std::string, data_dir, "", "Directory for the Raft log and the key-value data (created if missing).");
ABSL_FLAG(std::string, client_addr, "127.0.0.1:2379", "host:port to serve the client API (KV, Cluster, health) on.");
ABSL_FLAG(std::string, peer_addr, "127.0.0.1:2380", "host:port to serve the Raft peer API on.");
ABSL_FLAG(std::string, advertise_client_addr, "",
          "Client address other nodes and clients should use (default: --client-addr).");
ABSL_FLAG(std::string, advertise_peer_addr, "", "Peer address other nodes should use (default: --peer-addr).");
ABSL_FLAG(std::string, initial_cluster, "",
          "The founding members of a new cluster: id=peer_host:port[@client_host:port],... (this node included). "
          "Used only when the data dir is empty.");
ABSL_FLAG(std::string, join, "",
          "Join an existing cluster instead of founding one: the existing members as "
          "id=peer_host:port[@client_host:port],... Add this node first with `kvctl member add`.");
ABSL_FLAG(std::string, cluster_token, "quorumkv",
          "Names the cluster: nodes refuse peer traffic and data dirs of another token.");
ABSL_FLAG(int, tick_ms, 10, "Raft tick interval in milliseconds.");
ABSL_FLAG(int, heartbeat_ticks, 5, "Leader heartbeat interval, in ticks.");
ABSL_FLAG(int, election_ticks, 50,
          "Minimum election timeout in ticks (randomized up to twice this). Must exceed --heartbeat-ticks.");
ABSL_FLAG(int, lease_drift_ticks, 10,
          "Clock-drift margin for leader leases, in ticks: the lease lasts election - drift ticks.");
ABSL_FLAG(int, commit_notice_delay_us, 1000,
          "How long the leader may hold an AppendEntries that only tells a follower the new commit "
          "index, waiting for one with entries to carry it (0: send at once). Delays only followers' "
          "serializable reads; fewer messages at low load.");
ABSL_FLAG(uint64_t, snapshot_min_entries, 10000, "Log entries between snapshots at the least (0: by bytes only).");
ABSL_FLAG(uint64_t, snapshot_min_bytes, 64ull << 20, "Log bytes between snapshots at the least (0: by entries only).");
ABSL_FLAG(uint64_t, snapshot_trailing_entries, 1000,
          "Entries kept in the log below a snapshot, so followers slightly behind catch up without one.");
ABSL_FLAG(uint64_t, max_key_bytes, 4096, "Largest key accepted, in bytes.");
ABSL_FLAG(uint64_t, max_value_bytes, 1 << 20, "Largest value accepted, in bytes.");
ABSL_FLAG(uint64_t, max_pending, 20000, "Requests pending on this node before RESOURCE_EXHAUSTED.");
ABSL_FLAG(uint64_t, key_size_cache_mb, 32,
          "Memory for the sizes of recently written keys, in MiB, so that most puts and deletes need "
          "not read the old value (0: off).");
ABSL_FLAG(bool, auto_promote, true, "Promote a learner to voter automatically once it has caught up.");
ABSL_FLAG(std::string, metrics_addr, "",
          "host:port to serve Prometheus metrics on, at /metrics (empty: no metrics endpoint).");
ABSL_FLAG(std::string, log_level, "info", "debug, info, warn or error.");

namespace {

using quorumkv::server::Member;

[[noreturn]] void Die(const std::string& message) {
  std::fprintf(stderr, "kvserver: %s\n", message.c_str());
  std::exit(1);
}

// Parses id=peer[@client],...
std::vector<Member> ParseMembers(const std::string& flag, const std::string& spec) {
  std::vector<Member> out;
  for (absl::string_view part : absl::StrSplit(spec, ',', absl::SkipWhitespace())) {
    std::vector<std::string> kv = absl::StrSplit(part, absl::MaxSplits('=', 1));
    Member m;
    if (kv.size() != 2 || !absl::SimpleAtoi(kv[0], &m.id) || m.id == 0) {
      Die("--" + flag + ": \"" + std::string(part) + "\" is not id=host:port (id > 0)");
    }
    std::vector<std::string> addrs = absl::StrSplit(kv[1], absl::MaxSplits('@', 1));
    m.peer_address = addrs[0];
    if (addrs.size() == 2) m.client_address = addrs[1];
    if (!quorumkv::server::ValidHostPort(m.peer_address)) {
      Die("--" + flag + ": peer address \"" + m.peer_address + "\" of node " + std::to_string(m.id) +
          " is not host:port");
    }
    if (!m.client_address.empty() && !quorumkv::server::ValidHostPort(m.client_address)) {
      Die("--" + flag + ": client address \"" + m.client_address + "\" of node " + std::to_string(m.id) +
          " is not host:port");
    }
    for (const Member& other : out) {
      if (other.id == m.id) Die("--" + flag + ": node " + std::to_string(m.id) + " is listed twice");
    }
    out.push_back(m);
  }
  return out;
}

uint64_t HashToken(const std::string& token) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : token) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return h == 0 ? 1 : h;
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "One node of a quorumkv cluster.\n"
      "  kvserver --id 1 --data-dir DIR --client-addr H:P --peer-addr H:P --initial-cluster 1=H:P,2=H:P,3=H:P\n"
      "  kvserver --id 4 --data-dir DIR --client-addr H:P --peer-addr H:P --join 1=H:P,2=H:P,3=H:P");
  // Accept --data-dir as well as --data_dir (abseil spells flags with
  // underscores; etcd users type dashes).
  std::vector<std::string> normalized(argv, argv + argc);
  for (size_t i = 1; i < normalized.size(); ++i) {
    std::string& a = normalized[i];
    if (a.rfind("--", 0) != 0) continue;
    const size_t end = std::min(a.find('='), a.size());
    for (size_t k = 2; k < end; ++k) {
      if (a[k] == '-') a[k] = '_';
    }
  }
  std::vector<char*> normalized_argv;
  for (std::string& a : normalized) normalized_argv.push_back(a.data());
  std::vector<char*> rest = absl::ParseCommandLine(argc, normalized_argv.data());
  // Debian's abseil checks every mutex acquisition for deadlock cycles,
  // about 1 % of a busy server's CPU; our lock order is fixed and tested.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  if (rest.size() > 1) Die(std::string("unexpected argument \"") + rest[1] + "\"; see --help");

  const std::string level = absl::GetFlag(FLAGS_log_level);
  if (level == "debug") {
    quorumkv::server::SetLogLevel(quorumkv::server::LogLevel::kDebug);
  } else if (level == "info") {
    quorumkv::server::SetLogLevel(quorumkv::server::LogLevel::kInfo);
  } else if (level == "warn") {
    quorumkv::server::SetLogLevel(quorumkv::server::LogLevel::kWarn);
  } else if (level == "error") {
    quorumkv::server::SetLogLevel(quorumkv::server::LogLevel::kError);
  } else {
    Die("--log-level must be debug, info, warn or error");
  }

  quorumkv::server::NodeOptions o;
  const uint64_t id = absl::GetFlag(FLAGS_id);
  if (id == 0) Die("--id is required (a number > 0)");
  o.id = quorumkv::raft::NodeId(id);
  o.data_dir = absl::GetFlag(FLAGS_data_dir);
  if (o.data_dir.empty()) Die("--data-dir is required");
  const std::string client_addr = absl::GetFlag(FLAGS_client_addr);
  const std::string peer_addr = absl::GetFlag(FLAGS_peer_addr);
  if (!quorumkv::server::ValidHostPort(client_addr)) Die("--client-addr \"" + client_addr + "\" is not host:port");
  if (!quorumkv::server::ValidHostPort(peer_addr)) Die("--peer-addr \"" + peer_addr + "\" is not host:port");
  o.client_address = absl::GetFlag(FLAGS_advertise_client_addr).empty() ? client_addr
                                                                         : absl::GetFlag(FLAGS_advertise_client_addr);
  o.peer_address =
      absl::GetFlag(FLAGS_advertise_peer_addr).empty() ? peer_addr : absl::GetFlag(FLAGS_advertise_peer_addr);
  o.cluster_id = HashToken(absl::GetFlag(FLAGS_cluster_token));

  const std::string initial = absl::GetFlag(FLAGS_initial_cluster);
  const std::string join = absl::GetFlag(FLAGS_join);
  if (!initial.empty() && !join.empty()) Die("give either --initial-cluster or --join, not both");
  if (initial.empty() && join.empty()) Die("give --initial-cluster (new cluster) or --join (existing cluster)");
  if (!initial.empty()) {
    o.initial_members = ParseMembers("initial-cluster", initial);
    bool self = false;
    for (Member& m : o.initial_members) {
      if (m.id == id) {
        self = true;
        if (m.client_address.empty()) m.client_address = o.client_address;
      }
    }
    if (!self) Die("--initial-cluster must list this node (id " + std::to_string(id) + ")");
  } else {
    o.known_peers = ParseMembers("join", join);
    for (const Member& m : o.known_peers) {
      if (m.id == id) Die("--join lists the existing members; this node (id " + std::to_string(id) + ") is not one");
    }
  }

  o.tick_interval = absl::Milliseconds(absl::GetFlag(FLAGS_tick_ms));
  o.heartbeat_interval_ticks = absl::GetFlag(FLAGS_heartbeat_ticks);
  o.election_timeout_ticks = absl::GetFlag(FLAGS_election_ticks);
  o.lease_drift_margin_ticks = absl::GetFlag(FLAGS_lease_drift_ticks);
  if (absl::GetFlag(FLAGS_tick_ms) <= 0) Die("--tick-ms must be > 0");
  if (absl::GetFlag(FLAGS_commit_notice_delay_us) < 0) Die("--commit-notice-delay-us must be >= 0");
  o.commit_notice_delay = absl::Microseconds(absl::GetFlag(FLAGS_commit_notice_delay_us));
  o.compaction.min_entries = absl::GetFlag(FLAGS_snapshot_min_entries);
  o.compaction.min_bytes = absl::GetFlag(FLAGS_snapshot_min_bytes);
  o.compaction.trailing_entries = absl::GetFlag(FLAGS_snapshot_trailing_entries);
  o.max_key_bytes = absl::GetFlag(FLAGS_max_key_bytes);
  o.max_value_bytes = absl::GetFlag(FLAGS_max_value_bytes);
  o.max_pending_requests = absl::GetFlag(FLAGS_max_pending);
  const uint64_t key_size_cache_mb = absl::GetFlag(FLAGS_key_size_cache_mb);
  if (key_size_cache_mb > (1u << 20)) Die("--key-size-cache-mb must be at most 1048576 (1 TiB)");
  o.key_size_cache_bytes = static_cast<size_t>(key_size_cache_mb) << 20;
  o.auto_promote_learners = absl::GetFlag(FLAGS_auto_promote);
  if (o.max_key_bytes == 0 || o.max_pending_requests == 0) Die("--max-key-bytes and --max-pending must be > 0");

  quorumkv::server::SetLogPrefix(("n" + std::to_string(id)).c_str());

  // Block the shutdown signals in every thread; one thread waits for them.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  auto node = quorumkv::server::Node::Open(o);
  if (!node.ok()) Die("cannot start: " + node.status().ToString());

  quorumkv::server::PeerTransportOptions to;
  to.cluster_id = o.cluster_id;
  to.self = o.id;
  auto transport = std::make_unique<quorumkv::server::PeerTransport>(to, node->get());

  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();

  // gRPC sets SO_REUSEPORT by default: two nodes could then share a port
  // and split its connections between them. A port in use must be an error.
  grpc::ServerBuilder peer_builder;
  peer_builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  int peer_port = 0;
  peer_builder.AddListeningPort(peer_addr, grpc::InsecureServerCredentials(), &peer_port);
  peer_builder.RegisterService(transport->service());
  transport->ConfigureServer(peer_builder);
  std::unique_ptr<grpc::Server> peer_server = peer_builder.BuildAndStart();
  if (peer_server == nullptr || peer_port == 0) Die("cannot listen on --peer-addr " + peer_addr);

  quorumkv::server::KvService kv_service(node->get());
  quorumkv::server::ClusterService cluster_service(node->get());
  grpc::ServerBuilder client_builder;
  client_builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  int client_port = 0;
  client_builder.AddListeningPort(client_addr, grpc::InsecureServerCredentials(), &client_port);
  client_builder.RegisterService(&kv_service);
  client_builder.RegisterService(&cluster_service);
  client_builder.SetMaxReceiveMessageSize(static_cast<int>(std::min<uint64_t>(o.max_value_bytes + (1 << 20), 1u << 30)));
  std::unique_ptr<grpc::Server> client_server = client_builder.BuildAndStart();
  if (client_server == nullptr || client_port == 0) Die("cannot listen on --client-addr " + client_addr);

  std::unique_ptr<prometheus::Exposer> exposer;
  const std::string metrics_addr = absl::GetFlag(FLAGS_metrics_addr);
  if (!metrics_addr.empty()) {
    if (!quorumkv::server::ValidHostPort(metrics_addr)) Die("--metrics-addr \"" + metrics_addr + "\" is not host:port");
    try {
      exposer = std::make_unique<prometheus::Exposer>(metrics_addr);
    } catch (const std::exception& e) {
      Die("cannot serve metrics on --metrics-addr " + metrics_addr + ": " + e.what());
    }
    exposer->RegisterCollectable((*node)->metrics().registry());
  }

  (*node)->Start(transport.get());
  LOG_INFO("node %llu serving clients on %s and peers on %s", static_cast<unsigned long long>(id),
           client_addr.c_str(), peer_addr.c_str());

  // Health: SERVING only with a known leader and everything known
  // committed applied here.
  std::atomic<bool> stop{false};
  std::thread health([&] {
    grpc::HealthCheckServiceInterface* h = client_server->GetHealthCheckService();
    while (!stop.load()) {
      const bool ok = (*node)->Healthy();
      h->SetServingStatus(ok);
      h->SetServingStatus("quorumkv.v1.KV", ok);
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  });

  int sig = 0;
  sigwait(&signals, &sig);
  LOG_INFO("node %llu received %s; shutting down", static_cast<unsigned long long>(id),
           sig == SIGTERM ? "SIGTERM" : "SIGINT");
  stop = true;
  health.join();
  // gRPC's Shutdown cancels the calls still in progress when its grace
  // period ends, but then waits until each is answered: a write that cannot
  // commit (no quorum), or one forwarded to a leader that does not answer,
  // would hold the process until its own deadline, up to an hour. So when
  // the grace period ends the node answers what is left, then the transport
  // its forwarded writes (the node forwards none once stopped).
  const auto grace_end = std::chrono::system_clock::now() + std::chrono::seconds(2);
  absl::Notification client_server_down;
  std::thread end_of_grace([&] {
    if (client_server_down.WaitForNotificationWithDeadline(absl::FromChrono(grace_end))) return;
    (*node)->Stop();
    transport->CancelForwards();
  });
  client_server->Shutdown(grace_end);
  client_server_down.Notify();
  end_of_grace.join();
  (*node)->Stop();
  transport->StopServingStreams();
  peer_server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1));
  transport.reset();
  exposer.reset();
  node->reset();
  LOG_INFO("node %llu stopped", static_cast<unsigned long long>(id));
  return 0;
}
