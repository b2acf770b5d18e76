#include "tests/fault/nemesis.h"

#include <algorithm>
#include <set>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "grpcpp/grpcpp.h"

namespace quorumkv::fault {

namespace v1 = quorumkv::v1;

std::string FaultKindName(FaultKind kind) {
  switch (kind) {
    case FaultKind::kKill:
      return "kill";
    case FaultKind::kPause:
      return "pause";
    case FaultKind::kPartition:
      return "partition";
    case FaultKind::kMembership:
      return "membership";
    case FaultKind::kClockSkew:
      return "clock-skew";
    case FaultKind::kDiskFull:
      return "disk-full";
    case FaultKind::kClockStep:
      return "clock-step";
  }
  return "?";
}

absl::StatusOr<std::vector<FaultKind>> ParseNemesis(const std::string& spec) {
  // Clock steps are left out of the mix: libfaketime gives a node either a
  // rate (clock-skew) or a steppable offset, not both.
  const std::vector<FaultKind> all = {FaultKind::kKill,       FaultKind::kPause,     FaultKind::kPartition,
                                      FaultKind::kMembership, FaultKind::kClockSkew, FaultKind::kDiskFull};
  if (spec == "mixed") return all;
  if (spec == "none") return std::vector<FaultKind>{};
  std::vector<FaultKind> out;
  std::vector<FaultKind> known = all;
  known.push_back(FaultKind::kClockStep);
  for (absl::string_view part : absl::StrSplit(spec, ',', absl::SkipEmpty())) {
    bool found = false;
    for (FaultKind k : known) {
      if (FaultKindName(k) == part) {
        if (std::find(out.begin(), out.end(), k) == out.end()) out.push_back(k);
        found = true;
      }
    }
    if (!found) {
      return absl::InvalidArgumentError(absl::StrCat(
          "unknown nemesis \"", std::string(part),
          "\": use kill, pause, partition, membership, clock-skew, disk-full, clock-step (comma-separated), mixed or none"));
    }
  }
  if (out.empty()) return absl::InvalidArgumentError("--nemesis is empty");
  return out;
}

namespace {

std::string Ids(const std::vector<uint64_t>& ids) { return "[" + absl::StrJoin(ids, ",") + "]"; }

std::string Links(const std::vector<std::pair<uint64_t, uint64_t>>& links) {
  std::vector<std::string> parts;
  for (const auto& [a, b] : links) parts.push_back(absl::StrCat(a, "->", b));
  return absl::StrJoin(parts, " ");
}

std::string LeaderText(std::optional<uint64_t> leader) {
  return leader ? absl::StrCat("leader was node ", *leader) : "no leader was known";
}

std::string GrpcError(const grpc::Status& s) {
  return absl::StrCat("code ", static_cast<int>(s.error_code()), ": ", s.error_message());
}

template <typename Response, typename Call>
grpc::Status CallCluster(const std::shared_ptr<Endpoint>& ep, absl::Duration timeout, Call call, Response* resp) {
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + absl::ToChronoNanoseconds(timeout));
  return call(ep->cluster.get(), &ctx, resp);
}

}  // namespace

Nemesis::Nemesis(FaultCluster* cluster, HistoryRecorder* history, const NemesisOptions& options,
                 std::ostream* log)
    : cluster_(cluster),
      history_(history),
      options_(options),
      log_(log),
      rng_(options.seed),
      start_ns_(HistoryRecorder::Now()) {}

void Nemesis::Log(const std::string& text) {
  const int64_t now = HistoryRecorder::Now();
  std::lock_guard<std::mutex> lock(mu_);
  *log_ << absl::StrFormat("%9.3fs  time=%d  %s\n", static_cast<double>(now - start_ns_) / 1e9, now, text);
  log_->flush();
}

void Nemesis::Count(const std::string& label) {
  std::lock_guard<std::mutex> lock(mu_);
  ++injected_[label];
}

void Nemesis::Problem(const std::string& text) {
  Log("FAILURE: " + text);
  std::lock_guard<std::mutex> lock(mu_);
  problems_.push_back(text);
}

std::map<std::string, int> Nemesis::injected() const {
  std::lock_guard<std::mutex> lock(mu_);
  return injected_;
}

int Nemesis::total_injected() const {
  int n = 0;
  for (const auto& [label, count] : injected()) n += count;
  return n;
}

std::vector<std::string> Nemesis::problems() const {
  std::lock_guard<std::mutex> lock(mu_);
  return problems_;
}

std::map<uint64_t, int> Nemesis::expected_fatal_lines() const {
  std::lock_guard<std::mutex> lock(mu_);
  return expected_fatal_;
}

std::vector<std::string> Nemesis::probe_keys() const {
  std::lock_guard<std::mutex> lock(mu_);
  return probe_keys_;
}

