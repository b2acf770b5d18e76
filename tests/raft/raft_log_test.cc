// The core's view of the log (raft/raft_log.h) and the in-memory storage
// behind it (raft/memory_log_storage.h).
#include "raft/raft_log.h"

#include <gtest/gtest.h>

#include "raft/check.h"
#include "raft/memory_log_storage.h"
#include "tests/raft/raft_test_util.h"

namespace quorumkv::raft::testing {
namespace {

// Storage holding `terms` at 1..n (durable), no snapshot.
void Store(MemoryLogStorage& s, const std::vector<uint64_t>& terms, uint64_t commit = 0) {
  PersistBatch b;
  b.entries = MakeEntries(I(1), terms);
  b.hard_state = HardState{T(terms.empty() ? 0 : terms.back()), kNoNode, I(commit)};
  ASSERT_TRUE(s.Persist(b).ok());
}

std::vector<uint64_t> Terms(const RaftLog& log) {
  std::vector<uint64_t> out;
  for (Index i = log.FirstIndex(); i <= log.LastIndex(); ++i) out.push_back(log.TermAt(i).value_or(T(0)).value());
  return out;
}

TEST(RaftLog, EmptyLog) {
  MemoryLogStorage s;
  RaftLog log(&s);
  EXPECT_EQ(log.FirstIndex(), I(1));
  EXPECT_EQ(log.LastIndex(), I(0));
  EXPECT_EQ(log.LastTerm(), T(0));
  EXPECT_EQ(log.TermAt(I(0)), T(0));
  EXPECT_EQ(log.TermAt(I(1)), std::nullopt);
  EXPECT_EQ(log.committed(), I(0));
  EXPECT_FALSE(log.HasNextCommittedEntries());
}

TEST(RaftLog, LeaderAppendIsUnstableUntilStableTo) {
  MemoryLogStorage s;
  Store(s, {1, 1});
  RaftLog log(&s);
  EXPECT_EQ(log.Append(MakeEntries(I(3), {2, 2})), I(4));
  EXPECT_EQ(log.LastIndex(), I(4));
  EXPECT_EQ(log.StableLastIndex(), I(2));
  ASSERT_EQ(log.unstable_entries().size(), 2u);
  PersistBatch b;
  b.entries = log.unstable_entries();
  ASSERT_TRUE(s.Persist(b).ok());
  log.StableTo(I(4), T(2));
  EXPECT_TRUE(log.unstable_entries().empty());
  EXPECT_EQ(log.StableLastIndex(), I(4));
  EXPECT_EQ(log.LastIndex(), I(4));
}

TEST(RaftLog, InvariantLeaderAppendWithGapDies) {
  MemoryLogStorage s;
  Store(s, {1});
  RaftLog log(&s);
  EXPECT_DEATH(log.Append(MakeEntries(I(3), {1})), "gap");
}

// §5.4.1: the up-to-date comparison (last term first, then length).
TEST(RaftLog, Section5_4_1_IsUpToDate) {
  MemoryLogStorage s;
  Store(s, {1, 2, 2});
  RaftLog log(&s);
  EXPECT_TRUE(log.IsUpToDate(I(1), T(3)));
  EXPECT_TRUE(log.IsUpToDate(I(3), T(2)));
  EXPECT_TRUE(log.IsUpToDate(I(4), T(2)));
  EXPECT_FALSE(log.IsUpToDate(I(2), T(2)));
  EXPECT_FALSE(log.IsUpToDate(I(9), T(1)));
}

TEST(RaftLog, Figure2_MaybeAppendChecksPrevEntry) {
  MemoryLogStorage s;
  Store(s, {1, 2, 2});
  RaftLog log(&s);
  EXPECT_EQ(log.MaybeAppend(I(3), T(3), I(3), MakeEntries(I(4), {3})), std::nullopt);
  EXPECT_EQ(log.MaybeAppend(I(5), T(2), I(3), {}), std::nullopt);
  EXPECT_EQ(log.LastIndex(), I(3));
  EXPECT_EQ(log.MaybeAppend(I(3), T(2), I(2), MakeEntries(I(4), {3})), I(4));
  EXPECT_EQ(log.LastIndex(), I(4));
  EXPECT_EQ(log.committed(), I(2));
}

TEST(RaftLog, Figure2_MaybeAppendTruncatesOnlyAtARealConflict) {
  MemoryLogStorage s;
  Store(s, {1, 1, 2, 2, 2});
  RaftLog log(&s);
  // Matching and shorter: nothing changes.
  EXPECT_EQ(log.MaybeAppend(I(1), T(1), I(0), MakeEntries(I(2), {1, 2})), I(3));
  EXPECT_EQ(Terms(log), (std::vector<uint64_t>{1, 1, 2, 2, 2}));
  EXPECT_TRUE(log.unstable_entries().empty());
  // A conflict at 4: 4 and 5 go, the new entries come.
  EXPECT_EQ(log.MaybeAppend(I(2), T(1), I(0), MakeEntries(I(3), {2, 3})), I(4));
  EXPECT_EQ(Terms(log), (std::vector<uint64_t>{1, 1, 2, 3}));
  ASSERT_EQ(log.unstable_entries().size(), 1u);
  EXPECT_EQ(log.unstable_entries()[0].index, I(4));
  // A conflict inside the unstable tail.
  EXPECT_EQ(log.MaybeAppend(I(3), T(2), I(0), MakeEntries(I(4), {4, 4})), I(5));
  EXPECT_EQ(Terms(log), (std::vector<uint64_t>{1, 1, 2, 4, 4}));
  // Persisting the first version of 4 no longer counts: it was replaced.
  log.StableTo(I(4), T(3));
  EXPECT_EQ(log.unstable_entries().size(), 2u);
  log.StableTo(I(5), T(4));
  EXPECT_TRUE(log.unstable_entries().empty());
}

TEST(RaftLog, InvariantTruncatingACommittedEntryDies) {
  MemoryLogStorage s;
  Store(s, {1, 1, 2});
  RaftLog log(&s);
  log.CommitTo(I(3));
  EXPECT_DEATH(log.MaybeAppend(I(1), T(1), I(3), MakeEntries(I(2), {1, 5})), "truncating committed entry");
}

TEST(RaftLog, Figure2_Rule5_CommitToMinOfLeaderCommitAndLastNew) {
  MemoryLogStorage s;
  Store(s, {1, 1, 1, 1});
  RaftLog log(&s);
  EXPECT_EQ(log.MaybeAppend(I(1), T(1), I(10), MakeEntries(I(2), {1})), I(2));
  EXPECT_EQ(log.committed(), I(2));
  EXPECT_EQ(log.MaybeAppend(I(4), T(1), I(3), {}), I(4));
  EXPECT_EQ(log.committed(), I(3));
  // Commit never goes back.
  EXPECT_EQ(log.MaybeAppend(I(1), T(1), I(1), {}), I(1));
  EXPECT_EQ(log.committed(), I(3));
}

TEST(RaftLog, Section5_4_2_MaybeCommitOnlyForTheGivenTerm) {
  MemoryLogStorage s;
  Store(s, {1, 2, 3});
  RaftLog log(&s);
  EXPECT_FALSE(log.MaybeCommit(I(2), T(3)));
  EXPECT_EQ(log.committed(), I(0));
  EXPECT_TRUE(log.MaybeCommit(I(3), T(3)));
  EXPECT_EQ(log.committed(), I(3));
  EXPECT_FALSE(log.MaybeCommit(I(2), T(2)));  // never backwards
}

TEST(RaftLog, InvariantCommitBeyondLastIndexDies) {
  MemoryLogStorage s;
  Store(s, {1});
  RaftLog log(&s);
  EXPECT_DEATH(log.CommitTo(I(5)), "beyond last index");
}

TEST(RaftLog, CommittedEntriesAreHandedOutOnceInOrder) {
  MemoryLogStorage s;
  Store(s, {1, 1, 1});
  RaftLog log(&s);
  log.Append(MakeEntries(I(4), {2}));
  log.CommitTo(I(4));
  ASSERT_TRUE(log.HasNextCommittedEntries());
  std::vector<Entry> next = log.NextCommittedEntries(UINT64_MAX);
  ASSERT_EQ(next.size(), 4u);
  EXPECT_EQ(next.front().index, I(1));
  EXPECT_EQ(next.back().index, I(4));  // unstable entries too
  log.AppliedTo(I(2));
  next = log.NextCommittedEntries(UINT64_MAX);
  ASSERT_EQ(next.size(), 2u);
  EXPECT_EQ(next.front().index, I(3));
  log.AppliedTo(I(4));
  EXPECT_FALSE(log.HasNextCommittedEntries());
  EXPECT_DEATH(log.AppliedTo(I(5)), "beyond commit");
}

TEST(RaftLog, SliceSpansStorageAndUnstableAndRespectsMaxBytes) {
  MemoryLogStorage s;
  Store(s, {1, 1, 1});
  RaftLog log(&s);
  log.Append(MakeEntries(I(4), {2, 2}));
  std::vector<Entry> all = log.Slice(I(2), I(6), UINT64_MAX);
  ASSERT_EQ(all.size(), 4u);
  for (size_t k = 0; k < all.size(); ++k) EXPECT_EQ(all[k].index, I(2 + k));
  const uint64_t one = all[0].ByteSize();
  EXPECT_EQ(log.Slice(I(1), I(6), 2 * one).size(), 2u);
  EXPECT_EQ(log.Slice(I(3), I(6), 2 * one).size(), 2u);  // crosses into unstable
  EXPECT_EQ(log.Slice(I(1), I(6), 1).size(), 1u);        // at least one entry
  EXPECT_TRUE(log.Slice(I(3), I(3), UINT64_MAX).empty());
  EXPECT_DEATH(log.Slice(I(2), I(9), UINT64_MAX), "outside the log");
}

// The conflict hint: the first index of a term (not below the commit
// index), and the leader's last index of a term.
TEST(RaftLog, Section5_3_TermBoundariesForFastBacktracking) {
  MemoryLogStorage s;
  Store(s, {1, 1, 2, 2, 2, 4, 4});
  RaftLog log(&s);
  EXPECT_EQ(log.FirstIndexOfTermAtOrBelow(I(5), T(2)), I(3));
  EXPECT_EQ(log.FirstIndexOfTermAtOrBelow(I(7), T(4)), I(6));
  EXPECT_EQ(log.FirstIndexOfTermAtOrBelow(I(2), T(1)), I(1));
  log.CommitTo(I(3));
  EXPECT_EQ(log.FirstIndexOfTermAtOrBelow(I(5), T(2)), I(4));
  EXPECT_EQ(log.LastIndexOfTerm(T(2)), I(5));
  EXPECT_EQ(log.LastIndexOfTerm(T(4)), I(7));
  EXPECT_EQ(log.LastIndexOfTerm(T(1)), I(2));
  EXPECT_EQ(log.LastIndexOfTerm(T(3)), std::nullopt);
  EXPECT_EQ(log.LastIndexOfTerm(T(5)), std::nullopt);
}

TEST(RaftLog, Figure13_RestoreReplacesTheLogWithASnapshot) {
  MemoryLogStorage s;
  Store(s, {1, 1, 2});
  RaftLog log(&s);
  log.Append(MakeEntries(I(4), {2}));
  Snapshot snap{SnapshotMeta{I(10), T(3), Voters({1, 2, 3})}, "image"};
  log.Restore(snap);
  EXPECT_EQ(log.FirstIndex(), I(11));
  EXPECT_EQ(log.LastIndex(), I(10));
  EXPECT_EQ(log.LastTerm(), T(3));
  EXPECT_EQ(log.committed(), I(10));
  EXPECT_EQ(log.TermAt(I(3)), std::nullopt);
  EXPECT_TRUE(log.unstable_entries().empty());
  ASSERT_TRUE(log.unstable_snapshot().has_value());
  EXPECT_EQ(log.SnapshotToSend().index, I(10));
  EXPECT_EQ(log.StableLastIndex(), I(0));  // nothing counts until durable
  PersistBatch b;
  b.snapshot = snap.meta;
  ASSERT_TRUE(s.Persist(b).ok());
  log.StableSnapshotTo(I(10));
  EXPECT_FALSE(log.unstable_snapshot().has_value());
  EXPECT_EQ(log.StableLastIndex(), I(10));
  EXPECT_EQ(log.TermAt(I(10)), T(3));
  EXPECT_EQ(log.MaybeAppend(I(10), T(3), I(11), MakeEntries(I(11), {3})), I(11));
  EXPECT_EQ(log.committed(), I(11));
}

// A storage read error is recorded (sticky) and the entry reads as absent.
class FailingStorage : public MemoryLogStorage {
 public:
  absl::StatusOr<Term> TermAt(Index i) const override {
    if (fail) return absl::DataLossError("checksum mismatch at " + std::to_string(i.value()));
    return MemoryLogStorage::TermAt(i);
  }
  absl::StatusOr<std::vector<Entry>> Entries(Index lo, Index hi, uint64_t max_bytes) const override {
    if (fail) return absl::DataLossError("checksum mismatch");
    return MemoryLogStorage::Entries(lo, hi, max_bytes);
  }
  bool fail = false;
};

TEST(RaftLog, StorageErrorIsRecordedNotServed) {
  FailingStorage s;
  Store(s, {1, 1});
  RaftLog log(&s);
  s.fail = true;
  EXPECT_EQ(log.TermAt(I(2)), std::nullopt);
  EXPECT_EQ(log.error().code(), absl::StatusCode::kDataLoss);
  EXPECT_TRUE(log.Slice(I(1), I(3), UINT64_MAX).empty());
  s.fail = false;
  EXPECT_EQ(log.error().code(), absl::StatusCode::kDataLoss);  // sticky
}

// The core halts on a storage failure and reports it from every call.
TEST(RaftLog, StorageFailureIsStickyInTheCore) {
  FailingStorage s;
  s.fail = true;
  PersistBatch b;
  b.entries = MakeEntries(I(1), {1});
  b.hard_state = HardState{T(1), kNoNode, I(0)};
  ASSERT_TRUE(s.Persist(b).ok());
  auto random = std::make_shared<TestRandom>(1);
  auto created = Raft::Create(MakeConfig(N(1), {}, random), &s);
  EXPECT_EQ(created.status().code(), absl::StatusCode::kDataLoss) << created.status();

  FailingStorage s2;
  Store(s2, {1, 1});
  auto core = Raft::Create(MakeConfig(N(1), {}, random), &s2);
  ASSERT_TRUE(core.ok()) << core.status();
  s2.fail = true;
  (*core)->Step(AppendEntries(2, 1, 3, 2, 1, MakeEntries(I(3), {3}), 0)).IgnoreError();
  EXPECT_EQ((*core)->storage_error().code(), absl::StatusCode::kDataLoss);
  s2.fail = false;
  EXPECT_EQ((*core)->Tick().code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ((*core)->Step(Heartbeat(2, 1, 3, 0)).code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ((*core)->Propose("x").status().code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ((*core)->ReadIndex(1, ReadMode::kReadIndex).code(), absl::StatusCode::kDataLoss);
}

// ---------------------------------------------------------------------------
// MemoryLogStorage

TEST(MemoryLogStorage, PersistReplacesTheSuffixFromTheFirstEntry) {
  MemoryLogStorage s;
  Store(s, {1, 1, 2, 2});
  PersistBatch b;
  b.entries = MakeEntries(I(3), {3});
  ASSERT_TRUE(s.Persist(b).ok());
  EXPECT_EQ(StoredTerms(s), (std::vector<uint64_t>{1, 1, 3}));
  b.entries = MakeEntries(I(5), {3});  // leaves a gap
  EXPECT_EQ(s.Persist(b).code(), absl::StatusCode::kInternal);
  EXPECT_EQ(s.persist_calls(), 3u);
}

TEST(MemoryLogStorage, Figure13_PersistSnapshotKeepsMatchingSuffixOnly) {
  MemoryLogStorage a;
  Store(a, {1, 1, 2, 2, 2});
  PersistBatch b;
  b.snapshot = SnapshotMeta{I(3), T(2), Voters({1})};
  ASSERT_TRUE(a.Persist(b).ok());
  EXPECT_EQ(a.FirstIndex(), I(4));
  EXPECT_EQ(a.LastIndex(), I(5));
  EXPECT_EQ(*a.TermAt(I(3)), T(2));
  EXPECT_EQ(a.snapshot_meta().conf_state, Voters({1}));

  MemoryLogStorage c;
  Store(c, {1, 1, 2, 2, 2});
  b.snapshot = SnapshotMeta{I(3), T(3), Voters({1})};  // term differs
  ASSERT_TRUE(c.Persist(b).ok());
  EXPECT_EQ(c.FirstIndex(), I(4));
  EXPECT_EQ(c.LastIndex(), I(3));

  MemoryLogStorage d;
  Store(d, {1, 1});
  b.snapshot = SnapshotMeta{I(9), T(3), Voters({1})};  // beyond the log
  ASSERT_TRUE(d.Persist(b).ok());
  EXPECT_EQ(d.FirstIndex(), I(10));
  EXPECT_EQ(d.LastIndex(), I(9));
  b.snapshot.reset();
  b.entries = MakeEntries(I(5), {3});  // into the snapshot
  EXPECT_EQ(d.Persist(b).code(), absl::StatusCode::kInternal);
}

TEST(MemoryLogStorage, CompactAndReads) {
  MemoryLogStorage s;
  Store(s, {1, 1, 2, 2, 2});
  ASSERT_TRUE(s.Compact(SnapshotMeta{I(2), T(1), Voters({1, 2})}).ok());
  EXPECT_EQ(s.FirstIndex(), I(3));
  EXPECT_EQ(*s.TermAt(I(2)), T(1));
  EXPECT_EQ(s.TermAt(I(1)).status().code(), absl::StatusCode::kOutOfRange);
  EXPECT_EQ(s.TermAt(I(6)).status().code(), absl::StatusCode::kOutOfRange);
  EXPECT_TRUE(s.Compact(SnapshotMeta{I(1), T(1), {}}).ok());  // already compacted
  EXPECT_EQ(s.FirstIndex(), I(3));
  EXPECT_EQ(s.Compact(SnapshotMeta{I(9), T(2), {}}).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(s.Entries(I(2), I(4), UINT64_MAX).status().code(), absl::StatusCode::kOutOfRange);
  EXPECT_EQ(s.Entries(I(3), I(7), UINT64_MAX).status().code(), absl::StatusCode::kOutOfRange);
  auto one = s.Entries(I(3), I(6), 1);
  ASSERT_TRUE(one.ok());
  EXPECT_EQ(one->size(), 1u);
  auto all = s.Entries(I(3), I(6), UINT64_MAX);
  ASSERT_TRUE(all.ok());
  EXPECT_EQ(all->size(), 3u);
}

}  // namespace
}  // namespace quorumkv::raft::testing
