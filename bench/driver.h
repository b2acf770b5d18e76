// The systems kvbench can load, behind one small interface so the same
// generator, keys, values and concurrency hit each of them. This header is
// gRPC-free: drivers.cc holds the gRPC code (callback API) of both.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "bench/options.h"

namespace quorumkv::bench {

// The outcome of one operation. `code` is the gRPC status code (0 = OK).
struct OpResult {
  int code = 0;
  std::string message;  // set only on error
  bool found = false;   // get: the key had a value
};

// The reusable state of one in-flight slot: one operation at a time. The
// callback given at creation runs exactly once per Start, on a thread of
// the driver (gRPC's callback threads), and may call Start again: the
// closed loop issues its next operation from there.
class Call {
 public:
  virtual ~Call() = default;
  // `key` and `value` are copied into the request before Start returns.
  virtual void Start(OpType op, absl::string_view key, absl::string_view value) = 0;
};

using DoneCallback = std::function<void(const OpResult&)>;

class Driver {
 public:
  virtual ~Driver() = default;
  // A call for in-flight slot `slot` (slots spread over the channels).
  virtual std::unique_ptr<Call> NewCall(size_t slot, DoneCallback done) = 0;
  // The endpoints the load goes to (the leader's, or all).
  virtual std::vector<std::string> targets() const = 0;
  // The read consistency the system actually gives (etcd: lease is served
  // as serializable).
  virtual std::string effective_consistency() const = 0;
  // Notes for the report ("etcd has no lease reads: ...").
  virtual std::vector<std::string> notes() const = 0;
};

// Connects to the endpoints of `options` and, for --target leader, finds
// the leader (waiting up to 15 s for one to be elected). UNAVAILABLE with
// what every endpoint answered when none is reachable or no leader shows.
absl::StatusOr<std::unique_ptr<Driver>> MakeDriver(const BenchOptions& options);

}  // namespace quorumkv::bench