void Nemesis::Sleep(absl::Duration d) { absl::SleepFor(d); }

absl::Duration Nemesis::Uniform(absl::Duration lo, absl::Duration hi) {
  if (hi <= lo) return lo;
  const int64_t a = absl::ToInt64Milliseconds(lo);
  const int64_t b = absl::ToInt64Milliseconds(hi);
  return absl::Milliseconds(std::uniform_int_distribution<int64_t>(a, b)(rng_));
}

std::vector<uint64_t> Nemesis::Shuffled(std::vector<uint64_t> v) {
  std::shuffle(v.begin(), v.end(), rng_);
  return v;
}

void Nemesis::Run(absl::Time until) {
  if (options_.kinds.empty()) {
    Log("no nemesis: the run goes without faults");
    absl::SleepFor(until - absl::Now());
    return;
  }
  std::vector<std::string> names;
  for (FaultKind k : options_.kinds) names.push_back(FaultKindName(k));
  Log("nemesis " + absl::StrJoin(names, ",") + " starts");
  while (absl::Now() < until) {
    Sleep(Uniform(options_.quiet_min, options_.quiet_max));
    if (absl::Now() >= until) break;
    Inject(Pick(options_.kinds));
    Settle();
  }
  Log("nemesis stops");
}

void Nemesis::Inject(FaultKind kind) {
  switch (kind) {
    case FaultKind::kKill:
      Kill();
      break;
    case FaultKind::kPause:
      Pause();
      break;
    case FaultKind::kPartition:
      Partition();
      break;
    case FaultKind::kMembership:
      Membership();
      break;
    case FaultKind::kClockSkew:
      ClockSkew();
      break;
    case FaultKind::kDiskFull:
      DiskFull();
      break;
    case FaultKind::kClockStep:
      ClockStep();
      break;
  }
}

void Nemesis::Settle() {
  const absl::Time start = absl::Now();
  std::optional<uint64_t> leader = cluster_->WaitForLeader(options_.settle_timeout);
  if (leader) {
    Log(absl::StrCat("settled: every running member follows node ", *leader, " after ",
                     absl::FormatDuration(absl::Trunc(absl::Now() - start, absl::Milliseconds(1)))));
  } else {
    Log(absl::StrCat("not settled within ", absl::FormatDuration(options_.settle_timeout),
                     ": no leader every running member agrees on"));
  }
}

// ---------------------------------------------------------------------------
// kill -9

void Nemesis::Kill() {
  const std::vector<uint64_t> members = cluster_->RunningMembers();
  if (members.empty()) return;
  const std::optional<uint64_t> leader = cluster_->FindLeader();
  const int d = Percent();
  std::vector<uint64_t> targets;
  std::string label;
  if (d < 35 && leader) {
    targets = {*leader};
    label = "kill leader";
  } else if (d < 70) {
    targets = {Pick(members)};
    label = "kill random node";
  } else if (d < 85) {
    targets = Shuffled(members);
    targets.resize(members.size() / 2 + 1);
    label = "kill majority";
  } else {
    targets = members;
    label = "kill all";
  }
  std::sort(targets.begin(), targets.end());
  Count(label);
  Log(absl::StrCat(label, ": kill -9 nodes ", Ids(targets), " (", LeaderText(leader), ")"));
  for (uint64_t id : targets) {
    cluster_->AnnotateLog(id, "kill -9 by the nemesis");
    if (absl::Status s = cluster_->Kill(id); !s.ok()) Problem("kill: " + std::string(s.message()));
  }
  Sleep(Uniform(absl::Milliseconds(300), options_.fault_max));
  for (uint64_t id : targets) {
    if (absl::Status s = cluster_->Restart(id); !s.ok()) Problem("restart: " + std::string(s.message()));
  }
  Log(absl::StrCat("restarted nodes ", Ids(targets)));
}

// ---------------------------------------------------------------------------
// SIGSTOP / SIGCONT

void Nemesis::Pause() {
  const std::vector<uint64_t> members = cluster_->RunningMembers();
  if (members.empty()) return;
  const std::optional<uint64_t> leader = cluster_->FindLeader();
  const int d = Percent();
  std::vector<uint64_t> targets;
  std::string label;
  if (d < 40 && leader) {
    targets = {*leader};
    label = "pause leader";
  } else if (d < 80) {
    targets = {Pick(members)};
    label = "pause random node";
  } else {
    targets = Shuffled(members);
    targets.resize(members.size() / 2 + 1);
    label = "pause majority";
  }
  std::sort(targets.begin(), targets.end());
  // Always longer than the shortest election timeout (election ticks x
  // tick), often much longer.
  const absl::Duration hold = Uniform(absl::Milliseconds(200), std::max(options_.fault_max, absl::Seconds(1)));
  Count(label);
  Log(absl::StrCat(label, ": SIGSTOP nodes ", Ids(targets), " for ", absl::FormatDuration(hold), " (",
                   LeaderText(leader), ")"));
  for (uint64_t id : targets) {
    if (absl::Status s = cluster_->Pause(id); !s.ok()) Problem("pause: " + std::string(s.message()));
  }
  Sleep(hold / 2);
  LogViews();
  Sleep(hold - hold / 2);
  for (uint64_t id : targets) {
    if (absl::Status s = cluster_->Resume(id); !s.ok()) Problem("resume: " + std::string(s.message()));
  }
  Log(absl::StrCat("SIGCONT nodes ", Ids(targets)));
}

