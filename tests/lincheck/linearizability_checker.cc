#include "tests/lincheck/linearizability_checker.h"

#include <algorithm>
#include <array>
#include <bit>
#include <limits>
#include <map>
#include <memory>
#include <tuple>
#include <unordered_map>
#include <utility>

namespace quorumkv::lincheck {
namespace {

using Outcome = CheckResult::Outcome;

constexpr size_t kNoEvent = std::numeric_limits<size_t>::max();

// ---------------------------------------------------------------------------
// Pairing events into operations.

// An invoke and its completion (kNoEvent when the history ends first).
struct PairedOp {
  size_t invoke = kNoEvent;
  size_t completion = kNoEvent;
};

std::string Quote(const std::string& s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    if (c == '"' || c == '\\') {
      out.push_back('\\');
      out.push_back(static_cast<char>(c));
    } else if (c >= 0x20 && c < 0x7f) {
      out.push_back(static_cast<char>(c));
    } else {
      static const char kHex[] = "0123456789abcdef";
      out += "\\x";
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 15]);
    }
  }
  out.push_back('"');
  return out;
}

std::string QuoteOptional(const std::optional<std::string>& v) {
  return v.has_value() ? Quote(*v) : "absent";
}

// "event #12 (process 3 ok put key "k")", 1-based like the line numbers of a
// history file without blank lines.
std::string DescribeEvent(const std::vector<Event>& events, size_t i) {
  const Event& e = events[i];
  return "event #" + std::to_string(i + 1) + " (process " + std::to_string(e.process) + " " +
         std::string(EventTypeName(e.type)) + " " + std::string(FunctionName(e.f)) + " key " +
         Quote(e.key) + " at " + std::to_string(e.time_ns) + " ns)";
}

// A readable operation: what it did, what it returned, and when.
std::string DescribeOp(const std::vector<Event>& events, const PairedOp& op) {
  const Event& inv = events[op.invoke];
  const Event* done = op.completion == kNoEvent ? nullptr : &events[op.completion];
  const bool ok = done != nullptr && done->type == EventType::kOk;
  std::string s = "process " + std::to_string(inv.process) + " ";
  switch (inv.f) {
    case Function::kPut:
      s += "put " + QuoteOptional(inv.value);
      break;
    case Function::kDelete:
      s += "delete";
      break;
    case Function::kGet:
      s += "get";
      if (inv.consistency != Consistency::kLinearizable) {
        s += "(" + std::string(ConsistencyName(inv.consistency)) + ")";
      }
      if (ok) s += " -> " + QuoteOptional(done->value);
      break;
    case Function::kCas:
      s += "cas(expected " + QuoteOptional(inv.cas_expected) + ", new " + Quote(inv.cas_new) + ")";
      if (ok) s += done->cas_ok ? " -> swapped" : " -> not swapped";
      break;
  }
  s += " (invoked at " + std::to_string(inv.time_ns) + " ns, ";
  if (done == nullptr) {
    s += "never completed: may take effect at any later time)";
  } else if (done->type == EventType::kInfo) {
    s += "info at " + std::to_string(done->time_ns) + " ns: may take effect at any later time)";
  } else {
    s += std::string(EventTypeName(done->type)) + " at " + std::to_string(done->time_ns) + " ns)";
  }
  return s;
}

// Pairs each invoke with the next completion of its process, validating the
// rules of HISTORY.md. On error, `bad_key` names the key involved.
absl::StatusOr<std::vector<PairedOp>> PairEvents(const std::vector<Event>& events,
                                                 std::string* bad_key) {
  struct ProcessState {
    size_t outstanding = kNoEvent;  // its pending invoke
    size_t info = kNoEvent;         // its info completion, after which it is retired
  };
  std::unordered_map<int64_t, ProcessState> processes;
  std::vector<PairedOp> ops;
  auto invalid = [&](size_t i, const std::string& why) {
    *bad_key = events[i].key;
    return absl::InvalidArgumentError(DescribeEvent(events, i) + ": " + why);
  };
  for (size_t i = 0; i < events.size(); ++i) {
    const Event& e = events[i];
    ProcessState& p = processes[e.process];
    if (e.type == EventType::kInvoke) {
      if (p.outstanding != kNoEvent) {
        return invalid(i, "process " + std::to_string(e.process) +
                              " already has an operation outstanding, " +
                              DescribeEvent(events, p.outstanding) +
                              "; a process runs one operation at a time");
      }
      if (p.info != kNoEvent) {
        return invalid(i, "process " + std::to_string(e.process) + " issued again after its info " +
                              DescribeEvent(events, p.info) +
                              "; after an info a process never issues again (use a new id)");
      }
      p.outstanding = i;
      continue;
    }
    if (p.outstanding == kNoEvent) {
      return invalid(i, "a completion with no outstanding invoke of process " +
                            std::to_string(e.process));
    }
    const Event& inv = events[p.outstanding];
    if (inv.f != e.f) {
      return invalid(i, "completes a " + std::string(FunctionName(e.f)) + " but the invoke, " +
                            DescribeEvent(events, p.outstanding) + ", was a " +
                            std::string(FunctionName(inv.f)));
    }
    if (inv.key != e.key) {
      return invalid(i, "completes key " + Quote(e.key) + " but the invoke, " +
                            DescribeEvent(events, p.outstanding) + ", was on key " +
                            Quote(inv.key));
    }
    if (e.time_ns < inv.time_ns) {
      return invalid(i, "completes before its invoke, " + DescribeEvent(events, p.outstanding));
    }
    if (e.f == Function::kPut && e.value.has_value() && e.value != inv.value) {
      return invalid(i, "reports writing " + QuoteOptional(e.value) + " but the invoke wrote " +
                            QuoteOptional(inv.value));
    }
    if (e.f == Function::kCas && e.type == EventType::kOk &&
        (e.cas_expected != inv.cas_expected || e.cas_new != inv.cas_new)) {
      return invalid(i, "cas completion (expected " + QuoteOptional(e.cas_expected) + ", new " +
                            Quote(e.cas_new) + ") differs from its invoke (expected " +
                            QuoteOptional(inv.cas_expected) + ", new " + Quote(inv.cas_new) + ")");
    }
    if (e.f == Function::kGet && e.consistency != Consistency::kLinearizable &&
        e.consistency != inv.consistency) {
      return invalid(i, "completion says consistency " +
                            std::string(ConsistencyName(e.consistency)) + " but the invoke said " +
                            std::string(ConsistencyName(inv.consistency)));
    }
    ops.push_back({p.outstanding, i});
    p.outstanding = kNoEvent;
    if (e.type == EventType::kInfo) p.info = i;
  }
  // Invokes that never completed: their outcome is unknown, like an info.
  for (const auto& [process, p] : processes) {
    if (p.outstanding != kNoEvent) ops.push_back({p.outstanding, kNoEvent});
  }
  // Deterministic order regardless of the hash map: by invoke position.
  std::sort(ops.begin(), ops.end(),
            [](const PairedOp& a, const PairedOp& b) { return a.invoke < b.invoke; });
  return ops;
}

