// Snapshots of the KvStateMachine: streaming, restoring, rejecting bad
// images, and surviving a crash at every step of the swap.
#include <algorithm>
#include <filesystem>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "kv/kv_state_machine.h"
#include "kv_test_util.h"

namespace quorumkv::kv {
namespace {

namespace fs = std::filesystem;

using testing::ApplyCommands;
using testing::At;
using testing::ChecksumOrDie;
using testing::CommandItem;
using testing::GetOrDie;
using testing::NoOpItem;
using testing::OpenOrDie;
using testing::TempDir;
using testing::WithSession;

// Fills `sm` with user keys, overwrites, deletes, binary keys and values,
// client sessions and a no-op, ending at applied index 40, term 2.
void Populate(KvStateMachine& sm, const std::string& tag = "") {
  std::vector<Command> commands;
  for (int i = 0; i < 30; ++i) {
    Command c = Command::Put(tag + "key" + std::to_string(i % 20),
                             std::string(i * 3, static_cast<char>('a' + i % 26)));
    commands.push_back(i % 3 == 0 ? WithSession(c, 100 + i % 4, i, 1000 + i) : At(c, 1000 + i));
  }
  commands.push_back(Command::Delete(tag + "key3"));
  commands.push_back(Command::CompareAndSwap(tag + "cas", std::nullopt, std::string("\0\xff", 2)));
  commands.push_back(Command::Put(std::string("\0bin\xff", 5), ""));
  ASSERT_EQ(ApplyCommands(sm, 1, commands).size(), 33u);
  ASSERT_TRUE(sm.Apply({NoOpItem(34, 2)}).ok());
  std::vector<ApplyItem> more;
  for (uint64_t i = 35; i <= 40; ++i) {
    more.push_back(CommandItem(
        i, 2, WithSession(Command::Put(tag + "late", std::to_string(i)), 7, i, 2000 + i)));
  }
  ASSERT_TRUE(sm.Apply(more).ok());
}

std::vector<SnapshotChunk> ReadAll(SnapshotReader& reader) {
  std::vector<SnapshotChunk> chunks;
  while (!reader.done()) {
    auto chunk = reader.Next();
    EXPECT_TRUE(chunk.ok()) << chunk.status();
    if (!chunk.ok()) break;
    chunks.push_back(*std::move(chunk));
  }
  return chunks;
}

std::vector<SnapshotChunk> SnapshotOf(KvStateMachine& sm, size_t chunk_bytes = 0) {
  auto reader = sm.CreateSnapshot(chunk_bytes);
  EXPECT_TRUE(reader.ok()) << reader.status();
  if (!reader.ok()) return {};
  return ReadAll(**reader);
}

std::string Concat(const std::vector<SnapshotChunk>& chunks) {
  std::string image;
  for (const SnapshotChunk& c : chunks) image += c.data;
  return image;
}

// Re-cuts an image into chunks of `size` bytes.
std::vector<SnapshotChunk> Cut(const std::string& image, size_t size) {
  std::vector<SnapshotChunk> chunks;
  for (size_t off = 0; off < image.size(); off += size) {
    SnapshotChunk c;
    c.offset = off;
    c.data = image.substr(off, size);
    c.last = off + size >= image.size();
    chunks.push_back(std::move(c));
  }
  return chunks;
}

bool Exists(const std::string& path) { return fs::exists(path); }

// Whether `dir` holds a receiving directory of a SnapshotWriter.
bool HasRestoreTmp(const std::string& dir) {
  for (const auto& entry : fs::directory_iterator(dir)) {
    if (entry.path().filename().string().rfind("restore.tmp", 0) == 0) return true;
  }
  return false;
}

void ExpectSameState(KvStateMachine& a, KvStateMachine& b) {
  auto da = a.StateChecksum();
  auto db = b.StateChecksum();
  ASSERT_TRUE(da.ok() && db.ok());
  EXPECT_EQ(*da, *db);
  auto sa = a.Stats();
  auto sb = b.Stats();
  ASSERT_TRUE(sa.ok() && sb.ok());
  EXPECT_EQ(sa->applied_index, sb->applied_index);
  EXPECT_EQ(sa->applied_term, sb->applied_term);
  EXPECT_EQ(sa->key_count, sb->key_count);
  EXPECT_EQ(sa->user_bytes, sb->user_bytes);
  EXPECT_EQ(sa->session_count, sb->session_count);
  EXPECT_EQ(sa->log_clock_ms, sb->log_clock_ms);
}

class SnapshotChunkSizeTest : public ::testing::TestWithParam<size_t> {};

TEST_P(SnapshotChunkSizeTest, RestoreIntoAFreshInstanceGivesTheSameState) {
  const size_t chunk_bytes = GetParam();  // 0: the default (1 MiB)
  TempDir tmp;
  auto source = OpenOrDie(tmp.Sub("source"));
  Populate(*source);

  auto reader = source->CreateSnapshot(chunk_bytes);
  ASSERT_TRUE(reader.ok()) << reader.status();
  EXPECT_EQ((*reader)->header().applied_index, 40u);
  EXPECT_EQ((*reader)->header().applied_term, 2u);
  const std::vector<SnapshotChunk> chunks = ReadAll(**reader);
  const size_t limit = chunk_bytes == 0 ? (1u << 20) : chunk_bytes;
  uint64_t offset = 0;
  for (size_t i = 0; i < chunks.size(); ++i) {
    EXPECT_EQ(chunks[i].offset, offset);
    EXPECT_GE(chunks[i].data.size(), 1u);
    EXPECT_LE(chunks[i].data.size(), limit);
    EXPECT_EQ(chunks[i].last, i + 1 == chunks.size());
    offset += chunks[i].data.size();
  }
  EXPECT_EQ((*reader)->bytes_emitted(), offset);
  EXPECT_EQ((*reader)->Next().status().code(), absl::StatusCode::kOutOfRange);
  reader->reset();

  auto target = OpenOrDie(tmp.Sub("target"));
  auto header = target->RestoreFromChunks(chunks);
  ASSERT_TRUE(header.ok()) << header.status();
  EXPECT_EQ(header->applied_index, 40u);
  ExpectSameState(*source, *target);
  EXPECT_EQ(GetOrDie(*target, "key5"), GetOrDie(*source, "key5"));
  EXPECT_EQ(GetOrDie(*target, std::string("\0bin\xff", 5)), "");
  EXPECT_EQ(GetOrDie(*target, "key3"), std::nullopt);

  // Both go on identically, sessions included: a retry is a duplicate on
  // both, a new write applies on both.
  for (KvStateMachine* sm : {source.get(), target.get()}) {
    auto r = ApplyCommands(*sm, 41,
                           {WithSession(Command::Put("late", "40"), 7, 40, 2100),
                            WithSession(Command::Put("new", "x"), 7, 41, 2101)});
    EXPECT_EQ(r[0].outcome, ApplyOutcome::kDuplicate);
    EXPECT_EQ(r[1].outcome, ApplyOutcome::kApplied);
  }
  ExpectSameState(*source, *target);

  // And the restored store survives a restart.
  const uint64_t checksum = ChecksumOrDie(*target);
  target.reset();
  target = OpenOrDie(tmp.Sub("target"));
  EXPECT_EQ(ChecksumOrDie(*target), checksum);
  EXPECT_EQ(target->applied_index(), 42u);
}

INSTANTIATE_TEST_SUITE_P(ChunkSizes, SnapshotChunkSizeTest, ::testing::Values(1, 7, 0),
                         [](const ::testing::TestParamInfo<size_t>& info) {
                           return info.param == 0 ? std::string("Default")
                                                  : "Bytes" + std::to_string(info.param);
                         });

TEST(SnapshotTest, DefaultChunkSizeSplitsALargeImage) {
  TempDir tmp;
  auto source = OpenOrDie(tmp.Sub("source"));
  ApplyCommands(*source, 1,
                {Command::Put("big", std::string(1536 * 1024, 'b')), Command::Put("small", "s"),
                 Command::Put("big2", std::string(700 * 1024, 'c'))});
  const auto chunks = SnapshotOf(*source);
  ASSERT_GE(chunks.size(), 3u);
  for (const auto& c : chunks) EXPECT_LE(c.data.size(), 1u << 20);
  auto target = OpenOrDie(tmp.Sub("target"));
  ASSERT_TRUE(target->RestoreFromChunks(chunks).ok());
  ExpectSameState(*source, *target);
  EXPECT_EQ(GetOrDie(*target, "big")->size(), 1536u * 1024);
}

TEST(SnapshotTest, RestoreReplacesWhateverTheTargetHad) {
  TempDir tmp;
  auto source = OpenOrDie(tmp.Sub("source"));
  Populate(*source);
  auto target = OpenOrDie(tmp.Sub("target"));
  ApplyCommands(*target, 1,
                {Command::Put("only-on-target", "x"), WithSession(Command::Put("k", "v"), 55, 1)});
  ASSERT_TRUE(target->RestoreFromChunks(SnapshotOf(*source, 100)).ok());
  ExpectSameState(*source, *target);
  EXPECT_EQ(GetOrDie(*target, "only-on-target"), std::nullopt);
  EXPECT_FALSE(HasRestoreTmp(tmp.Sub("target")));
  EXPECT_FALSE(Exists(tmp.Sub("target/restore.ready")));
  EXPECT_FALSE(Exists(tmp.Sub("target/state.old")));
}

// Apply counts keys and bytes from the key size cache (kv/key_size_cache.h);
// what it learned about the target's own store must not outlive the store.
TEST(SnapshotTest, KeySizesLearnedBeforeARestoreAreForgotten) {
  TempDir tmp;
  auto source = OpenOrDie(tmp.Sub("source"));
  auto target = OpenOrDie(tmp.Sub("target"));
  // The target learns: "k" holds 100 bytes, "absent-here" does not exist.
  ApplyCommands(*target, 1, {Command::Put("k", std::string(100, 'a')),
                             Command::Delete("absent-here"), Command::Put("k", "b")});
  ApplyCommands(*target, 4, {Command::Put("k", std::string(100, 'a'))});
  // The source at a later index: "k" holds 5 bytes, "absent-here" 7.
  std::vector<Command> fill;
  for (int i = 0; i < 10; ++i) fill.push_back(Command::Put("k", "12345"));
  fill.push_back(Command::Put("absent-here", "1234567"));
  ApplyCommands(*source, 1, fill);
  ASSERT_TRUE(target->RestoreFromChunks(SnapshotOf(*source)).ok());

  // The same commands on both: a target that still believed its old sizes
  // would count 95 bytes too many and miss a key.
  const std::vector<Command> after = {Command::Put("k", "xyz"), Command::Delete("absent-here")};
  auto on_source = ApplyCommands(*source, 12, after);
  auto on_target = ApplyCommands(*target, 12, after);
  ASSERT_EQ(on_target.size(), 2u);
  EXPECT_TRUE(on_target[1].result.found);
  auto s = source->Stats();
  auto t = target->Stats();
  ASSERT_TRUE(s.ok() && t.ok());
  EXPECT_EQ(t->key_count, 1u);
  EXPECT_EQ(t->user_bytes, 4u);  // "k" + "xyz"
  EXPECT_EQ(t->key_count, s->key_count);
  EXPECT_EQ(t->user_bytes, s->user_bytes);
  ExpectSameState(*source, *target);
}

TEST(SnapshotTest, SnapshotIsPointInTimeWhileApplyGoesOn) {
  TempDir tmp;
  auto source = OpenOrDie(tmp.Sub("source"));
  Populate(*source);
  const StateDigest at_snapshot = *source->StateChecksum();
  auto reader = source->CreateSnapshot(64);
  ASSERT_TRUE(reader.ok());
  // Half read, then the source moves on.
  std::vector<SnapshotChunk> chunks;
  for (int i = 0; i < 5; ++i) chunks.push_back(*(*reader)->Next());
  ApplyCommands(*source, 41, {Command::Put("key1", "changed"), Command::Delete("key2")});
  auto rest = ReadAll(**reader);
  chunks.insert(chunks.end(), rest.begin(), rest.end());
  reader->reset();

  auto target = OpenOrDie(tmp.Sub("target"));
  ASSERT_TRUE(target->RestoreFromChunks(chunks).ok());
  auto digest = target->StateChecksum();
  ASSERT_TRUE(digest.ok());
  EXPECT_EQ(*digest, at_snapshot);
  EXPECT_NE(GetOrDie(*target, "key1"), "changed");
}

// Restoring a snapshot the store already covers would throw away progress
// or redo work (PITFALLS "Slow restart on big state").
TEST(SnapshotTest, RefusesASnapshotAtOrBelowTheAppliedIndex) {
  TempDir tmp;
  auto source = OpenOrDie(tmp.Sub("source"));
  Populate(*source);
  const auto chunks = SnapshotOf(*source, 50);

  for (uint64_t target_index : {40u, 45u}) {
    TempDir dir;
    auto target = OpenOrDie(dir.path());
    std::vector<ApplyItem> noops;
    for (uint64_t i = 1; i <= target_index; ++i) noops.push_back(NoOpItem(i, 1));
    ASSERT_TRUE(target->Apply(noops).ok());
    const uint64_t before = ChecksumOrDie(*target);
    auto writer = target->BeginRestore();
    ASSERT_TRUE(writer.ok());
    // Refused as soon as the header (68 bytes) has arrived: chunk 1.
    ASSERT_TRUE((*writer)->Write(chunks[0]).ok());
    absl::Status s = (*writer)->Write(chunks[1]);
    EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
    EXPECT_NE(s.message().find("already at applied index"), absl::string_view::npos) << s;
    EXPECT_EQ(target->FinishRestore(*std::move(writer)).status().code(),
              absl::StatusCode::kFailedPrecondition);
    EXPECT_EQ(ChecksumOrDie(*target), before);
    EXPECT_FALSE(HasRestoreTmp(dir.path()));
  }
}

TEST(SnapshotTest, RefusesWhenTheStoreCatchesUpDuringTheTransfer) {
  TempDir tmp;
  auto source = OpenOrDie(tmp.Sub("source"));
  Populate(*source);
  const auto chunks = SnapshotOf(*source, 50);
  auto target = OpenOrDie(tmp.Sub("target"));
  auto writer = target->BeginRestore();
  ASSERT_TRUE(writer.ok());
  for (const auto& c : chunks) ASSERT_TRUE((*writer)->Write(c).ok());
  // Meanwhile the log got it there on its own.
  Populate(*target);
  const uint64_t before = ChecksumOrDie(*target);
  auto result = target->FinishRestore(*std::move(writer));
  EXPECT_EQ(result.status().code(), absl::StatusCode::kFailedPrecondition) << result.status();
  EXPECT_EQ(ChecksumOrDie(*target), before);
  EXPECT_FALSE(HasRestoreTmp(tmp.Sub("target")));
}

TEST(SnapshotTest, RefusesASnapshotMadeWithAnotherSessionTtl) {
  TempDir tmp;
  KvOptions other;
  other.session_ttl_ms = 5;
  auto source = OpenOrDie(tmp.Sub("source"), other);
  Populate(*source);
  auto target = OpenOrDie(tmp.Sub("target"));
  auto result = target->RestoreFromChunks(SnapshotOf(*source));
  EXPECT_EQ(result.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(result.status().message().find("session TTL"), absl::string_view::npos)
      << result.status();
}

class RestoreRejectionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    source_ = OpenOrDie(tmp_.Sub("source"));
    Populate(*source_, "src-");
    image_ = Concat(SnapshotOf(*source_));
    target_ = OpenOrDie(tmp_.Sub("target"));
    ApplyCommands(*target_, 1, {Command::Put("mine", "old data"), Command::Put("x", "y")});
    before_ = ChecksumOrDie(*target_);
  }