// ---------------------------------------------------------------------------
// Partitions

// What each node believes, half-way through a fault: evidence that the
// fault bit (a new leader on the majority side, an old one stepping down).
void Nemesis::LogViews() {
  std::vector<std::string> views;
  for (uint64_t id : cluster_->Members()) {
    auto st = cluster_->Status(id, absl::Milliseconds(300));
    views.push_back(st.ok() ? absl::StrCat(id, ":", st->role(), "/t", st->term(), "/L", st->leader_id())
                            : absl::StrCat(id, ":?"));
  }
  Log("during the fault (node:role/term/leader): " + absl::StrJoin(views, " "));
}

void Nemesis::IsolateLeader(const std::string& label, std::optional<uint64_t> leader) {
  const std::vector<uint64_t> members = cluster_->Members();
  const uint64_t isolated = leader ? *leader : Pick(members);
  LinkTable& links = cluster_->links();
  for (uint64_t other : members) {
    if (other == isolated) continue;
    links.Block(isolated, other);
    links.Block(other, isolated);
  }
  const absl::Duration hold = Uniform(options_.fault_min, options_.fault_max);
  Count(label);
  std::vector<uint64_t> others;
  for (uint64_t id : members) {
    if (id != isolated) others.push_back(id);
  }
  Log(absl::StrCat(label, ": node ", isolated, " cut off from ", Ids(others), " for ", absl::FormatDuration(hold),
                   " (", LeaderText(leader), "); blocked ", Links(links.BlockedLinks())));
  Sleep(hold / 2);
  LogViews();
  Sleep(hold - hold / 2);
  links.HealAll();
  Log("healed all links");
}

void Nemesis::Partition() {
  const std::vector<uint64_t> members = cluster_->Members();
  if (members.size() < 2) return;
  const std::optional<uint64_t> leader = cluster_->FindLeader();
  LinkTable& links = cluster_->links();
  auto cut = [&links](const std::vector<uint64_t>& a, const std::vector<uint64_t>& b) {
    for (uint64_t x : a) {
      for (uint64_t y : b) {
        links.Block(x, y);
        links.Block(y, x);
      }
    }
  };
  // The shapes take turns (from a random first one), so even a short run
  // sees each of them.
  if (next_partition_ < 0) next_partition_ = std::uniform_int_distribution<int>(0, 3)(rng_);
  const int variant = next_partition_++ % 4;
  std::string label;
  std::string shape;
  if (variant == 1) {
    IsolateLeader("partition isolated leader", leader);
    return;
  }
  if (variant == 0) {
    std::vector<uint64_t> s = Shuffled(members);
    std::vector<uint64_t> a(s.begin(), s.begin() + static_cast<long>(s.size() / 2));
    std::vector<uint64_t> b(s.begin() + static_cast<long>(s.size() / 2), s.end());
    std::sort(a.begin(), a.end());
    std::sort(b.begin(), b.end());
    cut(a, b);
    label = "partition halves";
    shape = Ids(a) + " | " + Ids(b);
  } else if (variant == 2) {
    const int d = Percent();
    if (d < 40 || !leader) {
      std::vector<uint64_t> s = Shuffled(members);
      links.Block(s[0], s[1]);
      label = "partition one-way link";
      shape = absl::StrCat(s[0], " -/-> ", s[1]);
    } else if (d < 70) {
      for (uint64_t other : members) {
        if (other != *leader) links.Block(*leader, other);
      }
      label = "partition one-way leader outbound";
      shape = absl::StrCat("leader ", *leader, " cannot send");
    } else {
      for (uint64_t other : members) {
        if (other != *leader) links.Block(other, *leader);
      }
      label = "partition one-way leader inbound";
      shape = absl::StrCat("leader ", *leader, " cannot hear");
    }
  } else {
    if (members.size() < 3) {
      IsolateLeader("partition isolated leader", leader);
      return;
    }
    std::vector<uint64_t> s = Shuffled(members);
    const uint64_t bridge = s[0];
    const size_t half = (s.size() - 1) / 2;
    std::vector<uint64_t> a(s.begin() + 1, s.begin() + 1 + static_cast<long>(half));
    std::vector<uint64_t> b(s.begin() + 1 + static_cast<long>(half), s.end());
    std::sort(a.begin(), a.end());
    std::sort(b.begin(), b.end());
    cut(a, b);
    label = "partition bridge";
    shape = absl::StrCat(Ids(a), " <- ", bridge, " -> ", Ids(b));
  }
  const absl::Duration hold = Uniform(options_.fault_min, options_.fault_max);
  Count(label);
  Log(absl::StrCat(label, ": ", shape, " for ", absl::FormatDuration(hold), " (", LeaderText(leader),
                   "); blocked ", Links(links.BlockedLinks())));
  Sleep(hold / 2);
  LogViews();
  Sleep(hold - hold / 2);
  links.HealAll();
  Log("healed all links");
}

