// One suite, every LogStorage: MemoryLogStorage (the reference the simulator
// runs on) and LevelDbLogStorage (the disk) must behave the same. For
// LevelDB, every test also closes and reopens the log at its end and checks
// that the reopened log is exactly the one the test left: each scenario is a
// durability test too.
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "gtest/gtest.h"
#include "raft/log_storage.h"
#include "raft/memory_log_storage.h"
#include "raft/storage/leveldb_log_storage.h"
#include "tests/storage/temp_dir.h"

namespace quorumkv::raft {
namespace {

using testing::TempDir;

struct MemoryStorage {
  static std::unique_ptr<LogStorage> Open(const TempDir&) {
    return std::make_unique<MemoryLogStorage>();
  }
  // Memory has nothing to reopen: the object is the "disk".
  static void Reopen(std::unique_ptr<LogStorage>&, const TempDir&) {}
};

// LevelDB with its entry cache at a given size: the default (every entry
// of these tests fits), none (every read goes to LevelDB), and room for
// about three entries (reads straddle the cache and the disk, and batches
// overflow it).
template <uint64_t kEntryCacheBytes>
struct LevelDbStorage {
  static std::unique_ptr<LogStorage> Open(const TempDir& dir) {
    LevelDbLogStorage::Options options;
    options.entry_cache_bytes = kEntryCacheBytes;
    auto storage = LevelDbLogStorage::Open(dir.Sub("raft"), options);
    EXPECT_TRUE(storage.ok()) << storage.status();
    if (!storage.ok()) return nullptr;
    return *std::move(storage);
  }
  static void Reopen(std::unique_ptr<LogStorage>& storage, const TempDir& dir) {
    storage.reset();  // releases LevelDB's lock
    storage = Open(dir);
  }
};

using LevelDbDefaultCache = LevelDbStorage<LevelDbLogStorage::Options{}.entry_cache_bytes>;
using LevelDbNoCache = LevelDbStorage<0>;
using LevelDbTinyCache = LevelDbStorage<100>;

struct StorageName {
  template <typename T>
  static std::string GetName(int) {
    if (std::is_same_v<T, MemoryStorage>) return "Memory";
    if (std::is_same_v<T, LevelDbDefaultCache>) return "LevelDb";
    if (std::is_same_v<T, LevelDbNoCache>) return "LevelDbNoEntryCache";
    return "LevelDbTinyEntryCache";
  }
};

Entry E(uint64_t index, uint64_t term, std::string data = "") {
  Entry e;
  e.index = Index(index);
  e.term = Term(term);
  e.data = data.empty() ? "entry " + std::to_string(index) : std::move(data);
  return e;
}

// Entries [from, to] all of one term.
std::vector<Entry> Run(uint64_t from, uint64_t to, uint64_t term) {
  std::vector<Entry> out;
  for (uint64_t i = from; i <= to; ++i) out.push_back(E(i, term));
  return out;
}

PersistBatch WithEntries(std::vector<Entry> entries) {
  PersistBatch batch;
  batch.entries = std::move(entries);
  return batch;
}

PersistBatch WithSnapshot(SnapshotMeta meta) {
  PersistBatch batch;
  batch.snapshot = std::move(meta);
  return batch;
}

SnapshotMeta Meta(uint64_t index, uint64_t term) {
  return SnapshotMeta{Index(index), Term(term), ConfState{{NodeId(1), NodeId(2), NodeId(3)}, {NodeId(4)}}};
}

constexpr uint64_t kNoLimit = ~0ull;

template <typename T>
class LogStorageConformanceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    storage_ = T::Open(dir_);
    ASSERT_NE(storage_, nullptr);
  }

