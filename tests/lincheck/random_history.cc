#include "tests/lincheck/random_history.h"

#include <algorithm>
#include <map>
#include <optional>
#include <queue>
#include <random>
#include <string>
#include <tuple>

namespace quorumkv::lincheck {
namespace {

enum class Action : uint8_t {
  // At equal times an operation's effect comes before its completion.
  kEffect = 0,
  kComplete = 1,
  kInvoke = 2,
};

struct SimOp {
  Event invoke;
  EventType outcome = EventType::kOk;
  bool takes_effect = false;
  // Results, fixed when the operation takes effect.
  std::optional<std::string> read;
  bool swapped = false;
  int slot = 0;
  size_t invoke_seq = 0;
  std::optional<size_t> completion_seq;
};

class Generator {
 public:
  Generator(const RandomHistoryOptions& options, uint64_t seed) : o_(options), rng_(seed) {}

  GeneratedHistory Run();

 private:
  int64_t Uniform(int64_t lo, int64_t hi) {
    return std::uniform_int_distribution<int64_t>(lo, hi)(rng_);
  }
  bool Chance(double p) { return std::uniform_real_distribution<double>(0, 1)(rng_) < p; }
  void Schedule(int64_t time, Action action, size_t index) {
    queue_.emplace(time, action, next_order_++, index);
  }
  size_t Emit(const Event& e) {
    emitted_.push_back(e);
    return emitted_.size() - 1;
  }
  void Invoke(int64_t now, int slot);
  void Effect(SimOp& op);
  void Complete(int64_t now, SimOp& op);

  RandomHistoryOptions o_;
  std::mt19937_64 rng_;
  // (time, action, order, op or slot index), earliest first.
  using Item = std::tuple<int64_t, Action, uint64_t, size_t>;
  std::priority_queue<Item, std::vector<Item>, std::greater<Item>> queue_;
  uint64_t next_order_ = 0;

  std::vector<int64_t> slot_process_;
  int64_t next_process_ = 0;
  uint64_t next_value_ = 0;
  int invoked_ = 0;
  int64_t last_invoke_time_ = 0;

