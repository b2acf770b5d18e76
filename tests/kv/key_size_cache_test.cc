#include "kv/key_size_cache.h"

#include <string>

#include "gtest/gtest.h"

namespace quorumkv::kv {
namespace {

TEST(KeySizeCacheTest, RemembersPresenceAndSizeAndTheLatestWins) {
  KeySizeCache cache(1 << 20);
  EXPECT_EQ(cache.Find("a"), std::nullopt);
  cache.Remember("a", KeyState{true, 10});
  cache.Remember("b", KeyState{});
  EXPECT_EQ(cache.Find("a"), (KeyState{true, 10}));
  EXPECT_EQ(cache.Find("b"), KeyState{});
  cache.Remember("a", KeyState{true, 3});
  cache.Remember("b", KeyState{true, 0});
  EXPECT_EQ(cache.Find("a"), (KeyState{true, 3}));
  EXPECT_EQ(cache.Find("b"), (KeyState{true, 0}));
  EXPECT_EQ(cache.size(), 2u);
}

TEST(KeySizeCacheTest, ZeroBudgetRemembersNothing) {
  KeySizeCache cache(0);
  cache.Remember("a", KeyState{true, 1});
  EXPECT_EQ(cache.Find("a"), std::nullopt);
  EXPECT_EQ(cache.size(), 0u);
}

TEST(KeySizeCacheTest, StaysWithinItsBudget) {
  const size_t budget = 100 * (KeySizeCache::kEntryOverheadBytes + 8);
  KeySizeCache cache(budget);
  for (int i = 0; i < 10'000; ++i) {
    cache.Remember("key" + std::to_string(100'000 + i), KeyState{true, 1});
    ASSERT_LE(cache.bytes(), budget) << i;
  }
  // Two generations of half the budget each: between a quarter and all of it.
  EXPECT_GE(cache.size(), 50u);
  EXPECT_LE(cache.size(), 100u);
}

TEST(KeySizeCacheTest, AKeyInUseSurvivesWhileIdleOnesAreDropped) {
  KeySizeCache cache(40 * (KeySizeCache::kEntryOverheadBytes + 8));
  cache.Remember("hot", KeyState{true, 42});
  cache.Remember("cold", KeyState{true, 7});
  for (int i = 0; i < 1000; ++i) {
    cache.Remember("key" + std::to_string(100'000 + i), KeyState{});
    if (i % 5 == 0) {
      ASSERT_EQ(cache.Find("hot"), (KeyState{true, 42})) << i;
    }
  }
  EXPECT_EQ(cache.Find("cold"), std::nullopt);
}

TEST(KeySizeCacheTest, ReRememberingAKeyOfTheOlderGenerationCountsItOnce) {
  const size_t entry = KeySizeCache::kEntryOverheadBytes + 1;
  KeySizeCache cache(4 * entry);  // two entries per generation
  cache.Remember("a", KeyState{true, 1});
  cache.Remember("b", KeyState{true, 1});
  cache.Remember("c", KeyState{true, 1});  // rotates: a, b are the older generation
  cache.Remember("a", KeyState{true, 2});
  EXPECT_EQ(cache.size(), 3u);
  EXPECT_EQ(cache.bytes(), 3 * entry);
  EXPECT_EQ(cache.Find("a"), (KeyState{true, 2}));
}

TEST(KeySizeCacheTest, ClearForgetsEverything) {
  KeySizeCache cache(1 << 20);
  cache.Remember("a", KeyState{true, 1});
  cache.Clear();
  EXPECT_EQ(cache.Find("a"), std::nullopt);
  EXPECT_EQ(cache.size(), 0u);
  EXPECT_EQ(cache.bytes(), 0u);
}

}  // namespace
}  // namespace quorumkv::kv
