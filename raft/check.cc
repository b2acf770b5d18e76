#include "raft/check.h"

#include <cstdio>
#include <cstdlib>

namespace quorumkv::raft {
namespace {
CheckFailureHandler g_handler = nullptr;
}  // namespace

void SetCheckFailureHandler(CheckFailureHandler handler) { g_handler = handler; }

void CheckFailed(const char* file, int line, const std::string& message) {
  std::string full = std::string(file) + ":" + std::to_string(line) + ": invariant violated: " + message;
  if (g_handler != nullptr) g_handler(full);
  std::fprintf(stderr, "%s\n", full.c_str());
  std::abort();
}

}  // namespace quorumkv::raft
