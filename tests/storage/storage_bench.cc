// LevelDbLogStorage's hot paths. BM_Persist: one Ready = one Persist of a
// batch of N 256-byte entries plus a hard state, with sync on (one fsync per
// batch: what a node pays per Ready) and off (the CPU and LevelDB cost
// alone). BM_EntriesJustWritten: reading back the batch just persisted, as
// a node does to apply it and to send it to a follower, with the entry
// cache on and off. Run: build-*/bin/storage_bench
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>

#include "benchmark/benchmark.h"
#include "raft/storage/leveldb_log_storage.h"
#include "tests/storage/temp_dir.h"

namespace quorumkv::raft {
namespace {

// The log in `tmp`, or null after reporting why to the benchmark.
std::unique_ptr<LevelDbLogStorage> OpenOrSkip(benchmark::State& state, const testing::TempDir& tmp,
                                              const LevelDbLogStorage::Options& options) {
  auto opened = LevelDbLogStorage::Open(tmp.Sub("raft"), options);
  if (!opened.ok()) {
    state.SkipWithError(opened.status().ToString().c_str());
    return nullptr;
  }
  return *std::move(opened);
}

void BM_Persist(benchmark::State& state) {
  const int64_t batch_size = state.range(0);
  const bool sync = state.range(1) != 0;
  testing::TempDir tmp;
  LevelDbLogStorage::Options options;
  options.sync = sync;
  std::unique_ptr<LevelDbLogStorage> storage = OpenOrSkip(state, tmp, options);
  if (storage == nullptr) return;

  // One batch, re-indexed every iteration: the timed loop is the Persist
  // (encoding, checksums, LevelDB, fsync), not building test data.
  PersistBatch batch;
  batch.entries.assign(batch_size, Entry{Index(0), Term(1), EntryType::kNormal, std::string(256, 'x')});
  uint64_t next = 1;
  for (auto _ : state) {
    for (int64_t k = 0; k < batch_size; ++k) batch.entries[k].index = Index(next + k);
    batch.hard_state = HardState{Term(1), NodeId(1), Index(next + batch_size - 1)};
    absl::Status status = storage->Persist(batch);
    if (!status.ok()) {
      state.SkipWithError(status.ToString().c_str());
      break;
    }
    next += batch_size;
  }
  state.SetItemsProcessed(state.iterations() * batch_size);
  state.SetBytesProcessed(state.iterations() * batch_size * 256);
  state.counters["batches/s"] = benchmark::Counter(static_cast<double>(state.iterations()),
                                                   benchmark::Counter::kIsRate);
}

BENCHMARK(BM_Persist)
    ->ArgNames({"entries", "sync"})
    ->ArgsProduct({{1, 10, 100, 1000}, {0, 1}})
    ->UseRealTime()
    ->Unit(benchmark::kMicrosecond);

void BM_EntriesJustWritten(benchmark::State& state) {
  const int64_t batch_size = state.range(0);
  testing::TempDir tmp;
  LevelDbLogStorage::Options options;
  options.sync = false;
  if (state.range(1) == 0) options.entry_cache_bytes = 0;
  std::unique_ptr<LevelDbLogStorage> storage = OpenOrSkip(state, tmp, options);
  if (storage == nullptr) return;
  // A log of 10,000 entries behind the batches read, as between two
  // snapshots of a node under load.
  PersistBatch batch;
  batch.entries.assign(100, Entry{Index(0), Term(1), EntryType::kNormal, std::string(256, 'x')});
  uint64_t next = 1;
  auto persist = [&](int64_t n) {
    batch.entries.resize(n, batch.entries.front());
    for (int64_t k = 0; k < n; ++k) batch.entries[k].index = Index(next + k);
    absl::Status status = storage->Persist(batch);
    next += n;
    return status;
  };
  for (int i = 0; i < 100; ++i) {
    if (absl::Status s = persist(100); !s.ok()) {
      state.SkipWithError(s.ToString().c_str());
      return;
    }
  }
  for (auto _ : state) {
    state.PauseTiming();
    absl::Status status = persist(batch_size);
    state.ResumeTiming();
    auto entries = storage->Entries(Index(next - batch_size), Index(next), ~0ull);
    if (!status.ok() || !entries.ok() || entries->size() != static_cast<size_t>(batch_size)) {
      state.SkipWithError("persist or read failed");
      break;
    }
    benchmark::DoNotOptimize(entries);
  }
  state.SetItemsProcessed(state.iterations() * batch_size);
}

BENCHMARK(BM_EntriesJustWritten)
    ->ArgNames({"entries", "cache"})
    ->ArgsProduct({{1, 10, 100}, {0, 1}})
    ->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace quorumkv::raft

BENCHMARK_MAIN();
