// lincheck_gen: writes a random, linearizable-by-construction history to
// standard output, to measure the checker on histories of a chosen size:
//
//   lincheck_gen --operations 20000 --keys 10 --processes 8 --seed 1 > h.jsonl
//   time lincheck h.jsonl
#include <cstdlib>
#include <iostream>
#include <string>

#include "tests/lincheck/history.h"
#include "tests/lincheck/random_history.h"

namespace quorumkv::lincheck {
namespace {

constexpr const char* kUsage =
    "usage: lincheck_gen [--operations N] [--keys N] [--processes N] [--seed N]\n"
    "                    [--info P] [--fail P] [--cas-weight W] [--no-truncate]\n"
    "  Writes a random linearizable history (shared/HISTORY.md) to standard output.\n";

int Main(int argc, char** argv) {
  RandomHistoryOptions options;
  uint64_t seed = 1;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--no-truncate") {
      options.truncate_tail = false;
      continue;
    }
    if (i + 1 >= argc) {
      std::cerr << "lincheck_gen: " << arg << " needs a value\n" << kUsage;
      return 2;
    }
    const std::string value = argv[++i];
    char* end = nullptr;
    const double number = std::strtod(value.c_str(), &end);
    if (end == value.c_str() || *end != '\0' || number < 0) {
      std::cerr << "lincheck_gen: bad value for " << arg << ": " << value << "\n" << kUsage;
      return 2;
    }
    if (arg == "--operations") {
      options.operations = static_cast<int>(number);
    } else if (arg == "--keys" && number >= 1) {
      options.keys = static_cast<int>(number);
    } else if (arg == "--processes" && number >= 1) {
      options.processes = static_cast<int>(number);
    } else if (arg == "--seed") {
      seed = static_cast<uint64_t>(number);
    } else if (arg == "--info" && number <= 1) {
      options.info_probability = number;
    } else if (arg == "--fail" && number <= 1) {
      options.fail_probability = number;
    } else if (arg == "--cas-weight") {
      options.cas_weight = number;
    } else {
      std::cerr << "lincheck_gen: bad option " << arg << " " << value << "\n" << kUsage;
      return 2;
    }
  }
  const GeneratedHistory history = GenerateRandomHistory(options, seed);
  HistoryWriter writer(std::cout);
  for (const Event& e : history.events) writer.Write(e);
  writer.Flush();
  return 0;
}

}  // namespace
}  // namespace quorumkv::lincheck

int main(int argc, char** argv) { return quorumkv::lincheck::Main(argc, argv); }