// ---------------------------------------------------------------------------
// The per-key register model.

// Register states and values are small integers: 0 is "absent", every
// distinct value string of the key gets its own id.
constexpr int32_t kAbsent = 0;

enum class OpKind : uint8_t { kPut, kGet, kDelete, kCas };

struct KeyOp {
  OpKind kind = OpKind::kGet;
  bool info = false;     // outcome unknown: may be placed anywhere after call, or never
  bool swapped = false;  // ok cas: whether the swap happened
  int32_t value = kAbsent;      // put: written; get: read
  int32_t expected = kAbsent;   // cas
  int32_t new_value = kAbsent;  // cas
  int64_t call = 0;
  int64_t ret = 0;  // unused when info
  PairedOp source;

  // The value this operation writes when it takes effect, if it writes.
  std::optional<int32_t> Written() const {
    switch (kind) {
      case OpKind::kPut: return value;
      case OpKind::kDelete: return kAbsent;
      case OpKind::kCas: return new_value;
      case OpKind::kGet: return std::nullopt;
    }
    return std::nullopt;
  }
};

// One step of the sequential specification: whether `op`, with its observed
// output, is legal in `state`, and the state after it.
bool Step(const KeyOp& op, int32_t state, int32_t* next) {
  switch (op.kind) {
    case OpKind::kPut:
      *next = op.value;
      return true;
    case OpKind::kDelete:
      *next = kAbsent;
      return true;
    case OpKind::kGet:
      *next = state;
      return state == op.value;
    case OpKind::kCas:
      if (op.info) {  // no observed output: whatever the state says happens
        *next = state == op.expected ? op.new_value : state;
        return true;
      }
      if (op.swapped) {
        *next = op.new_value;
        return state == op.expected;
      }
      *next = state;
      return state != op.expected;
  }
  return false;
}

// ---------------------------------------------------------------------------
// Lowe's memoization cache, with subsumption for info operations.
//
// A configuration of the search is (definite operations linearized, register
// state, info operations placed). Operations are numbered by invoke time, so
// the definite set is nearly a prefix; it is stored exactly as
// [state, top, holes...]: `top` = 1 + the highest linearized definite
// operation, `holes` = the definite operations below top not linearized.
// Exact, and a few words per entry instead of a bitset of n bits.
//
// The info part is a list of (class, count) pairs sorted by class: how many
// operations of each class of interchangeable info operations are placed
// (KeySearch explains the classes and why that is exact).
//
// A configuration already visited is pruned (a hash lookup). Beyond that,
// configurations with the same definite set and state form a group. Within a
// group, one that placed no more of each class than another dominates it: an
// info operation not yet placed can still be placed later, or never, so
// whatever the other can reach, it can too. A configuration is pruned when
// its group holds a finished (fully explored, hence failed) entry that
// dominates it. This is what keeps timed-out operations, which stay
// placeable forever, from multiplying the search by 2^(their number).
// Entries still on the search stack never prune.
class ConfigCache {
 public:
  static constexpr uint32_t kPruned = std::numeric_limits<uint32_t>::max();

  ConfigCache() : group_slots_(64), entry_slots_(64, kNone) {}

  // Records (key, info) as being explored and returns its id, or returns
  // kPruned if it is known, or dominated by a finished configuration.
  uint32_t Visit(const std::vector<uint32_t>& key, const std::vector<uint32_t>& info) {
    const uint32_t group = Group(key);
    const uint64_t info_hash = Hash(info);
    const uint64_t hash = Mix(info_hash ^ (uint64_t{group} * 0x9e3779b97f4a7c15ULL));

    // Exactly this configuration: a hash lookup.
    if ((entries_.size() + 1) * 2 > entry_slots_.size()) GrowEntries();
    size_t mask = entry_slots_.size() - 1;
    size_t slot = hash & mask;
    for (; entry_slots_[slot] != kNone; slot = (slot + 1) & mask) {
      const Entry& e = entries_[entry_slots_[slot]];
      if (e.hash == hash && e.group == group && e.info_len == info.size() &&
          std::equal(info.begin(), info.end(), info_arena_.data() + e.info_begin)) {
        return kPruned;
      }
    }

    // A finished configuration of the group that dominates it. Only the most
    // recent ones are examined, which bounds the cost of a visit; missing a
    // dominating entry costs search, never a wrong verdict.
    uint64_t classes = 0;  // a Bloom filter of the classes placed
    uint64_t placed = 0;   // how many operations placed
    for (size_t i = 0; i < info.size(); i += 2) {
      classes |= uint64_t{1} << (info[i] % 64);
      placed += info[i + 1];
    }
    int examined = 0;
    for (uint32_t id = group_heads_[group]; id != kNone && examined < kMaxDominanceChecks;
         id = entries_[id].next, ++examined) {
      const Entry& e = entries_[id];
      if (!e.finished || (e.classes & ~classes) != 0 || e.placed > placed) continue;
      if (Covers(info_arena_.data() + e.info_begin, e.info_len, info)) return kPruned;
    }

    Entry e;
    e.info_begin = info_arena_.size();
    e.info_len = static_cast<uint32_t>(info.size());
    e.hash = hash;
    e.classes = classes;
    e.placed = placed;
    e.group = group;
    e.next = group_heads_[group];
    info_arena_.insert(info_arena_.end(), info.begin(), info.end());
    const uint32_t id = static_cast<uint32_t>(entries_.size());
    entries_.push_back(e);
    group_heads_[group] = id;
    entry_slots_[slot] = id;
    return id;
  }

