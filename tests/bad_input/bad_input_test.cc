// The bad-input table, one test per row: every kind of malformed input a
// person, a client or another node can give quorumkv, against real kvserver
// processes on 127.0.0.1 (tests/integration/process_cluster.h), through raw
// gRPC stubs (so the server, not the client library, is what answers), the
// C++ client and the kvctl binary. Each row checks the observed result: a
// status code and a message fragment, or an exit code and a stderr
// fragment; and, where the input reached a running cluster, that no node
// crashed and the cluster still serves writes.
//
// A row asserts the correct behaviour even where the server does not (yet)
// show it: such a test fails and is listed in the report.
//
// Suites (one ctest entry each, one process: a suite shares its cluster):
//   ClientApi          KV and Cluster services, 3-node cluster
//   ClientApiOneNode   the last voter, 1-node cluster
//   PeerApi            RaftPeer service (Send, ForwardPropose), 3-node cluster
//   KvctlFlags         kvctl's command line
//   KvserverFlags      kvserver's command line
//   DataDir            what kvserver finds in (or instead of) its data dir
#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "grpcpp/grpcpp.h"
#include "kv.grpc.pb.h"
#include "leveldb/db.h"
#include "leveldb/options.h"
#include "raft.grpc.pb.h"
#include "tests/integration/process_cluster.h"

