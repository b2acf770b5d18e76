#include "bench/options.h"

#include <algorithm>
#include <set>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace quorumkv::bench {

const char* SystemName(System s) { return s == System::kQuorumKv ? "quorumkv" : "etcd"; }

const char* ConsistencyName(Consistency c) {
  switch (c) {
    case Consistency::kLinearizable: return "linearizable";
    case Consistency::kLease: return "lease";
    case Consistency::kSerializable: return "serializable";
  }
  return "?";
}

const char* TargetName(Target t) { return t == Target::kLeader ? "leader" : "all"; }

const char* OpTypeName(OpType op) {
  switch (op) {
    case OpType::kPut: return "put";
    case OpType::kGet: return "get";
    case OpType::kDelete: return "delete";
  }
  return "?";
}

std::string StatusCodeName(int code) {
  static const char* const kNames[] = {
      "OK",      "CANCELLED",         "UNKNOWN",          "INVALID_ARGUMENT",    "DEADLINE_EXCEEDED",
      "NOT_FOUND", "ALREADY_EXISTS",  "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
      "ABORTED", "OUT_OF_RANGE",      "UNIMPLEMENTED",    "INTERNAL",            "UNAVAILABLE",
      "DATA_LOSS", "UNAUTHENTICATED"};
  if (code >= 0 && code < static_cast<int>(std::size(kNames))) return kNames[code];
  return absl::StrCat("CODE_", code);
}

std::string Mix::ToString() const { return absl::StrCat("put=", put, ",get=", get, ",delete=", del); }

absl::StatusOr<Mix> ParseMix(absl::string_view text) {
  Mix mix{0, 0, 0};
  std::set<std::string> seen;
  for (absl::string_view part : absl::StrSplit(text, ',', absl::SkipWhitespace())) {
    std::vector<std::string> kv = absl::StrSplit(part, absl::MaxSplits('=', 1));
    if (kv.size() != 2) {
      return absl::InvalidArgumentError(
          absl::StrCat("--mix: \"", part, "\" is not op=weight (e.g. put=10,get=90,delete=0)"));
    }
    std::string name = absl::AsciiStrToLower(absl::StripAsciiWhitespace(kv[0]));
    if (name == "del") name = "delete";
    uint32_t weight = 0;
    if (!absl::SimpleAtoi(absl::StripAsciiWhitespace(kv[1]), &weight) || weight > 1000000) {
      return absl::InvalidArgumentError(
          absl::StrCat("--mix: the weight of ", name, " (\"", kv[1], "\") is not an integer in 0..1000000"));
    }
    if (!seen.insert(name).second) return absl::InvalidArgumentError(absl::StrCat("--mix: ", name, " given twice"));
    if (name == "put") {
      mix.put = weight;
    } else if (name == "get") {
      mix.get = weight;
    } else if (name == "delete") {
      mix.del = weight;
    } else {
      return absl::InvalidArgumentError(
          absl::StrCat("--mix: unknown operation \"", kv[0], "\" (put, get, delete)"));
    }
  }
  if (mix.total() == 0) {
    return absl::InvalidArgumentError("--mix: at least one operation needs a positive weight");
  }
  return mix;
}

absl::Status ValidateEndpoint(absl::string_view endpoint) {
  size_t colon;
  if (!endpoint.empty() && endpoint.front() == '[') {
    const size_t close = endpoint.find(']');
    if (close == absl::string_view::npos || close + 1 >= endpoint.size() || endpoint[close + 1] != ':') {
      return absl::InvalidArgumentError(absl::StrCat("endpoint \"", endpoint, "\" is not [v6-address]:port"));
    }
    colon = close + 1;
  } else {
    colon = endpoint.rfind(':');
    if (colon == absl::string_view::npos || colon == 0 || endpoint.substr(0, colon).find(':') != absl::string_view::npos) {
      return absl::InvalidArgumentError(absl::StrCat("endpoint \"", endpoint, "\" is not host:port"));
    }
  }
  int port = 0;
  if (!absl::SimpleAtoi(endpoint.substr(colon + 1), &port) || port < 1 || port > 65535) {
    return absl::InvalidArgumentError(absl::StrCat("endpoint \"", endpoint, "\" has no port in 1..65535"));
  }
  return absl::OkStatus();
}

int DecimalDigits(uint64_t n) {
  int d = 1;
  while (n >= 10) {
    n /= 10;
    ++d;
  }
  return d;
}

void FormatKey(uint64_t i, int key_size, std::string* out) {
  out->assign(static_cast<size_t>(key_size), '0');
  (*out)[0] = 'k';
  for (int pos = key_size - 1; pos >= 1 && i > 0; --pos) {
    (*out)[static_cast<size_t>(pos)] = static_cast<char>('0' + i % 10);
    i /= 10;
  }
}

