// The nemesis of a fault run: injects one fault at a time into a live
// cluster, heals it, lets the cluster settle, and writes what it did, with
// times on the history's clock, to the nemesis log.
//
// Fault kinds (TESTING.md lists what each one checks):
//   kill        kill -9 the leader, a random node, a majority or every node;
//               restart them after a while (persistence across crashes)
//   pause       SIGSTOP the leader, a random node or a majority for 0.2 s up
//               to the longest fault (longer than an election timeout), then
//               SIGCONT
//   partition   through the peer proxies: symmetric halves, isolated leader,
//               one-way (one directed link, or all of the leader's outbound
//               or inbound links), bridge (two halves that only one node sees)
//   membership  add a node (as learner, auto-promoted), remove a node (the
//               leader at times), leadership transfers, keeping 3..5 voters
//   clock-skew  one node runs with a skewed clock rate (libfaketime); the
//               leadership is moved to it if its clock is slow, away from
//               it if fast, then the leader is isolated or paused while
//               lease reads are in the mix
//   disk-full   the data disk of one node (the leader at times) is filled: it
//               must refuse with a clear error; then space returns and the
//               node is restarted and catches up
//   clock-step  the wall clock of one node (the leader at times) steps back
//               or forward by 1-4 s (7-9 s back with the leader isolated),
//               as an NTP step would, then returns to real time; the
//               monotonic clock runs on (libfaketime with a timestamp
//               file). Not part of "mixed": see TESTING.md.
#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <ostream>
#include <random>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "tests/fault/fault_cluster.h"
#include "tests/fault/workload.h"

namespace quorumkv::fault {

enum class FaultKind { kKill, kPause, kPartition, kMembership, kClockSkew, kDiskFull, kClockStep };
std::string FaultKindName(FaultKind kind);
// "kill", "pause", "partition", "membership", "clock-skew", "disk-full",
// "clock-step", a comma-separated list of those, "mixed" (all but
// clock-step) or "none".
absl::StatusOr<std::vector<FaultKind>> ParseNemesis(const std::string& spec);

struct NemesisOptions {
  std::vector<FaultKind> kinds;
  uint64_t seed = 1;
  absl::Duration quiet_min = absl::Seconds(1);  // between faults
  absl::Duration quiet_max = absl::Seconds(2);
  absl::Duration fault_min = absl::Seconds(1);  // how long a fault lasts
  absl::Duration fault_max = absl::Seconds(4);
  absl::Duration settle_timeout = absl::Seconds(10);
  int min_voters = 3;
  int max_voters = 5;
  // The skewed clock rate of clock-skew (0: none). When the skewed node was
  // removed, the next node added runs with it, so the fault keeps its teeth.
  double clock_rate = 0;
};

class Nemesis {
 public:
  // `log` receives one line per event; it must outlive the nemesis.
  Nemesis(FaultCluster* cluster, HistoryRecorder* history, const NemesisOptions& options, std::ostream* log);

  // Injects faults until `until` (the last one is always healed).
  void Run(absl::Time until);
  // Undoes anything still in effect: links, pauses, full disks, members not
  // running (restarted). Used once at the end of a run.
  void HealAll();

  // A line in the nemesis log, stamped with the history clock.
  void Log(const std::string& text);

  // Faults injected, by label ("kill leader", "partition bridge", ...).
  std::map<std::string, int> injected() const;
  int total_injected() const;
  // Problems the nemesis itself observed (a full disk that was not
  // refused, a removed node that did not shut down cleanly, ...).
  std::vector<std::string> problems() const;
  // How many times each node logged "stopped serving" because of a fault
  // (the full disk); any other such line is a failure.
  std::map<uint64_t, int> expected_fatal_lines() const;
  // Keys the nemesis wrote to itself (the full-disk probes): final reads
  // cover them too.
  std::vector<std::string> probe_keys() const;

 private:
  void Inject(FaultKind kind);
  void Kill();
  void Pause();
  void Partition();
  void Membership();
  void ClockSkew();
  void DiskFull();
  void ClockStep();
  // One operation sent by the nemesis itself to `node`, recorded in the
  // history under a fresh process; its key joins the final reads.
  OpOutcome Probe(uint64_t node, lincheck::Function f, const std::string& key, lincheck::Consistency c);
  void AddNode();
  void RemoveNode();
  void Transfer(std::optional<uint64_t> target);
  void Settle();
  void LogViews();
  // Makes the test's view of the membership follow the configuration: a
  // node removed by a change whose answer was lost is stopped, a node added
  // that way is started.
  void Reconcile();
  void IsolateLeader(const std::string& label, std::optional<uint64_t> leader);
  void Sleep(absl::Duration d);
  absl::Duration Uniform(absl::Duration lo, absl::Duration hi);
  template <typename T>
  T Pick(const std::vector<T>& v) {
    return v[std::uniform_int_distribution<size_t>(0, v.size() - 1)(rng_)];
  }
  int Percent() { return std::uniform_int_distribution<int>(0, 99)(rng_); }
  std::vector<uint64_t> Shuffled(std::vector<uint64_t> v);
  void Count(const std::string& label);
  void Problem(const std::string& text);
  // Members present in the committed configuration, as some node reports.
  std::optional<std::vector<uint64_t>> ConfiguredMembers(std::optional<uint64_t> exclude);

  FaultCluster* const cluster_;
  HistoryRecorder* const history_;
  const NemesisOptions options_;
  std::ostream* const log_;
  std::mt19937_64 rng_;
  const int64_t start_ns_;
  mutable std::mutex mu_;
  std::map<std::string, int> injected_;
  std::vector<std::string> problems_;
  std::map<uint64_t, int> expected_fatal_;
  std::vector<std::string> probe_keys_;
  int next_partition_ = -1;  // the next partition shape (round robin)
};

}  // namespace quorumkv::fault