  // The configuration `id` has been explored completely, without success.
  void Finish(uint32_t id) { entries_[id].finished = true; }

  uint64_t size() const { return entries_.size(); }
  uint64_t bytes() const {
    return group_slots_.capacity() * sizeof(GroupSlot) + arena_words_ * sizeof(uint32_t) +
           group_heads_.capacity() * sizeof(uint32_t) +
           entry_slots_.capacity() * sizeof(uint32_t) + entries_.capacity() * sizeof(Entry) +
           info_arena_.capacity() * sizeof(uint32_t);
  }

 private:
  static constexpr uint32_t kNone = std::numeric_limits<uint32_t>::max() - 1;
  static constexpr size_t kMaxBlockWords = size_t{1} << 20;
  static constexpr int kMaxDominanceChecks = 64;

  struct Entry {
    uint64_t info_begin = 0;  // in info_arena_
    uint64_t hash = 0;        // of (group, info)
    uint64_t classes = 0;     // Bloom filter of the classes placed
    uint64_t placed = 0;      // operations placed, over all classes
    uint32_t info_len = 0;
    uint32_t group = 0;
    uint32_t next = kNone;  // the previous entry of the same group
    bool finished = false;
  };
  // Open addressing from a group key to the group's number.
  struct GroupSlot {
    uint64_t hash = 0;
    uint64_t ref = 0;  // 0 = empty; else (block << 32 | offset) + 1 in the key arena
    uint32_t group = 0;
  };

  // Whether every (class, count) of `stored` is matched in `info` by the same
  // class with at least that count: `stored` placed a subset.
  static bool Covers(const uint32_t* stored, uint32_t len, const std::vector<uint32_t>& info) {
    size_t j = 0;
    for (uint32_t i = 0; i < len; i += 2) {
      while (j < info.size() && info[j] < stored[i]) j += 2;
      if (j >= info.size() || info[j] != stored[i] || info[j + 1] < stored[i + 1]) return false;
    }
    return true;
  }

  static uint64_t Mix(uint64_t h) {
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    return h;
  }

  static uint64_t Hash(const std::vector<uint32_t>& words) {
    uint64_t h = 0x243f6a8885a308d3ULL ^ words.size();
    for (uint32_t w : words) {
      h = (h ^ w) * 0x9e3779b97f4a7c15ULL;
      h ^= h >> 29;
    }
    return Mix(h);
  }

  // The number of `key`'s group, creating the group if needed.
  uint32_t Group(const std::vector<uint32_t>& key) {
    const uint64_t hash = Hash(key);
    if ((group_heads_.size() + 1) * 2 > group_slots_.size()) GrowGroups();
    const size_t mask = group_slots_.size() - 1;
    for (size_t i = hash & mask;; i = (i + 1) & mask) {
      GroupSlot& slot = group_slots_[i];
      if (slot.ref == 0) {
        slot.hash = hash;
        slot.ref = Store(key);
        slot.group = static_cast<uint32_t>(group_heads_.size());
        group_heads_.push_back(kNone);
        return slot.group;
      }
      if (slot.hash == hash && Equals(slot.ref, key)) return slot.group;
    }
  }

  const uint32_t* Resolve(uint64_t ref) const {
    --ref;
    return blocks_[ref >> 32].get() + (ref & 0xffffffffULL);
  }

  bool Equals(uint64_t ref, const std::vector<uint32_t>& key) const {
    const uint32_t* p = Resolve(ref);
    if (p[0] != key.size()) return false;
    return std::equal(key.begin(), key.end(), p + 1);
  }

  // Keys live in fixed blocks, never moved: no doubling copies of the arena.
  uint64_t Store(const std::vector<uint32_t>& key) {
    const size_t need = key.size() + 1;
    if (blocks_.empty() || block_used_ + need > block_size_) {
      // Blocks grow geometrically: most keys of most histories need little.
      block_size_ = std::max(std::min(kMaxBlockWords, block_size_ * 2 + 1024), need);
      blocks_.push_back(std::make_unique_for_overwrite<uint32_t[]>(block_size_));
      arena_words_ += block_size_;
      block_used_ = 0;
    }
    uint32_t* p = blocks_.back().get() + block_used_;
    p[0] = static_cast<uint32_t>(key.size());
    std::copy(key.begin(), key.end(), p + 1);
    const uint64_t ref = ((uint64_t{blocks_.size() - 1} << 32) | block_used_) + 1;
    block_used_ += need;
    return ref;
  }

  void GrowGroups() {
    std::vector<GroupSlot> old = std::move(group_slots_);
    group_slots_.assign(old.size() * 2, GroupSlot{});
    const size_t mask = group_slots_.size() - 1;
    for (const GroupSlot& s : old) {
      if (s.ref == 0) continue;
      size_t i = s.hash & mask;
      while (group_slots_[i].ref != 0) i = (i + 1) & mask;
      group_slots_[i] = s;
    }
  }

  void GrowEntries() {
    entry_slots_.assign(entry_slots_.size() * 2, kNone);
    const size_t mask = entry_slots_.size() - 1;
    for (uint32_t id = 0; id < entries_.size(); ++id) {
      size_t i = entries_[id].hash & mask;
      while (entry_slots_[i] != kNone) i = (i + 1) & mask;
      entry_slots_[i] = id;
    }
  }

  std::vector<GroupSlot> group_slots_;
  std::vector<uint32_t> group_heads_;  // by group: its latest entry
  std::vector<std::unique_ptr<uint32_t[]>> blocks_;
  size_t block_size_ = 0;
  size_t block_used_ = 0;
  uint64_t arena_words_ = 0;
  std::vector<uint32_t> entry_slots_;  // open addressing over entries_ by hash
  std::vector<Entry> entries_;
  std::vector<uint32_t> info_arena_;
};

// ---------------------------------------------------------------------------
// The search for one key.

struct KeyVerdict {
  Outcome outcome = Outcome::kLinearizable;
  std::string message;
  uint64_t states = 0;
};

