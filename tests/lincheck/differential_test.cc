// The checker against a brute-force oracle on thousands of small histories,
// linearizable or not: the oracle tries every subset of the timed-out
// operations and every order that respects real time, with no pruning at
// all. Any disagreement is a bug in the checker's search or its prunings
// (subsumption, twins, dropped and merged timed-out writes).
#include <gtest/gtest.h>

#include <optional>
#include <random>
#include <string>
#include <vector>

#include "tests/lincheck/linearizability_checker.h"
#include "tests/lincheck/random_history.h"

namespace quorumkv::lincheck {
namespace {

struct OracleOp {
  Function f;
  bool info;
  int64_t call, ret;
  std::optional<std::string> value;  // put: written; get: read
  std::optional<std::string> expected;
  std::string new_value;
  bool swapped;
};

// Pairs events by process in the plainest way, keeping what the format says
// is checked: no fail ops, no serializable gets, no timed-out gets.
std::vector<OracleOp> OracleOps(const std::vector<Event>& events) {
  std::vector<OracleOp> ops;
  std::vector<std::optional<size_t>> open;  // by process id (small in these tests)
  std::vector<std::pair<size_t, std::optional<size_t>>> pairs;
  for (size_t i = 0; i < events.size(); ++i) {
    const size_t p = static_cast<size_t>(events[i].process);
    if (open.size() <= p) open.resize(p + 1);
    if (events[i].type == EventType::kInvoke) {
      open[p] = i;
    } else {
      pairs.emplace_back(*open[p], i);
      open[p].reset();
    }
  }
  for (const auto& o : open) {
    if (o.has_value()) pairs.emplace_back(*o, std::nullopt);
  }
  for (const auto& [inv_index, done_index] : pairs) {
    const Event& inv = events[inv_index];
    const Event* done = done_index ? &events[*done_index] : nullptr;
    if (done != nullptr && done->type == EventType::kFail) continue;
    OracleOp op;
    op.f = inv.f;
    op.info = done == nullptr || done->type == EventType::kInfo;
    if (inv.f == Function::kGet && (op.info || inv.consistency == Consistency::kSerializable)) {
      continue;
    }
    op.call = inv.time_ns;
    op.ret = op.info ? 0 : done->time_ns;
    op.value = inv.f == Function::kGet ? done->value : inv.value;
    op.expected = inv.cas_expected;
    op.new_value = inv.cas_new;
    op.swapped = !op.info && inv.f == Function::kCas && done->cas_ok;
    ops.push_back(op);
  }
  return ops;
}

// Depth-first over every order: `placed` ops so far, register `state`.
bool Extend(const std::vector<OracleOp>& ops, std::vector<bool>& placed, size_t remaining,
            const std::optional<std::string>& state) {
  if (remaining == 0) return true;
  for (size_t i = 0; i < ops.size(); ++i) {
    if (placed[i]) continue;
    // i may go next only if no unplaced op returned before i was invoked.
    bool ready = true;
    for (size_t j = 0; j < ops.size() && ready; ++j) {
      if (j != i && !placed[j] && !ops[j].info && ops[j].ret < ops[i].call) ready = false;
    }
    if (!ready) continue;
    const OracleOp& op = ops[i];
    std::optional<std::string> next = state;
    switch (op.f) {
      case Function::kPut: next = op.value; break;
      case Function::kDelete: next.reset(); break;
      case Function::kGet:
        if (state != op.value) continue;
        break;
      case Function::kCas:
        if (op.info) {
          if (state == op.expected) next = op.new_value;
        } else if (op.swapped) {
          if (state != op.expected) continue;
          next = op.new_value;
        } else if (state == op.expected) {
          continue;
        }
        break;
    }
    placed[i] = true;
    const bool ok = Extend(ops, placed, remaining - 1, next);
    placed[i] = false;
    if (ok) return true;
  }
  return false;
}

bool OracleLinearizable(const std::vector<Event>& events) {
  const std::vector<OracleOp> all = OracleOps(events);
  std::vector<size_t> info;
  for (size_t i = 0; i < all.size(); ++i) {
    if (all[i].info) info.push_back(i);
  }
  // Every subset of the info operations takes effect; the rest never do.
  for (uint64_t mask = 0; mask < (uint64_t{1} << info.size()); ++mask) {
    std::vector<OracleOp> chosen;
    for (size_t i = 0, k = 0; i < all.size(); ++i) {
      if (all[i].info) {
        if ((mask >> k++) & 1) chosen.push_back(all[i]);
      } else {
        chosen.push_back(all[i]);
      }
    }
    std::vector<bool> placed(chosen.size(), false);
    if (Extend(chosen, placed, chosen.size(), std::nullopt)) return true;
  }
  return false;
}

// Damages a history at random: a read returns another value that was
// written (or absent), or a cas reports the other outcome.
void Damage(std::vector<Event>& events, std::mt19937_64& rng) {
  std::vector<std::optional<std::string>> values = {std::nullopt};
  std::vector<size_t> targets;
  for (size_t i = 0; i < events.size(); ++i) {
    const Event& e = events[i];
    if (e.type == EventType::kInvoke && e.f == Function::kPut) values.push_back(e.value);
    if (e.type == EventType::kInvoke && e.f == Function::kCas) values.push_back(e.cas_new);
    if (e.type == EventType::kOk && (e.f == Function::kGet || e.f == Function::kCas)) {
      targets.push_back(i);
    }
  }
  if (targets.empty()) return;
  Event& e = events[targets[std::uniform_int_distribution<size_t>(0, targets.size() - 1)(rng)]];
  if (e.f == Function::kCas) {
    e.cas_ok = !e.cas_ok;
  } else {
    e.value = values[std::uniform_int_distribution<size_t>(0, values.size() - 1)(rng)];
  }
}

TEST(Differential, AgreesWithBruteForceOnSmallHistories) {
  int linearizable = 0, violations = 0;
  for (uint64_t seed = 1; seed <= 20000; ++seed) {
    std::mt19937_64 rng(seed);
    auto pick = [&](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); };
    RandomHistoryOptions o;
    o.processes = pick(1, 4);
    o.keys = 1;
    o.operations = pick(1, 10);
    o.info_probability = pick(0, 5) * 0.1;
    o.fail_probability = pick(0, 2) * 0.1;
    o.cas_weight = pick(0, 3) * 0.15;
    o.delete_weight = pick(0, 1) * 0.1;
    o.max_latency_ns = pick(1, 20);
    o.max_think_ns = pick(0, 10);
    o.truncate_tail = pick(0, 1) == 1;
    GeneratedHistory h = GenerateRandomHistory(o, seed);
    const int damage = pick(0, 2);
    for (int i = 0; i < damage; ++i) Damage(h.events, rng);

    const bool expected = OracleLinearizable(h.events);
    const CheckResult r = CheckHistory(h.events);
    ASSERT_NE(r.outcome, CheckResult::Outcome::kInvalidHistory) << r.message;
    ASSERT_NE(r.outcome, CheckResult::Outcome::kUnknown) << r.message;
    const bool got = r.outcome == CheckResult::Outcome::kLinearizable;
    ASSERT_EQ(got, expected) << "seed " << seed << ": " << r.message;
    (expected ? linearizable : violations)++;
  }
  // Both verdicts were exercised in quantity.
  EXPECT_GT(linearizable, 5000);
  EXPECT_GT(violations, 3000);
}

}  // namespace
}  // namespace quorumkv::lincheck