  // Reopen and compare everything observable with what the test left.
  void TearDown() override {
    if (storage_ == nullptr || HasFailure()) return;
    HardState hs = storage_->hard_state();
    SnapshotMeta meta = storage_->snapshot_meta();
    Index first = storage_->FirstIndex();
    Index last = storage_->LastIndex();
    auto entries = storage_->Entries(first, last + 1, kNoLimit);
    ASSERT_TRUE(entries.ok()) << entries.status();
    T::Reopen(storage_, dir_);
    ASSERT_NE(storage_, nullptr);
    EXPECT_EQ(storage_->hard_state(), hs);
    EXPECT_EQ(storage_->snapshot_meta(), meta);
    EXPECT_EQ(storage_->FirstIndex(), first);
    EXPECT_EQ(storage_->LastIndex(), last);
    auto reread = storage_->Entries(first, last + 1, kNoLimit);
    ASSERT_TRUE(reread.ok()) << reread.status();
    EXPECT_EQ(*reread, *entries);
  }

  LogStorage& s() { return *storage_; }

  void Append(std::vector<Entry> entries) {
    ASSERT_TRUE(s().Persist(WithEntries(std::move(entries))).ok());
  }

  // The log holds exactly `expected` (all of [FirstIndex, LastIndex]).
  void ExpectLog(uint64_t first, const std::vector<Entry>& expected) {
    EXPECT_EQ(s().FirstIndex(), Index(first));
    EXPECT_EQ(s().LastIndex(), Index(first + expected.size() - 1));
    auto got = s().Entries(Index(first), Index(first + expected.size()), kNoLimit);
    ASSERT_TRUE(got.ok()) << got.status();
    EXPECT_EQ(*got, expected);
    for (const Entry& e : expected) {
      auto term = s().TermAt(e.index);
      ASSERT_TRUE(term.ok()) << term.status();
      EXPECT_EQ(*term, e.term) << "index " << e.index;
    }
    EXPECT_EQ(s().TermAt(Index(first + expected.size())).status().code(),
              absl::StatusCode::kOutOfRange);
  }

  TempDir dir_;
  std::unique_ptr<LogStorage> storage_;
};

using Implementations =
    ::testing::Types<MemoryStorage, LevelDbDefaultCache, LevelDbNoCache, LevelDbTinyCache>;
TYPED_TEST_SUITE(LogStorageConformanceTest, Implementations, StorageName);

TYPED_TEST(LogStorageConformanceTest, EmptyLog) {
  EXPECT_EQ(this->s().FirstIndex(), Index(1));
  EXPECT_EQ(this->s().LastIndex(), Index(0));
  EXPECT_EQ(this->s().hard_state(), HardState{});
  EXPECT_EQ(this->s().snapshot_meta(), SnapshotMeta{});
  // Index 0 is "before the log": its term is 0.
  EXPECT_EQ(*this->s().TermAt(Index(0)), Term(0));
  EXPECT_EQ(this->s().TermAt(Index(1)).status().code(), absl::StatusCode::kOutOfRange);
  auto none = this->s().Entries(Index(1), Index(1), kNoLimit);
  ASSERT_TRUE(none.ok());
  EXPECT_TRUE(none->empty());
}

TYPED_TEST(LogStorageConformanceTest, AppendInOneAndSeveralBatches) {
  this->Append(Run(1, 3, 1));
  this->Append(Run(4, 4, 1));
  this->Append({E(5, 2), E(6, 2, std::string("bin\0ary\xff", 8))});
  std::vector<Entry> expected = Run(1, 4, 1);
  expected.push_back(E(5, 2));
  expected.push_back(E(6, 2, std::string("bin\0ary\xff", 8)));
  this->ExpectLog(1, expected);
}

TYPED_TEST(LogStorageConformanceTest, EntryTypesRoundTrip) {
  Entry noop = E(1, 1);
  noop.type = EntryType::kNoOp;
  noop.data.clear();
  Entry conf = E(2, 1);
  conf.type = EntryType::kConfChange;
  conf.data = ConfChange{ConfChangeType::kAddLearner, NodeId(4), "127.0.0.1:7004"}.Encode();
  this->Append({noop, conf});
  this->ExpectLog(1, {noop, conf});
}

