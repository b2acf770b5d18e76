// Apply throughput of the KvStateMachine: one Apply call of N Put commands
// with 256-byte values, as the driver issues once per Raft Ready, to fresh
// keys (BM_ApplyPutBatch) or overwriting existing ones with and without the
// key size cache (BM_ApplyOverwriteBatch). With sync (the default) each call
// costs one fsync; without, it is the CPU and LevelDB memtable cost alone.
//
//   ninja -C build-kv kv_bench && build-kv/bin/kv_bench
//
// Figures measured on the project machine are in the kv/ report.
#include <memory>
#include <string>
#include <vector>

#include "benchmark/benchmark.h"
#include "kv/command.h"
#include "kv/kv_state_machine.h"
#include "tests/storage/temp_dir.h"

namespace quorumkv::kv {
namespace {

// A state machine in a fresh temporary directory, removed afterwards. If the
// store does not open, the benchmark is marked skipped and sm() is null.
class TempStore {
 public:
  TempStore(benchmark::State& state, const KvOptions& options) {
    auto sm = KvStateMachine::Open(dir_.path(), options);
    if (!sm.ok()) {
      state.SkipWithError(std::string(sm.status().message()).c_str());
      return;
    }
    sm_ = *std::move(sm);
  }
  KvStateMachine* sm() const { return sm_.get(); }

 private:
  raft::testing::TempDir dir_;  // declared first: removed after the store closes
  std::unique_ptr<KvStateMachine> sm_;
};

// Applies one batch; false (and the benchmark marked failed) on error.
bool ApplyOrSkip(benchmark::State& state, KvStateMachine& sm,
                 const std::vector<ApplyItem>& items) {
  auto results = sm.Apply(items);
  if (!results.ok()) state.SkipWithError(std::string(results.status().message()).c_str());
  return results.ok();
}

void BM_ApplyPutBatch(benchmark::State& state) {
  const int batch_size = static_cast<int>(state.range(0));
  const bool sync = state.range(1) != 0;
  KvOptions options;
  options.sync_writes = sync;
  TempStore store(state, options);
  if (store.sm() == nullptr) return;
  const std::string value(256, 'v');
  uint64_t index = 0;
  std::vector<ApplyItem> items(batch_size);
  for (auto _ : state) {
    state.PauseTiming();
    for (int i = 0; i < batch_size; ++i) {
      ++index;
      Command c = Command::Put("key-" + std::to_string(index), value);
      c.client_id = 1 + index % 64;
      c.sequence = index;
      c.proposed_at_unix_ms = 1'700'000'000'000 + index;
      items[i].index = index;
      items[i].term = 1;
      items[i].type = ApplyItemType::kCommand;
      items[i].data = EncodeCommand(c);
    }
    state.ResumeTiming();
    if (!ApplyOrSkip(state, *store.sm(), items)) break;
  }
  state.SetItemsProcessed(state.iterations() * batch_size);
  state.SetBytesProcessed(state.iterations() * batch_size * 256);
}

BENCHMARK(BM_ApplyPutBatch)
    ->ArgNames({"batch", "sync"})
    ->ArgsProduct({{1, 10, 100, 1000}, {1, 0}})
    ->UseRealTime()
    ->Unit(benchmark::kMicrosecond);

// Overwrites, as kvbench's put workload does: batches of 20 puts (about what
// one Ready applies at 256 puts in flight) to keys drawn from 10,000 that
// all exist, without sync (the CPU cost alone). Every put needs to know
// whether its key exists and its old value's size: `cache` 1 answers that
// from the key size cache, 0 reads the old value from LevelDB.
void BM_ApplyOverwriteBatch(benchmark::State& state) {
  constexpr int kKeys = 10'000;
  constexpr int kBatch = 20;
  KvOptions options;
  options.sync_writes = false;
  if (state.range(0) == 0) options.key_size_cache_bytes = 0;
  TempStore store(state, options);
  if (store.sm() == nullptr) return;
  const std::string value(256, 'v');
  auto key = [](uint64_t i) {
    std::string k = "key-" + std::to_string(1'000'000'000 + i % kKeys);
    return k.substr(0, 16);
  };
  uint64_t index = 0;
  auto make_batch = [&](int n, auto&& key_of) {
    std::vector<ApplyItem> items(n);
    for (int i = 0; i < n; ++i) {
      ++index;
      items[i].index = index;
      items[i].term = 1;
      items[i].type = ApplyItemType::kCommand;
      items[i].data = EncodeCommand(Command::Put(key_of(i), value));
    }
    return items;
  };
  for (int first = 0; first < kKeys; first += 1000) {  // preload every key
    auto items = make_batch(1000, [&](int i) { return key(first + i); });
    if (!ApplyOrSkip(state, *store.sm(), items)) return;
  }
  uint64_t x = 88172645463325252ull;  // xorshift: the same keys in both variants
  for (auto _ : state) {
    state.PauseTiming();
    auto items = make_batch(kBatch, [&](int) {
      x ^= x << 13;
      x ^= x >> 7;
      x ^= x << 17;
      return key(x);
    });
    state.ResumeTiming();
    if (!ApplyOrSkip(state, *store.sm(), items)) break;
  }
  state.SetItemsProcessed(state.iterations() * kBatch);
}

BENCHMARK(BM_ApplyOverwriteBatch)->ArgName("cache")->Arg(0)->Arg(1)->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace quorumkv::kv

BENCHMARK_MAIN();
