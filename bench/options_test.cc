#include "bench/options.h"

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace quorumkv::bench {
namespace {

using ::testing::HasSubstr;

std::string ErrorOf(const std::vector<std::string>& args) {
  auto o = ParseOptions(args);
  if (o.ok()) return "(parsed)";
  EXPECT_EQ(o.status().code(), absl::StatusCode::kInvalidArgument);
  return std::string(o.status().message());
}

TEST(OptionsTest, DefaultsMatchTheUsage) {
  auto o = ParseOptions({});
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->system, System::kQuorumKv);
  EXPECT_EQ(o->target, Target::kLeader);
  EXPECT_EQ(o->concurrency, 16);
  EXPECT_EQ(o->channels, 4);
  EXPECT_EQ(o->duration, absl::Seconds(10));
  EXPECT_EQ(o->warmup, absl::Seconds(1));
  EXPECT_EQ(o->ops, 0u);
  EXPECT_EQ(o->keys, 10000u);
  EXPECT_EQ(o->key_size, 16);
  EXPECT_EQ(o->value_size, 256);
  EXPECT_EQ(o->mix.put, 10u);
  EXPECT_EQ(o->mix.get, 90u);
  EXPECT_EQ(o->mix.del, 0u);
  EXPECT_EQ(o->consistency, Consistency::kLinearizable);
  EXPECT_TRUE(o->progress);
}

TEST(OptionsTest, ParsesEveryFlagInBothSpellings) {
  auto o = ParseOptions({"--system", "etcd", "--endpoints=127.0.0.1:1,127.0.0.1:2", "--target", "all",
                         "--channels", "2", "--concurrency=64", "--duration", "2500ms", "--warmup=0",
                         "--keys", "500", "--key_size", "8", "--value-size=100", "--mix", "put=1,get=2,del=3",
                         "--consistency", "lease", "--timeout", "2", "--json", "/tmp/x.json", "--preload",
                         "--seed", "9", "--label", "w1", "--no-progress"});
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->system, System::kEtcd);
  EXPECT_EQ(o->endpoints, (std::vector<std::string>{"127.0.0.1:1", "127.0.0.1:2"}));
  EXPECT_EQ(o->target, Target::kAll);
  EXPECT_EQ(o->channels, 2);
  EXPECT_EQ(o->concurrency, 64);
  EXPECT_EQ(o->duration, absl::Milliseconds(2500));
  EXPECT_EQ(o->warmup, absl::ZeroDuration());
  EXPECT_EQ(o->keys, 500u);
  EXPECT_EQ(o->key_size, 8);
  EXPECT_EQ(o->value_size, 100);
  EXPECT_EQ(o->mix.put, 1u);
  EXPECT_EQ(o->mix.get, 2u);
  EXPECT_EQ(o->mix.del, 3u);
  EXPECT_EQ(o->consistency, Consistency::kLease);
  EXPECT_EQ(o->timeout, absl::Seconds(2));
  EXPECT_EQ(o->json_path, "/tmp/x.json");
  EXPECT_TRUE(o->preload);
  EXPECT_FALSE(o->preload_only);
  EXPECT_EQ(o->seed, 9u);
  EXPECT_EQ(o->label, "w1");
  EXPECT_FALSE(o->progress);
}

TEST(OptionsTest, OpsModeAndPreloadOnly) {
  auto o = ParseOptions({"--ops", "1000"});
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->ops, 1000u);
  auto p = ParseOptions({"--preload-only"});
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_TRUE(p->preload);
  EXPECT_TRUE(p->preload_only);
  auto v6 = ParseOptions({"--endpoints", "[::1]:2379"});
  ASSERT_TRUE(v6.ok()) << v6.status();
}

