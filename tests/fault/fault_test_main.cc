// fault_test: Jepsen-style fault runs on real kvserver processes.
//
// Starts a cluster on 127.0.0.1 (every node behind a peer proxy), runs
// concurrent clients that record a history (shared/HISTORY.md) while a
// nemesis injects faults, heals everything, and checks:
//   1. the history, final reads included, is linearizable (CheckHistory);
//   2. after healing, every member has the same commit and applied index,
//      and a serializable read of every key gives the same value on every
//      node, equal to the linearizable read of that key;
//   3. no node exited unless the nemesis made it (the full-disk node may
//      stop serving by design; it is then restarted), no node logged a
//      fatal error other than the full disk, and every node shuts down
//      cleanly (exit status 0) on SIGTERM at the end;
//   4. progress: writes were acknowledged, and the healed cluster elects a
//      leader and converges in bounded time.
// Everything lands in a run directory (history.jsonl, nemesis.log, the
// nodes' logs, summary.txt), kept on failure or with --keep.
//
// Exit status: 0 passed, 1 a check failed, 2 bad flags or set-up failure.
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "tests/fault/fault_cluster.h"
#include "tests/fault/nemesis.h"
#include "tests/fault/workload.h"
#include "tests/lincheck/history.h"
#include "tests/lincheck/linearizability_checker.h"

ABSL_FLAG(std::string, nemesis, "mixed",
          "Faults to inject: kill, pause, partition, membership, clock-skew, disk-full, clock-step "
          "(comma-separated), mixed (all but clock-step, one at a time) or none.");
ABSL_FLAG(absl::Duration, duration, absl::Seconds(30), "How long clients run while the nemesis acts (e.g. 30s, 30m).");
ABSL_FLAG(int, nodes, 0, "Cluster size at the start (0: 5 for partition and mixed, else 3).");
ABSL_FLAG(int, clients, 4, "Concurrent client processes (each with one request outstanding).");
ABSL_FLAG(uint64_t, seed, 0, "Seed of every random choice (0: pick one and print it).");
ABSL_FLAG(int, keys, 5, "Keys in use at a time.");
ABSL_FLAG(int, ops_per_key, 150, "Operations on a key before it is retired for a fresh one.");
ABSL_FLAG(absl::Duration, op_timeout, absl::Seconds(1), "Deadline of one client request; past it the outcome is info.");
ABSL_FLAG(int, tick_ms, 10, "kvserver --tick-ms.");
ABSL_FLAG(int, election_ticks, 10, "kvserver --election-ticks.");
ABSL_FLAG(int, heartbeat_ticks, 1, "kvserver --heartbeat-ticks.");
ABSL_FLAG(int, lease_drift_ticks, 2, "kvserver --lease-drift-ticks (the lease lasts election - drift ticks).");
ABSL_FLAG(absl::Duration, fault_min, absl::Seconds(1), "Shortest fault.");
ABSL_FLAG(absl::Duration, fault_max, absl::Seconds(4), "Longest fault.");
ABSL_FLAG(absl::Duration, quiet_min, absl::Seconds(1), "Shortest healthy stretch between faults.");
ABSL_FLAG(absl::Duration, quiet_max, absl::Seconds(2), "Longest healthy stretch between faults.");
ABSL_FLAG(absl::Duration, settle_timeout, absl::Seconds(30),
          "After the final heal: time allowed to elect a leader and converge.");
ABSL_FLAG(double, clock_rate, 0,
          "Clock rate of the skewed node with clock-skew (e.g. 1.05); 0 picks one in [1.03,1.07]. "
          "Keep |1 - rate| under the lease drift margin (2 of 10 election ticks: under ~10%).");
ABSL_FLAG(std::string, disk_full_method, "auto",
          "How to fill a node's disk: tmpfs (needs root to mount), rlimit (RLIMIT_FSIZE), or auto (tmpfs if "
          "mounting works, else rlimit).");
ABSL_FLAG(int, disk_mb, 64, "Size of each node's tmpfs with disk-full.");
ABSL_FLAG(std::string, dir, "", "Where to create the run directory (default: $TMPDIR or /tmp).");
ABSL_FLAG(bool, keep, false, "Keep the run directory after a successful run.");
ABSL_FLAG(std::string, kvserver, "", "The kvserver binary (default: next to fault_test, or $QUORUMKV_KVSERVER).");
ABSL_FLAG(std::string, faketime_lib, "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1",
          "libfaketime, for clock-skew (Debian package faketime).");
