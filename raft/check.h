// Invariant checks that stay on in release builds (an invariant broken in
// production must stop the node, not corrupt data). A test harness may
// install a handler that prints its own context (the simulator prints the
// seed and the last events) before the process exits.
#pragma once

#include <string>

namespace quorumkv::raft {

using CheckFailureHandler = void (*)(const std::string& message);
// Installs `handler` (nullptr restores the default: print to stderr, abort).
void SetCheckFailureHandler(CheckFailureHandler handler);
[[noreturn]] void CheckFailed(const char* file, int line, const std::string& message);

}  // namespace quorumkv::raft

#define QKV_CHECK(cond, message)                                                  \
  do {                                                                            \
    if (!(cond)) ::quorumkv::raft::CheckFailed(__FILE__, __LINE__,                \
                                               std::string(#cond ": ") + (message)); \
  } while (0)
