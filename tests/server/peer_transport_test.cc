// PeerTransport between in-process nodes, each with its own grpc::Server on
// 127.0.0.1 (free ports only). Every wait is bounded; every node is stopped
// (server first, then transport) at the end of its test.
#include "server/not_proposed.h"
#include "server/peer_transport.h"

#include <arpa/inet.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "raft.grpc.pb.h"
#include "server/raft_wire.h"

namespace quorumkv::server {
namespace {

using raft::Index;
using raft::Message;
using raft::MessageType;
using raft::NodeId;
using raft::Term;

constexpr absl::Duration kWait = absl::Seconds(10);

// Polls `done` until it holds or `timeout` passes.
bool WaitFor(const std::function<bool()>& done, absl::Duration timeout = kWait) {
  const absl::Time deadline = absl::Now() + timeout;
  while (absl::Now() < deadline) {
    if (done()) return true;
    absl::SleepFor(absl::Milliseconds(5));
  }
  return done();
}

Message Heartbeat(uint64_t from, uint64_t to, uint64_t round) {
  Message m;
  m.type = MessageType::kAppendEntries;
  m.from = NodeId(from);
  m.to = NodeId(to);
  m.term = Term(1);
  m.heartbeat = true;
  m.read_round = round;
  return m;
}

Message Append(uint64_t from, uint64_t to, uint64_t index, size_t data_bytes) {
  Message m;
  m.type = MessageType::kAppendEntries;
  m.from = NodeId(from);
  m.to = NodeId(to);
  m.term = Term(1);
  m.prev_log_index = Index(index - 1);
  m.prev_log_term = Term(1);
  m.entries = {raft::Entry{Index(index), Term(1), raft::EntryType::kNormal,
                           std::string(data_bytes, 'x')}};
  m.read_round = index;
  return m;
}

raft::SnapshotMeta Meta(uint64_t index) {
  raft::SnapshotMeta meta;
  meta.index = Index(index);
  meta.term = Term(3);
  meta.conf_state.voters = {NodeId(1), NodeId(2), NodeId(3)};
  return meta;
}

// --- a recording handler ------------------------------------------------------

struct ReceivedSnapshot {
  NodeId from;
  Term term;
  raft::SnapshotMeta meta;
  std::string data;
  std::vector<size_t> write_sizes;
  bool offsets_ok = true;
  bool finished = false;
  int aborts = 0;
};

class RecordingHandler : public PeerHandler {
 public:
  // --- configuration (set before traffic starts) ---
  std::string image;                 // what OpenSnapshot streams
  raft::SnapshotMeta stream_meta = Meta(60);
  size_t piece_bytes = 10;           // size of the source's pieces
  int fail_at_piece = -1;            // the source fails on this piece (after a write arrived)
  absl::Status open_status;          // OpenSnapshot's refusal, if not OK
  absl::Status begin_status;         // BeginSnapshot's refusal, if not OK
  std::function<void(NodeId, std::string, std::function<void(ForwardResult)>)> on_forward;
  RecordingHandler* peer_for_gate = nullptr;  // whose receiver must see a write before failing
  absl::Notification* hold_messages = nullptr;  // OnMessages waits for it (a stalled receiver)

  // --- PeerHandler ---
  void OnMessages(std::vector<Message> messages) override {
    if (hold_messages != nullptr) hold_messages->WaitForNotification();
    absl::MutexLock lock(&mu_);
    batches_.push_back(std::move(messages));
  }
  absl::StatusOr<std::unique_ptr<SnapshotReceiver>> BeginSnapshot(
      NodeId from, Term term, const raft::SnapshotMeta& meta) override;
  void OnForwardPropose(NodeId from, std::string command,
                        std::function<void(ForwardResult)> done) override {
    on_forward(from, std::move(command), std::move(done));
  }
  absl::StatusOr<std::unique_ptr<SnapshotStream>> OpenSnapshot(
      const raft::SnapshotMeta& requested) override;
  void OnUnreachable(NodeId peer) override {
    absl::MutexLock lock(&mu_);
    ++unreachable_[peer.value()];
  }
  void OnSnapshotStatus(NodeId peer, bool delivered) override {
    absl::MutexLock lock(&mu_);
    snapshot_status_.emplace_back(peer.value(), delivered);
  }

  // --- observations ---
  std::vector<std::vector<Message>> batches() {
    absl::MutexLock lock(&mu_);
    return batches_;
  }
  std::vector<Message> messages() {
    absl::MutexLock lock(&mu_);
    std::vector<Message> all;
    for (const auto& b : batches_) all.insert(all.end(), b.begin(), b.end());
    return all;
  }
  size_t message_count() {
    absl::MutexLock lock(&mu_);
    size_t n = 0;
    for (const auto& b : batches_) n += b.size();
    return n;
  }
  int unreachable(uint64_t peer) {
    absl::MutexLock lock(&mu_);
    auto it = unreachable_.find(peer);
    return it == unreachable_.end() ? 0 : it->second;
  }
  std::vector<std::pair<uint64_t, bool>> snapshot_status() {
    absl::MutexLock lock(&mu_);
    return snapshot_status_;
  }
  std::vector<ReceivedSnapshot> received() {
    absl::MutexLock lock(&mu_);
    std::vector<ReceivedSnapshot> out;
    for (const auto& r : received_) out.push_back(*r);
    return out;
  }
  int open_calls() {
    absl::MutexLock lock(&mu_);
    return open_calls_;
  }
  bool HasReceivedAWrite() {
    absl::MutexLock lock(&mu_);
    return !received_.empty() && !received_.front()->write_sizes.empty();
  }

 private:
  friend class Receiver;
  friend class Source;

  absl::Mutex mu_;
  std::vector<std::vector<Message>> batches_ ABSL_GUARDED_BY(mu_);
  std::map<uint64_t, int> unreachable_ ABSL_GUARDED_BY(mu_);
  std::vector<std::pair<uint64_t, bool>> snapshot_status_ ABSL_GUARDED_BY(mu_);
  std::vector<std::shared_ptr<ReceivedSnapshot>> received_ ABSL_GUARDED_BY(mu_);
  int open_calls_ ABSL_GUARDED_BY(mu_) = 0;
};

class Receiver : public SnapshotReceiver {
 public:
  Receiver(RecordingHandler* h, std::shared_ptr<ReceivedSnapshot> r) : h_(h), r_(std::move(r)) {}
  absl::Status Write(uint64_t offset, std::string_view data) override {
    absl::MutexLock lock(&h_->mu_);
    if (offset != r_->data.size()) r_->offsets_ok = false;
    r_->data.append(data);
    r_->write_sizes.push_back(data.size());
    return absl::OkStatus();
  }
  absl::Status Finish() override {
    absl::MutexLock lock(&h_->mu_);
    r_->finished = true;
    return absl::OkStatus();
  }
  void Abort() override {
    absl::MutexLock lock(&h_->mu_);
    ++r_->aborts;
  }