  // The old data is still served, and nothing is left behind.
  void ExpectOldDataIntact() {
    EXPECT_EQ(ChecksumOrDie(*target_), before_);
    EXPECT_EQ(GetOrDie(*target_, "mine"), "old data");
    EXPECT_EQ(target_->applied_index(), 2u);
    EXPECT_FALSE(HasRestoreTmp(tmp_.Sub("target")));
    EXPECT_FALSE(Exists(tmp_.Sub("target/restore.ready")));
  }

  TempDir tmp_;
  std::unique_ptr<KvStateMachine> source_;
  std::unique_ptr<KvStateMachine> target_;
  std::string image_;
  uint64_t before_ = 0;
};

TEST_F(RestoreRejectionTest, OutOfOrderChunk) {
  auto chunks = Cut(image_, 16);
  ASSERT_GT(chunks.size(), 4u);
  {
    auto writer = target_->BeginRestore();
    ASSERT_TRUE(writer.ok());
    ASSERT_TRUE((*writer)->Write(chunks[0]).ok());
    absl::Status s = (*writer)->Write(chunks[2]);  // chunk 1 skipped
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(s.message().find("out of order: offset 32, expected offset 16"),
              absl::string_view::npos)
        << s;
    s = (*writer)->Write(chunks[0]);  // a duplicate of an earlier chunk
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
    EXPECT_EQ((*writer)->bytes_received(), 16u);
    // The transfer is abandoned: the writer is destroyed without Finish.
  }
  ExpectOldDataIntact();

  // Through RestoreFromChunks, a swapped pair is rejected as a whole.
  std::swap(chunks[1], chunks[2]);
  auto result = target_->RestoreFromChunks(chunks);
  EXPECT_EQ(result.status().code(), absl::StatusCode::kInvalidArgument) << result.status();
  ExpectOldDataIntact();
}

TEST_F(RestoreRejectionTest, OutOfOrderChunkCanBeResentAndTheTransferResumed) {
  auto chunks = Cut(image_, 16);
  auto writer = target_->BeginRestore();
  ASSERT_TRUE(writer.ok());
  ASSERT_TRUE((*writer)->Write(chunks[0]).ok());
  EXPECT_FALSE((*writer)->Write(chunks[2]).ok());
  for (size_t i = 1; i < chunks.size(); ++i) ASSERT_TRUE((*writer)->Write(chunks[i]).ok()) << i;
  ASSERT_TRUE(target_->FinishRestore(*std::move(writer)).ok());
  ExpectSameState(*source_, *target_);
}

TEST_F(RestoreRejectionTest, TruncatedImage) {
  // The transfer stops short and the caller finishes anyway.
  auto chunks = Cut(image_, 10);
  chunks.pop_back();
  auto result = target_->RestoreFromChunks(chunks);
  EXPECT_EQ(result.status().code(), absl::StatusCode::kDataLoss) << result.status();
  EXPECT_NE(result.status().message().find("incomplete"), absl::string_view::npos)
      << result.status();
  ExpectOldDataIntact();

  // The sender believes the image ends early.
  chunks.back().last = true;
  result = target_->RestoreFromChunks(chunks);
  EXPECT_EQ(result.status().code(), absl::StatusCode::kDataLoss) << result.status();
  EXPECT_NE(result.status().message().find("truncated"), absl::string_view::npos)
      << result.status();
  ExpectOldDataIntact();

  // Only part of the header.
  result = target_->RestoreFromChunks(Cut(image_.substr(0, 20), 20));
  EXPECT_EQ(result.status().code(), absl::StatusCode::kDataLoss) << result.status();
  ExpectOldDataIntact();
}

TEST_F(RestoreRejectionTest, CorruptedValueFailsTheImageChecksum) {
  // A byte inside a value: the image still parses, only the CRC catches it.
  const size_t pos = image_.find(std::string(50, 't'));  // the value of key19
  ASSERT_NE(pos, std::string::npos);
  std::string bad = image_;
  bad[pos + 20] = 'X';
  auto result = target_->RestoreFromChunks(Cut(bad, 7));
  EXPECT_EQ(result.status().code(), absl::StatusCode::kDataLoss) << result.status();
  EXPECT_NE(result.status().message().find("checksum mismatch"), absl::string_view::npos)
      << result.status();
  ExpectOldDataIntact();
}

TEST_F(RestoreRejectionTest, CorruptedHeaderIsCaughtBeforeAnythingIsWritten) {
  std::string bad = image_;
  bad[10] ^= 0x01;  // inside applied_index
  auto writer = target_->BeginRestore();
  ASSERT_TRUE(writer.ok());
  absl::Status s = (*writer)->Write(Cut(bad, 100)[0]);
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss);
  EXPECT_NE(s.message().find("header checksum"), absl::string_view::npos) << s;
  EXPECT_FALSE(HasRestoreTmp(tmp_.Sub("target")));
  // Sticky: the writer refuses everything after a data error.
  EXPECT_EQ((*writer)->Write(Cut(bad, 100)[1]).code(), absl::StatusCode::kDataLoss);
  writer->reset();
  ExpectOldDataIntact();