std::string KeyFor(uint64_t i, int key_size) {
  std::string key;
  FormatKey(i, key_size, &key);
  return key;
}

namespace {

absl::StatusOr<absl::Duration> ParseDurationFlag(absl::string_view flag, absl::string_view value) {
  absl::Duration d;
  double seconds = 0;
  if (absl::SimpleAtod(value, &seconds)) {
    d = absl::Seconds(seconds);  // a bare number is seconds
  } else if (!absl::ParseDuration(value, &d)) {
    return absl::InvalidArgumentError(
        absl::StrCat("--", flag, ": \"", value, "\" is not a duration (e.g. 10s, 500ms, 2m)"));
  }
  if (d < absl::ZeroDuration() || d == absl::InfiniteDuration()) {
    return absl::InvalidArgumentError(absl::StrCat("--", flag, ": \"", value, "\" must be finite and >= 0"));
  }
  return d;
}

template <typename Int>
absl::Status ParseIntFlag(absl::string_view flag, absl::string_view value, Int lo, Int hi, Int* out) {
  Int v{};
  if (!absl::SimpleAtoi(value, &v) || v < lo || v > hi) {
    return absl::InvalidArgumentError(
        absl::StrCat("--", flag, ": \"", value, "\" is not an integer in ", lo, "..", hi));
  }
  *out = v;
  return absl::OkStatus();
}

absl::Status ParseBoolFlag(absl::string_view flag, absl::string_view value, bool* out) {
  const std::string v = absl::AsciiStrToLower(value);
  if (v == "true" || v == "1" || v == "yes") {
    *out = true;
  } else if (v == "false" || v == "0" || v == "no") {
    *out = false;
  } else {
    return absl::InvalidArgumentError(absl::StrCat("--", flag, ": \"", value, "\" is not true or false"));
  }
  return absl::OkStatus();
}

const std::set<std::string>& BoolFlags() {
  static const auto* flags = new std::set<std::string>{"preload", "preload-only", "progress"};
  return *flags;
}

}  // namespace