// Wing & Gong's depth-first search, as Porcupine's checkSingle: the invoke
// and return points of the definite operations form a doubly linked list in
// time order. Any operation whose invoke comes before the first return point
// still in the list may be linearized next; linearizing it unlinks both of
// its points. Reaching a return point means that operation had to be
// linearized by now and was not: backtrack. The cache prunes configurations
// already explored (Lowe).
//
// Info operations never return, so they are not in the list: one invoked
// before the first return point may be placed at any step, or never.
//
// Reductions, each of which keeps at least one of any set of equivalent
// linearizations, so the search stays exact:
//  - a read (ok get, or ok cas that did not swap) that is legal now is placed
//    at once, without trying alternatives: it changes nothing, and every
//    operation still pending may legally follow it, so if any linearization
//    exists from here, one exists that starts with it;
//  - definite operations are tried before info ones, so an info operation is
//    placed only when something later needs it;
//  - an info operation that would not change the state is never placed (it
//    may as well never take effect);
//  - info operations with the same effect (a class: same function, value,
//    expected and new value) are interchangeable, since all stay placeable
//    forever: they are placed in invoke order, so a configuration only needs
//    how many of each class are placed;
//  - an info write whose value only it writes, once a definite read of that
//    value is linearized, is certainly placed: its class is left out of the
//    configuration (the definite set implies it), keeping entries small;
//  - a value is dead once no remaining operation can observe it (no pending
//    definite get reads it, no pending definite cas expects it, no info cas
//    ever expects it): all dead values behave alike, so the configuration
//    records "some dead value" instead of which, and the info puts and
//    deletes that write a dead value form one pool of interchangeable
//    writes, of which the configuration records how many were used, and of
//    which only one is tried at each step. Deadness depends only on the
//    definite set, so configurations of one group agree on it;
//  - the cache's subsumption (ConfigCache).
class KeySearch {
 public:
  KeySearch(std::vector<KeyOp> ops, const CheckOptions& options)
      : ops_(std::move(ops)), options_(options) {}

  Outcome Run();

  uint64_t states() const { return cache_.size(); }
  uint64_t cache_bytes() const { return cache_.bytes(); }
  const std::vector<KeyOp>& ops() const { return ops_; }

  // The diagnosis of a failed search: the operation whose return point was
  // reached unplaced in the configuration with the most definite operations
  // linearized, the states in which it was tried and did not fit, and the
  // last definite operations of that configuration's order.
  int32_t culprit() const { return culprit_; }
  uint64_t culprit_depth() const { return culprit_depth_; }
  std::vector<int32_t> FailedStates(int32_t op) const;
  const std::vector<int32_t>& culprit_prefix() const { return culprit_prefix_; }

 private:
  // What a configuration tries, in order.
  enum class Phase : uint8_t { kReads, kWrites, kInfo };
  struct Frame {
    int32_t op;
    int32_t state;    // register state before op
    int32_t top;      // highest linearized definite op before op, -1 for none
    uint32_t config;  // the cache entry of the configuration op led to
    Phase phase;      // kReads: op was forced, the configuration had no alternative
    bool pool_tried;  // kInfo: a write of the dead-value pool was tried already
  };
  static constexpr int kMaxFailedStates = 4;

  static bool IsRead(const KeyOp& op) {
    return op.kind == OpKind::kGet || (op.kind == OpKind::kCas && !op.swapped);
  }

  void Build();
  int32_t FirstReturn() const {
    int32_t node = next_[kHead];
    while (!node_is_return_[node]) node = next_[node];
    return node;
  }
  void Place(int32_t op);
  void Unplace(int32_t op);
  void Encode(int32_t state, int32_t top);
  void SetEncoded(int32_t cls, bool present);
  void NoteFailed(int32_t op, int32_t state);
  // `depth`: definite operations linearized.
  void NoteBlocked(int32_t op, uint64_t depth);

  std::vector<KeyOp> ops_;
  CheckOptions options_;

  // The list of definite points: node 0 is the head sentinel, then the points
  // in time order, then the tail sentinel. Nodes are numbered in the order
  // of all points (info invokes included), so comparing node numbers compares
  // times.
  static constexpr int32_t kHead = 0;
  std::vector<int32_t> next_, prev_, node_op_;
  std::vector<uint8_t> node_is_return_;
  std::vector<int32_t> call_node_, ret_node_;  // by op; for info ops only call_node_

  // Classes of interchangeable info operations, each in invoke order, and
  // a doubly linked list (head class_head_) of those not yet all placed.
  std::vector<std::vector<int32_t>> class_members_;
  std::vector<int32_t> class_of_;      // by op, -1 for definite
  std::vector<uint32_t> placed_;       // by class
  std::vector<uint32_t> forced_;       // by class: linearized definite reads that imply it
  std::vector<std::vector<int32_t>> implies_;  // by definite op: classes it implies
  std::vector<int32_t> class_next_, class_prev_;
  int32_t class_head_ = 0;
  std::vector<uint32_t> encoded_classes_;  // sorted: placed > 0 and forced == 0

  // Dead values: by value, how many pending definite operations observe it,
  // and whether an info cas expects it (then it never dies).
  std::vector<int32_t> observers_left_;
  std::vector<uint8_t> info_cas_expects_;
  std::vector<int32_t> observes_;  // by op: the value a definite op observes, or -1
  bool Dead(int32_t value) const {
    return observers_left_[value] == 0 && !info_cas_expects_[value];
  }
  // Whether class `c` writes a dead value regardless of the state.
  bool InPool(int32_t c) const {
    const KeyOp& o = ops_[class_members_[c][0]];
    if (o.kind == OpKind::kPut) return Dead(o.value);
    if (o.kind == OpKind::kDelete) return Dead(kAbsent);
    return false;
  }
  static constexpr uint32_t kDeadState = std::numeric_limits<uint32_t>::max();
  uint32_t Canonical(int32_t state) const {
    return Dead(state) ? kDeadState : static_cast<uint32_t>(state);
  }

  std::vector<uint64_t> bits_;       // linearized definite operations
  std::vector<uint64_t> info_mask_;  // info operations
  std::vector<uint32_t> key_;        // the definite part of a configuration, encoded
  std::vector<uint32_t> info_key_;   // its info part
  ConfigCache cache_;
  std::vector<Frame> stack_;