  auto result =
      target_->RestoreFromChunks(Cut("not a snapshot at all, just some bytes"
                                     " long enough for a header.............",
                                     1000));
  EXPECT_EQ(result.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_NE(result.status().message().find("bad magic"), absl::string_view::npos)
      << result.status();
  ExpectOldDataIntact();
}

TEST_F(RestoreRejectionTest, TrailingBytesAfterTheImage) {
  auto result = target_->RestoreFromChunks(Cut(image_ + "extra", 64));
  EXPECT_EQ(result.status().code(), absl::StatusCode::kDataLoss) << result.status();
  EXPECT_NE(result.status().message().find("after its end"), absl::string_view::npos)
      << result.status();
  ExpectOldDataIntact();
}

TEST_F(RestoreRejectionTest, EveryCorruptedByteIsDetected) {
  // A smaller image, so that trying every position stays quick.
  TempDir dir;
  auto small = OpenOrDie(dir.path());
  ApplyCommands(*small, 1,
                {WithSession(Command::Put("a", "1"), 3, 1, 10), Command::Put("bb", "22"),
                 Command::Put("ccc", std::string(40, 'z'))});
  ApplyCommands(*small, 4, {Command::Delete("a")});
  const std::string image = Concat(SnapshotOf(*small));
  ASSERT_LT(image.size(), 400u);
  for (size_t pos = 0; pos < image.size(); ++pos) {
    std::string bad = image;
    bad[pos] = static_cast<char>(bad[pos] ^ 0x5a);
    auto result = target_->RestoreFromChunks(Cut(bad, 33));
    EXPECT_FALSE(result.ok()) << "corruption at byte " << pos << " went unnoticed";
  }
  ExpectOldDataIntact();
  // The pristine image does restore.
  ASSERT_TRUE(target_->RestoreFromChunks(Cut(image, 33)).ok());
  ExpectSameState(*small, *target_);
}

TEST_F(RestoreRejectionTest, BadChunksAreRejectedClearly) {
  KvOptions options;
  options.max_restore_chunk_bytes = 64;
  TempDir dir;
  auto sm = OpenOrDie(dir.path(), options);
  auto writer = sm->BeginRestore();
  ASSERT_TRUE(writer.ok());
  SnapshotChunk empty;
  EXPECT_EQ((*writer)->Write(empty).code(), absl::StatusCode::kInvalidArgument);
  SnapshotChunk big;
  big.data = std::string(65, 'x');
  absl::Status s = (*writer)->Write(big);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("over the limit"), absl::string_view::npos) << s;
  writer->reset();
  auto chunks = Cut(image_, 64);
  auto header = sm->RestoreFromChunks(chunks);
  ASSERT_TRUE(header.ok()) << header.status();
  EXPECT_EQ(header->applied_index, 40u);

