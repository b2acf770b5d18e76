// Real kvserver processes on 127.0.0.1 for integration and fault tests:
// free ports, one data dir per node under a temporary directory, logs in
// files, kill -9 / SIGTERM / SIGSTOP / restart, and a bounded wait for a
// leader. The destructor kills whatever is still running and removes the
// directory (kept, and its path printed, when QUORUMKV_KEEP_TEST_DIRS=1).
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "client/kv_client.h"

namespace quorumkv::testing {

struct ProcessNode {
  uint64_t id = 0;
  int client_port = 0;
  int peer_port = 0;
  std::string data_dir;
  std::string log_file;
  pid_t pid = -1;
  std::vector<std::string> extra_flags;
  bool joined = false;  // started with --join
  std::string client_endpoint() const { return "127.0.0.1:" + std::to_string(client_port); }
  std::string peer_endpoint() const { return "127.0.0.1:" + std::to_string(peer_port); }
};

struct ClusterOptions {
  int nodes = 3;
  std::vector<std::string> extra_flags;  // passed to every node
};

class ProcessCluster {
 public:
  explicit ProcessCluster(const ClusterOptions& options);
  ~ProcessCluster();
  ProcessCluster(const ProcessCluster&) = delete;
  ProcessCluster& operator=(const ProcessCluster&) = delete;

  // Starts the founding members; false (with the reason logged) on failure.
  bool Start();

  // A new node (next id) started with --join against the current members.
  // Call after adding it with the Cluster API.
  ProcessNode& PrepareNode();
  bool StartNode(uint64_t id);

  void Kill(uint64_t id);       // SIGKILL, waits for the exit
  void Terminate(uint64_t id);  // SIGTERM, waits (bounded) for a clean exit; returns its status
  int TerminateAndStatus(uint64_t id);
  void Pause(uint64_t id);      // SIGSTOP
  void Resume(uint64_t id);     // SIGCONT
  bool Running(uint64_t id) const;
  // Starts an existing node again with the same flags and data dir.
  bool Restart(uint64_t id);
  // Waits for a started node's process to exit by itself; its exit code, or
  // nullopt on time-out.
  std::optional<int> WaitExit(uint64_t id, absl::Duration timeout);

  // The node every running node agrees is leader, within `timeout`.
  std::optional<uint64_t> WaitForLeader(absl::Duration timeout);
  // Waits until every running node reports applied_index >= index.
  bool WaitForApplied(uint64_t index, absl::Duration timeout);

  ProcessNode& node(uint64_t id) { return nodes_.at(id); }
  const std::map<uint64_t, ProcessNode>& nodes() const { return nodes_; }
  std::vector<std::string> Endpoints() const;  // running nodes' client endpoints
  std::string InitialCluster() const;
  // A client for all running nodes, or just one.
  std::unique_ptr<client::KvClient> Client(absl::Duration total_timeout = absl::Seconds(15)) const;
  std::unique_ptr<client::KvClient> ClientFor(uint64_t id, absl::Duration total_timeout = absl::Seconds(5)) const;
  absl::StatusOr<quorumkv::v1::StatusResponse> Status(uint64_t id) const;
  // The last lines of a node's log, for failure messages.
  std::string LogTail(uint64_t id, int lines = 30) const;
  const std::string& dir() const { return dir_; }

 private:
  bool Spawn(ProcessNode& n);

  ClusterOptions options_;
  std::string dir_;
  std::string binary_;
  std::map<uint64_t, ProcessNode> nodes_;
  std::string initial_cluster_;
};

// A TCP port on 127.0.0.1 that was free a moment ago.
int FreePort();
// n distinct such ports, none of them in `avoid`.
std::vector<int> FreePorts(size_t n, const std::set<int>& avoid = {});

// Flips the last byte of the stored record holding entry `index` (a run of
// entries, see raft/storage/format.h) in the Raft log of a stopped node's
// data dir, rewritten through LevelDB so that only quorumkv's own CRC can
// notice. Returns the first index of that record, which the error names.
absl::StatusOr<uint64_t> CorruptLogEntry(const std::string& data_dir, uint64_t index);

}  // namespace quorumkv::testing