 private:
  RecordingHandler* h_;
  std::shared_ptr<ReceivedSnapshot> r_;
};

class Source : public SnapshotStream {
 public:
  explicit Source(RecordingHandler* h) : h_(h) {}
  const raft::SnapshotMeta& meta() const override { return h_->stream_meta; }
  absl::StatusOr<Chunk> Next() override {
    if (piece_ == h_->fail_at_piece) {
      // Fail only once the follower has started staging, so the test sees
      // an Abort rather than a stream refused before it began.
      if (h_->peer_for_gate != nullptr) {
        WaitFor([&] { return h_->peer_for_gate->HasReceivedAWrite(); });
      }
      return absl::DataLossError("snapshot file is corrupt");
    }
    ++piece_;
    Chunk c;
    c.offset = offset_;
    const size_t n = std::min(h_->piece_bytes, h_->image.size() - offset_);
    c.data = h_->image.substr(offset_, n);
    offset_ += n;
    c.last = offset_ == h_->image.size();
    return c;
  }

 private:
  RecordingHandler* h_;
  int piece_ = 0;
  size_t offset_ = 0;
};

absl::StatusOr<std::unique_ptr<SnapshotReceiver>> RecordingHandler::BeginSnapshot(
    NodeId from, Term term, const raft::SnapshotMeta& meta) {
  if (!begin_status.ok()) return begin_status;
  auto r = std::make_shared<ReceivedSnapshot>();
  r->from = from;
  r->term = term;
  r->meta = meta;
  absl::MutexLock lock(&mu_);
  received_.push_back(r);
  return std::make_unique<Receiver>(this, r);
}

absl::StatusOr<std::unique_ptr<SnapshotStream>> RecordingHandler::OpenSnapshot(
    const raft::SnapshotMeta& requested) {
  {
    absl::MutexLock lock(&mu_);
    ++open_calls_;
  }
  if (!open_status.ok()) return open_status;
  return std::make_unique<Source>(this);
}

// --- nodes ---------------------------------------------------------------------

PeerTransportOptions Options(uint64_t self, uint64_t cluster = 1) {
  PeerTransportOptions o;
  o.cluster_id = cluster;
  o.self = NodeId(self);
  o.rpc_timeout = absl::Seconds(2);
  o.reconnect_backoff_min = absl::Milliseconds(20);
  o.reconnect_backoff_max = absl::Milliseconds(200);
  o.jitter_seed = 1000 + self;
  return o;
}

// One node: handler, transport and server; destroyed in the order the
// transport's contract asks (server, then transport, then handler).
struct TestNode {
  RecordingHandler handler;
  std::unique_ptr<PeerTransport> transport;
  std::unique_ptr<grpc::Server> server;
  int port = 0;

  explicit TestNode(PeerTransportOptions options, int fixed_port = 0) {
    EXPECT_TRUE(options.Validate().ok()) << options.Validate();
    transport = std::make_unique<PeerTransport>(options, &handler);
    grpc::ServerBuilder builder;
    transport->ConfigureServer(builder);
    builder.AddListeningPort(absl::StrCat("127.0.0.1:", fixed_port),
                             grpc::InsecureServerCredentials(), &port);
    builder.RegisterService(transport->service());
    server = builder.BuildAndStart();
    EXPECT_NE(server, nullptr);
    EXPECT_GT(port, 0);
  }
  ~TestNode() { Stop(); }
  void Stop() {
    if (server != nullptr) {
      transport->StopServingStreams();
      server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
      server.reset();
    }
    transport.reset();
  }
  std::string address() const { return absl::StrCat("127.0.0.1:", port); }
};

// A port nobody listens on (bound, read, closed).
int ClosedPort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  EXPECT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  socklen_t len = sizeof(addr);
  EXPECT_EQ(getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len), 0);
  close(fd);
  return ntohs(addr.sin_port);
}

// A peer that accepts TCP connections (the kernel's backlog does) but never
// speaks HTTP/2: every RPC to it hangs until its deadline or cancellation.
class BlackHole {
 public:
  BlackHole() {
    fd_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
    EXPECT_EQ(listen(fd_, 64), 0);
    socklen_t len = sizeof(addr);
    EXPECT_EQ(getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len), 0);
    port_ = ntohs(addr.sin_port);
  }
  ~BlackHole() { close(fd_); }
  std::string address() const { return absl::StrCat("127.0.0.1:", port_); }

 private:
  int fd_ = -1;
  int port_ = 0;
};

