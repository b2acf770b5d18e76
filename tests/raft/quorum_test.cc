// Quorum arithmetic (raft/quorum.h).
#include "raft/quorum.h"

#include <gtest/gtest.h>

#include "raft/types.h"

namespace quorumkv::raft {
namespace {

TEST(QuorumValue, EmptySetIsZero) {
  EXPECT_EQ(QuorumValue(std::vector<uint64_t>{}), 0u);
  EXPECT_EQ(QuorumValue(std::vector<Index>{}), Index(0));
}

TEST(QuorumValue, SingleVoterIsItsOwnValue) { EXPECT_EQ(QuorumValue(std::vector<uint64_t>{7}), 7u); }

// Figure 2: commitIndex is the largest N such that a majority of
// matchIndex[i] >= N.
TEST(QuorumValue, Figure2_LargestValueAMajorityHasReached) {
  EXPECT_EQ(QuorumValue(std::vector<uint64_t>{1, 2, 3}), 2u);
  EXPECT_EQ(QuorumValue(std::vector<uint64_t>{3, 1, 2}), 2u);
  EXPECT_EQ(QuorumValue(std::vector<uint64_t>{5, 5, 1}), 5u);
  EXPECT_EQ(QuorumValue(std::vector<uint64_t>{9, 7, 5, 3, 1}), 5u);
  EXPECT_EQ(QuorumValue(std::vector<uint64_t>{1, 9, 3, 7, 5}), 5u);
  EXPECT_EQ(QuorumValue(std::vector<uint64_t>{0, 0, 0, 10, 10}), 0u);
  EXPECT_EQ(QuorumValue(std::vector<uint64_t>{10, 10, 10, 0, 0}), 10u);
}

// With an even number of voters, a majority is n/2 + 1: half is not enough.
TEST(QuorumValue, EvenVoterCountNeedsMoreThanHalf) {
  EXPECT_EQ(QuorumValue(std::vector<uint64_t>{1, 2, 3, 4}), 2u);
  EXPECT_EQ(QuorumValue(std::vector<uint64_t>{5, 5, 1, 1}), 1u);
  EXPECT_EQ(QuorumValue(std::vector<uint64_t>{4, 3}), 3u);
}

TEST(QuorumValue, WorksOnStrongTypesAndSignedTicks) {
  EXPECT_EQ(QuorumValue(std::vector<Index>{Index(4), Index(8), Index(6)}), Index(6));
  EXPECT_EQ(QuorumValue(std::vector<int64_t>{-1, 20, 15}), 15);
}

TEST(TallyVotes, Section5_2_WinsWithMajority) {
  EXPECT_EQ(TallyVotes(1, 1, 0), VoteResult::kWon);
  EXPECT_EQ(TallyVotes(3, 2, 0), VoteResult::kWon);
  EXPECT_EQ(TallyVotes(3, 2, 1), VoteResult::kWon);
  EXPECT_EQ(TallyVotes(4, 3, 0), VoteResult::kWon);
  EXPECT_EQ(TallyVotes(5, 3, 2), VoteResult::kWon);
}

TEST(TallyVotes, Section5_2_PendingWhileAMajorityIsStillPossible) {
  EXPECT_EQ(TallyVotes(3, 1, 0), VoteResult::kPending);
  EXPECT_EQ(TallyVotes(3, 1, 1), VoteResult::kPending);
  EXPECT_EQ(TallyVotes(4, 2, 1), VoteResult::kPending);
  EXPECT_EQ(TallyVotes(5, 2, 2), VoteResult::kPending);
}

TEST(TallyVotes, Section5_2_LostOnceNoMajorityIsPossible) {
  EXPECT_EQ(TallyVotes(3, 1, 2), VoteResult::kLost);
  EXPECT_EQ(TallyVotes(3, 0, 2), VoteResult::kLost);
  EXPECT_EQ(TallyVotes(4, 2, 2), VoteResult::kLost);  // a split vote
  EXPECT_EQ(TallyVotes(5, 2, 3), VoteResult::kLost);
}

}  // namespace
}  // namespace quorumkv::raft
