// The leader's per-peer replication state machine (raft/progress.h).
#include "raft/progress.h"

#include <gtest/gtest.h>

namespace quorumkv::raft {
namespace {

Progress Replicating(Index match, int max_inflight = 3) {
  Progress pr(match + 1, max_inflight);
  pr.match_index = match;
  pr.BecomeReplicate();
  return pr;
}

TEST(Progress, StartsProbingAtNextIndex) {
  Progress pr(Index(10), 4);
  EXPECT_EQ(pr.state, ProgressState::kProbe);
  EXPECT_EQ(pr.next_index, Index(10));
  EXPECT_EQ(pr.match_index, Index(0));
  EXPECT_FALSE(pr.IsPaused());
  EXPECT_STREQ(ProgressStateName(pr.state), "probe");
  EXPECT_STREQ(ProgressStateName(ProgressState::kReplicate), "replicate");
  EXPECT_STREQ(ProgressStateName(ProgressState::kSnapshot), "snapshot");
}

// Probe: one message at a time, until it is answered.
TEST(Progress, ProbeAllowsOneMessageInFlight) {
  Progress pr(Index(10), 4);
  pr.SentAppend(Index(12), true);
  EXPECT_TRUE(pr.IsPaused());
  EXPECT_EQ(pr.next_index, Index(10));  // no optimistic update while probing
  EXPECT_TRUE(pr.MaybeUpdate(Index(12)));
  EXPECT_FALSE(pr.IsPaused());
  EXPECT_EQ(pr.match_index, Index(12));
  EXPECT_EQ(pr.next_index, Index(13));
}

TEST(Progress, MaybeUpdateIgnoresStaleAcknowledgements) {
  Progress pr = Replicating(Index(8));
  EXPECT_FALSE(pr.MaybeUpdate(Index(5)));
  EXPECT_EQ(pr.match_index, Index(8));
  EXPECT_FALSE(pr.MaybeUpdate(Index(8)));
  EXPECT_TRUE(pr.MaybeUpdate(Index(9)));
  EXPECT_EQ(pr.match_index, Index(9));
  EXPECT_EQ(pr.next_index, Index(10));
}

// Replicate: optimistic pipelining within a bounded window.
TEST(Progress, ReplicatePipelinesUpToTheInflightLimit) {
  Progress pr = Replicating(Index(5), 3);
  EXPECT_EQ(pr.next_index, Index(6));
  pr.SentAppend(Index(7), true);
  pr.SentAppend(Index(9), true);
  EXPECT_EQ(pr.next_index, Index(10));
  EXPECT_FALSE(pr.IsPaused());
  pr.SentAppend(Index(9), false);  // an empty append takes no slot
  EXPECT_EQ(pr.inflight_count(), 2u);
  pr.SentAppend(Index(12), true);
  EXPECT_TRUE(pr.IsPaused());
  EXPECT_EQ(pr.inflight_count(), 3u);
  pr.FreeInflightsTo(Index(8));
  EXPECT_EQ(pr.inflight_count(), 2u);
  EXPECT_FALSE(pr.IsPaused());
  pr.FreeInflightsTo(Index(12));
  EXPECT_EQ(pr.inflight_count(), 0u);
}

// A rejection in replicate goes back to match + 1; one at or below the
// match index is stale (that prefix is known to match).
TEST(Progress, ReplicateRejectionRewindsToMatchPlusOne) {
  Progress pr = Replicating(Index(5));
  pr.SentAppend(Index(9), true);
  EXPECT_FALSE(pr.MaybeDecreaseTo(Index(5), Index(3)));
  EXPECT_FALSE(pr.MaybeDecreaseTo(Index(2), Index(1)));
  EXPECT_EQ(pr.next_index, Index(10));
  EXPECT_TRUE(pr.MaybeDecreaseTo(Index(7), Index(6)));
  EXPECT_EQ(pr.next_index, Index(6));
}

// In probe only the answer to the message in flight (prev = next - 1)
// counts; the hint moves next_index back, never below match + 1.
TEST(Progress, ProbeRejectionFollowsHintButOnlyForTheProbeInFlight) {
  Progress pr(Index(20), 4);
  pr.match_index = Index(4);
  pr.SentAppend(Index(19), false);
  EXPECT_FALSE(pr.MaybeDecreaseTo(Index(15), Index(10)));  // an older probe
  EXPECT_EQ(pr.next_index, Index(20));
  EXPECT_TRUE(pr.IsPaused());
  EXPECT_TRUE(pr.MaybeDecreaseTo(Index(19), Index(12)));
  EXPECT_EQ(pr.next_index, Index(12));
  EXPECT_FALSE(pr.IsPaused());
  pr.SentAppend(Index(11), false);
  EXPECT_TRUE(pr.MaybeDecreaseTo(Index(11), Index(1)));  // hint below match
  EXPECT_EQ(pr.next_index, Index(5));
  // A hint above the rejected index is capped by it.
  pr.SentAppend(Index(4), false);
  EXPECT_TRUE(pr.MaybeDecreaseTo(Index(4), Index(50)));
  EXPECT_EQ(pr.next_index, Index(5));
}

TEST(Progress, SnapshotPausesUntilBackToProbe) {
  Progress pr = Replicating(Index(3));
  pr.SentAppend(Index(6), true);
  pr.BecomeSnapshot(Index(40));
  EXPECT_EQ(pr.state, ProgressState::kSnapshot);
  EXPECT_TRUE(pr.IsPaused());
  EXPECT_EQ(pr.inflight_count(), 0u);
  EXPECT_EQ(pr.pending_snapshot, Index(40));
  // Back to probing: resume after the snapshot it was sent.
  pr.BecomeProbe();
  EXPECT_EQ(pr.state, ProgressState::kProbe);
  EXPECT_EQ(pr.next_index, Index(41));
  EXPECT_EQ(pr.pending_snapshot, Index(0));
  EXPECT_FALSE(pr.IsPaused());
}

TEST(Progress, FailedSnapshotResumesAfterMatch) {
  Progress pr = Replicating(Index(3));
  pr.BecomeSnapshot(Index(40));
  pr.pending_snapshot = Index(0);  // ReportSnapshot(failed)
  pr.BecomeProbe();
  EXPECT_EQ(pr.next_index, Index(4));
}

TEST(Progress, BecomeReplicateAndProbeResetWindow) {
  Progress pr = Replicating(Index(3), 2);
  pr.SentAppend(Index(5), true);
  pr.SentAppend(Index(7), true);
  ASSERT_TRUE(pr.IsPaused());
  pr.BecomeProbe();
  EXPECT_EQ(pr.inflight_count(), 0u);
  EXPECT_EQ(pr.next_index, Index(4));
  EXPECT_FALSE(pr.IsPaused());
  pr.MaybeUpdate(Index(7));
  pr.BecomeReplicate();
  EXPECT_EQ(pr.next_index, Index(8));
  EXPECT_FALSE(pr.IsPaused());
}

}  // namespace
}  // namespace quorumkv::raft
