// The leader's queue of ReadIndex requests (Raft thesis §6.4). Each read is
// pinned to the commit index at its arrival and waits for a heartbeat round
// sent after its arrival to be acknowledged by a quorum: then no other
// leader can have committed anything newer, and the read is released.
#pragma once

#include <cstdint>
#include <deque>
#include <vector>

#include "raft/types.h"

namespace quorumkv::raft {

struct PendingRead {
  uint64_t read_id = 0;
  NodeId from;          // this node, or the follower that forwarded it
  Index read_index;     // the leader's commit index when the read arrived
  uint64_t round = 0;   // the heartbeat round that must be quorum-acked
};

class ReadIndexQueue {
 public:
  // Rounds are non-decreasing in arrival order.
  void Add(const PendingRead& read) { queue_.push_back(read); }
  // Removes and returns every read whose round is <= acked_round.
  std::vector<PendingRead> ReleaseUpTo(uint64_t acked_round);
  std::vector<PendingRead> TakeAll();
  bool empty() const { return queue_.empty(); }
  size_t size() const { return queue_.size(); }

 private:
  std::deque<PendingRead> queue_;
};

}  // namespace quorumkv::raft
