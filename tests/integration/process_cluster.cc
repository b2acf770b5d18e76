#include "tests/integration/process_cluster.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <deque>
#include <filesystem>
#include <fstream>
#include <map>
#include <thread>

#include "absl/strings/str_join.h"
#include "leveldb/db.h"
#include "leveldb/iterator.h"
#include "raft/storage/format.h"

namespace quorumkv::testing {

namespace fs = std::filesystem;

std::vector<int> FreePorts(size_t n, const std::set<int>& avoid) {
  // Every socket stays bound until all are picked: ports picked one after
  // another could come back twice (the kernel reuses a port closed a moment
  // ago), and two nodes of one cluster then fight over one port.
  std::vector<int> fds;
  std::vector<int> ports;
  for (size_t attempt = 0; ports.size() < n && attempt < 4 * n + 16; ++attempt) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) break;
    fds.push_back(fd);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = 0;
    socklen_t len = sizeof addr;
    if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
        getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
      continue;
    }
    const int port = ntohs(addr.sin_port);
    if (avoid.count(port) == 0) ports.push_back(port);
  }
  for (int fd : fds) close(fd);
  ports.resize(n, 0);  // 0 (never listened on) if the machine ran out of ports
  return ports;
}

int FreePort() { return FreePorts(1)[0]; }

namespace {
std::string SelfDir() {
  std::error_code ec;
  fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  return ec ? "." : exe.parent_path().string();
}
}  // namespace

ProcessCluster::ProcessCluster(const ClusterOptions& options) : options_(options) {
  const char* tmp = std::getenv("TMPDIR");
  std::string pattern = std::string(tmp != nullptr ? tmp : "/tmp") + "/quorumkv-test-XXXXXX";
  std::vector<char> buf(pattern.begin(), pattern.end());
  buf.push_back('\0');
  dir_ = mkdtemp(buf.data()) != nullptr ? std::string(buf.data()) : "/tmp/quorumkv-test-fallback";
  const char* bin = std::getenv("QUORUMKV_KVSERVER");
  binary_ = bin != nullptr ? bin : SelfDir() + "/kvserver";
  std::vector<std::string> parts;
  const std::vector<int> ports = FreePorts(2 * static_cast<size_t>(std::max(options_.nodes, 0)));
  for (int i = 1; i <= options_.nodes; ++i) {
    ProcessNode n;
    n.id = static_cast<uint64_t>(i);
    n.client_port = ports[2 * static_cast<size_t>(i - 1)];
    n.peer_port = ports[2 * static_cast<size_t>(i - 1) + 1];
    n.data_dir = dir_ + "/node" + std::to_string(i);
    n.log_file = dir_ + "/node" + std::to_string(i) + ".log";
    n.extra_flags = options_.extra_flags;
    parts.push_back(std::to_string(i) + "=" + n.peer_endpoint() + "@" + n.client_endpoint());
    nodes_[n.id] = n;
  }
  initial_cluster_ = absl::StrJoin(parts, ",");
}

