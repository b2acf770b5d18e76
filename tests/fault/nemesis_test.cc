// The nemesis flag and the history recorder's output, without a cluster.
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "tests/fault/nemesis.h"
#include "tests/fault/workload.h"
#include "tests/lincheck/history.h"
#include "tests/lincheck/linearizability_checker.h"

namespace quorumkv::fault {
namespace {

TEST(ParseNemesisTest, MixedIsEveryKindButClockSteps) {
  auto kinds = ParseNemesis("mixed");
  ASSERT_TRUE(kinds.ok()) << kinds.status();
  EXPECT_EQ(kinds->size(), 6u);
  EXPECT_EQ(std::count(kinds->begin(), kinds->end(), FaultKind::kClockStep), 0);
}

TEST(ParseNemesisTest, NoneAndLists) {
  auto none = ParseNemesis("none");
  ASSERT_TRUE(none.ok());
  EXPECT_TRUE(none->empty());
  auto list = ParseNemesis("kill,partition,kill,clock-step");
  ASSERT_TRUE(list.ok()) << list.status();
  EXPECT_EQ(*list, (std::vector<FaultKind>{FaultKind::kKill, FaultKind::kPartition, FaultKind::kClockStep}));
  for (FaultKind k : *list) EXPECT_EQ(*ParseNemesis(FaultKindName(k)), std::vector<FaultKind>{k});
}

TEST(ParseNemesisTest, UnknownNamesAreRefusedWithTheChoices) {
  auto bad = ParseNemesis("kill,earthquake");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(bad.status().message().find("earthquake"), std::string::npos);
  EXPECT_NE(bad.status().message().find("disk-full"), std::string::npos);
  EXPECT_FALSE(ParseNemesis("").ok());
  EXPECT_FALSE(ParseNemesis(",").ok());
}

// The extra fields (node, error) must not disturb a reader of the format,
// and the counts must follow the completions.
TEST(HistoryRecorderTest, WritesHistoryThatTheCheckerReads) {
  char path[] = "/tmp/fault-history-test-XXXXXX";
  const int fd = mkstemp(path);
  ASSERT_GE(fd, 0);
  close(fd);
  {
    HistoryRecorder recorder(path);
    ASSERT_TRUE(recorder.status().ok());
    const int64_t p1 = recorder.NewProcess();
    const int64_t p2 = recorder.NewProcess();
    EXPECT_NE(p1, p2);
    lincheck::Event put;
    put.process = p1;
    put.type = lincheck::EventType::kInvoke;
    put.f = lincheck::Function::kPut;
    put.key = "k";
    put.value = "v-1-1";
    put.time_ns = 1;
    recorder.Record(put, 3);
    put.type = lincheck::EventType::kOk;
    put.time_ns = 2;
    recorder.Record(put);
    lincheck::Event get;
    get.process = p2;
    get.type = lincheck::EventType::kInvoke;
    get.f = lincheck::Function::kGet;
    get.key = "k";
    get.consistency = lincheck::Consistency::kLease;
    get.time_ns = 3;
    recorder.Record(get, 2);
    get.type = lincheck::EventType::kInfo;
    get.time_ns = 4;
    recorder.Record(get, 0, "DEADLINE_EXCEEDED: \"quoted\" \xff bytes");
    recorder.Flush();
    const OpCounts counts = recorder.counts();
    EXPECT_EQ(counts.invoked, 2u);
    EXPECT_EQ(counts.ok(), 1u);
    EXPECT_EQ(counts.info(), 1u);
    EXPECT_EQ(counts.Count(lincheck::Function::kPut, lincheck::EventType::kOk), 1u);
  }
  auto events = lincheck::ReadHistoryFile(path);
  std::remove(path);
  ASSERT_TRUE(events.ok()) << events.status();
  ASSERT_EQ(events->size(), 4u);
  EXPECT_EQ((*events)[0].value, "v-1-1");
  EXPECT_EQ((*events)[2].consistency, lincheck::Consistency::kLease);
  EXPECT_EQ((*events)[3].type, lincheck::EventType::kInfo);
  EXPECT_EQ(lincheck::CheckHistory(*events).outcome, lincheck::CheckResult::Outcome::kLinearizable);
}

}  // namespace
}  // namespace quorumkv::fault
