#include "raft/read_index_queue.h"

namespace quorumkv::raft {

std::vector<PendingRead> ReadIndexQueue::ReleaseUpTo(uint64_t acked_round) {
  std::vector<PendingRead> out;
  while (!queue_.empty() && queue_.front().round <= acked_round) {
    out.push_back(queue_.front());
    queue_.pop_front();
  }
  return out;
}

std::vector<PendingRead> ReadIndexQueue::TakeAll() {
  std::vector<PendingRead> out(queue_.begin(), queue_.end());
  queue_.clear();
  return out;
}

}  // namespace quorumkv::raft