  std::map<std::string, std::optional<std::string>> registers_;
  std::map<std::string, std::vector<std::optional<std::string>>> versions_;  // incl. the initial absent
  std::vector<SimOp> ops_;
  std::vector<Event> emitted_;  // in emission (time) order
};

void Generator::Invoke(int64_t now, int slot) {
  if (invoked_ >= o_.operations) return;
  ++invoked_;
  last_invoke_time_ = now;
  SimOp op;
  op.slot = slot;
  Event& e = op.invoke;
  e.process = slot_process_[slot];
  e.type = EventType::kInvoke;
  e.time_ns = now;
  e.key = "k" + std::to_string(Uniform(0, o_.keys - 1));
  auto& versions = versions_[e.key];
  if (versions.empty()) versions.push_back(std::nullopt);

  const double total = o_.put_weight + o_.get_weight + o_.delete_weight + o_.cas_weight;
  double pick = std::uniform_real_distribution<double>(0, total)(rng_);
  auto fresh = [&] {
    return "v-" + std::to_string(e.process) + "-" + std::to_string(next_value_++);
  };
  if ((pick -= o_.put_weight) < 0) {
    e.f = Function::kPut;
    e.value = fresh();
  } else if ((pick -= o_.get_weight) < 0) {
    e.f = Function::kGet;
    const double c = std::uniform_real_distribution<double>(0, 1)(rng_);
    if (c < o_.serializable_probability) {
      e.consistency = Consistency::kSerializable;
    } else if (c < o_.serializable_probability + o_.lease_probability) {
      e.consistency = Consistency::kLease;
    }
  } else if ((pick -= o_.delete_weight) < 0) {
    e.f = Function::kDelete;
  } else {
    e.f = Function::kCas;
    const int64_t which = Uniform(0, 3);
    if (which <= 1) {
      e.cas_expected = registers_[e.key];
    } else if (which == 2) {
      e.cas_expected = versions[Uniform(0, static_cast<int64_t>(versions.size()) - 1)];
    }  // else: expected absent
    e.cas_new = fresh();
  }

  int64_t complete_at;
  if (Chance(o_.fail_probability)) {
    op.outcome = EventType::kFail;
    complete_at = now + Uniform(0, o_.max_latency_ns);
  } else if (Chance(o_.info_probability)) {
    op.outcome = EventType::kInfo;
    complete_at = now + Uniform(0, o_.max_latency_ns);
    if (Chance(0.5)) {
      // A timed-out request may still be applied, even after the client gave up.
      op.takes_effect = true;
      Schedule(now + Uniform(0, 3 * o_.max_latency_ns), Action::kEffect, ops_.size());
    }
  } else {
    op.outcome = EventType::kOk;
    op.takes_effect = true;
    const int64_t effect_at = now + Uniform(0, o_.max_latency_ns);
    Schedule(effect_at, Action::kEffect, ops_.size());
    complete_at = effect_at + Uniform(0, o_.max_latency_ns);
  }
  Schedule(complete_at, Action::kComplete, ops_.size());
  op.invoke_seq = Emit(e);
  ops_.push_back(std::move(op));
}

void Generator::Effect(SimOp& op) {
  const Event& e = op.invoke;
  std::optional<std::string>& reg = registers_[e.key];
  auto& versions = versions_[e.key];
  switch (e.f) {
    case Function::kPut:
      reg = e.value;
      versions.push_back(reg);
      break;
    case Function::kDelete:
      reg.reset();
      versions.push_back(reg);
      break;
    case Function::kGet:
      if (e.consistency == Consistency::kSerializable) {
        // A follower's applied state: any version up to now.
        op.read = versions[Uniform(0, static_cast<int64_t>(versions.size()) - 1)];
      } else {
        op.read = reg;
      }
      break;
    case Function::kCas:
      op.swapped = reg == e.cas_expected;
      if (op.swapped) {
        reg = e.cas_new;
        versions.push_back(reg);
      }
      break;
  }
}

void Generator::Complete(int64_t now, SimOp& op) {
  Event e = op.invoke;
  e.type = op.outcome;
  e.time_ns = now;
  if (e.f == Function::kGet) e.value = op.outcome == EventType::kOk ? op.read : std::nullopt;
  if (e.f == Function::kCas) e.cas_ok = op.outcome == EventType::kOk && op.swapped;
  op.completion_seq = Emit(e);
  if (op.outcome == EventType::kInfo) {
    // After an info a process never issues again: the client continues
    // under a new id (HISTORY.md).
    slot_process_[op.slot] = next_process_++;
  }
  Schedule(now + Uniform(0, o_.max_think_ns), Action::kInvoke, static_cast<size_t>(op.slot));
}

GeneratedHistory Generator::Run() {
  for (int slot = 0; slot < o_.processes; ++slot) {
    slot_process_.push_back(next_process_++);
    Schedule(Uniform(0, o_.max_think_ns), Action::kInvoke, static_cast<size_t>(slot));
  }
  while (!queue_.empty()) {
    const auto [time, action, order, index] = queue_.top();
    queue_.pop();
    switch (action) {
      case Action::kInvoke: Invoke(time, static_cast<int>(index)); break;
      case Action::kEffect: Effect(ops_[index]); break;
      case Action::kComplete: Complete(time, ops_[index]); break;
    }
  }

  // The test "ends" at the last invoke: later completions were never seen.
  std::vector<bool> keep(emitted_.size(), true);
  if (o_.truncate_tail) {
    for (SimOp& op : ops_) {
      if (op.completion_seq && emitted_[*op.completion_seq].time_ns > last_invoke_time_) {
        keep[*op.completion_seq] = false;
        op.completion_seq.reset();
      }
    }
  }
  GeneratedHistory out;
  std::vector<size_t> new_index(emitted_.size(), GeneratedOp::kNone);
  for (size_t i = 0; i < emitted_.size(); ++i) {
    if (!keep[i]) continue;
    new_index[i] = out.events.size();
    out.events.push_back(emitted_[i]);
  }
  for (const SimOp& op : ops_) {
    GeneratedOp g;
    g.invoke = new_index[op.invoke_seq];
    if (op.completion_seq) g.completion = new_index[*op.completion_seq];
    out.ops.push_back(g);
  }
  return out;
}

}  // namespace

GeneratedHistory GenerateRandomHistory(const RandomHistoryOptions& options, uint64_t seed) {
  return Generator(options, seed).Run();
}

}  // namespace quorumkv::lincheck
