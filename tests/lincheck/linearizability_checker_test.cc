// The linearizability checker on hand-made histories: known violations are
// found and named, valid histories pass, invalid histories are rejected.
#include "tests/lincheck/linearizability_checker.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <optional>
#include <string>
#include <vector>

namespace quorumkv::lincheck {
namespace {

using ::testing::HasSubstr;
using Outcome = CheckResult::Outcome;

// Builds histories one operation at a time: Op(...) appends an invoke at
// `call` and a completion at `ret` (or none for pending operations); Events()
// returns them in time order, as a recorder would write them.
class History {
 public:
  History& Put(int64_t p, const std::string& key, const std::string& value, int64_t call,
               int64_t ret, EventType done = EventType::kOk) {
    Event e = Base(p, Function::kPut, key, call);
    e.value = value;
    return Add(e, done, ret);
  }
  History& Get(int64_t p, const std::string& key, std::optional<std::string> read, int64_t call,
               int64_t ret, Consistency c = Consistency::kLinearizable,
               EventType done = EventType::kOk) {
    Event e = Base(p, Function::kGet, key, call);
    e.consistency = c;
    Event completion = e;
    completion.value = done == EventType::kOk ? read : std::nullopt;
    return AddPair(e, completion, done, ret);
  }
  History& Delete(int64_t p, const std::string& key, int64_t call, int64_t ret,
                  EventType done = EventType::kOk) {
    return Add(Base(p, Function::kDelete, key, call), done, ret);
  }
  History& Cas(int64_t p, const std::string& key, std::optional<std::string> expected,
               const std::string& new_value, bool swapped, int64_t call, int64_t ret,
               EventType done = EventType::kOk) {
    Event e = Base(p, Function::kCas, key, call);
    e.cas_expected = expected;
    e.cas_new = new_value;
    Event completion = e;
    completion.cas_ok = done == EventType::kOk && swapped;
    return AddPair(e, completion, done, ret);
  }
  // An invoke that never completes.
  History& PendingPut(int64_t p, const std::string& key, const std::string& value, int64_t call) {
    Event e = Base(p, Function::kPut, key, call);
    e.value = value;
    timed_.push_back({call, seq_++, e});
    return *this;
  }
  History& Raw(const Event& e) {
    timed_.push_back({e.time_ns, seq_++, e});
    return *this;
  }

  std::vector<Event> Events() const {
    std::vector<Timed> sorted = timed_;
    std::stable_sort(sorted.begin(), sorted.end(), [](const Timed& a, const Timed& b) {
      return a.time < b.time || (a.time == b.time && a.seq < b.seq);
    });
    std::vector<Event> out;
    for (const Timed& t : sorted) out.push_back(t.e);
    return out;
  }

 private:
  struct Timed {
    int64_t time;
    int64_t seq;
    Event e;
  };
  static Event Base(int64_t p, Function f, const std::string& key, int64_t call) {
    Event e;
    e.process = p;
    e.f = f;
    e.key = key;
    e.time_ns = call;
    return e;
  }
  History& Add(const Event& invoke, EventType done, int64_t ret) {
    return AddPair(invoke, invoke, done, ret);
  }
  History& AddPair(const Event& invoke, Event completion, EventType done, int64_t ret) {
    timed_.push_back({invoke.time_ns, seq_++, invoke});
    completion.type = done;
    completion.time_ns = ret;
    timed_.push_back({ret, seq_++, completion});
    return *this;
  }