// ---------------------------------------------------------------------------
// Membership changes and leadership transfers

std::optional<std::vector<uint64_t>> Nemesis::ConfiguredMembers(std::optional<uint64_t> exclude) {
  std::vector<uint64_t> order;
  if (std::optional<uint64_t> leader = cluster_->FindLeader(); leader && leader != exclude) order.push_back(*leader);
  for (uint64_t id : cluster_->RunningMembers()) {
    if (id != exclude) order.push_back(id);
  }
  for (uint64_t id : order) {
    auto st = cluster_->Status(id, absl::Milliseconds(500));
    if (!st.ok()) continue;
    std::vector<uint64_t> ids;
    for (const v1::Member& m : st->members()) ids.push_back(m.id());
    std::sort(ids.begin(), ids.end());
    return ids;
  }
  return std::nullopt;
}

void Nemesis::Reconcile() {
  if (!cluster_->FindLeader()) return;
  std::optional<std::vector<uint64_t>> conf = ConfiguredMembers(std::nullopt);
  if (!conf) return;
  const std::set<uint64_t> configured(conf->begin(), conf->end());
  const std::vector<uint64_t> members = cluster_->Members();
  for (uint64_t id : members) {
    if (configured.contains(id)) continue;
    Log(absl::StrCat("node ", id, " is no longer in the configuration ", Ids(*conf), "; stopping it"));
    cluster_->MarkRemoved(id);
    absl::StatusOr<int> code = cluster_->Terminate(id, absl::Seconds(10));
    if (!code.ok()) Problem(std::string(code.status().message()));
  }
  for (uint64_t id : configured) {
    if (std::find(members.begin(), members.end(), id) != members.end()) continue;
    if (cluster_->endpoint(id) == nullptr || cluster_->Removed(id)) continue;
    Log(absl::StrCat("node ", id, " is in the configuration after all; starting it"));
    if (absl::Status s = cluster_->StartJoiner(id); !s.ok()) Problem(std::string(s.message()));
  }
}

void Nemesis::Membership() {
  Reconcile();
  const size_t n = cluster_->Members().size();
  const bool can_add = static_cast<int>(n) < options_.max_voters;
  const bool can_remove = static_cast<int>(n) > options_.min_voters;
  const int d = Percent();
  if (can_add && can_remove) {
    if (d < 35) {
      AddNode();
    } else if (d < 70) {
      RemoveNode();
    } else {
      Transfer(std::nullopt);
    }
  } else if (can_add) {
    d < 60 ? AddNode() : Transfer(std::nullopt);
  } else if (can_remove) {
    d < 60 ? RemoveNode() : Transfer(std::nullopt);
  } else {
    Transfer(std::nullopt);
  }
}