ABSL_FLAG(uint64_t, checker_max_states, 20'000'000, "Linearizability search budget per key.");

namespace {

namespace fs = std::filesystem;
using quorumkv::fault::DiskMethod;
using quorumkv::fault::Endpoint;
using quorumkv::fault::FaultCluster;
using quorumkv::fault::FaultClusterOptions;
using quorumkv::fault::FaultKind;
using quorumkv::fault::HistoryRecorder;
using quorumkv::fault::Nemesis;
using quorumkv::fault::NemesisOptions;
using quorumkv::fault::OpOutcome;
using quorumkv::fault::OpRequest;
using quorumkv::fault::RunOp;
using quorumkv::fault::Workload;
using quorumkv::fault::WorkloadOptions;
namespace lincheck = quorumkv::lincheck;

[[noreturn]] void Usage(const std::string& message) {
  std::fprintf(stderr, "fault_test: %s\n", message.c_str());
  std::exit(2);
}

std::string SelfDir() {
  std::error_code ec;
  fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  return ec ? "." : exe.parent_path().string();
}

bool Has(const std::vector<FaultKind>& kinds, FaultKind k) {
  return std::find(kinds.begin(), kinds.end(), k) != kinds.end();
}

// The outcome of the run: every failed check, in words.
struct Verdict {
  std::vector<std::string> failures;
  void Fail(const std::string& what) {
    std::fprintf(stderr, "fault_test: FAILED: %s\n", what.c_str());
    failures.push_back(what);
  }
};

// Linearizable reads of every key through every member after healing,
// recorded in the history (so the checker judges them), then serializable
// reads of every key on every node, which must all agree with them.
void FinalReads(FaultCluster& cluster, HistoryRecorder& history, const std::vector<std::string>& keys,
                Nemesis& nemesis, Verdict& verdict) {
  const std::vector<uint64_t> members = cluster.RunningMembers();
  // Bounded, however sick the cluster: every read has a 2 s deadline.
  const absl::Time give_up = absl::Now() + absl::Seconds(60) + absl::Milliseconds(20) * static_cast<int64_t>(keys.size() * members.size());
  std::map<std::string, std::optional<std::string>> linearizable;  // key -> value (first node's read)
  int unread = 0;
  for (uint64_t id : members) {
    std::shared_ptr<Endpoint> ep = cluster.endpoint(id);
    for (const std::string& key : keys) {
      bool done = false;
      for (int attempt = 0; attempt < 5 && !done && absl::Now() < give_up; ++attempt) {
        OpRequest get;
        get.f = lincheck::Function::kGet;
        get.key = key;
        const OpOutcome out = RunOp(history, history.NewProcess(), *ep, get, absl::Seconds(2));
        if (out.type != lincheck::EventType::kOk) {
          absl::SleepFor(absl::Milliseconds(100));
          continue;
        }
        done = true;
        auto it = linearizable.find(key);
        if (it == linearizable.end()) {
          linearizable[key] = out.value;
        } else if (it->second != out.value) {
          verdict.Fail(absl::StrCat("final linearizable reads of key ", key, " disagree: node ", id, " read ",
                                    out.value.value_or("(absent)"), ", an earlier node read ",
                                    it->second.value_or("(absent)")));
        }
      }
      if (!done) ++unread;
    }
  }
  if (unread > 0) verdict.Fail(absl::StrCat(unread, " final linearizable reads failed 5 times in a row"));
  nemesis.Log(absl::StrCat("final linearizable reads: ", keys.size(), " keys x ", members.size(), " nodes"));

  // Convergence: each node's own applied state.
  int mismatches = 0;
  for (uint64_t id : members) {
    std::shared_ptr<Endpoint> ep = cluster.endpoint(id);
    for (const std::string& key : keys) {
      if (absl::Now() >= give_up) {
        verdict.Fail("final reads took longer than their time budget");
        return;
      }
      OpRequest get;
      get.f = lincheck::Function::kGet;
      get.key = key;
      get.consistency = lincheck::Consistency::kSerializable;
      const OpOutcome out = RunOp(history, history.NewProcess(), *ep, get, absl::Seconds(2));
      if (out.type != lincheck::EventType::kOk) {
        verdict.Fail(absl::StrCat("serializable read of ", key, " on node ", id, " failed: ", out.message));
        continue;
      }
      auto it = linearizable.find(key);
      if (it != linearizable.end() && it->second != out.value) {
        if (++mismatches <= 20) {
          verdict.Fail(absl::StrCat("node ", id, " diverges on key ", key, ": its state has ",
                                    out.value.value_or("(absent)"), ", the linearizable read gave ",
                                    it->second.value_or("(absent)")));
        }
      }
    }
  }
  if (mismatches > 20) verdict.Fail(absl::StrCat(mismatches, " divergent (node, key) pairs in all"));
  nemesis.Log(absl::StrCat("convergence: serializable reads of ", keys.size(), " keys on ", members.size(),
                           " nodes, ", mismatches, " mismatches"));
}

void CheckLogs(FaultCluster& cluster, const Nemesis& nemesis, Verdict& verdict) {
  const std::map<uint64_t, int> expected = nemesis.expected_fatal_lines();
  for (uint64_t id : cluster.AllIds()) {
    const std::vector<std::string> fatal = cluster.GrepLog(id, "stopped serving");
    auto it = expected.find(id);
    const size_t allowed = it == expected.end() ? 0 : static_cast<size_t>(it->second);
    if (fatal.size() > allowed) {
      verdict.Fail(absl::StrCat("node ", id, " stopped serving ", fatal.size(), " times, ", allowed,
                                " of them for a full disk; last: ", fatal.back()));
    }
    for (const char* needle : {"AddressSanitizer", "runtime error:", "terminate called", "Assertion", "INVARIANT",
                               "execve kvserver"}) {
      const std::vector<std::string> lines = cluster.GrepLog(id, needle);
      if (!lines.empty()) verdict.Fail(absl::StrCat("node ", id, " log: ", lines.front()));
    }
  }
}

// Writes every event of `key` to a file, for a person to read next to the
// checker's message.
void DumpKey(const std::vector<lincheck::Event>& events, const std::string& key, const std::string& path) {
  std::ofstream out(path);
  for (const lincheck::Event& e : events) {
    if (e.key == key) out << lincheck::ToJsonLine(e) << "\n";
  }
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "Jepsen-style fault test on real kvserver processes.\n"
      "  fault_test --nemesis partition --duration 30s\n"
      "  fault_test --duration 30m --nemesis mixed --clients 8 --seed 7   (soak)\n"
      "Exit status: 0 passed, 1 a check failed, 2 bad flags or set-up failure.");
  // Dashes or underscores in flag names, like kvserver.
  std::vector<std::string> normalized(argv, argv + argc);
  for (size_t i = 1; i < normalized.size(); ++i) {
    std::string& a = normalized[i];
    if (a.rfind("--", 0) != 0) continue;
    const size_t end = std::min(a.find('='), a.size());
    for (size_t k = 2; k < end; ++k) {
      if (a[k] == '-') a[k] = '_';
    }
  }
  std::vector<char*> nargv;
  for (std::string& a : normalized) nargv.push_back(a.data());
  std::vector<char*> rest = absl::ParseCommandLine(static_cast<int>(nargv.size()), nargv.data());
  if (rest.size() > 1) Usage(std::string("unexpected argument \"") + rest[1] + "\"; see --help");
  signal(SIGPIPE, SIG_IGN);

