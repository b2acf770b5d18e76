// kvbench's outputs: the JSON document (parameters, results, machine) and
// the summary printed on stdout.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "bench/options.h"
#include "bench/runner.h"
#include "nlohmann/json.hpp"

namespace quorumkv::bench {

struct MachineInfo {
  unsigned hardware_concurrency = 0;  // std::thread::hardware_concurrency()
  long online_cpus = 0;               // sysconf(_SC_NPROCESSORS_ONLN), what nproc prints
  std::string kernel;                 // uname: sysname release version machine
  std::string cpu_model;              // /proc/cpuinfo "model name", if any
  // getloadavg(): 1, 5 and 15 minutes, when DescribeMachine ran. On a
  // shared machine, other load skews every figure: the JSON keeps it.
  double load_average[3] = {0, 0, 0};
};
MachineInfo DescribeMachine();

struct RunContext {
  std::vector<std::string> targets;
  std::string effective_consistency;
  std::vector<std::string> notes;
  std::string started_at;   // RFC 3339, UTC
  double process_cpu_s = 0;  // this process's CPU over its whole life
  double wall_s = 0;         // this process's wall time (connect, preload, warm-up, run)
};

// Latency figures of a histogram in microseconds: count, min, mean, p50,
// p90, p99, p99.9, max.
nlohmann::json LatencyJson(const Histogram& h);

nlohmann::json BuildReport(const BenchOptions& options, const RunContext& context,
                           const std::optional<RunResult>& preload, const std::optional<RunResult>& run,
                           const MachineInfo& machine);

// Human-readable summary of one phase.
std::string Summary(const std::string& title, const RunResult& r);

}  // namespace quorumkv::bench
