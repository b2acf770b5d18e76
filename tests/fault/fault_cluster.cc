#include "tests/fault/fault_cluster.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <deque>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <random>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "grpcpp/grpcpp.h"
#include "tests/fault/socket_owner.h"

extern char** environ;

namespace quorumkv::fault {

namespace fs = std::filesystem;
namespace v1 = quorumkv::v1;

namespace {

bool CanBind(int port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  const bool ok = bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  close(fd);
  return ok;
}

// The lowest port of the kernel's ephemeral range (outgoing connections,
// bind to port 0).
int EphemeralRangeStart() {
  std::ifstream in("/proc/sys/net/ipv4/ip_local_port_range");
  int lo = 32768;
  in >> lo;
  return lo;
}

}  // namespace

// Below the ephemeral range: a node's port must stay free between the
// check and the node's bind, and across restarts, while hundreds of
// connections (nodes, proxies, clients) take ephemeral ports. A port from
// bind(0) may be handed to an outgoing connection meanwhile and the node
// then fails with "cannot listen".
int FreeLoopbackPort() {
  static std::mutex mu;
  static std::set<int> handed_out;
  static std::mt19937 rng(static_cast<unsigned>(getpid()) ^ static_cast<unsigned>(time(nullptr)));
  std::lock_guard<std::mutex> lock(mu);
  const int top = std::min(EphemeralRangeStart(), 65536) - 1;
  if (top > 12000) {
    std::uniform_int_distribution<int> pick(10000, top);
    for (int attempt = 0; attempt < 200; ++attempt) {
      const int port = pick(rng);
      if (!handed_out.contains(port) && CanBind(port)) {
        handed_out.insert(port);
        return port;
      }
    }
  }
  // No room below the ephemeral range: let the kernel choose.
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof addr;
  int port = 0;
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0 &&
      getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
    port = ntohs(addr.sin_port);
  }
  close(fd);
  return port;
}

std::string DiskMethodName(DiskMethod m) {
  switch (m) {
    case DiskMethod::kNone:
      return "none";
    case DiskMethod::kTmpfs:
      return "tmpfs";
    case DiskMethod::kRlimit:
      return "rlimit";
  }
  return "?";
}

namespace {

std::string Loopback(int port) { return "127.0.0.1:" + std::to_string(port); }

std::string DescribeStatus(int status) {
  if (WIFEXITED(status)) return absl::StrCat("exit code ", WEXITSTATUS(status));
  if (WIFSIGNALED(status)) {
    return absl::StrCat("signal ", WTERMSIG(status), " (", strsignal(WTERMSIG(status)), ")");
  }
  return absl::StrCat("wait status ", status);
}

int ExitCodeOf(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return -1;
}

grpc::ClientContext* WithDeadline(grpc::ClientContext& ctx, absl::Duration d) {
  ctx.set_deadline(absl::ToChronoTime(absl::Now() + d));
  return &ctx;
}

}  // namespace

FaultCluster::FaultCluster(const FaultClusterOptions& options) : options_(options) {}

absl::StatusOr<std::unique_ptr<FaultCluster>> FaultCluster::Create(const FaultClusterOptions& options) {
  if (options.nodes < 1) return absl::InvalidArgumentError("a cluster needs at least one node");
  if (!fs::is_directory(options.dir)) return absl::InvalidArgumentError("run directory " + options.dir + " missing");
  if (!fs::exists(options.kvserver)) {
    return absl::InvalidArgumentError("kvserver binary " + options.kvserver + " not found (--kvserver)");
  }
  if (options.steppable_clocks && !options.clock_rates.empty()) {
    return absl::InvalidArgumentError("clock-rate skew and clock steps cannot be combined");
  }
  if ((!options.clock_rates.empty() || options.steppable_clocks) && !fs::exists(options.faketime_lib)) {
    return absl::FailedPreconditionError("clock skew needs libfaketime (apt-get install faketime); not found at " +
                                         options.faketime_lib);
  }
  std::unique_ptr<FaultCluster> c(new FaultCluster(options));
  std::vector<std::string> parts;
  for (int i = 1; i <= options.nodes; ++i) {
    if (absl::Status s = c->AddNode(static_cast<uint64_t>(i), true); !s.ok()) return s;
    parts.push_back(c->MemberSpecLocked(static_cast<uint64_t>(i)));
  }
  c->initial_cluster_ = absl::StrJoin(parts, ",");
  c->monitor_ = std::thread([raw = c.get()] { raw->MonitorLoop(); });
  return c;
}

