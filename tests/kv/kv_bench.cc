// Apply throughput of the KvStateMachine: one Apply call of N Put commands
// with 256-byte values (fresh keys), as the driver issues once per Raft
// Ready. With sync (the default) each call costs one fsync; without, it is
// the CPU and LevelDB memtable cost alone.
//
//   ninja -C build-kv kv_bench && build-kv/bin/kv_bench
//
// Figures measured on the project machine are in the kv/ report.
#include <stdlib.h>

#include <filesystem>
#include <string>
#include <vector>

#include "benchmark/benchmark.h"
#include "kv/command.h"
#include "kv/kv_state_machine.h"

namespace quorumkv::kv {
namespace {

std::string MakeTempDir() {
  const char* base = getenv("TMPDIR");
  std::string templ =
      std::string(base != nullptr && *base != '\0' ? base : "/tmp") + "/quorumkv_kv_bench_XXXXXX";
  if (mkdtemp(templ.data()) == nullptr) return "";
  return templ;
}

void BM_ApplyPutBatch(benchmark::State& state) {
  const int batch_size = static_cast<int>(state.range(0));
  const bool sync = state.range(1) != 0;
  const std::string dir = MakeTempDir();
  if (dir.empty()) {
    state.SkipWithError("mkdtemp failed");
    return;
  }
  KvOptions options;
  options.sync_writes = sync;
  auto sm = KvStateMachine::Open(dir, options);
  if (!sm.ok()) {
    state.SkipWithError(std::string(sm.status().message()).c_str());
    return;
  }
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
    auto results = (*sm)->Apply(items);
    if (!results.ok()) {
      state.SkipWithError(std::string(results.status().message()).c_str());
      break;
    }
  }
  state.SetItemsProcessed(state.iterations() * batch_size);
  state.SetBytesProcessed(state.iterations() * batch_size * 256);
  sm->reset();
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
}

BENCHMARK(BM_ApplyPutBatch)
    ->ArgNames({"batch", "sync"})
    ->ArgsProduct({{1, 10, 100, 1000}, {1, 0}})
    ->UseRealTime()
    ->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace quorumkv::kv

BENCHMARK_MAIN();