  std::vector<std::array<int32_t, kMaxFailedStates>> failed_states_;
  std::vector<uint8_t> failed_count_;
  int32_t culprit_ = -1;
  uint64_t culprit_depth_ = 0;
  std::vector<int32_t> culprit_prefix_;
};

void KeySearch::Build() {
  const int32_t n = static_cast<int32_t>(ops_.size());
  // (time, is_return, op): calls sort before returns at the same instant, so
  // operations that touch in time count as concurrent.
  std::vector<std::tuple<int64_t, bool, int32_t>> points;
  points.reserve(2 * n);
  for (int32_t i = 0; i < n; ++i) {
    points.emplace_back(ops_[i].call, false, i);
    if (!ops_[i].info) points.emplace_back(ops_[i].ret, true, i);
  }
  std::sort(points.begin(), points.end());
  const int32_t nodes = static_cast<int32_t>(points.size()) + 2;
  const int32_t tail = nodes - 1;
  next_.assign(nodes, tail);
  prev_.assign(nodes, kHead);
  node_op_.assign(nodes, -1);
  node_is_return_.assign(nodes, 0);
  node_is_return_[tail] = 1;  // never reached while a definite op remains
  call_node_.assign(n, 0);
  ret_node_.assign(n, 0);
  int32_t last = kHead;
  for (int32_t k = 0; k < static_cast<int32_t>(points.size()); ++k) {
    const int32_t node = k + 1;
    const auto& [time, is_return, op] = points[k];
    node_op_[node] = op;
    node_is_return_[node] = is_return;
    (is_return ? ret_node_ : call_node_)[op] = node;
    if (ops_[op].info) continue;  // numbered, not linked
    next_[last] = node;
    prev_[node] = last;
    last = node;
  }
  next_[last] = tail;
  prev_[tail] = last;

  // Classes of info operations with the same effect.
  class_of_.assign(n, -1);
  std::map<std::tuple<OpKind, int32_t, int32_t, int32_t>, int32_t> class_ids;
  for (int32_t i = 0; i < n; ++i) {
    const KeyOp& o = ops_[i];
    if (!o.info) continue;
    auto [it, inserted] = class_ids.try_emplace(
        {o.kind, o.value, o.expected, o.new_value}, static_cast<int32_t>(class_members_.size()));
    if (inserted) class_members_.emplace_back();
    class_members_[it->second].push_back(i);
    class_of_[i] = it->second;
  }
  const int32_t classes = static_cast<int32_t>(class_members_.size());
  placed_.assign(classes, 0);
  forced_.assign(classes, 0);
  class_head_ = classes;
  class_next_.assign(classes + 1, class_head_);
  class_prev_.assign(classes + 1, class_head_);
  for (int32_t c = 0; c < classes; ++c) {  // in order of first invoke
    class_prev_[c] = c == 0 ? class_head_ : c - 1;
    class_next_[c] = c + 1 < classes ? c + 1 : class_head_;
  }
  if (classes > 0) {
    class_next_[class_head_] = 0;
    class_prev_[class_head_] = classes - 1;
  }

  // Which definite reads imply which info write: the write is the only
  // operation writing its value, and the read needs that value.
  std::map<int32_t, int32_t> writers;  // value -> number of ops writing it
  for (const KeyOp& o : ops_) {
    if (auto w = o.Written()) ++writers[*w];
  }
  std::map<int32_t, int32_t> sole_info_writer_class;  // value -> class
  for (int32_t c = 0; c < classes; ++c) {
    const KeyOp& o = ops_[class_members_[c][0]];
    auto w = o.Written();
    if (class_members_[c].size() == 1 && w && *w != kAbsent && writers[*w] == 1) {
      sole_info_writer_class[*w] = c;
    }
  }
  implies_.assign(n, {});
  for (int32_t i = 0; i < n; ++i) {
    const KeyOp& o = ops_[i];
    if (o.info) continue;
    int32_t needs = -1;
    if (o.kind == OpKind::kGet) needs = o.value;
    if (o.kind == OpKind::kCas && o.swapped) needs = o.expected;
    auto it = sole_info_writer_class.find(needs);
    if (it != sole_info_writer_class.end()) implies_[i].push_back(it->second);
  }

  int32_t values = kAbsent + 1;
  for (const KeyOp& o : ops_) {
    values = std::max({values, o.value + 1, o.expected + 1, o.new_value + 1});
  }
  observers_left_.assign(values, 0);
  info_cas_expects_.assign(values, 0);
  observes_.assign(n, -1);
  for (int32_t i = 0; i < n; ++i) {
    const KeyOp& o = ops_[i];
    if (o.kind == OpKind::kCas && o.info) info_cas_expects_[o.expected] = 1;
    if (o.info) continue;
    if (o.kind == OpKind::kGet) observes_[i] = o.value;
    if (o.kind == OpKind::kCas) observes_[i] = o.expected;
    if (observes_[i] >= 0) ++observers_left_[observes_[i]];
  }

  bits_.assign((n + 63) / 64 + 1, 0);
  info_mask_.assign(bits_.size(), 0);
  for (int32_t i = 0; i < n; ++i) {
    if (ops_[i].info) info_mask_[i >> 6] |= uint64_t{1} << (i & 63);
  }
  failed_states_.assign(n, {});
  failed_count_.assign(n, 0);
  stack_.reserve(n);
}

void KeySearch::SetEncoded(int32_t cls, bool present) {
  const uint32_t c = static_cast<uint32_t>(cls);
  auto it = std::lower_bound(encoded_classes_.begin(), encoded_classes_.end(), c);
  if (present) {
    encoded_classes_.insert(it, c);
  } else {
    encoded_classes_.erase(it);
  }
}

