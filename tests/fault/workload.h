// The client side of a fault run: operations against real nodes over raw
// gRPC stubs, each recorded as an invoke and one completion in the history
// format of shared/HISTORY.md, and the concurrent client processes.
//
// How a completion is classified (the only judgement the recorder makes):
//   ok    the call returned OK: it took effect, with this result;
//   fail  it certainly did not take effect: INVALID_ARGUMENT, or any error
//         carrying the trailer "quorumkv-not-proposed" (refused before it
//         was proposed);
//   info  everything else: a deadline, a lost connection, UNAVAILABLE
//         without that trailer, an error of a node that failed mid-way...
//         The write may take effect at any later time, or never. The
//         process that got it never issues again: its client continues
//         under a new process id, as Jepsen does.
// No operation is retried and writes carry no (client_id, sequence): each
// history entry is exactly one request on the wire.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "tests/fault/fault_cluster.h"
#include "tests/lincheck/history.h"

namespace quorumkv::fault {

struct OpCounts {
  // [function][completion type]: put, get, delete, cas x ok, fail, info.
  std::array<std::array<uint64_t, 3>, 4> by_function{};
  uint64_t invoked = 0;
  uint64_t ok() const;
  uint64_t failed() const;
  uint64_t info() const;
  uint64_t Count(lincheck::Function f, lincheck::EventType t) const;
};

// Writes the history file (one lincheck::ToJsonLine per event, whole lines
// under a lock) and keeps the counts. Thread-safe.
class HistoryRecorder {
 public:
  explicit HistoryRecorder(const std::string& path);
  ~HistoryRecorder();
  const absl::Status& status() const { return status_; }
  const std::string& path() const { return path_; }

  int64_t NewProcess() { return next_process_++; }
  // The history's clock: nanoseconds of the driver's steady clock.
  static int64_t Now();
  // Extra fields for people, which readers of the format ignore
  // (tests/lincheck/history.h): `node`, the node the request went to (on
  // the invoke); `error`, the status of a fail or info completion.
  void Record(const lincheck::Event& e, uint64_t node = 0, const std::string& error = "");
  void CountError(const std::string& what);
  void Flush();
  OpCounts counts() const;
  // Errors seen by clients, "CODE: message" -> count (first 300 kinds).
  std::map<std::string, uint64_t> errors() const;

 private:
  std::string path_;
  std::ofstream file_;
  absl::Status status_;
  std::mutex file_mu_;
  std::atomic<int64_t> next_process_{1};
  mutable std::mutex mu_;
  OpCounts counts_;
  std::map<std::string, uint64_t> errors_;
};

struct OpRequest {
  lincheck::Function f = lincheck::Function::kGet;
  std::string key;
  std::optional<std::string> value;  // put only
  lincheck::Consistency consistency = lincheck::Consistency::kLinearizable;  // get only
};

struct OpOutcome {
  lincheck::EventType type = lincheck::EventType::kInfo;
  std::optional<std::string> value;  // get ok: the value read (nullopt: absent)
  int code = 0;                      // grpc::StatusCode
  std::string message;
};

// Sends one operation to `ep` as `process`, with a deadline of `timeout`,
// and records its invoke and completion.
OpOutcome RunOp(HistoryRecorder& history, int64_t process, Endpoint& ep, const OpRequest& request,
                absl::Duration timeout);

struct WorkloadOptions {
  int clients = 4;
  // Keys in use at a time; each key is retired after about ops_per_key
  // operations and a fresh one takes its place, which keeps every key's
  // sub-history small enough to check (Jepsen's "independent" keys).
  int keys = 5;
  int ops_per_key = 150;
  absl::Duration op_timeout = absl::Seconds(1);
  uint64_t seed = 1;
  // Operation mix, in percent; the rest are linearizable gets.
  int put_percent = 35;
  int delete_percent = 10;
  int lease_get_percent = 15;
  int serializable_get_percent = 10;
};

class Workload {
 public:
  Workload(FaultCluster* cluster, HistoryRecorder* history, const WorkloadOptions& options);
  ~Workload();
  void Start();
  void Stop();  // lets every outstanding call complete, joins the clients
  std::vector<std::string> Keys() const;

 private:
  void ClientLoop(int index);
  OpRequest NextOp(std::mt19937_64& rng, int64_t process, uint64_t& counter);

  FaultCluster* const cluster_;
  HistoryRecorder* const history_;
  const WorkloadOptions options_;
  std::atomic<bool> stop_{false};
  std::atomic<uint64_t> started_ops_{0};
  std::vector<std::thread> clients_;
  mutable std::mutex mu_;
  std::set<std::string> keys_;
};

}  // namespace quorumkv::fault