absl::Status FaultCluster::AddNode(uint64_t id, bool founder, std::optional<double> clock_rate) {
  Node n;
  n.id = id;
  n.founder = founder;
  n.client_port = FreeLoopbackPort();
  n.peer_port = FreeLoopbackPort();
  if (n.client_port == 0 || n.peer_port == 0) return absl::InternalError("no free loopback port");
  n.log_file = absl::StrCat(options_.dir, "/node", id, ".log");
  if (options_.disk == DiskMethod::kTmpfs) {
    n.mount = absl::StrCat(options_.dir, "/node", id, "-disk");
    std::error_code ec;
    fs::create_directories(n.mount, ec);
    const std::string opts = absl::StrCat("size=", options_.disk_mb, "m,mode=0755");
    if (mount("tmpfs", n.mount.c_str(), "tmpfs", 0, opts.c_str()) != 0) {
      const int err = errno;
      fs::remove(n.mount, ec);
      n.mount.clear();
      return absl::PermissionDeniedError(absl::StrCat("cannot mount a tmpfs on ", options_.dir, "/node", id,
                                                      "-disk: ", std::strerror(err),
                                                      " (needs root; use --disk-full-method=rlimit)"));
    }
    n.data_dir = n.mount + "/data";
  } else {
    n.data_dir = absl::StrCat(options_.dir, "/node", id);
  }
  auto it = options_.clock_rates.find(id);
  if (it != options_.clock_rates.end() && it->second != 1.0) n.clock_rate = it->second;
  if (clock_rate && *clock_rate != 1.0) {
    if (options_.steppable_clocks) return absl::InvalidArgumentError("clock-rate skew and clock steps cannot be combined");
    if (!fs::exists(options_.faketime_lib)) {
      return absl::FailedPreconditionError("clock skew needs libfaketime; not found at " + options_.faketime_lib);
    }
    n.clock_rate = clock_rate;
  }
  if (options_.steppable_clocks) {
    n.clock_file = absl::StrCat(options_.dir, "/node", id, ".faketimerc");
    std::ofstream(n.clock_file) << "+0\n";
  }
  auto proxy = PeerProxy::Start(id, n.peer_port, &links_,
                                [this](int client_port, int proxy_port) { return ResolveSource(client_port, proxy_port); });
  if (!proxy.ok()) return proxy.status();
  n.proxy = std::move(*proxy);
  auto ep = std::make_shared<Endpoint>();
  ep->id = id;
  ep->address = Loopback(n.client_port);
  grpc::ChannelArguments args;
  // Restarted nodes come back within a second or two: reconnect quickly.
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 500);
  // One channel per node, not shared with other channels of the process.
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  ep->channel = grpc::CreateCustomChannel(ep->address, grpc::InsecureChannelCredentials(), args);
  ep->kv = v1::KV::NewStub(ep->channel);
  ep->cluster = v1::Cluster::NewStub(ep->channel);
  n.endpoint = std::move(ep);
  std::lock_guard<std::mutex> lock(mu_);
  n.member = founder;
  nodes_[id] = std::move(n);
  return absl::OkStatus();
}

FaultCluster::~FaultCluster() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto& [id, n] : nodes_) {
      if (n.pid > 0) {
        n.exit_expected = true;
        kill(n.pid, SIGKILL);
        int status = 0;
        waitpid(n.pid, &status, 0);
        n.pid = -1;
      }
    }
  }
  stop_ = true;
  if (monitor_.joinable()) monitor_.join();
  std::map<uint64_t, Node> nodes;
  {
    std::lock_guard<std::mutex> lock(mu_);
    nodes.swap(nodes_);
  }
  for (auto& [id, n] : nodes) {
    n.proxy.reset();
    if (!n.mount.empty()) {
      std::error_code ec;
      if (keep_data_) {
        const std::string copy = absl::StrCat(options_.dir, "/node", id, "-data");
        fs::copy(n.data_dir, copy, fs::copy_options::recursive, ec);
      }
      if (umount2(n.mount.c_str(), MNT_DETACH) != 0) {
        std::fprintf(stderr, "fault_test: cannot unmount %s: %s\n", n.mount.c_str(), std::strerror(errno));
      } else {
        fs::remove(n.mount, ec);
      }
    }
  }
}

std::string FaultCluster::MemberSpecLocked(uint64_t id) const {
  const Node& n = nodes_.at(id);
  return absl::StrCat(id, "=", Loopback(n.proxy->port()), "@", Loopback(n.client_port));
}

void FaultCluster::Log(const std::string& text) const {
  if (options_.log) options_.log(text);
}

