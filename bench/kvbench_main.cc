// kvbench: a closed-loop load generator for quorumkv and etcd. See
// `kvbench --help`, bench/RESULTS.md, and bench/compare.sh, which runs it
// against both systems side by side.
#include <cstdio>
#include <fstream>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "bench/driver.h"
#include "bench/options.h"
#include "bench/report.h"
#include "bench/runner.h"

namespace quorumkv::bench {
namespace {

int Main(int argc, char** argv) {
  // Debian's abseil checks every mutex acquisition (gRPC's included) for
  // deadlock cycles: ~4 % of kvbench's CPU, charged to both systems alike.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  std::vector<std::string> args(argv + 1, argv + argc);
  for (const std::string& a : args) {
    if (a == "--help" || a == "-h" || a == "-help") {
      std::fputs(Usage().c_str(), stdout);
      return 0;
    }
  }
  absl::StatusOr<BenchOptions> parsed = ParseOptions(args);
  if (!parsed.ok()) {
    std::fprintf(stderr, "kvbench: %s\n", std::string(parsed.status().message()).c_str());
    return 2;
  }
  const BenchOptions& o = *parsed;
  const absl::Time started = absl::Now();
  // Sampled before this process adds any load.
  const MachineInfo machine = DescribeMachine();

  absl::StatusOr<std::unique_ptr<Driver>> driver = MakeDriver(o);
  if (!driver.ok()) {
    std::fprintf(stderr, "kvbench: cannot reach %s at %s: %s\n", SystemName(o.system),
                 absl::StrJoin(o.endpoints, ",").c_str(), driver.status().ToString().c_str());
    return 2;
  }
  RunContext context;
  context.targets = (*driver)->targets();
  context.effective_consistency = (*driver)->effective_consistency();
  context.notes = (*driver)->notes();
  context.started_at = absl::FormatTime(absl::RFC3339_sec, started, absl::UTCTimeZone());
  std::fprintf(stderr, "kvbench: %s at %s (%s), %d in flight over %d channel(s) per endpoint, %s\n",
               SystemName(o.system), absl::StrJoin(context.targets, ",").c_str(), TargetName(o.target),
               o.concurrency, o.channels,
               o.preload_only ? absl::StrCat("preload of ", o.keys, " keys only").c_str()
                              : absl::StrCat("mix ", o.mix.ToString(), ", ", context.effective_consistency, " reads")
                                    .c_str());
  for (const std::string& note : context.notes) std::fprintf(stderr, "kvbench: note: %s\n", note.c_str());

  Runner runner(o, driver->get());
  std::optional<RunResult> preload;
  std::optional<RunResult> run;
  if (o.preload) {
    PhaseSpec spec;
    spec.name = "preload";
    spec.mix = Mix{1, 0, 0};
    spec.ops = o.keys;
    spec.sequential_keys = true;
    preload = runner.RunPhase(spec);
    std::fputs(Summary("preload", *preload).c_str(), stdout);
  }
  if (!o.preload_only) {
    PhaseSpec spec;
    spec.name = "run";
    spec.mix = o.mix;
    spec.warmup = o.warmup;
    spec.duration = o.duration;
    spec.ops = o.ops;
    run = runner.RunPhase(spec);
    std::fputs(Summary(absl::StrCat(SystemName(o.system), " ", o.mix.ToString(), " ",
                                    context.effective_consistency, " x", o.concurrency),
                       *run)
                   .c_str(),
               stdout);
  }
  std::fflush(stdout);

  context.process_cpu_s = ProcessCpuSeconds();
  context.wall_s = absl::ToDoubleSeconds(absl::Now() - started);
  if (!o.json_path.empty()) {
    std::ofstream out(o.json_path);
    out << BuildReport(o, context, preload, run, machine).dump(2) << "\n";
    out.close();
    if (!out) {
      std::fprintf(stderr, "kvbench: cannot write %s\n", o.json_path.c_str());
      return 2;
    }
  }
  const uint64_t errors = (preload ? preload->error_total : 0) + (run ? run->error_total : 0);
  return errors > 0 ? 1 : 0;
}

}  // namespace
}  // namespace quorumkv::bench

int main(int argc, char** argv) { return quorumkv::bench::Main(argc, argv); }