  auto kinds = quorumkv::fault::ParseNemesis(absl::GetFlag(FLAGS_nemesis));
  if (!kinds.ok()) Usage(std::string(kinds.status().message()));
  const std::string nemesis_name = absl::GetFlag(FLAGS_nemesis);
  const bool partition_heavy = Has(*kinds, FaultKind::kPartition) && kinds->size() == 1;
  int nodes = absl::GetFlag(FLAGS_nodes);
  if (nodes == 0) nodes = (partition_heavy || nemesis_name == "mixed") ? 5 : 3;
  if (nodes < 1 || nodes > 9) Usage("--nodes must be 1..9");
  const int clients = absl::GetFlag(FLAGS_clients);
  if (clients < 1 || clients > 256) Usage("--clients must be 1..256");
  if (absl::GetFlag(FLAGS_keys) < 1 || absl::GetFlag(FLAGS_ops_per_key) < 1) Usage("--keys and --ops-per-key must be >= 1");
  const absl::Duration duration = absl::GetFlag(FLAGS_duration);
  if (duration <= absl::ZeroDuration()) Usage("--duration must be positive");
  if (absl::GetFlag(FLAGS_op_timeout) <= absl::ZeroDuration()) Usage("--op-timeout must be positive");
  if (absl::GetFlag(FLAGS_fault_min) > absl::GetFlag(FLAGS_fault_max) ||
      absl::GetFlag(FLAGS_quiet_min) > absl::GetFlag(FLAGS_quiet_max)) {
    Usage("--fault-min/--quiet-min must not exceed --fault-max/--quiet-max");
  }
  uint64_t seed = absl::GetFlag(FLAGS_seed);
  if (seed == 0) seed = std::random_device{}() | 1;
  std::mt19937_64 rng(seed);

