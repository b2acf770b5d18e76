// lincheck: checks a history file (shared/HISTORY.md) for linearizability.
//
//   lincheck FILE [--max-states N]     (FILE "-" reads standard input)
//
// Exit status: 0 linearizable, 1 not linearizable, 2 bad input or usage,
// 3 unknown (the search budget ran out).
#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <iostream>
#include <optional>
#include <string>
#include <string_view>

#include "tests/lincheck/history.h"
#include "tests/lincheck/linearizability_checker.h"

namespace quorumkv::lincheck {
namespace {

constexpr int kExitLinearizable = 0;
constexpr int kExitNotLinearizable = 1;
constexpr int kExitBadInput = 2;
constexpr int kExitUnknown = 3;

constexpr std::string_view kUsage =
    "usage: lincheck FILE [--max-states N]\n"
    "  Checks a JSON Lines history (shared/HISTORY.md) for linearizability.\n"
    "  FILE            the history; \"-\" reads standard input\n"
    "  --max-states N  search budget per key (default 50000000)\n"
    "exit status: 0 linearizable, 1 not linearizable, 2 bad input or usage, 3 unknown\n";

int UsageError(const std::string& message) {
  std::cerr << "lincheck: " << message << "\n" << kUsage;
  return kExitBadInput;
}

std::optional<uint64_t> ParseCount(const std::string& s) {
  if (s.empty() || s.find_first_not_of("0123456789") != std::string::npos) return std::nullopt;
  errno = 0;
  char* end = nullptr;
  const unsigned long long v = std::strtoull(s.c_str(), &end, 10);
  if (errno != 0 || *end != '\0' || v == 0) return std::nullopt;
  return static_cast<uint64_t>(v);
}

int Main(int argc, char** argv) {
  std::optional<std::string> file;
  CheckOptions options;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    std::optional<std::string> max_states;
    if (arg == "--help" || arg == "-h") {
      std::cout << kUsage;
      return kExitLinearizable;
    } else if (arg == "--max-states") {
      if (i + 1 >= argc) return UsageError("--max-states needs a number");
      max_states = argv[++i];
    } else if (arg.rfind("--max-states=", 0) == 0) {
      max_states = arg.substr(std::string_view("--max-states=").size());
    } else if (arg.size() > 1 && arg[0] == '-') {
      return UsageError("unknown option " + arg);
    } else if (file.has_value()) {
      return UsageError("only one history file, got " + *file + " and " + arg);
    } else {
      file = arg;
    }
    if (max_states.has_value()) {
      std::optional<uint64_t> n = ParseCount(*max_states);
      if (!n.has_value()) {
        return UsageError("--max-states must be a positive integer, got \"" + *max_states + "\"");
      }
      options.max_states_per_key = *n;
    }
  }
  if (!file.has_value()) return UsageError("no history file given");

  absl::StatusOr<std::vector<Event>> events =
      *file == "-" ? ReadHistory(std::cin) : ReadHistoryFile(*file);
  if (!events.ok()) {
    std::cerr << "lincheck: " << events.status().message() << "\n";
    return kExitBadInput;
  }

  const CheckResult result = CheckHistory(*events, options);
  std::cout << "outcome: " << OutcomeName(result.outcome) << "\n"
            << "keys: " << result.keys << "\n"
            << "operations: " << result.operations << " completed, " << result.info_operations
            << " info or unfinished\n"
            << "states explored: " << result.states << "\n";
  if (!result.key.empty() || result.outcome != CheckResult::Outcome::kLinearizable) {
    std::cout << "key: \"" << result.key << "\"\n";
  }
  if (!result.message.empty()) std::cout << "detail: " << result.message << "\n";

  switch (result.outcome) {
    case CheckResult::Outcome::kLinearizable: return kExitLinearizable;
    case CheckResult::Outcome::kNotLinearizable: return kExitNotLinearizable;
    case CheckResult::Outcome::kUnknown: return kExitUnknown;
    case CheckResult::Outcome::kInvalidHistory: return kExitBadInput;
  }
  return kExitBadInput;
}

}  // namespace
}  // namespace quorumkv::lincheck

int main(int argc, char** argv) { return quorumkv::lincheck::Main(argc, argv); }