FaultCluster::Node& FaultCluster::NodeLocked(uint64_t id) { return nodes_.at(id); }
const FaultCluster::Node& FaultCluster::NodeLocked(uint64_t id) const { return nodes_.at(id); }

absl::Status FaultCluster::Start() {
  std::lock_guard<std::mutex> lock(mu_);
  for (auto& [id, n] : nodes_) {
    if (!n.founder) continue;
    if (absl::Status s = SpawnLocked(n); !s.ok()) return s;
  }
  return absl::OkStatus();
}

absl::Status FaultCluster::SpawnLocked(Node& n) {
  if (n.pid > 0) return absl::OkStatus();
  std::vector<std::string> args = {options_.kvserver,
                                   absl::StrCat("--id=", n.id),
                                   "--data-dir=" + n.data_dir,
                                   "--client-addr=" + Loopback(n.client_port),
                                   "--peer-addr=" + Loopback(n.peer_port),
                                   "--advertise-peer-addr=" + Loopback(n.proxy->port()),
                                   absl::StrCat("--tick-ms=", options_.tick_ms),
                                   absl::StrCat("--election-ticks=", options_.election_ticks),
                                   absl::StrCat("--heartbeat-ticks=", options_.heartbeat_ticks),
                                   absl::StrCat("--lease-drift-ticks=", options_.lease_drift_ticks)};
  if (n.founder) {
    args.push_back("--initial-cluster=" + initial_cluster_);
  } else {
    std::vector<std::string> others;
    for (const auto& [id, o] : nodes_) {
      if (id != n.id && o.member) others.push_back(MemberSpecLocked(id));
    }
    args.push_back("--join=" + absl::StrJoin(others, ","));
  }
  for (const std::string& f : options_.extra_flags) args.push_back(f);

  std::vector<std::string> env;
  std::string preload;
  for (char** e = environ; *e != nullptr; ++e) {
    const std::string var = *e;
    if (var.rfind("LD_PRELOAD=", 0) == 0) {
      preload = var.substr(11);
    } else if (var.rfind("FAKETIME", 0) != 0) {
      env.push_back(var);
    }
  }
  if (n.clock_rate) {
    preload = preload.empty() ? options_.faketime_lib : options_.faketime_lib + ":" + preload;
    env.push_back(absl::StrFormat("FAKETIME=+0 x%.4f", *n.clock_rate));
  } else if (!n.clock_file.empty()) {
    preload = preload.empty() ? options_.faketime_lib : options_.faketime_lib + ":" + preload;
    env.push_back("FAKETIME_TIMESTAMP_FILE=" + n.clock_file);
    env.push_back("FAKETIME_CACHE_DURATION=1");
    // Only the wall clock steps, as with NTP; the monotonic clock runs on.
    env.push_back("FAKETIME_DONT_FAKE_MONOTONIC=1");
  }
  if (!preload.empty()) env.push_back("LD_PRELOAD=" + preload);

  {
    std::ofstream log(n.log_file, std::ios::app);
    log << "=== fault_test: starting node " << n.id << " (start #" << n.starts + 1 << "):";
    if (n.clock_rate) log << " FAKETIME=\"+0 x" << *n.clock_rate << "\"";
    if (!n.clock_file.empty()) log << " FAKETIME_TIMESTAMP_FILE=" << n.clock_file;
    for (const std::string& a : args) log << " " << a;
    log << "\n";
  }
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  std::vector<char*> envp;
  for (std::string& e : env) envp.push_back(e.data());
  envp.push_back(nullptr);
  const pid_t parent = getpid();
  const bool ignore_xfsz = options_.disk == DiskMethod::kRlimit;

  const pid_t pid = fork();
  if (pid < 0) return absl::InternalError(absl::StrCat("fork: ", std::strerror(errno)));
  if (pid == 0) {
    // The node dies with the test driver (a ctest time-out must not leave
    // servers behind).
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(127);
    const int fd = open(n.log_file.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd >= 0) {
      dup2(fd, 1);
      dup2(fd, 2);
      if (fd > 2) close(fd);
    }
    // Nothing of the driver's (proxy sockets, the history file) leaks in.
    syscall(SYS_close_range, 3U, ~0U, 0U);
    // With the RLIMIT_FSIZE disk, a write past the limit must fail with
    // EFBIG rather than kill the process with SIGXFSZ.
    if (ignore_xfsz) signal(SIGXFSZ, SIG_IGN);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    execve(argv[0], argv.data(), envp.data());
    std::perror("execve kvserver");
    _exit(127);
  }
  n.pid = pid;
  n.paused = false;
  n.exit_expected = false;
  ++n.starts;
  return absl::OkStatus();
}