  std::string kvserver = absl::GetFlag(FLAGS_kvserver);
  if (kvserver.empty()) {
    const char* env = std::getenv("QUORUMKV_KVSERVER");
    kvserver = env != nullptr ? env : SelfDir() + "/kvserver";
  }

  // The run directory.
  std::string base = absl::GetFlag(FLAGS_dir);
  if (base.empty()) {
    const char* tmp = std::getenv("TMPDIR");
    base = tmp != nullptr ? tmp : "/tmp";
  }
  std::string safe_name = nemesis_name;
  std::replace(safe_name.begin(), safe_name.end(), ',', '+');
  std::string pattern = absl::StrCat(base, "/fault-", safe_name, "-seed", seed, "-XXXXXX");
  if (mkdtemp(pattern.data()) == nullptr) Usage("cannot create a run directory under " + base);
  const std::string dir = pattern;
  std::printf("fault_test: nemesis %s, %d nodes, %d clients, %s, seed %llu\n", nemesis_name.c_str(), nodes, clients,
              absl::FormatDuration(duration).c_str(), static_cast<unsigned long long>(seed));
  std::printf("fault_test: run directory %s\n", dir.c_str());
  std::fflush(stdout);

  std::ofstream nemesis_log(dir + "/nemesis.log");
  HistoryRecorder history(dir + "/history.jsonl");
  if (!history.status().ok()) Usage(std::string(history.status().message()));

  NemesisOptions nopts;
  nopts.kinds = *kinds;
  nopts.seed = seed;
  nopts.fault_min = absl::GetFlag(FLAGS_fault_min);
  nopts.fault_max = absl::GetFlag(FLAGS_fault_max);
  nopts.quiet_min = absl::GetFlag(FLAGS_quiet_min);
  nopts.quiet_max = absl::GetFlag(FLAGS_quiet_max);
  nopts.min_voters = std::min(3, nodes);
  nopts.max_voters = std::max(5, nodes);
  // The nemesis is created before the cluster so the cluster can log
  // through it; it touches the cluster only in Run and later.
  std::unique_ptr<FaultCluster> cluster;
  std::atomic<Nemesis*> nemesis_ptr{nullptr};

