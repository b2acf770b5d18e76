#include "bench/runner.h"

#include <sys/resource.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <limits>
#include <memory>
#include <mutex>
#include <optional>
#include <vector>

#include "absl/strings/str_format.h"

namespace quorumkv::bench {

double ProcessCpuSeconds() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  auto seconds = [](const timeval& t) { return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_usec) / 1e6; };
  return seconds(u.ru_utime) + seconds(u.ru_stime);
}

Histogram RunResult::All() const {
  Histogram all;
  for (const Histogram& h : latency) all.Merge(h);
  return all;
}

namespace {

int64_t NowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// splitmix64: small, fast, and good enough to pick keys and operations.
uint64_t NextRandom(uint64_t& state) {
  uint64_t z = (state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// Uniform in [0, n) (Lemire's multiply-shift; the bias is below 2^-40 for
// the key spaces used here).
uint64_t Uniform(uint64_t& state, uint64_t n) {
  return static_cast<uint64_t>((static_cast<unsigned __int128>(NextRandom(state)) * n) >> 64);
}

struct PhaseState;

struct Slot {
  PhaseState* phase = nullptr;
  std::unique_ptr<Call> call;
  uint64_t rng = 0;
  std::string key;
  // The operation in flight.
  OpType op = OpType::kGet;
  int64_t start_ns = 0;
  // Measured results, written only by this slot's callbacks.
  Histogram latency[kOpTypes];
  uint64_t ok = 0;
  uint64_t found = 0;
  uint64_t missing = 0;
  std::map<int, ErrorCount> errors;
  uint64_t error_total = 0;
  int64_t last_end_ns = 0;
  // Everything completed, warm-up included, for the progress line.
  std::atomic<uint64_t> progress_ops{0};
  std::atomic<uint64_t> progress_errors{0};
  std::atomic<uint64_t> progress_latency_ns{0};
};

struct PhaseState {
  const BenchOptions* options = nullptr;
  const PhaseSpec* spec = nullptr;
  const std::string* value_pool = nullptr;
  int64_t measure_start_ns = 0;
  int64_t measure_end_ns = std::numeric_limits<int64_t>::max();  // --ops: open-ended
  std::atomic<uint64_t> tickets{0};
  std::mutex mu;
  std::condition_variable cv;
  int active = 0;  // slots still running
};

void Finish(Slot* slot) {
  PhaseState& ph = *slot->phase;
  std::lock_guard<std::mutex> lock(ph.mu);
  if (--ph.active == 0) ph.cv.notify_all();
}

void Issue(Slot* slot) {
  PhaseState& ph = *slot->phase;
  const PhaseSpec& spec = *ph.spec;
  const BenchOptions& o = *ph.options;
  const int64_t now = NowNs();
  if (spec.ops == 0 && now >= ph.measure_end_ns) {
    Finish(slot);
    return;
  }
  uint64_t key_index;
  if (spec.ops > 0 && now >= ph.measure_start_ns) {
    const uint64_t ticket = ph.tickets.fetch_add(1, std::memory_order_relaxed);
    if (ticket >= spec.ops) {
      Finish(slot);
      return;
    }
    key_index = spec.sequential_keys ? ticket % o.keys : Uniform(slot->rng, o.keys);
  } else {
    key_index = Uniform(slot->rng, o.keys);
  }
  const uint64_t pick = Uniform(slot->rng, spec.mix.total());
  OpType op = OpType::kDelete;
  if (pick < spec.mix.put) {
    op = OpType::kPut;
  } else if (pick < spec.mix.put + spec.mix.get) {
    op = OpType::kGet;
  }
  FormatKey(key_index, o.key_size, &slot->key);
  absl::string_view value;
  if (op == OpType::kPut) {
    const std::string& pool = *ph.value_pool;
    const size_t size = static_cast<size_t>(o.value_size);
    value = absl::string_view(pool).substr(Uniform(slot->rng, pool.size() - size + 1), size);
  }
  slot->op = op;
  slot->start_ns = now;
  slot->call->Start(op, slot->key, value);
}

void OnDone(Slot* slot, const OpResult& r) {
  PhaseState& ph = *slot->phase;
  const int64_t end = NowNs();
  const uint64_t latency = static_cast<uint64_t>(std::max<int64_t>(0, end - slot->start_ns));
  slot->progress_ops.fetch_add(1, std::memory_order_relaxed);
  slot->progress_latency_ns.fetch_add(latency, std::memory_order_relaxed);
  if (r.code != 0) slot->progress_errors.fetch_add(1, std::memory_order_relaxed);
  if (slot->start_ns >= ph.measure_start_ns && end <= ph.measure_end_ns) {
    slot->last_end_ns = std::max(slot->last_end_ns, end);
    if (r.code == 0) {
      slot->latency[static_cast<int>(slot->op)].Record(latency);
      ++slot->ok;
      if (slot->op == OpType::kGet) ++(r.found ? slot->found : slot->missing);
    } else {
      ErrorCount& e = slot->errors[r.code];
      if (e.count++ == 0) e.example = r.message;
      ++slot->error_total;
    }
  }
  Issue(slot);
}

}  // namespace

Runner::Runner(const BenchOptions& options, Driver* driver) : options_(options), driver_(driver) {
  // Printable, incompressible-enough bytes (LevelDB compresses tables with
  // snappy; etcd does not compress): each value is a random slice.
  static constexpr char kAlphabet[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+/";
  uint64_t state = options.seed ^ 0x5EED5EED5EED5EEDull;
  value_pool_.resize(static_cast<size_t>(options.value_size) * 2 + 64);
  for (char& c : value_pool_) c = kAlphabet[NextRandom(state) % 64];
  progress_sink_ = [](const std::string& line) { std::fprintf(stderr, "%s\n", line.c_str()); };
}

RunResult Runner::RunPhase(const PhaseSpec& spec) {
  PhaseState ph;
  ph.options = &options_;
  ph.spec = &spec;
  ph.value_pool = &value_pool_;
  const size_t n = static_cast<size_t>(options_.concurrency);
  std::vector<std::unique_ptr<Slot>> slots;
  slots.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    auto slot = std::make_unique<Slot>();
    slot->phase = &ph;
    slot->rng = options_.seed * 0x100000001B3ull + i + 1;
    Slot* raw = slot.get();
    slot->call = driver_->NewCall(i, [raw](const OpResult& r) { OnDone(raw, r); });
    slots.push_back(std::move(slot));
  }

  const int64_t t0 = NowNs();
  ph.measure_start_ns = t0 + absl::ToInt64Nanoseconds(spec.warmup);
  if (spec.ops == 0) ph.measure_end_ns = ph.measure_start_ns + absl::ToInt64Nanoseconds(spec.duration);
  ph.active = static_cast<int>(n);
  for (auto& s : slots) Issue(s.get());

  // Wake every second for the progress line, and at the edges of the
  // measured window to sample this process's CPU time.
  using Clock = std::chrono::steady_clock;
  auto at = [](int64_t ns) { return Clock::time_point(std::chrono::nanoseconds(ns)); };
  std::optional<double> cpu_start;
  std::optional<double> cpu_end;
  int64_t next_progress = t0 + 1'000'000'000;
  uint64_t last_ops = 0, last_errors = 0, last_latency = 0;
  int64_t last_progress = t0;
  std::unique_lock<std::mutex> lock(ph.mu);
  while (ph.active > 0) {
    int64_t wake = next_progress;
    if (!cpu_start) wake = std::min(wake, ph.measure_start_ns);
    if (!cpu_end && spec.ops == 0) wake = std::min(wake, ph.measure_end_ns);
    ph.cv.wait_until(lock, at(wake), [&] { return ph.active == 0; });
    const int64_t now = NowNs();
    if (!cpu_start && now >= ph.measure_start_ns) cpu_start = ProcessCpuSeconds();
    if (!cpu_end && spec.ops == 0 && now >= ph.measure_end_ns) cpu_end = ProcessCpuSeconds();
    if (now >= next_progress && ph.active > 0) {
      lock.unlock();
      uint64_t ops = 0, errors = 0, latency = 0;
      for (const auto& s : slots) {
        ops += s->progress_ops.load(std::memory_order_relaxed);
        errors += s->progress_errors.load(std::memory_order_relaxed);
        latency += s->progress_latency_ns.load(std::memory_order_relaxed);
      }
      const double interval = static_cast<double>(now - last_progress) / 1e9;
      const uint64_t d_ops = ops - last_ops;
      if (options_.progress) {
        progress_sink_(absl::StrFormat(
            "kvbench %s %5.1fs %-9s %9.0f ops/s  %7.0f errors/s  mean %.3f ms  (%d in flight)", spec.name,
            static_cast<double>(now - t0) / 1e9, now < ph.measure_start_ns ? "warm-up" : "measure",
            static_cast<double>(d_ops) / interval, static_cast<double>(errors - last_errors) / interval,
            d_ops == 0 ? 0.0 : static_cast<double>(latency - last_latency) / static_cast<double>(d_ops) / 1e6,
            options_.concurrency));
      }
      last_ops = ops;
      last_errors = errors;
      last_latency = latency;
      last_progress = now;
      while (next_progress <= now) next_progress += 1'000'000'000;
      lock.lock();
    }
  }
  lock.unlock();
  if (!cpu_start) cpu_start = ProcessCpuSeconds();
  if (!cpu_end) cpu_end = ProcessCpuSeconds();

  RunResult result;
  int64_t last_end = ph.measure_start_ns;
  for (const auto& s : slots) {
    for (int k = 0; k < kOpTypes; ++k) result.latency[k].Merge(s->latency[k]);
    result.ok_ops += s->ok;
    result.get_found += s->found;
    result.get_missing += s->missing;
    result.error_total += s->error_total;
    for (const auto& [code, e] : s->errors) {
      ErrorCount& total = result.errors[code];
      if (total.count == 0) total.example = e.example;
      total.count += e.count;
    }
    last_end = std::max(last_end, s->last_end_ns);
  }
  const int64_t window_end = spec.ops == 0 ? ph.measure_end_ns : last_end;
  result.elapsed_s = static_cast<double>(window_end - ph.measure_start_ns) / 1e9;
  result.client_cpu_s = *cpu_end - *cpu_start;
  return result;
}

}  // namespace quorumkv::bench