void Nemesis::AddNode() {
  const std::optional<uint64_t> leader = cluster_->FindLeader();
  if (!leader) {
    Log("membership add skipped: no leader");
    return;
  }
  std::optional<double> rate;
  if (options_.clock_rate != 0) {
    bool skewed_member = false;
    for (uint64_t m : cluster_->Members()) skewed_member |= cluster_->ClockRate(m).has_value();
    if (!skewed_member) rate = options_.clock_rate;
  }
  absl::StatusOr<uint64_t> id = cluster_->PrepareJoiner(rate);
  if (!id.ok()) {
    Problem("preparing a new node: " + std::string(id.status().message()));
    return;
  }
  Count("membership add");
  v1::AddMemberRequest req;
  req.set_id(*id);
  req.set_peer_address(cluster_->PeerAddress(*id));
  req.set_client_address(cluster_->ClientAddress(*id));
  req.set_as_voter(false);
  v1::AddMemberResponse resp;
  const grpc::Status s = CallCluster(
      cluster_->endpoint(*leader), absl::Seconds(5),
      [&req](v1::Cluster::Stub* stub, grpc::ClientContext* ctx, v1::AddMemberResponse* r) {
        return stub->AddMember(ctx, req, r);
      },
      &resp);
  Log(absl::StrCat("membership add: AddMember(", *id, ", learner) on leader ", *leader, ": ",
                   s.ok() ? "ok" : GrpcError(s)));
  bool present = s.ok();
  const absl::Time end = absl::Now() + absl::Seconds(5);
  while (!present && absl::Now() < end) {
    std::optional<std::vector<uint64_t>> conf = ConfiguredMembers(std::nullopt);
    present = conf && std::find(conf->begin(), conf->end(), *id) != conf->end();
    if (!present) absl::SleepFor(absl::Milliseconds(200));
  }
  if (!present) {
    Log(absl::StrCat("node ", *id, " is not in the configuration; not starting it"));
    return;
  }
  if (absl::Status st = cluster_->StartJoiner(*id); !st.ok()) {
    Problem("starting node " + std::to_string(*id) + ": " + std::string(st.message()));
    return;
  }
  Log(absl::StrCat("started node ", *id, " with --join",
                   rate ? absl::StrFormat(" and clock rate x%.4f (the skewed node was removed)", *rate) : ""));
  // Learners are promoted automatically once caught up.
  const absl::Time start = absl::Now();
  while (absl::Now() < start + absl::Seconds(15)) {
    std::optional<uint64_t> l = cluster_->FindLeader();
    if (l) {
      auto st = cluster_->Status(*l, absl::Milliseconds(500));
      if (st.ok()) {
        for (const v1::Member& m : st->members()) {
          if (m.id() == *id && m.role() == v1::VOTER) {
            Log(absl::StrCat("node ", *id, " promoted to voter after ",
                             absl::FormatDuration(absl::Trunc(absl::Now() - start, absl::Milliseconds(1)))));
            return;
          }
        }
      }
    }
    absl::SleepFor(absl::Milliseconds(100));
  }
  Log(absl::StrCat("node ", *id, " still not a voter 15 s after it started"));
}

void Nemesis::RemoveNode() {
  const std::optional<uint64_t> leader = cluster_->FindLeader();
  if (!leader) {
    Log("membership remove skipped: no leader");
    return;
  }
  std::vector<uint64_t> others;
  for (uint64_t id : cluster_->Members()) {
    if (id != *leader) others.push_back(id);
  }
  const uint64_t victim = (Percent() < 30 || others.empty()) ? *leader : Pick(others);
  const std::string label = victim == *leader ? "membership remove leader" : "membership remove follower";
  Count(label);
  v1::RemoveMemberRequest req;
  req.set_id(victim);
  v1::RemoveMemberResponse resp;
  const grpc::Status s = CallCluster(
      cluster_->endpoint(*leader), absl::Seconds(5),
      [&req](v1::Cluster::Stub* stub, grpc::ClientContext* ctx, v1::RemoveMemberResponse* r) {
        return stub->RemoveMember(ctx, req, r);
      },
      &resp);
  Log(absl::StrCat(label, ": RemoveMember(", victim, ") on leader ", *leader, ": ", s.ok() ? "ok" : GrpcError(s)));
  bool removed = s.ok();
  const absl::Time end = absl::Now() + absl::Seconds(5);
  while (!removed && absl::Now() < end) {
    std::optional<std::vector<uint64_t>> conf = ConfiguredMembers(victim);
    removed = conf && std::find(conf->begin(), conf->end(), victim) == conf->end();
    if (!removed) absl::SleepFor(absl::Milliseconds(200));
  }
  if (!removed) {
    Log(absl::StrCat("node ", victim, " is still in the configuration; it stays"));
    return;
  }
  cluster_->MarkRemoved(victim);
  // A removed node is shut down the clean way: it must exit with status 0.
  absl::StatusOr<int> code = cluster_->Terminate(victim, absl::Seconds(10));
  if (!code.ok()) {
    Problem(std::string(code.status().message()));
  } else if (*code != 0) {
    Problem(absl::StrCat("removed node ", victim, " exited with status ", *code, " after SIGTERM (expected 0)"));
  } else {
    Log(absl::StrCat("removed node ", victim, " shut down cleanly"));
  }
}