  FaultClusterOptions copts;
  copts.dir = dir;
  copts.kvserver = kvserver;
  copts.nodes = nodes;
  copts.tick_ms = absl::GetFlag(FLAGS_tick_ms);
  copts.election_ticks = absl::GetFlag(FLAGS_election_ticks);
  copts.heartbeat_ticks = absl::GetFlag(FLAGS_heartbeat_ticks);
  copts.lease_drift_ticks = absl::GetFlag(FLAGS_lease_drift_ticks);
  if (copts.tick_ms < 1 || copts.heartbeat_ticks < 1 || copts.lease_drift_ticks < 0 ||
      copts.election_ticks - copts.lease_drift_ticks <= copts.heartbeat_ticks) {
    Usage("need --tick-ms >= 1, --heartbeat-ticks >= 1, and a lease (--election-ticks - --lease-drift-ticks) "
          "longer than --heartbeat-ticks");
  }
  copts.faketime_lib = absl::GetFlag(FLAGS_faketime_lib);
  copts.disk_mb = absl::GetFlag(FLAGS_disk_mb);
  copts.log = [&nemesis_ptr](const std::string& text) {
    if (Nemesis* n = nemesis_ptr.load(); n != nullptr) n->Log(text);
  };
  if (Has(*kinds, FaultKind::kClockSkew)) {
    double rate = absl::GetFlag(FLAGS_clock_rate);
    if (rate == 0) {
      // A fast clock by default: under libfaketime a slow one makes the
      // node's timed waits (absl's futex waits on absolute CLOCK_REALTIME
      // deadlines, which the kernel measures on the real clock) return at
      // once, and its node thread spins (TESTING.md). A fast follower that
      // times out early against a leader on real time tests the same lease
      // margin as a slow leader.
      rate = 1.0 + std::uniform_real_distribution<double>(0.03, 0.07)(rng);
    }
    if (rate <= 0.5 || rate >= 2.0) Usage("--clock-rate must be in (0.5, 2)");
    const uint64_t skewed = std::uniform_int_distribution<uint64_t>(1, static_cast<uint64_t>(nodes))(rng);
    copts.clock_rates[skewed] = rate;
    nopts.clock_rate = rate;
    std::printf("fault_test: node %llu runs with clock rate x%.4f\n", static_cast<unsigned long long>(skewed), rate);
  }
  if (Has(*kinds, FaultKind::kClockStep)) {
    if (Has(*kinds, FaultKind::kClockSkew)) Usage("clock-step and clock-skew cannot be combined");
    copts.steppable_clocks = true;
  }
  std::string disk_method = absl::GetFlag(FLAGS_disk_full_method);
  if (disk_method != "auto" && disk_method != "tmpfs" && disk_method != "rlimit") {
    Usage("--disk-full-method must be auto, tmpfs or rlimit");
  }
  if (Has(*kinds, FaultKind::kDiskFull)) {
    copts.disk = disk_method == "rlimit" ? DiskMethod::kRlimit : DiskMethod::kTmpfs;
  }
  if (copts.disk == DiskMethod::kTmpfs) {
    // A mount namespace of our own: the tmpfs mounts are invisible outside
    // this run and vanish with its last process, even if the driver is
    // killed (a ctest time-out) before it can unmount them.
    if (unshare(CLONE_NEWNS) != 0 || mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) {
      const std::string why = std::strerror(errno);
      if (disk_method == "tmpfs") Usage("cannot create a private mount namespace for the tmpfs disks: " + why);
      std::printf("fault_test: no private mount namespace (%s); full disks by RLIMIT_FSIZE\n", why.c_str());
      copts.disk = DiskMethod::kRlimit;
    }
  }
  {
    auto created = FaultCluster::Create(copts);
    if (!created.ok() && copts.disk == DiskMethod::kTmpfs && disk_method == "auto" &&
        created.status().code() == absl::StatusCode::kPermissionDenied) {
      std::printf("fault_test: %s; falling back to RLIMIT_FSIZE\n", std::string(created.status().message()).c_str());
      copts.disk = DiskMethod::kRlimit;
      created = FaultCluster::Create(copts);
    }
    if (!created.ok()) Usage("cannot set up the cluster: " + std::string(created.status().message()));
    cluster = std::move(*created);
  }
  Nemesis nemesis(cluster.get(), &history, nopts, &nemesis_log);
  nemesis_ptr = &nemesis;
  if (copts.disk != DiskMethod::kNone) {
    nemesis.Log("full disks by " + quorumkv::fault::DiskMethodName(copts.disk));
  }
  for (const auto& [id, rate] : copts.clock_rates) {
    nemesis.Log(absl::StrFormat("node %d runs with clock rate x%.4f (libfaketime)", id, rate));
  }

  Verdict verdict;
  // Set-up failures stop the nodes and unmount before exiting (status 2).
  auto setup_failure = [&](const std::string& message) {
    for (uint64_t id : cluster->AllIds()) std::fprintf(stderr, "%s", cluster->LogTail(id, 20).c_str());
    nemesis_ptr = nullptr;
    cluster->set_keep_data(true);
    cluster.reset();
    Usage(message + " (run directory kept: " + dir + ")");
  };
  if (absl::Status s = cluster->Start(); !s.ok()) setup_failure("cannot start the cluster: " + std::string(s.message()));
  std::optional<uint64_t> first_leader = cluster->WaitForLeader(absl::Seconds(30));
  if (!first_leader) setup_failure("no leader within 30 s of starting the cluster");
  nemesis.Log(absl::StrCat("cluster of ", nodes, " up, leader node ", *first_leader));

