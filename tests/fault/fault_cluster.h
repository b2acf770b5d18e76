// Real kvserver processes for the fault tests, with the knobs a nemesis
// needs: each node behind its own peer proxy (tcp_proxy.h) so links can be
// cut, process control (kill -9, SIGSTOP/SIGCONT, restart, SIGTERM),
// membership bookkeeping for nodes added and removed during a run, a
// clock-rate skew per node (libfaketime), and a small disk per node that can
// be filled (a tmpfs mount, or RLIMIT_FSIZE when mounting is not allowed).
//
// A monitor thread reaps the children: any exit the test did not ask for is
// recorded and fails the run (UnexpectedExits), except a node allowed to
// stop by itself (AllowExit), which may exit with an exit code but not die
// of a signal.
//
// tests/integration/process_cluster.h starts plain clusters; this one is
// separate because every node's addresses, environment and data dir differ
// here (proxy address advertised, faketime, tmpfs).
#pragma once

#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "kv.grpc.pb.h"
#include "tests/fault/tcp_proxy.h"

namespace quorumkv::fault {

// A node's client API; shared by the client threads (stubs are thread-safe).
struct Endpoint {
  uint64_t id = 0;
  std::string address;
  std::shared_ptr<grpc::Channel> channel;
  std::unique_ptr<quorumkv::v1::KV::Stub> kv;
  std::unique_ptr<quorumkv::v1::Cluster::Stub> cluster;
};

enum class DiskMethod {
  kNone,    // data dirs on the ordinary file system
  kTmpfs,   // each data dir on its own small tmpfs; "full" = a filler file takes the rest
  kRlimit,  // RLIMIT_FSIZE of the process lowered to 0: every file extension fails (EFBIG)
};
std::string DiskMethodName(DiskMethod m);

struct FaultClusterOptions {
  std::string dir;       // the run directory (must exist)
  std::string kvserver;  // the binary
  int nodes = 3;
  // Raft timing, passed to every node explicitly (kvserver's defaults are
  // tuned for production: 50-tick elections); short here so a 20 s run
  // sees many elections.
  int tick_ms = 10;
  int election_ticks = 10;
  int heartbeat_ticks = 1;
  int lease_drift_ticks = 2;
  std::vector<std::string> extra_flags;  // passed to every node
  // Clock rate per founding node id (1.0 = real time), applied with
  // libfaketime (LD_PRELOAD, FAKETIME="+0 x<rate>") at every start.
  std::map<uint64_t, double> clock_rates;
  std::string faketime_lib;  // path of libfaketime.so.1
  // Every node under libfaketime with its wall clock read from a file
  // (FAKETIME_TIMESTAMP_FILE, re-read every second; CLOCK_MONOTONIC left
  // alone), so SetClockOffset can step one node's wall clock as NTP would.
  // Not combined with clock_rates.
  bool steppable_clocks = false;
  DiskMethod disk = DiskMethod::kNone;
  int disk_mb = 64;  // tmpfs size per node
  // Where the cluster reports what it does (the nemesis log).
  std::function<void(const std::string&)> log;
};

class FaultCluster {
 public:
  // Allocates ports, proxies and data dirs (mounting the tmpfs if asked);
  // starts nothing.
  static absl::StatusOr<std::unique_ptr<FaultCluster>> Create(const FaultClusterOptions& options);
  // Kills every node, stops the proxies and unmounts; with `keep_data`
  // tmpfs contents are first copied next to the mount point.
  ~FaultCluster();
  FaultCluster(const FaultCluster&) = delete;
  FaultCluster& operator=(const FaultCluster&) = delete;
  void set_keep_data(bool keep) { keep_data_ = keep; }

  // Starts the founding members.
  absl::Status Start();

  // --- processes ---
  absl::Status Kill(uint64_t id);  // SIGKILL, reaped before returning
  absl::Status Restart(uint64_t id);
  // SIGCONT + SIGTERM; the exit status (exit code, or 128 + signal), or an
  // error if the node did not exit within `timeout` (it is then killed).
  absl::StatusOr<int> Terminate(uint64_t id, absl::Duration timeout);
  absl::Status Pause(uint64_t id);   // SIGSTOP
  absl::Status Resume(uint64_t id);  // SIGCONT
  bool Running(uint64_t id) const;
  // CPU time (user + system) the node's process used so far; nullopt if
  // it is not running.
  std::optional<absl::Duration> CpuTime(uint64_t id) const;
  bool Paused(uint64_t id) const;
  // A node that may exit by itself (e.g. the full-disk node) with an exit
  // code; dying of a signal is still a crash.
  void AllowExit(uint64_t id, bool allow);
  // Exits nobody asked for, readable ("node 2 exited by itself: signal 6").
  std::vector<std::string> UnexpectedExits() const;
  // Exits that were allowed (AllowExit), for the report.
  std::vector<std::string> AllowedExits() const;

