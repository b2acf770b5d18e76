// A log-linear latency histogram in the style of HdrHistogram: values below
// 2^(kSubBucketBits+1) are counted exactly; above, every power of two is cut
// into 2^kSubBucketBits equal buckets, so a recorded value is known to
// within 1 / 2^kSubBucketBits (0.8 % with 7 bits) whatever its magnitude.
// Recording is O(1) with no allocation once the bucket array has grown to
// the largest value seen; merging adds bucket counts, so per-slot
// histograms (one writer each, no locks) merge into one at the end.
//
// Percentiles report the highest value of the bucket the rank falls into
// (never more than the exact maximum), as HdrHistogram does: a reported
// p99 is an upper bound of the true p99 within the bucket's precision.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace quorumkv::bench {

class Histogram {
 public:
  // Precision: 2^7 = 128 buckets per power of two.
  static constexpr int kSubBucketBits = 7;
  static constexpr uint64_t kSubBucketCount = uint64_t{1} << kSubBucketBits;
  // Values above this are counted in the last bucket (the exact maximum is
  // still kept): 2^40 ns is about 18 minutes.
  static constexpr uint64_t kMaxTrackable = (uint64_t{1} << 40) - 1;

  void Record(uint64_t value);
  void Merge(const Histogram& other);
  void Reset();

  uint64_t count() const { return count_; }
  uint64_t min() const { return count_ == 0 ? 0 : min_; }
  uint64_t max() const { return max_; }
  double mean() const { return count_ == 0 ? 0.0 : static_cast<double>(sum_) / static_cast<double>(count_); }

  // The value at quantile q in [0, 1]: the smallest bucket upper bound such
  // that at least ceil(q * count) values are at or below it (clamped to
  // [min, max]). 0 when empty.
  uint64_t ValueAtQuantile(double q) const;

  // Bucket arithmetic, exposed for tests.
  static size_t BucketIndex(uint64_t value);
  static uint64_t BucketLowest(size_t index);
  static uint64_t BucketHighest(size_t index);

 private:
  std::vector<uint64_t> counts_;  // grows on demand to the largest index seen
  uint64_t count_ = 0;
  uint64_t sum_ = 0;
  uint64_t min_ = 0;
  uint64_t max_ = 0;
};

}  // namespace quorumkv::bench