  // The run.
  WorkloadOptions wopts;
  wopts.clients = clients;
  wopts.keys = absl::GetFlag(FLAGS_keys);
  wopts.ops_per_key = absl::GetFlag(FLAGS_ops_per_key);
  wopts.op_timeout = absl::GetFlag(FLAGS_op_timeout);
  wopts.seed = seed;
  if (Has(*kinds, FaultKind::kClockSkew) || Has(*kinds, FaultKind::kClockStep)) {
    // Lease reads are what a skewed clock could break.
    wopts.lease_get_percent = 30;
    wopts.serializable_get_percent = 5;
  }
  Workload workload(cluster.get(), &history, wopts);
  const absl::Time run_start = absl::Now();
  workload.Start();
  nemesis.Run(run_start + duration);
  workload.Stop();
  const absl::Duration run_time = absl::Now() - run_start;
  nemesis.Log("clients stopped");

  // Heal, then check.
  nemesis.HealAll();
  std::optional<uint64_t> leader = cluster->WaitForLeader(absl::GetFlag(FLAGS_settle_timeout));
  if (!leader) {
    verdict.Fail(absl::StrCat("no leader within ", absl::FormatDuration(absl::GetFlag(FLAGS_settle_timeout)),
                              " after healing"));
  } else {
    nemesis.Log(absl::StrCat("after healing: leader node ", *leader));
  }
  bool converged = false;
  if (absl::Status s = cluster->WaitConverged(absl::GetFlag(FLAGS_settle_timeout)); !s.ok()) {
    verdict.Fail(std::string(s.message()));
  } else {
    converged = true;
    nemesis.Log("converged: every member has the same commit and applied index");
  }
  std::vector<std::string> keys = workload.Keys();
  for (const std::string& k : nemesis.probe_keys()) keys.push_back(k);
  std::sort(keys.begin(), keys.end());
  keys.erase(std::unique(keys.begin(), keys.end()), keys.end());
  if (converged) {
    FinalReads(*cluster, history, keys, nemesis, verdict);
  } else {
    nemesis.Log("final reads skipped: the cluster did not converge");
  }

  // Crashes and fatal errors.
  for (const std::string& e : cluster->UnexpectedExits()) verdict.Fail(e);
  for (const std::string& p : nemesis.problems()) verdict.Fail(p);
  CheckLogs(*cluster, nemesis, verdict);
  for (const std::string& p : cluster->ShutdownAll(absl::Seconds(15))) verdict.Fail(p);
  for (const std::string& e : cluster->UnexpectedExits()) {
    if (std::find(verdict.failures.begin(), verdict.failures.end(), e) == verdict.failures.end()) verdict.Fail(e);
  }

  // The history.
  history.Flush();
  const quorumkv::fault::OpCounts counts = history.counts();
  if (counts.Count(lincheck::Function::kPut, lincheck::EventType::kOk) == 0) {
    verdict.Fail("no write was acknowledged during the run: the test checked nothing");
  }
  auto events = lincheck::ReadHistoryFile(history.path());
  lincheck::CheckResult check;
  if (!events.ok()) {
    verdict.Fail("the history does not parse: " + std::string(events.status().message()));
  } else {
    lincheck::CheckOptions options;
    options.max_states_per_key = absl::GetFlag(FLAGS_checker_max_states);
    options.max_cache_bytes_per_key = uint64_t{1} << 30;
    const absl::Time t0 = absl::Now();
    check = lincheck::CheckHistory(*events, options);
    nemesis.Log(absl::StrCat("checker: ", lincheck::OutcomeName(check.outcome), " (", check.operations,
                             " operations, ", check.keys, " keys, ", check.info_operations, " indeterminate, ",
                             check.states, " states, ", absl::FormatDuration(absl::Trunc(absl::Now() - t0, absl::Milliseconds(1))),
                             ")"));
    if (check.outcome != lincheck::CheckResult::Outcome::kLinearizable) {
      verdict.Fail(absl::StrCat("history ", lincheck::OutcomeName(check.outcome), ": key ", check.key, ": ",
                                check.message));
      if (!check.key.empty()) DumpKey(*events, check.key, dir + "/violation-key.jsonl");
    }
  }