double SecondsSince(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// --- messages ------------------------------------------------------------------

TEST(PeerTransportTest, OneSendCallArrivesAsOneOrderedBatch) {
  TestNode a(Options(1)), b(Options(2));
  a.transport->UpsertPeer(NodeId(2), b.address());
  std::vector<Message> out;
  for (uint64_t i = 1; i <= 500; ++i) out.push_back(Heartbeat(1, 2, i));
  a.transport->Send(std::move(out));

  ASSERT_TRUE(WaitFor([&] { return b.handler.message_count() == 500; }));
  const auto batches = b.handler.batches();
  ASSERT_EQ(batches.size(), 1u) << "all 500 were queued at once: one stream write";
  for (size_t i = 0; i < 500; ++i) {
    const Message& m = batches[0][i];
    EXPECT_EQ(m.read_round, i + 1);
    EXPECT_EQ(m.from, NodeId(1));
    EXPECT_EQ(m.to, NodeId(2));
    EXPECT_TRUE(m.heartbeat);
  }
  // The sender counts once the write has completed, just after delivery.
  ASSERT_TRUE(WaitFor([&] { return a.transport->Stats(NodeId(2))->messages_sent == 500; }));
  EXPECT_EQ(a.transport->Stats(NodeId(2))->batches_sent, 1u);
}

TEST(PeerTransportTest, BatchesRespectTheByteLimitAndKeepOrder) {
  PeerTransportOptions opts = Options(1);
  opts.max_batch_bytes = 8 << 10;
  TestNode a(opts), b(Options(2));
  a.transport->UpsertPeer(NodeId(2), b.address());
  for (uint64_t i = 1; i <= 200; ++i) a.transport->Send({Append(1, 2, i, 1024)});

  ASSERT_TRUE(WaitFor([&] { return b.handler.message_count() == 200; }));
  const auto batches = b.handler.batches();
  uint64_t expected = 1;
  for (const auto& batch : batches) {
    size_t bytes = 0;
    for (const Message& m : batch) bytes += ApproximateWireSize(m);
    EXPECT_LE(bytes, opts.max_batch_bytes);
    for (const Message& m : batch) {
      ASSERT_EQ(m.entries.size(), 1u);
      EXPECT_EQ(m.entries[0].index, Index(expected)) << "out of order";
      EXPECT_EQ(m.entries[0].data.size(), 1024u);
      ++expected;
    }
  }
  EXPECT_GE(batches.size(), 200u / 7) << "8 KiB holds at most 7 such messages";
}

TEST(PeerTransportTest, PipelinedBatchesLoseNothing) {
  TestNode a(Options(1)), b(Options(2));  // 4 batches in flight
  a.transport->UpsertPeer(NodeId(2), b.address());
  uint64_t round = 0;
  for (int call = 0; call < 300; ++call) {
    std::vector<Message> out;
    for (int i = 0; i < 10; ++i) out.push_back(Heartbeat(1, 2, ++round));
    a.transport->Send(std::move(out));
  }
  ASSERT_TRUE(WaitFor([&] { return b.handler.message_count() == 3000; }));
  std::vector<bool> seen(3001, false);
  for (const auto& batch : b.handler.batches()) {
    for (size_t i = 0; i < batch.size(); ++i) {
      if (i > 0) {
        EXPECT_LT(batch[i - 1].read_round, batch[i].read_round) << "order within a batch";
      }
      ASSERT_LE(batch[i].read_round, 3000u);
      EXPECT_FALSE(seen[batch[i].read_round]) << "duplicate";
      seen[batch[i].read_round] = true;
    }
  }
}

TEST(PeerTransportTest, BatchesAboveGrpcsDefaultLimitAreAccepted) {
  // ConfigureServer lifts the server's 4 MiB default receive limit.
  PeerTransportOptions opts = Options(1);
  opts.max_batch_bytes = 6 << 20;
  TestNode a(opts), b(Options(2));
  a.transport->UpsertPeer(NodeId(2), b.address());
  std::vector<Message> out;
  for (uint64_t i = 1; i <= 5; ++i) out.push_back(Append(1, 2, i, 1 << 20));
  a.transport->Send(std::move(out));
  ASSERT_TRUE(WaitFor([&] { return b.handler.message_count() == 5; }));
  EXPECT_EQ(b.handler.batches().size(), 1u);
}

TEST(PeerTransportTest, OversizedMessagesAreDroppedAndReported) {
  PeerTransportOptions opts = Options(1);
  opts.max_message_bytes = 64 << 10;
  opts.max_batch_bytes = 32 << 10;
  opts.snapshot_chunk_bytes = 16 << 10;
  TestNode a(opts), b(Options(2));
  a.transport->UpsertPeer(NodeId(2), b.address());
  a.transport->Send({Append(1, 2, 1, 100 << 10), Append(1, 2, 2, 10 << 10)});
  ASSERT_TRUE(WaitFor([&] { return b.handler.message_count() == 1; }));
  EXPECT_EQ(b.handler.messages()[0].entries[0].index, Index(2));
  EXPECT_EQ(a.transport->Stats(NodeId(2))->dropped_oversize, 1u);
  EXPECT_TRUE(WaitFor([&] { return a.handler.unreachable(2) > 0; }));
}

TEST(PeerTransportTest, MessagesGoOnlyToTheirDestination) {
  TestNode a(Options(1)), b(Options(2)), c(Options(3));
  a.transport->UpsertPeer(NodeId(2), b.address());
  a.transport->UpsertPeer(NodeId(3), c.address());
  std::vector<Message> out;
  for (uint64_t i = 1; i <= 20; ++i) out.push_back(Heartbeat(1, i % 2 == 0 ? 2 : 3, i));
  out.push_back(Heartbeat(1, 9, 99));  // unknown peer: dropped
  a.transport->Send(std::move(out));

  ASSERT_TRUE(WaitFor([&] {
    return b.handler.message_count() == 10 && c.handler.message_count() == 10;
  }));
  uint64_t last_b = 0, last_c = 0;
  for (const Message& m : b.handler.messages()) {
    EXPECT_EQ(m.to, NodeId(2));
    EXPECT_EQ(m.read_round % 2, 0u);
    EXPECT_GT(m.read_round, last_b);
    last_b = m.read_round;
  }
  for (const Message& m : c.handler.messages()) {
    EXPECT_EQ(m.to, NodeId(3));
    EXPECT_EQ(m.read_round % 2, 1u);
    EXPECT_GT(m.read_round, last_c);
    last_c = m.read_round;
  }
}

// One stream carries every batch while the peer stays up: no call per batch.
TEST(PeerTransportTest, OneStreamCarriesEveryBatch) {
  TestNode a(Options(1)), b(Options(2));
  a.transport->UpsertPeer(NodeId(2), b.address());
  for (uint64_t i = 1; i <= 50; ++i) {
    a.transport->Send({Heartbeat(1, 2, i)});
    ASSERT_TRUE(WaitFor([&] { return b.handler.message_count() == i; }));
  }
  ASSERT_TRUE(WaitFor([&] { return a.transport->Stats(NodeId(2))->batches_sent == 50; }));
  const PeerStats stats = *a.transport->Stats(NodeId(2));
  EXPECT_EQ(stats.streams_opened, 1u);
  EXPECT_EQ(stats.messages_sent, 50u);
  EXPECT_EQ(stats.rpc_failures, 0u);
}

// A receiver that refuses a batch ends the stream; the sender reports the
// peer, and after a back-off a new stream carries what comes next.
TEST(PeerTransportTest, RefusedBatchEndsTheStreamAndANewOneFollows) {
  TestNode a(Options(1)), b(Options(2));
  // Node 3's address is node 2's: node 2 refuses messages for node 3.
  a.transport->UpsertPeer(NodeId(3), b.address());
  a.transport->Send({Heartbeat(1, 3, 1)});
  ASSERT_TRUE(WaitFor([&] { return a.handler.unreachable(3) > 0; }));
  ASSERT_TRUE(WaitFor([&] {
    a.transport->Send({Heartbeat(1, 3, 2)});
    return a.transport->Stats(NodeId(3))->streams_opened >= 2;
  }));
  EXPECT_EQ(b.handler.message_count(), 0u);
  // The same sender's stream to the right node is unaffected.
  a.transport->UpsertPeer(NodeId(2), b.address());
  a.transport->Send({Heartbeat(1, 2, 3)});
  ASSERT_TRUE(WaitFor([&] { return b.handler.message_count() == 1; }));
}

// A receiver that stops reading (here: its handler stalls) fills the
// stream's flow-control windows; a write pending for rpc_timeout ends the
// stream and reports the peer, instead of queueing behind it for ever.
TEST(PeerTransportTest, WriteStalledForRpcTimeoutEndsTheStream) {
  absl::Notification release;
  PeerTransportOptions opts = Options(1);
  opts.rpc_timeout = absl::Milliseconds(500);
  opts.max_batch_bytes = 1 << 20;
  TestNode a(opts), b(Options(2));
  b.handler.hold_messages = &release;
  a.transport->UpsertPeer(NodeId(2), b.address());
  // 64 MiB in 1 MiB batches: far more than the windows hold.
  for (uint64_t i = 1; i <= 64; ++i) a.transport->Send({Append(1, 2, i, 1 << 20)});
  const bool reported = WaitFor([&] { return a.handler.unreachable(2) > 0; });
  release.Notify();
  ASSERT_TRUE(reported) << "a stalled stream was never given up";
  const PeerStats stats = *a.transport->Stats(NodeId(2));
  EXPECT_GE(stats.rpc_failures, 1u);
  EXPECT_GT(stats.dropped_failed, 0u);
  EXPECT_LT(stats.batches_sent, 64u);
}

// A node that stops serving ends the streams peers keep open to it, so its
// server shuts down at once rather than at its deadline; the senders see
// the end and report the peer.
TEST(PeerTransportTest, StopServingStreamsLetsTheServerShutDownPromptly) {
  TestNode a(Options(1));
  auto b = std::make_unique<TestNode>(Options(2));
  a.transport->UpsertPeer(NodeId(2), b->address());
  a.transport->Send({Heartbeat(1, 2, 1)});
  ASSERT_TRUE(WaitFor([&] { return b->handler.message_count() == 1; }));
  const auto start = std::chrono::steady_clock::now();
  b->Stop();  // StopServingStreams, then Shutdown with a 2 s deadline
  EXPECT_LT(SecondsSince(start), 1.0) << "the server waited for an open stream";
  EXPECT_TRUE(WaitFor([&] { return a.handler.unreachable(2) > 0; }));
}

// --- dead, hung and returning peers -------------------------------------------

TEST(PeerTransportTest, SendNeverBlocksOnADeadPeer) {
  TestNode a(Options(1));
  a.transport->UpsertPeer(NodeId(2), absl::StrCat("127.0.0.1:", ClosedPort()));
  const auto start = std::chrono::steady_clock::now();
  for (uint64_t i = 1; i <= 10000; ++i) a.transport->Send({Heartbeat(1, 2, i)});
  EXPECT_LT(SecondsSince(start), 1.0) << "Send waited on the network";
  ASSERT_TRUE(WaitFor([&] { return a.handler.unreachable(2) > 0; }));
}

TEST(PeerTransportTest, SendNeverBlocksOnAHungPeer) {
  BlackHole hole;
  TestNode a(Options(1));
  a.transport->UpsertPeer(NodeId(2), hole.address());
  const auto start = std::chrono::steady_clock::now();
  for (uint64_t i = 1; i <= 10000; ++i) a.transport->Send({Heartbeat(1, 2, i)});
  EXPECT_LT(SecondsSince(start), 1.0) << "Send waited on the network";
}

TEST(PeerTransportTest, OverflowDropsAndReportsUnreachable) {
  BlackHole hole;
  PeerTransportOptions opts = Options(1);
  opts.max_queued_messages_per_peer = 100;
  opts.rpc_timeout = absl::Seconds(30);  // the one write hangs for the whole test
  TestNode a(opts);
  a.transport->UpsertPeer(NodeId(2), hole.address());
  for (uint64_t i = 1; i <= 10000; ++i) a.transport->Send({Heartbeat(1, 2, i)});

  auto stats = a.transport->Stats(NodeId(2));
  ASSERT_TRUE(stats.has_value());
  // At most one batch (<= 100) left the queue; the queue holds 100.
  EXPECT_GE(stats->dropped_overflow, 10000u - 200u);
  EXPECT_EQ(stats->queued, 100u);
  EXPECT_TRUE(WaitFor([&] { return a.handler.unreachable(2) > 0; }));
  // One report for the whole episode, not one per dropped message.
  absl::SleepFor(absl::Milliseconds(50));
  EXPECT_EQ(a.handler.unreachable(2), 1)
      << "rpc_failures=" << a.transport->Stats(NodeId(2))->rpc_failures
      << " batches=" << a.transport->Stats(NodeId(2))->batches_sent
      << " queued=" << a.transport->Stats(NodeId(2))->queued
      << " dropped_failed=" << a.transport->Stats(NodeId(2))->dropped_failed;

  // Tearing down with a hung stream in flight is prompt (the call is cancelled).
  const auto start = std::chrono::steady_clock::now();
  a.Stop();
  EXPECT_LT(SecondsSince(start), 5.0);
}

TEST(PeerTransportTest, FailedRpcBacksOffAndDropsItsMessages) {
  PeerTransportOptions opts = Options(1);
  opts.reconnect_backoff_min = absl::Milliseconds(200);
  opts.reconnect_backoff_max = absl::Milliseconds(400);
  TestNode a(opts);
  a.transport->UpsertPeer(NodeId(2), absl::StrCat("127.0.0.1:", ClosedPort()));
  // Keep offering messages for a second; with a 200-400 ms back-off (with
  // jitter, at least 100 ms between attempts) few streams may be opened.
  const auto start = std::chrono::steady_clock::now();
  uint64_t round = 0;
  while (SecondsSince(start) < 1.0) {
    a.transport->Send({Heartbeat(1, 2, ++round)});
    absl::SleepFor(absl::Milliseconds(2));
  }
  auto stats = a.transport->Stats(NodeId(2));
  ASSERT_TRUE(stats.has_value());
  EXPECT_GE(stats->rpc_failures, 1u);
  EXPECT_LE(stats->rpc_failures, 12u) << "no back-off between attempts";
  EXPECT_EQ(stats->messages_sent, 0u);
  EXPECT_GT(stats->dropped_failed, 0u);
  EXPECT_GE(a.handler.unreachable(2), 1);
}

TEST(PeerTransportTest, ReachesAPeerThatComesBack) {
  auto b = std::make_unique<TestNode>(Options(2));
  const int port = b->port;
  b->Stop();
  b.reset();

  TestNode a(Options(1));
  a.transport->UpsertPeer(NodeId(2), absl::StrCat("127.0.0.1:", port));
  uint64_t round = 0;
  ASSERT_TRUE(WaitFor([&] {
    a.transport->Send({Heartbeat(1, 2, ++round)});
    return a.handler.unreachable(2) > 0;
  }));

  b = std::make_unique<TestNode>(Options(2), port);  // restarted on its old port
  ASSERT_TRUE(WaitFor([&] {
    a.transport->Send({Heartbeat(1, 2, ++round)});
    return b->handler.message_count() > 0;
  })) << "never reconnected";
}

TEST(PeerTransportTest, UpsertPeerWithANewAddressReconnects) {
  TestNode a(Options(1)), b(Options(2));
  a.transport->UpsertPeer(NodeId(2), absl::StrCat("127.0.0.1:", ClosedPort()));
  a.transport->Send({Heartbeat(1, 2, 1)});
  ASSERT_TRUE(WaitFor([&] { return a.handler.unreachable(2) > 0; }));
  a.transport->UpsertPeer(NodeId(2), b.address());
  a.transport->Send({Heartbeat(1, 2, 2)});
  ASSERT_TRUE(WaitFor([&] { return b.handler.message_count() == 1; }));
  EXPECT_EQ(b.handler.messages()[0].read_round, 2u);
}

TEST(PeerTransportTest, RemovePeerStopsSending) {
  TestNode a(Options(1)), b(Options(2));
  a.transport->UpsertPeer(NodeId(2), b.address());
  a.transport->Send({Heartbeat(1, 2, 1)});
  ASSERT_TRUE(WaitFor([&] { return b.handler.message_count() == 1; }));

  a.transport->RemovePeer(NodeId(2));
  EXPECT_FALSE(a.transport->Stats(NodeId(2)).has_value());
  for (uint64_t i = 2; i <= 50; ++i) a.transport->Send({Heartbeat(1, 2, i)});
  absl::SleepFor(absl::Milliseconds(300));
  EXPECT_EQ(b.handler.message_count(), 1u);
}

TEST(PeerTransportTest, RemovePeerWithACallInFlightDoesNotBlock) {
  BlackHole hole;
  PeerTransportOptions opts = Options(1);
  opts.rpc_timeout = absl::Seconds(30);
  TestNode a(opts);
  a.transport->UpsertPeer(NodeId(2), hole.address());
  a.transport->Send({Heartbeat(1, 2, 1)});
  ASSERT_TRUE(WaitFor([&] {
    auto s = a.transport->Stats(NodeId(2));
    return s.has_value() && s->queued == 0;  // the batch is in flight
  }));
  const auto start = std::chrono::steady_clock::now();
  a.transport->RemovePeer(NodeId(2));
  EXPECT_LT(SecondsSince(start), 0.5);
  // Re-adding the same id works while the old one winds down.
  TestNode b(Options(2));
  a.transport->UpsertPeer(NodeId(2), b.address());
  a.transport->Send({Heartbeat(1, 2, 2)});
  ASSERT_TRUE(WaitFor([&] { return b.handler.message_count() == 1; }));
}

// --- cluster id and malformed traffic ------------------------------------------

TEST(PeerTransportTest, AnotherClustersTrafficIsRefused) {
  TestNode a(Options(1, /*cluster=*/1)), b(Options(2, /*cluster=*/2));
  a.handler.image = "image";
  a.transport->UpsertPeer(NodeId(2), b.address());
  a.transport->Send({Heartbeat(1, 2, 1)});
  ASSERT_TRUE(WaitFor([&] { return a.handler.unreachable(2) > 0; }));

  Message snap;
  snap.type = MessageType::kInstallSnapshot;
  snap.from = NodeId(1);
  snap.to = NodeId(2);
  snap.term = Term(4);
  snap.snapshot.meta = Meta(50);
  a.transport->Send({snap});
  ASSERT_TRUE(WaitFor([&] { return !a.handler.snapshot_status().empty(); }));
  EXPECT_EQ(a.handler.snapshot_status()[0], std::make_pair(uint64_t{2}, false));

  std::optional<ForwardResult> forwarded;
  absl::Mutex mu;
  a.transport->ForwardPropose(NodeId(2), "cmd", absl::Seconds(2), [&](ForwardResult r) {
    absl::MutexLock lock(&mu);
    forwarded = std::move(r);
  });
  ASSERT_TRUE(WaitFor([&] {
    absl::MutexLock lock(&mu);
    return forwarded.has_value();
  }));
  EXPECT_EQ(forwarded->status.code(), absl::StatusCode::kFailedPrecondition) << forwarded->status;

  EXPECT_EQ(b.handler.message_count(), 0u);
  EXPECT_TRUE(b.handler.received().empty());

  // The refusal, as a caller sees it.
  auto stub = raftpb::RaftPeer::NewStub(
      grpc::CreateChannel(b.address(), grpc::InsecureChannelCredentials()));
  raftpb::MessageBatch batch;
  ASSERT_TRUE(EncodeMessage(Heartbeat(1, 2, 1), /*cluster_id=*/1, batch.add_messages()).ok());
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  raftpb::SendAck ack;
  grpc::Status status = stub->Send(&ctx, batch, &ack);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_NE(status.error_message().find("of cluster 1"), std::string::npos) << status.error_message();
  EXPECT_NE(status.error_message().find("belongs to cluster 2"), std::string::npos);
}

class RawServiceTest : public ::testing::Test {
 protected:
  RawServiceTest()
      : b_(Options(2)),
        stub_(raftpb::RaftPeer::NewStub(
            grpc::CreateChannel(b_.address(), grpc::InsecureChannelCredentials()))) {}

  grpc::Status SendBatch(const std::vector<raftpb::RaftMessage>& messages) {
    raftpb::MessageBatch batch;
    for (const auto& m : messages) *batch.add_messages() = m;
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
    raftpb::SendAck ack;
    return stub_->Send(&ctx, batch, &ack);
  }
  static raftpb::RaftMessage Wire(const Message& m, uint64_t cluster = 1) {
    raftpb::RaftMessage w;
    EXPECT_TRUE(EncodeMessage(m, cluster, &w).ok());
    return w;
  }

  // Streams `chunks` (with or without the cluster header) and returns the status.
  grpc::Status Stream(const std::vector<raftpb::InstallSnapshotChunk>& chunks,
                      bool cluster_header = true) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
    if (cluster_header) ctx.AddMetadata(PeerTransport::kClusterIdMetadataKey, "1");
    raftpb::InstallSnapshotResponse response;
    auto writer = stub_->InstallSnapshot(&ctx, &response);
    for (const auto& c : chunks) {
      if (!writer->Write(c)) break;
    }
    writer->WritesDone();
    grpc::Status status = writer->Finish();
    last_response_ = response;
    return status;
  }
  static raftpb::InstallSnapshotChunk Chunk(uint64_t offset, std::string data, bool done,
                                            uint64_t meta_index = 50) {
    raftpb::InstallSnapshotChunk c;
    EncodeSnapshotChunkHeader(SnapshotChunkHeader{NodeId(1), Term(4), Meta(meta_index)}, &c);
    c.set_offset(offset);
    c.set_data(std::move(data));
    c.set_done(done);
    return c;
  }

  TestNode b_;
  std::unique_ptr<raftpb::RaftPeer::Stub> stub_;
  raftpb::InstallSnapshotResponse last_response_;
};