  // A chunk after the last one.
  TempDir dir2;
  auto sm2 = OpenOrDie(dir2.path(), options);
  auto w2 = sm2->BeginRestore();
  ASSERT_TRUE(w2.ok());
  for (const auto& c : chunks) ASSERT_TRUE((*w2)->Write(c).ok());
  SnapshotChunk after;
  after.offset = image_.size();
  after.data = "x";
  s = (*w2)->Write(after);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("after the last chunk"), absl::string_view::npos) << s;
  ASSERT_TRUE((*w2)->header().has_value());
  EXPECT_EQ((*w2)->header()->applied_index, 40u);
  ASSERT_TRUE(sm2->FinishRestore(*std::move(w2)).ok());
  ExpectSameState(*source_, *sm2);
}

// Two transfers staged at once (a retried InstallSnapshot, or a newer
// snapshot overtaking an older one): whichever is installed first wins, and
// the older one is then refused as already covered.
TEST(SnapshotTest, SeveralRestoresCanBeReceivedAtOnce) {
  TempDir tmp;
  auto source = OpenOrDie(tmp.Sub("source"));
  Populate(*source);
  const auto older = SnapshotOf(*source, 64);
  ApplyCommands(*source, 41, {Command::Put("newer", "1"), Command::Delete("key1")});
  const auto newer = SnapshotOf(*source, 64);

  auto target = OpenOrDie(tmp.Sub("target"));
  auto a = target->BeginRestore();
  auto b = target->BeginRestore();
  ASSERT_TRUE(a.ok() && b.ok());
  // Interleaved, as two streams would arrive.
  for (size_t i = 0; i < std::max(older.size(), newer.size()); ++i) {
    if (i < older.size()) {
      ASSERT_TRUE((*a)->Write(older[i]).ok()) << i;
    }
    if (i < newer.size()) {
      ASSERT_TRUE((*b)->Write(newer[i]).ok()) << i;
    }
  }
  auto installed = target->FinishRestore(*std::move(b));
  ASSERT_TRUE(installed.ok()) << installed.status();
  EXPECT_EQ(installed->applied_index, 42u);
  auto refused = target->FinishRestore(*std::move(a));
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kFailedPrecondition) << refused.status();
  ExpectSameState(*source, *target);
  EXPECT_FALSE(HasRestoreTmp(tmp.Sub("target")));
}