TYPED_TEST(LogStorageConformanceTest, OverwriteSuffixDropsEverythingAfterIt) {
  this->Append(Run(1, 5, 1));
  // A new leader's entries conflict from index 3 on: 3..5 are replaced and
  // the stored entry 5 does not survive behind the shorter new suffix.
  this->Append(Run(3, 4, 2));
  std::vector<Entry> expected = Run(1, 2, 1);
  for (const Entry& e : Run(3, 4, 2)) expected.push_back(e);
  this->ExpectLog(1, expected);
  EXPECT_EQ(this->s().TermAt(Index(5)).status().code(), absl::StatusCode::kOutOfRange);
}

TYPED_TEST(LogStorageConformanceTest, OverwriteWithALongerSuffix) {
  this->Append(Run(1, 3, 1));
  this->Append(Run(2, 6, 3));
  std::vector<Entry> expected = Run(1, 1, 1);
  for (const Entry& e : Run(2, 6, 3)) expected.push_back(e);
  this->ExpectLog(1, expected);
}

TYPED_TEST(LogStorageConformanceTest, OverwriteFromTheFirstIndex) {
  this->Append(Run(1, 3, 1));
  this->Append(Run(1, 2, 2));
  this->ExpectLog(1, Run(1, 2, 2));
}

TYPED_TEST(LogStorageConformanceTest, GapsAreRejectedAndChangeNothing) {
  this->Append(Run(1, 3, 1));
  absl::Status gap = this->s().Persist(WithEntries(Run(5, 6, 1)));
  EXPECT_FALSE(gap.ok());
  EXPECT_EQ(gap.code(), absl::StatusCode::kInternal);
  this->ExpectLog(1, Run(1, 3, 1));
  // Still usable after the rejection.
  this->Append(Run(4, 4, 1));
  this->ExpectLog(1, Run(1, 4, 1));
}

TYPED_TEST(LogStorageConformanceTest, EntriesBelowTheSnapshotAreRejected) {
  this->Append(Run(1, 6, 1));
  ASSERT_TRUE(this->s().Compact(Meta(4, 1)).ok());
  absl::Status below = this->s().Persist(WithEntries(Run(3, 7, 2)));
  EXPECT_FALSE(below.ok());
  this->ExpectLog(5, Run(5, 6, 1));
  // Right at the first index is a legal overwrite.
  this->Append(Run(5, 7, 2));
  this->ExpectLog(5, Run(5, 7, 2));
}

TYPED_TEST(LogStorageConformanceTest, HardStatePersistsAloneAndWithEntries) {
  PersistBatch batch;
  batch.hard_state = HardState{Term(3), NodeId(2), Index(0)};
  ASSERT_TRUE(this->s().Persist(batch).ok());
  EXPECT_EQ(this->s().hard_state(), (HardState{Term(3), NodeId(2), Index(0)}));

  PersistBatch both = WithEntries(Run(1, 2, 3));
  both.hard_state = HardState{Term(3), NodeId(2), Index(2)};
  ASSERT_TRUE(this->s().Persist(both).ok());
  EXPECT_EQ(this->s().hard_state(), (HardState{Term(3), NodeId(2), Index(2)}));

  // A batch without a hard state leaves it alone.
  this->Append(Run(3, 3, 3));
  EXPECT_EQ(this->s().hard_state(), (HardState{Term(3), NodeId(2), Index(2)}));
  this->ExpectLog(1, Run(1, 3, 3));
}

TYPED_TEST(LogStorageConformanceTest, EmptyBatchChangesNothing) {
  this->Append(Run(1, 2, 1));
  ASSERT_TRUE(this->s().Persist(PersistBatch{}).ok());
  this->ExpectLog(1, Run(1, 2, 1));
}

