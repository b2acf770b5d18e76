// raft_sim: runs the deterministic cluster simulator over a range of seeds.
//
//   raft_sim --seeds N --seed-start S --nodes K [--jobs J] [--history-out F]
//            [--fault-ms MS] [--liveness-ms MS] [--clients C] [--keys K]
//            [--no-crashes] [--no-pauses] [--no-partitions] [--no-lossy-network]
//            [--no-membership] [--no-transfers] [--no-snapshots]
//            [--no-clock-skew] [--no-lease-reads] [--no-follower-reads]
//            [--check-determinism] [--verbose]
//
// On a violation it replays the seed with tracing on and prints the seed,
// the invariant and the last events; the exit status is then 1. The last
// line is always "seeds=N violations=V".
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "tests/sim/simulation.h"

namespace {

using quorumkv::sim::RunFingerprint;
using quorumkv::sim::RunSimulation;
using quorumkv::sim::SimOptions;
using quorumkv::sim::SimResult;

void Usage() {
  std::fprintf(stderr,
               "usage: raft_sim [--seeds N] [--seed-start S] [--nodes 3|5|7] [--jobs J]\n"
               "                [--history-out FILE] [--fault-ms MS] [--liveness-ms MS]\n"
               "                [--clients C] [--keys K] [--no-crashes] [--no-pauses] [--no-partitions]\n"
               "                [--no-lossy-network] [--no-membership] [--no-transfers]\n"
               "                [--no-snapshots] [--no-clock-skew] [--no-lease-reads]\n"
               "                [--no-follower-reads] [--check-determinism] [--verbose]\n"
               "                [--trace-tail N]   (events printed on a violation; default 120)\n");
}

bool ParseInt(const char* s, long long* out) {
  char* end = nullptr;
  long long v = std::strtoll(s, &end, 10);
  if (end == s || *end != '\0' || v < 0) return false;
  *out = v;
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  long long seeds = 100, seed_start = 1, jobs = 1;
  bool check_determinism = false, verbose = false;
  SimOptions base;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&](long long* out) {
      if (i + 1 >= argc || !ParseInt(argv[i + 1], out)) {
        std::fprintf(stderr, "raft_sim: %s needs a non-negative integer\n", a.c_str());
        std::exit(2);
      }
      ++i;
    };
    long long v = 0;
    if (a == "--seeds") {
      value(&seeds);
    } else if (a == "--seed-start") {
      value(&seed_start);
    } else if (a == "--jobs") {
      value(&jobs);
    } else if (a == "--nodes") {
      value(&v);
      if (v != 3 && v != 5 && v != 7) {
        std::fprintf(stderr, "raft_sim: --nodes must be 3, 5 or 7\n");
        return 2;
      }
      base.nodes = static_cast<int>(v);
    } else if (a == "--fault-ms") {
      value(&v);
      base.fault_ms = v;
    } else if (a == "--liveness-ms") {
      value(&v);
      base.liveness_ms = v;
    } else if (a == "--clients") {
      value(&v);
      if (v < 1) { std::fprintf(stderr, "raft_sim: --clients must be >= 1\n"); return 2; }
      base.clients = static_cast<int>(v);
    } else if (a == "--keys") {
      value(&v);
      if (v < 1) { std::fprintf(stderr, "raft_sim: --keys must be >= 1\n"); return 2; }
      base.keys = static_cast<int>(v);
    } else if (a == "--trace-tail") {
      value(&v);
      base.trace_tail = static_cast<size_t>(v);
    } else if (a == "--history-out") {
      if (i + 1 >= argc) { std::fprintf(stderr, "raft_sim: --history-out needs a file\n"); return 2; }
      base.history_out = argv[++i];
    } else if (a == "--no-crashes") {
      base.crashes = false;
    } else if (a == "--no-pauses") {
      base.pauses = false;
    } else if (a == "--no-partitions") {
      base.partitions = false;
    } else if (a == "--no-lossy-network") {
      base.lossy_network = false;
    } else if (a == "--no-membership") {
      base.membership = false;
    } else if (a == "--no-transfers") {
      base.transfers = false;
    } else if (a == "--no-snapshots") {
      base.snapshots = false;
    } else if (a == "--no-clock-skew") {
      base.clock_skew = false;
    } else if (a == "--no-lease-reads") {
      base.lease_reads = false;
    } else if (a == "--no-follower-reads") {
      base.follower_reads = false;
    } else if (a == "--check-determinism") {
      check_determinism = true;
    } else if (a == "--verbose") {
      verbose = true;
    } else if (a == "--help" || a == "-h") {
      Usage();
      return 0;
    } else {
      std::fprintf(stderr, "raft_sim: unknown flag %s\n", a.c_str());
      Usage();
      return 2;
    }
  }
  if (seeds < 1 || jobs < 1) {
    std::fprintf(stderr, "raft_sim: --seeds and --jobs must be >= 1\n");
    return 2;
  }
  if (!base.history_out.empty() && seeds != 1) {
    std::fprintf(stderr, "raft_sim: --history-out needs --seeds 1\n");
    return 2;
  }

  const auto start = std::chrono::steady_clock::now();
  std::atomic<long long> next{0};
  std::atomic<long long> violations{0};
  std::atomic<long long> nondeterministic{0};
  std::mutex print_mu;
  unsigned long long total_ops = 0, total_events = 0;
  auto worker = [&]() {
    unsigned long long ops = 0, events = 0;
    for (long long k = next++; k < seeds; k = next++) {
      SimOptions o = base;
      o.seed = static_cast<uint64_t>(seed_start + k);
      SimResult r = RunSimulation(o);
      ops += r.stats.ops_invoked;
      events += r.stats.events;
      if (check_determinism) {
        o.history_out.clear();
        if (RunFingerprint(o) != RunFingerprint(o)) {
          ++nondeterministic;
          std::lock_guard<std::mutex> lock(print_mu);
          std::printf("seed=%llu: two runs of the same seed differ\n", static_cast<unsigned long long>(o.seed));
        }
      }
      if (verbose) {
        std::lock_guard<std::mutex> lock(print_mu);
        std::printf("seed=%llu ok=%d events=%llu ops=%llu ok=%llu fail=%llu info=%llu crashes=%llu "
                    "commit_rollbacks=%llu partitions=%llu conf=%llu transfers=%llu snapshots=%llu leaders=%llu committed=%llu "
                    "recovery_ms=%lld lincheck=%s\n",
                    static_cast<unsigned long long>(o.seed), r.ok ? 1 : 0,
                    static_cast<unsigned long long>(r.stats.events),
                    static_cast<unsigned long long>(r.stats.ops_invoked),
                    static_cast<unsigned long long>(r.stats.ops_ok),
                    static_cast<unsigned long long>(r.stats.ops_failed),
                    static_cast<unsigned long long>(r.stats.ops_info),
                    static_cast<unsigned long long>(r.stats.crashes),
                    static_cast<unsigned long long>(r.stats.commit_rollbacks),
                    static_cast<unsigned long long>(r.stats.partitions),
                    static_cast<unsigned long long>(r.stats.conf_changes),
                    static_cast<unsigned long long>(r.stats.transfers),
                    static_cast<unsigned long long>(r.stats.snapshots_sent),
                    static_cast<unsigned long long>(r.stats.leaders),
                    static_cast<unsigned long long>(r.stats.committed),
                    static_cast<long long>(r.stats.recovery_ms), r.lincheck_outcome.c_str());
      }
      if (!r.ok) {
        ++violations;
        // Replay the same seed with tracing on: it takes the same path.
        SimOptions traced = o;
        traced.trace = true;
        traced.history_out.clear();
        SimResult replay = RunSimulation(traced);
        std::lock_guard<std::mutex> lock(print_mu);
        std::printf("VIOLATION seed=%llu nodes=%d invariant=\"%s\"\n  %s\n",
                    static_cast<unsigned long long>(o.seed), o.nodes, r.invariant.c_str(), r.detail.c_str());
        std::printf("  last events of the replay (replay verdict: %s):\n",
                    replay.ok ? "no violation?!" : replay.invariant.c_str());
        for (const std::string& line : replay.trace) std::printf("    %s\n", line.c_str());
        std::printf("  reproduce: raft_sim --seeds 1 --seed-start %llu --nodes %d\n",
                    static_cast<unsigned long long>(o.seed), o.nodes);
        std::fflush(stdout);
      }
    }
    std::lock_guard<std::mutex> lock(print_mu);
    total_ops += ops;
    total_events += events;
  };
  std::vector<std::thread> threads;
  for (long long j = 0; j < jobs; ++j) threads.emplace_back(worker);
  for (auto& t : threads) t.join();
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("time=%.1fs events=%llu client_ops=%llu\n", secs, total_events, total_ops);
  if (check_determinism) std::printf("nondeterministic_seeds=%lld\n", nondeterministic.load());
  std::printf("seeds=%lld violations=%lld\n", seeds, violations.load());
  return (violations.load() == 0 && nondeterministic.load() == 0) ? 0 : 1;
}
