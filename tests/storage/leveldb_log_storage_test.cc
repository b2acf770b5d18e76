// LevelDbLogStorage beyond the LogStorage contract: durability across
// reopen, the identity record, refusing bad paths, and above all detecting
// damage, whether to one record (written with LevelDB directly, as a bug or
// bit rot would) or to LevelDB's own files, and never serving a shorter log
// in silence.
#include "raft/storage/leveldb_log_storage.h"

#include <signal.h>
#include <sys/resource.h>

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "leveldb/db.h"
#include "leveldb/iterator.h"
#include "leveldb/options.h"
#include "leveldb/write_batch.h"
#include "raft/storage/format.h"
#include "tests/storage/temp_dir.h"

namespace quorumkv::raft {
namespace {

namespace fs = std::filesystem;
using ::testing::AllOf;
using ::testing::AnyOf;
using ::testing::HasSubstr;
using testing::TempDir;

constexpr uint64_t kNoLimit = ~0ull;

// Entry i of the test logs: term grows every 25 entries; the data is
// different for every index and does not compress away, so LevelDB's blocks
// hold real bytes to damage.
Entry TestEntry(uint64_t index, size_t size = 256) {
  Entry e;
  e.index = Index(index);
  e.term = Term(1 + index / 25);
  e.data.resize(size);
  uint64_t x = index * 0x9E3779B97F4A7C15ull;
  for (char& c : e.data) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    c = static_cast<char>(x);
  }
  return e;
}

std::vector<Entry> TestEntries(uint64_t from, uint64_t to) {
  std::vector<Entry> out;
  for (uint64_t i = from; i <= to; ++i) out.push_back(TestEntry(i));
  return out;
}

LevelDbLogStorage::Options DefaultOptions() { return LevelDbLogStorage::Options{}; }

std::unique_ptr<LevelDbLogStorage> MustOpen(const std::string& dir,
                                            const LevelDbLogStorage::Options& options = DefaultOptions()) {
  auto storage = LevelDbLogStorage::Open(dir, options);
  EXPECT_TRUE(storage.ok()) << storage.status();
  return storage.ok() ? *std::move(storage) : nullptr;
}

// Writes entries [1, n] in batches of `batch_size`, each batch carrying a
// hard state that commits its own last entry (as a follower's would).
void WriteLog(LevelDbLogStorage& s, uint64_t n, uint64_t batch_size = 10) {
  for (uint64_t first = 1; first <= n; first += batch_size) {
    uint64_t last = std::min(n, first + batch_size - 1);
    PersistBatch batch;
    batch.entries = TestEntries(first, last);
    batch.hard_state = HardState{TestEntry(last).term, NodeId(1), Index(last)};
    ASSERT_TRUE(s.Persist(batch).ok());
  }
}

// The log in `dir` holds exactly entries [1, n] written by WriteLog.
void ExpectIntactLog(LevelDbLogStorage& s, uint64_t n) {
  EXPECT_EQ(s.FirstIndex(), Index(1));
  ASSERT_EQ(s.LastIndex(), Index(n));
  auto entries = s.Entries(Index(1), Index(n + 1), kNoLimit);
  ASSERT_TRUE(entries.ok()) << entries.status();
  EXPECT_TRUE(*entries == TestEntries(1, n));
  EXPECT_EQ(s.hard_state().commit_index, Index(n));
}

// Direct access to the LevelDB database under a closed log, to damage it.
std::unique_ptr<leveldb::DB> OpenRaw(const std::string& dir) {
  leveldb::Options options;
  leveldb::DB* db = nullptr;
  leveldb::Status s = leveldb::DB::Open(options, dir, &db);
  EXPECT_TRUE(s.ok()) << s.ToString();
  return std::unique_ptr<leveldb::DB>(db);
}

void RawPut(const std::string& dir, const std::string& key, const std::string& value) {
  auto db = OpenRaw(dir);
  ASSERT_NE(db, nullptr);
  leveldb::WriteOptions wo;
  wo.sync = true;
  ASSERT_TRUE(db->Put(wo, key, value).ok());
}

void RawDelete(const std::string& dir, const std::string& key) {
  auto db = OpenRaw(dir);
  ASSERT_NE(db, nullptr);
  leveldb::WriteOptions wo;
  wo.sync = true;
  ASSERT_TRUE(db->Delete(wo, key).ok());
}

std::string RawGet(const std::string& dir, const std::string& key) {
  auto db = OpenRaw(dir);
  std::string value;
  EXPECT_TRUE(db != nullptr && db->Get(leveldb::ReadOptions(), key, &value).ok());
  return value;
}

// Files of `dir` whose name ends with `suffix`, sorted.
std::vector<fs::path> FilesEndingWith(const std::string& dir, const std::string& suffix) {
  std::vector<fs::path> out;
  for (const auto& entry : fs::directory_iterator(dir)) {
    const std::string name = entry.path().filename().string();
    if (name.size() >= suffix.size() && name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0) {
      out.push_back(entry.path());
    }
  }
  std::sort(out.begin(), out.end());
  return out;
}

std::string ReadFile(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

void WriteFile(const fs::path& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  ASSERT_TRUE(out.good()) << path;
}

void FlipByte(const fs::path& path, size_t offset) {
  std::string bytes = ReadFile(path);
  ASSERT_LT(offset, bytes.size());
  bytes[offset] = static_cast<char>(bytes[offset] ^ 0x5A);
  WriteFile(path, bytes);
}

// A copy of the directory `from` at `to`, to damage one copy per case.
void CopyDir(const std::string& from, const std::string& to) {
  fs::remove_all(to);
  fs::copy(from, to, fs::copy_options::recursive);
}

// A log of `n` entries whose records all sit in LevelDB table files (.ldb):
// reopening converts the write-ahead .log into a level-0 table.
void MakeLogInTables(const std::string& dir, uint64_t n) {
  {
    auto s = MustOpen(dir);
    ASSERT_NE(s, nullptr);
    WriteLog(*s, n);
  }
  auto s = MustOpen(dir);
  ASSERT_NE(s, nullptr);
  ASSERT_FALSE(FilesEndingWith(dir, ".ldb").empty());
}

// The payload byte ranges [begin, end) of the physical records of a LevelDB
// write-ahead log file (32 KiB blocks; each record: crc32 u32, length u16,
// type u8, payload; block tails under 7 bytes are padding).
std::vector<std::pair<size_t, size_t>> LogRecordPayloads(const std::string& bytes) {
  constexpr size_t kBlock = 32768, kHeader = 7;
  std::vector<std::pair<size_t, size_t>> out;
  size_t pos = 0;
  while (pos + kHeader <= bytes.size()) {
    size_t left_in_block = kBlock - pos % kBlock;
    if (left_in_block < kHeader) {
      pos += left_in_block;
      continue;
    }
    size_t length = static_cast<uint8_t>(bytes[pos + 4]) | static_cast<uint8_t>(bytes[pos + 5]) << 8;
    if (length == 0 && bytes[pos + 6] == 0) break;  // zero padding: end of records
    out.emplace_back(pos + kHeader, pos + kHeader + length);
    pos += kHeader + length;
  }
  return out;
}

// ---------------------------------------------------------------------------
// Durability and layout.

TEST(LevelDbLogStorageTest, EverythingSurvivesCloseAndReopen) {
  TempDir tmp;
  const std::string dir = tmp.Sub("raft");
  {
    auto s = MustOpen(dir);
    ASSERT_NE(s, nullptr);
    WriteLog(*s, 300);
    ASSERT_TRUE(s->Compact(SnapshotMeta{Index(120), TestEntry(120).term,
                                        ConfState{{NodeId(1), NodeId(2)}, {NodeId(3)}}})
                    .ok());
    ASSERT_TRUE(s->SetIdentity(0xABCDEF, NodeId(2)).ok());
    PersistBatch hs;
    hs.hard_state = HardState{Term(42), NodeId(3), Index(290)};
    ASSERT_TRUE(s->Persist(hs).ok());
  }
  auto s = MustOpen(dir);
  ASSERT_NE(s, nullptr);
  EXPECT_EQ(s->FirstIndex(), Index(121));
  EXPECT_EQ(s->LastIndex(), Index(300));
  EXPECT_EQ(s->snapshot_meta(), (SnapshotMeta{Index(120), TestEntry(120).term,
                                              ConfState{{NodeId(1), NodeId(2)}, {NodeId(3)}}}));
  EXPECT_EQ(*s->TermAt(Index(120)), TestEntry(120).term);
  EXPECT_EQ(s->hard_state(), (HardState{Term(42), NodeId(3), Index(290)}));
  EXPECT_EQ(s->identity(), (StorageIdentity{0xABCDEF, NodeId(2)}));
  auto entries = s->Entries(Index(121), Index(301), kNoLimit);
  ASSERT_TRUE(entries.ok()) << entries.status();
  EXPECT_TRUE(*entries == TestEntries(121, 300));
  for (uint64_t i = 121; i <= 300; ++i) EXPECT_EQ(*s->TermAt(Index(i)), TestEntry(i).term);
  // The compacted entries are gone from the database, not only hidden.
  s.reset();
  auto db = OpenRaw(dir);
  std::string value;
  EXPECT_TRUE(db->Get(leveldb::ReadOptions(), storage::EntryKey(Index(120)), &value).IsNotFound());
  EXPECT_TRUE(db->Get(leveldb::ReadOptions(), storage::EntryKey(Index(121)), &value).ok());
}

TEST(LevelDbLogStorageTest, UnsyncedWritesSurviveACleanClose) {
  TempDir tmp;
  LevelDbLogStorage::Options options;
  options.sync = false;
  options.block_cache_bytes = 0;  // LevelDB's default cache
  options.write_buffer_bytes = 64 << 10;  // several table flushes along the way
  {
    auto s = MustOpen(tmp.Sub("raft"), options);
    ASSERT_NE(s, nullptr);
    WriteLog(*s, 1000, 50);
  }
  auto s = MustOpen(tmp.Sub("raft"), options);
  ASSERT_NE(s, nullptr);
  ExpectIntactLog(*s, 1000);
}

TEST(LevelDbLogStorageTest, EntriesPagesThroughALargeLog) {
  TempDir tmp;
  auto s = MustOpen(tmp.Sub("raft"));
  ASSERT_NE(s, nullptr);
  WriteLog(*s, 500, 100);
  std::vector<Entry> all;
  for (Index lo(1); lo <= s->LastIndex();) {
    auto page = s->Entries(lo, s->LastIndex() + 1, 4096);
    ASSERT_TRUE(page.ok()) << page.status();
    ASSERT_FALSE(page->empty());
    EXPECT_LE(page->size(), 4096 / TestEntry(1).ByteSize());
    lo = lo + page->size();
    all.insert(all.end(), page->begin(), page->end());
  }
  EXPECT_TRUE(all == TestEntries(1, 500));
}

TEST(LevelDbLogStorageTest, EntriesPagesThroughRunsOnDiskFromTheMiddleOfARun) {
  TempDir tmp;
  LevelDbLogStorage::Options options;
  options.entry_cache_bytes = 0;  // every read decodes runs from LevelDB
  auto s = MustOpen(tmp.Sub("raft"), options);
  ASSERT_NE(s, nullptr);
  WriteLog(*s, 95, 10);  // runs of 10 and a last one of 5
  for (uint64_t max_bytes : std::vector<uint64_t>{1, 3 * TestEntry(1).ByteSize(), 4096, kNoLimit}) {
    std::vector<Entry> got;
    for (Index lo(13); lo < Index(94);) {
      auto page = s->Entries(lo, Index(94), max_bytes);
      ASSERT_TRUE(page.ok()) << page.status();
      ASSERT_FALSE(page->empty());
      lo = lo + page->size();
      got.insert(got.end(), page->begin(), page->end());
    }
    EXPECT_TRUE(got == TestEntries(13, 93)) << "max_bytes " << max_bytes;
  }
}

void ExpectOpenFailsWith(const std::string& dir, absl::StatusCode code,
                         const std::vector<std::string>& fragments);

// The keys of the entry records in `dir`, as first indexes.
std::vector<uint64_t> RunStarts(const std::string& dir) {
  auto db = OpenRaw(dir);
  std::vector<uint64_t> out;
  std::unique_ptr<leveldb::Iterator> it(db->NewIterator(leveldb::ReadOptions()));
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    if (auto index = storage::ParseEntryKey(it->key().ToString())) out.push_back(index->value());
  }
  return out;
}

std::vector<Entry> RawRun(const std::string& dir, uint64_t first) {
  auto run = storage::DecodeEntryRun(RawGet(dir, storage::EntryKey(Index(first))));
  EXPECT_TRUE(run.ok()) << run.status();
  return run.ok() ? *run : std::vector<Entry>{};
}

TEST(LevelDbLogStorageTest, EachBatchIsOneRecordAndCutRecordsAreRewritten) {
  TempDir tmp;
  const std::string dir = tmp.Sub("raft");
  {
    auto s = MustOpen(dir);
    ASSERT_NE(s, nullptr);
    WriteLog(*s, 30);
  }
  EXPECT_EQ(RunStarts(dir), (std::vector<uint64_t>{1, 11, 21}));
  std::vector<Entry> replacement = {TestEntry(15), TestEntry(16)};
  for (Entry& e : replacement) e.term = Term(99);
  {
    // A new leader's entries from 15 on: the run 11-20 is cut to 11-14 and
    // the run 21-30 deleted.
    auto s = MustOpen(dir);
    ASSERT_NE(s, nullptr);
    PersistBatch batch;
    batch.entries = replacement;
    // (The test's log "committed" everything; a real one never commits
    // what a new leader may replace.)
    batch.hard_state = HardState{Term(99), NodeId(1), Index(14)};
    ASSERT_TRUE(s->Persist(batch).ok());
  }
  EXPECT_EQ(RunStarts(dir), (std::vector<uint64_t>{1, 11, 15}));
  EXPECT_TRUE(RawRun(dir, 11) == TestEntries(11, 14));
  EXPECT_TRUE(RawRun(dir, 15) == replacement);
  {
    // A compaction inside a run: 1-10 deleted, 11-14 cut to 13-14.
    auto s = MustOpen(dir);
    ASSERT_NE(s, nullptr);
    ASSERT_TRUE(s->Compact(SnapshotMeta{Index(12), TestEntry(12).term, {}}).ok());
  }
  EXPECT_EQ(RunStarts(dir), (std::vector<uint64_t>{13, 15}));
  EXPECT_TRUE(RawRun(dir, 13) == TestEntries(13, 14));
  auto s = MustOpen(dir);
  ASSERT_NE(s, nullptr);
  EXPECT_EQ(s->FirstIndex(), Index(13));
  auto entries = s->Entries(Index(13), Index(17), kNoLimit);
  ASSERT_TRUE(entries.ok()) << entries.status();
  std::vector<Entry> expected = TestEntries(13, 14);
  expected.insert(expected.end(), replacement.begin(), replacement.end());
  EXPECT_TRUE(*entries == expected);
}

// A directory written by a build that stored one entry per key.
void WriteOneEntryPerKeyLog(const std::string& dir, uint64_t snapshot_index, uint64_t last,
                            std::optional<uint64_t> damaged = std::nullopt) {
  leveldb::Options options;
  options.create_if_missing = true;
  leveldb::DB* raw = nullptr;
  ASSERT_TRUE(leveldb::DB::Open(options, dir, &raw).ok());
  std::unique_ptr<leveldb::DB> db(raw);
  leveldb::WriteBatch wb;
  storage::Metadata metadata{storage::kOneEntryPerKeyFormatVersion, 0xC1, 2};
  wb.Put(std::string(storage::kMetadataKey), storage::EncodeMetadata(metadata));
  wb.Put(std::string(storage::kHardStateKey),
         storage::EncodeHardState(HardState{TestEntry(last).term, NodeId(1), Index(last)}));
  wb.Put(std::string(storage::kSnapshotMetaKey),
         storage::EncodeSnapshotMeta(SnapshotMeta{Index(snapshot_index), TestEntry(snapshot_index).term, {}}));
  for (uint64_t i = snapshot_index + 1; i <= last; ++i) {
    std::string value = storage::EncodeEntry(TestEntry(i));
    if (damaged == i) value[20] = static_cast<char>(value[20] ^ 1);
    wb.Put(storage::EntryKey(Index(i)), value);
  }
  leveldb::WriteOptions wo;
  wo.sync = true;
  ASSERT_TRUE(db->Write(wo, &wb).ok());
}

TEST(LevelDbLogStorageTest, ConvertsALogOfFormatVersion1AtOpen) {
  TempDir tmp;
  const std::string dir = tmp.Sub("raft");
  std::filesystem::create_directories(dir);
  WriteOneEntryPerKeyLog(dir, 4, 2500);
  for (int open = 0; open < 2; ++open) {  // converted, then opened as version 2
    auto s = MustOpen(dir);
    ASSERT_NE(s, nullptr);
    EXPECT_EQ(s->FirstIndex(), Index(5));
    EXPECT_EQ(s->LastIndex(), Index(2500));
    EXPECT_EQ(s->identity(), (StorageIdentity{0xC1, NodeId(2)}));
    EXPECT_EQ(s->hard_state(), (HardState{TestEntry(2500).term, NodeId(1), Index(2500)}));
    auto entries = s->Entries(Index(5), Index(2501), kNoLimit);
    ASSERT_TRUE(entries.ok()) << entries.status();
    EXPECT_TRUE(*entries == TestEntries(5, 2500));
  }
  // Runs of at most 1024 entries; no version 1 record is left.
  EXPECT_EQ(RunStarts(dir), (std::vector<uint64_t>{5, 1029, 2053}));
  auto metadata = storage::DecodeMetadata(RawGet(dir, std::string(storage::kMetadataKey)));
  ASSERT_TRUE(metadata.ok()) << metadata.status();
  EXPECT_EQ(metadata->format_version, storage::kFormatVersion);
  // And the converted log takes writes.
  auto s = MustOpen(dir);
  ASSERT_NE(s, nullptr);
  PersistBatch batch;
  batch.entries = TestEntries(2501, 2510);
  ASSERT_TRUE(s->Persist(batch).ok());
}

TEST(LevelDbLogStorageTest, DamagedLogOfFormatVersion1IsRefusedAndLeftUnconverted) {
  TempDir tmp;
  const std::string dir = tmp.Sub("raft");
  std::filesystem::create_directories(dir);
  WriteOneEntryPerKeyLog(dir, 0, 40, /*damaged=*/17);
  ExpectOpenFailsWith(dir, absl::StatusCode::kDataLoss,
                      {"converting from format version 1: entry 17 failed its checksum"});
  auto metadata = storage::DecodeMetadata(RawGet(dir, std::string(storage::kMetadataKey)));
  ASSERT_TRUE(metadata.ok()) << metadata.status();
  EXPECT_EQ(metadata->format_version, storage::kOneEntryPerKeyFormatVersion);
  EXPECT_EQ(RunStarts(dir).size(), 40u);
}

TEST(LevelDbLogStorageTest, LogOfFormatVersion1WithAStrayEntryKeyIsRefusedAndLeftUnconverted) {
  TempDir tmp;
  const std::string dir = tmp.Sub("raft");
  std::filesystem::create_directories(dir);
  WriteOneEntryPerKeyLog(dir, 0, 40);
  RawPut(dir, std::string("e\x01", 2), "a key one byte long after its prefix");
  ExpectOpenFailsWith(dir, absl::StatusCode::kDataLoss, {"converting from format version 1: unexpected key"});
  auto metadata = storage::DecodeMetadata(RawGet(dir, std::string(storage::kMetadataKey)));
  ASSERT_TRUE(metadata.ok()) << metadata.status();
  EXPECT_EQ(metadata->format_version, storage::kOneEntryPerKeyFormatVersion);
}

TEST(LevelDbLogStorageTest, CreatesMissingParentDirectories) {
  TempDir tmp;
  const std::string dir = tmp.Sub("a/b/c/raft");
  auto s = MustOpen(dir);
  ASSERT_NE(s, nullptr);
  EXPECT_TRUE(fs::is_directory(dir));
  EXPECT_EQ(s->dir(), dir);
  WriteLog(*s, 5);
  s.reset();
  // A trailing slash names the same directory.
  auto again = MustOpen(dir + "/");
  ASSERT_NE(again, nullptr);
  EXPECT_EQ(again->LastIndex(), Index(5));
}

TEST(LevelDbLogStorageTest, NonDirectoryPathIsAClearError) {
  TempDir tmp;
  const std::string file = tmp.Sub("plain-file");
  WriteFile(file, "not a directory");

  auto s = LevelDbLogStorage::Open(file, DefaultOptions());
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(s.status().message(), AllOf(HasSubstr(file), HasSubstr("not a directory")));

  // A file as a parent component.
  auto under = LevelDbLogStorage::Open(file + "/raft", DefaultOptions());
  ASSERT_FALSE(under.ok());
  EXPECT_EQ(under.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(under.status().message(), HasSubstr("not a directory"));

  auto empty = LevelDbLogStorage::Open("", DefaultOptions());
  ASSERT_FALSE(empty.ok());
  EXPECT_EQ(empty.status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(LevelDbLogStorageTest, UnwritableParentIsAClearError) {
  if (::geteuid() == 0) {
    // root ignores directory permissions; use a path under /proc instead,
    // where mkdir fails for everyone.
    auto s = LevelDbLogStorage::Open("/proc/quorumkv-raft-log", DefaultOptions());
    ASSERT_FALSE(s.ok());
    EXPECT_THAT(s.status().message(), AllOf(HasSubstr("/proc/quorumkv-raft-log"), HasSubstr("mkdir")));
    return;
  }
  TempDir tmp;
  const std::string parent = tmp.Sub("locked");
  fs::create_directory(parent);
  fs::permissions(parent, fs::perms::owner_read | fs::perms::owner_exec);
  auto s = LevelDbLogStorage::Open(parent + "/raft", DefaultOptions());
  fs::permissions(parent, fs::perms::owner_all);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(s.status().message(), HasSubstr("mkdir"));
}

TEST(LevelDbLogStorageTest, SecondOpenOfAnOpenLogFails) {
  TempDir tmp;
  auto first = MustOpen(tmp.Sub("raft"));
  ASSERT_NE(first, nullptr);
  auto second = LevelDbLogStorage::Open(tmp.Sub("raft"), DefaultOptions());
  ASSERT_FALSE(second.ok());
  EXPECT_THAT(second.status().message(), AllOf(HasSubstr(tmp.Sub("raft")), HasSubstr("lock")));
}

TEST(LevelDbLogStorageTest, IdentityRoundTrip) {
  TempDir tmp;
  const std::string dir = tmp.Sub("raft");
  {
    auto s = MustOpen(dir);
    ASSERT_NE(s, nullptr);
    EXPECT_EQ(s->identity(), std::nullopt);
    EXPECT_EQ(s->SetIdentity(0, NodeId(3)).code(), absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(s->SetIdentity(7, kNoNode).code(), absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(s->identity(), std::nullopt);
    ASSERT_TRUE(s->SetIdentity(7, NodeId(3)).ok());
    EXPECT_EQ(s->identity(), (StorageIdentity{7, NodeId(3)}));
    EXPECT_TRUE(s->SetIdentity(7, NodeId(3)).ok());  // idempotent
  }
  auto s = MustOpen(dir);
  ASSERT_NE(s, nullptr);
  EXPECT_EQ(s->identity(), (StorageIdentity{7, NodeId(3)}));
  absl::Status other_cluster = s->SetIdentity(8, NodeId(3));
  EXPECT_EQ(other_cluster.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(other_cluster.message(), AllOf(HasSubstr("cluster 7 node 3"), HasSubstr(dir)));
  EXPECT_EQ(s->SetIdentity(7, NodeId(4)).code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(s->identity(), (StorageIdentity{7, NodeId(3)}));
}

TEST(LevelDbLogStorageTest, RejectsNonConsecutiveBatchWithoutWritingIt) {
  TempDir tmp;
  auto s = MustOpen(tmp.Sub("raft"));
  ASSERT_NE(s, nullptr);
  WriteLog(*s, 3);
  PersistBatch batch;
  batch.entries = {TestEntry(4), TestEntry(6)};
  batch.hard_state = HardState{Term(9), NodeId(1), Index(4)};
  absl::Status status = s->Persist(batch);
  EXPECT_EQ(status.code(), absl::StatusCode::kInternal);
  EXPECT_THAT(status.message(), HasSubstr("consecutive"));
  // Nothing of the batch was applied, the hard state included.
  ExpectIntactLog(*s, 3);
}

TEST(LevelDbLogStorageTest, RejectedSnapshotBatchChangesNothing) {
  // MemoryLogStorage installs the snapshot before it rejects the entries;
  // the disk version validates the whole batch first.
  TempDir tmp;
  auto s = MustOpen(tmp.Sub("raft"));
  ASSERT_NE(s, nullptr);
  WriteLog(*s, 10);
  PersistBatch batch;
  batch.snapshot = SnapshotMeta{Index(20), Term(5), {}};
  batch.entries = {TestEntry(25)};  // a gap after the snapshot
  EXPECT_FALSE(s->Persist(batch).ok());
  EXPECT_EQ(s->snapshot_meta(), SnapshotMeta{});
  ExpectIntactLog(*s, 10);
}

TEST(LevelDbLogStorageTest, CompactWithTheWrongTermIsRefused) {
  TempDir tmp;
  auto s = MustOpen(tmp.Sub("raft"));
  ASSERT_NE(s, nullptr);
  WriteLog(*s, 30);
  absl::Status status = s->Compact(SnapshotMeta{Index(10), Term(99), {}});
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("entry 10 has term 1"));
  ExpectIntactLog(*s, 30);
}

TEST(LevelDbLogStorageTest, FailedWriteIsReturnedAndEveryLaterWriteRefused) {
  TempDir tmp;
  const std::string dir = tmp.Sub("raft");
  auto s = MustOpen(dir);
  ASSERT_NE(s, nullptr);
  WriteLog(*s, 10);
  std::vector<fs::path> logs = FilesEndingWith(dir, ".log");
  ASSERT_EQ(logs.size(), 1u);
  const auto log_size = fs::file_size(logs[0]);

  // Make the next large write fail part-way, as a full disk would: the file
  // size limit lets 1000 more bytes through, then write() fails with EFBIG.
  struct rlimit saved;
  ASSERT_EQ(::getrlimit(RLIMIT_FSIZE, &saved), 0);
  struct rlimit limited = saved;
  limited.rlim_cur = log_size + 1000;
  auto old_handler = ::signal(SIGXFSZ, SIG_IGN);
  ASSERT_EQ(::setrlimit(RLIMIT_FSIZE, &limited), 0);
  PersistBatch big;
  for (uint64_t i = 11; i <= 110; ++i) big.entries.push_back(TestEntry(i, 1024));
  big.hard_state = HardState{Term(5), NodeId(1), Index(110)};
  absl::Status failed = s->Persist(big);
  ASSERT_EQ(::setrlimit(RLIMIT_FSIZE, &saved), 0);
  ::signal(SIGXFSZ, old_handler);

  ASSERT_FALSE(failed.ok());
  EXPECT_THAT(failed.message(), HasSubstr(dir));
  // The in-memory view did not move.
  EXPECT_EQ(s->LastIndex(), Index(10));
  EXPECT_EQ(s->hard_state().commit_index, Index(10));
  // Sticky: the disk state after a failed write is unknown, so nothing more
  // is written through this object, even though the disk works again.
  PersistBatch small;
  small.entries = {TestEntry(11)};
  absl::Status refused = s->Persist(small);
  EXPECT_EQ(refused.code(), failed.code());
  EXPECT_THAT(refused.message(), HasSubstr("refusing to write after a failed write"));
  EXPECT_FALSE(s->Compact(SnapshotMeta{Index(5), TestEntry(5).term, {}}).ok());
  EXPECT_FALSE(s->SetIdentity(1, NodeId(1)).ok());
  EXPECT_EQ(s->LastIndex(), Index(10));

  // A restart reloads the truth: the torn batch is gone whole.
  s.reset();
  s = MustOpen(dir);
  ASSERT_NE(s, nullptr);
  ExpectIntactLog(*s, 10);
  WriteLog(*s, 10);  // and the log is writable again
}

// ---------------------------------------------------------------------------
// Damage to single records, written with LevelDB directly.

void ExpectOpenFailsWith(const std::string& dir, absl::StatusCode code,
                         const std::vector<std::string>& fragments) {
  auto s = LevelDbLogStorage::Open(dir, DefaultOptions());
  ASSERT_FALSE(s.ok()) << "opened a damaged log";
  EXPECT_EQ(s.status().code(), code) << s.status();
  EXPECT_THAT(s.status().message(), HasSubstr("raft log " + dir + ": "));
  for (const std::string& fragment : fragments) {
    EXPECT_THAT(s.status().message(), HasSubstr(fragment));
  }
}

class DamagedRecordTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto s = MustOpen(dir_);
    ASSERT_NE(s, nullptr);
    WriteLog(*s, 20);
  }
  TempDir tmp_;
  const std::string dir_ = tmp_.Sub("raft");
};

// WriteLog's batches of 10 are stored as two runs: entries 1-10 under
// EntryKey(1) and 11-20 under EntryKey(11).
TEST_F(DamagedRecordTest, GarbageUnderAnEntryKey) {
  RawPut(dir_, storage::EntryKey(Index(11)), "garbage that is no record at all");
  ExpectOpenFailsWith(dir_, absl::StatusCode::kDataLoss,
                      {"entry 11 (the first of its record) failed its checksum"});
}

TEST_F(DamagedRecordTest, OneFlippedByteInAnEntryValue) {
  std::string value = RawGet(dir_, storage::EntryKey(Index(1)));
  ASSERT_GT(value.size(), 100u);
  value[100] = static_cast<char>(value[100] ^ 1);
  RawPut(dir_, storage::EntryKey(Index(1)), value);
  ExpectOpenFailsWith(dir_, absl::StatusCode::kDataLoss,
                      {"entry 1 (the first of its record) failed its checksum"});
}

TEST_F(DamagedRecordTest, TooShortForAChecksum) {
  RawPut(dir_, storage::EntryKey(Index(11)), "ab");
  ExpectOpenFailsWith(dir_, absl::StatusCode::kDataLoss, {"entry 11 (the first of its record) is truncated"});
}

TEST_F(DamagedRecordTest, ValidRecordUnderTheWrongKey) {
  RawPut(dir_, storage::EntryKey(Index(11)), storage::EncodeEntryRun(TestEntries(12, 20)));
  ExpectOpenFailsWith(dir_, absl::StatusCode::kDataLoss,
                      {"the record stored as entry 11 holds entries from 12"});
}

TEST_F(DamagedRecordTest, RecordsThatOverlap) {
  // A run under key 15 although the run under 11 already holds 11-20.
  RawPut(dir_, storage::EntryKey(Index(15)), storage::EncodeEntryRun(TestEntries(15, 16)));
  ExpectOpenFailsWith(dir_, absl::StatusCode::kDataLoss,
                      {"entry 15 is at or below the last entry 20 of the record before it"});
}

TEST_F(DamagedRecordTest, GapInTheMiddle) {
  {
    auto s = MustOpen(dir_);
    ASSERT_NE(s, nullptr);
    WriteLog(*s, 30);  // runs at 1, 11 and 21
  }
  RawDelete(dir_, storage::EntryKey(Index(11)));
  ExpectOpenFailsWith(dir_, absl::StatusCode::kDataLoss,
                      {"entry 11 is missing", "next stored entry is 21"});
}

TEST_F(DamagedRecordTest, FirstEntryMissing) {
  RawDelete(dir_, storage::EntryKey(Index(1)));
  ExpectOpenFailsWith(dir_, absl::StatusCode::kDataLoss, {"entry 1 is missing"});
}

TEST_F(DamagedRecordTest, CommittedTailMissing) {
  // Entries 11..20 vanish: no gap is left, but the hard state commits 20.
  RawDelete(dir_, storage::EntryKey(Index(11)));
  ExpectOpenFailsWith(dir_, absl::StatusCode::kDataLoss,
                      {"commit index 20 is beyond the last entry 10"});
}

TEST_F(DamagedRecordTest, EntryAtOrBelowTheSnapshot) {
  {
    auto s = MustOpen(dir_);
    ASSERT_NE(s, nullptr);
    ASSERT_TRUE(s->Compact(SnapshotMeta{Index(10), TestEntry(10).term, {}}).ok());
  }
  RawPut(dir_, storage::EntryKey(Index(9)), storage::EncodeEntryRun(TestEntries(9, 9)));
  ExpectOpenFailsWith(dir_, absl::StatusCode::kDataLoss,
                      {"entry 9 is at or below the snapshot index 10"});
}

TEST_F(DamagedRecordTest, TermGoesBackwards) {
  std::vector<Entry> run = TestEntries(11, 20);
  run[4].term = Term(0);  // entry 15
  RawPut(dir_, storage::EntryKey(Index(11)), storage::EncodeEntryRun(run));
  ExpectOpenFailsWith(dir_, absl::StatusCode::kDataLoss, {"entry 15 has term 0, lower than"});
}

TEST_F(DamagedRecordTest, DamagedHardState) {
  std::string value = RawGet(dir_, std::string(storage::kHardStateKey));
  value[6] = static_cast<char>(value[6] ^ 0x10);
  RawPut(dir_, std::string(storage::kHardStateKey), value);
  ExpectOpenFailsWith(dir_, absl::StatusCode::kDataLoss, {"hard state failed its checksum"});
}

TEST_F(DamagedRecordTest, DamagedSnapshotMeta) {
  RawPut(dir_, std::string(storage::kSnapshotMetaKey), "xxxxxxxx");
  ExpectOpenFailsWith(dir_, absl::StatusCode::kDataLoss, {"snapshot metadata failed its checksum"});
}

TEST_F(DamagedRecordTest, MissingMetadataRecord) {
  RawDelete(dir_, std::string(storage::kMetadataKey));
  ExpectOpenFailsWith(dir_, absl::StatusCode::kDataLoss, {"no metadata record"});
}

TEST_F(DamagedRecordTest, OtherFormatVersion) {
  storage::Metadata future;
  future.format_version = storage::kFormatVersion + 1;
  RawPut(dir_, std::string(storage::kMetadataKey), storage::EncodeMetadata(future));
  ExpectOpenFailsWith(dir_, absl::StatusCode::kFailedPrecondition, {"format version 3;"});
}

TEST_F(DamagedRecordTest, UnexpectedKey) {
  RawPut(dir_, "zzz", "a key this format never writes");
  ExpectOpenFailsWith(dir_, absl::StatusCode::kDataLoss, {"unexpected key \"zzz\""});
}

TEST(LevelDbLogStorageTest, ForeignLevelDbDatabaseIsRefused) {
  TempDir tmp;
  const std::string dir = tmp.Sub("kv");
  {
    leveldb::Options options;
    options.create_if_missing = true;
    leveldb::DB* db = nullptr;
    ASSERT_TRUE(leveldb::DB::Open(options, dir, &db).ok());
    std::unique_ptr<leveldb::DB> owned(db);
    ASSERT_TRUE(owned->Put(leveldb::WriteOptions(), "user/key", "value").ok());
  }
  ExpectOpenFailsWith(dir, absl::StatusCode::kDataLoss, {"not a quorumkv raft log"});
}

// ---------------------------------------------------------------------------
// Damage to LevelDB's own files.

TEST(LevelDbFileDamageTest, FlippedByteInATableFileIsDetectedAtOpen) {
  TempDir tmp;
  const std::string dir = tmp.Sub("raft");
  MakeLogInTables(dir, 200);
  std::vector<fs::path> tables = FilesEndingWith(dir, ".ldb");
  ASSERT_EQ(tables.size(), 1u);
  FlipByte(tables[0], 100);  // inside the first data block: entries 1..
  ExpectOpenFailsWith(dir, absl::StatusCode::kDataLoss, {"Corruption"});
}

TEST(LevelDbFileDamageTest, FlippedByteAnywhereInATableIsAnErrorOrHarmless) {
  // Flip bytes across a whole table file, one copy per position: Open must
  // fail cleanly or return the complete log. Never a crash, never a shorter
  // log. (Bytes LevelDB never reads, such as the metaindex block without a
  // filter policy, are harmless.)
  TempDir tmp;
  const std::string original = tmp.Sub("original");
  MakeLogInTables(original, 200);
  const std::string table_name = FilesEndingWith(original, ".ldb").at(0).filename().string();
  const size_t size = fs::file_size(fs::path(original) / table_name);
  std::vector<size_t> offsets;
  for (size_t k = 0; k < 64; ++k) offsets.push_back(k * size / 64);
  for (size_t k = size - 48; k < size; ++k) offsets.push_back(k);  // the footer, every byte
  int failures = 0;
  for (size_t offset : offsets) {
    SCOPED_TRACE("flipped byte " + std::to_string(offset) + " of " + std::to_string(size));
    const std::string copy = tmp.Sub("copy");
    CopyDir(original, copy);
    FlipByte(fs::path(copy) / table_name, offset);
    auto s = LevelDbLogStorage::Open(copy, DefaultOptions());
    if (!s.ok()) {
      ++failures;
      EXPECT_EQ(s.status().code(), absl::StatusCode::kDataLoss) << s.status();
      EXPECT_THAT(s.status().message(), HasSubstr(copy));
      continue;
    }
    ExpectIntactLog(**s, 200);
  }
  // Most positions hold data or index bytes: most flips must be caught.
  EXPECT_GT(failures, static_cast<int>(offsets.size()) / 2);
}

TEST(LevelDbFileDamageTest, TruncatedTableFileIsDataLoss) {
  TempDir tmp;
  const std::string original = tmp.Sub("original");
  MakeLogInTables(original, 200);
  const fs::path table = FilesEndingWith(original, ".ldb").at(0);
  const size_t size = fs::file_size(table);
  for (size_t length : {size_t{0}, size_t{10}, size / 2, size - 1}) {
    SCOPED_TRACE("table truncated to " + std::to_string(length) + " of " + std::to_string(size));
    const std::string copy = tmp.Sub("copy");
    CopyDir(original, copy);
    fs::resize_file(fs::path(copy) / table.filename(), length);
    // LevelDB reads at the size its MANIFEST recorded: past the end of the
    // cut file that is an "IO error ... Invalid argument" rather than a
    // Corruption, reported as DATA_LOSS all the same.
    auto s = LevelDbLogStorage::Open(copy, DefaultOptions());
    ASSERT_FALSE(s.ok());
    EXPECT_EQ(s.status().code(), absl::StatusCode::kDataLoss) << s.status();
    EXPECT_THAT(s.status().message(), AnyOf(HasSubstr("Corruption"), HasSubstr(table.filename().string())));
  }
}

TEST(LevelDbFileDamageTest, MissingTableFileIsDataLoss) {
  TempDir tmp;
  const std::string dir = tmp.Sub("raft");
  MakeLogInTables(dir, 50);
  fs::remove(FilesEndingWith(dir, ".ldb").at(0));
  ExpectOpenFailsWith(dir, absl::StatusCode::kDataLoss, {"missing files"});
}

TEST(LevelDbFileDamageTest, TableDamagedWhileOpenIsDataLossOnRead) {
  // Bit rot after Open: the scan at Open passed, the read must not.
  TempDir tmp;
  const std::string dir = tmp.Sub("raft");
  MakeLogInTables(dir, 200);
  auto s = MustOpen(dir);
  ASSERT_NE(s, nullptr);
  FlipByte(FilesEndingWith(dir, ".ldb").at(0), 100);
  auto entries = s->Entries(Index(1), Index(201), kNoLimit);
  ASSERT_FALSE(entries.ok());
  EXPECT_EQ(entries.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(entries.status().message(), AllOf(HasSubstr("raft log " + dir), HasSubstr("entry 1")));
}

TEST(LevelDbFileDamageTest, FlippedByteInTheWriteAheadLogIsDataLoss) {
  // The records are still in LevelDB's .log (the log was never reopened):
  // damage inside any record's payload fails its checksum at recovery.
  TempDir tmp;
  const std::string original = tmp.Sub("original");
  {
    auto s = MustOpen(original);
    ASSERT_NE(s, nullptr);
    WriteLog(*s, 200);
  }
  std::vector<fs::path> logs = FilesEndingWith(original, ".log");
  ASSERT_EQ(logs.size(), 1u);
  const std::string log_name = logs[0].filename().string();
  auto payloads = LogRecordPayloads(ReadFile(logs[0]));
  // The metadata record, 20 batches, some split across 32 KiB blocks.
  ASSERT_GE(payloads.size(), 21u);
  for (size_t r : {size_t{0}, size_t{1}, payloads.size() / 2, payloads.size() - 1}) {
    for (size_t offset : {payloads[r].first, (payloads[r].first + payloads[r].second) / 2,
                          payloads[r].second - 1}) {
      SCOPED_TRACE("record " + std::to_string(r) + ", byte " + std::to_string(offset));
      const std::string copy = tmp.Sub("copy");
      CopyDir(original, copy);
      FlipByte(fs::path(copy) / log_name, offset);
      ExpectOpenFailsWith(copy, absl::StatusCode::kDataLoss, {"checksum mismatch"});
    }
  }
}

TEST(LevelDbFileDamageTest, TruncatedWriteAheadLogRecoversWholeBatches) {
  // A .log cut short is what a crash in the middle of a write leaves:
  // LevelDB cannot tell the two apart and drops the torn tail. What must
  // hold is atomicity: the log is exactly as after some earlier Persist,
  // never part of a batch, and its hard state is the one of that batch.
  TempDir tmp;
  const std::string original = tmp.Sub("original");
  {
    auto s = MustOpen(original);
    ASSERT_NE(s, nullptr);
    WriteLog(*s, 200);  // 20 batches of 10
  }
  const fs::path log = FilesEndingWith(original, ".log").at(0);
  const size_t size = fs::file_size(log);
  uint64_t previous_last = 0;
  for (size_t length = 0; length <= size; length += std::max<size_t>(1, size / 40)) {
    SCOPED_TRACE(".log truncated to " + std::to_string(length) + " of " + std::to_string(size));
    const std::string copy = tmp.Sub("copy");
    CopyDir(original, copy);
    fs::resize_file(fs::path(copy) / log.filename(), length);
    auto s = LevelDbLogStorage::Open(copy, DefaultOptions());
    ASSERT_TRUE(s.ok()) << s.status();
    const uint64_t last = (*s)->LastIndex().value();
    EXPECT_EQ(last % 10, 0u) << "a partial batch survived";
    EXPECT_GE(last, previous_last) << "a longer prefix of the file recovered less";
    ExpectIntactLog(**s, last);
    if (last == 0) {
      EXPECT_EQ((*s)->hard_state(), HardState{});
    }
    previous_last = last;
  }
  auto whole = MustOpen(original);
  ASSERT_NE(whole, nullptr);
  ExpectIntactLog(*whole, 200);
}

}  // namespace
}  // namespace quorumkv::raft