absl::StatusOr<BenchOptions> ParseOptions(const std::vector<std::string>& args) {
  BenchOptions o;
  bool duration_given = false;
  bool ops_given = false;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    if (arg.size() < 3 || arg.rfind("--", 0) != 0) {
      return absl::InvalidArgumentError(absl::StrCat("unexpected argument \"", arg, "\"; see --help"));
    }
    std::string name = arg.substr(2);
    std::string value;
    bool has_value = false;
    if (size_t eq = name.find('='); eq != std::string::npos) {
      value = name.substr(eq + 1);
      name = name.substr(0, eq);
      has_value = true;
    }
    std::replace(name.begin(), name.end(), '_', '-');
    if (!has_value) {
      if (BoolFlags().contains(name)) {
        value = "true";
      } else if (name.rfind("no-", 0) == 0 && BoolFlags().contains(name.substr(3))) {
        name = name.substr(3);
        value = "false";
      } else if (i + 1 < args.size()) {
        value = args[++i];
      } else {
        return absl::InvalidArgumentError(absl::StrCat("--", name, " needs a value"));
      }
    }

    absl::Status s;
    if (name == "system") {
      if (value == "quorumkv") {
        o.system = System::kQuorumKv;
      } else if (value == "etcd") {
        o.system = System::kEtcd;
      } else {
        s = absl::InvalidArgumentError(absl::StrCat("--system: \"", value, "\" is not quorumkv or etcd"));
      }
    } else if (name == "endpoints") {
      o.endpoints.clear();
      std::set<std::string> seen;
      for (absl::string_view e : absl::StrSplit(value, ',', absl::SkipWhitespace())) {
        std::string ep(absl::StripAsciiWhitespace(e));
        if (absl::Status v = ValidateEndpoint(ep); !v.ok()) {
          return absl::InvalidArgumentError(absl::StrCat("--endpoints: ", v.message()));
        }
        if (!seen.insert(ep).second) return absl::InvalidArgumentError(absl::StrCat("--endpoints: ", ep, " listed twice"));
        o.endpoints.push_back(ep);
      }
      if (o.endpoints.empty()) s = absl::InvalidArgumentError("--endpoints: give at least one host:port");
    } else if (name == "target") {
      if (value == "leader") {
        o.target = Target::kLeader;
      } else if (value == "all") {
        o.target = Target::kAll;
      } else {
        s = absl::InvalidArgumentError(absl::StrCat("--target: \"", value, "\" is not leader or all"));
      }
    } else if (name == "channels") {
      s = ParseIntFlag<int>(name, value, 1, 256, &o.channels);
    } else if (name == "concurrency") {
      s = ParseIntFlag<int>(name, value, 1, 100000, &o.concurrency);
    } else if (name == "duration") {
      auto d = ParseDurationFlag(name, value);
      if (!d.ok()) return d.status();
      o.duration = *d;
      duration_given = true;
    } else if (name == "ops") {
      s = ParseIntFlag<uint64_t>(name, value, 1, uint64_t{1} << 40, &o.ops);
      ops_given = true;
    } else if (name == "warmup") {
      auto d = ParseDurationFlag(name, value);
      if (!d.ok()) return d.status();
      o.warmup = *d;
    } else if (name == "timeout") {
      auto d = ParseDurationFlag(name, value);
      if (!d.ok()) return d.status();
      o.timeout = *d;
    } else if (name == "keys") {
      s = ParseIntFlag<uint64_t>(name, value, 1, uint64_t{1} << 40, &o.keys);
    } else if (name == "key-size") {
      s = ParseIntFlag<int>(name, value, 2, 4096, &o.key_size);
    } else if (name == "value-size") {
      s = ParseIntFlag<int>(name, value, 0, 1 << 20, &o.value_size);
    } else if (name == "mix") {
      auto m = ParseMix(value);
      if (!m.ok()) return m.status();
      o.mix = *m;
    } else if (name == "consistency") {
      if (value == "linearizable") {
        o.consistency = Consistency::kLinearizable;
      } else if (value == "lease") {
        o.consistency = Consistency::kLease;
      } else if (value == "serializable") {
        o.consistency = Consistency::kSerializable;
      } else {
        s = absl::InvalidArgumentError(
            absl::StrCat("--consistency: \"", value, "\" is not linearizable, lease or serializable"));
      }
    } else if (name == "json") {
      if (value.empty()) s = absl::InvalidArgumentError("--json: give a file name");
      o.json_path = value;
    } else if (name == "preload") {
      s = ParseBoolFlag(name, value, &o.preload);
    } else if (name == "preload-only") {
      s = ParseBoolFlag(name, value, &o.preload_only);
    } else if (name == "progress") {
      s = ParseBoolFlag(name, value, &o.progress);
    } else if (name == "seed") {
      s = ParseIntFlag<uint64_t>(name, value, 0, UINT64_MAX, &o.seed);
    } else if (name == "label") {
      o.label = value;
    } else {
      s = absl::InvalidArgumentError(absl::StrCat("unknown flag --", name, "; see --help"));
    }
    if (!s.ok()) return s;
  }

  if (duration_given && ops_given) return absl::InvalidArgumentError("give --duration or --ops, not both");
  if (o.ops == 0 && o.duration <= absl::ZeroDuration() && !o.preload_only) {
    return absl::InvalidArgumentError("--duration must be > 0 (or give --ops N)");
  }
  if (o.timeout <= absl::ZeroDuration()) return absl::InvalidArgumentError("--timeout must be > 0");
  if (o.preload_only) o.preload = true;
  const int needed = 1 + DecimalDigits(o.keys - 1);
  if (o.key_size < needed) {
    return absl::InvalidArgumentError(absl::StrCat("--key-size ", o.key_size, " is too small for ", o.keys,
                                                   " keys: keys look like \"k", std::string(needed - 1, '0'),
                                                   "\"; use --key-size >= ", needed));
  }
  return o;
}

std::string Usage() {
  return R"(kvbench: a closed-loop load generator for quorumkv and etcd (gRPC callback API).

Usage: kvbench [flags]
  --system quorumkv|etcd          which API to speak (default quorumkv)
  --endpoints h:p,...             client endpoints (default 127.0.0.1:2379)
  --target leader|all             send everything to the leader (found with
                                  quorumkv.v1.Cluster/Status or etcd's
                                  Maintenance/Status), or spread the in-flight
                                  requests over all endpoints (default leader)
  --channels N                    gRPC channels (HTTP/2 connections) per target
                                  endpoint (default 4)
  --concurrency N                 requests in flight (default 16)
  --duration D | --ops N          measure for D (default 10s) or N operations
  --warmup D                      unmeasured load before measuring (default 1s)
  --keys N                        key space (default 10000), keys drawn uniformly
  --key-size B --value-size B     default 16 and 256 bytes
  --mix put=10,get=90,delete=0    operation weights (default put=10,get=90)
  --consistency linearizable|lease|serializable   reads (default linearizable);
                                  etcd has no lease reads: lease is sent as
                                  serializable=true, and the JSON says so
  --timeout D                     deadline of one request (default 5s)
  --preload                       put every key once before the warm-up
  --preload-only                  only that, then exit
  --seed N                        random seed (default 1)
  --label TEXT                    copied into the JSON
  --json FILE                     write parameters, results and machine as JSON
  --no-progress                   no per-second progress line on stderr
Durations: 10s, 500ms, 2m, or a number of seconds. Flags take dashes or
underscores, and "--flag value" or "--flag=value".
Writes carry no client session (no de-duplication) on either system.
Exit status: 0 on a run without errors, 1 if any request failed, 2 on bad
flags or when the cluster cannot be reached.
)";
}

}  // namespace quorumkv::bench
