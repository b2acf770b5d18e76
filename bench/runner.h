// The closed loop: `concurrency` slots, each with one operation in flight;
// a completion records its latency and starts the slot's next operation
// from the completion callback itself, so the load never waits on a
// thread of ours. Each slot owns its histograms and counters (a slot's
// callbacks never overlap), so recording takes no lock; the main thread
// merges them once every slot has stopped.
//
// Timeline of one run: [warm-up: load, nothing recorded] [measurement].
// An operation is measured if it started at or after the measurement
// began and, in --duration mode, completed by its end; throughput is
// measured operations / measured time.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>

#include "absl/status/statusor.h"
#include "bench/driver.h"
#include "bench/histogram.h"
#include "bench/options.h"

namespace quorumkv::bench {

struct ErrorCount {
  uint64_t count = 0;
  std::string example;  // the first message seen with this code
};

struct RunResult {
  double elapsed_s = 0;  // the measured window
  // Successful operations, by type; their latencies in nanoseconds.
  Histogram latency[kOpTypes];
  uint64_t ok_ops = 0;
  uint64_t get_found = 0;
  uint64_t get_missing = 0;
  std::map<int, ErrorCount> errors;  // by gRPC status code
  uint64_t error_total = 0;
  // This process's CPU time (user + system) over the measured window.
  double client_cpu_s = 0;

  Histogram All() const;
  double ops_per_sec() const { return elapsed_s > 0 ? static_cast<double>(ok_ops) / elapsed_s : 0.0; }
};

// What one phase of a run does.
struct PhaseSpec {
  std::string name;  // "preload", "run": for the progress line
  Mix mix;
  absl::Duration warmup = absl::ZeroDuration();
  absl::Duration duration = absl::ZeroDuration();  // used when ops == 0
  uint64_t ops = 0;
  // Keys 0, 1, 2, ... in ticket order (a preload) instead of uniform draws.
  bool sequential_keys = false;
};

class Runner {
 public:
  // `driver` must outlive the runner.
  Runner(const BenchOptions& options, Driver* driver);

  // Runs one phase to the end; returns when every slot has stopped.
  RunResult RunPhase(const PhaseSpec& spec);

  // Progress lines go here (default: stderr) when options.progress is set.
  void set_progress_sink(std::function<void(const std::string&)> sink) { progress_sink_ = std::move(sink); }

 private:
  const BenchOptions options_;
  Driver* const driver_;
  std::string value_pool_;  // random printable bytes; values are slices of it
  std::function<void(const std::string&)> progress_sink_;
};

// CPU seconds (user + system) this process has used so far.
double ProcessCpuSeconds();

}  // namespace quorumkv::bench