TYPED_TEST(LogStorageConformanceTest, SnapshotMatchingAnEntryKeepsTheSuffix) {
  std::vector<Entry> log = Run(1, 4, 1);
  for (const Entry& e : Run(5, 10, 2)) log.push_back(e);
  this->Append(log);
  ASSERT_TRUE(this->s().Persist(WithSnapshot(Meta(6, 2))).ok());
  EXPECT_EQ(this->s().snapshot_meta(), Meta(6, 2));
  EXPECT_EQ(*this->s().TermAt(Index(6)), Term(2));
  EXPECT_EQ(this->s().TermAt(Index(5)).status().code(), absl::StatusCode::kOutOfRange);
  this->ExpectLog(7, Run(7, 10, 2));
}

TYPED_TEST(LogStorageConformanceTest, SnapshotWithADifferentTermDiscardsTheLog) {
  this->Append(Run(1, 10, 1));
  // Entry 6 exists but with term 1: the snapshot's history differs, so no
  // stored entry can be trusted to follow it (Raft Figure 13).
  ASSERT_TRUE(this->s().Persist(WithSnapshot(Meta(6, 2))).ok());
  EXPECT_EQ(this->s().FirstIndex(), Index(7));
  EXPECT_EQ(this->s().LastIndex(), Index(6));
  EXPECT_EQ(*this->s().TermAt(Index(6)), Term(2));
  EXPECT_EQ(this->s().TermAt(Index(7)).status().code(), absl::StatusCode::kOutOfRange);
  auto none = this->s().Entries(Index(7), Index(7), kNoLimit);
  ASSERT_TRUE(none.ok());
  EXPECT_TRUE(none->empty());
}

TYPED_TEST(LogStorageConformanceTest, SnapshotBeyondTheLogDiscardsIt) {
  this->Append(Run(1, 3, 1));
  ASSERT_TRUE(this->s().Persist(WithSnapshot(Meta(20, 4))).ok());
  EXPECT_EQ(this->s().FirstIndex(), Index(21));
  EXPECT_EQ(this->s().LastIndex(), Index(20));
  EXPECT_EQ(*this->s().TermAt(Index(20)), Term(4));
  EXPECT_EQ(this->s().TermAt(Index(3)).status().code(), absl::StatusCode::kOutOfRange);
}

TYPED_TEST(LogStorageConformanceTest, SnapshotEntriesAndHardStateInOneBatch) {
  this->Append(Run(1, 5, 1));
  PersistBatch batch = WithSnapshot(Meta(20, 4));
  batch.entries = Run(21, 23, 4);
  batch.hard_state = HardState{Term(4), NodeId(1), Index(20)};
  ASSERT_TRUE(this->s().Persist(batch).ok());
  EXPECT_EQ(this->s().hard_state(), batch.hard_state);
  EXPECT_EQ(this->s().snapshot_meta(), Meta(20, 4));
  this->ExpectLog(21, Run(21, 23, 4));
}

TYPED_TEST(LogStorageConformanceTest, SnapshotAtTheLastEntryEmptiesTheLog) {
  this->Append(Run(1, 5, 1));
  ASSERT_TRUE(this->s().Persist(WithSnapshot(Meta(5, 1))).ok());
  EXPECT_EQ(this->s().FirstIndex(), Index(6));
  EXPECT_EQ(this->s().LastIndex(), Index(5));
  this->Append(Run(6, 7, 2));
  this->ExpectLog(6, Run(6, 7, 2));
}

