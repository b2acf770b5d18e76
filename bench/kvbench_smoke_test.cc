// kvbench end to end: a real three-node cluster on free loopback ports,
// kvbench for 2 s at 16 in flight with a 50/50 mix (after a preload), and
// its JSON checked: a non-zero throughput, every operation type measured,
// no errors, the machine described. Bounded: the cluster waits at most
// 20 s for a leader and kvbench is killed after 60 s.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_join.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/integration/process_cluster.h"

namespace quorumkv::bench {
namespace {

namespace fs = std::filesystem;

std::string BinDir() {
  std::error_code ec;
  fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  return ec ? "." : exe.parent_path().string();
}

// Runs `args` with stdout and stderr to `log`; its exit code, or -1 if it
// had to be killed after `timeout`.
int RunBounded(const std::vector<std::string>& args, const std::string& log, std::chrono::seconds timeout) {
  pid_t pid = fork();
  if (pid < 0) return -2;
  if (pid == 0) {
    FILE* f = std::fopen(log.c_str(), "w");
    if (f != nullptr) {
      dup2(fileno(f), 1);
      dup2(fileno(f), 2);
    }
    std::vector<char*> argv;
    for (const std::string& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    execv(args[0].c_str(), argv.data());
    std::perror("execv");
    _exit(127);
  }
  const auto end = std::chrono::steady_clock::now() + timeout;
  int status = 0;
  while (std::chrono::steady_clock::now() < end) {
    if (waitpid(pid, &status, WNOHANG) == pid) return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  kill(pid, SIGKILL);
  waitpid(pid, &status, 0);
  return -1;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

TEST(KvbenchSmokeTest, TwoSecondsAgainstAThreeNodeCluster) {
  testing::ProcessCluster cluster(testing::ClusterOptions{});
  ASSERT_TRUE(cluster.Start());
  ASSERT_TRUE(cluster.WaitForLeader(absl::Seconds(20)).has_value()) << cluster.LogTail(1);

  const std::string json = cluster.dir() + "/kvbench.json";
  const std::string log = cluster.dir() + "/kvbench.log";
  const std::vector<std::string> args = {BinDir() + "/kvbench",
                                         "--endpoints=" + absl::StrJoin(cluster.Endpoints(), ","),
                                         "--target=leader",
                                         "--duration=2s",
                                         "--warmup=500ms",
                                         "--concurrency=16",
                                         "--channels=2",
                                         "--keys=1000",
                                         "--mix=put=50,get=50",
                                         "--preload",
                                         "--json=" + json};
  const int code = RunBounded(args, log, std::chrono::seconds(60));
  const std::string output = ReadFile(log);
  ASSERT_EQ(code, 0) << output << cluster.LogTail(1);

  nlohmann::json j = nlohmann::json::parse(ReadFile(json), nullptr, /*allow_exceptions=*/false);
  ASSERT_FALSE(j.is_discarded()) << ReadFile(json);
  const nlohmann::json& r = j["results"];
  EXPECT_GT(r["ops_per_sec"].get<double>(), 0.0) << j.dump(2);
  EXPECT_GT(r["ops"].get<uint64_t>(), 0u);
  EXPECT_EQ(r["errors_total"].get<uint64_t>(), 0u) << j.dump(2);
  EXPECT_TRUE(r["errors"].empty());
  EXPECT_GT(r["by_op"]["put"]["count"].get<uint64_t>(), 0u);
  EXPECT_GT(r["by_op"]["get"]["count"].get<uint64_t>(), 0u);
  // The preload wrote every key, so every measured get found its value.
  EXPECT_EQ(r["get_missing"].get<uint64_t>(), 0u);
  EXPECT_EQ(j["preload"]["ops"].get<uint64_t>(), 1000u);
  const nlohmann::json& lat = r["latency_us"];
  EXPECT_GT(lat["p50"].get<double>(), 0.0);
  EXPECT_LE(lat["p50"].get<double>(), lat["p99"].get<double>());
  EXPECT_LE(lat["p99"].get<double>(), lat["max"].get<double>());
  EXPECT_DOUBLE_EQ(r["elapsed_s"].get<double>(), 2.0);
  EXPECT_EQ(j["parameters"]["system"], "quorumkv");
  EXPECT_EQ(j["parameters"]["concurrency"], 16);
  EXPECT_EQ(j["parameters"]["target_endpoints"].size(), 1u);
  EXPECT_GT(j["machine"]["cores"].get<long>(), 0);
  EXPECT_FALSE(j["machine"]["kernel"].get<std::string>().empty());
  // A progress line each second on stderr.
  EXPECT_NE(output.find("ops/s"), std::string::npos) << output;
}

TEST(KvbenchSmokeTest, UnreachableClusterIsAClearError) {
  const int port = testing::FreePort();
  const std::string log = ::testing::TempDir() + "/kvbench_unreachable.log";
  const int code = RunBounded({BinDir() + "/kvbench", "--endpoints=127.0.0.1:" + std::to_string(port),
                               "--target=all", "--duration=1s", "--warmup=0", "--concurrency=2",
                               "--timeout=200ms", "--no-progress"},
                              log, std::chrono::seconds(30));
  // Every request fails (UNAVAILABLE): exit status 1 and the code named.
  EXPECT_EQ(code, 1) << ReadFile(log);
  EXPECT_NE(ReadFile(log).find("UNAVAILABLE"), std::string::npos) << ReadFile(log);
  EXPECT_EQ(RunBounded({BinDir() + "/kvbench", "--concurrency=0"}, log, std::chrono::seconds(10)), 2);
  EXPECT_NE(ReadFile(log).find("--concurrency"), std::string::npos) << ReadFile(log);
}

}  // namespace
}  // namespace quorumkv::bench