TEST_F(RawServiceTest, RefusesMalformedAndMisaddressedBatches) {
  grpc::Status s = SendBatch({Wire(Heartbeat(1, 3, 1))});
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_NE(s.error_message().find("reached node 2"), std::string::npos) << s.error_message();

  raftpb::RaftMessage no_from = Wire(Heartbeat(1, 2, 1));
  no_from.set_from(0);
  s = SendBatch({no_from});
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(s.error_message().find("from is 0"), std::string::npos) << s.error_message();

  raftpb::RaftMessage no_body;
  no_body.set_from(1);
  no_body.set_to(2);
  no_body.set_cluster_id(1);
  s = SendBatch({Wire(Heartbeat(1, 2, 1)), no_body});
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(s.error_message().find("message 1 of the batch"), std::string::npos);

  s = SendBatch({Wire(Heartbeat(1, 2, 1)), Wire(Heartbeat(3, 2, 2))});
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(s.error_message().find("mixes senders"), std::string::npos);

  // Nothing of a refused batch reaches the handler; a good batch does.
  EXPECT_EQ(b_.handler.message_count(), 0u);
  EXPECT_TRUE(SendBatch({Wire(Heartbeat(1, 2, 7))}).ok());
  EXPECT_EQ(b_.handler.message_count(), 1u);
  EXPECT_TRUE(SendBatch({}).ok());
}

