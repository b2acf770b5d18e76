#include "kv/compaction_policy.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace quorumkv::kv {
namespace {

constexpr double kMaxFactor = 1000.0;

uint64_t SaturatingAdd(uint64_t a, uint64_t b) {
  return a > std::numeric_limits<uint64_t>::max() - b ? std::numeric_limits<uint64_t>::max()
                                                      : a + b;
}

// factor × size, rounded up, saturating at the largest uint64_t.
uint64_t Scale(double factor, uint64_t size) {
  const long double scaled = std::ceil(static_cast<long double>(factor) * size);
  if (scaled >= static_cast<long double>(std::numeric_limits<uint64_t>::max())) {
    return std::numeric_limits<uint64_t>::max();
  }
  return static_cast<uint64_t>(scaled);
}

}  // namespace

absl::StatusOr<CompactionPolicy> CompactionPolicy::Create(const CompactionPolicyOptions& options) {
  if (!std::isfinite(options.state_size_factor) || options.state_size_factor < 0 ||
      options.state_size_factor > kMaxFactor) {
    return absl::InvalidArgumentError(absl::StrCat("state_size_factor must be in [0, ", kMaxFactor,
                                                   "], got ", options.state_size_factor));
  }
  return CompactionPolicy(options);
}

CompactionPolicy::CompactionPolicy(const CompactionPolicyOptions& options)
    : options_(options),
      entry_threshold_(options.min_entries),
      byte_threshold_(options.min_bytes) {}

bool CompactionPolicy::ShouldSnapshot(uint64_t log_entries, uint64_t log_bytes) const {
  return (options_.min_entries > 0 && log_entries >= entry_threshold_) ||
         (options_.min_bytes > 0 && log_bytes >= byte_threshold_);
}

void CompactionPolicy::OnCompacted(const CompactionState& state) {
  const uint64_t growth_entries =
      std::max(options_.min_entries, Scale(options_.state_size_factor, state.state_keys));
  const uint64_t growth_bytes =
      std::max(options_.min_bytes, Scale(options_.state_size_factor, state.state_bytes));
  entry_threshold_ = SaturatingAdd(state.remaining_log_entries, growth_entries);
  byte_threshold_ = SaturatingAdd(state.remaining_log_bytes, growth_bytes);
}

uint64_t CompactionPolicy::CompactIndex(uint64_t snapshot_index) const {
  return snapshot_index > options_.trailing_entries ? snapshot_index - options_.trailing_entries
                                                    : 0;
}

}  // namespace quorumkv::kv