void FaultCluster::ReapLocked(Node& n, int status) {
  n.last_exit = ExitCodeOf(status);
  if (n.clock_rate || !n.clock_file.empty()) {
    // libfaketime's per-process shared memory, left behind by a kill -9.
    std::error_code ec;
    fs::remove(absl::StrCat("/dev/shm/faketime_shm_", n.pid), ec);
    fs::remove(absl::StrCat("/dev/shm/sem.faketime_sem_", n.pid), ec);
  }
  if (!n.exit_expected) {
    const std::string what = absl::StrCat("node ", n.id, " (pid ", n.pid, ") exited by itself: ", DescribeStatus(status));
    if (n.exit_allowed && WIFEXITED(status)) {
      allowed_exits_.push_back(what);
      Log(what + " (allowed: it may stop by design)");
    } else {
      unexpected_exits_.push_back(what);
      Log("FAILURE: " + what);
    }
  }
  n.pid = -1;
  n.paused = false;
}

void FaultCluster::MonitorLoop() {
  while (!stop_.load()) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      for (auto& [id, n] : nodes_) {
        if (n.pid <= 0) continue;
        int status = 0;
        if (waitpid(n.pid, &status, WNOHANG) == n.pid) ReapLocked(n, status);
      }
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

uint64_t FaultCluster::ResolveSource(int client_port, int proxy_port) const {
  for (int attempt = 0; attempt < 10; ++attempt) {
    std::vector<std::pair<uint64_t, pid_t>> pids;
    {
      std::lock_guard<std::mutex> lock(mu_);
      for (const auto& [id, n] : nodes_) {
        if (n.pid > 0) pids.emplace_back(id, n.pid);
      }
    }
    if (std::optional<uint64_t> inode = FindTcpSocketInode(client_port, proxy_port)) {
      for (const auto& [id, pid] : pids) {
        if (ProcessHasSocket(pid, *inode)) return id;
      }
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return kUnknownNode;
}

absl::Status FaultCluster::Kill(uint64_t id) {
  std::lock_guard<std::mutex> lock(mu_);
  if (!nodes_.contains(id)) return absl::NotFoundError(absl::StrCat("no node ", id));
  Node& n = NodeLocked(id);
  if (n.pid <= 0) return absl::OkStatus();
  n.exit_expected = true;
  kill(n.pid, SIGKILL);
  int status = 0;
  if (waitpid(n.pid, &status, 0) == n.pid) ReapLocked(n, status);
  return absl::OkStatus();
}

absl::Status FaultCluster::Restart(uint64_t id) {
  std::lock_guard<std::mutex> lock(mu_);
  if (!nodes_.contains(id)) return absl::NotFoundError(absl::StrCat("no node ", id));
  return SpawnLocked(NodeLocked(id));
}

absl::StatusOr<int> FaultCluster::Terminate(uint64_t id, absl::Duration timeout) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!nodes_.contains(id)) return absl::NotFoundError(absl::StrCat("no node ", id));
    Node& n = NodeLocked(id);
    if (n.pid <= 0) return n.last_exit;
    n.exit_expected = true;
    kill(n.pid, SIGCONT);
    kill(n.pid, SIGTERM);
  }
  const absl::Time end = absl::Now() + timeout;
  pid_t hung = -1;
  int starts = 0;
  while (hung < 0) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      Node& n = NodeLocked(id);
      if (n.pid <= 0) return n.last_exit;
      int status = 0;
      if (waitpid(n.pid, &status, WNOHANG) == n.pid) {
        ReapLocked(n, status);
        return n.last_exit;
      }
      if (absl::Now() >= end) {
        hung = n.pid;
        starts = n.starts;
        break;
      }
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  // Where it hangs, for whoever reads the report (gdb, if installed).
  const std::string dump = absl::StrCat(options_.dir, "/node", id, "-hang-", starts, ".txt");
  const std::string cmd = absl::StrCat("command -v gdb >/dev/null && gdb -p ", hung,
                                       " -batch -ex 'thread apply all bt' >", dump, " 2>&1");
  const int dumped = std::system(cmd.c_str());
  {
    std::lock_guard<std::mutex> lock(mu_);
    Node& n = NodeLocked(id);
    if (n.pid == hung) {
      kill(n.pid, SIGKILL);
      int status = 0;
      waitpid(n.pid, &status, 0);
      ReapLocked(n, status);
    }
  }
  return absl::DeadlineExceededError(absl::StrCat("node ", id, " did not exit within ", absl::FormatDuration(timeout),
                                                  " of SIGTERM", dumped == 0 ? " (its threads: " + dump + ")" : ""));
}