TEST_F(RawServiceTest, SnapshotStreamChecksOffsetsAndAborts) {
  grpc::Status s = Stream({Chunk(0, "abcdefg", false), Chunk(10, "hij", true)});
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(s.error_message().find("expected 7"), std::string::npos) << s.error_message();
  ASSERT_TRUE(WaitFor([&] {
    auto r = b_.handler.received();
    return r.size() == 1 && r[0].aborts == 1;
  }));
  EXPECT_FALSE(b_.handler.received()[0].finished);

  s = Stream({Chunk(3, "abc", true)});
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(s.error_message().find("not 0"), std::string::npos) << s.error_message();
}

TEST_F(RawServiceTest, SnapshotMetaMustNotChangeMidStream) {
  grpc::Status s = Stream({Chunk(0, "abc", false), Chunk(3, "def", true, /*meta_index=*/51)});
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(s.error_message().find("changed in the middle"), std::string::npos) << s.error_message();
  ASSERT_TRUE(WaitFor([&] {
    auto r = b_.handler.received();
    return r.size() == 1 && r[0].aborts == 1;
  }));
}

TEST_F(RawServiceTest, SnapshotStreamEndingEarlyAborts) {
  grpc::Status s = Stream({Chunk(0, "abc", false)});  // no chunk with done
  EXPECT_EQ(s.error_code(), grpc::StatusCode::ABORTED) << s.error_message();
  ASSERT_TRUE(WaitFor([&] {
    auto r = b_.handler.received();
    return r.size() == 1 && r[0].aborts == 1 && !r[0].finished;
  }));
}