void Nemesis::Transfer(std::optional<uint64_t> target) {
  const std::optional<uint64_t> leader = cluster_->FindLeader();
  if (!leader) {
    Log("leadership transfer skipped: no leader");
    return;
  }
  if (!target) {
    std::vector<uint64_t> others;
    for (uint64_t id : cluster_->RunningMembers()) {
      if (id != *leader) others.push_back(id);
    }
    if (others.empty()) return;
    target = Pick(others);
  }
  if (*target == *leader) {
    Log(absl::StrCat("node ", *target, " is already the leader"));
    return;
  }
  Count("leadership transfer");
  v1::TransferLeadershipRequest req;
  req.set_target_id(*target);
  v1::TransferLeadershipResponse resp;
  const grpc::Status s = CallCluster(
      cluster_->endpoint(*leader), absl::Seconds(3),
      [&req](v1::Cluster::Stub* stub, grpc::ClientContext* ctx, v1::TransferLeadershipResponse* r) {
        return stub->TransferLeadership(ctx, req, r);
      },
      &resp);
  Log(absl::StrCat("leadership transfer ", *leader, " -> ", *target, ": ",
                   s.ok() ? absl::StrCat("ok, leader now ", resp.leader_id()) : GrpcError(s)));
}

// ---------------------------------------------------------------------------
// Clock-rate skew

void Nemesis::ClockSkew() {
  std::optional<uint64_t> skewed;
  for (uint64_t id : cluster_->RunningMembers()) {
    if (cluster_->ClockRate(id)) skewed = id;
  }
  if (!skewed) {
    IsolateLeader("clock-skew (no skewed member left): isolated leader", cluster_->FindLeader());
    return;
  }
  const double rate = *cluster_->ClockRate(*skewed);
  if (rate < 1.0) {
    // A slow clock: as leader it would hold its lease longest.
    Log(absl::StrFormat("clock-skew: moving the leadership to node %d (clock rate x%.3f)", *skewed, rate));
    Transfer(*skewed);
  } else {
    // A fast clock: as a follower it times out first when the leader is
    // cut off, and may win an election while the old leader's lease runs.
    std::vector<uint64_t> others;
    for (uint64_t id : cluster_->RunningMembers()) {
      if (id != *skewed) others.push_back(id);
    }
    if (!others.empty()) {
      const uint64_t target = Pick(others);
      Log(absl::StrFormat("clock-skew: moving the leadership to node %d; node %d (clock rate x%.3f) follows", target,
                          *skewed, rate));
      Transfer(target);
    }
  }
  // Lease reads served by the skewed leader for a while.
  Sleep(Uniform(absl::Milliseconds(500), absl::Milliseconds(1500)));
  const std::optional<uint64_t> leader = cluster_->FindLeader();
  if (Percent() < 50) {
    IsolateLeader(absl::StrFormat("clock-skew isolate leader (skewed node %d x%.3f)", *skewed, rate), leader);
    return;
  }
  if (!leader) {
    Log("clock-skew pause skipped: no leader");
    return;
  }
  const absl::Duration hold = Uniform(absl::Milliseconds(300), absl::Seconds(2));
  const std::string label = absl::StrFormat("clock-skew pause leader (skewed node %d x%.3f)", *skewed, rate);
  Count(label);
  Log(absl::StrCat(label, ": SIGSTOP leader ", *leader, " for ", absl::FormatDuration(hold)));
  if (absl::Status s = cluster_->Pause(*leader); !s.ok()) Problem("pause: " + std::string(s.message()));
  Sleep(hold);
  if (absl::Status s = cluster_->Resume(*leader); !s.ok()) Problem("resume: " + std::string(s.message()));
  Log(absl::StrCat("SIGCONT node ", *leader));
}

// ---------------------------------------------------------------------------
// Wall-clock steps