void KeySearch::Place(int32_t op) {
  const int32_t c = class_of_[op];
  if (c >= 0) {
    if (++placed_[c] == 1 && forced_[c] == 0) SetEncoded(c, true);
    if (placed_[c] == class_members_[c].size()) {  // all placed: unlink the class
      class_next_[class_prev_[c]] = class_next_[c];
      class_prev_[class_next_[c]] = class_prev_[c];
    }
    return;
  }
  bits_[op >> 6] |= uint64_t{1} << (op & 63);
  for (int32_t n : {call_node_[op], ret_node_[op]}) {
    next_[prev_[n]] = next_[n];
    prev_[next_[n]] = prev_[n];
  }
  for (int32_t implied : implies_[op]) {
    if (++forced_[implied] == 1 && placed_[implied] > 0) SetEncoded(implied, false);
  }
  if (observes_[op] >= 0) --observers_left_[observes_[op]];
}

// The exact reverse of Place (dancing links: valid in LIFO order).
void KeySearch::Unplace(int32_t op) {
  const int32_t c = class_of_[op];
  if (c >= 0) {
    if (placed_[c] == class_members_[c].size()) {
      class_next_[class_prev_[c]] = c;
      class_prev_[class_next_[c]] = c;
    }
    if (--placed_[c] == 0 && forced_[c] == 0) SetEncoded(c, false);
    return;
  }
  if (observes_[op] >= 0) ++observers_left_[observes_[op]];
  for (int32_t implied : implies_[op]) {
    if (--forced_[implied] == 0 && placed_[implied] > 0) SetEncoded(implied, true);
  }
  for (int32_t n : {ret_node_[op], call_node_[op]}) {
    next_[prev_[n]] = n;
    prev_[next_[n]] = n;
  }
  bits_[op >> 6] &= ~(uint64_t{1} << (op & 63));
}

void KeySearch::Encode(int32_t state, int32_t top) {
  key_.clear();
  key_.push_back(Canonical(state));
  const uint32_t limit = static_cast<uint32_t>(top + 1);
  key_.push_back(limit);
  // The first point in the list is the invoke of the lowest-numbered definite
  // operation not yet linearized (numbers follow invoke order): below it,
  // there are no holes to look for.
  const int32_t first = node_op_[next_[kHead]];
  const uint32_t low = first >= 0 ? static_cast<uint32_t>(first) : limit;
  for (uint32_t w = low / 64; w * 64 < limit; ++w) {
    uint64_t missing = ~bits_[w] & ~info_mask_[w];
    const uint32_t bits_here = limit - w * 64;
    if (bits_here < 64) missing &= (uint64_t{1} << bits_here) - 1;
    while (missing != 0) {
      key_.push_back(w * 64 + static_cast<uint32_t>(std::countr_zero(missing)));
      missing &= missing - 1;
    }
  }
  info_key_.clear();
  uint32_t pool_used = 0;
  for (uint32_t c : encoded_classes_) {
    if (InPool(static_cast<int32_t>(c))) {
      pool_used += placed_[c];
      continue;
    }
    info_key_.push_back(c);
    info_key_.push_back(placed_[c]);
  }
  if (pool_used > 0) {  // as a class of its own, numbered after the others
    info_key_.push_back(static_cast<uint32_t>(class_members_.size()));
    info_key_.push_back(pool_used);
  }
}

void KeySearch::NoteFailed(int32_t op, int32_t state) {
  auto& seen = failed_states_[op];
  uint8_t& count = failed_count_[op];
  for (int i = 0; i < std::min<int>(count, kMaxFailedStates); ++i) {
    if (seen[i] == state) return;
  }
  if (count < kMaxFailedStates) seen[count] = state;
  if (count < 255) ++count;
}

std::vector<int32_t> KeySearch::FailedStates(int32_t op) const {
  const int n = std::min<int>(failed_count_[op], kMaxFailedStates);
  return std::vector<int32_t>(failed_states_[op].begin(), failed_states_[op].begin() + n);
}

void KeySearch::NoteBlocked(int32_t op, uint64_t depth) {
  if (culprit_ >= 0 && depth <= culprit_depth_) return;
  culprit_ = op;
  culprit_depth_ = depth;
  // The last few definite operations of the order that got this far, for
  // the report.
  culprit_prefix_.clear();
  for (size_t i = stack_.size(); i > 0 && culprit_prefix_.size() < 5; --i) {
    if (!ops_[stack_[i - 1].op].info) culprit_prefix_.push_back(stack_[i - 1].op);
  }
  std::reverse(culprit_prefix_.begin(), culprit_prefix_.end());
}

