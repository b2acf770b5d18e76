// The closed loop against a fake driver that completes operations on its
// own worker threads, as gRPC's callback API does.
#include "bench/runner.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <map>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

#include "bench/report.h"
#include "gtest/gtest.h"

namespace quorumkv::bench {
namespace {

class FakeDriver;

class FakeCall final : public Call {
 public:
  FakeCall(FakeDriver* driver, DoneCallback done) : driver_(driver), done_(std::move(done)) {}
  void Start(OpType op, absl::string_view key, absl::string_view value) override;
  void Complete(const OpResult& r) { done_(r); }

 private:
  FakeDriver* const driver_;
  const DoneCallback done_;
};

// Completes every operation on one of two worker threads. `outcome`
// decides each result from the operation and its key.
class FakeDriver final : public Driver {
 public:
  explicit FakeDriver(std::function<OpResult(OpType, const std::string&)> outcome = nullptr,
                      std::chrono::microseconds service_time = std::chrono::microseconds(0))
      : outcome_(std::move(outcome)), service_time_(service_time) {
    for (int i = 0; i < 2; ++i) workers_.emplace_back([this] { Work(); });
  }
  ~FakeDriver() override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    for (auto& w : workers_) w.join();
  }

  std::unique_ptr<Call> NewCall(size_t, DoneCallback done) override {
    return std::make_unique<FakeCall>(this, std::move(done));
  }
  std::vector<std::string> targets() const override { return {"fake:1"}; }
  std::string effective_consistency() const override { return "linearizable"; }
  std::vector<std::string> notes() const override { return {}; }

  void Enqueue(FakeCall* call, OpType op, std::string key, size_t value_size) {
    std::lock_guard<std::mutex> lock(mu_);
    ++started_[op];
    keys_[op].push_back(key);
    value_sizes_.insert(value_size);
    ++in_flight_;
    max_in_flight_ = std::max(max_in_flight_, in_flight_);
    queue_.push_back({call, op, std::move(key)});
    cv_.notify_one();
  }

  std::map<OpType, uint64_t> started() {
    std::lock_guard<std::mutex> lock(mu_);
    return started_;
  }
  std::vector<std::string> keys(OpType op) {
    std::lock_guard<std::mutex> lock(mu_);
    return keys_[op];
  }
  std::set<size_t> value_sizes() {
    std::lock_guard<std::mutex> lock(mu_);
    return value_sizes_;
  }
  int max_in_flight() {
    std::lock_guard<std::mutex> lock(mu_);
    return max_in_flight_;
  }

 private:
  struct Item {
    FakeCall* call;
    OpType op;
    std::string key;
  };

  void Work() {
    while (true) {
      Item item;
      {
        std::unique_lock<std::mutex> lock(mu_);
        cv_.wait(lock, [&] { return stop_ || !queue_.empty(); });
        if (queue_.empty()) return;
        item = std::move(queue_.front());
        queue_.pop_front();
      }
      if (service_time_.count() > 0) std::this_thread::sleep_for(service_time_);
      OpResult r;
      if (outcome_) r = outcome_(item.op, item.key);
      {
        // Complete from here on: the callback may start the next one.
        std::lock_guard<std::mutex> lock(mu_);
        --in_flight_;
      }
      item.call->Complete(r);
    }
  }