absl::Status FaultCluster::Pause(uint64_t id) {
  std::lock_guard<std::mutex> lock(mu_);
  if (!nodes_.contains(id)) return absl::NotFoundError(absl::StrCat("no node ", id));
  Node& n = NodeLocked(id);
  if (n.pid <= 0) return absl::FailedPreconditionError(absl::StrCat("node ", id, " is not running"));
  kill(n.pid, SIGSTOP);
  n.paused = true;
  return absl::OkStatus();
}

absl::Status FaultCluster::Resume(uint64_t id) {
  std::lock_guard<std::mutex> lock(mu_);
  if (!nodes_.contains(id)) return absl::NotFoundError(absl::StrCat("no node ", id));
  Node& n = NodeLocked(id);
  if (n.pid > 0) kill(n.pid, SIGCONT);
  n.paused = false;
  return absl::OkStatus();
}

bool FaultCluster::Running(uint64_t id) const {
  std::lock_guard<std::mutex> lock(mu_);
  return nodes_.contains(id) && NodeLocked(id).pid > 0;
}

std::optional<absl::Duration> FaultCluster::CpuTime(uint64_t id) const {
  pid_t pid;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!nodes_.contains(id) || NodeLocked(id).pid <= 0) return std::nullopt;
    pid = NodeLocked(id).pid;
  }
  std::ifstream in(absl::StrCat("/proc/", pid, "/stat"));
  std::string stat;
  std::getline(in, stat);
  // Fields after the command name (which may hold spaces) in parentheses;
  // utime and stime are fields 14 and 15.
  const size_t close = stat.rfind(')');
  if (close == std::string::npos) return std::nullopt;
  std::istringstream rest(stat.substr(close + 2));
  std::string field;
  uint64_t utime = 0, stime = 0;
  for (int i = 3; i <= 15 && rest >> field; ++i) {
    if (i == 14) utime = std::strtoull(field.c_str(), nullptr, 10);
    if (i == 15) stime = std::strtoull(field.c_str(), nullptr, 10);
  }
  const long ticks = sysconf(_SC_CLK_TCK);
  return absl::Seconds(static_cast<double>(utime + stime) / static_cast<double>(ticks > 0 ? ticks : 100));
}

bool FaultCluster::Paused(uint64_t id) const {
  std::lock_guard<std::mutex> lock(mu_);
  return nodes_.contains(id) && NodeLocked(id).paused;
}

void FaultCluster::AllowExit(uint64_t id, bool allow) {
  std::lock_guard<std::mutex> lock(mu_);
  if (nodes_.contains(id)) NodeLocked(id).exit_allowed = allow;
}

std::vector<std::string> FaultCluster::UnexpectedExits() const {
  std::lock_guard<std::mutex> lock(mu_);
  return unexpected_exits_;
}

std::vector<std::string> FaultCluster::AllowedExits() const {
  std::lock_guard<std::mutex> lock(mu_);
  return allowed_exits_;
}

std::vector<uint64_t> FaultCluster::Members() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<uint64_t> out;
  for (const auto& [id, n] : nodes_) {
    if (n.member) out.push_back(id);
  }
  return out;
}

std::vector<uint64_t> FaultCluster::RunningMembers() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<uint64_t> out;
  for (const auto& [id, n] : nodes_) {
    if (n.member && n.pid > 0 && !n.paused) out.push_back(id);
  }
  return out;
}

std::vector<uint64_t> FaultCluster::AllIds() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<uint64_t> out;
  for (const auto& [id, n] : nodes_) out.push_back(id);
  return out;
}

absl::StatusOr<uint64_t> FaultCluster::PrepareJoiner(std::optional<double> clock_rate) {
  uint64_t id;
  {
    std::lock_guard<std::mutex> lock(mu_);
    id = nodes_.rbegin()->first + 1;
  }
  if (absl::Status s = AddNode(id, false, clock_rate); !s.ok()) return s;
  return id;
}

absl::Status FaultCluster::StartJoiner(uint64_t id) {
  std::lock_guard<std::mutex> lock(mu_);
  if (!nodes_.contains(id)) return absl::NotFoundError(absl::StrCat("no node ", id));
  Node& n = NodeLocked(id);
  if (absl::Status s = SpawnLocked(n); !s.ok()) return s;
  n.member = true;
  return absl::OkStatus();
}

