// Micro-benchmarks of the pieces a write goes through inside one node,
// without gRPC: the Raft core replicating a batch among three in-memory
// nodes, the encoding of a key-value command, an AppendEntries batch's trip
// through the peer wire format, and the LevelDB persistence of one Ready's
// entries. Run: build-bench/bin/raft_core_bench
// (figures in bench/RESULTS.md).

#include <cstdio>
#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "benchmark/benchmark.h"
#include "kv/command.h"
#include "raft/memory_log_storage.h"
#include "raft/raft.h"
#include "raft/storage/leveldb_log_storage.h"
#include "raft.pb.h"
#include "server/raft_wire.h"
#include "tests/storage/temp_dir.h"

namespace quorumkv::bench {
namespace {

using raft::Entry;
using raft::Index;
using raft::Message;
using raft::NodeId;
using raft::PersistBatch;
using raft::Ready;

// A Put of a 16-byte key and a 256-byte value with a client session: what
// kvbench's default workload puts in each log entry.
std::string SampleCommand() {
  kv::Command c = kv::Command::Put("k000000000000042", std::string(256, 'v'));
  c.client_id = 0x1234567890ull;
  c.sequence = 77;
  c.proposed_at_unix_ms = 1'700'000'000'000ull;
  return kv::EncodeCommand(c);
}

// Three cores over MemoryLogStorage, driven by hand in the order of the
// persistence contract (raft/raft.h): persist, send, apply, Advance.
class InMemoryCluster {
 public:
  InMemoryCluster() {
    for (uint64_t id = 1; id <= 3; ++id) {
      raft::Config c;
      c.id = NodeId(id);
      c.initial_voters = {NodeId(1), NodeId(2), NodeId(3)};
      // Node 1 draws the shortest election timeout, the others the longest,
      // so node 1 is elected first, deterministically.
      c.random = [id](uint64_t n) { return id == 1 ? 0 : n - 1; };
      auto node = std::make_unique<Node>();
      auto core = raft::Raft::Create(c, &node->storage);
      if (!core.ok()) {
        std::fprintf(stderr, "raft_core_bench: %s\n", core.status().ToString().c_str());
        std::abort();
      }
      node->core = *std::move(core);
      nodes_.push_back(std::move(node));
    }
    for (int t = 0; t < 100 && leader()->role() != raft::Role::kLeader; ++t) {
      for (auto& n : nodes_) (void)n->core->Tick();
      Drain();
    }
    if (leader()->role() != raft::Role::kLeader) {
      std::fprintf(stderr, "raft_core_bench: no leader elected\n");
      std::abort();
    }
  }

  raft::Raft* leader() { return nodes_[0]->core.get(); }

  // Processes Readies and delivers messages until nothing is left.
  void Drain() {
    std::deque<Message> inbox;
    while (true) {
      bool progress = false;
      for (auto& n : nodes_) {
        if (!n->core->HasReady()) continue;
        progress = true;
        Ready rd = n->core->GetReady();
        if (rd.hard_state || rd.snapshot || !rd.entries.empty()) {
          PersistBatch batch;
          batch.hard_state = rd.hard_state;
          if (rd.snapshot) batch.snapshot = rd.snapshot->meta;
          batch.entries = rd.entries;  // a copy: Advance(rd) reads them too
          if (absl::Status s = n->storage.Persist(batch); !s.ok()) {
            std::fprintf(stderr, "raft_core_bench: persist: %s\n", s.ToString().c_str());
            std::abort();
          }
        }
        for (const Message& m : rd.messages) inbox.push_back(m);
        applied_ += rd.committed_entries.size();
        n->core->Advance(rd);
      }
      while (!inbox.empty()) {
        progress = true;
        Message m = std::move(inbox.front());
        inbox.pop_front();
        (void)nodes_[m.to.value() - 1]->core->Step(m);
      }
      if (!progress) return;
    }
  }

  // Keeps the in-memory logs short: every node compacts to its applied index.
  void Compact() {
    for (auto& n : nodes_) (void)n->core->Compact(n->core->applied_index());
  }

  uint64_t applied() const { return applied_; }

