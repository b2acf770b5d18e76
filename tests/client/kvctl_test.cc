// Runs the kvctl binary (KVCTL_PATH) as a child process against in-process
// fake nodes and checks stdout, stderr and the exit status of every command,
// in table and json output, and of every kind of error: errors from the
// cluster (exit 1), a missing key (exit 1), usage errors (exit 2).
#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "nlohmann/json.hpp"
#include "tests/client/fake_kv_server.h"

extern char** environ;

namespace quorumkv::client {
namespace {

namespace v1 = ::quorumkv::v1;
using nlohmann::json;
using testing::FakeCluster;
using testing::FakeNode;
using testing::Fault;
using ::testing::HasSubstr;
using ::testing::StartsWith;

struct KvctlRun {
  int exit_code = -1;
  std::string out;
  std::string err;
};

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

// Runs kvctl with `args`; QUORUMKV_ENDPOINTS is removed from the
// environment, or set to `env_endpoints`. Waits at most 30 s, then kills.
KvctlRun RunKvctl(const std::vector<std::string>& args,
             std::optional<std::string> env_endpoints = std::nullopt) {
  KvctlRun run;
  const std::string dir = ::testing::TempDir();
  std::string out_path = dir + "/kvctl_out_XXXXXX";
  std::string err_path = dir + "/kvctl_err_XXXXXX";
  const int out_fd = mkstemp(out_path.data());
  const int err_fd = mkstemp(err_path.data());
  if (out_fd < 0 || err_fd < 0) {
    ADD_FAILURE() << "mkstemp in " << dir << " failed";
    return run;
  }

  std::vector<std::string> argv_storage = {KVCTL_PATH};
  argv_storage.insert(argv_storage.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (std::string& a : argv_storage) argv.push_back(a.data());
  argv.push_back(nullptr);

  std::vector<std::string> env_storage;
  for (char** e = environ; *e != nullptr; ++e) {
    if (std::string_view(*e).rfind("QUORUMKV_ENDPOINTS=", 0) != 0) env_storage.push_back(*e);
  }
  if (env_endpoints.has_value()) env_storage.push_back("QUORUMKV_ENDPOINTS=" + *env_endpoints);
  std::vector<char*> envp;
  for (std::string& e : env_storage) envp.push_back(e.data());
  envp.push_back(nullptr);

  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&actions, out_fd, 1);
  posix_spawn_file_actions_adddup2(&actions, err_fd, 2);
  pid_t pid = 0;
  const int spawned = posix_spawn(&pid, KVCTL_PATH, &actions, nullptr, argv.data(), envp.data());
  posix_spawn_file_actions_destroy(&actions);
  close(out_fd);
  close(err_fd);
  if (spawned != 0) {
    ADD_FAILURE() << "posix_spawn " << KVCTL_PATH << ": error " << spawned;
  } else {
    int status = 0;
    const absl::Time deadline = absl::Now() + absl::Seconds(30);
    pid_t done = 0;
    while ((done = waitpid(pid, &status, WNOHANG)) == 0 && absl::Now() < deadline) {
      absl::SleepFor(absl::Milliseconds(5));
    }
    if (done == 0) {
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
      ADD_FAILURE() << "kvctl " << absl::StrJoin(args, " ") << " ran longer than 30 s";
    } else if (WIFEXITED(status)) {
      run.exit_code = WEXITSTATUS(status);
    } else {
      ADD_FAILURE() << "kvctl " << absl::StrJoin(args, " ") << " died: status " << status;
    }
  }
  run.out = ReadFile(out_path);
  run.err = ReadFile(err_path);
  unlink(out_path.c_str());
  unlink(err_path.c_str());
  return run;
}

std::vector<std::string> Lines(const std::string& text) {
  return absl::StrSplit(text, '\n', absl::SkipEmpty());
}

std::vector<std::string> Fields(const std::string& line) {
  return absl::StrSplit(line, ' ', absl::SkipEmpty());
}

json ParseJson(const std::string& text) {
  json doc = json::parse(text, nullptr, /*allow_exceptions=*/false);
  EXPECT_FALSE(doc.is_discarded()) << "not JSON: " << text;
  return doc;
}

class KvctlTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto started = testing::StartFakeCluster(3);
    ASSERT_TRUE(started.ok()) << started.status();
    cluster_ = started->cluster;
    nodes_ = std::move(started->nodes);
  }

  FakeNode& node(int id) { return *nodes_[id - 1]; }