void Nemesis::ClockStep() {
  const std::vector<uint64_t> members = cluster_->RunningMembers();
  if (members.empty()) return;
  const std::optional<uint64_t> leader = cluster_->FindLeader();
  const uint64_t target = (Percent() < 70 && leader) ? *leader : Pick(members);
  const bool back = Percent() < 70;
  // A leader whose clock went back, cut off from the others: it cannot
  // learn of a newer term, so only its own clock ends its lease.
  const bool isolate = back && target == leader && members.size() >= 3 && Percent() < 50;
  // The isolated variant needs the step in effect for its whole window:
  // libfaketime re-reads its file once a second and absl::Now() consults
  // the kernel clock only every ~2 s (it extrapolates with the TSC in
  // between), so the node sees the step up to ~3 s after it is written.
  const absl::Duration step = absl::Trunc(
      isolate ? Uniform(absl::Seconds(7), absl::Seconds(9)) : Uniform(absl::Seconds(1), absl::Seconds(4)),
      absl::Milliseconds(100));
  const std::string label = absl::StrCat("clock-step ", back ? "back " : "forward ",
                                         target == leader ? "leader" : "node", isolate ? " + isolate it" : "");
  Count(label);
  std::string key;
  if (isolate) {
    // A key with a value every node has, to read back later.
    key = absl::StrCat("step-probe-", total_injected());
    Probe(target, lincheck::Function::kPut, key, lincheck::Consistency::kLinearizable);
  }
  if (absl::Status s = cluster_->SetClockOffset(target, back ? -step : step); !s.ok()) {
    Problem("clock step: " + std::string(s.message()));
    return;
  }
  cluster_->AnnotateLog(target, absl::StrCat("the nemesis steps this node's wall clock ", back ? "back" : "forward",
                                             " by ", absl::FormatDuration(step)));
  Log(absl::StrCat(label, ": the wall clock of node ", target, " steps ", back ? "back" : "forward", " by ",
                   absl::FormatDuration(step), " within 1 s (", LeaderText(leader), ")"));
  if (isolate) {
    // Wait until the step took effect, then cut the node off while its
    // clock stands still.
    Sleep(absl::Milliseconds(3500));
    LinkTable& links = cluster_->links();
    for (uint64_t other : cluster_->Members()) {
      if (other == target) continue;
      links.Block(target, other);
      links.Block(other, target);
    }
    Log(absl::StrCat("node ", target, " cut off: blocked ", Links(links.BlockedLinks())));
    // The others elect a leader and take a new value; then the cut-off
    // node is asked for the key with a lease read. Both are recorded: if
    // it answers with the old value, the checker sees a stale read.
    Sleep(absl::Milliseconds(600));
    std::vector<uint64_t> others;
    for (uint64_t id : cluster_->RunningMembers()) {
      if (id != target) others.push_back(id);
    }
    bool written = false;
    const absl::Time until = absl::Now() + absl::Milliseconds(800);
    while (!written && absl::Now() < until) {
      written = Probe(Pick(others), lincheck::Function::kPut, key, lincheck::Consistency::kLinearizable).type ==
                lincheck::EventType::kOk;
    }
    const OpOutcome read = Probe(target, lincheck::Function::kGet, key, lincheck::Consistency::kLease);
    Log(absl::StrCat("probe: new value ", written ? "acknowledged" : "not acknowledged", " by the majority; lease read on node ",
                     target, ": ", std::string(lincheck::EventTypeName(read.type)),
                     read.type == lincheck::EventType::kOk ? " -> " + read.value.value_or("(absent)")
                                                           : " (" + read.message + ")"));
    LogViews();
    Sleep(absl::Milliseconds(300));
    cluster_->links().HealAll();
    Log("healed all links");
    Sleep(absl::Seconds(1));
  } else {
    const absl::Duration hold = step + absl::Milliseconds(1500);
    Sleep(hold / 2);
    LogViews();
    Sleep(hold - hold / 2);
  }
  if (absl::Status s = cluster_->SetClockOffset(target, absl::ZeroDuration()); !s.ok()) {
    Problem("clock step: " + std::string(s.message()));
  }
  Log(absl::StrCat("the wall clock of node ", target, " returns to real time within 1 s"));
  // ... and absl::Now() follows within ~2 s more.
  Sleep(absl::Milliseconds(3500));
}

OpOutcome Nemesis::Probe(uint64_t node, lincheck::Function f, const std::string& key, lincheck::Consistency c) {
  const int64_t process = history_->NewProcess();
  OpRequest op;
  op.f = f;
  op.key = key;
  op.consistency = c;
  if (f == lincheck::Function::kPut) op.value = absl::StrCat("v-", process, "-1");
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (std::find(probe_keys_.begin(), probe_keys_.end(), key) == probe_keys_.end()) probe_keys_.push_back(key);
  }
  return RunOp(*history_, process, *cluster_->endpoint(node), op, absl::Milliseconds(500));
}

// ---------------------------------------------------------------------------
// A full disk