TEST(SnapshotTest, AnOpenReaderOfTheLiveStoreBlocksTheSwap) {
  TempDir tmp;
  auto source = OpenOrDie(tmp.Sub("source"));
  Populate(*source);
  const auto chunks = SnapshotOf(*source);
  auto target = OpenOrDie(tmp.Sub("target"));
  ApplyCommands(*target, 1, {Command::Put("t", "1")});
  auto reader = target->CreateSnapshot();
  ASSERT_TRUE(reader.ok());
  auto result = target->RestoreFromChunks(chunks);
  EXPECT_EQ(result.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_NE(result.status().message().find("snapshot reader"), absl::string_view::npos)
      << result.status();
  EXPECT_FALSE(HasRestoreTmp(tmp.Sub("target")));
  EXPECT_EQ(GetOrDie(*target, "t"), "1");
  // The reader still works, and once it is gone the restore goes through.
  EXPECT_FALSE(ReadAll(**reader).empty());
  reader->reset();
  ASSERT_TRUE(target->RestoreFromChunks(chunks).ok());
  ExpectSameState(*source, *target);
}

// A crash at each step of the swap, simulated by the test hook, leaves
// either the old state (before the commit rename) or the new one (after it)
// once the store is opened again, and no leftovers.
class RestoreCrashTest : public ::testing::TestWithParam<RestoreStep> {};

TEST_P(RestoreCrashTest, ReopenServesOldOrNewStateAndCleansUp) {
  const RestoreStep crash_at = GetParam();
  TempDir tmp;
  auto source = OpenOrDie(tmp.Sub("source"));
  Populate(*source);
  const uint64_t new_checksum = ChecksumOrDie(*source);
  const auto chunks = SnapshotOf(*source, 300);

  const std::string dir = tmp.Sub("target");
  KvOptions crashing;
  crashing.restore_crash_hook = [crash_at](RestoreStep step) {
    return step == crash_at ? absl::AbortedError("simulated crash") : absl::OkStatus();
  };
  uint64_t old_checksum = 0;
  {
    auto target = OpenOrDie(dir, crashing);
    ApplyCommands(*target, 1, {Command::Put("old", "1"), Command::Put("key1", "old")});
    old_checksum = ChecksumOrDie(*target);
    auto result = target->RestoreFromChunks(chunks);
    EXPECT_EQ(result.status().code(), absl::StatusCode::kAborted) << result.status();
    // Until it is reopened, the state machine refuses to serve anything.
    EXPECT_EQ(target->Get("old").status().code(), absl::StatusCode::kInternal);
    EXPECT_EQ(target->Apply({NoOpItem(3, 1)}).status().code(), absl::StatusCode::kInternal);
    EXPECT_EQ(target->BeginRestore().status().code(), absl::StatusCode::kInternal);
    EXPECT_EQ(target->StateChecksum().status().code(), absl::StatusCode::kInternal);
  }  // the "crashed" process goes away without cleaning up

  // The directory is as documented for that crash point.
  switch (crash_at) {
    case RestoreStep::kBeforeCommit:
      EXPECT_TRUE(HasRestoreTmp(dir));
      EXPECT_TRUE(Exists(dir + "/state"));
      break;
    case RestoreStep::kAfterCommit:
      EXPECT_TRUE(Exists(dir + "/restore.ready"));
      EXPECT_TRUE(Exists(dir + "/state"));
      break;
    case RestoreStep::kAfterOldMoved:
      EXPECT_TRUE(Exists(dir + "/restore.ready"));
      EXPECT_TRUE(Exists(dir + "/state.old"));
      EXPECT_FALSE(Exists(dir + "/state"));
      break;
    case RestoreStep::kAfterNewInPlace:
      EXPECT_TRUE(Exists(dir + "/state"));
      EXPECT_TRUE(Exists(dir + "/state.old"));
      break;
  }

  auto target = OpenOrDie(dir);
  const bool committed = crash_at != RestoreStep::kBeforeCommit;
  if (committed) {
    EXPECT_EQ(ChecksumOrDie(*target), new_checksum);
    EXPECT_EQ(target->applied_index(), 40u);
    EXPECT_EQ(GetOrDie(*target, "old"), std::nullopt);
  } else {
    EXPECT_EQ(ChecksumOrDie(*target), old_checksum);
    EXPECT_EQ(target->applied_index(), 2u);
    EXPECT_EQ(GetOrDie(*target, "key1"), "old");
  }
  EXPECT_FALSE(HasRestoreTmp(dir));
  for (const char* leftover : {"restore.ready", "state.old"}) {
    EXPECT_FALSE(Exists(dir + "/" + leftover)) << leftover;
  }
  // And the store works normally afterwards.
  const uint64_t next = target->applied_index() + 1;
  auto r = ApplyCommands(*target, next, {Command::Put("after", "crash")});
  EXPECT_EQ(r[0].outcome, ApplyOutcome::kApplied);
}

INSTANTIATE_TEST_SUITE_P(Steps, RestoreCrashTest,
                         ::testing::Values(RestoreStep::kBeforeCommit, RestoreStep::kAfterCommit,
                                           RestoreStep::kAfterOldMoved,
                                           RestoreStep::kAfterNewInPlace),
                         [](const ::testing::TestParamInfo<RestoreStep>& info) {
                           switch (info.param) {
                             case RestoreStep::kBeforeCommit:
                               return "BeforeCommit";
                             case RestoreStep::kAfterCommit:
                               return "AfterCommit";
                             case RestoreStep::kAfterOldMoved:
                               return "AfterOldMoved";
                             case RestoreStep::kAfterNewInPlace:
                               return "AfterNewInPlace";
                           }
                           return "Unknown";
                         });

TEST(SnapshotTest, OpenDeletesAnInterruptedRestoreAndServesTheOldData) {
  TempDir tmp;
  {
    auto sm = OpenOrDie(tmp.path());
    ApplyCommands(*sm, 1, {Command::Put("k", "v")});
  }
  // What a crash in the middle of receiving chunks leaves behind (partial
  // LevelDBs and junk), plus a stray state.old.
  fs::create_directories(tmp.Sub("restore.tmp.0"));
  fs::create_directories(tmp.Sub("restore.tmp.17/sub"));
  {
    std::FILE* f = std::fopen(tmp.Sub("restore.tmp.0/000005.ldb").c_str(), "w");
    ASSERT_NE(f, nullptr);
    std::fputs("half a table", f);
    std::fclose(f);
  }
  fs::create_directories(tmp.Sub("state.old/sub"));
  auto sm = OpenOrDie(tmp.path());
  EXPECT_EQ(GetOrDie(*sm, "k"), "v");
  EXPECT_EQ(sm->applied_index(), 1u);
  EXPECT_FALSE(HasRestoreTmp(tmp.path()));
  EXPECT_FALSE(Exists(tmp.Sub("state.old")));
}

TEST(SnapshotTest, UnsyncedStoreIsMadeDurableBeforeASnapshot) {
  TempDir tmp;
  KvOptions options;
  options.sync_writes = false;
  auto sm = OpenOrDie(tmp.Sub("a"), options);
  Populate(*sm);
  const auto chunks = SnapshotOf(*sm, 128);
  auto target = OpenOrDie(tmp.Sub("b"), options);
  ASSERT_TRUE(target->RestoreFromChunks(chunks).ok());
  ExpectSameState(*sm, *target);
}

}  // namespace
}  // namespace quorumkv::kv