TYPED_TEST(LogStorageConformanceTest, CompactDiscardsThePrefix) {
  this->Append(Run(1, 10, 1));
  ASSERT_TRUE(this->s().Compact(Meta(4, 1)).ok());
  EXPECT_EQ(this->s().snapshot_meta(), Meta(4, 1));
  EXPECT_EQ(*this->s().TermAt(Index(4)), Term(1));  // the compaction point
  EXPECT_EQ(this->s().TermAt(Index(3)).status().code(), absl::StatusCode::kOutOfRange);
  EXPECT_EQ(this->s().Entries(Index(3), Index(6), kNoLimit).status().code(),
            absl::StatusCode::kOutOfRange);
  EXPECT_EQ(this->s().Entries(Index(4), Index(6), kNoLimit).status().code(),
            absl::StatusCode::kOutOfRange);
  this->ExpectLog(5, Run(5, 10, 1));

  // At or below the compaction point: nothing to do.
  EXPECT_TRUE(this->s().Compact(Meta(4, 1)).ok());
  EXPECT_TRUE(this->s().Compact(Meta(2, 1)).ok());
  EXPECT_EQ(this->s().snapshot_meta(), Meta(4, 1));

  // Beyond the last index: refused, nothing changes.
  absl::Status beyond = this->s().Compact(Meta(11, 1));
  EXPECT_EQ(beyond.code(), absl::StatusCode::kInvalidArgument);
  this->ExpectLog(5, Run(5, 10, 1));

  // Up to the last entry: an empty log that still knows its last term.
  ASSERT_TRUE(this->s().Compact(Meta(10, 1)).ok());
  EXPECT_EQ(this->s().FirstIndex(), Index(11));
  EXPECT_EQ(this->s().LastIndex(), Index(10));
  EXPECT_EQ(*this->s().TermAt(Index(10)), Term(1));
  this->Append(Run(11, 12, 2));
  this->ExpectLog(11, Run(11, 12, 2));
}

TYPED_TEST(LogStorageConformanceTest, EntriesRangeChecks) {
  this->Append(Run(1, 5, 1));
  auto code = [&](uint64_t lo, uint64_t hi) {
    return this->s().Entries(Index(lo), Index(hi), kNoLimit).status().code();
  };
  EXPECT_EQ(code(0, 3), absl::StatusCode::kOutOfRange);  // below the first index
  EXPECT_EQ(code(1, 7), absl::StatusCode::kOutOfRange);  // past the last index + 1
  EXPECT_EQ(code(4, 3), absl::StatusCode::kOutOfRange);  // lo > hi
  EXPECT_EQ(code(1, 6), absl::StatusCode::kOk);
  auto middle = this->s().Entries(Index(2), Index(4), kNoLimit);
  ASSERT_TRUE(middle.ok());
  EXPECT_EQ(*middle, Run(2, 3, 1));
  auto empty = this->s().Entries(Index(6), Index(6), kNoLimit);
  ASSERT_TRUE(empty.ok());
  EXPECT_TRUE(empty->empty());
  EXPECT_EQ(this->s().TermAt(Index(6)).status().code(), absl::StatusCode::kOutOfRange);
}

TYPED_TEST(LogStorageConformanceTest, MaxBytesCutsButReturnsAtLeastOneEntry) {
  std::vector<Entry> log;
  for (uint64_t i = 1; i <= 5; ++i) log.push_back(E(i, 1, std::string(100, 'a' + i)));
  this->Append(log);
  const uint64_t size = log[0].ByteSize();  // 124: every entry has the same size
  auto take = [&](uint64_t max_bytes) {
    auto got = this->s().Entries(Index(1), Index(6), max_bytes);
    EXPECT_TRUE(got.ok()) << got.status();
    return got.ok() ? got->size() : 0;
  };
  EXPECT_EQ(take(0), 1u);  // never zero entries
  EXPECT_EQ(take(size - 1), 1u);
  EXPECT_EQ(take(size), 1u);
  EXPECT_EQ(take(2 * size - 1), 1u);
  EXPECT_EQ(take(2 * size), 2u);
  EXPECT_EQ(take(2 * size + 1), 2u);
  EXPECT_EQ(take(5 * size), 5u);
  EXPECT_EQ(take(kNoLimit), 5u);
  auto tail = this->s().Entries(Index(3), Index(6), 2 * size);
  ASSERT_TRUE(tail.ok());
  EXPECT_EQ(*tail, std::vector<Entry>(log.begin() + 2, log.begin() + 4));
}

}  // namespace
}  // namespace quorumkv::raft
