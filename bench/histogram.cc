#include "bench/histogram.h"

#include <algorithm>
#include <bit>
#include <cmath>

namespace quorumkv::bench {

size_t Histogram::BucketIndex(uint64_t value) {
  value = std::min(value, kMaxTrackable);
  if (value < 2 * kSubBucketCount) return static_cast<size_t>(value);
  const int exponent = 63 - std::countl_zero(value);  // floor(log2(value)) > kSubBucketBits
  const int shift = exponent - kSubBucketBits;
  const uint64_t sub = value >> shift;  // in [kSubBucketCount, 2 * kSubBucketCount)
  return static_cast<size_t>(static_cast<uint64_t>(shift) * kSubBucketCount + sub);
}

uint64_t Histogram::BucketLowest(size_t index) {
  if (index < 2 * kSubBucketCount) return index;
  const uint64_t shift = index / kSubBucketCount - 1;
  const uint64_t sub = index - shift * kSubBucketCount;
  return sub << shift;
}

uint64_t Histogram::BucketHighest(size_t index) {
  if (index < 2 * kSubBucketCount) return index;
  const uint64_t shift = index / kSubBucketCount - 1;
  return BucketLowest(index) + (uint64_t{1} << shift) - 1;
}

void Histogram::Record(uint64_t value) {
  const size_t index = BucketIndex(value);
  if (index >= counts_.size()) counts_.resize(index + 1, 0);
  ++counts_[index];
  if (count_ == 0 || value < min_) min_ = value;
  if (value > max_) max_ = value;
  ++count_;
  sum_ += value;
}

void Histogram::Merge(const Histogram& other) {
  if (other.count_ == 0) return;
  if (other.counts_.size() > counts_.size()) counts_.resize(other.counts_.size(), 0);
  for (size_t i = 0; i < other.counts_.size(); ++i) counts_[i] += other.counts_[i];
  if (count_ == 0 || other.min_ < min_) min_ = other.min_;
  max_ = std::max(max_, other.max_);
  count_ += other.count_;
  sum_ += other.sum_;
}

void Histogram::Reset() { *this = Histogram(); }

uint64_t Histogram::ValueAtQuantile(double q) const {
  if (count_ == 0) return 0;
  q = std::clamp(q, 0.0, 1.0);
  // The rank of the value at q, 1-based: at least the first value.
  uint64_t rank = static_cast<uint64_t>(std::ceil(q * static_cast<double>(count_)));
  rank = std::clamp<uint64_t>(rank, 1, count_);
  uint64_t seen = 0;
  for (size_t i = 0; i < counts_.size(); ++i) {
    seen += counts_[i];
    if (seen >= rank) return std::clamp(BucketHighest(i), min(), max_);
  }
  return max_;
}

}  // namespace quorumkv::bench
