// Helpers shared by the kv/ tests: a temporary directory removed at the end
// of the test, and builders for apply batches.
#pragma once

#include <stdlib.h>

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <string>
#include <utility>
#include <vector>

#include "gtest/gtest.h"
#include "kv/command.h"
#include "kv/kv_state_machine.h"

namespace quorumkv::kv::testing {

// A fresh directory under $TMPDIR (or /tmp), deleted with everything in it
// when the object goes out of scope.
class TempDir {
 public:
  TempDir() {
    const char* base = getenv("TMPDIR");
    std::string templ =
        std::string(base != nullptr && *base != '\0' ? base : "/tmp") + "/quorumkv_kv_test_XXXXXX";
    char* made = mkdtemp(templ.data());
    EXPECT_NE(made, nullptr) << "mkdtemp failed for " << templ;
    path_ = templ;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::string& path() const { return path_; }
  std::string Sub(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

inline ApplyItem CommandItem(uint64_t index, uint64_t term, const Command& command) {
  ApplyItem item;
  item.index = index;
  item.term = term;
  item.type = ApplyItemType::kCommand;
  item.data = EncodeCommand(command);
  return item;
}

inline ApplyItem NoOpItem(uint64_t index, uint64_t term) {
  ApplyItem item;
  item.index = index;
  item.term = term;
  item.type = ApplyItemType::kNoOp;
  return item;
}

inline Command WithSession(Command c, uint64_t client_id, uint64_t sequence,
                           uint64_t proposed_at_unix_ms = 0) {
  c.client_id = client_id;
  c.sequence = sequence;
  c.proposed_at_unix_ms = proposed_at_unix_ms;
  return c;
}

inline Command At(Command c, uint64_t proposed_at_unix_ms) {
  c.proposed_at_unix_ms = proposed_at_unix_ms;
  return c;
}

// Applies `commands` as entries first_index, first_index + 1, ... in the
// store's current term (at least 1).
inline std::vector<ApplyResult> ApplyCommands(KvStateMachine& sm, uint64_t first_index,
                                              const std::vector<Command>& commands) {
  const uint64_t term = std::max<uint64_t>(1, sm.applied_term());
  std::vector<ApplyItem> items;
  for (size_t i = 0; i < commands.size(); ++i) {
    items.push_back(CommandItem(first_index + i, term, commands[i]));
  }
  auto results = sm.Apply(items);
  EXPECT_TRUE(results.ok()) << results.status();
  return results.ok() ? *std::move(results) : std::vector<ApplyResult>();
}

inline std::unique_ptr<KvStateMachine> OpenOrDie(const std::string& dir,
                                                 const KvOptions& options = KvOptions()) {
  auto sm = KvStateMachine::Open(dir, options);
  EXPECT_TRUE(sm.ok()) << sm.status();
  return sm.ok() ? *std::move(sm) : nullptr;
}

inline std::optional<std::string> GetOrDie(const KvStateMachine& sm, const std::string& key) {
  auto v = sm.Get(key);
  EXPECT_TRUE(v.ok()) << v.status();
  return v.ok() ? *v : std::nullopt;
}

inline uint64_t ChecksumOrDie(const KvStateMachine& sm) {
  auto d = sm.StateChecksum();
  EXPECT_TRUE(d.ok()) << d.status();
  return d.ok() ? d->checksum : 0;
}

}  // namespace quorumkv::kv::testing
