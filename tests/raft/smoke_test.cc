#include <gtest/gtest.h>
#include "raft/raft.h"
#include "raft/memory_log_storage.h"
using namespace quorumkv::raft;
TEST(Smoke, SingleNodeElectsItself) {
  MemoryLogStorage storage;
  Config c; c.id = NodeId(1); c.initial_voters = {NodeId(1)};
  uint64_t x = 1; c.random = [&](uint64_t n) { x = x * 6364136223846793005ull + 1; return (x >> 33) % n; };
  auto r = Raft::Create(c, &storage);
  ASSERT_TRUE(r.ok()) << r.status();
  for (int i = 0; i < 40; ++i) {
    ASSERT_TRUE((*r)->Tick().ok());
    while ((*r)->HasReady()) { Ready rd = (*r)->GetReady(); PersistBatch b; b.hard_state = rd.hard_state; b.entries = rd.entries; ASSERT_TRUE(storage.Persist(b).ok()); (*r)->Advance(rd); }
  }
  EXPECT_EQ((*r)->role(), Role::kLeader);
  EXPECT_EQ((*r)->commit_index(), Index(2));
}
