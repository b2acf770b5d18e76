// Integration tests on real kvserver processes on 127.0.0.1 (DESIGN.md §6,
// layer 3). Each test starts its own cluster on free ports and stops it.
#include <atomic>
#include <set>
#include <thread>

#include <gtest/gtest.h>

#include "grpcpp/grpcpp.h"
#include "kv.grpc.pb.h"
#include "tests/integration/process_cluster.h"

namespace quorumkv::testing {
namespace {

using quorumkv::v1::Consistency;

constexpr absl::Duration kLeaderWait = absl::Seconds(10);

// Short timeouts keep the tests quick; snapshots come early so that a new
// node catches up through one.
ClusterOptions FastCluster(int nodes = 3) {
  ClusterOptions o;
  o.nodes = nodes;
  o.extra_flags = {"--tick-ms=10", "--heartbeat-ticks=2", "--election-ticks=30", "--lease-drift-ticks=6",
                   "--snapshot-min-entries=200",
                   "--snapshot-min-bytes=0", "--snapshot-trailing-entries=20"};
  return o;
}

// A stub straight to one node, without the client library's retries and
// redirects: what that node itself answers.
std::unique_ptr<quorumkv::v1::KV::Stub> NodeStub(ProcessCluster& c, uint64_t id) {
  return quorumkv::v1::KV::NewStub(
      grpc::CreateChannel(c.node(id).client_endpoint(), grpc::InsecureChannelCredentials()));
}

// One Put of "v" through `stub` (a gRPC client stub) with the given
// deadline; `ctx`, if given, keeps the trailers.
grpc::Status PutOnce(quorumkv::v1::KV::Stub& stub, const std::string& key, absl::Duration deadline,
                     grpc::ClientContext* ctx = nullptr) {
  grpc::ClientContext own;
  if (ctx == nullptr) ctx = &own;
  ctx->set_deadline(absl::ToChronoTime(absl::Now() + deadline));
  quorumkv::v1::PutRequest req;
  req.set_key(key);
  req.set_value("v");
  quorumkv::v1::PutResponse resp;
  return stub.Put(ctx, req, &resp);
}

// One Get through `stub` with a 2 s deadline; `ctx` keeps the trailers.
grpc::Status GetOnce(quorumkv::v1::KV::Stub& stub, const std::string& key, Consistency consistency,
                     grpc::ClientContext* ctx) {
  ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(2));
  quorumkv::v1::GetRequest req;
  req.set_key(key);
  req.set_consistency(consistency);
  quorumkv::v1::GetResponse resp;
  return stub.Get(ctx, req, &resp);
}

std::string Dump(ProcessCluster& c) {
  std::string out;
  for (const auto& [id, n] : c.nodes()) out += c.LogTail(id, 15);
  return out;
}

class IntegrationTest : public ::testing::Test {
 protected:
  void StartCluster(const ClusterOptions& o) {
    cluster_ = std::make_unique<ProcessCluster>(o);
    ASSERT_TRUE(cluster_->Start());
    leader_ = cluster_->WaitForLeader(kLeaderWait);
    ASSERT_TRUE(leader_.has_value()) << Dump(*cluster_);
  }
  std::vector<uint64_t> Followers() const {
    std::vector<uint64_t> ids;
    for (const auto& [id, n] : cluster_->nodes()) {
      if (id != *leader_) ids.push_back(id);
    }
    return ids;
  }
  std::unique_ptr<ProcessCluster> cluster_;
  std::optional<uint64_t> leader_;
};

TEST_F(IntegrationTest, ThreeNodesElectExactlyOneLeader) {
  StartCluster(FastCluster());
  std::set<uint64_t> leaders;
  int leader_roles = 0;
  for (const auto& [id, n] : cluster_->nodes()) {
    auto s = cluster_->Status(id);
    ASSERT_TRUE(s.ok()) << s.status();
    leaders.insert(s->leader_id());
    if (s->role() == "leader") ++leader_roles;
    EXPECT_EQ(s->members_size(), 3);
  }
  EXPECT_EQ(leaders.size(), 1u);
  EXPECT_EQ(leader_roles, 1);
}

// Writes through every node, reads through every node at every level.
void PutGetDeleteThroughEveryNode(ProcessCluster& cluster, uint64_t leader) {
  for (const auto& [id, n] : cluster.nodes()) {
    auto c = cluster.ClientFor(id);
    const std::string key = "key-from-" + std::to_string(id);
    ASSERT_TRUE(c->Put(key, "v" + std::to_string(id)).ok());
    for (const auto& [rid, rn] : cluster.nodes()) {
      auto got = cluster.ClientFor(rid)->Get(key, quorumkv::v1::LINEARIZABLE);
      ASSERT_TRUE(got.ok()) << got.status();
      ASSERT_TRUE(got->has_value());
      EXPECT_EQ(**got, "v" + std::to_string(id));
    }
    auto deleted = c->Delete(key);
    ASSERT_TRUE(deleted.ok()) << deleted.status();
    EXPECT_TRUE(*deleted);
    auto again = c->Delete(key);
    ASSERT_TRUE(again.ok()) << again.status();
    EXPECT_FALSE(*again) << "a second delete of " << key << " found it";
    auto gone = cluster.ClientFor(id)->Get(key, quorumkv::v1::LINEARIZABLE);
    ASSERT_TRUE(gone.ok());
    EXPECT_FALSE(gone->has_value());
  }
  // Lease and serializable reads answer too.
  ASSERT_TRUE(cluster.ClientFor(leader)->Put("k", "v").ok());
  auto lease = cluster.ClientFor(leader)->Get("k", quorumkv::v1::LEASE);
  ASSERT_TRUE(lease.ok()) << lease.status();
  EXPECT_EQ(lease->value_or(""), "v");
  ASSERT_TRUE(cluster.WaitForApplied(cluster.Status(leader)->commit_index(), absl::Seconds(5)));
  for (const auto& [id, n] : cluster.nodes()) {
    auto s = cluster.ClientFor(id)->Get("k", quorumkv::v1::SERIALIZABLE);
    ASSERT_TRUE(s.ok());
    EXPECT_EQ(s->value_or(""), "v");
  }
}

TEST_F(IntegrationTest, PutGetDeleteThroughEveryNode) {
  StartCluster(FastCluster());
  PutGetDeleteThroughEveryNode(*cluster_, *leader_);
}

// Without the key size cache every put and delete reads the key's old
// value instead: the answers must be the same.
TEST_F(IntegrationTest, PutGetDeleteWithTheKeySizeCacheOff) {
  ClusterOptions o = FastCluster();
  o.extra_flags.push_back("--key-size-cache-mb=0");
  StartCluster(o);
  PutGetDeleteThroughEveryNode(*cluster_, *leader_);
}

TEST_F(IntegrationTest, LinearizableReadOnFollowerSeesAcknowledgedWrite) {
  StartCluster(FastCluster());
  auto leader = cluster_->ClientFor(*leader_);
  for (int i = 0; i < 50; ++i) {
    const std::string value = "v" + std::to_string(i);
    ASSERT_TRUE(leader->Put("hot", value).ok());
    for (const auto& [id, n] : cluster_->nodes()) {
      if (id == *leader_) continue;
      auto got = cluster_->ClientFor(id)->Get("hot", quorumkv::v1::LINEARIZABLE);
      ASSERT_TRUE(got.ok()) << got.status();
      ASSERT_EQ(got->value_or("<absent>"), value) << "follower " << id << " served a stale linearizable read";
    }
  }
}

// A follower learns that a lone write committed from the leader's commit
// notice, which the leader may hold back a moment (--commit-notice-delay-us)
// but must send: heartbeats here are a second apart, so a notice that
// never went out would leave each write unseen on the followers far longer
// than the bound below. Both with the default hold and with none.
TEST_F(IntegrationTest, FollowersLearnOfALoneWriteWithoutWaitingForAHeartbeat) {
  for (const char* delay : {"--commit-notice-delay-us=1000", "--commit-notice-delay-us=0"}) {
    SCOPED_TRACE(delay);
    ClusterOptions o;
    o.extra_flags = {"--tick-ms=10", "--heartbeat-ticks=100", "--election-ticks=300", delay};
    StartCluster(o);
    for (int i = 0; i < 5; ++i) {
      const std::string value = "v" + std::to_string(i);
      ASSERT_TRUE(cluster_->ClientFor(*leader_)->Put("lone", value).ok());
      for (const auto& [id, n] : cluster_->nodes()) {
        if (id == *leader_) continue;
        const absl::Time give_up = absl::Now() + absl::Milliseconds(300);
        std::string seen;
        while (seen != value && absl::Now() < give_up) {
          auto got = cluster_->ClientFor(id)->Get("lone", quorumkv::v1::SERIALIZABLE);
          ASSERT_TRUE(got.ok()) << got.status();
          seen = got->value_or("<absent>");
          if (seen != value) absl::SleepFor(absl::Milliseconds(2));
        }
        EXPECT_EQ(seen, value) << "follower " << id << " had not applied the write 300 ms after it was acknowledged";
      }
    }
    cluster_.reset();
  }
}

TEST_F(IntegrationTest, KillLeaderUnderWritesLosesNoAcknowledgedWrite) {
  StartCluster(FastCluster());
  std::atomic<bool> stop{false};
  std::mutex mu;
  std::vector<std::string> acked;
  std::thread writer([&] {
    auto c = cluster_->Client(absl::Seconds(20));
    for (int i = 0; i < 100000 && !stop.load(); ++i) {
      const std::string key = "w" + std::to_string(i);
      if (c->Put(key, key).ok()) {
        std::lock_guard<std::mutex> lock(mu);
        acked.push_back(key);
      }
    }
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  const uint64_t old_leader = *leader_;
  cluster_->Kill(old_leader);
  const absl::Time killed = absl::Now();
  auto new_leader = cluster_->WaitForLeader(kLeaderWait);
  ASSERT_TRUE(new_leader.has_value()) << Dump(*cluster_);
  EXPECT_NE(*new_leader, old_leader);
  std::printf("new leader %llu elected %.0f ms after kill -9 of leader %llu\n",
              static_cast<unsigned long long>(*new_leader), absl::ToDoubleMilliseconds(absl::Now() - killed),
              static_cast<unsigned long long>(old_leader));
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  ASSERT_TRUE(cluster_->Restart(old_leader));
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  stop = true;
  writer.join();
  ASSERT_GT(acked.size(), 10u);
  // Every acknowledged write is on every node, the restarted one included.
  auto commit = cluster_->Status(*new_leader);
  ASSERT_TRUE(commit.ok());
  ASSERT_TRUE(cluster_->WaitForApplied(commit->commit_index(), absl::Seconds(15))) << Dump(*cluster_);
  for (const auto& [id, n] : cluster_->nodes()) {
    auto c = cluster_->ClientFor(id);
    for (const std::string& key : acked) {
      auto got = c->Get(key, quorumkv::v1::SERIALIZABLE);
      ASSERT_TRUE(got.ok()) << got.status();
      ASSERT_EQ(got->value_or("<lost>"), key) << "node " << id << " lost acknowledged write " << key;
    }
  }
}

TEST_F(IntegrationTest, NewNodeJoinsAsLearnerCatchesUpThroughSnapshotAndIsPromoted) {
  StartCluster(FastCluster());
  auto c = cluster_->Client();
  for (int i = 0; i < 1000; ++i) ASSERT_TRUE(c->Put("key" + std::to_string(i), "value" + std::to_string(i)).ok());
  ProcessNode& n4 = cluster_->PrepareNode();
  auto added = c->AddMember(n4.id, n4.peer_endpoint(), n4.client_endpoint(), /*as_voter=*/false);
  ASSERT_TRUE(added.ok()) << added.status();
  ASSERT_TRUE(cluster_->StartNode(n4.id));
  // Caught up, then auto-promoted to voter.
  bool voter = false;
  const absl::Time end = absl::Now() + absl::Seconds(20);
  while (absl::Now() < end && !voter) {
    auto members = c->ListMembers();
    if (members.ok()) {
      for (const auto& m : *members) {
        if (m.id() == n4.id && m.role() == quorumkv::v1::VOTER) voter = true;
      }
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ASSERT_TRUE(voter) << Dump(*cluster_);
  auto got = cluster_->ClientFor(n4.id)->Get("key999", quorumkv::v1::LINEARIZABLE);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->value_or(""), "value999");
  EXPECT_NE(cluster_->LogTail(n4.id, 200).find("installed a snapshot"), std::string::npos)
      << "node 4 should have caught up through a snapshot\n"
      << cluster_->LogTail(n4.id, 40);
}

TEST_F(IntegrationTest, RemoveNodeAndTransferLeadership) {
  StartCluster(FastCluster());
  auto c = cluster_->Client();
  ASSERT_TRUE(c->Put("before", "1").ok());
  // Transfer to a chosen follower.
  uint64_t target = *leader_ == 1 ? 2 : 1;
  auto transferred = c->TransferLeadership(target);
  ASSERT_TRUE(transferred.ok()) << transferred.status();
  EXPECT_EQ(*transferred, target);
  auto leader = cluster_->WaitForLeader(kLeaderWait);
  ASSERT_TRUE(leader.has_value());
  EXPECT_EQ(*leader, target);
  // Remove a follower; the cluster goes on with two voters.
  uint64_t victim = 0;
  for (const auto& [id, n] : cluster_->nodes()) {
    if (id != target) victim = id;
  }
  auto removed = c->RemoveMember(victim);
  ASSERT_TRUE(removed.ok()) << removed.status();
  EXPECT_EQ(removed->size(), 2u);
  cluster_->Terminate(victim);
  auto c2 = cluster_->Client();
  ASSERT_TRUE(c2->Put("after", "2").ok());
  auto got = c2->Get("before", quorumkv::v1::LINEARIZABLE);
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(got->value_or(""), "1");
}

TEST_F(IntegrationTest, WholeClusterRestartKeepsData) {
  StartCluster(FastCluster());
  auto c = cluster_->Client();
  for (int i = 0; i < 300; ++i) ASSERT_TRUE(c->Put("r" + std::to_string(i), std::to_string(i)).ok());
  for (const auto& [id, n] : cluster_->nodes()) EXPECT_EQ(cluster_->TerminateAndStatus(id), 0) << "clean shutdown";
  for (const auto& [id, n] : cluster_->nodes()) ASSERT_TRUE(cluster_->Restart(id));
  ASSERT_TRUE(cluster_->WaitForLeader(kLeaderWait).has_value()) << Dump(*cluster_);
  auto c2 = cluster_->Client();
  for (int i = 0; i < 300; ++i) {
    auto got = c2->Get("r" + std::to_string(i), quorumkv::v1::LINEARIZABLE);
    ASSERT_TRUE(got.ok()) << got.status();
    ASSERT_EQ(got->value_or("<lost>"), std::to_string(i));
  }
}

TEST_F(IntegrationTest, CorruptedLogEntryIsDetectedAtStart) {
  StartCluster(FastCluster());
  auto c = cluster_->Client();
  for (int i = 0; i < 20; ++i) ASSERT_TRUE(c->Put("c" + std::to_string(i), "x").ok());
  const uint64_t victim = *leader_ == 3 ? 2 : 3;
  cluster_->Terminate(victim);
  // Flip a byte in the record holding entry 5 of the victim's Raft log.
  absl::StatusOr<uint64_t> corrupted = CorruptLogEntry(cluster_->node(victim).data_dir, 5);
  ASSERT_TRUE(corrupted.ok()) << corrupted.status();
  ASSERT_TRUE(cluster_->Restart(victim));
  auto code = cluster_->WaitExit(victim, absl::Seconds(10));
  ASSERT_TRUE(code.has_value()) << "a node with a corrupted log must refuse to start";
  EXPECT_NE(*code, 0);
  const std::string log = cluster_->LogTail(victim, 5);
  EXPECT_NE(log.find("DATA_LOSS"), std::string::npos) << log;
  EXPECT_NE(log.find("entry " + std::to_string(*corrupted) + " (the first of its record) failed its checksum"),
            std::string::npos)
      << log;
}

// A refused read carries "quorumkv-not-proposed", as a write refused before
// it reached the log does: a read changes nothing, so it surely took no
// effect.
TEST_F(IntegrationTest, RefusedReadsCarryTheNotProposedTrailer) {
  StartCluster(FastCluster());
  const std::vector<uint64_t> followers = Followers();
  ASSERT_EQ(followers.size(), 2u);
  // The survivor loses its quorum; it stays leader or candidate, but
  // confirms no read and commits no write.
  for (uint64_t id : followers) cluster_->Kill(id);
  auto stub = NodeStub(*cluster_, *leader_);
  auto refused = [](const grpc::ClientContext& ctx) {
    const auto& t = ctx.GetServerTrailingMetadata();
    return t.find("quorumkv-not-proposed") != t.end();
  };
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  bool read_marked = false;
  bool barrier_marked = false;
  while (absl::Now() < deadline && !(read_marked && barrier_marked)) {
    {
      grpc::ClientContext ctx;
      grpc::Status s = GetOnce(*stub, "k", quorumkv::v1::LINEARIZABLE, &ctx);
      ASSERT_NE(s.error_code(), grpc::StatusCode::OK) << "a read confirmed without a quorum";
      if (s.error_code() == grpc::StatusCode::UNAVAILABLE) read_marked = read_marked || refused(ctx);
    }
    {
      grpc::ClientContext ctx;
      ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(2));
      quorumkv::v1::ReadIndexRequest req;
      quorumkv::v1::ReadIndexResponse resp;
      grpc::Status s = stub->ReadIndex(&ctx, req, &resp);
      ASSERT_NE(s.error_code(), grpc::StatusCode::OK) << "a read index confirmed without a quorum";
      if (s.error_code() == grpc::StatusCode::UNAVAILABLE) barrier_marked = barrier_marked || refused(ctx);
    }
  }
  EXPECT_TRUE(read_marked) << "no UNAVAILABLE Get carried quorumkv-not-proposed";
  EXPECT_TRUE(barrier_marked) << "no UNAVAILABLE ReadIndex carried quorumkv-not-proposed";
}

// A write refused by the pending-request bound never reached the log, and
// says so: RESOURCE_EXHAUSTED carries "quorumkv-not-proposed" as UNAVAILABLE
// does, so a client without a session may retry it.
TEST_F(IntegrationTest, WritesRefusedByThePendingBoundCarryTheNotProposedTrailer) {
  ClusterOptions o = FastCluster();
  o.extra_flags.push_back("--max-pending=1");
  StartCluster(o);
  std::atomic<int> exhausted{0};
  std::atomic<int> unmarked{0};
  const absl::Time stop_at = absl::Now() + absl::Seconds(10);
  std::vector<std::thread> writers;
  for (int t = 0; t < 8; ++t) {
    writers.emplace_back([&, t] {
      auto stub = NodeStub(*cluster_, *leader_);
      for (int i = 0; i < 2000 && absl::Now() < stop_at && exhausted.load() < 20; ++i) {
        grpc::ClientContext ctx;
        const grpc::Status s =
            PutOnce(*stub, "pending-" + std::to_string(t) + "-" + std::to_string(i), absl::Seconds(2), &ctx);
        if (s.error_code() != grpc::StatusCode::RESOURCE_EXHAUSTED) continue;
        ++exhausted;
        const auto& trailers = ctx.GetServerTrailingMetadata();
        if (trailers.find("quorumkv-not-proposed") == trailers.end()) ++unmarked;
      }
    });
  }
  for (auto& w : writers) w.join();
  ASSERT_GT(exhausted.load(), 0) << "eight writers never went past --max-pending=1";
  EXPECT_EQ(unmarked.load(), 0) << unmarked.load() << " of " << exhausted.load()
                                << " RESOURCE_EXHAUSTED answers lacked quorumkv-not-proposed";
}

// While its lease holds, the leader answers lease reads without a round:
// every write acknowledged before the read, through whichever node, must
// be in the answer. Once the followers are gone and the lease has run out,
// no lease read is served.
TEST_F(IntegrationTest, LeaseReadsSeeEveryAcknowledgedWriteAndStopWithTheLease) {
  StartCluster(FastCluster());
  std::vector<uint64_t> ids;
  for (const auto& [id, n] : cluster_->nodes()) ids.push_back(id);
  auto leader = cluster_->ClientFor(*leader_);
  for (int i = 0; i < 60; ++i) {
    const uint64_t via = ids[static_cast<size_t>(i) % ids.size()];
    const std::string value = "v" + std::to_string(i);
    ASSERT_TRUE(cluster_->ClientFor(via)->Put("lease-key", value).ok()) << "write " << i;
    auto got = leader->Get("lease-key", quorumkv::v1::LEASE);
    ASSERT_TRUE(got.ok()) << got.status();
    EXPECT_EQ(got->value_or(""), value) << "write " << i << " went through node " << via;
  }

  for (uint64_t id : Followers()) cluster_->Kill(id);
  // FastCluster's lease: election 30 ticks - drift 6 = 24 ticks of 10 ms
  // from the send of the last acknowledged round.
  absl::SleepFor(absl::Milliseconds(400));
  grpc::ClientContext ctx;
  grpc::Status s = GetOnce(*NodeStub(*cluster_, *leader_), "lease-key", quorumkv::v1::LEASE, &ctx);
  EXPECT_NE(s.error_code(), grpc::StatusCode::OK) << "a lease read served after the lease ran out";
}

// SIGTERM while clients have calls in flight, on a follower (its writes
// are forwarded to the leader) and then on the leader: every call gets an
// answer (whatever it is) before its deadline, and each process exits 0
// within the harness's 10 s.
TEST_F(IntegrationTest, SigtermWithCallsInFlightAnswersThemAndExitsCleanly) {
  StartCluster(FastCluster());
  for (uint64_t victim : {Followers().front(), *leader_}) {
    auto stub = NodeStub(*cluster_, victim);
    std::atomic<bool> stop{false};
    std::atomic<int> answered{0};
    std::atomic<int> late{0};
    std::vector<std::thread> clients;
    for (int t = 0; t < 4; ++t) {
      clients.emplace_back([&, t] {
        for (int i = 0; i < 100000 && !stop.load(); ++i) {
          grpc::Status s =
              PutOnce(*stub, "term-" + std::to_string(t) + "-" + std::to_string(i % 50), absl::Seconds(3));
          if (s.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED) late++;
          answered++;
          if (!s.ok()) absl::SleepFor(absl::Milliseconds(5));
        }
      });
    }
    const absl::Time warm = absl::Now() + absl::Seconds(5);
    while (answered.load() < 200 && absl::Now() < warm) absl::SleepFor(absl::Milliseconds(10));
    EXPECT_GE(answered.load(), 200) << "node " << victim << " took too few writes before the SIGTERM";
    EXPECT_EQ(cluster_->TerminateAndStatus(victim), 0) << "node " << victim << "\n" << Dump(*cluster_);
    stop = true;
    for (auto& c : clients) c.join();
    EXPECT_EQ(late.load(), 0) << "calls to node " << victim << " ran into their deadline";
  }
}

// Eight writes to `victim` that will not be answered in time (8 s
// deadlines), then SIGTERM: gRPC's shutdown gives up on them after its 2 s
// grace period, but waits until each is answered; the node must answer
// them then, so that the process exits 0 well before the writes' own
// deadlines, and each client gets an error.
void SigtermWithStuckWrites(ProcessCluster& cluster, uint64_t victim) {
  auto stub = NodeStub(cluster, victim);
  std::atomic<int> started{0};
  std::vector<std::thread> clients;
  for (int t = 0; t < 8; ++t) {
    clients.emplace_back([&, t] {
      started++;
      grpc::Status s = PutOnce(*stub, "stuck-" + std::to_string(t), absl::Seconds(8));
      EXPECT_NE(s.error_code(), grpc::StatusCode::OK) << "a write committed without a quorum";
      EXPECT_NE(s.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED) << "a write waited out its deadline";
    });
  }
  while (started.load() < 8) absl::SleepFor(absl::Milliseconds(5));
  absl::SleepFor(absl::Milliseconds(300));  // the writes reach the node
  const absl::Time sigterm = absl::Now();
  EXPECT_EQ(cluster.TerminateAndStatus(victim), 0) << Dump(cluster);
  EXPECT_LT(absl::Now() - sigterm, absl::Seconds(5)) << "node " << victim << " took too long to stop";
  for (auto& c : clients) c.join();
}

TEST_F(IntegrationTest, SigtermWithWritesThatCannotCommitExitsAfterTheGracePeriod) {
  StartCluster(FastCluster());
  for (uint64_t id : Followers()) cluster_->Kill(id);
  SigtermWithStuckWrites(*cluster_, *leader_);
}

// The same on a follower whose forwarded writes a stalled leader holds: the
// other follower is gone, so no new leader takes over meanwhile.
TEST_F(IntegrationTest, SigtermWithWritesForwardedToAStalledLeaderExitsAfterTheGracePeriod) {
  StartCluster(FastCluster());
  const std::vector<uint64_t> followers = Followers();
  ASSERT_EQ(followers.size(), 2u);
  cluster_->Kill(followers[1]);
  cluster_->Pause(*leader_);
  SigtermWithStuckWrites(*cluster_, followers[0]);
  cluster_->Resume(*leader_);
}

TEST_F(IntegrationTest, BadInputGetsInvalidArgument) {
  StartCluster(FastCluster());
  auto c = cluster_->Client();
  EXPECT_EQ(c->Put(std::string(5000, 'k'), "v").code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(c->Put("k", std::string((1 << 20) + 1, 'v')).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(c->Put("", "v").code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(c->Put(std::string("\xff\xfe", 2), "v").code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(c->AddMember(9, "not-an-address", "", false).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(c->AddMember(9, "127.0.0.1:99999", "", false).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(c->RemoveMember(42).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(c->AddMember(1, "127.0.0.1:1234", "", false).status().code(), absl::StatusCode::kAlreadyExists);
}

}  // namespace
}  // namespace quorumkv::testing
