// Quorum arithmetic, kept apart so it can be tested on its own.
#pragma once

#include <algorithm>
#include <cstdint>
#include <functional>
#include <vector>

namespace quorumkv::raft {

// The largest value v such that a majority of `values` are >= v: the commit
// index from match indexes, the acked heartbeat round, the last contact
// tick. `values` holds one value per voter; an empty set yields 0.
template <typename T>
T QuorumValue(std::vector<T> values) {
  if (values.empty()) return T{};
  size_t quorum = values.size() / 2 + 1;
  std::nth_element(values.begin(), values.begin() + (quorum - 1), values.end(), std::greater<T>());
  return values[quorum - 1];
}

enum class VoteResult { kPending, kWon, kLost };

// Tally of an election among `voters`, given the answers received so far.
inline VoteResult TallyVotes(size_t voters, size_t granted, size_t rejected) {
  size_t quorum = voters / 2 + 1;
  if (granted >= quorum) return VoteResult::kWon;
  if (rejected > voters - quorum) return VoteResult::kLost;
  return VoteResult::kPending;
}

}  // namespace quorumkv::raft