 private:
  struct Node {
    raft::MemoryLogStorage storage;
    std::unique_ptr<raft::Raft> core;
  };
  std::vector<std::unique_ptr<Node>> nodes_;
  uint64_t applied_ = 0;
};

// The leader proposes a batch of N commands; the three cores replicate,
// acknowledge, commit and apply it. Per entry: what the core (and the
// in-memory log) costs, the floor under any real node's CPU per write.
void BM_RaftReplicateBatch(benchmark::State& state) {
  const int64_t batch = state.range(0);
  InMemoryCluster cluster;
  const std::string command = SampleCommand();
  int64_t rounds = 0;
  for (auto _ : state) {
    for (int64_t i = 0; i < batch; ++i) {
      auto r = cluster.leader()->Propose(command);
      if (!r.ok()) {
        state.SkipWithError(r.status().ToString().c_str());
        return;
      }
    }
    cluster.Drain();
    if (cluster.leader()->commit_index() != cluster.leader()->last_index()) {
      state.SkipWithError("the batch did not commit");
      return;
    }
    if (++rounds % 64 == 0) cluster.Compact();
  }
  state.SetItemsProcessed(state.iterations() * batch);
  state.counters["entries/s"] =
      benchmark::Counter(static_cast<double>(state.iterations() * batch), benchmark::Counter::kIsRate);
}
BENCHMARK(BM_RaftReplicateBatch)->ArgName("entries")->Arg(1)->Arg(10)->Arg(100)->Arg(1000);

void BM_EncodeCommand(benchmark::State& state) {
  kv::Command c = kv::Command::Put("k000000000000042", std::string(256, 'v'));
  c.client_id = 0x1234567890ull;
  c.sequence = 77;
  c.proposed_at_unix_ms = 1'700'000'000'000ull;
  for (auto _ : state) {
    std::string bytes = kv::EncodeCommand(c);
    benchmark::DoNotOptimize(bytes);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_EncodeCommand);

void BM_DecodeCommand(benchmark::State& state) {
  const std::string bytes = SampleCommand();
  for (auto _ : state) {
    auto c = kv::DecodeCommand(bytes);
    if (!c.ok()) {
      state.SkipWithError(c.status().ToString().c_str());
      return;
    }
    benchmark::DoNotOptimize(c);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_DecodeCommand);

// What the peer transport does to one AppendEntries of `entries` commands
// per stream write: the leader encodes and serializes it, the follower
// parses, validates and decodes it (server/raft_wire.h).
void BM_AppendEntriesWireRoundTrip(benchmark::State& state) {
  const int64_t entries = state.range(0);
  Message m;
  m.type = raft::MessageType::kAppendEntries;
  m.from = NodeId(1);
  m.to = NodeId(2);
  m.term = raft::Term(3);
  m.prev_log_index = Index(1000);
  m.prev_log_term = raft::Term(3);
  m.leader_commit = Index(1000);
  const std::string command = SampleCommand();
  for (int64_t k = 0; k < entries; ++k) {
    m.entries.push_back(Entry{Index(1001 + static_cast<uint64_t>(k)), raft::Term(3), raft::EntryType::kNormal, command});
  }
  std::string wire;
  for (auto _ : state) {
    server::raftpb::MessageBatch out;
    if (absl::Status s = server::EncodeMessage(m, /*cluster_id=*/7, out.add_messages()); !s.ok()) {
      state.SkipWithError(s.ToString().c_str());
      break;
    }
    out.SerializeToString(&wire);
    server::raftpb::MessageBatch in;
    if (!in.ParseFromString(wire)) {
      state.SkipWithError("parse failed");
      break;
    }
    absl::StatusOr<Message> decoded = server::DecodeMessage(in.messages(0));
    if (!decoded.ok()) {
      state.SkipWithError(decoded.status().ToString().c_str());
      break;
    }
    benchmark::DoNotOptimize(decoded->entries.data());
  }
  state.SetItemsProcessed(state.iterations() * entries);
  state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(wire.size()));
}
BENCHMARK(BM_AppendEntriesWireRoundTrip)->ArgName("entries")->Arg(1)->Arg(40)->Arg(400);

// One Ready's durable write: 100 entries of 256 bytes and a hard state in
// one LevelDB WriteBatch, synced (what a node pays per Ready) or not (the
// CPU and LevelDB cost alone).
void BM_LevelDbPersist(benchmark::State& state) {
  const int64_t entries = state.range(0);
  const bool sync = state.range(1) != 0;
  const raft::testing::TempDir dir;  // removed with the object
  {
    raft::LevelDbLogStorage::Options options;
    options.sync = sync;
    auto opened = raft::LevelDbLogStorage::Open(dir.Sub("raft"), options);
    if (!opened.ok()) {
      state.SkipWithError(opened.status().ToString().c_str());
    } else {
      std::unique_ptr<raft::LevelDbLogStorage> storage = *std::move(opened);
      PersistBatch batch;
      batch.entries.assign(static_cast<size_t>(entries),
                           Entry{Index(0), raft::Term(1), raft::EntryType::kNormal, std::string(256, 'x')});
      uint64_t next = 1;
      for (auto _ : state) {
        for (int64_t k = 0; k < entries; ++k) batch.entries[static_cast<size_t>(k)].index = Index(next + k);
        batch.hard_state = raft::HardState{raft::Term(1), NodeId(1), Index(next + entries - 1)};
        if (absl::Status s = storage->Persist(batch); !s.ok()) {
          state.SkipWithError(s.ToString().c_str());
          break;
        }
        next += static_cast<uint64_t>(entries);
      }
      state.SetItemsProcessed(state.iterations() * entries);
      state.counters["batches/s"] =
          benchmark::Counter(static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
    }
  }
}
BENCHMARK(BM_LevelDbPersist)
    ->ArgNames({"entries", "sync"})
    ->Args({100, 1})
    ->Args({100, 0})
    ->UseRealTime()
    ->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace quorumkv::bench

BENCHMARK_MAIN();
