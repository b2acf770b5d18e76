// Prometheus metrics of one node (prometheus-cpp), named by Prometheus
// conventions: the quorumkv_ prefix, base units (seconds, bytes), _total
// for counters. The node thread and the gRPC handlers update them; hot-path
// metrics are resolved to their label set once, at construction.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "prometheus/gauge.h"
#include "prometheus/histogram.h"
#include "prometheus/registry.h"

namespace quorumkv::server {

class NodeMetrics {
 public:
  NodeMetrics();
  const std::shared_ptr<prometheus::Registry>& registry() const { return registry_; }

  // Raft state.
  prometheus::Gauge* term;
  prometheus::Gauge* is_leader;
  prometheus::Gauge* commit_index;
  prometheus::Gauge* applied_index;
  prometheus::Gauge* log_entries;
  prometheus::Gauge* log_bytes;
  prometheus::Gauge* pending_proposals;
  prometheus::Counter* leader_changes;
  prometheus::Counter* elections_started;
  prometheus::Counter* elections_won;
  prometheus::Counter* append_entries_sent;
  prometheus::Counter* append_entries_received;
  prometheus::Counter* heartbeats_sent;
  prometheus::Counter* read_index_reads;
  prometheus::Counter* lease_reads;
  prometheus::Counter* serializable_reads;
  prometheus::Counter* snapshots_taken;
  prometheus::Counter* snapshots_installed;
  prometheus::Histogram* snapshot_take_seconds;
  prometheus::Histogram* snapshot_install_seconds;
  prometheus::Histogram* fsync_seconds;
  prometheus::Histogram* apply_batch_entries;

  // Proposals by result: ok, failed, superseded, forwarded.
  prometheus::Counter& Proposals(const std::string& result);
  // Entries a peer is behind the leader (set by the leader; 0 elsewhere).
  void SetReplicationLag(uint64_t peer, double entries);
  void ClearReplicationLag();
  // Client request latency by gRPC method and status code.
  void ObserveRequest(const std::string& method, const std::string& code, double seconds);

 private:
  std::shared_ptr<prometheus::Registry> registry_;
  prometheus::Family<prometheus::Counter>* proposals_family_;
  prometheus::Family<prometheus::Gauge>* lag_family_;
  prometheus::Family<prometheus::Histogram>* request_family_;
  std::mutex mu_;  // guards the label caches below
  std::map<std::string, prometheus::Counter*> proposals_;
  std::map<uint64_t, prometheus::Gauge*> lag_;
  std::map<std::pair<std::string, std::string>, prometheus::Histogram*> requests_;
};

}  // namespace quorumkv::server