void FaultCluster::MarkRemoved(uint64_t id) {
  std::lock_guard<std::mutex> lock(mu_);
  if (!nodes_.contains(id)) return;
  NodeLocked(id).member = false;
  NodeLocked(id).removed = true;
}

bool FaultCluster::Removed(uint64_t id) const {
  std::lock_guard<std::mutex> lock(mu_);
  return nodes_.contains(id) && NodeLocked(id).removed;
}

std::string FaultCluster::PeerAddress(uint64_t id) const {
  std::lock_guard<std::mutex> lock(mu_);
  return Loopback(NodeLocked(id).proxy->port());
}

std::string FaultCluster::ClientAddress(uint64_t id) const {
  std::lock_guard<std::mutex> lock(mu_);
  return Loopback(NodeLocked(id).client_port);
}

std::shared_ptr<Endpoint> FaultCluster::endpoint(uint64_t id) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = nodes_.find(id);
  return it == nodes_.end() ? nullptr : it->second.endpoint;
}

std::vector<std::shared_ptr<Endpoint>> FaultCluster::ClientEndpoints() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<std::shared_ptr<Endpoint>> out;
  for (const auto& [id, n] : nodes_) {
    if (n.member && n.pid > 0) out.push_back(n.endpoint);
  }
  return out;
}

absl::StatusOr<v1::StatusResponse> FaultCluster::Status(uint64_t id, absl::Duration timeout) const {
  std::shared_ptr<Endpoint> ep = endpoint(id);
  if (ep == nullptr) return absl::NotFoundError(absl::StrCat("no node ", id));
  grpc::ClientContext ctx;
  // Wait for the connection within the deadline rather than failing at
  // once while the channel backs off after the node was down.
  ctx.set_wait_for_ready(true);
  v1::StatusResponse resp;
  grpc::Status s = ep->cluster->Status(WithDeadline(ctx, timeout), v1::StatusRequest(), &resp);
  if (!s.ok()) {
    return absl::Status(static_cast<absl::StatusCode>(s.error_code()),
                        absl::StrCat("Status of node ", id, ": ", s.error_message()));
  }
  return resp;
}

std::optional<uint64_t> FaultCluster::FindLeader() const {
  std::optional<uint64_t> best;
  uint64_t best_term = 0;
  for (uint64_t id : RunningMembers()) {
    auto s = Status(id, absl::Milliseconds(500));
    if (s.ok() && s->role() == "leader" && s->term() >= best_term) {
      best = id;
      best_term = s->term();
    }
  }
  return best;
}

std::optional<uint64_t> FaultCluster::WaitForLeader(absl::Duration timeout) const {
  const absl::Time end = absl::Now() + timeout;
  do {
    const std::vector<uint64_t> ids = RunningMembers();
    std::map<uint64_t, int> votes;
    std::optional<uint64_t> claimed;
    for (uint64_t id : ids) {
      auto s = Status(id, absl::Milliseconds(500));
      if (!s.ok()) continue;
      if (s->leader_id() != 0) ++votes[s->leader_id()];
      if (s->role() == "leader") claimed = id;
    }
    for (const auto& [leader, count] : votes) {
      if (count == static_cast<int>(ids.size()) && claimed == leader) return leader;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  } while (absl::Now() < end);
  return std::nullopt;
}

absl::Status FaultCluster::WaitConverged(absl::Duration timeout) const {
  const absl::Time end = absl::Now() + timeout;
  std::string detail;
  do {
    detail.clear();
    bool converged = true;
    std::optional<uint64_t> leader, commit, applied;
    for (uint64_t id : Members()) {
      if (!Running(id)) {
        converged = false;
        absl::StrAppend(&detail, " node ", id, ": not running;");
        continue;
      }
      auto s = Status(id, absl::Milliseconds(500));
      if (!s.ok()) {
        converged = false;
        absl::StrAppend(&detail, " node ", id, ": ", s.status().message(), ";");
        continue;
      }
      absl::StrAppend(&detail, " node ", id, ": ", s->role(), " term ", s->term(), " leader ", s->leader_id(),
                      " commit ", s->commit_index(), " applied ", s->applied_index(), ";");
      if (!leader) leader = s->leader_id();
      if (!commit) commit = s->commit_index();
      if (!applied) applied = s->applied_index();
      if (s->leader_id() == 0 || s->leader_id() != *leader || s->commit_index() != *commit ||
          s->applied_index() != *applied || s->applied_index() != s->commit_index()) {
        converged = false;
      }
      // Nothing proposed but not yet committed may remain on the leader:
      // it could still change the state after the comparison.
      if (s->role() == "leader" && s->last_index() != s->commit_index()) converged = false;
    }
    if (converged) return absl::OkStatus();
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  } while (absl::Now() < end);
  return absl::DeadlineExceededError(
      absl::StrCat("the cluster did not converge within ", absl::FormatDuration(timeout), ":", detail));
}

std::optional<double> FaultCluster::ClockRate(uint64_t id) const {
  std::lock_guard<std::mutex> lock(mu_);
  return NodeLocked(id).clock_rate;
}

std::optional<std::string> FaultCluster::FailedReason(uint64_t id) const {
  std::shared_ptr<Endpoint> ep = endpoint(id);
  if (ep == nullptr) return std::nullopt;
  grpc::ClientContext ctx;
  ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Milliseconds(300)));
  v1::GetRequest req;
  req.set_key("fault-test-health");
  req.set_consistency(v1::SERIALIZABLE);
  v1::GetResponse resp;
  const grpc::Status s = ep->kv->Get(&ctx, req, &resp);
  if (!s.ok() && s.error_message().find("this node failed") != std::string::npos) return s.error_message();
  return std::nullopt;
}

