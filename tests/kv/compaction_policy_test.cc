#include "kv/compaction_policy.h"

#include <cmath>
#include <limits>

#include "gtest/gtest.h"

namespace quorumkv::kv {
namespace {

CompactionPolicy Make(const CompactionPolicyOptions& options) {
  auto policy = CompactionPolicy::Create(options);
  EXPECT_TRUE(policy.ok()) << policy.status();
  return *policy;
}

TEST(CompactionPolicyTest, FirstSnapshotAtTheMinimum) {
  CompactionPolicyOptions o;
  o.min_entries = 100;
  o.min_bytes = 1000;
  CompactionPolicy p = Make(o);
  EXPECT_FALSE(p.ShouldSnapshot(0, 0));
  EXPECT_FALSE(p.ShouldSnapshot(99, 999));
  EXPECT_TRUE(p.ShouldSnapshot(100, 0));   // entries alone suffice
  EXPECT_TRUE(p.ShouldSnapshot(1, 1000));  // bytes alone suffice
}

TEST(CompactionPolicyTest, ThresholdGrowsWithTheStateSize) {
  CompactionPolicyOptions o;
  o.min_entries = 100;
  o.min_bytes = 1000;
  o.state_size_factor = 2.0;
  CompactionPolicy p = Make(o);
  // A big state: snapshotting it is expensive, so wait for the log to grow
  // by twice the state.
  p.OnCompacted({.remaining_log_entries = 0,
                 .remaining_log_bytes = 0,
                 .state_keys = 500,
                 .state_bytes = 1'000'000});
  EXPECT_EQ(p.entry_threshold(), 1000u);
  EXPECT_EQ(p.byte_threshold(), 2'000'000u);
  EXPECT_FALSE(p.ShouldSnapshot(999, 1'999'999));
  EXPECT_TRUE(p.ShouldSnapshot(1000, 0));
  EXPECT_TRUE(p.ShouldSnapshot(0, 2'000'000));
}

TEST(CompactionPolicyTest, NeverBelowTheMinimumForASmallState) {
  CompactionPolicyOptions o;
  o.min_entries = 100;
  o.min_bytes = 1000;
  o.state_size_factor = 4.0;
  CompactionPolicy p = Make(o);
  p.OnCompacted(
      {.remaining_log_entries = 0, .remaining_log_bytes = 0, .state_keys = 1, .state_bytes = 10});
  EXPECT_EQ(p.entry_threshold(), 100u);
  EXPECT_EQ(p.byte_threshold(), 1000u);
  o.state_size_factor = 0;  // the minimums are the whole rule
  CompactionPolicy q = Make(o);
  q.OnCompacted({.remaining_log_entries = 0,
                 .remaining_log_bytes = 0,
                 .state_keys = 1'000'000,
                 .state_bytes = 1'000'000'000});
  EXPECT_EQ(q.entry_threshold(), 100u);
  EXPECT_EQ(q.byte_threshold(), 1000u);
}

// The storm (braft #528): the tail kept after compaction is larger than the
// minimum, and a threshold on the whole log would fire again at once.
TEST(CompactionPolicyTest, RetainedTailCannotRetriggerASnapshot) {
  CompactionPolicyOptions o;
  o.min_entries = 100;
  o.min_bytes = 0;  // entries only
  o.state_size_factor = 0.5;
  o.trailing_entries = 500;
  CompactionPolicy p = Make(o);
  EXPECT_TRUE(p.ShouldSnapshot(600, 0));
  // Snapshot at index 600, log compacted up to CompactIndex(600) = 100: the
  // log keeps 500 entries.
  EXPECT_EQ(p.CompactIndex(600), 100u);
  p.OnCompacted({.remaining_log_entries = 500,
                 .remaining_log_bytes = 50'000,
                 .state_keys = 10,
                 .state_bytes = 1000});
  EXPECT_FALSE(p.ShouldSnapshot(500, 50'000));
  EXPECT_FALSE(p.ShouldSnapshot(599, 10'000'000));  // bytes criterion disabled
  EXPECT_TRUE(p.ShouldSnapshot(600, 0));
}

// Simulates a write stream with the compaction loop of a server, and checks
// the number of snapshots stays bounded as the state grows: with factor f,
// each snapshot needs at least f × state of new log, so snapshot work per
// written byte stays around 1 / f.
TEST(CompactionPolicyTest, SnapshotCountIsBoundedUnderSteadyWrites) {
  CompactionPolicyOptions o;
  o.min_entries = 0;  // bytes only
  o.min_bytes = 1 << 20;
  o.state_size_factor = 1.0;
  o.trailing_entries = 0;
  CompactionPolicy p = Make(o);
  uint64_t log_bytes = 0, state_bytes = 0, snapshots = 0, snapshot_work = 0;
  const uint64_t kWrites = 200'000, kWriteBytes = 1024;
  for (uint64_t i = 0; i < kWrites; ++i) {
    log_bytes += kWriteBytes;
    state_bytes += kWriteBytes / 2;  // half the writes create new data
    if (p.ShouldSnapshot(0, log_bytes)) {
      ++snapshots;
      snapshot_work += state_bytes;
      log_bytes = 0;
      p.OnCompacted({.remaining_log_entries = 0,
                     .remaining_log_bytes = 0,
                     .state_keys = 0,
                     .state_bytes = state_bytes});
      EXPECT_GE(p.byte_threshold(), o.min_bytes);
      EXPECT_GE(p.byte_threshold(), state_bytes);
    }
  }
  const uint64_t total_written = kWrites * kWriteBytes;
  EXPECT_GT(snapshots, 3u);
  EXPECT_LT(snapshots, 30u);  // without growth it would be ~195
  // Each snapshot reads a state of at most the log grown since the previous
  // one (the threshold, factor 1) plus the data that growth added (half of
  // it here): snapshot work is bounded by 1.5 × what was written.
  EXPECT_LE(snapshot_work, total_written * 3 / 2);
}

TEST(CompactionPolicyTest, DisabledCriteria) {
  CompactionPolicyOptions o;
  o.min_entries = 0;
  o.min_bytes = 0;
  CompactionPolicy p = Make(o);
  EXPECT_FALSE(p.ShouldSnapshot(~0ULL, ~0ULL));
  o.min_bytes = 10;
  CompactionPolicy q = Make(o);
  EXPECT_FALSE(q.ShouldSnapshot(1'000'000, 9));
  EXPECT_TRUE(q.ShouldSnapshot(0, 10));
}

TEST(CompactionPolicyTest, SaturatesInsteadOfOverflowing) {
  CompactionPolicyOptions o;
  o.min_entries = 1;
  o.min_bytes = 1;
  o.state_size_factor = 1000;
  CompactionPolicy p = Make(o);
  p.OnCompacted({.remaining_log_entries = ~0ULL - 5,
                 .remaining_log_bytes = 10,
                 .state_keys = ~0ULL / 2,
                 .state_bytes = ~0ULL});
  EXPECT_EQ(p.entry_threshold(), ~0ULL);
  EXPECT_EQ(p.byte_threshold(), ~0ULL);
  EXPECT_FALSE(p.ShouldSnapshot(~0ULL - 1, ~0ULL - 1));
}

TEST(CompactionPolicyTest, CompactIndexKeepsATail) {
  CompactionPolicyOptions o;
  o.trailing_entries = 1000;
  CompactionPolicy p = Make(o);
  EXPECT_EQ(p.CompactIndex(0), 0u);
  EXPECT_EQ(p.CompactIndex(1000), 0u);
  EXPECT_EQ(p.CompactIndex(1001), 1u);
  EXPECT_EQ(p.CompactIndex(50'000), 49'000u);
}

TEST(CompactionPolicyTest, RejectsBadFactors) {
  for (double f : {-1.0, 1001.0, std::nan(""), std::numeric_limits<double>::infinity()}) {
    CompactionPolicyOptions o;
    o.state_size_factor = f;
    auto p = CompactionPolicy::Create(o);
    EXPECT_EQ(p.status().code(), absl::StatusCode::kInvalidArgument) << f;
  }
}

}  // namespace
}  // namespace quorumkv::kv