Outcome KeySearch::Run() {
  uint64_t definite_total = 0;
  for (const KeyOp& op : ops_) {
    if (!op.info) ++definite_total;
  }
  if (definite_total == 0) return Outcome::kLinearizable;
  uint64_t definite_remaining = definite_total;
  Build();

  int32_t state = kAbsent;
  int32_t top = -1;
  Phase phase = Phase::kReads;
  int32_t node = next_[kHead];  // cursor of kReads and kWrites
  int32_t cls = class_head_;    // cursor of kInfo
  int32_t frontier = 0;         // in kInfo: the first return point of the list
  bool pool_tried = false;      // in kInfo: a write of the dead-value pool was tried
  while (true) {
    // 1. The next candidate of this configuration, or none left.
    int32_t op = -1;
    bool failed = false;
    if (phase != Phase::kInfo) {
      if (node_is_return_[node]) {  // the end of the window of candidates
        if (phase == Phase::kReads) {
          phase = Phase::kWrites;
          node = next_[kHead];
        } else if (class_next_[class_head_] != class_head_) {
          phase = Phase::kInfo;
          cls = class_next_[class_head_];
          frontier = node;
          pool_tried = false;
        } else {
          failed = true;
        }
        if (!failed) continue;
      } else {
        op = node_op_[node];
        node = next_[node];
        if (IsRead(ops_[op]) != (phase == Phase::kReads)) continue;
      }
    } else if (cls == class_head_ || call_node_[class_members_[cls][0]] > frontier) {
      // Classes are listed in the order of their first invoke: the rest
      // have not been invoked yet.
      failed = true;
    } else {
      const int32_t c = cls;
      cls = class_next_[cls];
      op = class_members_[c][placed_[c]];
      if (call_node_[op] > frontier) continue;  // this one not invoked yet
      if (InPool(c)) {
        if (pool_tried) continue;  // interchangeable with the one tried
        pool_tried = true;
      }
    }

    // 2. Try it.
    if (!failed) {
      const KeyOp& o = ops_[op];
      int32_t new_state;
      if (!Step(o, state, &new_state)) {
        NoteFailed(op, state);
        continue;
      }
      // An info write that changes nothing observable may as well never
      // take effect.
      if (o.info && Canonical(new_state) == Canonical(state)) continue;
      Place(op);
      const int32_t new_top = o.info ? top : std::max(top, op);
      Encode(new_state, new_top);
      const uint32_t config = cache_.Visit(key_, info_key_);
      if (config != ConfigCache::kPruned) {
        if (cache_.size() > options_.max_states_per_key ||
            cache_.bytes() > options_.max_cache_bytes_per_key) {
          return Outcome::kUnknown;
        }
        stack_.push_back(Frame{op, state, top, config, phase, pool_tried});
        state = new_state;
        top = new_top;
        if (!o.info && --definite_remaining == 0) return Outcome::kLinearizable;
        phase = Phase::kReads;
        node = next_[kHead];
        continue;
      }
      Unplace(op);  // explored before, and it led nowhere
      if (phase != Phase::kReads) continue;
      // A forced read leads nowhere: neither does this configuration.
    } else {
      // Every candidate was tried: the first pending return cannot be met.
      NoteBlocked(node_op_[FirstReturn()], definite_total - definite_remaining);
    }

    // 3. Backtrack out of the current configuration, and out of every
    // configuration that had no alternative to the step that led here.
    while (true) {
      if (stack_.empty()) return Outcome::kNotLinearizable;
      const Frame f = stack_.back();
      stack_.pop_back();
      cache_.Finish(f.config);
      Unplace(f.op);
      if (!ops_[f.op].info) ++definite_remaining;
      state = f.state;
      top = f.top;
      if (f.phase == Phase::kReads) continue;
      phase = f.phase;
      if (phase == Phase::kWrites) {
        node = next_[call_node_[f.op]];
      } else {
        cls = class_next_[class_of_[f.op]];
        frontier = FirstReturn();
        pool_tried = f.pool_tried;
      }
      break;
    }
  }
}

// ---------------------------------------------------------------------------
// Per key: model values, quick checks, reduction, search, report.

struct KeyWork {
  std::vector<PairedOp> ops;
};

class KeyChecker {
 public:
  KeyChecker(const std::string& key, const std::vector<Event>& events, const CheckOptions& options)
      : key_(key), events_(events), options_(options) {
    value_names_.push_back("absent");
  }

  KeyVerdict Check(const std::vector<PairedOp>& paired);

 private:
  int32_t Intern(const std::optional<std::string>& v) {
    if (!v.has_value()) return kAbsent;
    auto [it, inserted] = value_ids_.emplace(*v, static_cast<int32_t>(value_names_.size()));
    if (inserted) value_names_.push_back(Quote(*v));
    return it->second;
  }
  KeyOp MakeOp(const PairedOp& p);
  std::string Describe(const KeyOp& op) const { return DescribeOp(events_, op.source); }
  std::string Header() const { return "key " + Quote(key_) + ": not linearizable. "; }

  const std::string& key_;
  const std::vector<Event>& events_;
  const CheckOptions& options_;
  std::map<std::string, int32_t> value_ids_;
  std::vector<std::string> value_names_;  // readable, by id
};

KeyOp KeyChecker::MakeOp(const PairedOp& p) {
  const Event& inv = events_[p.invoke];
  const Event* done = p.completion == kNoEvent ? nullptr : &events_[p.completion];
  KeyOp op;
  op.source = p;
  op.call = inv.time_ns;
  op.info = done == nullptr || done->type == EventType::kInfo;
  op.ret = op.info ? 0 : done->time_ns;
  switch (inv.f) {
    case Function::kPut:
      op.kind = OpKind::kPut;
      op.value = Intern(inv.value);
      break;
    case Function::kDelete:
      op.kind = OpKind::kDelete;
      break;
    case Function::kGet:
      op.kind = OpKind::kGet;
      op.value = Intern(done->value);  // only ok gets reach here
      break;
    case Function::kCas:
      op.kind = OpKind::kCas;
      op.expected = Intern(inv.cas_expected);
      op.new_value = Intern(inv.cas_new);
      op.swapped = !op.info && done->cas_ok;
      break;
  }
  return op;
}