TEST(OptionsTest, MistakesNameTheFlag) {
  EXPECT_THAT(ErrorOf({"--concurrency", "0"}), HasSubstr("--concurrency"));
  EXPECT_THAT(ErrorOf({"--concurrency", "many"}), HasSubstr("--concurrency"));
  EXPECT_THAT(ErrorOf({"--system", "redis"}), HasSubstr("quorumkv or etcd"));
  EXPECT_THAT(ErrorOf({"--target", "some"}), HasSubstr("leader or all"));
  EXPECT_THAT(ErrorOf({"--consistency", "strong"}), HasSubstr("linearizable, lease or serializable"));
  EXPECT_THAT(ErrorOf({"--duration", "soon"}), HasSubstr("--duration"));
  EXPECT_THAT(ErrorOf({"--duration", "-1s"}), HasSubstr(">= 0"));
  EXPECT_THAT(ErrorOf({"--duration", "0s"}), HasSubstr("--duration must be > 0"));
  EXPECT_THAT(ErrorOf({"--duration", "1s", "--ops", "5"}), HasSubstr("not both"));
  EXPECT_THAT(ErrorOf({"--endpoints", "localhost"}), HasSubstr("host:port"));
  EXPECT_THAT(ErrorOf({"--endpoints", "h:0"}), HasSubstr("1..65535"));
  EXPECT_THAT(ErrorOf({"--endpoints", "h:1,h:1"}), HasSubstr("twice"));
  EXPECT_THAT(ErrorOf({"--endpoints", ","}), HasSubstr("at least one"));
  EXPECT_THAT(ErrorOf({"--keys", "100000", "--key-size", "5"}), HasSubstr("--key-size >= 6"));
  EXPECT_THAT(ErrorOf({"--bogus", "1"}), HasSubstr("unknown flag --bogus"));
  EXPECT_THAT(ErrorOf({"stray"}), HasSubstr("unexpected argument"));
  EXPECT_THAT(ErrorOf({"--keys"}), HasSubstr("needs a value"));
  EXPECT_THAT(ErrorOf({"--progress=maybe"}), HasSubstr("true or false"));
  EXPECT_THAT(ErrorOf({"--timeout", "0"}), HasSubstr("--timeout must be > 0"));
}

TEST(OptionsTest, MixParsing) {
  auto m = ParseMix("get=1");
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(m->put, 0u);
  EXPECT_EQ(m->get, 1u);
  EXPECT_EQ(m->del, 0u);
  EXPECT_EQ(m->ToString(), "put=0,get=1,delete=0");
  EXPECT_THAT(std::string(ParseMix("put=0,get=0").status().message()), HasSubstr("positive weight"));
  EXPECT_THAT(std::string(ParseMix("put=1,put=2").status().message()), HasSubstr("twice"));
  EXPECT_THAT(std::string(ParseMix("scan=5").status().message()), HasSubstr("unknown operation"));
  EXPECT_THAT(std::string(ParseMix("put").status().message()), HasSubstr("op=weight"));
  EXPECT_THAT(std::string(ParseMix("put=-1").status().message()), HasSubstr("not an integer"));
}

TEST(OptionsTest, KeysHaveTheirExactSize) {
  EXPECT_EQ(KeyFor(42, 16), "k000000000000042");
  EXPECT_EQ(KeyFor(0, 2), "k0");
  EXPECT_EQ(KeyFor(9999, 5), "k9999");
  EXPECT_EQ(DecimalDigits(0), 1);
  EXPECT_EQ(DecimalDigits(9), 1);
  EXPECT_EQ(DecimalDigits(10), 2);
  std::string reused = "something much longer than the key";
  FormatKey(7, 4, &reused);
  EXPECT_EQ(reused, "k007");
}

TEST(OptionsTest, StatusCodeNames) {
  EXPECT_EQ(StatusCodeName(0), "OK");
  EXPECT_EQ(StatusCodeName(14), "UNAVAILABLE");
  EXPECT_EQ(StatusCodeName(8), "RESOURCE_EXHAUSTED");
  EXPECT_EQ(StatusCodeName(99), "CODE_99");
}

}  // namespace
}  // namespace quorumkv::bench
