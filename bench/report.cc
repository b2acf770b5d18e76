#include "bench/report.h"

#include <sys/utsname.h>
#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <fstream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/strip.h"
#include "bench/options.h"

namespace quorumkv::bench {

MachineInfo DescribeMachine() {
  MachineInfo m;
  m.hardware_concurrency = std::thread::hardware_concurrency();
  m.online_cpus = sysconf(_SC_NPROCESSORS_ONLN);
  utsname u{};
  if (uname(&u) == 0) m.kernel = absl::StrCat(u.sysname, " ", u.release, " ", u.version, " ", u.machine);
  if (getloadavg(m.load_average, 3) != 3) m.load_average[0] = m.load_average[1] = m.load_average[2] = -1;
  std::ifstream cpuinfo("/proc/cpuinfo");
  std::string line;
  while (std::getline(cpuinfo, line)) {
    if (line.rfind("model name", 0) == 0) {
      const size_t colon = line.find(':');
      if (colon != std::string::npos) m.cpu_model = std::string(absl::StripAsciiWhitespace(line.substr(colon + 1)));
      break;
    }
  }
  return m;
}

namespace {

double Micros(uint64_t ns) { return std::round(static_cast<double>(ns) / 100.0) / 10.0; }

nlohmann::json ResultJson(const RunResult& r) {
  nlohmann::json j;
  j["ops"] = r.ok_ops;
  j["elapsed_s"] = r.elapsed_s;
  j["ops_per_sec"] = std::round(r.ops_per_sec() * 10) / 10;
  j["latency_us"] = LatencyJson(r.All());
  nlohmann::json by_op = nlohmann::json::object();
  for (int k = 0; k < kOpTypes; ++k) {
    if (r.latency[k].count() > 0) by_op[OpTypeName(static_cast<OpType>(k))] = LatencyJson(r.latency[k]);
  }
  j["by_op"] = by_op;
  j["get_found"] = r.get_found;
  j["get_missing"] = r.get_missing;
  j["errors_total"] = r.error_total;
  nlohmann::json errors = nlohmann::json::object();
  for (const auto& [code, e] : r.errors) errors[StatusCodeName(code)] = {{"count", e.count}, {"example", e.example}};
  j["errors"] = errors;
  j["client_cpu_s"] = r.client_cpu_s;
  return j;
}

}  // namespace

nlohmann::json LatencyJson(const Histogram& h) {
  return {{"count", h.count()},
          {"min", Micros(h.min())},
          {"mean", std::round(h.mean() / 100.0) / 10.0},
          {"p50", Micros(h.ValueAtQuantile(0.50))},
          {"p90", Micros(h.ValueAtQuantile(0.90))},
          {"p99", Micros(h.ValueAtQuantile(0.99))},
          {"p999", Micros(h.ValueAtQuantile(0.999))},
          {"max", Micros(h.max())}};
}

nlohmann::json BuildReport(const BenchOptions& o, const RunContext& c, const std::optional<RunResult>& preload,
                           const std::optional<RunResult>& run, const MachineInfo& m) {
  nlohmann::json j;
  j["tool"] = "kvbench";
  j["format_version"] = 1;
  j["started_at"] = c.started_at;
  j["parameters"] = {
      {"system", SystemName(o.system)},
      {"endpoints", o.endpoints},
      {"target", TargetName(o.target)},
      {"target_endpoints", c.targets},
      {"channels_per_endpoint", o.channels},
      {"concurrency", o.concurrency},
      {"duration_s", o.ops > 0 ? 0.0 : absl::ToDoubleSeconds(o.duration)},
      {"ops", o.ops},
      {"warmup_s", absl::ToDoubleSeconds(o.warmup)},
      {"keys", o.keys},
      {"key_size", o.key_size},
      {"value_size", o.value_size},
      {"mix", {{"put", o.mix.put}, {"get", o.mix.get}, {"delete", o.mix.del}}},
      {"consistency", ConsistencyName(o.consistency)},
      {"consistency_effective", c.effective_consistency},
      {"timeout_s", absl::ToDoubleSeconds(o.timeout)},
      {"preload", o.preload},
      {"seed", o.seed},
      {"label", o.label},
  };
  j["notes"] = c.notes;
  if (preload) j["preload"] = ResultJson(*preload);
  if (run) j["results"] = ResultJson(*run);
  j["process"] = {{"cpu_s", c.process_cpu_s}, {"wall_s", c.wall_s}};
  j["machine"] = {{"cores", m.online_cpus},
                  {"hardware_concurrency", m.hardware_concurrency},
                  {"kernel", m.kernel},
                  {"cpu_model", m.cpu_model},
                  {"load_average", {m.load_average[0], m.load_average[1], m.load_average[2]}}};
  return j;
}

std::string Summary(const std::string& title, const RunResult& r) {
  std::string out = absl::StrFormat("%s: %llu ops in %.2fs = %.0f ops/s, %llu errors, client CPU %.2fs\n", title,
                                    static_cast<unsigned long long>(r.ok_ops), r.elapsed_s, r.ops_per_sec(),
                                    static_cast<unsigned long long>(r.error_total), r.client_cpu_s);
  auto line = [&](const std::string& name, const Histogram& h) {
    absl::StrAppendFormat(&out,
                          "  %-7s n=%-9llu p50 %8.1f us  p90 %8.1f us  p99 %8.1f us  p99.9 %8.1f us  max %8.1f us\n",
                          name, static_cast<unsigned long long>(h.count()), Micros(h.ValueAtQuantile(0.5)),
                          Micros(h.ValueAtQuantile(0.9)), Micros(h.ValueAtQuantile(0.99)),
                          Micros(h.ValueAtQuantile(0.999)), Micros(h.max()));
  };
  line("all", r.All());
  for (int k = 0; k < kOpTypes; ++k) {
    if (r.latency[k].count() > 0) line(OpTypeName(static_cast<OpType>(k)), r.latency[k]);
  }
  if (r.get_found + r.get_missing > 0) {
    absl::StrAppendFormat(&out, "  gets: %llu found, %llu missing\n", static_cast<unsigned long long>(r.get_found),
                          static_cast<unsigned long long>(r.get_missing));
  }
  for (const auto& [code, e] : r.errors) {
    absl::StrAppendFormat(&out, "  error %s x%llu, e.g. \"%s\"\n", StatusCodeName(code),
                          static_cast<unsigned long long>(e.count), e.example);
  }
  return out;
}

}  // namespace quorumkv::bench