TEST_F(RawServiceTest, SnapshotStreamNeedsTheClusterHeader) {
  grpc::Status s = Stream({Chunk(0, "abc", true)}, /*cluster_header=*/false);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_NE(s.error_message().find(PeerTransport::kClusterIdMetadataKey), std::string::npos);
  EXPECT_TRUE(b_.handler.received().empty());
}

TEST_F(RawServiceTest, CompleteStreamIsAcknowledged) {
  grpc::Status s = Stream({Chunk(0, "abc", false), Chunk(3, "de", true)});
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_TRUE(last_response_.success());
  EXPECT_EQ(last_response_.match_index(), 50u);
  auto r = b_.handler.received();
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(r[0].data, "abcde");
  EXPECT_TRUE(r[0].finished);
  EXPECT_EQ(r[0].aborts, 0);
}

// --- snapshots through the transport -------------------------------------------

Message SnapshotRequest(uint64_t from, uint64_t to, uint64_t meta_index) {
  Message m;
  m.type = MessageType::kInstallSnapshot;
  m.from = NodeId(from);
  m.to = NodeId(to);
  m.term = Term(5);
  m.snapshot.meta = Meta(meta_index);
  return m;
}

std::string TestImage(size_t n) {
  std::string s(n, '\0');
  for (size_t i = 0; i < n; ++i) s[i] = static_cast<char>((i * 131 + 7) % 251);
  return s;
}

TEST(PeerTransportSnapshotTest, MultiChunkImageArrivesIntact) {
  PeerTransportOptions opts = Options(1);
  opts.snapshot_chunk_bytes = 7;
  TestNode a(opts), b(Options(2));
  a.handler.image = TestImage(1000);
  a.handler.piece_bytes = 10;  // re-cut into 7-byte chunks
  a.handler.stream_meta = Meta(60);  // newer than the 50 requested
  a.transport->UpsertPeer(NodeId(2), b.address());
  // Messages keep flowing alongside the stream.
  a.transport->Send({SnapshotRequest(1, 2, 50), Heartbeat(1, 2, 1)});

  ASSERT_TRUE(WaitFor([&] { return !a.handler.snapshot_status().empty(); }));
  EXPECT_EQ(a.handler.snapshot_status(),
            (std::vector<std::pair<uint64_t, bool>>{{2, true}}));
  auto r = b.handler.received();
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(r[0].from, NodeId(1));
  EXPECT_EQ(r[0].term, Term(5));
  EXPECT_EQ(r[0].meta, Meta(60));
  EXPECT_EQ(r[0].data, a.handler.image);
  EXPECT_TRUE(r[0].offsets_ok);
  EXPECT_TRUE(r[0].finished);
  EXPECT_EQ(r[0].aborts, 0);
  EXPECT_EQ(r[0].write_sizes.size(), (1000u + 6) / 7);
  for (size_t n : r[0].write_sizes) EXPECT_LE(n, 7u);
  ASSERT_TRUE(WaitFor([&] { return b.handler.message_count() == 1; }));
  EXPECT_EQ(a.transport->Stats(NodeId(2))->snapshots_sent, 1u);
}