ProcessCluster::~ProcessCluster() {
  for (auto& [id, n] : nodes_) {
    if (n.pid > 0) {
      kill(n.pid, SIGCONT);
      kill(n.pid, SIGKILL);
      waitpid(n.pid, nullptr, 0);
      n.pid = -1;
    }
  }
  const char* keep = std::getenv("QUORUMKV_KEEP_TEST_DIRS");
  if (keep != nullptr && std::string(keep) == "1") {
    std::fprintf(stderr, "test cluster kept in %s\n", dir_.c_str());
  } else {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
}

std::string ProcessCluster::InitialCluster() const { return initial_cluster_; }

bool ProcessCluster::Spawn(ProcessNode& n) {
  std::vector<std::string> args = {binary_,
                                   "--id=" + std::to_string(n.id),
                                   "--data-dir=" + n.data_dir,
                                   "--client-addr=" + n.client_endpoint(),
                                   "--peer-addr=" + n.peer_endpoint()};
  if (n.joined) {
    std::vector<std::string> others;
    for (const auto& [id, o] : nodes_) {
      if (id != n.id && !o.joined) others.push_back(std::to_string(id) + "=" + o.peer_endpoint() + "@" + o.client_endpoint());
    }
    for (const auto& [id, o] : nodes_) {
      if (id != n.id && o.joined && o.pid > 0) {
        others.push_back(std::to_string(id) + "=" + o.peer_endpoint() + "@" + o.client_endpoint());
      }
    }
    args.push_back("--join=" + absl::StrJoin(others, ","));
  } else {
    args.push_back("--initial-cluster=" + initial_cluster_);
  }
  for (const std::string& f : n.extra_flags) args.push_back(f);
  pid_t pid = fork();
  if (pid < 0) return false;
  if (pid == 0) {
    int fd = open(n.log_file.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd >= 0) {
      dup2(fd, 1);
      dup2(fd, 2);
      close(fd);
    }
    std::vector<char*> argv;
    for (std::string& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    execv(binary_.c_str(), argv.data());
    std::perror("execv kvserver");
    _exit(127);
  }
  n.pid = pid;
  return true;
}

bool ProcessCluster::Start() {
  for (auto& [id, n] : nodes_) {
    if (!Spawn(n)) return false;
  }
  return true;
}

ProcessNode& ProcessCluster::PrepareNode() {
  uint64_t id = nodes_.rbegin()->first + 1;
  ProcessNode n;
  n.id = id;
  // Not a port of a member that is stopped now and may start again.
  std::set<int> taken;
  for (const auto& [other, m] : nodes_) taken.insert({m.client_port, m.peer_port});
  const std::vector<int> ports = FreePorts(2, taken);
  n.client_port = ports[0];
  n.peer_port = ports[1];
  n.data_dir = dir_ + "/node" + std::to_string(id);
  n.log_file = dir_ + "/node" + std::to_string(id) + ".log";
  n.extra_flags = options_.extra_flags;
  n.joined = true;
  nodes_[id] = n;
  return nodes_[id];
}

bool ProcessCluster::StartNode(uint64_t id) { return Spawn(nodes_.at(id)); }

void ProcessCluster::Kill(uint64_t id) {
  ProcessNode& n = nodes_.at(id);
  if (n.pid <= 0) return;
  kill(n.pid, SIGKILL);
  waitpid(n.pid, nullptr, 0);
  n.pid = -1;
}

int ProcessCluster::TerminateAndStatus(uint64_t id) {
  ProcessNode& n = nodes_.at(id);
  if (n.pid <= 0) return -1;
  kill(n.pid, SIGCONT);
  kill(n.pid, SIGTERM);
  int status = 0;
  for (int i = 0; i < 200; ++i) {  // 10 s at most
    pid_t r = waitpid(n.pid, &status, WNOHANG);
    if (r == n.pid) {
      n.pid = -1;
      return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  Kill(id);
  return -2;
}

void ProcessCluster::Terminate(uint64_t id) { (void)TerminateAndStatus(id); }

void ProcessCluster::Pause(uint64_t id) {
  if (nodes_.at(id).pid > 0) kill(nodes_.at(id).pid, SIGSTOP);
}

void ProcessCluster::Resume(uint64_t id) {
  if (nodes_.at(id).pid > 0) kill(nodes_.at(id).pid, SIGCONT);
}

bool ProcessCluster::Running(uint64_t id) const { return nodes_.at(id).pid > 0; }

bool ProcessCluster::Restart(uint64_t id) {
  if (Running(id)) return true;
  return Spawn(nodes_.at(id));
}

std::optional<int> ProcessCluster::WaitExit(uint64_t id, absl::Duration timeout) {
  ProcessNode& n = nodes_.at(id);
  if (n.pid <= 0) return std::nullopt;
  const absl::Time end = absl::Now() + timeout;
  int status = 0;
  while (absl::Now() < end) {
    pid_t r = waitpid(n.pid, &status, WNOHANG);
    if (r == n.pid) {
      n.pid = -1;
      return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return std::nullopt;
}

std::vector<std::string> ProcessCluster::Endpoints() const {
  std::vector<std::string> out;
  for (const auto& [id, n] : nodes_) {
    if (n.pid > 0) out.push_back(n.client_endpoint());
  }
  return out;
}

std::unique_ptr<client::KvClient> ProcessCluster::Client(absl::Duration total_timeout) const {
  client::ClientOptions o;
  o.endpoints = Endpoints();
  o.request_timeout = absl::Seconds(2);
  o.total_timeout = total_timeout;
  o.max_attempts = 50;
  auto c = client::KvClient::Create(o);
  return c.ok() ? std::move(*c) : nullptr;
}

std::unique_ptr<client::KvClient> ProcessCluster::ClientFor(uint64_t id, absl::Duration total_timeout) const {
  client::ClientOptions o;
  o.endpoints = {nodes_.at(id).client_endpoint()};
  o.request_timeout = absl::Seconds(2);
  o.total_timeout = total_timeout;
  auto c = client::KvClient::Create(o);
  return c.ok() ? std::move(*c) : nullptr;
}

absl::StatusOr<quorumkv::v1::StatusResponse> ProcessCluster::Status(uint64_t id) const {
  auto c = ClientFor(id, absl::Seconds(1));
  if (c == nullptr) return absl::InternalError("no client");
  return c->Status(nodes_.at(id).client_endpoint());
}

std::optional<uint64_t> ProcessCluster::WaitForLeader(absl::Duration timeout) {
  const absl::Time end = absl::Now() + timeout;
  while (absl::Now() < end) {
    std::map<uint64_t, int> votes;
    int running = 0;
    for (const auto& [id, n] : nodes_) {
      if (n.pid <= 0) continue;
      ++running;
      auto s = Status(id);
      if (s.ok() && s->leader_id() != 0) ++votes[s->leader_id()];
    }
    for (const auto& [leader, count] : votes) {
      if (count == running && nodes_.contains(leader) && nodes_.at(leader).pid > 0) return leader;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return std::nullopt;
}

bool ProcessCluster::WaitForApplied(uint64_t index, absl::Duration timeout) {
  const absl::Time end = absl::Now() + timeout;
  while (absl::Now() < end) {
    bool all = true;
    for (const auto& [id, n] : nodes_) {
      if (n.pid <= 0) continue;
      auto s = Status(id);
      if (!s.ok() || s->applied_index() < index) {
        all = false;
        break;
      }
    }
    if (all) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return false;
}

std::string ProcessCluster::LogTail(uint64_t id, int lines) const {
  std::ifstream in(nodes_.at(id).log_file);
  std::deque<std::string> tail;
  std::string line;
  while (std::getline(in, line)) {
    tail.push_back(line);
    if (static_cast<int>(tail.size()) > lines) tail.pop_front();
  }
  std::string out = "--- node " + std::to_string(id) + " log tail ---\n";
  for (const std::string& l : tail) out += l + "\n";
  return out;
}

absl::StatusOr<uint64_t> CorruptLogEntry(const std::string& data_dir, uint64_t index) {
  leveldb::DB* raw = nullptr;
  leveldb::Status s = leveldb::DB::Open(leveldb::Options(), data_dir + "/raft", &raw);
  if (!s.ok()) return absl::InternalError("opening the raft log: " + s.ToString());
  std::unique_ptr<leveldb::DB> db(raw);
  // The record holding `index` is the one with the largest key <= its key.
  std::string key;
  std::string value;
  {
    std::unique_ptr<leveldb::Iterator> it(db->NewIterator(leveldb::ReadOptions()));
    const std::string wanted = raft::storage::EntryKey(raft::Index(index));
    it->Seek(wanted);
    if (!it->Valid() || it->key().ToString() != wanted) {
      if (it->Valid()) {
        it->Prev();
      } else {
        it->SeekToLast();
        while (it->Valid() && !raft::storage::ParseEntryKey(it->key().ToString())) it->Prev();
      }
    }
    if (!it->Valid() || !raft::storage::ParseEntryKey(it->key().ToString())) {
      return absl::NotFoundError("no record holds entry " + std::to_string(index));
    }
    key = it->key().ToString();
    value = it->value().ToString();
  }
  auto run = raft::storage::DecodeEntryRun(value);
  if (!run.ok()) return absl::InternalError("the record before entry " + std::to_string(index) + ": " + run.status().ToString());
  if (run->back().index.value() < index) return absl::NotFoundError("no record holds entry " + std::to_string(index));
  value[value.size() - 1] ^= 0x5a;
  leveldb::WriteOptions w;
  w.sync = true;
  s = db->Put(w, key, value);
  if (!s.ok()) return absl::InternalError("rewriting entry " + std::to_string(index) + ": " + s.ToString());
  return run->front().index.value();
}

}  // namespace quorumkv::testing