absl::Status FaultCluster::SetClockOffset(uint64_t id, absl::Duration offset) {
  std::string file;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!nodes_.contains(id)) return absl::NotFoundError(absl::StrCat("no node ", id));
    file = NodeLocked(id).clock_file;
  }
  if (file.empty()) return absl::FailedPreconditionError("the cluster was created without steppable clocks");
  const int64_t ms = absl::ToInt64Milliseconds(offset);
  // Written whole and renamed: libfaketime must never read half a line.
  const std::string tmp = file + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << (ms < 0 ? "-" : "+") << absl::StrFormat("%.3f", std::abs(static_cast<double>(ms)) / 1000.0) << "\n";
    if (!out) return absl::InternalError("cannot write " + tmp);
  }
  std::error_code ec;
  fs::rename(tmp, file, ec);
  if (ec) return absl::InternalError("cannot rename " + tmp + ": " + ec.message());
  return absl::OkStatus();
}

absl::Status FaultCluster::FillDisk(uint64_t id) {
  std::lock_guard<std::mutex> lock(mu_);
  if (!nodes_.contains(id)) return absl::NotFoundError(absl::StrCat("no node ", id));
  Node& n = NodeLocked(id);
  switch (options_.disk) {
    case DiskMethod::kNone:
      return absl::FailedPreconditionError("the cluster was created without a small disk (DiskMethod::kNone)");
    case DiskMethod::kTmpfs: {
      const std::string filler = n.mount + "/filler";
      const int fd = open(filler.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
      if (fd < 0) return absl::InternalError(absl::StrCat("open ", filler, ": ", std::strerror(errno)));
      // Big blocks first, then smaller ones: tmpfs allocates whole pages,
      // and any page left over would let the node go on a little longer.
      std::vector<char> block(1 << 20, 'F');
      for (size_t size = block.size(); size >= 1; size /= 4) {
        while (true) {
          const ssize_t w = write(fd, block.data(), size);
          if (w > 0) continue;  // a short write: the next one says why
          if (w < 0 && errno == EINTR) continue;
          if (w < 0 && errno == ENOSPC) break;
          const int err = w < 0 ? errno : EIO;
          close(fd);
          std::error_code ec;
          fs::remove(filler, ec);
          return absl::InternalError(absl::StrCat("filling ", filler, ": ", std::strerror(err)));
        }
      }
      close(fd);
      break;
    }
    case DiskMethod::kRlimit: {
      if (n.pid <= 0) return absl::FailedPreconditionError(absl::StrCat("node ", id, " is not running"));
      rlimit limit{0, RLIM_INFINITY};
      if (prlimit(n.pid, RLIMIT_FSIZE, &limit, nullptr) != 0) {
        return absl::InternalError(absl::StrCat("prlimit(RLIMIT_FSIZE) of node ", id, ": ", std::strerror(errno)));
      }
      break;
    }
  }
  n.disk_full = true;
  return absl::OkStatus();
}

absl::Status FaultCluster::FreeDisk(uint64_t id) {
  std::lock_guard<std::mutex> lock(mu_);
  if (!nodes_.contains(id)) return absl::NotFoundError(absl::StrCat("no node ", id));
  Node& n = NodeLocked(id);
  if (!n.disk_full) return absl::OkStatus();
  if (options_.disk == DiskMethod::kTmpfs) {
    std::error_code ec;
    fs::remove(n.mount + "/filler", ec);
    if (ec) return absl::InternalError("removing the filler: " + ec.message());
  } else if (options_.disk == DiskMethod::kRlimit && n.pid > 0) {
    rlimit limit{RLIM_INFINITY, RLIM_INFINITY};
    if (prlimit(n.pid, RLIMIT_FSIZE, &limit, nullptr) != 0) {
      return absl::InternalError(absl::StrCat("prlimit(RLIMIT_FSIZE) of node ", id, ": ", std::strerror(errno)));
    }
  }
  n.disk_full = false;
  return absl::OkStatus();
}

bool FaultCluster::DiskFull(uint64_t id) const {
  std::lock_guard<std::mutex> lock(mu_);
  return NodeLocked(id).disk_full;
}

uint64_t FaultCluster::LogSize(uint64_t id) const {
  std::error_code ec;
  std::string file;
  {
    std::lock_guard<std::mutex> lock(mu_);
    file = NodeLocked(id).log_file;
  }
  const auto size = fs::file_size(file, ec);
  return ec ? 0 : size;
}

std::optional<std::string> FaultCluster::FindInLog(uint64_t id, uint64_t from, const std::string& needle) const {
  std::string file;
  {
    std::lock_guard<std::mutex> lock(mu_);
    file = NodeLocked(id).log_file;
  }
  std::ifstream in(file);
  in.seekg(static_cast<std::streamoff>(from));
  std::string line;
  while (std::getline(in, line)) {
    if (line.find(needle) != std::string::npos) return line;
  }
  return std::nullopt;
}

std::vector<std::string> FaultCluster::GrepLog(uint64_t id, const std::string& needle) const {
  std::string file;
  {
    std::lock_guard<std::mutex> lock(mu_);
    file = NodeLocked(id).log_file;
  }
  std::ifstream in(file);
  std::vector<std::string> out;
  std::string line;
  while (std::getline(in, line)) {
    if (line.find(needle) != std::string::npos) out.push_back(line);
  }
  return out;
}

void FaultCluster::AnnotateLog(uint64_t id, const std::string& text) const {
  std::string file;
  {
    std::lock_guard<std::mutex> lock(mu_);
    file = NodeLocked(id).log_file;
  }
  std::ofstream out(file, std::ios::app);
  out << "=== fault_test: " << text << "\n";
}

std::string FaultCluster::LogTail(uint64_t id, int lines) const {
  std::string file;
  {
    std::lock_guard<std::mutex> lock(mu_);
    file = NodeLocked(id).log_file;
  }
  std::ifstream in(file);
  std::deque<std::string> tail;
  std::string line;
  while (std::getline(in, line)) {
    tail.push_back(line);
    if (static_cast<int>(tail.size()) > lines) tail.pop_front();
  }
  std::string out = absl::StrCat("--- node ", id, " log tail (", file, ") ---\n");
  for (const std::string& l : tail) absl::StrAppend(&out, l, "\n");
  return out;
}

std::vector<std::string> FaultCluster::ShutdownAll(absl::Duration timeout) {
  // In parallel: each node takes a second or two to shut down.
  std::vector<uint64_t> ids;
  for (uint64_t id : AllIds()) {
    if (Running(id)) ids.push_back(id);
  }
  std::vector<absl::StatusOr<int>> codes(ids.size(), absl::UnknownError("not terminated"));
  std::vector<std::thread> threads;
  for (size_t i = 0; i < ids.size(); ++i) {
    threads.emplace_back([this, &codes, &ids, i, timeout] { codes[i] = Terminate(ids[i], timeout); });
  }
  for (std::thread& t : threads) t.join();
  std::vector<std::string> problems;
  for (size_t i = 0; i < ids.size(); ++i) {
    if (!codes[i].ok()) {
      problems.push_back(std::string(codes[i].status().message()));
    } else if (*codes[i] != 0) {
      problems.push_back(absl::StrCat("node ", ids[i], " exited with status ", *codes[i], " after SIGTERM (expected 0)"));
    }
  }
  return problems;
}

ProxyStats FaultCluster::TotalProxyStats() const {
  std::lock_guard<std::mutex> lock(mu_);
  ProxyStats total;
  for (const auto& [id, n] : nodes_) {
    const ProxyStats s = n.proxy->stats();
    total.accepted += s.accepted;
    total.unknown_source += s.unknown_source;
    total.upstream_refused += s.upstream_refused;
    total.bytes_forwarded += s.bytes_forwarded;
  }
  return total;
}

}  // namespace quorumkv::fault