TEST(PeerTransportSnapshotTest, EmptyImageIsOneFinalChunk) {
  TestNode a(Options(1)), b(Options(2));
  a.handler.image = "";
  a.transport->UpsertPeer(NodeId(2), b.address());
  a.transport->Send({SnapshotRequest(1, 2, 60)});
  ASSERT_TRUE(WaitFor([&] { return !a.handler.snapshot_status().empty(); }));
  EXPECT_TRUE(a.handler.snapshot_status()[0].second);
  auto r = b.handler.received();
  ASSERT_EQ(r.size(), 1u);
  EXPECT_TRUE(r[0].finished);
  EXPECT_TRUE(r[0].data.empty());
}

TEST(PeerTransportSnapshotTest, SourceFailingMidwayAbortsTheReceiver) {
  PeerTransportOptions opts = Options(1);
  opts.snapshot_chunk_bytes = 7;
  TestNode a(opts), b(Options(2));
  a.handler.image = TestImage(1000);
  a.handler.fail_at_piece = 5;
  a.handler.peer_for_gate = &b.handler;
  a.transport->UpsertPeer(NodeId(2), b.address());
  a.transport->Send({SnapshotRequest(1, 2, 50)});

  ASSERT_TRUE(WaitFor([&] { return !a.handler.snapshot_status().empty(); }));
  EXPECT_EQ(a.handler.snapshot_status(),
            (std::vector<std::pair<uint64_t, bool>>{{2, false}}));
  ASSERT_TRUE(WaitFor([&] {
    auto r = b.handler.received();
    return r.size() == 1 && r[0].aborts == 1;
  }));
  auto r = b.handler.received();
  EXPECT_FALSE(r[0].finished);
  EXPECT_FALSE(r[0].write_sizes.empty());
  EXPECT_EQ(a.transport->Stats(NodeId(2))->snapshots_failed, 1u);
}

TEST(PeerTransportSnapshotTest, RefusedOrUnopenableSnapshotsReportNotDelivered) {
  TestNode a(Options(1)), b(Options(2));
  a.handler.image = TestImage(100);
  b.handler.begin_status = absl::FailedPreconditionError("already installing one");
  a.transport->UpsertPeer(NodeId(2), b.address());
  a.transport->Send({SnapshotRequest(1, 2, 50)});
  ASSERT_TRUE(WaitFor([&] { return a.handler.snapshot_status().size() == 1; }));
  EXPECT_FALSE(a.handler.snapshot_status()[0].second);

  a.handler.open_status = absl::NotFoundError("no snapshot yet");
  a.transport->Send({SnapshotRequest(1, 2, 50)});
  ASSERT_TRUE(WaitFor([&] { return a.handler.snapshot_status().size() == 2; }));
  EXPECT_FALSE(a.handler.snapshot_status()[1].second);
  EXPECT_EQ(a.handler.open_calls(), 2);
  EXPECT_TRUE(b.handler.received().empty());
}

TEST(PeerTransportSnapshotTest, StreamToAHungPeerIsCancelledOnRemoval) {
  BlackHole hole;
  TestNode a(Options(1));
  a.handler.image = TestImage(100);
  a.transport->UpsertPeer(NodeId(2), hole.address());
  a.transport->Send({SnapshotRequest(1, 2, 50)});
  ASSERT_TRUE(WaitFor([&] { return a.handler.open_calls() == 1; }));
  a.transport->RemovePeer(NodeId(2));
  ASSERT_TRUE(WaitFor([&] { return a.handler.snapshot_status().size() == 1; }));
  EXPECT_EQ(a.handler.snapshot_status()[0], std::make_pair(uint64_t{2}, false));
}

// --- forwarded writes -------------------------------------------------------------

struct ForwardWaiter {
  absl::Mutex mu;
  std::vector<ForwardResult> results ABSL_GUARDED_BY(mu);
  std::thread::id thread;
  std::function<void(ForwardResult)> Callback() {
    return [this](ForwardResult r) {
      absl::MutexLock lock(&mu);
      results.push_back(std::move(r));
      thread = std::this_thread::get_id();
    };
  }
  std::optional<ForwardResult> Wait(absl::Duration timeout = kWait) {
    WaitFor([&] {
      absl::MutexLock lock(&mu);
      return !results.empty();
    }, timeout);
    absl::MutexLock lock(&mu);
    if (results.empty()) return std::nullopt;
    return results.front();
  }
  size_t count() {
    absl::MutexLock lock(&mu);
    return results.size();
  }
};

TEST(PeerTransportForwardTest, RoundTripCarriesTheLeadersAnswer) {
  TestNode a(Options(1)), b(Options(2));
  std::vector<std::pair<NodeId, std::string>> seen;
  absl::Mutex seen_mu;
  b.handler.on_forward = [&](NodeId from, std::string command,
                             std::function<void(ForwardResult)> done) {
    {
      absl::MutexLock lock(&seen_mu);
      seen.emplace_back(from, command);
    }
    ForwardResult r;
    if (command == "bad") {
      r.status = absl::FailedPreconditionError("leadership transfer in progress");
      r.leader_id = 2;
    } else if (command == "refused") {
      r.status = NotProposed(absl::ResourceExhaustedError("too many pending requests"));
    } else {
      r.result = std::string("ok\0result", 9);
      r.leader_id = 2;
      r.term = 7;
      r.applied_index = 99;
    }
    done(std::move(r));
  };
  a.transport->UpsertPeer(NodeId(2), b.address());

  ForwardWaiter ok;
  // An unbounded timeout is accepted (no deadline overflow).
  a.transport->ForwardPropose(NodeId(2), "put k v", absl::InfiniteDuration(), ok.Callback());
  std::optional<ForwardResult> r = ok.Wait();
  ASSERT_TRUE(r.has_value());
  EXPECT_TRUE(r->status.ok()) << r->status;
  EXPECT_EQ(r->result, std::string("ok\0result", 9));
  EXPECT_EQ(r->leader_id, 2u);
  EXPECT_EQ(r->term, 7u);
  EXPECT_EQ(r->applied_index, 99u);

  ForwardWaiter bad;
  a.transport->ForwardPropose(NodeId(2), "bad", absl::Seconds(5), bad.Callback());
  r = bad.Wait();
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(r->status.message(), "leadership transfer in progress");
  EXPECT_EQ(r->leader_id, 2u);
  EXPECT_FALSE(IsNotProposed(r->status));  // indeterminate unless marked

  // The "not proposed" mark crosses the hop: the follower's client may
  // retry knowing the write did not take effect.
  ForwardWaiter refused;
  a.transport->ForwardPropose(NodeId(2), "refused", absl::Seconds(5), refused.Callback());
  r = refused.Wait();
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_TRUE(IsNotProposed(r->status));

  absl::MutexLock lock(&seen_mu);
  ASSERT_EQ(seen.size(), 3u);
  EXPECT_EQ(seen[0], std::make_pair(NodeId(1), std::string("put k v")));
  EXPECT_EQ(ok.count(), 1u);
  EXPECT_EQ(bad.count(), 1u);
}