  std::vector<Timed> timed_;
  int64_t seq_ = 0;
};

CheckResult Check(const History& h, const CheckOptions& options = {}) {
  return CheckHistory(h.Events(), options);
}

// ---------------------------------------------------------------------------
// Known violations are found.

TEST(KnownViolations, StaleReadAfterAnotherReadSawTheNewValue) {
  // Put b runs long; one reader sees b, then a later reader sees a again.
  History h;
  h.Put(1, "k", "a", 0, 10)
      .Put(2, "k", "b", 20, 200)
      .Get(3, "k", "b", 30, 40)
      .Get(4, "k", "a", 50, 60);
  CheckResult r = Check(h);
  EXPECT_EQ(r.outcome, Outcome::kNotLinearizable) << r.message;
  EXPECT_EQ(r.key, "k");
  EXPECT_THAT(r.message, HasSubstr("key \"k\""));
  EXPECT_THAT(r.message, HasSubstr("process 4 get -> \"a\" (invoked at 50 ns, ok at 60 ns)"));
  EXPECT_THAT(r.message, HasSubstr("the key held: \"b\""));
}

TEST(KnownViolations, StaleReadAfterANewerWriteCompleted) {
  History h;
  h.Put(1, "k", "a", 0, 10).Put(1, "k", "b", 20, 30).Get(2, "k", "a", 40, 50);
  CheckResult r = Check(h);
  EXPECT_EQ(r.outcome, Outcome::kNotLinearizable) << r.message;
  EXPECT_THAT(r.message, HasSubstr("process 2 get -> \"a\""));
  EXPECT_THAT(r.message, HasSubstr("the key held: \"b\""));
  // The end of the longest consistent order is shown.
  EXPECT_THAT(r.message, HasSubstr("process 1 put \"b\" (invoked at 20 ns, ok at 30 ns)"));
}

TEST(KnownViolations, LostWrite) {
  // An acknowledged put is never seen: every later read returns the previous
  // value.
  History h;
  h.Put(1, "k", "old", 0, 10)
      .Put(2, "k", "acked", 20, 30)
      .Get(3, "k", "old", 100, 110)
      .Get(4, "k", "old", 120, 130)
      .Get(3, "k", "old", 140, 150);
  CheckResult r = Check(h);
  EXPECT_EQ(r.outcome, Outcome::kNotLinearizable) << r.message;
  EXPECT_THAT(r.message, HasSubstr("process 3 get -> \"old\" (invoked at 100 ns"));
  EXPECT_THAT(r.message, HasSubstr("held: \"acked\""));
}

TEST(KnownViolations, ReadOfANeverWrittenValue) {
  History h;
  h.Put(1, "k", "a", 0, 10).Get(2, "k", "ghost", 20, 30);
  CheckResult r = Check(h);
  EXPECT_EQ(r.outcome, Outcome::kNotLinearizable) << r.message;
  EXPECT_EQ(r.key, "k");
  EXPECT_THAT(r.message, HasSubstr("process 2 get -> \"ghost\""));
  EXPECT_THAT(r.message, HasSubstr("no operation on this key wrote"));
}

TEST(KnownViolations, ReadOfAValueWrittenOnlyToAnotherKey) {
  History h;
  h.Put(1, "x", "a", 0, 10).Get(2, "y", "a", 20, 30);
  CheckResult r = Check(h);
  EXPECT_EQ(r.outcome, Outcome::kNotLinearizable) << r.message;
  EXPECT_EQ(r.key, "y");
}

TEST(KnownViolations, ReadOfAValueFromTheFuture) {
  // The only write of "b" starts after the read returned.
  History h;
  h.Put(1, "k", "a", 0, 10).Get(2, "k", "b", 20, 30).Put(1, "k", "b", 40, 50);
  CheckResult r = Check(h);
  EXPECT_EQ(r.outcome, Outcome::kNotLinearizable) << r.message;
  EXPECT_THAT(r.message, HasSubstr("process 2 get -> \"b\""));
  EXPECT_THAT(r.message, HasSubstr("held: \"a\""));
}

TEST(KnownViolations, ReadOfADeletedKeysOldValue) {
  History h;
  h.Put(1, "k", "a", 0, 10).Delete(1, "k", 20, 30).Get(2, "k", "a", 40, 50);
  CheckResult r = Check(h);
  EXPECT_EQ(r.outcome, Outcome::kNotLinearizable) << r.message;
  EXPECT_THAT(r.message, HasSubstr("process 2 get -> \"a\""));
  EXPECT_THAT(r.message, HasSubstr("held: absent"));
}

TEST(KnownViolations, AbsentReadAfterAPutCompleted) {
  History h;
  h.Put(1, "k", "a", 0, 10).Get(2, "k", std::nullopt, 20, 30);
  CheckResult r = Check(h);
  EXPECT_EQ(r.outcome, Outcome::kNotLinearizable) << r.message;
  EXPECT_THAT(r.message, HasSubstr("process 2 get -> absent"));
}

TEST(KnownViolations, CasSucceededAgainstTheWrongValue) {
  History h;
  h.Put(1, "k", "a", 0, 10).Put(1, "k", "b", 20, 30).Cas(2, "k", "a", "c", true, 40, 50);
  CheckResult r = Check(h);
  EXPECT_EQ(r.outcome, Outcome::kNotLinearizable) << r.message;
  EXPECT_THAT(r.message,
              HasSubstr("process 2 cas(expected \"a\", new \"c\") -> swapped (invoked at 40 ns"));
  EXPECT_THAT(r.message, HasSubstr("held (and the cas result contradicts): \"b\""));
}

TEST(KnownViolations, CasSwappedAgainstANeverWrittenValue) {
  History h;
  h.Cas(2, "k", "nope", "c", true, 40, 50);
  CheckResult r = Check(h);
  EXPECT_EQ(r.outcome, Outcome::kNotLinearizable) << r.message;
  EXPECT_THAT(r.message, HasSubstr("no operation on this key wrote"));
}

TEST(KnownViolations, CasFailedAlthoughTheValueMatched) {
  History h;
  h.Put(1, "k", "a", 0, 10).Cas(2, "k", "a", "c", false, 20, 30);
  CheckResult r = Check(h);
  EXPECT_EQ(r.outcome, Outcome::kNotLinearizable) << r.message;
  EXPECT_THAT(r.message, HasSubstr("-> not swapped"));
}

TEST(KnownViolations, CasEffectMissingFromALaterRead) {
  History h;
  h.Put(1, "k", "a", 0, 10).Cas(2, "k", "a", "c", true, 20, 30).Get(3, "k", "a", 40, 50);
  CheckResult r = Check(h);
  EXPECT_EQ(r.outcome, Outcome::kNotLinearizable) << r.message;
}

TEST(KnownViolations, ConcurrentWritesSeenInTwoOrders) {
  // a and b are concurrent, so either order is fine, but readers that follow
  // one another must agree on it: b then a, and then b again is impossible.
  History h;
  h.Put(1, "k", "a", 0, 100)
      .Put(2, "k", "b", 0, 100)
      .Get(3, "k", "b", 10, 20)
      .Get(3, "k", "a", 30, 40)
      .Get(3, "k", "b", 110, 120);
  CheckResult r = Check(h);
  EXPECT_EQ(r.outcome, Outcome::kNotLinearizable) << r.message;
  EXPECT_THAT(r.message, HasSubstr("get -> \"b\" (invoked at 110 ns"));
}

TEST(KnownViolations, LeaseReadsAreChecked) {
  History h;
  h.Put(1, "k", "a", 0, 10).Put(1, "k", "b", 20, 30).Get(2, "k", "a", 40, 50, Consistency::kLease);
  CheckResult r = Check(h);
  EXPECT_EQ(r.outcome, Outcome::kNotLinearizable) << r.message;
  EXPECT_THAT(r.message, HasSubstr("get(lease) -> \"a\""));
}

TEST(KnownViolations, AFailedPutThatWasRead) {
  // fail means "certainly did not take effect": reading its value is a bug.
  History h;
  h.Put(1, "k", "x", 0, 10, EventType::kFail).Get(2, "k", "x", 20, 30);
  CheckResult r = Check(h);
  EXPECT_EQ(r.outcome, Outcome::kNotLinearizable) << r.message;
}

TEST(KnownViolations, AnInfoPutReadBeforeItWasInvoked) {
  History h;
  h.Get(2, "k", "x", 0, 10).Put(1, "k", "x", 20, 30, EventType::kInfo);
  CheckResult r = Check(h);
  EXPECT_EQ(r.outcome, Outcome::kNotLinearizable) << r.message;
}

TEST(KnownViolations, InfoPutCannotTakeEffectTwice) {
  // x can be installed once; after y overwrote it, x cannot come back.
  History h;
  h.Put(1, "k", "x", 0, 10, EventType::kInfo)
      .Get(2, "k", "x", 20, 30)
      .Put(3, "k", "y", 40, 50)
      .Get(2, "k", "x", 60, 70);
  CheckResult r = Check(h);
  EXPECT_EQ(r.outcome, Outcome::kNotLinearizable) << r.message;
  EXPECT_THAT(r.message, HasSubstr("(invoked at 60 ns"));
}

TEST(KnownViolations, ViolationIsFoundDespiteManyUnobservedTimedOutWrites) {
  // Forty timed-out puts nobody read, concurrent with everything after them,
  // then a stale read: the search must not double per timed-out write.
  History h;
  h.Put(1, "k", "a", 0, 10);
  for (int i = 0; i < 40; ++i) {
    h.Put(100 + i, "k", "lost-" + std::to_string(i), 20 + i, 25 + i, EventType::kInfo);
  }
  h.Put(2, "k", "b", 100, 110);
  for (int i = 0; i < 20; ++i) h.Get(3, "k", "b", 200 + 10 * i, 205 + 10 * i);
  h.Get(3, "k", "a", 500, 510);
  CheckOptions options;
  options.max_states_per_key = 100'000;
  CheckResult r = Check(h, options);
  EXPECT_EQ(r.outcome, Outcome::kNotLinearizable) << r.message;
  EXPECT_THAT(r.message, HasSubstr("get -> \"a\" (invoked at 500 ns"));
}

TEST(KnownViolations, FirstViolatingKeyIsReportedWithCounts) {
  History h;
  h.Put(1, "a", "1", 0, 10).Get(2, "a", "1", 20, 30);
  h.Put(1, "b", "1", 40, 50).Put(1, "b", "2", 60, 70).Get(2, "b", "1", 80, 90);
  h.Put(1, "c", "1", 100, 110).Get(2, "c", std::nullopt, 120, 130);
  CheckResult r = Check(h);
  EXPECT_EQ(r.outcome, Outcome::kNotLinearizable) << r.message;
  EXPECT_EQ(r.key, "b");
  EXPECT_EQ(r.keys, 3u);
  EXPECT_EQ(r.operations, 7u);  // all keys are counted, though the search stops at "b"
}

// ---------------------------------------------------------------------------
// Valid histories pass.

void ExpectLinearizable(const History& h, uint64_t operations) {
  CheckResult r = Check(h);
  EXPECT_EQ(r.outcome, Outcome::kLinearizable) << r.message;
  EXPECT_EQ(r.operations, operations);
  EXPECT_TRUE(r.message.empty()) << r.message;
}

TEST(ValidHistories, Empty) {
  CheckResult r = CheckHistory({});
  EXPECT_EQ(r.outcome, Outcome::kLinearizable);
  EXPECT_EQ(r.keys, 0u);
  EXPECT_EQ(r.operations, 0u);
}

TEST(ValidHistories, SequentialOperations) {
  History h;
  h.Get(1, "k", std::nullopt, 0, 1)
      .Put(1, "k", "a", 2, 3)
      .Get(1, "k", "a", 4, 5)
      .Cas(1, "k", "a", "b", true, 6, 7)
      .Cas(1, "k", "a", "c", false, 8, 9)
      .Get(1, "k", "b", 10, 11)
      .Delete(1, "k", 12, 13)
      .Get(1, "k", std::nullopt, 14, 15)
      .Cas(1, "k", std::nullopt, "d", true, 16, 17)
      .Get(1, "k", "d", 18, 19);
  ExpectLinearizable(h, 10);
}

TEST(ValidHistories, ReadsConcurrentWithAPutSeeEitherValue) {
  History h;
  h.Put(1, "k", "a", 0, 10)
      .Put(2, "k", "b", 20, 100)
      .Get(3, "k", "a", 30, 40)  // before b took effect
      .Get(4, "k", "b", 50, 60)  // after
      .Get(3, "k", "b", 70, 80)
      .Get(4, "k", "b", 110, 120);
  ExpectLinearizable(h, 6);
}

TEST(ValidHistories, OverlappingPutsInEitherOrder) {
  History h;
  h.Put(1, "k", "a", 0, 100)
      .Put(2, "k", "b", 0, 100)
      .Get(3, "k", "b", 10, 20)
      .Get(3, "k", "a", 30, 40)
      .Get(4, "k", "a", 110, 120);
  ExpectLinearizable(h, 5);
}

TEST(ValidHistories, OperationsTouchingInTimeAreConcurrent) {
  // The get is invoked at the instant the put returns: the clock cannot
  // order them, so reading the old value is allowed.
  History h;
  h.Put(1, "k", "a", 0, 10).Get(2, "k", std::nullopt, 10, 20);
  ExpectLinearizable(h, 2);
}

TEST(ValidHistories, InfoPutTakesEffectLate) {
  History h;
  h.Put(1, "k", "x", 0, 10, EventType::kInfo)
      .Get(2, "k", std::nullopt, 1000, 1010)  // long after the timeout: not yet
      .Get(2, "k", std::nullopt, 2000, 2010)
      .Get(2, "k", "x", 5000, 5010);  // now it took effect
  CheckResult r = Check(h);
  EXPECT_EQ(r.outcome, Outcome::kLinearizable) << r.message;
  EXPECT_EQ(r.operations, 3u);
  EXPECT_EQ(r.info_operations, 1u);
}

TEST(ValidHistories, InfoPutNeverTakesEffect) {
  History h;
  h.Put(1, "k", "a", 0, 10)
      .Put(2, "k", "x", 20, 30, EventType::kInfo)
      .Get(3, "k", "a", 40, 50)
      .Get(3, "k", "a", 5000, 5010);
  ExpectLinearizable(h, 3);
}

TEST(ValidHistories, InfoPutOverwrittenBeforeAnyRead) {
  History h;
  h.Put(1, "k", "x", 0, 10, EventType::kInfo)
      .Put(2, "k", "y", 20, 30)
      .Get(3, "k", "y", 40, 50)
      .Get(3, "k", "x", 60, 70);  // x applied late, after y
  ExpectLinearizable(h, 3);
}

TEST(ValidHistories, UnobservedInfoPutExplainsAFailedCas) {
  // Only an applied x explains why the cas saw "not a": the checker must not
  // drop a timed-out write that a failed cas may have observed.
  History h;
  h.Put(1, "k", "a", 0, 10)
      .Put(2, "k", "x", 20, 30, EventType::kInfo)
      .Cas(3, "k", "a", "z", false, 40, 50);
  ExpectLinearizable(h, 2);
}

TEST(ValidHistories, TwoInterchangeableTimedOutDeletesBothTakeEffect) {
  // The two timed-out deletes have the same effect; each is needed once.
  History h;
  h.Put(1, "k", "a", 0, 10)
      .Delete(2, "k", 20, 25, EventType::kInfo)
      .Delete(3, "k", 21, 26, EventType::kInfo)
      .Get(4, "k", std::nullopt, 30, 40)
      .Put(5, "k", "b", 50, 60)
      .Get(4, "k", std::nullopt, 70, 80);
  ExpectLinearizable(h, 4);
}

TEST(ValidHistories, TwoUnobservedTimedOutPutsBothExplainFailedCas) {
  // Nobody reads x or y, but each failed cas needs one of them applied.
  History h;
  h.Put(1, "k", "a", 0, 10)
      .Put(2, "k", "x", 20, 25, EventType::kInfo)
      .Put(3, "k", "y", 21, 26, EventType::kInfo)
      .Cas(4, "k", "a", "z", false, 30, 40)
      .Put(1, "k", "a2", 50, 60)
      .Put(1, "k", "a", 61, 62)
      .Cas(4, "k", "a", "w", false, 70, 80);
  ExpectLinearizable(h, 5);

  // With only one timed-out put, the second failed cas is a violation.
  History one;
  one.Put(1, "k", "a", 0, 10)
      .Put(2, "k", "x", 20, 25, EventType::kInfo)
      .Cas(4, "k", "a", "z", false, 30, 40)
      .Put(1, "k", "a", 61, 62)
      .Cas(4, "k", "a", "w", false, 70, 80);
  CheckResult r = Check(one);
  EXPECT_EQ(r.outcome, Outcome::kNotLinearizable) << r.message;
  EXPECT_THAT(r.message, HasSubstr("cas(expected \"a\", new \"w\") -> not swapped"));
}

TEST(ValidHistories, TimedOutPutWhoseValueDiedExplainsALaterFailedCas) {
  // y is observed only by the first failed cas (so y was not applied before
  // it); after that nobody can observe y, and y applied late is what makes
  // the second cas fail.
  History h;
  h.Put(1, "k", "a", 0, 10)
      .Put(2, "k", "y", 20, 25, EventType::kInfo)
      .Cas(3, "k", "y", "z", false, 30, 40)
      .Put(1, "k", "b", 50, 60)
      .Cas(3, "k", "b", "w", false, 70, 80);
  ExpectLinearizable(h, 4);

  // Two failed cas after two definite writes need two late writes; one
  // timed-out put can only take effect once.
  History once;
  once.Put(1, "k", "a", 0, 10)
      .Put(2, "k", "y", 20, 25, EventType::kInfo)
      .Cas(3, "k", "y", "z", false, 30, 40)
      .Put(1, "k", "b", 50, 60)
      .Cas(3, "k", "b", "w", false, 70, 80)
      .Put(1, "k", "c", 90, 100)
      .Cas(3, "k", "c", "v", false, 110, 120);
  CheckResult r = Check(once);
  EXPECT_EQ(r.outcome, Outcome::kNotLinearizable) << r.message;
}

TEST(ValidHistories, InfoCasTakesEffect) {
  History h;
  h.Put(1, "k", "a", 0, 10)
      .Cas(2, "k", "a", "b", false, 20, 30, EventType::kInfo)
      .Get(3, "k", "b", 40, 50);
  ExpectLinearizable(h, 2);
}

TEST(ValidHistories, InfoDeleteTakesEffectLate) {
  History h;
  h.Put(1, "k", "a", 0, 10)
      .Delete(2, "k", 20, 30, EventType::kInfo)
      .Get(3, "k", "a", 40, 50)
      .Get(3, "k", std::nullopt, 60, 70);
  ExpectLinearizable(h, 3);
}

TEST(ValidHistories, PendingInvokeIsLikeInfo) {
  History h;
  h.PendingPut(1, "k", "x", 0).Get(2, "k", std::nullopt, 100, 110).Get(2, "k", "x", 200, 210);
  CheckResult r = Check(h);
  EXPECT_EQ(r.outcome, Outcome::kLinearizable) << r.message;
  EXPECT_EQ(r.info_operations, 1u);
}

TEST(ValidHistories, SerializableStaleReadsAreIgnored) {
  History h;
  h.Put(1, "k", "a", 0, 10)
      .Put(1, "k", "b", 20, 30)
      .Get(2, "k", "a", 40, 50, Consistency::kSerializable)
      .Get(2, "k", std::nullopt, 60, 70, Consistency::kSerializable)
      .Get(2, "k", "b", 80, 90, Consistency::kLease);
  ExpectLinearizable(h, 3);
}

TEST(ValidHistories, FailedOperationsAreIgnored) {
  History h;
  h.Put(1, "k", "a", 0, 10)
      .Put(2, "k", "never", 20, 30, EventType::kFail)
      .Delete(2, "k", 40, 50, EventType::kFail)
      .Cas(2, "k", "a", "c", false, 60, 70, EventType::kFail)
      .Get(3, "k", "zzz", 80, 90, Consistency::kLinearizable, EventType::kFail)
      .Get(3, "k", "a", 100, 110);
  ExpectLinearizable(h, 2);
}

TEST(ValidHistories, TimedOutGetsConstrainNothing) {
  History h;
  h.Put(1, "k", "a", 0, 10)
      .Get(2, "k", std::nullopt, 20, 30, Consistency::kLinearizable, EventType::kInfo)
      .Get(3, "k", "a", 40, 50);
  ExpectLinearizable(h, 2);
}

TEST(ValidHistories, KeysAreIndependent) {
  History h;
  h.Put(1, "x", "1", 0, 100).Put(2, "y", "1", 0, 100).Get(3, "x", "1", 10, 20).Get(
      3, "y", std::nullopt, 30, 40);
  CheckResult r = Check(h);
  EXPECT_EQ(r.outcome, Outcome::kLinearizable) << r.message;
  EXPECT_EQ(r.keys, 2u);
}

// ---------------------------------------------------------------------------
// Invalid histories are rejected, never judged.

Event RawEvent(int64_t p, EventType type, Function f, const std::string& key, int64_t time) {
  Event e;
  e.process = p;
  e.type = type;
  e.f = f;
  e.key = key;
  e.time_ns = time;
  if (f == Function::kPut) e.value = "v";
  return e;
}

TEST(InvalidHistories, TwoOutstandingOperationsOfOneProcess) {
  std::vector<Event> events = {
      RawEvent(7, EventType::kInvoke, Function::kGet, "k", 0),
      RawEvent(7, EventType::kInvoke, Function::kPut, "k", 5),
  };
  CheckResult r = CheckHistory(events);
  EXPECT_EQ(r.outcome, Outcome::kInvalidHistory);
  EXPECT_THAT(r.message, HasSubstr("event #2"));
  EXPECT_THAT(r.message, HasSubstr("already has an operation outstanding"));
  EXPECT_THAT(r.message, HasSubstr("event #1"));
  EXPECT_EQ(r.key, "k");
}

TEST(InvalidHistories, CompletionWithoutInvoke) {
  std::vector<Event> events = {
      RawEvent(1, EventType::kInvoke, Function::kGet, "k", 0),
      RawEvent(1, EventType::kOk, Function::kGet, "k", 5),
      RawEvent(1, EventType::kOk, Function::kGet, "k", 6),
  };
  CheckResult r = CheckHistory(events);
  EXPECT_EQ(r.outcome, Outcome::kInvalidHistory);
  EXPECT_THAT(r.message, HasSubstr("event #3"));
  EXPECT_THAT(r.message, HasSubstr("no outstanding invoke of process 1"));
}

TEST(InvalidHistories, ProcessIssuesAgainAfterInfo) {
  std::vector<Event> events = {
      RawEvent(1, EventType::kInvoke, Function::kPut, "k", 0),
      RawEvent(1, EventType::kInfo, Function::kPut, "k", 5),
      RawEvent(1, EventType::kInvoke, Function::kGet, "k", 6),
  };
  CheckResult r = CheckHistory(events);
  EXPECT_EQ(r.outcome, Outcome::kInvalidHistory);
  EXPECT_THAT(r.message, HasSubstr("issued again after its info"));
}

TEST(InvalidHistories, CompletionDisagreesWithItsInvoke) {
  {
    std::vector<Event> events = {RawEvent(1, EventType::kInvoke, Function::kGet, "k", 0),
                                 RawEvent(1, EventType::kOk, Function::kPut, "k", 5)};
    CheckResult r = CheckHistory(events);
    EXPECT_EQ(r.outcome, Outcome::kInvalidHistory);
    EXPECT_THAT(r.message, HasSubstr("completes a put but the invoke"));
  }
  {
    std::vector<Event> events = {RawEvent(1, EventType::kInvoke, Function::kGet, "k", 0),
                                 RawEvent(1, EventType::kOk, Function::kGet, "other", 5)};
    CheckResult r = CheckHistory(events);
    EXPECT_EQ(r.outcome, Outcome::kInvalidHistory);
    EXPECT_THAT(r.message, HasSubstr("completes key \"other\""));
  }
  {
    std::vector<Event> events = {RawEvent(1, EventType::kInvoke, Function::kGet, "k", 10),
                                 RawEvent(1, EventType::kOk, Function::kGet, "k", 5)};
    CheckResult r = CheckHistory(events);
    EXPECT_EQ(r.outcome, Outcome::kInvalidHistory);
    EXPECT_THAT(r.message, HasSubstr("completes before its invoke"));
  }
  {
    std::vector<Event> events = {RawEvent(1, EventType::kInvoke, Function::kPut, "k", 0),
                                 RawEvent(1, EventType::kOk, Function::kPut, "k", 5)};
    events[1].value = "different";
    CheckResult r = CheckHistory(events);
    EXPECT_EQ(r.outcome, Outcome::kInvalidHistory);
    EXPECT_THAT(r.message, HasSubstr("reports writing \"different\""));
  }
  {
    std::vector<Event> events = {RawEvent(1, EventType::kInvoke, Function::kCas, "k", 0),
                                 RawEvent(1, EventType::kOk, Function::kCas, "k", 5)};
    events[0].cas_new = "x";
    events[1].cas_new = "y";
    CheckResult r = CheckHistory(events);
    EXPECT_EQ(r.outcome, Outcome::kInvalidHistory);
    EXPECT_THAT(r.message, HasSubstr("differs from its invoke"));
  }
}

// ---------------------------------------------------------------------------
// The search budget: running out is "unknown", never a verdict.

TEST(Budget, ExhaustedBudgetIsUnknown) {
  History h;
  h.Put(1, "k", "a", 0, 10);
  for (int i = 0; i < 6; ++i) h.Put(10 + i, "k", "c" + std::to_string(i), 20, 1000);
  h.Get(2, "k", "a", 2000, 2010);  // a violation, but only after a wide search
  CheckOptions options;
  options.max_states_per_key = 5;
  CheckResult r = Check(h, options);
  EXPECT_EQ(r.outcome, Outcome::kUnknown) << r.message;
  EXPECT_EQ(r.key, "k");
  EXPECT_THAT(r.message, HasSubstr("budget exhausted"));

  options.max_states_per_key = 1'000'000;
  EXPECT_EQ(Check(h, options).outcome, Outcome::kNotLinearizable);
}

TEST(Budget, ViolationOnOneKeyOutranksUnknownOnAnother) {
  History h;
  // Key "a": needs a wide search. Key "b": a plain stale read.
  h.Put(1, "a", "x", 0, 10);
  for (int i = 0; i < 6; ++i) h.Put(10 + i, "a", "c" + std::to_string(i), 20, 1000);
  h.Get(2, "a", "x", 2000, 2010);
  h.Put(3, "b", "1", 0, 10).Put(3, "b", "2", 20, 30).Get(4, "b", "1", 40, 50);
  CheckOptions options;
  options.max_states_per_key = 5;
  CheckResult r = Check(h, options);
  EXPECT_EQ(r.outcome, Outcome::kNotLinearizable) << r.message;
  EXPECT_EQ(r.key, "b");
}

TEST(OutcomeNames, AreReadable) {
  EXPECT_EQ(OutcomeName(Outcome::kLinearizable), "linearizable");
  EXPECT_EQ(OutcomeName(Outcome::kNotLinearizable), "not linearizable");
  EXPECT_EQ(OutcomeName(Outcome::kUnknown), "unknown");
  EXPECT_EQ(OutcomeName(Outcome::kInvalidHistory), "invalid history");
}

}  // namespace
}  // namespace quorumkv::lincheck