  std::function<OpResult(OpType, const std::string&)> outcome_;
  const std::chrono::microseconds service_time_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Item> queue_;
  bool stop_ = false;
  int in_flight_ = 0;
  int max_in_flight_ = 0;
  std::map<OpType, uint64_t> started_;
  std::map<OpType, std::vector<std::string>> keys_;
  std::set<size_t> value_sizes_;
  std::vector<std::thread> workers_;
};

void FakeCall::Start(OpType op, absl::string_view key, absl::string_view value) {
  driver_->Enqueue(this, op, std::string(key), value.size());
}

BenchOptions Options(int concurrency) {
  BenchOptions o;
  o.concurrency = concurrency;
  o.keys = 1000;
  o.key_size = 8;
  o.value_size = 100;
  o.progress = false;
  return o;
}

TEST(RunnerTest, OpsModeRunsExactlyThatManyAndKeepsConcurrencyInFlight) {
  // Each operation takes 100 us on one of two workers: requests queue up,
  // and the closed loop must keep exactly --concurrency of them in flight.
  FakeDriver driver(nullptr, std::chrono::microseconds(100));
  BenchOptions o = Options(8);
  Runner runner(o, &driver);
  PhaseSpec spec;
  spec.name = "test";
  spec.mix = Mix{1, 1, 0};
  spec.ops = 5000;
  RunResult r = runner.RunPhase(spec);
  EXPECT_EQ(r.ok_ops, 5000u);
  EXPECT_EQ(r.All().count(), 5000u);
  EXPECT_EQ(r.error_total, 0u);
  auto started = driver.started();
  EXPECT_EQ(started[OpType::kPut] + started[OpType::kGet], 5000u);
  EXPECT_EQ(driver.max_in_flight(), 8);
  EXPECT_GT(r.elapsed_s, 0.0);
  EXPECT_GT(r.ops_per_sec(), 0.0);
  // Puts carry values of exactly --value-size; gets carry none.
  EXPECT_EQ(driver.value_sizes(), (std::set<size_t>{0, 100}));
  for (const std::string& k : driver.keys(OpType::kGet)) {
    ASSERT_EQ(k.size(), 8u);
    ASSERT_EQ(k[0], 'k');
  }
}

TEST(RunnerTest, SequentialPreloadWritesEveryKeyOnce) {
  FakeDriver driver;
  BenchOptions o = Options(16);
  Runner runner(o, &driver);
  PhaseSpec spec;
  spec.name = "preload";
  spec.mix = Mix{1, 0, 0};
  spec.ops = o.keys;
  spec.sequential_keys = true;
  RunResult r = runner.RunPhase(spec);
  EXPECT_EQ(r.ok_ops, o.keys);
  std::vector<std::string> keys = driver.keys(OpType::kPut);
  std::set<std::string> unique(keys.begin(), keys.end());
  EXPECT_EQ(keys.size(), o.keys);
  EXPECT_EQ(unique.size(), o.keys);
  EXPECT_EQ(*unique.begin(), KeyFor(0, o.key_size));
  EXPECT_EQ(*unique.rbegin(), KeyFor(o.keys - 1, o.key_size));
  EXPECT_EQ(driver.started()[OpType::kGet], 0u);
}

TEST(RunnerTest, MixWeightsAreFollowed) {
  FakeDriver driver;
  Runner runner(Options(4), &driver);
  PhaseSpec spec;
  spec.mix = Mix{1, 3, 0};
  spec.ops = 8000;
  RunResult r = runner.RunPhase(spec);
  const double puts = static_cast<double>(r.latency[static_cast<int>(OpType::kPut)].count());
  EXPECT_NEAR(puts / 8000.0, 0.25, 0.03);
  EXPECT_EQ(r.latency[static_cast<int>(OpType::kDelete)].count(), 0u);
}

TEST(RunnerTest, ErrorsAreCountedByCodeAndFoundMissingByKey) {
  // Keys ending in 0 fail with UNAVAILABLE; gets of even keys find a value.
  FakeDriver driver([](OpType op, const std::string& key) {
    OpResult r;
    if (key.back() == '0') {
      r.code = 14;
      r.message = "no leader";
    } else if (op == OpType::kGet) {
      r.found = (key.back() - '0') % 2 == 0;
    }
    return r;
  });
  Runner runner(Options(8), &driver);
  PhaseSpec spec;
  spec.mix = Mix{0, 1, 0};
  spec.ops = 4000;
  RunResult r = runner.RunPhase(spec);
  EXPECT_EQ(r.ok_ops + r.error_total, 4000u);
  ASSERT_EQ(r.errors.size(), 1u);
  EXPECT_EQ(r.errors.at(14).count, r.error_total);
  EXPECT_EQ(r.errors.at(14).example, "no leader");
  EXPECT_NEAR(static_cast<double>(r.error_total) / 4000.0, 0.1, 0.03);
  EXPECT_EQ(r.get_found + r.get_missing, r.ok_ops);
  // Of the digits 1..9, 2, 4, 6 and 8 are even: 4 of 9.
  EXPECT_NEAR(static_cast<double>(r.get_found) / static_cast<double>(r.ok_ops), 4.0 / 9.0, 0.05);

  nlohmann::json j = BuildReport(Options(8), RunContext{}, std::nullopt, r, DescribeMachine());
  EXPECT_EQ(j["results"]["errors"]["UNAVAILABLE"]["count"].get<uint64_t>(), r.error_total);
  EXPECT_EQ(j["results"]["ops"].get<uint64_t>(), r.ok_ops);
  EXPECT_GT(j["machine"]["cores"].get<long>(), 0);
}

TEST(RunnerTest, DurationModeMeasuresOnlyTheWindowAfterTheWarmup) {
  FakeDriver driver;
  Runner runner(Options(4), &driver);
  PhaseSpec spec;
  spec.mix = Mix{0, 1, 0};
  spec.warmup = absl::Milliseconds(200);
  spec.duration = absl::Milliseconds(300);
  const absl::Time start = absl::Now();
  RunResult r = runner.RunPhase(spec);
  const absl::Duration took = absl::Now() - start;
  EXPECT_DOUBLE_EQ(r.elapsed_s, 0.3);
  EXPECT_GT(r.ok_ops, 0u);
  // The warm-up's operations ran but were not recorded.
  EXPECT_GT(driver.started()[OpType::kGet], r.ok_ops);
  EXPECT_GE(took, absl::Milliseconds(500));
  EXPECT_LT(took, absl::Seconds(5));
}

TEST(RunnerTest, ProgressLinesEverySecond) {
  FakeDriver driver;
  BenchOptions o = Options(2);
  o.progress = true;
  Runner runner(o, &driver);
  std::vector<std::string> lines;
  runner.set_progress_sink([&](const std::string& line) { lines.push_back(line); });
  PhaseSpec spec;
  spec.name = "run";
  spec.mix = Mix{0, 1, 0};
  spec.warmup = absl::ZeroDuration();
  spec.duration = absl::Milliseconds(2300);
  runner.RunPhase(spec);
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_NE(lines[0].find("ops/s"), std::string::npos) << lines[0];
  EXPECT_NE(lines[0].find("measure"), std::string::npos) << lines[0];
}

}  // namespace
}  // namespace quorumkv::bench