// A leader's handler that holds every forwarded write without answering
// until AnswerAll (a late answer).
class HeldForwards {
 public:
  explicit HeldForwards(TestNode& leader) {
    leader.handler.on_forward = [this](NodeId, std::string, std::function<void(ForwardResult)> done) {
      absl::MutexLock lock(&mu_);
      held_.push_back(std::move(done));
    };
  }
  size_t count() {
    absl::MutexLock lock(&mu_);
    return held_.size();
  }
  void AnswerAll() {
    std::vector<std::function<void(ForwardResult)>> held;
    {
      absl::MutexLock lock(&mu_);
      held.swap(held_);
    }
    for (auto& done : held) done(ForwardResult{});
  }

 private:
  absl::Mutex mu_;
  std::vector<std::function<void(ForwardResult)>> held_ ABSL_GUARDED_BY(mu_);
};

TEST(PeerTransportForwardTest, TimesOutWhenTheLeaderDoesNotAnswer) {
  TestNode a(Options(1)), b(Options(2));
  HeldForwards held(b);
  a.transport->UpsertPeer(NodeId(2), b.address());

  ForwardWaiter w;
  const auto start = std::chrono::steady_clock::now();
  a.transport->ForwardPropose(NodeId(2), "slow", absl::Milliseconds(300), w.Callback());
  std::optional<ForwardResult> r = w.Wait(absl::Seconds(5));
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status.code(), absl::StatusCode::kDeadlineExceeded) << r->status;
  EXPECT_GE(SecondsSince(start), 0.25);

  // The leader answers late: harmless, and the follower's done stays single.
  ASSERT_EQ(held.count(), 1u);
  held.AnswerAll();
  absl::SleepFor(absl::Milliseconds(100));
  EXPECT_EQ(w.count(), 1u);
}

TEST(PeerTransportForwardTest, UnknownLeaderAndDroppedAnswer) {
  TestNode a(Options(1)), b(Options(2));
  b.handler.on_forward = [](NodeId, std::string, std::function<void(ForwardResult)>) {
    // Drops `done` without calling it.
  };

  ForwardWaiter unknown;
  a.transport->ForwardPropose(NodeId(9), "x", absl::Seconds(1), unknown.Callback());
  std::optional<ForwardResult> r = unknown.Wait();
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status.code(), absl::StatusCode::kUnavailable);
  EXPECT_NE(r->status.message().find("node 9"), std::string::npos) << r->status;
  {
    absl::MutexLock lock(&unknown.mu);
    EXPECT_NE(unknown.thread, std::this_thread::get_id()) << "done ran inside ForwardPropose";
  }

  a.transport->UpsertPeer(NodeId(2), b.address());
  ForwardWaiter dropped;
  a.transport->ForwardPropose(NodeId(2), "x", absl::Seconds(5), dropped.Callback());
  r = dropped.Wait();
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status.code(), absl::StatusCode::kInternal);
  EXPECT_NE(r->status.message().find("without answering"), std::string::npos) << r->status;
}

TEST(PeerTransportForwardTest, DestroyingTheTransportAnswersCallsInFlight) {
  BlackHole hole;
  ForwardWaiter w;
  {
    TestNode a(Options(1));
    a.handler.image = TestImage(100);
    a.transport->UpsertPeer(NodeId(2), hole.address());
    a.transport->UpsertPeer(NodeId(3), absl::StrCat("127.0.0.1:", ClosedPort()));
    a.transport->ForwardPropose(NodeId(2), "x", absl::Seconds(60), w.Callback());
    a.transport->Send({Heartbeat(1, 2, 1), Heartbeat(1, 3, 1), SnapshotRequest(1, 2, 50)});
    ASSERT_TRUE(WaitFor([&] { return a.handler.open_calls() == 1; }));
    const auto start = std::chrono::steady_clock::now();
    a.Stop();
    EXPECT_LT(SecondsSince(start), 5.0);
    // The stream that was opened got its report, even at shutdown.
    EXPECT_EQ(a.handler.snapshot_status(),
              (std::vector<std::pair<uint64_t, bool>>{{2, false}}));
  }
  ASSERT_EQ(w.count(), 1u);
  std::optional<ForwardResult> r = w.Wait(absl::ZeroDuration());
  EXPECT_EQ(r->status.code(), absl::StatusCode::kCancelled) << r->status;
}

TEST(PeerTransportForwardTest, CancelForwardsAnswersCallsInFlightAndLeavesLaterOnes) {
  TestNode a(Options(1)), b(Options(2));
  HeldForwards held(b);
  a.transport->UpsertPeer(NodeId(2), b.address());
  ForwardWaiter stuck;
  a.transport->ForwardPropose(NodeId(2), "stuck", absl::Seconds(60), stuck.Callback());
  ASSERT_TRUE(WaitFor([&] { return held.count() == 1; }));
  const auto start = std::chrono::steady_clock::now();
  a.transport->CancelForwards();
  std::optional<ForwardResult> r = stuck.Wait(absl::Seconds(5));
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status.code(), absl::StatusCode::kCancelled) << r->status;
  EXPECT_LT(SecondsSince(start), 5.0);

  // A forward started afterwards goes through as usual.
  held.AnswerAll();  // the leader's late answer to the cancelled one: harmless
  b.handler.on_forward = [](NodeId, std::string, std::function<void(ForwardResult)> done) {
    done(ForwardResult{});
  };
  ForwardWaiter later;
  a.transport->ForwardPropose(NodeId(2), "later", absl::Seconds(5), later.Callback());
  r = later.Wait(absl::Seconds(5));
  ASSERT_TRUE(r.has_value());
  EXPECT_TRUE(r->status.ok()) << r->status;
  EXPECT_EQ(stuck.count(), 1u);
}

TEST(PeerTransportOptionsTest, ValidateNamesTheProblem) {
  PeerTransportOptions o = Options(1);
  EXPECT_TRUE(o.Validate().ok());
  o.self = raft::kNoNode;
  EXPECT_NE(o.Validate().message().find("self"), std::string::npos);
  o = Options(1);
  o.reconnect_backoff_max = absl::Milliseconds(1);
  EXPECT_NE(o.Validate().message().find("reconnect_backoff"), std::string::npos);
  o = Options(1);
  o.snapshot_chunk_bytes = o.max_message_bytes;
  EXPECT_NE(o.Validate().message().find("snapshot_chunk_bytes"), std::string::npos);
}

}  // namespace
}  // namespace quorumkv::server
