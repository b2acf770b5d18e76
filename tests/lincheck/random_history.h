// Random histories that are linearizable by construction, for testing the
// checker and measuring its speed: concurrent clients run against one real
// sequential register per key, each operation taking effect at a random
// instant inside its [invoke, completion] interval (or, for a timed-out
// operation, possibly after its info completion, or never).
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "tests/lincheck/history.h"

namespace quorumkv::lincheck {

struct RandomHistoryOptions {
  int processes = 5;         // concurrent clients
  int keys = 3;
  int operations = 200;      // invocations in total
  double put_weight = 0.35;  // relative weights of the functions
  double get_weight = 0.4;
  double delete_weight = 0.1;
  double cas_weight = 0.15;
  double fail_probability = 0.05;  // completed as fail, no effect
  double info_probability = 0.05;  // completed as info; takes effect (maybe late) half the time
  double lease_probability = 0.1;  // gets at lease consistency (correct values)
  // Gets at serializable consistency that may return any earlier version of
  // the key: legal, and the checker must ignore them.
  double serializable_probability = 0.1;
  // Leave the last operations without a completion (the test ended).
  bool truncate_tail = true;
  int64_t max_latency_ns = 1000;  // invoke to effect, effect to completion
  int64_t max_think_ns = 300;     // completion to the next invoke
};

// An operation of the generated history: where its events are.
struct GeneratedOp {
  size_t invoke = 0;
  size_t completion = kNone;  // kNone when the history ends first
  static constexpr size_t kNone = static_cast<size_t>(-1);
};

struct GeneratedHistory {
  std::vector<Event> events;  // in time order
  std::vector<GeneratedOp> ops;
};

GeneratedHistory GenerateRandomHistory(const RandomHistoryOptions& options, uint64_t seed);

}  // namespace quorumkv::lincheck