KeyVerdict KeyChecker::Check(const std::vector<PairedOp>& paired) {
  std::vector<KeyOp> ops;
  ops.reserve(paired.size());
  for (const PairedOp& p : paired) ops.push_back(MakeOp(p));

  // Quick check: an observation of a value nothing could have written.
  std::vector<bool> written(value_names_.size(), false);
  written[kAbsent] = true;  // the initial state
  for (const KeyOp& op : ops) {
    if (auto w = op.Written()) written[*w] = true;
  }
  for (const KeyOp& op : ops) {
    if (op.info) continue;
    if (op.kind == OpKind::kGet && !written[op.value]) {
      return {Outcome::kNotLinearizable,
              Header() + Describe(op) + " read a value that no operation on this key wrote.", 0};
    }
    if (op.kind == OpKind::kCas && op.swapped && !written[op.expected]) {
      return {Outcome::kNotLinearizable,
              Header() + Describe(op) + " swapped against " + value_names_[op.expected] +
                  ", a value that no operation on this key wrote.",
              0};
    }
  }

  // Reduction: leave out an info write whose value nobody observes. If a
  // linearization places such a write W (value X), dropping W only changes
  // the state from X back to the previous value until the next write; in
  // that stretch no get read X and no cas expected X (X is unobserved), an
  // info cas that did not swap can be dropped as well, and a put or delete
  // ends the stretch. Only a definite failed cas could tell the difference
  // (it saw "not expected", and the previous value might be the expected
  // one), so the reduction is skipped when such a cas could follow W. It
  // keeps violation searches from doubling per unobserved timed-out write.
  std::vector<bool> observed(value_names_.size(), false);
  for (const KeyOp& op : ops) {
    if (op.kind == OpKind::kGet) observed[op.value] = true;  // only ok gets are here
    if (op.kind == OpKind::kCas) observed[op.expected] = true;
  }
  int64_t last_failed_cas_return = std::numeric_limits<int64_t>::min();
  for (const KeyOp& op : ops) {
    if (op.kind == OpKind::kCas && !op.info && !op.swapped) {
      last_failed_cas_return = std::max(last_failed_cas_return, op.ret);
    }
  }
  std::vector<KeyOp> kept;
  kept.reserve(ops.size());
  for (KeyOp& op : ops) {
    auto w = op.Written();
    const bool droppable = op.info && w.has_value() && !observed[*w] &&
                           last_failed_cas_return < op.call;
    if (!droppable) kept.push_back(std::move(op));
  }

  // Values nobody observes are indistinguishable: a get never returns them
  // and a cas never expects them, so a register holding one behaves exactly
  // like a register holding another. The values of the info writes that
  // remain are merged into one, which makes such writes interchangeable for
  // the search's symmetry pruning. (Definite writes keep their own values,
  // for readable reports.)
  int32_t unobserved = -1;
  for (KeyOp& op : kept) {
    if (!op.info) continue;
    int32_t* written = op.kind == OpKind::kPut ? &op.value
                       : op.kind == OpKind::kCas ? &op.new_value
                                                 : nullptr;
    if (written == nullptr || *written == kAbsent || observed[*written]) continue;
    if (unobserved < 0) {
      unobserved = static_cast<int32_t>(value_names_.size());
      value_names_.push_back("a value written by a timed-out operation and never read");
    }
    *written = unobserved;
  }

  // Operations numbered by invoke time (ties in history order) keep the
  // cache's sets close to prefixes.
  std::stable_sort(kept.begin(), kept.end(),
                   [](const KeyOp& a, const KeyOp& b) { return a.call < b.call; });

  KeySearch search(std::move(kept), options_);
  const Outcome outcome = search.Run();
  KeyVerdict verdict;
  verdict.outcome = outcome;
  verdict.states = search.states();
  if (outcome == Outcome::kUnknown) {
    verdict.message = "key " + Quote(key_) + ": search budget exhausted after " +
                      std::to_string(search.states()) + " states (" +
                      std::to_string(search.cache_bytes() >> 20) + " MiB of cache) over " +
                      std::to_string(search.ops().size()) +
                      " operations; no verdict. Raise --max-states, or record fewer "
                      "concurrent or timed-out operations per key.";
  } else if (outcome == Outcome::kNotLinearizable) {
    const std::vector<KeyOp>& all = search.ops();
    const KeyOp& culprit = all[search.culprit()];
    std::string m = Header() + "No order of the operations respects both real time and a " +
                    "register's rules; this operation could not be placed: " + Describe(culprit) +
                    ".";
    std::vector<int32_t> states = search.FailedStates(search.culprit());
    if (!states.empty()) {
      m += culprit.kind == OpKind::kGet ? " At the points where it could take effect the key held: "
                                        : " At the points where it could take effect the key held "
                                          "(and the cas result contradicts): ";
      for (size_t i = 0; i < states.size(); ++i) {
        if (i > 0) m += ", ";
        m += value_names_[states[i]];
      }
      m += ".";
    }
    uint64_t definite = 0;
    for (const KeyOp& op : all) definite += op.info ? 0 : 1;
    m += " The longest consistent order found placed " + std::to_string(search.culprit_depth()) +
         " of the " + std::to_string(definite) + " completed operations on this key";
    if (!search.culprit_prefix().empty()) {
      m += "; it ends with: ";
      const auto& prefix = search.culprit_prefix();
      for (size_t i = 0; i < prefix.size(); ++i) {
        if (i > 0) m += "; then ";
        m += Describe(all[prefix[i]]);
      }
    }
    m += ".";
    verdict.message = std::move(m);
  }
  return verdict;
}

}  // namespace

std::string OutcomeName(CheckResult::Outcome outcome) {
  switch (outcome) {
    case Outcome::kLinearizable: return "linearizable";
    case Outcome::kNotLinearizable: return "not linearizable";
    case Outcome::kUnknown: return "unknown";
    case Outcome::kInvalidHistory: return "invalid history";
  }
  return "?";
}

CheckResult CheckHistory(const std::vector<Event>& events, const CheckOptions& options) {
  CheckResult result;
  std::string bad_key;
  absl::StatusOr<std::vector<PairedOp>> paired = PairEvents(events, &bad_key);
  if (!paired.ok()) {
    result.outcome = Outcome::kInvalidHistory;
    result.key = bad_key;
    result.message = std::string(paired.status().message());
    return result;
  }

  // Split by key (P-compositionality), keeping only what constrains the
  // register: no fail ops, no serializable or timed-out gets.
  std::map<std::string, std::vector<PairedOp>> by_key;
  for (const PairedOp& p : *paired) {
    const Event& inv = events[p.invoke];
    const Event* done = p.completion == kNoEvent ? nullptr : &events[p.completion];
    const bool info = done == nullptr || done->type == EventType::kInfo;
    if (done != nullptr && done->type == EventType::kFail) continue;
    if (inv.f == Function::kGet && (info || inv.consistency == Consistency::kSerializable)) {
      continue;
    }
    by_key[inv.key].push_back(p);
    if (info) {
      ++result.info_operations;
    } else {
      ++result.operations;
    }
  }
  result.keys = by_key.size();

  // Keys in sorted order, so the reported key is deterministic. A definite
  // violation on any key outranks a budget exhausted on another.
  std::optional<CheckResult> unknown;
  for (const auto& [key, ops] : by_key) {
    KeyChecker checker(key, events, options);
    KeyVerdict verdict = checker.Check(ops);
    result.states += verdict.states;
    if (verdict.outcome == Outcome::kNotLinearizable) {
      result.outcome = Outcome::kNotLinearizable;
      result.key = key;
      result.message = std::move(verdict.message);
      return result;
    }
    if (verdict.outcome == Outcome::kUnknown && !unknown.has_value()) {
      unknown = CheckResult{};
      unknown->key = key;
      unknown->message = std::move(verdict.message);
    }
  }
  if (unknown.has_value()) {
    result.outcome = Outcome::kUnknown;
    result.key = unknown->key;
    result.message = unknown->message;
  }
  return result;
}

}  // namespace quorumkv::lincheck