  // --- membership (the test's view: founders + joined - removed) ---
  std::vector<uint64_t> Members() const;
  std::vector<uint64_t> RunningMembers() const;  // running and not paused
  std::vector<uint64_t> AllIds() const;
  // A new node (next id): ports, proxy, data dir; not started, not a
  // member. With `clock_rate`, it runs with that clock rate (libfaketime).
  absl::StatusOr<uint64_t> PrepareJoiner(std::optional<double> clock_rate = std::nullopt);
  // Starts a prepared node with --join listing the current members, and
  // counts it as a member.
  absl::Status StartJoiner(uint64_t id);
  // No longer a member (its process is left to the caller).
  void MarkRemoved(uint64_t id);
  bool Removed(uint64_t id) const;
  std::string PeerAddress(uint64_t id) const;    // the proxy's address, as advertised
  std::string ClientAddress(uint64_t id) const;

  // --- the client API ---
  std::shared_ptr<Endpoint> endpoint(uint64_t id) const;
  // Endpoints of the running members: where clients send requests.
  std::vector<std::shared_ptr<Endpoint>> ClientEndpoints() const;
  absl::StatusOr<quorumkv::v1::StatusResponse> Status(uint64_t id, absl::Duration timeout) const;
  // The node that says it is leader with the highest term, among running
  // members; nullopt if none answers so.
  std::optional<uint64_t> FindLeader() const;
  // A leader every running, unpaused member agrees on, within `timeout`.
  std::optional<uint64_t> WaitForLeader(absl::Duration timeout) const;
  // Every member running, one leader, and every member's commit and applied
  // indexes equal; otherwise an error describing each node's status.
  absl::Status WaitConverged(absl::Duration timeout) const;

  // --- faults ---
  LinkTable& links() { return links_; }
  std::optional<double> ClockRate(uint64_t id) const;
  // Steps the node's wall clock to real time + `offset` (steppable_clocks).
  absl::Status SetClockOffset(uint64_t id, absl::Duration offset);
  DiskMethod disk_method() const { return options_.disk; }
  // If the node has stopped serving after a fatal error (kvserver keeps
  // running and answers every request with "this node failed: ..."), that
  // message. Asked with a serializable read, which changes nothing and is
  // not part of the history.
  std::optional<std::string> FailedReason(uint64_t id) const;
  absl::Status FillDisk(uint64_t id);
  absl::Status FreeDisk(uint64_t id);
  bool DiskFull(uint64_t id) const;

  // --- logs ---
  uint64_t LogSize(uint64_t id) const;
  // The first line containing `needle` at or after byte `from`.
  std::optional<std::string> FindInLog(uint64_t id, uint64_t from, const std::string& needle) const;
  // Every line of the node's log containing `needle`.
  std::vector<std::string> GrepLog(uint64_t id, const std::string& needle) const;
  void AnnotateLog(uint64_t id, const std::string& text) const;
  std::string LogTail(uint64_t id, int lines) const;

  // SIGTERM to every running node; each one that does not exit with status
  // 0 within `timeout` is described in the result.
  std::vector<std::string> ShutdownAll(absl::Duration timeout);
  // Proxy statistics summed over the nodes.
  ProxyStats TotalProxyStats() const;

 private:
  struct Node {
    uint64_t id = 0;
    int client_port = 0;
    int peer_port = 0;  // the node's own listener; peers reach it through the proxy
    std::unique_ptr<PeerProxy> proxy;
    std::shared_ptr<Endpoint> endpoint;
    std::string mount;  // tmpfs mount point, or empty
    std::string data_dir;
    std::string log_file;
    std::optional<double> clock_rate;
    std::string clock_file;  // steppable_clocks: the node's FAKETIME_TIMESTAMP_FILE
    bool founder = false;
    bool member = false;
    bool removed = false;
    pid_t pid = -1;
    bool paused = false;
    bool exit_expected = false;  // the test signalled it
    bool exit_allowed = false;   // AllowExit
    int last_exit = -1;
    bool disk_full = false;
    int starts = 0;
  };

  explicit FaultCluster(const FaultClusterOptions& options);
  absl::Status AddNode(uint64_t id, bool founder, std::optional<double> clock_rate = std::nullopt);
  absl::Status SpawnLocked(Node& n);
  void ReapLocked(Node& n, int status);
  void MonitorLoop();
  uint64_t ResolveSource(int client_port, int proxy_port) const;
  std::string MemberSpecLocked(uint64_t id) const;
  void Log(const std::string& text) const;
  Node& NodeLocked(uint64_t id);
  const Node& NodeLocked(uint64_t id) const;

  const FaultClusterOptions options_;
  LinkTable links_;
  mutable std::mutex mu_;
  std::map<uint64_t, Node> nodes_;
  std::string initial_cluster_;
  std::vector<std::string> unexpected_exits_;
  std::vector<std::string> allowed_exits_;
  std::atomic<bool> stop_{false};
  std::thread monitor_;
  bool keep_data_ = false;
};

// A TCP port on 127.0.0.1 that was free a moment ago.
int FreeLoopbackPort();

}  // namespace quorumkv::fault
