#include "kv/kv_state_machine.h"

#include <atomic>
#include <map>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "kv_test_util.h"
#include "leveldb/db.h"

namespace quorumkv::kv {
namespace {

using testing::ApplyCommands;
using testing::At;
using testing::ChecksumOrDie;
using testing::CommandItem;
using testing::GetOrDie;
using testing::NoOpItem;
using testing::OpenOrDie;
using testing::TempDir;
using testing::WithSession;

TEST(KvStateMachineTest, FreshStoreIsEmptyAtIndexZero) {
  TempDir tmp;
  auto sm = OpenOrDie(tmp.Sub("kv/nested"));  // creates missing parents
  ASSERT_NE(sm, nullptr);
  EXPECT_EQ(sm->applied_index(), 0u);
  EXPECT_EQ(sm->applied_term(), 0u);
  EXPECT_EQ(GetOrDie(*sm, "k"), std::nullopt);
  auto stats = sm->Stats();
  ASSERT_TRUE(stats.ok()) << stats.status();
  EXPECT_EQ(stats->key_count, 0u);
  EXPECT_EQ(stats->user_bytes, 0u);
}

TEST(KvStateMachineTest, PutGetDeleteAndTheirResults) {
  TempDir tmp;
  auto sm = OpenOrDie(tmp.path());
  auto r = ApplyCommands(*sm, 1,
                         {Command::Put("a", "1"), Command::Put("a", "22"), Command::Put("b", "3"),
                          Command::Delete("a"), Command::Delete("a"), Command::Delete("never")});
  ASSERT_EQ(r.size(), 6u);
  for (size_t i = 0; i < r.size(); ++i) {
    EXPECT_EQ(r[i].index, i + 1);
    EXPECT_EQ(r[i].outcome, ApplyOutcome::kApplied) << i;
    EXPECT_TRUE(r[i].ToStatus().ok());
  }
  EXPECT_FALSE(r[0].result.found);  // new key
  EXPECT_TRUE(r[1].result.found);   // replaced
  EXPECT_FALSE(r[2].result.found);
  EXPECT_TRUE(r[3].result.found);   // delete found the key
  EXPECT_FALSE(r[4].result.found);  // already gone
  EXPECT_FALSE(r[5].result.found);

  EXPECT_EQ(GetOrDie(*sm, "a"), std::nullopt);
  EXPECT_EQ(GetOrDie(*sm, "b"), "3");
  EXPECT_EQ(sm->applied_index(), 6u);
  EXPECT_EQ(sm->applied_term(), 1u);
  auto stats = sm->Stats();
  ASSERT_TRUE(stats.ok());
  EXPECT_EQ(stats->key_count, 1u);
  EXPECT_EQ(stats->user_bytes, 2u);  // "b" + "3"
  EXPECT_EQ(stats->applied_index, 6u);
}

TEST(KvStateMachineTest, CompareAndSwap) {
  TempDir tmp;
  auto sm = OpenOrDie(tmp.path());
  auto r = ApplyCommands(*sm, 1,
                         {
                             Command::CompareAndSwap("k", std::nullopt, "v1"),  // absent: swaps
                             Command::CompareAndSwap("k", std::nullopt, "v2"),  // present: no
                             Command::CompareAndSwap("k", std::string("wrong"), "x"),  // mismatch
                             Command::CompareAndSwap("k", std::string("v1"), "v3"),    // match
                             Command::CompareAndSwap("absent", std::string("v"), "x"),
                         });
  ASSERT_EQ(r.size(), 5u);
  EXPECT_TRUE(r[0].result.swapped);
  EXPECT_FALSE(r[0].result.found);
  EXPECT_EQ(r[0].result.current_value, "v1");
  EXPECT_FALSE(r[1].result.swapped);
  EXPECT_TRUE(r[1].result.found);
  EXPECT_EQ(r[1].result.current_value, "v1");
  EXPECT_FALSE(r[2].result.swapped);
  EXPECT_EQ(r[2].result.current_value, "v1");
  EXPECT_TRUE(r[3].result.swapped);
  EXPECT_EQ(r[3].result.current_value, "v3");
  EXPECT_FALSE(r[4].result.swapped);
  EXPECT_FALSE(r[4].result.found);
  EXPECT_EQ(r[4].result.current_value, std::nullopt);
  EXPECT_EQ(GetOrDie(*sm, "k"), "v3");
  EXPECT_EQ(GetOrDie(*sm, "absent"), std::nullopt);
}

TEST(KvStateMachineTest, CommandsInOneBatchSeeEachOther) {
  TempDir tmp;
  auto sm = OpenOrDie(tmp.path());
  // All in one Apply: the CAS must see the Put before it, the Delete the CAS.
  auto r =
      ApplyCommands(*sm, 1,
                    {Command::Put("k", "a"), Command::CompareAndSwap("k", std::string("a"), "b"),
                     Command::Delete("k"), Command::CompareAndSwap("k", std::nullopt, "c")});
  EXPECT_TRUE(r[1].result.swapped);
  EXPECT_TRUE(r[2].result.found);
  EXPECT_TRUE(r[3].result.swapped);
  EXPECT_EQ(GetOrDie(*sm, "k"), "c");
  auto stats = sm->Stats();
  ASSERT_TRUE(stats.ok());
  EXPECT_EQ(stats->key_count, 1u);
  EXPECT_EQ(stats->user_bytes, 2u);
}

TEST(KvStateMachineTest, NoOpsAndOtherEntriesOnlyAdvanceTheAppliedIndex) {
  TempDir tmp;
  auto sm = OpenOrDie(tmp.path());
  ApplyItem other;
  other.index = 2;
  other.term = 3;
  other.type = ApplyItemType::kOtherRaftEntry;
  other.data = "an encoded ConfChange, opaque here";
  auto r = sm->Apply({NoOpItem(1, 3), other});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ((*r)[0].outcome, ApplyOutcome::kNotCommand);
  EXPECT_EQ((*r)[1].outcome, ApplyOutcome::kNotCommand);
  EXPECT_EQ(sm->applied_index(), 2u);
  EXPECT_EQ(sm->applied_term(), 3u);
  auto stats = sm->Stats();
  ASSERT_TRUE(stats.ok());
  EXPECT_EQ(stats->key_count, 0u);
}

TEST(KvStateMachineTest, GarbageCommandBytesAreATotalNoOp) {
  TempDir tmp;
  auto sm = OpenOrDie(tmp.path());
  std::vector<ApplyItem> items;
  const std::vector<std::string> garbage = {"", "\x01", "\xff\xff\xff", std::string(1000, '\0'),
                                            EncodeCommand(Command::Put("k", "v")) + "!"};
  for (size_t i = 0; i < garbage.size(); ++i) {
    ApplyItem item;
    item.index = i + 1;
    item.term = 1;
    item.data = garbage[i];
    items.push_back(item);
  }
  items.push_back(CommandItem(garbage.size() + 1, 1, Command::Put("ok", "1")));
  auto r = sm->Apply(items);
  ASSERT_TRUE(r.ok()) << r.status();
  for (size_t i = 0; i < garbage.size(); ++i) {
    EXPECT_EQ((*r)[i].outcome, ApplyOutcome::kInvalidCommand) << i;
    EXPECT_FALSE((*r)[i].message.empty());
    EXPECT_EQ((*r)[i].ToStatus().code(), absl::StatusCode::kInvalidArgument);
  }
  EXPECT_EQ(r->back().outcome, ApplyOutcome::kApplied);
  EXPECT_EQ(sm->applied_index(), garbage.size() + 1);
  EXPECT_EQ(GetOrDie(*sm, "k"), std::nullopt);
  EXPECT_EQ(GetOrDie(*sm, "ok"), "1");
}

TEST(KvStateMachineTest, AppliedIndexAndDataSurviveReopen) {
  TempDir tmp;
  uint64_t checksum = 0;
  {
    auto sm = OpenOrDie(tmp.path());
    ApplyCommands(*sm, 1, {Command::Put("a", "1"), Command::Put("b", "2")});
    auto r = sm->Apply({NoOpItem(3, 2), CommandItem(4, 2, Command::Delete("a"))});
    ASSERT_TRUE(r.ok()) << r.status();
    checksum = ChecksumOrDie(*sm);
  }
  auto sm = OpenOrDie(tmp.path());
  EXPECT_EQ(sm->applied_index(), 4u);
  EXPECT_EQ(sm->applied_term(), 2u);
  EXPECT_EQ(GetOrDie(*sm, "a"), std::nullopt);
  EXPECT_EQ(GetOrDie(*sm, "b"), "2");
  EXPECT_EQ(ChecksumOrDie(*sm), checksum);
  auto stats = sm->Stats();
  ASSERT_TRUE(stats.ok());
  EXPECT_EQ(stats->key_count, 1u);
  // Resumes at the next index.
  auto r = ApplyCommands(*sm, 5, {Command::Put("c", "3")});
  EXPECT_EQ(r[0].outcome, ApplyOutcome::kApplied);
}

TEST(KvStateMachineTest, ReplayingAnAppliedBatchChangesNothing) {
  TempDir tmp;
  auto sm = OpenOrDie(tmp.path());
  std::vector<ApplyItem> batch = {CommandItem(1, 1, Command::Put("k", "v1")),
                                  CommandItem(2, 1, Command::Put("n", "1")),
                                  CommandItem(3, 1, Command::Delete("n"))};
  ASSERT_TRUE(sm->Apply(batch).ok());
  ASSERT_TRUE(sm->Apply({CommandItem(4, 1, Command::Put("k", "v2"))}).ok());
  const uint64_t before = ChecksumOrDie(*sm);

  // After a restart the driver may hand over entries the store already has.
  sm.reset();
  sm = OpenOrDie(tmp.path());
  auto r = sm->Apply(batch);
  ASSERT_TRUE(r.ok()) << r.status();
  for (const ApplyResult& res : *r) {
    EXPECT_EQ(res.outcome, ApplyOutcome::kAlreadyApplied);
    EXPECT_EQ(res.ToStatus().code(), absl::StatusCode::kAborted);
  }
  EXPECT_EQ(GetOrDie(*sm, "k"), "v2");  // not rolled back to v1
  EXPECT_EQ(GetOrDie(*sm, "n"), std::nullopt);
  EXPECT_EQ(sm->applied_index(), 4u);
  EXPECT_EQ(ChecksumOrDie(*sm), before);

  // A batch that straddles the applied index applies only the new part.
  r = sm->Apply({CommandItem(3, 1, Command::Delete("n")),
                 CommandItem(4, 1, Command::Put("k", "v2")),
                 CommandItem(5, 1, Command::Put("k", "v3"))});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ((*r)[0].outcome, ApplyOutcome::kAlreadyApplied);
  EXPECT_EQ((*r)[1].outcome, ApplyOutcome::kAlreadyApplied);
  EXPECT_EQ((*r)[2].outcome, ApplyOutcome::kApplied);
  EXPECT_TRUE((*r)[2].result.found);
  EXPECT_EQ(GetOrDie(*sm, "k"), "v3");
}

TEST(KvStateMachineTest, RejectsGapsDisorderAndFallingTermsWithoutApplyingAnything) {
  TempDir tmp;
  auto sm = OpenOrDie(tmp.path());
  ApplyCommands(*sm, 1, {Command::Put("k", "0")});
  const uint64_t before = ChecksumOrDie(*sm);

  auto gap = sm->Apply({CommandItem(3, 1, Command::Put("k", "x"))});
  EXPECT_EQ(gap.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(gap.status().message().find("gap"), absl::string_view::npos) << gap.status();

  auto inner_gap = sm->Apply(
      {CommandItem(2, 1, Command::Put("k", "x")), CommandItem(4, 1, Command::Put("k", "y"))});
  EXPECT_EQ(inner_gap.status().code(), absl::StatusCode::kFailedPrecondition);

  auto disorder = sm->Apply(
      {CommandItem(2, 1, Command::Put("k", "x")), CommandItem(1, 1, Command::Put("k", "y"))});
  EXPECT_EQ(disorder.status().code(), absl::StatusCode::kFailedPrecondition);
  // None of the refused batches wrote anything, not even their valid part.
  EXPECT_EQ(ChecksumOrDie(*sm), before);
  EXPECT_EQ(sm->applied_index(), 1u);

  ASSERT_TRUE(sm->Apply({NoOpItem(2, 5)}).ok());
  auto term = sm->Apply({CommandItem(3, 4, Command::Put("k", "x"))});
  EXPECT_EQ(term.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(term.status().message().find("term"), absl::string_view::npos) << term.status();

  EXPECT_EQ(GetOrDie(*sm, "k"), "0");
  EXPECT_EQ(sm->applied_index(), 2u);
  auto empty = sm->Apply({});
  ASSERT_TRUE(empty.ok());
  EXPECT_TRUE(empty->empty());
}

TEST(KvStateMachineTest, RetriedWriteIsAppliedOnceAndReturnsTheSameResult) {
  TempDir tmp;
  auto sm = OpenOrDie(tmp.path());
  const uint64_t client = 77;
  auto r = ApplyCommands(
      *sm, 1, {WithSession(Command::CompareAndSwap("ctr", std::nullopt, "1"), client, 1, 1000)});
  ASSERT_EQ(r[0].outcome, ApplyOutcome::kApplied);
  EXPECT_TRUE(r[0].result.swapped);

  // Someone else changes the key; then the client's retry of sequence 1
  // arrives (its first reply was lost). Re-applying it would now fail the
  // CAS; the stored result must come back instead, and the key stay as is.
  ApplyCommands(*sm, 2, {Command::Put("ctr", "other")});
  r = ApplyCommands(
      *sm, 3, {WithSession(Command::CompareAndSwap("ctr", std::nullopt, "1"), client, 1, 1001)});
  EXPECT_EQ(r[0].outcome, ApplyOutcome::kDuplicate);
  EXPECT_TRUE(r[0].ToStatus().ok());
  EXPECT_TRUE(r[0].result.swapped);
  EXPECT_EQ(r[0].result.current_value, "1");
  EXPECT_EQ(GetOrDie(*sm, "ctr"), "other");

  // A retried Put is not applied again either.
  ApplyCommands(*sm, 4, {WithSession(Command::Put("p", "first"), client, 2, 1002)});
  ApplyCommands(*sm, 5, {Command::Delete("p")});
  r = ApplyCommands(*sm, 6, {WithSession(Command::Put("p", "first"), client, 2, 1003)});
  EXPECT_EQ(r[0].outcome, ApplyOutcome::kDuplicate);
  EXPECT_EQ(GetOrDie(*sm, "p"), std::nullopt);

  // The session survives a restart.
  sm.reset();
  sm = OpenOrDie(tmp.path());
  r = ApplyCommands(*sm, 7, {WithSession(Command::Put("p", "first"), client, 2, 1004)});
  EXPECT_EQ(r[0].outcome, ApplyOutcome::kDuplicate);
  EXPECT_EQ(GetOrDie(*sm, "p"), std::nullopt);

  // Duplicates inside one batch (the same proposal committed twice).
  r = ApplyCommands(*sm, 8,
                    {WithSession(Command::Put("q", "v"), client, 3, 1005),
                     WithSession(Command::Put("q", "v"), client, 3, 1005)});
  EXPECT_EQ(r[0].outcome, ApplyOutcome::kApplied);
  EXPECT_EQ(r[1].outcome, ApplyOutcome::kDuplicate);
  auto stats = sm->Stats();
  ASSERT_TRUE(stats.ok());
  EXPECT_EQ(stats->session_count, 1u);
}

TEST(KvStateMachineTest, StaleSequenceIsRejectedClearly) {
  TempDir tmp;
  auto sm = OpenOrDie(tmp.path());
  ApplyCommands(*sm, 1, {WithSession(Command::Put("k", "5"), 9, 5, 10)});
  auto r = ApplyCommands(*sm, 2, {WithSession(Command::Put("k", "4"), 9, 4, 11)});
  EXPECT_EQ(r[0].outcome, ApplyOutcome::kStaleSequence);
  EXPECT_EQ(r[0].ToStatus().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(r[0].message.find("stale sequence 4"), std::string::npos) << r[0].message;
  EXPECT_EQ(GetOrDie(*sm, "k"), "5");
  EXPECT_EQ(sm->applied_index(), 2u);  // the entry is consumed all the same
  // A newer sequence is applied; sessions are per client.
  r = ApplyCommands(*sm, 3,
                    {WithSession(Command::Put("k", "6"), 9, 6, 12),
                     WithSession(Command::Put("j", "1"), 10, 1, 12)});
  EXPECT_EQ(r[0].outcome, ApplyOutcome::kApplied);
  EXPECT_EQ(r[1].outcome, ApplyOutcome::kApplied);
  EXPECT_EQ(GetOrDie(*sm, "k"), "6");
}

TEST(KvStateMachineTest, SessionsExpireByLogTimeNotWallClock) {
  TempDir tmp;
  KvOptions options;
  options.session_ttl_ms = 1000;
  auto sm = OpenOrDie(tmp.path(), options);
  // Client 1 writes at t=0 (a proposed_at of 0 is a fine log time too),
  // client 2 keeps the log clock moving.
  ApplyCommands(*sm, 1, {WithSession(Command::Put("a", "1"), 1, 1, 5000)});
  ApplyCommands(*sm, 2, {WithSession(Command::Put("b", "1"), 2, 1, 5900)});
  // The expiry index is in memory: a restart must rebuild it.
  sm.reset();
  sm = OpenOrDie(tmp.path(), options);
  auto stats = sm->Stats();
  ASSERT_TRUE(stats.ok());
  EXPECT_EQ(stats->session_count, 2u);
  EXPECT_EQ(stats->log_clock_ms, 5900u);

  // Exactly at the TTL the session is still there: a retry is de-duplicated.
  auto r = ApplyCommands(*sm, 3, {WithSession(Command::Put("a", "1"), 1, 1, 6000)});
  EXPECT_EQ(r[0].outcome, ApplyOutcome::kDuplicate);  // refreshes activity to 6000

  // Client 2 was last active at 5900; the log clock reaches 6901.
  ApplyCommands(*sm, 4, {At(Command::Put("tick", "x"), 6901)});
  stats = sm->Stats();
  ASSERT_TRUE(stats.ok());
  EXPECT_EQ(stats->session_count, 1u);  // client 2 forgotten, client 1 (6000) kept

  // Client 2's late retry is therefore applied again (documented trade-off).
  ApplyCommands(*sm, 5, {Command::Delete("b")});
  r = ApplyCommands(*sm, 6, {WithSession(Command::Put("b", "1"), 2, 1, 6902)});
  EXPECT_EQ(r[0].outcome, ApplyOutcome::kApplied);
  EXPECT_EQ(GetOrDie(*sm, "b"), "1");

  // A leader with a slow clock cannot move the log clock backwards.
  ApplyCommands(*sm, 7, {At(Command::Put("tick", "y"), 100)});
  stats = sm->Stats();
  ASSERT_TRUE(stats.ok());
  EXPECT_EQ(stats->log_clock_ms, 6902u);
  EXPECT_EQ(stats->session_count, 2u);
}

TEST(KvStateMachineTest, ExpiredSessionIsTreatedAsNewEvenWithinOneBatch) {
  TempDir tmp;
  KvOptions options;
  options.session_ttl_ms = 10;
  auto sm = OpenOrDie(tmp.path(), options);
  auto r = ApplyCommands(
      *sm, 1,
      {WithSession(Command::Put("k", "1"), 4, 8, 100), At(Command::Put("t", "1"), 200),
       // Sequence 3 < 8 would be stale, but the session expired.
       WithSession(Command::Put("k", "2"), 4, 3, 200)});
  EXPECT_EQ(r[2].outcome, ApplyOutcome::kApplied);
  EXPECT_EQ(GetOrDie(*sm, "k"), "2");
  auto stats = sm->Stats();
  ASSERT_TRUE(stats.ok());
  EXPECT_EQ(stats->session_count, 1u);
}

// The same log applied by two replicas in different batchings, with session
// expiry happening along the way, gives the same state at every index.
TEST(KvStateMachineTest, DeterministicAcrossReplicasAndBatchings) {
  TempDir tmp;
  KvOptions options;
  options.session_ttl_ms = 150;
  std::vector<ApplyItem> log;
  uint64_t t = 1000;
  for (uint64_t i = 1; i <= 300; ++i) {
    // Log time moves irregularly, with jumps past the TTL that expire every
    // session (the last one at entry 300).
    t += (i % 50 == 0) ? 500 : (i * 7919) % 23;
    const uint64_t client = 1 + (i * 31) % 9;
    const std::string key = "k" + std::to_string((i * 13) % 17);
    Command c;
    switch (i % 5) {
      case 0:
        c = Command::Delete(key);
        break;
      case 1:
        c = Command::CompareAndSwap(key, std::nullopt, "v" + std::to_string(i));
        break;
      default:
        c = Command::Put(key, std::string(i % 40, static_cast<char>('a' + i % 26)));
    }
    // Some entries carry an old sequence (the same client wrote entry i - 9
    // with sequence i - 9), some have no session.
    const uint64_t seq = (i % 11 == 0 && i > 12) ? i - 12 : i;
    log.push_back(i % 4 == 0 ? CommandItem(i, 1 + i / 100, At(c, t))
                             : CommandItem(i, 1 + i / 100, WithSession(c, client, seq, t)));
    if (i % 37 == 0) log.back() = NoOpItem(i, 1 + i / 100);
  }

  auto one = OpenOrDie(tmp.Sub("one"), options);
  auto two = OpenOrDie(tmp.Sub("two"), options);
  std::vector<ApplyResult> results_one, results_two;
  // Replica one: one entry per batch. Replica two: batches of varying size.
  for (const ApplyItem& item : log) {
    auto r = one->Apply({item});
    ASSERT_TRUE(r.ok()) << r.status();
    results_one.push_back((*r)[0]);
  }
  size_t pos = 0;
  for (size_t size = 1; pos < log.size(); size = size % 13 + 5) {
    std::vector<ApplyItem> batch(log.begin() + pos, log.begin() + std::min(log.size(), pos + size));
    auto r = two->Apply(batch);
    ASSERT_TRUE(r.ok()) << r.status();
    results_two.insert(results_two.end(), r->begin(), r->end());
    pos += batch.size();
  }
  ASSERT_EQ(results_one.size(), results_two.size());
  int stale = 0;
  for (size_t i = 0; i < results_one.size(); ++i) {
    EXPECT_EQ(results_one[i].outcome, results_two[i].outcome) << "entry " << i + 1;
    EXPECT_EQ(results_one[i].result, results_two[i].result) << "entry " << i + 1;
    stale += results_one[i].outcome == ApplyOutcome::kStaleSequence;
  }
  auto d1 = one->StateChecksum();
  auto d2 = two->StateChecksum();
  ASSERT_TRUE(d1.ok() && d2.ok());
  EXPECT_EQ(*d1, *d2);
  EXPECT_EQ(d1->applied_index, 300u);
  auto s1 = one->Stats();
  auto s2 = two->Stats();
  ASSERT_TRUE(s1.ok() && s2.ok());
  EXPECT_EQ(s1->key_count, s2->key_count);
  EXPECT_EQ(s1->user_bytes, s2->user_bytes);
  EXPECT_EQ(s1->session_count, s2->session_count);
  EXPECT_EQ(s1->session_count, 0u);  // the last jump expired every session
  EXPECT_GT(stale, 0);
}

TEST(KvStateMachineTest, StateChecksumTracksContentAndAppliedIndex) {
  TempDir tmp;
  auto a = OpenOrDie(tmp.Sub("a"));
  auto b = OpenOrDie(tmp.Sub("b"));
  EXPECT_EQ(ChecksumOrDie(*a), ChecksumOrDie(*b));
  ApplyCommands(*a, 1, {Command::Put("ab", "c")});
  ApplyCommands(*b, 1, {Command::Put("a", "bc")});
  EXPECT_NE(ChecksumOrDie(*a), ChecksumOrDie(*b));  // framing matters

  TempDir tmp2;
  auto c = OpenOrDie(tmp2.Sub("c"));
  auto d = OpenOrDie(tmp2.Sub("d"));
  ApplyCommands(*c, 1, {Command::Put("k", "v")});
  ApplyCommands(*d, 1, {Command::Put("k", "v")});
  EXPECT_EQ(ChecksumOrDie(*c), ChecksumOrDie(*d));
  ASSERT_TRUE(d->Apply({NoOpItem(2, 1)}).ok());
  EXPECT_NE(ChecksumOrDie(*c), ChecksumOrDie(*d));  // same data, other index
  auto digest = d->StateChecksum();
  ASSERT_TRUE(digest.ok());
  EXPECT_EQ(digest->applied_index, 2u);
}

TEST(KvStateMachineTest, OpenRefusesADifferentSessionTtl) {
  TempDir tmp;
  KvOptions options;
  options.session_ttl_ms = 1234;
  ASSERT_NE(OpenOrDie(tmp.path(), options), nullptr);
  options.session_ttl_ms = 999;
  auto sm = KvStateMachine::Open(tmp.path(), options);
  EXPECT_EQ(sm.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(sm.status().message().find("1234"), absl::string_view::npos) << sm.status();
}

TEST(KvStateMachineTest, OpenDetectsASessionTableThatDisagreesWithTheMeta) {
  TempDir tmp;
  {
    auto sm = OpenOrDie(tmp.path());
    ApplyCommands(*sm, 1, {WithSession(Command::Put("k", "v"), 3, 1, 10)});
  }
  {
    // Lose the session record behind the state machine's back.
    leveldb::DB* raw = nullptr;
    ASSERT_TRUE(leveldb::DB::Open(leveldb::Options(), tmp.Sub("state"), &raw).ok());
    std::unique_ptr<leveldb::DB> db(raw);
    std::string key(1, 's');
    key.append(7, '\0');
    key.push_back('\3');
    std::string value;
    ASSERT_TRUE(db->Get(leveldb::ReadOptions(), key, &value).ok());
    ASSERT_TRUE(db->Delete(leveldb::WriteOptions(), key).ok());
  }
  auto sm = KvStateMachine::Open(tmp.path(), KvOptions());
  EXPECT_EQ(sm.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_NE(sm.status().message().find("0 client sessions"), absl::string_view::npos)
      << sm.status();
}

TEST(KvStateMachineTest, OpenValidatesOptions) {
  TempDir tmp;
  KvOptions options;
  options.snapshot_chunk_bytes = 0;
  EXPECT_EQ(KvStateMachine::Open(tmp.path(), options).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(KvStateMachine::Open("", KvOptions()).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(KvStateMachineTest, SecondOpenOfTheSameDirectoryFailsCleanly) {
  TempDir tmp;
  auto sm = OpenOrDie(tmp.path());
  auto again = KvStateMachine::Open(tmp.path(), KvOptions());
  EXPECT_FALSE(again.ok());
  EXPECT_NE(again.status().message().find("cannot open"), absl::string_view::npos)
      << again.status();
}

TEST(KvStateMachineTest, UnsyncedWritesStillPersistAcrossACleanClose) {
  TempDir tmp;
  KvOptions options;
  options.sync_writes = false;
  {
    auto sm = OpenOrDie(tmp.path(), options);
    ApplyCommands(*sm, 1, {Command::Put("k", "v")});
  }
  auto sm = OpenOrDie(tmp.path(), options);
  EXPECT_EQ(sm->applied_index(), 1u);
  EXPECT_EQ(GetOrDie(*sm, "k"), "v");
}

TEST(KvStateMachineTest, ReadsRunConcurrentlyWithApply) {
  TempDir tmp;
  auto sm = OpenOrDie(tmp.path());
  std::atomic<bool> stop{false};
  std::atomic<int> reads{0};
  std::thread reader([&] {
    while (!stop.load()) {
      auto v = sm->Get("k");
      ASSERT_TRUE(v.ok()) << v.status();
      if (v->has_value()) {
        EXPECT_EQ((*v)->substr(0, 1), "v");
      }
      ASSERT_TRUE(sm->Stats().ok());
      ++reads;
    }
  });
  for (uint64_t i = 1; i <= 200; ++i) {
    ApplyCommands(*sm, i, {Command::Put("k", "v" + std::to_string(i))});
  }
  stop = true;
  reader.join();
  EXPECT_GT(reads.load(), 0);
  EXPECT_EQ(GetOrDie(*sm, "k"), "v200");
}

// key_count and user_bytes come from the key size cache for most commands
// (kv/key_size_cache.h): with a cache that rotates every few keys, one that
// is off and the default one, they stay exactly what the data says, across
// batches, overwrites of the same key within a batch, deletes of absent
// keys, compare-and-swaps, and a reopen.
TEST(KvStateMachineTest, KeyAndByteCountsStayExactWhateverTheKeySizeCacheHolds) {
  for (size_t budget : {size_t{0}, size_t{200}, KvOptions().key_size_cache_bytes}) {
    SCOPED_TRACE(budget);
    TempDir tmp;
    KvOptions options;
    options.key_size_cache_bytes = budget;
    auto sm = OpenOrDie(tmp.path(), options);
    std::map<std::string, std::string> model;
    std::mt19937_64 rng(7);
    uint64_t index = 1;
    for (int batch = 0; batch < 60; ++batch) {
      std::vector<Command> commands;
      const int n = 1 + static_cast<int>(rng() % 12);
      for (int i = 0; i < n; ++i) {
        const std::string key = "key" + std::to_string(rng() % 25);
        const std::string value(rng() % 40, static_cast<char>('a' + rng() % 26));
        switch (rng() % 4) {
          case 0:
          case 1:
            commands.push_back(Command::Put(key, value));
            model[key] = value;
            break;
          case 2:
            commands.push_back(Command::Delete(key));
            model.erase(key);
            break;
          default: {
            // Expects the current value half of the time, so that some swap.
            auto it = model.find(key);
            std::optional<std::string> expected;
            if (it != model.end() && rng() % 2 == 0) expected = it->second;
            commands.push_back(Command::CompareAndSwap(key, expected, value));
            if (it == model.end() ? !expected.has_value() : expected == it->second) {
              model[key] = value;
            }
            break;
          }
        }
      }
      ApplyCommands(*sm, index, commands);
      index += commands.size();
      uint64_t bytes = 0;
      for (const auto& [k, v] : model) bytes += k.size() + v.size();
      auto stats = sm->Stats();
      ASSERT_TRUE(stats.ok()) << stats.status();
      ASSERT_EQ(stats->key_count, model.size()) << "after batch " << batch;
      ASSERT_EQ(stats->user_bytes, bytes) << "after batch " << batch;
    }
    for (const auto& [k, v] : model) EXPECT_EQ(GetOrDie(*sm, k), v);
    const uint64_t key_count = model.size();
    sm.reset();
    sm = OpenOrDie(tmp.path(), options);
    auto stats = sm->Stats();
    ASSERT_TRUE(stats.ok());
    EXPECT_EQ(stats->key_count, key_count);
  }
}

}  // namespace
}  // namespace quorumkv::kv