  std::string AllEndpoints() {
    return absl::StrJoin(nodes_, ",", [](std::string* out, const auto& n) {
      out->append(n->endpoint());
    });
  }

  // kvctl --endpoints <all nodes> args...
  KvctlRun Kvctl(std::vector<std::string> args) {
    args.insert(args.begin(), {"--endpoints", AllEndpoints()});
    return RunKvctl(args);
  }

  int TotalCalls() {
    int total = 0;
    for (const auto& n : nodes_) total += static_cast<int>(n->calls().size());
    return total;
  }

  std::shared_ptr<FakeCluster> cluster_;
  std::vector<std::unique_ptr<FakeNode>> nodes_;
};

TEST_F(KvctlTest, PutGetDelTable) {
  KvctlRun r = Kvctl({"put", "k", "v"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "OK\n");
  EXPECT_EQ(r.err, "");
  EXPECT_EQ(cluster_->Value("k"), std::optional<std::string>("v"));

  r = Kvctl({"get", "k"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "v\n");
  EXPECT_EQ(r.err, "");

  r = Kvctl({"del", "k"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "deleted\n");
  r = Kvctl({"del", "k"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "not found\n");

  r = Kvctl({"get", "k"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.out, "");
  EXPECT_EQ(r.err, "key not found: k\n");
}

TEST_F(KvctlTest, PutGetDelJson) {
  KvctlRun r = Kvctl({"put", "k", "v", "--output", "json"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(ParseJson(r.out), json({{"ok", true}, {"key", "k"}}));

  r = Kvctl({"--output=json", "get", "k"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(ParseJson(r.out), json({{"key", "k"}, {"value", "v"}}));

  r = Kvctl({"del", "k", "--output", "json"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(ParseJson(r.out), json({{"key", "k"}, {"deleted", true}}));

  r = Kvctl({"get", "k", "--output", "json"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.out, "");
  EXPECT_EQ(r.err, "key not found: k\n");
}

TEST_F(KvctlTest, BinaryValuesPrintRawOrAsBase64InJson) {
  cluster_->SetValue("bin", std::string("\xff\x00" "a", 3));
  KvctlRun r = Kvctl({"get", "bin", "--output", "json"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(ParseJson(r.out), json({{"key", "bin"}, {"value_base64", "/wBh"}}));
  r = Kvctl({"get", "bin"});
  EXPECT_EQ(r.out, std::string("\xff\x00" "a\n", 4));
  cluster_->SetValue("utf8", "h\xc3\xa9llo");
  r = Kvctl({"get", "utf8", "--output", "json"});
  EXPECT_EQ(ParseJson(r.out)["value"], "h\xc3\xa9llo");
}

TEST_F(KvctlTest, GetConsistencyAndFlagPositions) {
  cluster_->SetValue("k", "v");
  EXPECT_EQ(Kvctl({"get", "k", "--consistency", "serializable"}).exit_code, 0);
  EXPECT_EQ(Kvctl({"--consistency=lease", "get", "k"}).exit_code, 0);
  EXPECT_EQ(Kvctl({"get", "--consistency", "linearizable", "k"}).exit_code, 0);
  EXPECT_EQ(Kvctl({"get", "k"}).exit_code, 0);
  std::vector<v1::Consistency> levels;
  for (const auto& n : nodes_) {
    for (const auto& call : n->calls()) {
      if (call.method == "Get") levels.push_back(call.consistency);
    }
  }
  EXPECT_EQ(levels, (std::vector<v1::Consistency>{v1::SERIALIZABLE, v1::LEASE, v1::LINEARIZABLE,
                                                  v1::LINEARIZABLE}));
  // --endpoints after the command too.
  KvctlRun r = RunKvctl({"put", "a", "b", "--endpoints", node(2).endpoint()});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(node(2).CallCount("Put"), 1);
  // After --, arguments that look like flags are values.
  r = Kvctl({"put", "--", "neg", "-5"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(cluster_->Value("neg"), std::optional<std::string>("-5"));
}

TEST_F(KvctlTest, EndpointsFromTheEnvironment) {
  KvctlRun r = RunKvctl({"put", "k", "v"}, node(3).endpoint());
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(node(3).CallCount("Put"), 1);
  // --endpoints wins over the environment.
  r = RunKvctl({"put", "k", "v", "--endpoints", node(2).endpoint()}, node(3).endpoint());
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(node(2).CallCount("Put"), 1);
  EXPECT_EQ(node(3).CallCount("Put"), 1);
  r = RunKvctl({"status"}, "not-an-endpoint");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.err, HasSubstr("QUORUMKV_ENDPOINTS"));
}

TEST_F(KvctlTest, DefaultEndpointsAreTheLocalCluster) {
  // Whether or not a local cluster runs, status names the three defaults.
  KvctlRun r = RunKvctl({"status", "--timeout", "1s"});
  EXPECT_TRUE(r.exit_code == 0 || r.exit_code == 1) << r.exit_code;
  for (const char* endpoint : {"127.0.0.1:2379", "127.0.0.1:22379", "127.0.0.1:32379"}) {
    EXPECT_THAT(r.out, HasSubstr(endpoint));
  }
}

TEST_F(KvctlTest, StatusTable) {
  KvctlRun r = Kvctl({"status"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.err, "");
  std::vector<std::string> lines = Lines(r.out);
  ASSERT_EQ(lines.size(), 4u) << r.out;
  EXPECT_EQ(Fields(lines[0]), (std::vector<std::string>{"ENDPOINT", "ID", "ROLE", "TERM", "LEADER",
                                                        "COMMIT", "APPLIED", "ERROR"}));
  for (int id = 1; id <= 3; ++id) {
    const std::vector<std::string> f = Fields(lines[id]);
    ASSERT_EQ(f.size(), 7u) << lines[id];
    EXPECT_EQ(f[0], node(id).endpoint());
    EXPECT_EQ(f[1], absl::StrCat(id));
    EXPECT_EQ(f[2], id == 1 ? "leader" : "follower");
    EXPECT_EQ(f[4], "1");  // the leader
    // Aligned: every column starts where its header does.
    EXPECT_EQ(lines[id].find(f[2], f[0].size()), lines[0].find("ROLE"));
    EXPECT_EQ(lines[id].rfind(f[6]), lines[0].find("APPLIED"));
  }

  node(2).Stop();
  r = Kvctl({"status"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.err, "kvctl: 1 of 3 endpoints failed\n");
  lines = Lines(r.out);
  ASSERT_EQ(lines.size(), 4u) << r.out;
  EXPECT_THAT(lines[2], StartsWith(node(2).endpoint()));
  EXPECT_THAT(lines[2], HasSubstr("unreachable"));
  EXPECT_THAT(lines[2], HasSubstr("UNAVAILABLE"));
  EXPECT_THAT(lines[1], HasSubstr("leader"));
}

TEST_F(KvctlTest, StatusJson) {
  node(3).Stop();
  KvctlRun r = Kvctl({"status", "--output", "json"});
  EXPECT_EQ(r.exit_code, 1);
  const json doc = ParseJson(r.out);
  ASSERT_EQ(doc["endpoints"].size(), 3u) << r.out;
  const json& first = doc["endpoints"][0];
  EXPECT_EQ(first["endpoint"], node(1).endpoint());
  EXPECT_EQ(first["reachable"], true);
  EXPECT_EQ(first["node_id"], 1);
  EXPECT_EQ(first["role"], "leader");
  EXPECT_EQ(first["leader_id"], 1);
  EXPECT_EQ(first["members"].size(), 3u);
  EXPECT_EQ(doc["endpoints"][1]["role"], "follower");
  const json& down = doc["endpoints"][2];
  EXPECT_EQ(down["reachable"], false);
  EXPECT_THAT(down["error"].get<std::string>(), StartsWith("UNAVAILABLE: " + node(3).endpoint()));
}

TEST_F(KvctlTest, MemberCommands) {
  KvctlRun r = Kvctl({"member", "list"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  std::vector<std::string> lines = Lines(r.out);
  ASSERT_EQ(lines.size(), 4u) << r.out;
  EXPECT_EQ(Fields(lines[0]),
            (std::vector<std::string>{"ID", "ROLE", "PEER_ADDRESS", "CLIENT_ADDRESS"}));
  EXPECT_EQ(Fields(lines[1]), (std::vector<std::string>{"1", "voter", "127.0.0.1:7001",
                                                        node(1).endpoint()}));

  r = Kvctl({"member", "add", "4", "127.0.0.1:7004"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  lines = Lines(r.out);
  ASSERT_EQ(lines.size(), 5u) << r.out;
  EXPECT_EQ(Fields(lines[4]), (std::vector<std::string>{"4", "learner", "127.0.0.1:7004", "-"}));

  r = Kvctl({"member", "add", "--voter", "5", "127.0.0.1:7005", "--client-addr=127.0.0.1:9005",
             "--output", "json"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  json doc = ParseJson(r.out);
  ASSERT_EQ(doc["members"].size(), 5u) << r.out;
  EXPECT_EQ(doc["members"][4], json({{"id", 5},
                                     {"role", "voter"},
                                     {"peer_address", "127.0.0.1:7005"},
                                     {"client_address", "127.0.0.1:9005"}}));

  r = Kvctl({"member", "promote", "4"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("4   voter"));

  r = Kvctl({"member", "remove", "5", "--output", "json"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(ParseJson(r.out)["members"].size(), 4u);

  r = Kvctl({"member", "remove", "9"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.out, "");
  EXPECT_EQ(r.err, absl::StrCat("kvctl: NOT_FOUND: ", node(1).endpoint(), ": no member 9\n"));

  r = Kvctl({"member", "add", "1", "127.0.0.1:7001"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, StartsWith("kvctl: ALREADY_EXISTS: "));
  EXPECT_EQ(cluster_->members().size(), 4u);
}

TEST_F(KvctlTest, LeaderTransfer) {
  KvctlRun r = Kvctl({"leader", "transfer", "3"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "leader: 3\n");
  EXPECT_EQ(cluster_->leader_id(), 3u);
  r = Kvctl({"leader", "transfer", "--output", "json"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(ParseJson(r.out), json({{"leader_id", 1}}));  // the fake picks the lowest other
  EXPECT_EQ(cluster_->leader_id(), 1u);
}

TEST_F(KvctlTest, EndpointHealth) {
  KvctlRun r = Kvctl({"endpoint", "health"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  std::vector<std::string> lines = Lines(r.out);
  ASSERT_EQ(lines.size(), 4u) << r.out;
  EXPECT_EQ(Fields(lines[0]), (std::vector<std::string>{"ENDPOINT", "HEALTH", "ERROR"}));
  for (int id = 1; id <= 3; ++id) {
    EXPECT_EQ(Fields(lines[id]), (std::vector<std::string>{node(id).endpoint(), "SERVING"}));
  }

  node(2).SetServing(false);
  node(3).Stop();
  r = Kvctl({"endpoint", "health"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.err, "kvctl: 2 of 3 endpoints not serving\n");
  lines = Lines(r.out);
  ASSERT_EQ(lines.size(), 4u) << r.out;
  EXPECT_EQ(Fields(lines[2]), (std::vector<std::string>{node(2).endpoint(), "NOT_SERVING"}));
  EXPECT_THAT(lines[3], StartsWith(node(3).endpoint()));
  EXPECT_EQ(Fields(lines[3])[1], "unreachable");

  r = Kvctl({"endpoint", "health", "--output", "json"});
  EXPECT_EQ(r.exit_code, 1);
  const json doc = ParseJson(r.out);
  ASSERT_EQ(doc["endpoints"].size(), 3u);
  EXPECT_EQ(doc["endpoints"][0], json({{"endpoint", node(1).endpoint()}, {"health", "SERVING"}}));
  EXPECT_EQ(doc["endpoints"][1]["health"], "NOT_SERVING");
  EXPECT_EQ(doc["endpoints"][2]["health"], "unreachable");
  EXPECT_TRUE(doc["endpoints"][2].contains("error"));
}

TEST_F(KvctlTest, ErrorsFromTheClusterExitOne) {
  // Not retried: the server's code and message, naming the endpoint.
  node(1).AddFault(Fault{.method = "Put",
                         .code = absl::StatusCode::kInvalidArgument,
                         .message = "value too large"});
  KvctlRun r = Kvctl({"put", "k", "v"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.out, "");
  EXPECT_EQ(r.err, absl::StrCat("kvctl: INVALID_ARGUMENT: ", node(1).endpoint(),
                                ": value too large\n"));

  node(1).AddFault(Fault{.method = "Get",
                         .code = absl::StatusCode::kFailedPrecondition,
                         .message = "lease lost"});
  r = Kvctl({"get", "k", "--consistency", "lease"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.err, absl::StrCat("kvctl: FAILED_PRECONDITION: ", node(1).endpoint(),
                                ": lease lost\n"));

  node(1).AddFault(Fault{.method = "Delete",
                         .code = absl::StatusCode::kDataLoss,
                         .message = "corrupt entry at index 7"});
  r = Kvctl({"del", "k"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, StartsWith("kvctl: DATA_LOSS: "));

  // Retried until --timeout: UNAVAILABLE everywhere, then a hung cluster.
  for (const auto& n : nodes_) {
    n->AddFault(Fault{.code = absl::StatusCode::kUnavailable, .message = "no leader",
                      .times = 20000});
  }
  const absl::Time start = absl::Now();
  r = Kvctl({"put", "k", "v", "--timeout", "400ms"});
  EXPECT_LT(absl::Now() - start, absl::Seconds(10));
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, StartsWith("kvctl: UNAVAILABLE: "));
  EXPECT_THAT(r.err, HasSubstr("no leader"));
  EXPECT_THAT(r.err, HasSubstr("total timeout 400ms"));
}

TEST_F(KvctlTest, HungClusterTimesOut) {
  for (const auto& n : nodes_) n->AddFault(Fault{.delay = absl::Seconds(20), .times = -1});
  const absl::Time start = absl::Now();
  KvctlRun r = Kvctl({"get", "k", "--timeout", "500ms"});
  EXPECT_LT(absl::Now() - start, absl::Seconds(10));
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, StartsWith("kvctl: DEADLINE_EXCEEDED: "));
}

TEST_F(KvctlTest, UsageErrorsExitTwo) {
  const std::vector<std::vector<std::string>> cases = {
      {},
      {"frobnicate"},
      {"--frobnicate", "status"},
      {"status", "-x"},
      {"put", "k"},
      {"put", "k", "v", "extra"},
      {"get"},
      {"del"},
      {"get", "k", "--consistency", "strong"},
      {"get", "k", "--consistency"},
      {"put", "k", "v", "--consistency", "lease"},
      {"get", "k", "--voter"},
      {"member", "add", "4", "127.0.0.1:7004", "--voter=yes"},
      {"status", "--client-addr", "127.0.0.1:1"},
      {"member"},
      {"member", "frob"},
      {"member", "add", "x", "127.0.0.1:7004"},
      {"member", "add", "4"},
      {"member", "add", "4", "no-port"},
      {"member", "add", "4", "127.0.0.1:7004", "--client-addr", "bad"},
      {"member", "remove", "0"},
      {"member", "remove", "12abc"},
      {"member", "promote", "99999999999999999999999"},
      {"member", "list", "extra"},
      {"leader", "transfer", "abc"},
      {"leader", "transfer", "1", "2"},
      {"leader"},
      {"endpoint"},
      {"endpoint", "status"},
      {"status", "--output", "xml"},
      {"status", "--timeout", "soon"},
      {"status", "--timeout", "0s"},
      {"status", "--timeout", "-1s"},
      {"status", "--endpoints", "nohost"},
      {"status", "--endpoints", "127.0.0.1:1,,127.0.0.1:2"},
      {"status", "--endpoints", "127.0.0.1:1,127.0.0.1:1"},
  };
  for (const auto& args : cases) {
    std::vector<std::string> full = args;
    // --endpoints first, so the case's own --endpoints (if any) wins.
    full.insert(full.begin(), {"--endpoints", AllEndpoints()});
    const KvctlRun r = RunKvctl(full);
    const std::string name = absl::StrJoin(args, " ");
    EXPECT_EQ(r.exit_code, 2) << name;
    EXPECT_EQ(r.out, "") << name;
    EXPECT_THAT(r.err, StartsWith("kvctl: ")) << name;
    EXPECT_THAT(r.err, HasSubstr("Usage: kvctl")) << name;
  }
  const KvctlRun bad_output = Kvctl({"status", "--output", "xml"});
  EXPECT_THAT(bad_output.err, HasSubstr("bad --output \"xml\""));
  const KvctlRun unknown = Kvctl({"frobnicate"});
  EXPECT_THAT(unknown.err, HasSubstr("unknown command \"frobnicate\""));
  // No usage error reached the cluster.
  EXPECT_EQ(TotalCalls(), 0);
}

TEST_F(KvctlTest, HelpExitsZero) {
  for (const std::vector<std::string>& args :
       {std::vector<std::string>{"--help"}, {"-h"}, {"put", "--help"}}) {
    const KvctlRun r = RunKvctl(args);
    EXPECT_EQ(r.exit_code, 0);
    EXPECT_THAT(r.out, StartsWith("Usage: kvctl"));
    EXPECT_THAT(r.out, HasSubstr("endpoint health"));
    EXPECT_EQ(r.err, "");
  }
}

}  // namespace
}  // namespace quorumkv::client