namespace quorumkv::testing {
namespace {

namespace fs = std::filesystem;
namespace v1 = ::quorumkv::v1;
namespace raftpb = ::quorumkv::raft::v1;

constexpr absl::Duration kLeaderWait = absl::Seconds(15);

// ---------------------------------------------------------------------------
// Helpers.

std::string SelfDir() {
  std::error_code ec;
  fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  return ec ? "." : exe.parent_path().string();
}

// kvserver and kvctl: $QUORUMKV_KVSERVER / $QUORUMKV_KVCTL, else the
// binaries this test was built with, else next to this test.
std::string Binary(const char* env, const char* built, const char* name) {
  if (const char* e = std::getenv(env); e != nullptr && *e != '\0') return e;
  if (built != nullptr && *built != '\0' && fs::exists(built)) return built;
  return SelfDir() + "/" + name;
}
std::string KvserverPath() { return Binary("QUORUMKV_KVSERVER", KVSERVER_PATH, "kvserver"); }
std::string KvctlPath() { return Binary("QUORUMKV_KVCTL", KVCTL_PATH, "kvctl"); }

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

// A temporary directory, removed at the end of the scope.
class TempDir {
 public:
  TempDir() {
    const char* tmp = std::getenv("TMPDIR");
    std::string pattern = std::string(tmp != nullptr ? tmp : "/tmp") + "/quorumkv-bad-input-XXXXXX";
    std::vector<char> buf(pattern.begin(), pattern.end());
    buf.push_back('\0');
    path_ = mkdtemp(buf.data()) != nullptr ? std::string(buf.data()) : "/tmp/quorumkv-bad-input-fallback";
  }
  ~TempDir() {
    std::error_code ec;
    fs::permissions(path_, fs::perms::owner_all, fs::perm_options::add, ec);
    fs::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

struct RunResult {
  int exit_code = -1;  // 128 + signal if killed by one
  bool timed_out = false;
  std::string out;
  std::string err;
  absl::Duration elapsed;
};

std::ostream& operator<<(std::ostream& os, const RunResult& r) {
  return os << "exit " << r.exit_code << (r.timed_out ? " (timed out)" : "") << " after "
            << absl::FormatDuration(r.elapsed) << "\n--- stdout ---\n"
            << r.out << "\n--- stderr ---\n"
            << r.err;
}

// Runs `argv` with stdout and stderr captured, at most `timeout` (then
// SIGKILL, timed_out = true).
RunResult Run(const std::vector<std::string>& argv, absl::Duration timeout = absl::Seconds(30)) {
  RunResult r;
  TempDir dir;
  const std::string out_path = dir.path() + "/out";
  const std::string err_path = dir.path() + "/err";
  const absl::Time start = absl::Now();
  pid_t pid = fork();
  if (pid < 0) {
    ADD_FAILURE() << "fork failed";
    return r;
  }
  if (pid == 0) {
    int out = open(out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    int err = open(err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (out >= 0) dup2(out, 1);
    if (err >= 0) dup2(err, 2);
    unsetenv("QUORUMKV_ENDPOINTS");
    std::vector<std::string> args = argv;
    std::vector<char*> cargs;
    for (std::string& a : args) cargs.push_back(a.data());
    cargs.push_back(nullptr);
    execv(cargs[0], cargs.data());
    std::perror("execv");
    _exit(127);
  }
  int status = 0;
  while (true) {
    pid_t done = waitpid(pid, &status, WNOHANG);
    if (done == pid) break;
    if (absl::Now() - start > timeout) {
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
      r.timed_out = true;
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  r.elapsed = absl::Now() - start;
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  r.out = ReadFile(out_path);
  r.err = ReadFile(err_path);
  return r;
}

RunResult Kvctl(std::vector<std::string> args, absl::Duration timeout = absl::Seconds(30)) {
  args.insert(args.begin(), KvctlPath());
  return Run(args, timeout);
}

// A kvserver invocation with valid defaults (its own data dir, free ports,
// a 1-node cluster) that a test then breaks in one place.
struct ServerArgs {
  std::string data_dir;
  std::vector<int> ports = FreePorts(2);  // distinct
  std::string client_addr = "127.0.0.1:" + std::to_string(ports[0]);
  std::string peer_addr = "127.0.0.1:" + std::to_string(ports[1]);
  std::vector<std::string> args() const {
    return {KvserverPath(), "--id=1", "--data-dir=" + data_dir, "--client-addr=" + client_addr,
            "--peer-addr=" + peer_addr, "--initial-cluster=1=" + peer_addr};
  }
};

// Runs kvserver with `args`. A bad invocation must exit by itself, quickly;
// a kvserver still running after `timeout` is killed and reported.
RunResult Kvserver(const std::vector<std::string>& args, absl::Duration timeout = absl::Seconds(20)) {
  return Run(args, timeout);
}

// Holds a TCP port on 127.0.0.1 (listening, without SO_REUSEPORT) so that
// nothing else can bind it.
class PortHolder {
 public:
  PortHolder() {
    fd_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = 0;
    socklen_t len = sizeof addr;
    if (bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0 &&
        getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len) == 0 && listen(fd_, 4) == 0) {
      port_ = ntohs(addr.sin_port);
    }
  }
  ~PortHolder() { close(fd_); }
  int port() const { return port_; }

 private:
  int fd_ = -1;
  int port_ = 0;
};

// Every timing flag explicitly, whatever the defaults: 10 ms ticks,
// elections after `election_ticks` (150 ms by default: fast start-up).
ClusterOptions FastCluster(int nodes, int election_ticks = 15) {
  ClusterOptions o;
  o.nodes = nodes;
  o.extra_flags = {"--tick-ms=10", "--heartbeat-ticks=1", "--election-ticks=" + std::to_string(election_ticks),
                   "--lease-drift-ticks=2"};
  return o;
}

std::string Dump(ProcessCluster& c) {
  std::string out;
  for (const auto& [id, n] : c.nodes()) out += c.LogTail(id, 20);
  return out;
}

std::unique_ptr<grpc::ClientContext> Context(absl::Duration timeout = absl::Seconds(5)) {
  auto ctx = std::make_unique<grpc::ClientContext>();
  ctx->set_deadline(absl::ToChronoTime(absl::Now() + timeout));
  return ctx;
}

::testing::AssertionResult HasCode(const grpc::Status& s, grpc::StatusCode code, const std::string& fragment) {
  if (s.error_code() != code || !absl::StrContains(s.error_message(), fragment)) {
    return ::testing::AssertionFailure() << "got code " << s.error_code() << " \"" << s.error_message()
                                         << "\", want code " << code << " with \"" << fragment << "\"";
  }
  return ::testing::AssertionSuccess();
}

// A started cluster shared by the tests of one suite (one process per suite:
// see CMakeLists.txt), with raw stubs to its nodes.
class SharedCluster {
 public:
  explicit SharedCluster(int nodes, int election_ticks = 15) : cluster_(FastCluster(nodes, election_ticks)) {}

  bool Start(std::string* error) {
    if (!cluster_.Start()) {
      *error = "could not start kvserver processes";
      return false;
    }
    if (!cluster_.WaitForLeader(kLeaderWait).has_value()) {
      *error = "no leader\n" + Dump(cluster_);
      return false;
    }
    // The leader commits an entry of its term before it accepts membership
    // changes: one write makes sure of it.
    auto c = cluster_.Client();
    absl::Status s = c == nullptr ? absl::InternalError("no client") : c->Put("warm-up", "1");
    if (!s.ok()) {
      *error = "warm-up write failed: " + s.ToString() + "\n" + Dump(cluster_);
      return false;
    }
    return true;
  }

  ProcessCluster& cluster() { return cluster_; }

  // The leader; without one (a failure), the first node, so that the
  // calls that follow fail with the node's own answer.
  uint64_t Leader() {
    auto leader = cluster_.WaitForLeader(kLeaderWait);
    if (!leader.has_value()) {
      ADD_FAILURE() << "no leader\n" << Dump(cluster_);
      return cluster_.nodes().begin()->first;
    }
    return *leader;
  }
  uint64_t Follower() {
    const uint64_t leader = Leader();
    for (const auto& [id, n] : cluster_.nodes()) {
      if (id != leader && n.pid > 0) return id;
    }
    return 0;
  }

  std::unique_ptr<v1::KV::Stub> Kv(uint64_t id) {
    return v1::KV::NewStub(
        grpc::CreateChannel(cluster_.node(id).client_endpoint(), grpc::InsecureChannelCredentials()));
  }
  std::unique_ptr<v1::Cluster::Stub> ClusterStub(uint64_t id) {
    return v1::Cluster::NewStub(
        grpc::CreateChannel(cluster_.node(id).client_endpoint(), grpc::InsecureChannelCredentials()));
  }
  std::unique_ptr<raftpb::RaftPeer::Stub> Peer(uint64_t id) {
    grpc::ChannelArguments args;
    args.SetMaxSendMessageSize(64 << 20);
    return raftpb::RaftPeer::NewStub(grpc::CreateCustomChannel(
        cluster_.node(id).peer_endpoint(), grpc::InsecureChannelCredentials(), args));
  }

  uint64_t ClusterId() {
    auto s = cluster_.Status(cluster_.nodes().begin()->first);
    return s.ok() ? s->cluster_id() : 0;
  }

  // Every started node is still running, and a write through the client
  // (retrying across an election, if the input caused one) succeeds.
  ::testing::AssertionResult StillServing() {
    for (const auto& [id, n] : cluster_.nodes()) {
      if (n.pid <= 0) continue;
      if (kill(n.pid, 0) != 0 || waitpid(n.pid, nullptr, WNOHANG) == n.pid) {
        return ::testing::AssertionFailure() << "node " << id << " is no longer running\n" << cluster_.LogTail(id, 40);
      }
    }
    auto c = cluster_.Client(absl::Seconds(15));
    if (c == nullptr) return ::testing::AssertionFailure() << "no client";
    absl::Status s = c->Put("still-serving", absl::StrCat(absl::ToUnixNanos(absl::Now())));
    if (!s.ok()) return ::testing::AssertionFailure() << "a write failed: " << s << "\n" << Dump(cluster_);
    for (const auto& [id, n] : cluster_.nodes()) {
      if (n.pid > 0 && waitpid(n.pid, nullptr, WNOHANG) == n.pid) {
        return ::testing::AssertionFailure() << "node " << id << " exited\n" << cluster_.LogTail(id, 40);
      }
    }
    return ::testing::AssertionSuccess();
  }

 private:
  ProcessCluster cluster_;
};

// ---------------------------------------------------------------------------
// Client API (KV and Cluster services), 3-node cluster.

class ClientApi : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { StartSharedCluster(15); }
  static void StartSharedCluster(int election_ticks) {
    shared_ = new SharedCluster(3, election_ticks);
    std::string error;
    if (!shared_->Start(&error)) setup_error_ = new std::string(error);
  }
  static void TearDownTestSuite() {
    delete shared_;
    shared_ = nullptr;
    delete setup_error_;
    setup_error_ = nullptr;
  }
  void SetUp() override { ASSERT_EQ(setup_error_, nullptr) << *setup_error_; }
  void TearDown() override { EXPECT_TRUE(shared_->StillServing()); }

  grpc::Status Put(uint64_t node, const std::string& key, const std::string& value) {
    v1::PutRequest req;
    req.set_key(key);
    req.set_value(value);
    v1::PutResponse resp;
    return shared_->Kv(node)->Put(Context().get(), req, &resp);
  }
  grpc::Status Get(uint64_t node, const std::string& key, int consistency = v1::LINEARIZABLE) {
    v1::GetRequest req;
    req.set_key(key);
    req.set_consistency(static_cast<v1::Consistency>(consistency));
    v1::GetResponse resp;
    return shared_->Kv(node)->Get(Context().get(), req, &resp);
  }
  grpc::Status Delete(uint64_t node, const std::string& key) {
    v1::DeleteRequest req;
    req.set_key(key);
    v1::DeleteResponse resp;
    return shared_->Kv(node)->Delete(Context().get(), req, &resp);
  }
  grpc::Status AddMember(uint64_t id, const std::string& peer, const std::string& client = "") {
    v1::AddMemberRequest req;
    req.set_id(id);
    req.set_peer_address(peer);
    req.set_client_address(client);
    v1::AddMemberResponse resp;
    return shared_->ClusterStub(shared_->Leader())->AddMember(Context(absl::Seconds(10)).get(), req, &resp);
  }
  grpc::Status RemoveMember(uint64_t id) {
    v1::RemoveMemberRequest req;
    req.set_id(id);
    v1::RemoveMemberResponse resp;
    return shared_->ClusterStub(shared_->Leader())->RemoveMember(Context(absl::Seconds(10)).get(), req, &resp);
  }

  static SharedCluster* shared_;
  static std::string* setup_error_;
};
SharedCluster* ClientApi::shared_ = nullptr;
std::string* ClientApi::setup_error_ = nullptr;

TEST_F(ClientApi, EmptyKey) {
  // Every node answers for itself (a follower does not forward bad input).
  for (const auto& [id, n] : shared_->cluster().nodes()) {
    EXPECT_TRUE(HasCode(Put(id, "", "v"), grpc::INVALID_ARGUMENT, "key must not be empty")) << "node " << id;
  }
  EXPECT_TRUE(HasCode(Get(shared_->Leader(), ""), grpc::INVALID_ARGUMENT, "key must not be empty"));
  EXPECT_TRUE(HasCode(Delete(shared_->Leader(), ""), grpc::INVALID_ARGUMENT, "key must not be empty"));
}

TEST_F(ClientApi, OversizedKey) {
  const std::string key(4097, 'k');
  EXPECT_TRUE(HasCode(Put(shared_->Follower(), key, "v"), grpc::INVALID_ARGUMENT,
                      "key is 4097 bytes; the limit is 4096"));
  EXPECT_TRUE(HasCode(Get(shared_->Leader(), key), grpc::INVALID_ARGUMENT, "key is 4097 bytes"));
  EXPECT_TRUE(HasCode(Delete(shared_->Leader(), key), grpc::INVALID_ARGUMENT, "key is 4097 bytes"));
  // The limit itself is accepted.
  EXPECT_TRUE(Put(shared_->Leader(), std::string(4096, 'k'), "v").ok());
}

TEST_F(ClientApi, OversizedValue) {
  EXPECT_TRUE(HasCode(Put(shared_->Leader(), "big", std::string((1 << 20) + 1, 'v')), grpc::INVALID_ARGUMENT,
                      "value is 1048577 bytes; the limit is 1048576"));
  EXPECT_TRUE(Put(shared_->Leader(), "big", std::string(1 << 20, 'v')).ok());
}

TEST_F(ClientApi, ValueBeyondTheMessageLimit) {
  // Beyond --max-value-bytes + 1 MiB gRPC refuses the message itself.
  EXPECT_TRUE(HasCode(Put(shared_->Leader(), "huge", std::string(3 << 20, 'v')), grpc::RESOURCE_EXHAUSTED,
                      "larger than max"));
}

TEST_F(ClientApi, InvalidUtf8Key) {
  for (const std::string& key : {std::string("\xff\xfe", 2), std::string("a\xc3", 2),  // truncated sequence
                                 std::string("\xed\xa0\x80", 3),                      // a surrogate
                                 std::string("\xc0\xaf", 2)}) {                       // overlong '/'
    EXPECT_TRUE(HasCode(Put(shared_->Leader(), key, "v"), grpc::INVALID_ARGUMENT, "key must be valid UTF-8"));
    EXPECT_TRUE(HasCode(Get(shared_->Leader(), key), grpc::INVALID_ARGUMENT, "key must be valid UTF-8"));
  }
}

TEST_F(ClientApi, KeyStartingWithNul) {
  const std::string key("\0abc", 4);
  EXPECT_TRUE(HasCode(Put(shared_->Leader(), key, "v"), grpc::INVALID_ARGUMENT,
                      "keys starting with a NUL byte are reserved"));
  EXPECT_TRUE(HasCode(Delete(shared_->Leader(), key), grpc::INVALID_ARGUMENT, "reserved"));
  // Not even the member list itself can be read or overwritten this way.
  const std::string members("\0quorumkv/members", 17);
  EXPECT_TRUE(HasCode(Get(shared_->Follower(), members, v1::SERIALIZABLE), grpc::INVALID_ARGUMENT, "reserved"));
  EXPECT_TRUE(HasCode(Put(shared_->Leader(), members, "1\tv\tevil:1\tevil:2\n"), grpc::INVALID_ARGUMENT, "reserved"));
}

TEST_F(ClientApi, UnknownConsistencyLevel) {
  EXPECT_TRUE(HasCode(Get(shared_->Leader(), "k", 7), grpc::INVALID_ARGUMENT, "unknown consistency level 7"));
  EXPECT_TRUE(HasCode(Get(shared_->Follower(), "k", -1), grpc::INVALID_ARGUMENT, "unknown consistency level -1"));
}

TEST_F(ClientApi, UnknownMember) {
  EXPECT_TRUE(HasCode(RemoveMember(42), grpc::NOT_FOUND, "node 42 is not a member"));
  v1::PromoteMemberRequest req;
  req.set_id(42);
  v1::PromoteMemberResponse resp;
  EXPECT_TRUE(HasCode(shared_->ClusterStub(shared_->Leader())->PromoteMember(Context().get(), req, &resp),
                      grpc::FAILED_PRECONDITION, "node 42 is not a learner"));
  v1::TransferLeadershipRequest treq;
  treq.set_target_id(42);
  v1::TransferLeadershipResponse tresp;
  EXPECT_TRUE(HasCode(shared_->ClusterStub(shared_->Leader())->TransferLeadership(Context().get(), treq, &tresp),
                      grpc::INVALID_ARGUMENT, "node 42 is not a voter"));
}

TEST_F(ClientApi, AddMemberTwice) {
  const std::string peer = "127.0.0.1:" + std::to_string(FreePort());
  // A learner that never starts: it does not count toward any quorum.
  ASSERT_TRUE(AddMember(7, peer).ok());
  EXPECT_TRUE(HasCode(AddMember(7, peer), grpc::ALREADY_EXISTS, "node 7 is already a member"));
  // An existing voter, too.
  EXPECT_TRUE(HasCode(AddMember(1, "127.0.0.1:1"), grpc::ALREADY_EXISTS, "node 1 is already a member"));
  EXPECT_TRUE(RemoveMember(7).ok());
}

TEST_F(ClientApi, MalformedMemberAddress) {
  EXPECT_TRUE(HasCode(AddMember(8, "not-an-address"), grpc::INVALID_ARGUMENT,
                      "peer address \"not-an-address\" is not host:port"));
  EXPECT_TRUE(HasCode(AddMember(8, "127.0.0.1:99999"), grpc::INVALID_ARGUMENT, "is not host:port"));
  EXPECT_TRUE(HasCode(AddMember(8, "127.0.0.1:0"), grpc::INVALID_ARGUMENT, "is not host:port"));
  EXPECT_TRUE(HasCode(AddMember(8, ":2380"), grpc::INVALID_ARGUMENT, "is not host:port"));
  EXPECT_TRUE(HasCode(AddMember(8, ""), grpc::INVALID_ARGUMENT, "is not host:port"));
  // A tab or newline would break the member list's encoding.
  EXPECT_TRUE(HasCode(AddMember(8, "host\t1:2380"), grpc::INVALID_ARGUMENT, "is not host:port"));
  EXPECT_TRUE(HasCode(AddMember(8, "127.0.0.1:2380", "client\n:1"), grpc::INVALID_ARGUMENT,
                      "client address"));
  // None of them was added.
  v1::ListMembersResponse list;
  ASSERT_TRUE(shared_->ClusterStub(shared_->Leader())
                  ->ListMembers(Context().get(), v1::ListMembersRequest(), &list)
                  .ok());
  for (const v1::Member& m : list.members()) EXPECT_NE(m.id(), 8u);
}

TEST_F(ClientApi, MemberIdZero) {
  EXPECT_TRUE(HasCode(AddMember(0, "127.0.0.1:2380"), grpc::INVALID_ARGUMENT, "member id must be > 0"));
  EXPECT_TRUE(HasCode(RemoveMember(0), grpc::INVALID_ARGUMENT, "member id must be > 0"));
  v1::PromoteMemberRequest req;
  v1::PromoteMemberResponse resp;
  EXPECT_TRUE(HasCode(shared_->ClusterStub(shared_->Leader())->PromoteMember(Context().get(), req, &resp),
                      grpc::INVALID_ARGUMENT, "member id must be > 0"));
}

// ---------------------------------------------------------------------------
// Client API, 1-node cluster: the last voter.

class ClientApiOneNode : public ::testing::Test {};

TEST_F(ClientApiOneNode, RemoveTheLastVoter) {
  SharedCluster one(1);
  std::string error;
  ASSERT_TRUE(one.Start(&error)) << error;
  v1::RemoveMemberRequest req;
  req.set_id(1);
  v1::RemoveMemberResponse resp;
  EXPECT_TRUE(HasCode(one.ClusterStub(1)->RemoveMember(Context().get(), req, &resp), grpc::FAILED_PRECONDITION,
                      "cannot remove the last voter"));
  // Through kvctl: the same refusal, exit 1, at once: the client retries
  // only refusals that pass ("a change in flight" is UNAVAILABLE).
  RunResult r = Kvctl({"--endpoints=" + one.cluster().node(1).client_endpoint(), "--timeout=10s",
                       "member", "remove", "1"});
  EXPECT_EQ(r.exit_code, 1) << r;
  EXPECT_TRUE(absl::StrContains(r.err, "kvctl: FAILED_PRECONDITION: ")) << r;
  EXPECT_TRUE(absl::StrContains(r.err, "cannot remove the last voter")) << r;
  EXPECT_LT(r.elapsed, absl::Seconds(3)) << r;
  EXPECT_TRUE(one.StillServing());
}

// ---------------------------------------------------------------------------
// Peer API (RaftPeer), 3-node cluster.

class PeerApi : public ClientApi {
 protected:
  // Elections after 1 s: on a loaded machine a 150 ms timeout lets terms
  // move by themselves, and these rows watch the terms.
  static void SetUpTestSuite() { StartSharedCluster(100); }

  grpc::Status Send(uint64_t to_node, const raftpb::MessageBatch& batch) {
    raftpb::SendAck ack;
    return shared_->Peer(to_node)->Send(Context().get(), batch, &ack);
  }

  // Writes `batches` on one SendStream (what nodes use among themselves),
  // then half-closes it: the status is the one the node ended it with.
  grpc::Status SendOnStream(uint64_t to_node, const std::vector<raftpb::MessageBatch>& batches) {
    auto ctx = Context();
    auto stream = shared_->Peer(to_node)->SendStream(ctx.get());
    for (const raftpb::MessageBatch& b : batches) {
      if (!stream->Write(b)) break;  // the node ended the stream
    }
    stream->WritesDone();
    return stream->Finish();
  }

  raftpb::RaftMessage Message(uint64_t from, uint64_t to) {
    raftpb::RaftMessage m;
    m.set_from(from);
    m.set_to(to);
    m.set_cluster_id(shared_->ClusterId());
    return m;
  }

  std::map<uint64_t, uint64_t> Terms() {
    std::map<uint64_t, uint64_t> out;
    for (const auto& [id, n] : shared_->cluster().nodes()) {
      if (n.pid <= 0) continue;
      auto s = shared_->cluster().Status(id);
      if (s.ok()) out[id] = s->term();
    }
    return out;
  }
};

TEST_F(PeerApi, BatchFromANodeNotInTheConfiguration) {
  // What a removed or stray node sends: (pre-)vote requests for a much
  // later term, a read index request. The nodes hear from their leader, so
  // they refuse the votes without adopting the term (leader stickiness,
  // thesis 4.2.3); nothing else is disturbed.
  constexpr uint64_t kAhead = 1000;
  const std::map<uint64_t, uint64_t> before = Terms();
  ASSERT_EQ(before.size(), 3u);
  uint64_t highest = 0;
  for (const auto& [id, term] : before) highest = std::max(highest, term);
  for (const auto& [id, n] : shared_->cluster().nodes()) {
    raftpb::MessageBatch batch;
    for (bool pre : {true, false}) {
      raftpb::RaftMessage m = Message(99, id);
      m.mutable_request_vote()->set_term(highest + kAhead);
      m.mutable_request_vote()->set_last_log_index(1000000);
      m.mutable_request_vote()->set_last_log_term(highest + kAhead);
      m.mutable_request_vote()->set_pre_vote(pre);
      *batch.add_messages() = m;
    }
    raftpb::RaftMessage read = Message(99, id);
    read.mutable_read_index()->set_term(before.at(id));
    read.mutable_read_index()->set_read_id(5);
    *batch.add_messages() = read;
    grpc::Status s = Send(id, batch);
    // Refused or ignored; either way not a crash.
    EXPECT_TRUE(s.ok() || s.error_code() == grpc::FAILED_PRECONDITION ||
                s.error_code() == grpc::INVALID_ARGUMENT)
        << s.error_code() << " " << s.error_message();
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  for (const auto& [id, term] : Terms()) {
    EXPECT_LT(term, highest + kAhead) << "node " << id << " adopted the term of a non-member's vote request";
  }
}

TEST_F(PeerApi, BatchWithAnotherClusterId) {
  const uint64_t id = shared_->Follower();
  raftpb::MessageBatch batch;
  raftpb::RaftMessage m = Message(shared_->Leader(), id);
  m.set_cluster_id(shared_->ClusterId() + 1);
  m.mutable_append_entries()->set_term(1000);
  m.mutable_append_entries()->set_heartbeat(true);
  *batch.add_messages() = m;
  EXPECT_TRUE(HasCode(Send(id, batch), grpc::FAILED_PRECONDITION,
                      absl::StrCat("of cluster ", shared_->ClusterId() + 1)));
  EXPECT_LT(Terms().at(id), 1000u);
}

// The stream nodes send on ends at the first batch the receiver refuses,
// with the same error a unary Send gets; the batches before it count.
TEST_F(PeerApi, RefusedBatchEndsTheSendStreamWithItsError) {
  const uint64_t id = shared_->Follower();
  const uint64_t leader = shared_->Leader();
  const uint64_t term = Terms().at(id);
  raftpb::MessageBatch heartbeat;
  raftpb::RaftMessage hb = Message(leader, id);
  hb.mutable_append_entries()->set_term(term);
  hb.mutable_append_entries()->set_heartbeat(true);
  *heartbeat.add_messages() = hb;
  raftpb::MessageBatch zero_from;
  raftpb::RaftMessage bad = Message(0, id);
  bad.mutable_timeout_now()->set_term(1);
  *zero_from.add_messages() = bad;
  EXPECT_TRUE(HasCode(SendOnStream(id, {heartbeat, zero_from, heartbeat}), grpc::INVALID_ARGUMENT, "from is 0"));
  EXPECT_TRUE(SendOnStream(id, {heartbeat, heartbeat}).ok()) << "a stream of good batches ends OK";
}

TEST_F(PeerApi, MalformedMessages) {
  const uint64_t id = shared_->Follower();
  const uint64_t leader = shared_->Leader();
  auto one = [](const raftpb::RaftMessage& m) {
    raftpb::MessageBatch b;
    *b.add_messages() = m;
    return b;
  };
  raftpb::RaftMessage zero_from = Message(0, id);
  zero_from.mutable_timeout_now()->set_term(1);
  EXPECT_TRUE(HasCode(Send(id, one(zero_from)), grpc::INVALID_ARGUMENT, "from is 0"));

  raftpb::RaftMessage wrong_to = Message(leader, 0);
  wrong_to.mutable_timeout_now()->set_term(1);
  EXPECT_TRUE(HasCode(Send(id, one(wrong_to)), grpc::FAILED_PRECONDITION, "a message for node 0 reached node"));

  raftpb::RaftMessage no_body = Message(leader, id);
  EXPECT_TRUE(HasCode(Send(id, one(no_body)), grpc::INVALID_ARGUMENT, "has no body"));

  const uint64_t term = Terms().at(id);
  raftpb::RaftMessage bad_type = Message(leader, id);
  auto* ae = bad_type.mutable_append_entries();
  ae->set_term(term);
  ae->set_prev_log_index(1);
  ae->set_prev_log_term(1);
  raftpb::Entry* e = ae->add_entries();
  e->set_index(2);
  e->set_term(term);
  e->set_type(static_cast<raftpb::EntryType>(7));
  EXPECT_TRUE(HasCode(Send(id, one(bad_type)), grpc::INVALID_ARGUMENT, "unknown type 7"));

  raftpb::RaftMessage gap = Message(leader, id);
  gap.mutable_append_entries()->set_term(term);
  gap.mutable_append_entries()->set_prev_log_index(1);
  raftpb::Entry* g = gap.mutable_append_entries()->add_entries();
  g->set_index(5);
  g->set_term(term);
  EXPECT_TRUE(HasCode(Send(id, one(gap)), grpc::INVALID_ARGUMENT, "has index 5, expected 2"));

  raftpb::RaftMessage future = Message(leader, id);
  future.mutable_append_entries()->set_term(term);
  future.mutable_append_entries()->set_prev_log_index(1);
  raftpb::Entry* f = future.mutable_append_entries()->add_entries();
  f->set_index(2);
  f->set_term(term + 5);
  EXPECT_TRUE(HasCode(Send(id, one(future)), grpc::INVALID_ARGUMENT, "above the message's term"));

  // A batch mixing senders.
  raftpb::MessageBatch mixed;
  raftpb::RaftMessage a = Message(leader, id);
  a.mutable_timeout_now()->set_term(1);
  raftpb::RaftMessage b = Message(99, id);
  b.mutable_timeout_now()->set_term(1);
  *mixed.add_messages() = a;
  *mixed.add_messages() = b;
  EXPECT_TRUE(HasCode(Send(id, mixed), grpc::INVALID_ARGUMENT, "a batch mixes senders"));
}

TEST_F(PeerApi, ForwardProposeWithGarbageCommand) {
  const uint64_t leader = shared_->Leader();
  raftpb::ForwardRequest req;
  req.set_from(shared_->Follower());
  req.set_cluster_id(shared_->ClusterId());
  req.set_command(std::string("\x07garbage\xff", 9));
  raftpb::ForwardResponse resp;
  grpc::Status s = shared_->Peer(leader)->ForwardPropose(Context().get(), req, &resp);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(resp.code(), static_cast<int>(grpc::INVALID_ARGUMENT)) << resp.message();
  EXPECT_TRUE(absl::StrContains(resp.message(), "forwarded command did not decode")) << resp.message();

  req.set_command("");
  ASSERT_TRUE(shared_->Peer(leader)->ForwardPropose(Context().get(), req, &resp).ok());
  EXPECT_EQ(resp.code(), static_cast<int>(grpc::INVALID_ARGUMENT)) << resp.message();

  req.set_from(0);
  EXPECT_TRUE(HasCode(shared_->Peer(leader)->ForwardPropose(Context().get(), req, &resp), grpc::INVALID_ARGUMENT,
                      "forwarded write with from 0"));
  req.set_from(shared_->Follower());
  req.set_cluster_id(shared_->ClusterId() + 1);
  EXPECT_TRUE(HasCode(shared_->Peer(leader)->ForwardPropose(Context().get(), req, &resp),
                      grpc::FAILED_PRECONDITION, "refused a write forwarded by node"));
}

// Its own cluster: if the term is accepted, the cluster may not recover.
class PeerApiAbsurdTerm : public PeerApi {};

TEST_F(PeerApiAbsurdTerm, TermOfTwoToTheSixtyFourMinusOne) {
  // A term no cluster can reach (2^64 - 1) from a member. Accepting it
  // makes the next election wrap the term around to 0. It must be refused
  // or ignored: no node may adopt it.
  const uint64_t leader = shared_->Leader();
  const uint64_t from = shared_->Follower();
  raftpb::RaftMessage m = Message(from, leader);
  m.mutable_request_vote_response()->set_term(std::numeric_limits<uint64_t>::max());
  m.mutable_request_vote_response()->set_vote_granted(false);
  raftpb::MessageBatch batch;
  *batch.add_messages() = m;
  grpc::Status s = Send(leader, batch);
  EXPECT_EQ(s.error_code(), grpc::INVALID_ARGUMENT) << s.error_message();
  EXPECT_NE(s.error_message().find("beyond any reachable term or index"), std::string::npos) << s.error_message();
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  for (const auto& [id, term] : Terms()) {
    EXPECT_LT(term, uint64_t{1} << 62) << "node " << id << " adopted an absurd term";
  }
}

// ---------------------------------------------------------------------------
// kvctl's command line: usage errors exit 2 with the reason on stderr and
// never contact a node; an unreachable cluster exits 1 within --timeout.

::testing::AssertionResult UsageError(const RunResult& r, const std::string& fragment) {
  if (r.exit_code != 2 || !absl::StrContains(r.err, "kvctl: " + fragment) ||
      !absl::StrContains(r.err, "Usage: kvctl")) {
    return ::testing::AssertionFailure() << "want exit 2 with \"kvctl: " << fragment << "\" and the usage; got "
                                         << r;
  }
  return ::testing::AssertionSuccess();
}

// An endpoint where nothing listens: any usage error must be found before
// kvctl would try it.
std::string Nowhere() { return "--endpoints=127.0.0.1:" + std::to_string(FreePort()); }

TEST(KvctlFlags, UnknownCommand) {
  EXPECT_TRUE(UsageError(Kvctl({Nowhere(), "frobnicate"}), "unknown command \"frobnicate\""));
  EXPECT_TRUE(UsageError(Kvctl({Nowhere(), "member", "frob"}), "unknown command \"member frob\""));
  EXPECT_TRUE(UsageError(Kvctl({Nowhere()}), "no command given"));
}

TEST(KvctlFlags, UnknownFlag) {
  EXPECT_TRUE(UsageError(Kvctl({Nowhere(), "--bogus", "get", "k"}), "unknown flag --bogus"));
  EXPECT_TRUE(UsageError(Kvctl({Nowhere(), "-x", "get", "k"}), "unknown flag -x"));
  EXPECT_TRUE(UsageError(Kvctl({Nowhere(), "put", "k", "v", "--voter"}), "--client-addr and --voter apply to member add only"));
}

TEST(KvctlFlags, MissingArgument) {
  EXPECT_TRUE(UsageError(Kvctl({Nowhere(), "put", "k"}), "put: missing argument"));
  EXPECT_TRUE(UsageError(Kvctl({Nowhere(), "get"}), "get: missing argument"));
  EXPECT_TRUE(UsageError(Kvctl({Nowhere(), "member", "add", "4"}), "member add: missing argument"));
  EXPECT_TRUE(UsageError(Kvctl({Nowhere(), "member"}), "member: missing subcommand"));
  EXPECT_TRUE(UsageError(Kvctl({Nowhere(), "get", "k", "--timeout"}), "flag --timeout needs a value"));
  EXPECT_TRUE(UsageError(Kvctl({Nowhere(), "put", "a", "b", "c"}), "put: too many arguments"));
}

TEST(KvctlFlags, BadConsistency) {
  EXPECT_TRUE(UsageError(Kvctl({Nowhere(), "get", "k", "--consistency=eventual"}),
                         "bad --consistency \"eventual\" (want linearizable, lease or serializable)"));
  EXPECT_TRUE(UsageError(Kvctl({Nowhere(), "put", "k", "v", "--consistency=lease"}),
                         "--consistency applies to get only"));
}

TEST(KvctlFlags, BadOutput) {
  EXPECT_TRUE(UsageError(Kvctl({Nowhere(), "--output=xml", "status"}), "bad --output \"xml\" (want table or json)"));
}

TEST(KvctlFlags, NonNumericMemberId) {
  EXPECT_TRUE(UsageError(Kvctl({Nowhere(), "member", "remove", "abc"}),
                         "member remove: bad member id \"abc\" (want a positive integer)"));
  EXPECT_TRUE(UsageError(Kvctl({Nowhere(), "member", "remove", "0"}), "member remove: bad member id \"0\""));
  EXPECT_TRUE(UsageError(Kvctl({Nowhere(), "member", "promote", "--", "-3"}), "member promote: bad member id \"-3\""));
  EXPECT_TRUE(UsageError(Kvctl({Nowhere(), "member", "add", "99999999999999999999999", "127.0.0.1:2380"}),
                         "member add: bad member id"));
  EXPECT_TRUE(UsageError(Kvctl({Nowhere(), "leader", "transfer", "x1"}), "leader transfer: bad member id \"x1\""));
  EXPECT_TRUE(UsageError(Kvctl({Nowhere(), "member", "add", "4", "no-port"}), "member add: peer address"));
}

TEST(KvctlFlags, BadTimeout) {
  EXPECT_TRUE(UsageError(Kvctl({Nowhere(), "--timeout=soon", "status"}), "bad --timeout \"soon\""));
  EXPECT_TRUE(UsageError(Kvctl({Nowhere(), "--timeout=-1s", "status"}), "bad --timeout \"-1s\""));
  EXPECT_TRUE(UsageError(Kvctl({Nowhere(), "--timeout=0s", "status"}), "bad --timeout \"0s\""));
  EXPECT_TRUE(UsageError(Kvctl({Nowhere(), "--timeout=inf", "status"}), "bad --timeout \"inf\""));
}

TEST(KvctlFlags, BadEndpoints) {
  EXPECT_TRUE(UsageError(Kvctl({"--endpoints=nohost", "status"}), "--endpoints:"));
  EXPECT_TRUE(UsageError(Kvctl({"--endpoints=127.0.0.1:70000", "status"}), "--endpoints:"));
  EXPECT_TRUE(UsageError(Kvctl({"--endpoints=", "status"}), "--endpoints:"));
}

TEST(KvctlFlags, UnreachableEndpoints) {
  const std::vector<int> ports = FreePorts(2);
  const std::string a = "127.0.0.1:" + std::to_string(ports[0]);
  const std::string b = "127.0.0.1:" + std::to_string(ports[1]);
  RunResult get = Kvctl({"--endpoints=" + a + "," + b, "--timeout=2s", "get", "k"});
  EXPECT_EQ(get.exit_code, 1) << get;
  EXPECT_TRUE(absl::StartsWith(get.err, "kvctl: UNAVAILABLE: ")) << get;
  EXPECT_LT(get.elapsed, absl::Seconds(8)) << "--timeout=2s not honoured\n" << get;
  RunResult status = Kvctl({"--endpoints=" + a, "--timeout=2s", "status"});
  EXPECT_EQ(status.exit_code, 1) << status;
  EXPECT_TRUE(absl::StrContains(status.err, "1 of 1 endpoints failed")) << status;
  EXPECT_TRUE(absl::StrContains(status.out, "unreachable")) << status;
}

// ---------------------------------------------------------------------------
// kvserver's command line: a bad invocation exits 1 at once with the reason
// on stderr, before it touches the data dir or a port.

::testing::AssertionResult StartupError(const RunResult& r, const std::string& fragment) {
  if (r.timed_out || r.exit_code != 1 || !absl::StrContains(r.err, fragment)) {
    return ::testing::AssertionFailure() << "want exit 1 with \"" << fragment << "\" on stderr; got " << r;
  }
  return ::testing::AssertionSuccess();
}

std::vector<std::string> With(std::vector<std::string> args, const std::string& prefix, const std::string& flag) {
  for (auto it = args.begin(); it != args.end();) {
    it = absl::StartsWith(*it, prefix) ? args.erase(it) : it + 1;
  }
  if (!flag.empty()) args.push_back(flag);
  return args;
}

TEST(KvserverFlags, MissingId) {
  TempDir dir;
  ServerArgs a{dir.path() + "/d"};
  EXPECT_TRUE(StartupError(Kvserver(With(a.args(), "--id=", "")), "--id is required"));
  EXPECT_TRUE(StartupError(Kvserver(With(a.args(), "--id=", "--id=0")), "--id is required"));
  EXPECT_TRUE(StartupError(Kvserver(With(a.args(), "--id=", "--id=one")), "Illegal value 'one' specified for flag 'id'"));
  EXPECT_FALSE(fs::exists(dir.path() + "/d")) << "a refused start created the data dir";
}

TEST(KvserverFlags, BadInitialCluster) {
  TempDir dir;
  ServerArgs a{dir.path() + "/d"};
  const std::string self = "1=" + a.peer_addr;
  EXPECT_TRUE(StartupError(Kvserver(With(a.args(), "--initial-cluster=", "--initial-cluster=" + a.peer_addr)),
                           "is not id=host:port"));
  EXPECT_TRUE(StartupError(Kvserver(With(a.args(), "--initial-cluster=", "--initial-cluster=1=127.0.0.1:99999")),
                           "peer address \"127.0.0.1:99999\" of node 1 is not host:port"));
  EXPECT_TRUE(StartupError(
      Kvserver(With(a.args(), "--initial-cluster=", "--initial-cluster=" + self + "@bad-client")),
      "client address \"bad-client\" of node 1 is not host:port"));
  EXPECT_TRUE(StartupError(
      Kvserver(With(a.args(), "--initial-cluster=", "--initial-cluster=" + self + ",1=127.0.0.1:2390")),
      "node 1 is listed twice"));
  EXPECT_TRUE(StartupError(Kvserver(With(a.args(), "--initial-cluster=", "--initial-cluster=2=127.0.0.1:2390")),
                           "--initial-cluster must list this node (id 1)"));
  EXPECT_TRUE(StartupError(Kvserver(With(a.args(), "--initial-cluster=", "--initial-cluster=0=127.0.0.1:2390")),
                           "(id > 0)"));
  EXPECT_TRUE(StartupError(Kvserver(With(a.args(), "--initial-cluster=", "")), "give --initial-cluster"));
  EXPECT_FALSE(fs::exists(dir.path() + "/d")) << "a refused start created the data dir";
}

TEST(KvserverFlags, BothInitialClusterAndJoin) {
  TempDir dir;
  ServerArgs a{dir.path() + "/d"};
  EXPECT_TRUE(StartupError(Kvserver(With(a.args(), "--join=", "--join=2=127.0.0.1:2390")),
                           "give either --initial-cluster or --join, not both"));
  // --join listing the node itself.
  EXPECT_TRUE(StartupError(Kvserver(With(With(a.args(), "--initial-cluster=", ""), "--join=",
                                         "--join=1=" + a.peer_addr)),
                           "this node (id 1) is not one"));
}

TEST(KvserverFlags, BadClientAddr) {
  TempDir dir;
  ServerArgs a{dir.path() + "/d"};
  EXPECT_TRUE(StartupError(Kvserver(With(a.args(), "--client-addr=", "--client-addr=localhost")),
                           "--client-addr \"localhost\" is not host:port"));
  EXPECT_TRUE(StartupError(Kvserver(With(a.args(), "--client-addr=", "--client-addr=127.0.0.1:65536")),
                           "is not host:port"));
  EXPECT_TRUE(StartupError(Kvserver(With(a.args(), "--peer-addr=", "--peer-addr=:2380")),
                           "--peer-addr \":2380\" is not host:port"));
  EXPECT_TRUE(StartupError(Kvserver(With(a.args(), "--metrics-addr=", "--metrics-addr=nope")),
                           "--metrics-addr \"nope\" is not host:port"));
  // A well-formed address this machine does not have.
  EXPECT_TRUE(StartupError(Kvserver(With(a.args(), "--client-addr=", "--client-addr=192.0.2.1:2379")),
                           "cannot listen on --client-addr 192.0.2.1:2379"));
}

TEST(KvserverFlags, PortInUse) {
  PortHolder held;
  ASSERT_NE(held.port(), 0);
  const std::string busy = "127.0.0.1:" + std::to_string(held.port());
  {
    TempDir dir;
    ServerArgs a{dir.path() + "/d"};
    a.client_addr = busy;
    EXPECT_TRUE(StartupError(Kvserver(a.args()), "cannot listen on --client-addr " + busy));
  }
  {
    TempDir dir;
    ServerArgs a{dir.path() + "/d"};
    a.peer_addr = busy;
    EXPECT_TRUE(StartupError(Kvserver(a.args()), "cannot listen on --peer-addr " + busy));
  }
  {
    TempDir dir;
    ServerArgs a{dir.path() + "/d"};
    EXPECT_TRUE(StartupError(Kvserver(With(a.args(), "--metrics-addr=", "--metrics-addr=" + busy)),
                             "cannot serve metrics on --metrics-addr " + busy));
  }
}

TEST(KvserverFlags, UnknownFlag) {
  TempDir dir;
  ServerArgs a{dir.path() + "/d"};
  EXPECT_TRUE(StartupError(Kvserver(With(a.args(), "--bogus", "--bogus=1")), "Unknown command line flag 'bogus'"));
  EXPECT_TRUE(StartupError(Kvserver(With(a.args(), "stray", "stray")), "unexpected argument \"stray\""));
  EXPECT_TRUE(StartupError(Kvserver(With(a.args(), "--tick-ms", "--tick-ms=0")), "--tick-ms must be > 0"));
  EXPECT_TRUE(StartupError(Kvserver(With(a.args(), "--log-level", "--log-level=loud")), "--log-level must be"));
  EXPECT_TRUE(StartupError(Kvserver(With(a.args(), "--key-size-cache-mb", "--key-size-cache-mb=99999999")),
                           "--key-size-cache-mb must be at most"));
  EXPECT_TRUE(StartupError(Kvserver(With(a.args(), "--key-size-cache-mb", "--key-size-cache-mb=-1")),
                           "Illegal value '-1' specified for flag 'key_size_cache_mb'"));
}

// ---------------------------------------------------------------------------
// The data directory.

class DataDir : public ::testing::Test {
 protected:
  // A 1-node cluster that wrote `writes` keys and was stopped cleanly;
  // nullptr (and a failure) if that did not work.
  std::unique_ptr<ProcessCluster> StoppedNodeWithData(int writes, const std::vector<std::string>& flags = {}) {
    ClusterOptions o = FastCluster(1);
    o.extra_flags.insert(o.extra_flags.end(), flags.begin(), flags.end());
    auto c = std::make_unique<ProcessCluster>(o);
    if (!c->Start() || !c->WaitForLeader(kLeaderWait).has_value()) {
      ADD_FAILURE() << "the node did not start\n" << Dump(*c);
      return nullptr;
    }
    auto client = c->Client();
    for (int i = 0; i < writes; ++i) {
      absl::Status s = client->Put("d" + std::to_string(i), "value");
      if (!s.ok()) {
        ADD_FAILURE() << "write " << i << ": " << s << "\n" << Dump(*c);
        return nullptr;
      }
    }
    const int code = c->TerminateAndStatus(1);
    if (code != 0) {
      ADD_FAILURE() << "SIGTERM: exit " << code << "\n" << c->LogTail(1);
      return nullptr;
    }
    return c;
  }

  // Rewrites the LevelDB database in `dir` (the node stopped) so that all
  // its records are in table files.
  static void CompactIntoTables(const std::string& dir) {
    leveldb::DB* db = nullptr;
    ASSERT_TRUE(leveldb::DB::Open(leveldb::Options(), dir, &db).ok()) << dir;
    db->CompactRange(nullptr, nullptr);
    delete db;
  }

  // Restarts node 1 and expects it to refuse to start (exit 1) with every
  // fragment in its log.
  void ExpectRefusesToStart(ProcessCluster& c, const std::vector<std::string>& fragments) {
    ASSERT_TRUE(c.Restart(1));
    std::optional<int> code = c.WaitExit(1, absl::Seconds(15));
    ASSERT_TRUE(code.has_value()) << "kvserver kept running on a bad data dir\n" << c.LogTail(1);
    EXPECT_EQ(*code, 1) << c.LogTail(1);
    const std::string log = c.LogTail(1, 5);
    for (const std::string& f : fragments) EXPECT_TRUE(absl::StrContains(log, f)) << "want \"" << f << "\"\n" << log;
  }
};

TEST_F(DataDir, TruncatedRaftLogFile) {
  auto c = StoppedNodeWithData(30);
  ASSERT_NE(c, nullptr);
  const std::string raft_dir = c->node(1).data_dir + "/raft";
  // Move everything into a table file, then cut that file in half.
  ASSERT_NO_FATAL_FAILURE(CompactIntoTables(raft_dir));
  std::string table;
  for (const auto& f : fs::directory_iterator(raft_dir)) {
    if (f.path().extension() == ".ldb" && (table.empty() || fs::file_size(f.path()) > fs::file_size(table))) {
      table = f.path().string();
    }
  }
  ASSERT_FALSE(table.empty()) << "no table file in " << raft_dir;
  fs::resize_file(table, fs::file_size(table) / 2);
  ExpectRefusesToStart(*c, {"cannot start: DATA_LOSS", "raft log"});
}

TEST_F(DataDir, CorruptedLogEntry) {
  auto c = StoppedNodeWithData(10);
  ASSERT_NE(c, nullptr);
  // Flip one byte of the record holding entry 5 (its data, under the CRC).
  absl::StatusOr<uint64_t> corrupted = CorruptLogEntry(c->node(1).data_dir, 5);
  ASSERT_TRUE(corrupted.ok()) << corrupted.status();
  ExpectRefusesToStart(*c, {"cannot start: DATA_LOSS",
                            "entry " + std::to_string(*corrupted) + " (the first of its record) failed its checksum"});
}

// LevelDB recreates a database whose directory is gone: a node must not
// then run on an empty Raft log (a lost term and vote would let it vote
// twice in one term) next to its state machine.
TEST_F(DataDir, RaftLogFilesLost) {
  auto c = StoppedNodeWithData(10);
  ASSERT_NE(c, nullptr);
  fs::remove_all(c->node(1).data_dir + "/raft");
  ExpectRefusesToStart(*c, {"cannot start: DATA_LOSS", "the state machine has applied entries up to",
                            "the Raft log", "is empty"});
  // The refusal left an empty log behind; the next start refuses too.
  ExpectRefusesToStart(*c, {"cannot start: DATA_LOSS", "is empty"});
}

// The Raft log's CURRENT file gone (LevelDB then starts a new, empty
// database and forgets the tables): the node notices the loss.
TEST_F(DataDir, RaftLogCurrentFileLost) {
  auto c = StoppedNodeWithData(30);
  ASSERT_NE(c, nullptr);
  const std::string raft_dir = c->node(1).data_dir + "/raft";
  ASSERT_NO_FATAL_FAILURE(CompactIntoTables(raft_dir));
  ASSERT_TRUE(fs::remove(raft_dir + "/CURRENT"));
  ExpectRefusesToStart(*c, {"cannot start: DATA_LOSS"});
}

// The state machine's files gone after the log was compacted: the entries
// it would need to rebuild itself are gone too.
TEST_F(DataDir, StateMachineFilesLost) {
  auto c = StoppedNodeWithData(
      60, {"--snapshot-min-entries=20", "--snapshot-min-bytes=0", "--snapshot-trailing-entries=5"});
  ASSERT_NE(c, nullptr);
  fs::remove_all(c->node(1).data_dir + "/kv");
  ExpectRefusesToStart(*c, {"cannot start: DATA_LOSS", "the Raft log was compacted up to",
                            "the state machine", "has applied only up to 0"});
}

TEST_F(DataDir, AnotherClustersDataDir) {
  auto c = StoppedNodeWithData(3);
  ASSERT_NE(c, nullptr);
  c->node(1).extra_flags.push_back("--cluster-token=another-cluster");
  ExpectRefusesToStart(*c, {"cannot start: FAILED_PRECONDITION", "belongs to another cluster or node"});
  // With its own token it starts again: the refusal changed nothing.
  c->node(1).extra_flags.pop_back();
  ASSERT_TRUE(c->Restart(1));
  EXPECT_TRUE(c->WaitForLeader(kLeaderWait).has_value()) << c->LogTail(1);
}

TEST_F(DataDir, AnotherNodesDataDir) {
  auto c = StoppedNodeWithData(3);
  ASSERT_NE(c, nullptr);
  // Node 2 of a cluster {1, 2} pointed at node 1's data dir.
  ServerArgs a{c->node(1).data_dir};
  std::vector<std::string> args = {KvserverPath(), "--id=2", "--data-dir=" + a.data_dir,
                                   "--client-addr=" + a.client_addr, "--peer-addr=" + a.peer_addr,
                                   "--initial-cluster=1=127.0.0.1:1,2=" + a.peer_addr};
  EXPECT_TRUE(StartupError(Kvserver(args), "belongs to another cluster or node"));
}

TEST_F(DataDir, DataDirIsAFile) {
  TempDir dir;
  const std::string file = dir.path() + "/a-file";
  std::ofstream(file) << "not a directory\n";
  ServerArgs a{file};
  RunResult r = Kvserver(a.args());
  EXPECT_TRUE(StartupError(r, "cannot start: FAILED_PRECONDITION"));
  EXPECT_TRUE(absl::StrContains(r.err, "exists and is not a directory")) << r;
  EXPECT_EQ(ReadFile(file), "not a directory\n") << "the file was modified";
}

TEST_F(DataDir, UnwritableDataDir) {
  TempDir dir;
  std::string data = dir.path() + "/read-only";
  fs::create_directory(data);
  fs::permissions(data, fs::perms::owner_read | fs::perms::owner_exec);
  if (access(data.c_str(), W_OK) == 0) {
    // Running as root: permissions do not stop root, a read-only or
    // kernel file system does.
    data = "/sys/quorumkv-bad-input-test";
  }
  ServerArgs a{data};
  EXPECT_TRUE(StartupError(Kvserver(a.args()), "cannot start: PERMISSION_DENIED"));
}

}  // namespace
}  // namespace quorumkv::testing
