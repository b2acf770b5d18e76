// kvbench's command line: parsed into BenchOptions and validated, every
// mistake reported as INVALID_ARGUMENT naming the flag and what it accepts.
// Flags are spelled with dashes or underscores (--key-size, --key_size),
// with the value after '=' or as the next argument.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace quorumkv::bench {

enum class System { kQuorumKv, kEtcd };
enum class Consistency { kLinearizable, kLease, kSerializable };
enum class Target { kLeader, kAll };
enum class OpType : uint8_t { kPut = 0, kGet = 1, kDelete = 2 };
inline constexpr int kOpTypes = 3;

const char* SystemName(System s);
const char* ConsistencyName(Consistency c);
const char* TargetName(Target t);
const char* OpTypeName(OpType op);
// gRPC's name of a status code ("UNAVAILABLE"), or "CODE_<n>".
std::string StatusCodeName(int code);

// Relative weights of the operations; at least one is positive.
struct Mix {
  uint32_t put = 10;
  uint32_t get = 90;
  uint32_t del = 0;
  uint32_t total() const { return put + get + del; }
  std::string ToString() const;  // "put=10,get=90,delete=0"
};

// "put=10,get=90,delete=0": any subset of put, get, delete (or del), each
// once; unnamed operations get weight 0.
absl::StatusOr<Mix> ParseMix(absl::string_view text);

struct BenchOptions {
  System system = System::kQuorumKv;
  std::vector<std::string> endpoints = {"127.0.0.1:2379"};
  Target target = Target::kLeader;
  // gRPC channels (HTTP/2 connections) per target endpoint; in-flight
  // slots are spread over all channels round-robin.
  int channels = 4;
  int concurrency = 16;  // requests in flight, closed loop
  absl::Duration duration = absl::Seconds(10);
  uint64_t ops = 0;  // > 0: measure this many operations instead of a duration
  absl::Duration warmup = absl::Seconds(1);
  uint64_t keys = 10000;
  int key_size = 16;
  int value_size = 256;
  Mix mix;
  Consistency consistency = Consistency::kLinearizable;
  absl::Duration timeout = absl::Seconds(5);  // deadline of one request
  std::string json_path;
  // Put every key once before the warm-up, so reads find values.
  bool preload = false;
  // Preload and exit (no warm-up, no measurement).
  bool preload_only = false;
  uint64_t seed = 1;
  std::string label;  // free text, copied into the JSON (e.g. a workload name)
  bool progress = true;  // one line per second on stderr
};

// `args` excludes the program name. "--help" is not handled here.
absl::StatusOr<BenchOptions> ParseOptions(const std::vector<std::string>& args);

// The --help text.
std::string Usage();

// "host:port" or "[v6]:port", port in 1..65535.
absl::Status ValidateEndpoint(absl::string_view endpoint);

// Key number `i` as exactly `key_size` ASCII bytes: "k" and the number
// zero-padded ("k000000000000042" for size 16). The caller has checked
// that the largest key number fits (ParseOptions does).
void FormatKey(uint64_t i, int key_size, std::string* out);
std::string KeyFor(uint64_t i, int key_size);

// Decimal digits of n (1 for 0).
int DecimalDigits(uint64_t n);

}  // namespace quorumkv::bench
