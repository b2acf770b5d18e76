// Randomized checks of the checker: histories generated from a real
// sequential register (random overlapping intervals, timeouts, failures,
// stale serializable reads) must all be linearizable; the same histories with
// one read changed to an impossible value must all be caught.
#include "tests/lincheck/random_history.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <limits>
#include <map>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "tests/lincheck/linearizability_checker.h"

namespace quorumkv::lincheck {
namespace {

using ::testing::HasSubstr;
using Outcome = CheckResult::Outcome;

RandomHistoryOptions OptionsForSeed(uint64_t seed) {
  std::mt19937_64 rng(seed * 7919 + 1);
  auto pick = [&](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); };
  RandomHistoryOptions o;
  o.processes = pick(1, 8);
  o.keys = pick(1, 4);
  o.operations = pick(20, 300);
  o.info_probability = pick(0, 15) / 100.0;
  o.fail_probability = pick(0, 15) / 100.0;
  o.cas_weight = pick(0, 3) * 0.1;
  o.delete_weight = pick(0, 2) * 0.1;
  o.max_latency_ns = pick(1, 2000);
  o.max_think_ns = pick(0, 500);
  o.truncate_tail = pick(0, 1) == 1;
  return o;
}

TEST(RandomHistories, GeneratedHistoriesAreWellFormed) {
  for (uint64_t seed = 1; seed <= 20; ++seed) {
    const GeneratedHistory h = GenerateRandomHistory(OptionsForSeed(seed), seed);
    ASSERT_FALSE(h.events.empty());
    for (size_t i = 1; i < h.events.size(); ++i) {
      ASSERT_LE(h.events[i - 1].time_ns, h.events[i].time_ns) << "seed " << seed;
    }
    for (const GeneratedOp& op : h.ops) {
      ASSERT_LT(op.invoke, h.events.size());
      EXPECT_EQ(h.events[op.invoke].type, EventType::kInvoke);
      if (op.completion != GeneratedOp::kNone) {
        EXPECT_NE(h.events[op.completion].type, EventType::kInvoke);
        EXPECT_EQ(h.events[op.completion].process, h.events[op.invoke].process);
      }
    }
  }
}

TEST(RandomHistories, GeneratedFromARealRegisterAreLinearizable) {
  uint64_t with_info = 0, with_stale_serializable = 0, total_ops = 0;
  for (uint64_t seed = 1; seed <= 300; ++seed) {
    const RandomHistoryOptions options = OptionsForSeed(seed);
    const GeneratedHistory h = GenerateRandomHistory(options, seed);
    const CheckResult r = CheckHistory(h.events);
    ASSERT_EQ(r.outcome, Outcome::kLinearizable) << "seed " << seed << ": " << r.message;
    total_ops += r.operations;
    if (r.info_operations > 0) ++with_info;
    for (const Event& e : h.events) {
      if (e.consistency == Consistency::kSerializable && e.type == EventType::kOk) {
        ++with_stale_serializable;
        break;
      }
    }
  }
  // The generator really exercised timeouts and serializable reads.
  EXPECT_GT(with_info, 100u);
  EXPECT_GT(with_stale_serializable, 100u);
  EXPECT_GT(total_ops, 20000u);
}

TEST(RandomHistories, SerializationThroughTheFileFormatChangesNothing) {
  for (uint64_t seed = 1; seed <= 20; ++seed) {
    const GeneratedHistory h = GenerateRandomHistory(OptionsForSeed(seed), seed);
    std::stringstream buffer;
    HistoryWriter writer(buffer);
    for (const Event& e : h.events) writer.Write(e);
    absl::StatusOr<std::vector<Event>> back = ReadHistory(buffer);
    ASSERT_TRUE(back.ok()) << back.status();
    EXPECT_EQ(*back, h.events);
  }
}

bool IsCheckedOkGet(const Event& invoke, const Event* completion) {
  return invoke.f == Function::kGet && invoke.consistency != Consistency::kSerializable &&
         completion != nullptr && completion->type == EventType::kOk;
}

const Event* CompletionOf(const GeneratedHistory& h, const GeneratedOp& op) {
  return op.completion == GeneratedOp::kNone ? nullptr : &h.events[op.completion];
}

// The value `op` writes if it is a definite write (ok put, ok swapped cas,
// ok delete); nullopt-in-optional means "absent".
std::optional<std::optional<std::string>> DefiniteWrite(const GeneratedHistory& h,
                                                        const GeneratedOp& op) {
  const Event& inv = h.events[op.invoke];
  const Event* done = CompletionOf(h, op);
  if (done == nullptr || done->type != EventType::kOk) return std::nullopt;
  if (inv.f == Function::kPut) return std::optional<std::string>(inv.value);
  if (inv.f == Function::kDelete) return std::optional<std::string>();
  if (inv.f == Function::kCas && done->cas_ok) return std::optional<std::string>(inv.cas_new);
  return std::nullopt;
}

// Changes one checked read to a value it cannot have seen: either a value
// whose only write starts after the read returned (values are unique), or a
// value overwritten by a definite write that completed before the read
// began. Returns the index of the changed completion, or nullopt if the
// history has no such read.
std::optional<size_t> MutateOneRead(GeneratedHistory& h, std::mt19937_64& rng, bool future) {
  std::vector<std::pair<size_t, std::string>> candidates;  // (completion, impossible value)
  // For each checked read: the latest invoke of a definite write of its key
  // that returned before the read began.
  std::map<std::string, std::map<size_t, int64_t>> latest_overwrite_call;
  if (!future) {
    for (const GeneratedOp& r : h.ops) {
      const Event& rinv = h.events[r.invoke];
      if (!IsCheckedOkGet(rinv, CompletionOf(h, r))) continue;
      int64_t latest = std::numeric_limits<int64_t>::min();
      for (const GeneratedOp& w2 : h.ops) {
        const Event& w2inv = h.events[w2.invoke];
        if (w2inv.key != rinv.key || !DefiniteWrite(h, w2).has_value()) continue;
        if (h.events[w2.completion].time_ns < rinv.time_ns) {
          latest = std::max(latest, w2inv.time_ns);
        }
      }
      latest_overwrite_call[rinv.key][r.invoke] = latest;
    }
  }
  for (const GeneratedOp& r : h.ops) {
    const Event& rinv = h.events[r.invoke];
    const Event* rdone = CompletionOf(h, r);
    if (!IsCheckedOkGet(rinv, rdone)) continue;
    for (const GeneratedOp& w : h.ops) {
      const Event& winv = h.events[w.invoke];
      if (winv.key != rinv.key) continue;
      if (future) {
        // A put or cas that may have taken effect (ok or info), invoked after
        // the read returned. (A failed write's value counts as never written,
        // which the checker reports without a search.)
        if (winv.time_ns <= rdone->time_ns) continue;
        const Event* wdone = CompletionOf(h, w);
        if (wdone != nullptr && wdone->type == EventType::kFail) continue;
        if (winv.f == Function::kPut) candidates.emplace_back(r.completion, *winv.value);
        if (winv.f == Function::kCas) candidates.emplace_back(r.completion, winv.cas_new);
        continue;
      }
      auto written = DefiniteWrite(h, w);
      if (!written.has_value() || !written->has_value()) continue;  // need a real value
      if (**written == rdone->value) continue;
      // Overwritten: a definite write W2 began after W returned and returned
      // before the read began.
      if (h.events[w.completion].time_ns < latest_overwrite_call[rinv.key].at(r.invoke)) {
        candidates.emplace_back(r.completion, **written);
      }
    }
  }
  if (candidates.empty()) return std::nullopt;
  const auto& [index, value] =
      candidates[std::uniform_int_distribution<size_t>(0, candidates.size() - 1)(rng)];
  h.events[index].value = value;
  return index;
}

void ExpectMutationsCaught(bool future) {
  int mutated = 0;
  for (uint64_t seed = 1; seed <= 300; ++seed) {
    GeneratedHistory h = GenerateRandomHistory(OptionsForSeed(seed), seed);
    std::mt19937_64 rng(seed);
    std::optional<size_t> changed = MutateOneRead(h, rng, future);
    if (!changed.has_value()) continue;
    ++mutated;
    const CheckResult r = CheckHistory(h.events);
    ASSERT_EQ(r.outcome, Outcome::kNotLinearizable)
        << "seed " << seed << " read at event #" << (*changed + 1) << ": " << r.message;
    EXPECT_EQ(r.key, h.events[*changed].key) << "seed " << seed;
    EXPECT_THAT(r.message, HasSubstr("could not be placed")) << "seed " << seed;
  }
  EXPECT_GT(mutated, 150) << "too few histories had a read to mutate";
}

TEST(RandomHistories, ReadOfAFutureValueIsCaught) { ExpectMutationsCaught(/*future=*/true); }

TEST(RandomHistories, ReadOfAnOverwrittenValueIsCaught) {
  ExpectMutationsCaught(/*future=*/false);
}

TEST(RandomHistories, ReadOfANeverWrittenValueIsCaught) {
  int mutated = 0;
  for (uint64_t seed = 1; seed <= 100; ++seed) {
    GeneratedHistory h = GenerateRandomHistory(OptionsForSeed(seed), seed);
    for (const GeneratedOp& op : h.ops) {
      const Event* done = CompletionOf(h, op);
      if (!IsCheckedOkGet(h.events[op.invoke], done)) continue;
      h.events[op.completion].value = "never-written";
      ++mutated;
      const CheckResult r = CheckHistory(h.events);
      ASSERT_EQ(r.outcome, Outcome::kNotLinearizable) << "seed " << seed;
      EXPECT_THAT(r.message, HasSubstr("\"never-written\""));
      break;
    }
  }
  EXPECT_GT(mutated, 50);
}

TEST(RandomHistories, SmallBudgetsNeverGiveAWrongVerdict) {
  // With the budget cut short the checker may say unknown, but a valid
  // history is never called a violation and a broken one never passes.
  for (uint64_t seed = 1; seed <= 100; ++seed) {
    CheckOptions options;
    options.max_states_per_key = 1 + seed % 50;
    GeneratedHistory h = GenerateRandomHistory(OptionsForSeed(seed), seed);
    const Outcome valid = CheckHistory(h.events, options).outcome;
    EXPECT_TRUE(valid == Outcome::kLinearizable || valid == Outcome::kUnknown) << "seed " << seed;
    std::mt19937_64 rng(seed);
    if (!MutateOneRead(h, rng, /*future=*/false).has_value()) continue;
    const Outcome broken = CheckHistory(h.events, options).outcome;
    EXPECT_TRUE(broken == Outcome::kNotLinearizable || broken == Outcome::kUnknown)
        << "seed " << seed;
  }
}

}  // namespace
}  // namespace quorumkv::lincheck
