// A linearizability checker for key-value histories (shared/HISTORY.md).
//
// The model is one register per key (absent, or a value) with put, get,
// delete and compare-and-swap. A map is linearizable iff every key's
// sub-history is (P-compositionality, Herlihy & Wing), so the history is split
// by key and each key is searched on its own with Wing & Gong's algorithm and
// Lowe's memoization: a depth-first search over "which pending operation takes
// effect next", pruned by a cache of (set of operations already linearized,
// register state) pairs seen before — the algorithm of Porcupine.
//
// How events become operations:
//  - each invoke is paired with the next completion of the same process; a
//    process with two outstanding operations, a completion without an invoke,
//    or an invoke from a process after its `info` completion is an invalid
//    history, never a verdict;
//  - `fail` operations are dropped (they certainly did not take effect);
//  - `info` operations, and invokes with no completion at all, may take effect
//    at any time after their invoke, or never: they get an infinite return
//    time and the search may place them or leave them out. An info get
//    constrains nothing and is dropped;
//  - serializable gets are left out (they may legally be stale); linearizable
//    and lease gets are checked;
//  - an operation that returns at the same instant another one is invoked is
//    treated as concurrent with it: a tie in the shared clock does not prove
//    the order, and the checker never reports a violation it cannot prove.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "tests/lincheck/history.h"

namespace quorumkv::lincheck {

struct CheckOptions {
  // Search budget: the number of distinct (linearized set, state)
  // configurations explored for one key before giving up with kUnknown.
  uint64_t max_states_per_key = 50'000'000;
  // Memory budget (approximate: containers grow by doubling) for the
  // memoization cache of one key; exceeding it also gives kUnknown rather
  // than exhausting the machine. Whichever budget runs out first decides.
  // The default reaches a verdict on tens of thousands of operations per key
  // with ten concurrent clients and many timeouts.
  uint64_t max_cache_bytes_per_key = uint64_t{2} << 30;
};

struct CheckResult {
  enum class Outcome { kLinearizable, kNotLinearizable, kUnknown /*budget exhausted*/, kInvalidHistory };
  Outcome outcome = Outcome::kLinearizable;
  std::string key;      // the key whose sub-history failed
  std::string message;  // for a violation: the operation that could not be placed, readable
  uint64_t operations = 0;  // completed operations checked
  uint64_t keys = 0;
  // Additions beyond the shared API:
  uint64_t info_operations = 0;  // info or unfinished operations the search could place or omit
  uint64_t states = 0;           // configurations explored, summed over the keys searched
};

CheckResult CheckHistory(const std::vector<Event>& events, const CheckOptions& options = {});

// "linearizable", "not linearizable", "unknown", "invalid history".
std::string OutcomeName(CheckResult::Outcome outcome);

}  // namespace quorumkv::lincheck
