#include "bench/histogram.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "gtest/gtest.h"

namespace quorumkv::bench {
namespace {

TEST(HistogramTest, EmptyReportsZeros) {
  Histogram h;
  EXPECT_EQ(h.count(), 0u);
  EXPECT_EQ(h.min(), 0u);
  EXPECT_EQ(h.max(), 0u);
  EXPECT_EQ(h.mean(), 0.0);
  EXPECT_EQ(h.ValueAtQuantile(0.5), 0u);
}

TEST(HistogramTest, SmallValuesAreExact) {
  Histogram h;
  for (uint64_t v = 1; v <= 200; ++v) h.Record(v);
  EXPECT_EQ(h.count(), 200u);
  EXPECT_EQ(h.min(), 1u);
  EXPECT_EQ(h.max(), 200u);
  EXPECT_EQ(h.ValueAtQuantile(0.5), 100u);
  EXPECT_EQ(h.ValueAtQuantile(0.99), 198u);
  EXPECT_EQ(h.ValueAtQuantile(1.0), 200u);
  EXPECT_EQ(h.ValueAtQuantile(0.0), 1u);
  EXPECT_DOUBLE_EQ(h.mean(), 100.5);
}

TEST(HistogramTest, BucketsAreContiguousAndPreciseToOnePart) {
  // Every value lies in its bucket, bucket indexes never go backwards, and
  // a bucket is at most 1/128 of its lowest value wide.
  size_t previous = 0;
  for (uint64_t v = 0; v < (uint64_t{1} << 22); v += 1 + v / 1000) {
    const size_t i = Histogram::BucketIndex(v);
    ASSERT_GE(i, previous) << v;
    previous = i;
    ASSERT_LE(Histogram::BucketLowest(i), v);
    ASSERT_GE(Histogram::BucketHighest(i), v);
    const uint64_t width = Histogram::BucketHighest(i) - Histogram::BucketLowest(i) + 1;
    if (v < 2 * Histogram::kSubBucketCount) {
      ASSERT_EQ(width, 1u) << v;
    } else {
      ASSERT_LE(width * Histogram::kSubBucketCount, Histogram::BucketLowest(i)) << v;
    }
  }
  // Adjacent buckets meet with no gap.
  for (size_t i = 1; i < 5000; ++i) {
    ASSERT_EQ(Histogram::BucketHighest(i - 1) + 1, Histogram::BucketLowest(i)) << i;
  }
}

TEST(HistogramTest, PercentilesOfAUniformSpreadWithinPrecision) {
  Histogram h;
  // 1 us .. 100 ms in nanoseconds, one value per microsecond.
  for (uint64_t us = 1; us <= 100000; ++us) h.Record(us * 1000);
  auto near = [](uint64_t got, double want) {
    return std::abs(static_cast<double>(got) - want) <= want / 100.0;
  };
  EXPECT_TRUE(near(h.ValueAtQuantile(0.5), 50'000'000.0)) << h.ValueAtQuantile(0.5);
  EXPECT_TRUE(near(h.ValueAtQuantile(0.9), 90'000'000.0)) << h.ValueAtQuantile(0.9);
  EXPECT_TRUE(near(h.ValueAtQuantile(0.99), 99'000'000.0)) << h.ValueAtQuantile(0.99);
  EXPECT_TRUE(near(h.ValueAtQuantile(0.999), 99'900'000.0)) << h.ValueAtQuantile(0.999);
  EXPECT_EQ(h.max(), 100'000'000u);
  EXPECT_EQ(h.ValueAtQuantile(1.0), 100'000'000u);
  // Reported percentiles are upper bounds of the true ones.
  EXPECT_GE(h.ValueAtQuantile(0.5), 50'000'000u);
}

TEST(HistogramTest, MergeEqualsRecordingEverythingInOne) {
  std::mt19937_64 rng(7);
  std::lognormal_distribution<double> dist(12.0, 1.5);
  Histogram a, b, all;
  for (int i = 0; i < 20000; ++i) {
    const uint64_t v = static_cast<uint64_t>(dist(rng));
    (i % 3 == 0 ? a : b).Record(v);
    all.Record(v);
  }
  Histogram merged;
  merged.Merge(a);
  merged.Merge(b);
  EXPECT_EQ(merged.count(), all.count());
  EXPECT_EQ(merged.min(), all.min());
  EXPECT_EQ(merged.max(), all.max());
  EXPECT_DOUBLE_EQ(merged.mean(), all.mean());
  for (double q : {0.1, 0.5, 0.9, 0.99, 0.999}) EXPECT_EQ(merged.ValueAtQuantile(q), all.ValueAtQuantile(q)) << q;
}

TEST(HistogramTest, HugeValuesKeepTheExactMaximum) {
  Histogram h;
  h.Record(10);
  h.Record(Histogram::kMaxTrackable * 4);
  EXPECT_EQ(h.max(), Histogram::kMaxTrackable * 4);
  EXPECT_EQ(h.ValueAtQuantile(1.0), Histogram::kMaxTrackable);  // the last bucket's top
  EXPECT_EQ(h.ValueAtQuantile(0.5), 10u);
  h.Reset();
  EXPECT_EQ(h.count(), 0u);
}

}  // namespace
}  // namespace quorumkv::bench
