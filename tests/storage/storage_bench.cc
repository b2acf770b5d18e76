// Persist throughput of LevelDbLogStorage: one Ready = one Persist of a
// batch of N 256-byte entries plus a hard state, with sync on (one fsync per
// batch: what a node pays per Ready) and off (the CPU and LevelDB cost
// alone). Run: build-*/bin/storage_bench
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>

#include "benchmark/benchmark.h"
#include "raft/storage/leveldb_log_storage.h"
#include "tests/storage/temp_dir.h"

namespace quorumkv::raft {
namespace {

void BM_Persist(benchmark::State& state) {
  const int64_t batch_size = state.range(0);
  const bool sync = state.range(1) != 0;
  testing::TempDir tmp;
  LevelDbLogStorage::Options options;
  options.sync = sync;
  auto opened = LevelDbLogStorage::Open(tmp.Sub("raft"), options);
  if (!opened.ok()) {
    state.SkipWithError(opened.status().ToString().c_str());
    return;
  }
  std::unique_ptr<LevelDbLogStorage> storage = *std::move(opened);

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

}  // namespace
}  // namespace quorumkv::raft

BENCHMARK_MAIN();