void Nemesis::DiskFull() {
  const std::vector<uint64_t> members = cluster_->RunningMembers();
  if (members.empty()) return;
  const std::optional<uint64_t> leader = cluster_->FindLeader();
  const uint64_t target = (Percent() < 40 && leader) ? *leader : Pick(members);
  const std::string label = target == leader ? "disk-full leader" : "disk-full follower";
  const uint64_t offset = cluster_->LogSize(target);
  cluster_->AllowExit(target, true);
  if (absl::Status s = cluster_->FillDisk(target); !s.ok()) {
    Problem(absl::StrCat("filling the disk of node ", target, ": ", s.message()));
    cluster_->AllowExit(target, false);
    return;
  }
  Count(label);
  Log(absl::StrCat(label, ": filled the disk of node ", target, " (", DiskMethodName(cluster_->disk_method()), ", ",
                   LeaderText(leader), ")"));
  cluster_->AnnotateLog(target, "the nemesis filled this node's disk");

  // The node must notice at its next write and refuse, loudly.
  // The log says so ("stopped serving: ...No space left on device"), and
  // so does the node to any request. With RLIMIT_FSIZE the log file is
  // over the limit too and the line cannot be written: the answer counts.
  const absl::Time start = absl::Now();
  std::optional<std::string> line;
  std::optional<std::string> answer;
  while (absl::Now() < start + absl::Seconds(10)) {
    line = cluster_->FindInLog(target, offset, "stopped serving");
    if (line || !cluster_->Running(target)) break;
    answer = cluster_->FailedReason(target);
    if (answer) break;
    absl::SleepFor(absl::Milliseconds(50));
  }
  const std::string after = absl::FormatDuration(absl::Trunc(absl::Now() - start, absl::Milliseconds(1)));
  if (line || answer) {
    Log(absl::StrCat("node ", target, " stopped serving after ", after, ": ", line ? *line : "answers " + *answer));
    std::lock_guard<std::mutex> lock(mu_);
    ++expected_fatal_[target];
  } else if (!cluster_->Running(target)) {
    Log(absl::StrCat("node ", target, " exited after ", after));
  } else {
    Problem(absl::StrCat("node ", target, " went on for 10 s on a full disk without noticing "
                         "(no \"stopped serving\" in its log, requests still served)"));
  }
  const bool refused = line.has_value() || answer.has_value();
  if (cluster_->Running(target)) {
    // A write sent straight to the node, recorded like any other: it must
    // be refused with an error that names the cause.
    const int64_t process = history_->NewProcess();
    OpRequest put;
    put.f = lincheck::Function::kPut;
    put.key = absl::StrCat("probe-", target, "-", offset);
    put.value = absl::StrCat("v-", process, "-1");
    {
      std::lock_guard<std::mutex> lock(mu_);
      probe_keys_.push_back(put.key);
    }
    const OpOutcome out = RunOp(*history_, process, *cluster_->endpoint(target), put, absl::Seconds(2));
    Log(absl::StrCat("probe put to node ", target, ": ", std::string(lincheck::EventTypeName(out.type)),
                     out.type == lincheck::EventType::kOk ? "" : absl::StrCat(" (code ", out.code, ": ", out.message, ")")));
    if (refused && out.type == lincheck::EventType::kOk) {
      Problem(absl::StrCat("node ", target, " acknowledged a write after it stopped serving on a full disk"));
    }
    if (refused && out.type != lincheck::EventType::kOk && out.message.find("No space") == std::string::npos &&
        out.message.find("too large") == std::string::npos) {
      Problem(absl::StrCat("node ", target, " refused a write on a full disk without naming the cause: ", out.message));
    }
  }
  // A node that stopped serving should sit idle: measure what it burns.
  const absl::Duration hold = Uniform(absl::Milliseconds(500), absl::Seconds(2));
  const std::optional<absl::Duration> cpu_before = cluster_->CpuTime(target);
  Sleep(hold);
  const std::optional<absl::Duration> cpu_after = cluster_->CpuTime(target);
  if (refused && cpu_before && cpu_after) {
    Log(absl::StrFormat("node %d used %.0f%% of a CPU while it stopped serving", target,
                        100.0 * absl::FDivDuration(*cpu_after - *cpu_before, hold)));
  }
  if (absl::Status s = cluster_->FreeDisk(target); !s.ok()) Problem("freeing the disk: " + std::string(s.message()));
  Log(absl::StrCat("space returned to node ", target));
  if (cluster_->Running(target)) {
    // A node that stopped serving stays stopped until restarted.
    absl::StatusOr<int> code = cluster_->Terminate(target, absl::Seconds(15));
    if (!code.ok()) {
      Problem(std::string(code.status().message()));
    } else if (*code != 0) {
      Problem(absl::StrCat("node ", target, " exited with status ", *code, " after SIGTERM (expected 0)"));
    } else {
      Log(absl::StrCat("node ", target, " shut down cleanly"));
    }
  }
  cluster_->AllowExit(target, false);
  if (absl::Status s = cluster_->Restart(target); !s.ok()) Problem("restart: " + std::string(s.message()));
  Log(absl::StrCat("restarted node ", target));
}

// ---------------------------------------------------------------------------

void Nemesis::HealAll() {
  cluster_->links().HealAll();
  for (uint64_t id : cluster_->AllIds()) {
    if (cluster_->Paused(id)) (void)cluster_->Resume(id);
    if (cluster_->DiskFull(id)) (void)cluster_->FreeDisk(id);
  }
  for (uint64_t id : cluster_->Members()) {
    if (!cluster_->Running(id)) {
      Log(absl::StrCat("restarting node ", id, " for the final checks"));
      if (absl::Status s = cluster_->Restart(id); !s.ok()) Problem("restart: " + std::string(s.message()));
    }
  }
  // The configuration is read from a leader: wait for one first.
  (void)cluster_->WaitForLeader(options_.settle_timeout);
  Reconcile();
  Log("healed: every link open, every member running");
}

}  // namespace quorumkv::fault
