#include "server/metrics.h"

namespace quorumkv::server {

namespace {

using prometheus::BuildCounter;
using prometheus::BuildGauge;
using prometheus::BuildHistogram;
using prometheus::Histogram;

// 50 µs .. ~26 s, doubling: fsyncs, requests and snapshots all fit.
Histogram::BucketBoundaries LatencyBuckets() {
  Histogram::BucketBoundaries b;
  for (double v = 0.00005; v < 30; v *= 2) b.push_back(v);
  return b;
}

}  // namespace

NodeMetrics::NodeMetrics() : registry_(std::make_shared<prometheus::Registry>()) {
  auto& r = *registry_;
  auto gauge = [&r](const char* name, const char* help) {
    return &BuildGauge().Name(name).Help(help).Register(r).Add({});
  };
  auto counter = [&r](const char* name, const char* help) {
    return &BuildCounter().Name(name).Help(help).Register(r).Add({});
  };
  auto histogram = [&r](const char* name, const char* help, Histogram::BucketBoundaries b) {
    return &BuildHistogram().Name(name).Help(help).Register(r).Add({}, std::move(b));
  };
  term = gauge("quorumkv_raft_term", "The node's current Raft term.");
  is_leader = gauge("quorumkv_raft_is_leader", "1 if this node is the leader, else 0.");
  commit_index = gauge("quorumkv_raft_commit_index", "Highest log index known to be committed.");
  applied_index = gauge("quorumkv_raft_applied_index", "Highest log index applied to the key-value store.");
  log_entries = gauge("quorumkv_raft_log_entries", "Entries in the Raft log (after compaction).");
  log_bytes = gauge("quorumkv_raft_log_bytes", "Approximate bytes of the entries in the Raft log.");
  pending_proposals = gauge("quorumkv_pending_proposals", "Client requests waiting on this node.");
  leader_changes = counter("quorumkv_raft_leader_changes_total", "Times this node saw a new leader.");
  elections_started = counter("quorumkv_raft_elections_started_total", "Elections this node started as candidate.");
  elections_won = counter("quorumkv_raft_elections_won_total", "Elections this node won.");
  append_entries_sent =
      counter("quorumkv_raft_append_entries_sent_total", "AppendEntries messages sent (heartbeats excluded).");
  append_entries_received = counter("quorumkv_raft_append_entries_received_total",
                                    "AppendEntries messages received (heartbeats excluded).");
  heartbeats_sent = counter("quorumkv_raft_heartbeats_sent_total", "Heartbeat messages sent.");
  read_index_reads = counter("quorumkv_read_index_reads_total", "Linearizable reads served through ReadIndex.");
  lease_reads = counter("quorumkv_lease_reads_total", "Reads served under the LEASE consistency level.");
  serializable_reads = counter("quorumkv_serializable_reads_total", "Reads served from local applied state.");
  snapshots_taken = counter("quorumkv_snapshots_taken_total", "State-machine snapshots taken for log compaction.");
  snapshots_installed = counter("quorumkv_snapshots_installed_total", "Snapshots received from a leader and installed.");
  snapshot_take_seconds =
      histogram("quorumkv_snapshot_take_duration_seconds", "Time to take a snapshot and compact.", LatencyBuckets());
  snapshot_install_seconds =
      histogram("quorumkv_snapshot_install_duration_seconds", "Time to install a received snapshot.", LatencyBuckets());
  fsync_seconds = histogram("quorumkv_fsync_duration_seconds",
                            "Duration of the synced LevelDB write of each Raft Ready (group commit).",
                            LatencyBuckets());
  apply_batch_entries = histogram("quorumkv_apply_batch_entries", "Entries applied per state-machine batch.",
                                  Histogram::BucketBoundaries{1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024});
  proposals_family_ = &BuildCounter()
                           .Name("quorumkv_proposals_total")
                           .Help("Client write proposals by result (ok, failed, superseded, forwarded).")
                           .Register(r);
  lag_family_ = &BuildGauge()
                     .Name("quorumkv_replication_lag_entries")
                     .Help("Entries each peer is behind the leader's last index (on the leader).")
                     .Register(r);
  request_family_ = &BuildHistogram()
                         .Name("quorumkv_request_duration_seconds")
                         .Help("Client API request latency by method and gRPC status code.")
                         .Register(r);
}

prometheus::Counter& NodeMetrics::Proposals(const std::string& result) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = proposals_.find(result);
  if (it != proposals_.end()) return *it->second;
  prometheus::Counter* c = &proposals_family_->Add({{"result", result}});
  proposals_[result] = c;
  return *c;
}

void NodeMetrics::SetReplicationLag(uint64_t peer, double entries) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = lag_.find(peer);
  if (it == lag_.end()) it = lag_.emplace(peer, &lag_family_->Add({{"peer", std::to_string(peer)}})).first;
  it->second->Set(entries);
}

void NodeMetrics::ClearReplicationLag() {
  std::lock_guard<std::mutex> lock(mu_);
  for (auto& [peer, g] : lag_) g->Set(0);
}

void NodeMetrics::ObserveRequest(const std::string& method, const std::string& code, double seconds) {
  prometheus::Histogram* h = nullptr;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto key = std::make_pair(method, code);
    auto it = requests_.find(key);
    if (it == requests_.end()) {
      it = requests_.emplace(key, &request_family_->Add({{"method", method}, {"code", code}}, LatencyBuckets())).first;
    }
    h = it->second;
  }
  h->Observe(seconds);
}

}  // namespace quorumkv::server
