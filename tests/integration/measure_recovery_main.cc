// measure_recovery: two recovery figures of a real three-node cluster on
// 127.0.0.1 (not a test; its numbers go into the README and notes).
//   1. failover: kill -9 the leader, time until every surviving node names
//      the same new leader (median of --runs runs);
//   2. catch-up: write --keys keys, add a fourth node, time until it has
//      applied everything, through a snapshot.
//
//   measure_recovery [--runs 7] [--keys 100000] [--writers 16] [--value-bytes 100]
#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "tests/integration/process_cluster.h"

namespace {

using quorumkv::testing::ClusterOptions;
using quorumkv::testing::ProcessCluster;

ClusterOptions Options() {
  ClusterOptions o;
  o.nodes = 3;
  // Fast timing (10 ms ticks, heartbeat every tick, election timeout 10-20
  // ticks), with snapshots every 10,000 entries.
  o.extra_flags = {"--tick-ms=10", "--heartbeat-ticks=1", "--election-ticks=10", "--lease-drift-ticks=2",
                   "--snapshot-min-entries=10000", "--snapshot-min-bytes=0", "--snapshot-trailing-entries=1000"};
  return o;
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  int runs = 7, keys = 100000, writers = 16, value_bytes = 100;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    const int v = std::atoi(argv[i + 1]);
    if (v <= 0) {
      std::fprintf(stderr, "measure_recovery: %s needs a positive number\n", flag.c_str());
      return 2;
    }
    if (flag == "--runs") {
      runs = v;
    } else if (flag == "--keys") {
      keys = v;
    } else if (flag == "--writers") {
      writers = v;
    } else if (flag == "--value-bytes") {
      value_bytes = v;
    } else {
      std::fprintf(stderr, "usage: measure_recovery [--runs N] [--keys N] [--writers N] [--value-bytes N]\n");
      return 2;
    }
  }

  // 1. Failover after kill -9 of the leader.
  std::vector<double> failover_ms;
  for (int r = 0; r < runs; ++r) {
    ProcessCluster cluster(Options());
    if (!cluster.Start()) return 1;
    auto leader = cluster.WaitForLeader(absl::Seconds(10));
    if (!leader) {
      std::fprintf(stderr, "no leader\n");
      return 1;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    cluster.Kill(*leader);
    const absl::Time killed = absl::Now();
    auto next = cluster.WaitForLeader(absl::Seconds(10));
    if (!next) {
      std::fprintf(stderr, "no new leader within 10 s\n");
      return 1;
    }
    failover_ms.push_back(absl::ToDoubleMilliseconds(absl::Now() - killed));
    std::printf("failover run %d: new leader %llu after %.0f ms\n", r + 1, static_cast<unsigned long long>(*next),
                failover_ms.back());
  }
  std::printf("failover: median %.0f ms over %d runs (min %.0f, max %.0f)\n", Median(failover_ms), runs,
              *std::min_element(failover_ms.begin(), failover_ms.end()),
              *std::max_element(failover_ms.begin(), failover_ms.end()));

  // 2. A new node catching up through a snapshot.
  ProcessCluster cluster(Options());
  if (!cluster.Start() || !cluster.WaitForLeader(absl::Seconds(10))) return 1;
  std::atomic<int> next_key{0};
  std::atomic<int> errors{0};
  const std::string value(static_cast<size_t>(value_bytes), 'v');
  const absl::Time load_start = absl::Now();
  std::vector<std::thread> threads;
  for (int w = 0; w < writers; ++w) {
    threads.emplace_back([&] {
      auto c = cluster.Client(absl::Seconds(30));
      for (int k = next_key++; k < keys; k = next_key++) {
        if (!c->Put("key" + std::to_string(k), value).ok()) ++errors;
      }
    });
  }
  for (auto& t : threads) t.join();
  std::printf("loaded %d keys in %.1f s with %d writers (%d errors)\n", keys,
              absl::ToDoubleSeconds(absl::Now() - load_start), writers, errors.load());
  auto c = cluster.Client();
  auto& n4 = cluster.PrepareNode();
  auto added = c->AddMember(n4.id, n4.peer_endpoint(), n4.client_endpoint(), false);
  if (!added.ok()) {
    std::fprintf(stderr, "add member: %s\n", added.status().ToString().c_str());
    return 1;
  }
  auto target = cluster.Status(1);
  const uint64_t commit = target.ok() ? target->commit_index() : 0;
  const absl::Time start = absl::Now();
  if (!cluster.StartNode(n4.id)) return 1;
  bool caught_up = false;
  while (absl::Now() - start < absl::Seconds(300)) {
    auto s = cluster.Status(n4.id);
    if (s.ok() && s->applied_index() >= commit) {
      caught_up = true;
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  if (!caught_up) {
    std::fprintf(stderr, "node 4 did not catch up within 300 s\n%s", cluster.LogTail(n4.id).c_str());
    return 1;
  }
  const bool via_snapshot = cluster.LogTail(n4.id, 500).find("installed a snapshot") != std::string::npos;
  std::printf("catch-up: node 4 applied %llu entries (%d keys) in %.2f s%s\n", static_cast<unsigned long long>(commit),
              keys, absl::ToDoubleSeconds(absl::Now() - start), via_snapshot ? ", through a snapshot" : "");
  return 0;
}