  // The report.
  const auto injected = nemesis.injected();
  std::vector<std::string> fault_lines;
  for (const auto& [label, count] : injected) fault_lines.push_back(absl::StrCat(label, " x", count));
  const quorumkv::fault::ProxyStats proxy = cluster->TotalProxyStats();
  std::ostringstream summary;
  summary << "nemesis: " << nemesis_name << "  nodes: " << nodes << "  clients: " << clients << "  seed: " << seed
          << "  duration: " << absl::FormatDuration(absl::Trunc(run_time, absl::Milliseconds(100))) << "\n";
  summary << "operations: " << counts.invoked << " attempted, " << counts.ok() << " acknowledged (ok), "
          << counts.info() << " indeterminate (info), " << counts.failed() << " failed (fail)\n";
  summary << "  put ok " << counts.Count(lincheck::Function::kPut, lincheck::EventType::kOk) << " / info "
          << counts.Count(lincheck::Function::kPut, lincheck::EventType::kInfo) << " / fail "
          << counts.Count(lincheck::Function::kPut, lincheck::EventType::kFail) << ";  get ok "
          << counts.Count(lincheck::Function::kGet, lincheck::EventType::kOk) << " / info "
          << counts.Count(lincheck::Function::kGet, lincheck::EventType::kInfo) << " / fail "
          << counts.Count(lincheck::Function::kGet, lincheck::EventType::kFail) << ";  delete ok "
          << counts.Count(lincheck::Function::kDelete, lincheck::EventType::kOk) << " / info "
          << counts.Count(lincheck::Function::kDelete, lincheck::EventType::kInfo) << " / fail "
          << counts.Count(lincheck::Function::kDelete, lincheck::EventType::kFail) << "\n";
  summary << "faults injected: " << nemesis.total_injected() << " ("
          << (fault_lines.empty() ? "none" : absl::StrJoin(fault_lines, ", ")) << ")\n";
  summary << "keys: " << keys.size() << "  checker: " << lincheck::OutcomeName(check.outcome) << " ("
          << check.states << " states)\n";
  summary << "proxy: " << proxy.accepted << " connections, " << proxy.unknown_source << " of unknown source, "
          << proxy.upstream_refused << " refused (node down), " << proxy.bytes_forwarded << " bytes\n";
  for (const std::string& e : cluster->AllowedExits()) summary << "allowed exit: " << e << "\n";
  const auto errors = history.errors();
  std::vector<std::pair<uint64_t, std::string>> top;
  for (const auto& [what, count] : errors) top.emplace_back(count, what);
  std::sort(top.rbegin(), top.rend());
  summary << "client errors (most frequent first):\n";
  for (size_t i = 0; i < top.size() && i < 12; ++i) summary << "  " << top[i].first << "  " << top[i].second << "\n";
  summary << "violations: " << verdict.failures.size() << "\n";
  for (const std::string& f : verdict.failures) summary << "  " << f << "\n";
  summary << absl::StrFormat("RESULT nemesis=%s seed=%d attempted=%d ok=%d info=%d fail=%d faults=%d violations=%d\n",
                             nemesis_name, seed, counts.invoked, counts.ok(), counts.info(), counts.failed(),
                             nemesis.total_injected(), verdict.failures.size());
  {
    std::ofstream out(dir + "/summary.txt");
    out << summary.str();
    std::ofstream errs(dir + "/client-errors.txt");
    for (const auto& [count, what] : top) errs << count << "  " << what << "\n";
  }
  std::printf("%s", summary.str().c_str());

  const bool passed = verdict.failures.empty();
  const bool keep = !passed || absl::GetFlag(FLAGS_keep);
  cluster->set_keep_data(keep);
  nemesis_ptr = nullptr;
  cluster.reset();
  if (keep) {
    std::printf("fault_test: %s; run directory kept: %s\n", passed ? "PASSED" : "FAILED", dir.c_str());
  } else {
    std::error_code ec;
    fs::remove_all(dir, ec);
    std::printf("fault_test: PASSED; run directory removed (--keep keeps it)\n");
  }
  return passed ? 0 : 1;
}
