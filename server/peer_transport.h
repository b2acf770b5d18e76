// The peer transport: carries Raft messages, snapshots and forwarded client
// writes between quorumkv nodes over gRPC (proto/raft.proto, RaftPeer).
//
// Sending side. Every peer has a bounded queue and a sender thread. The
// caller's thread (the node's event loop) only enqueues: Send() never waits
// on the network. Messages go on one long-lived SendStream per peer (gRPC
// callback client API), one write in flight at a time: whatever queued up
// meanwhile becomes the next MessageBatch (at most max_batch_bytes). A
// stream per peer, rather than an RPC per batch, spares each batch a call's
// set-up and its answer, and keeps a peer's messages in order. A write that
// fails or hangs longer than rpc_timeout ends the stream: its messages and
// everything still queued are dropped (stale by the time the peer answers
// again; Raft retransmits), OnUnreachable is reported, and the sender backs
// off exponentially with jitter before it opens a new stream.
// A kInstallSnapshot message starts a snapshot stream on a thread of its
// own, so a long transfer never delays heartbeats.
//
// Receiving side. service() is the RaftPeer service (callback API) to
// register on the node's grpc::Server. It refuses another cluster's traffic
// (FAILED_PRECONDITION), decodes through raft_wire.h (INVALID_ARGUMENT on
// malformed input) and calls the PeerHandler.
//
// THREADS AND ORDER (what the node must know):
//  - OnMessages, BeginSnapshot, SnapshotReceiver::*, OnForwardPropose run on
//    gRPC server threads. One peer's batches arrive one at a time and in
//    send order (minus the ones dropped; a batch of an earlier stream may
//    still be delivered after a new stream opened). Raft tolerates both loss
//    and reordering.
//  - OnUnreachable runs on the peer's sender thread; OpenSnapshot, the
//    SnapshotStream and OnSnapshotStatus on the peer's snapshot thread.
//  - ForwardPropose's `done` runs on a gRPC client thread (or, when there is
//    no address for the leader, on the transport's own callback thread).
//  - The handler is never called from inside a PeerTransport method, so the
//    node may call the transport while holding its own locks. It must not
//    hold a lock the handler needs while destroying the transport (the
//    destructor joins threads that may be inside the handler).
//  - Every snapshot stream that was opened (OpenSnapshot called) is reported
//    exactly once with OnSnapshotStatus, even when RemovePeer or a changed
//    address cancelled it.
//
// LIFETIME: the transport owns service(). Call StopServingStreams() and then
// shut the grpc::Server down (with a deadline) before destroying the
// transport (open SendStreams would otherwise hold the shutdown to its
// deadline), and complete every `done` of
// OnForwardPropose before or during that shutdown: a unary call whose
// `done` is never run keeps grpc::Server::Shutdown waiting (if the handler
// destroys a `done` without running it, the call is answered INTERNAL).
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "raft/message.h"
#include "raft/types.h"

namespace grpc {
class Service;
class ServerBuilder;
}  // namespace grpc

namespace quorumkv::server {

struct ForwardResult {            // the leader's answer to a forwarded write
  absl::Status status;            // the leader's outcome (code + message)
  std::string result;             // encoded kv::CommandResult on success
  uint64_t leader_id = 0, term = 0, applied_index = 0;
};

// Where a received snapshot goes (implemented by the node; one per stream).
class SnapshotReceiver {
 public:
  virtual ~SnapshotReceiver() = default;
  virtual absl::Status Write(uint64_t offset, std::string_view data) = 0;  // chunks in order
  // The whole image arrived: staged durably; the node then hands the core a
  // kInstallSnapshot message itself (see MakeInstallSnapshotMessage).
  virtual absl::Status Finish() = 0;
  // The stream broke (or Write/Finish failed): discard what was staged.
  // Called at most once, and never after a successful Finish.
  virtual void Abort() = 0;
};

// Where snapshot images come from on the leader (implemented by the node).
class SnapshotStream {
 public:
  virtual ~SnapshotStream() = default;
  virtual const raft::SnapshotMeta& meta() const = 0;   // may be newer than requested
  // Pieces of any size; the transport re-cuts them into chunks of
  // snapshot_chunk_bytes. Offsets must follow on (0, then the sum of the
  // sizes so far); the last piece has `last` set.
  struct Chunk { uint64_t offset = 0; std::string data; bool last = false; };
  virtual absl::StatusOr<Chunk> Next() = 0;
};

class PeerHandler {  // called on transport and gRPC threads; must not block for long
 public:
  virtual ~PeerHandler() = default;
  virtual void OnMessages(std::vector<raft::Message> messages) = 0;  // one peer's batch, in order
  // A stream starts. An error refuses it (the leader sees the status).
  virtual absl::StatusOr<std::unique_ptr<SnapshotReceiver>> BeginSnapshot(
      raft::NodeId from, raft::Term term, const raft::SnapshotMeta& meta) = 0;
  // A follower forwarded a client write; call done exactly once, from any thread.
  virtual void OnForwardPropose(raft::NodeId from, std::string command,
                                std::function<void(ForwardResult)> done) = 0;
  virtual absl::StatusOr<std::unique_ptr<SnapshotStream>> OpenSnapshot(
      const raft::SnapshotMeta& requested) = 0;
  // Transport feedback for the core (from transport threads).
  virtual void OnUnreachable(raft::NodeId peer) = 0;
  virtual void OnSnapshotStatus(raft::NodeId peer, bool delivered) = 0;
};

struct PeerTransportOptions {
  uint64_t cluster_id = 0;   // messages carrying another cluster id are refused
  raft::NodeId self;
  size_t max_queued_messages_per_peer = 4096;   // beyond: drop + OnUnreachable
  size_t max_batch_bytes = 4 << 20;             // one stream write carries at most this
  // A stream write pending this long ends the stream (a hung peer); also the
  // deadline of forwarded writes' and snapshot chunks' defaults.
  absl::Duration rpc_timeout = absl::Seconds(2);
  absl::Duration reconnect_backoff_min = absl::Milliseconds(50), reconnect_backoff_max = absl::Seconds(2);
  size_t snapshot_chunk_bytes = 1 << 20;
  absl::Duration snapshot_chunk_timeout = absl::Seconds(10);
  // The largest request the RaftPeer service accepts (ConfigureServer sets
  // it on the node's peer server, for every service registered there;
  // gRPC's default of 4 MiB is below one full batch plus framing). A single
  // message whose estimated size exceeds it is dropped by the sender (it
  // could never be delivered) and reported unreachable. Also the largest
  // answer to a forwarded write the client side accepts.
  size_t max_message_bytes = 64 << 20;
  // Seed of the back-off jitter; 0 draws one from std::random_device.
  uint64_t jitter_seed = 0;

  // A clear error for an unusable option (zero self, zero sizes, ...). The
  // constructor clamps such values to the nearest usable ones.
  absl::Status Validate() const;
};

// Counters of one peer, for metrics and tests.
struct PeerStats {
  uint64_t messages_sent = 0;      // in stream writes that completed
  uint64_t batches_sent = 0;       // stream writes that completed
  uint64_t streams_opened = 0;     // SendStreams started
  uint64_t rpc_failures = 0;       // SendStreams that failed (write error, end, hang)
  uint64_t dropped_failed = 0;     // messages of failed writes, or flushed after one
  uint64_t dropped_overflow = 0;   // refused because the queue was full
  uint64_t dropped_oversize = 0;   // larger than max_message_bytes
  uint64_t snapshots_sent = 0;     // streams the peer acknowledged
  uint64_t snapshots_failed = 0;   // streams that failed or were cancelled
  size_t queued = 0;               // waiting in the queue now
};

class PeerTransport {
 public:
  PeerTransport(PeerTransportOptions options, PeerHandler* handler);
  ~PeerTransport();                       // cancels calls, joins threads; safe while peers are down
  PeerTransport(const PeerTransport&) = delete;
  PeerTransport& operator=(const PeerTransport&) = delete;

  grpc::Service* service();               // the RaftPeer service, to register on the node's server
  // Sets the server-side limits the service needs (max receive size).
  void ConfigureServer(grpc::ServerBuilder& builder) const;
  // Ends the SendStreams peers keep open to this node, and refuses new ones
  // (UNAVAILABLE; the peers retry after a back-off). Call before shutting
  // the grpc::Server down.
  void StopServingStreams();

  // Adds a peer or changes its address (host:port). A changed address
  // replaces the peer's connection: queued messages are dropped, its stream
  // and a snapshot stream in flight are cancelled. Id 0 and self are ignored.
  void UpsertPeer(raft::NodeId id, std::string address);
  // Stops sending to the peer: its queue is dropped, its stream and its
  // snapshot stream are cancelled (the stream is reported as not
  // delivered); forwarded writes already in flight run to completion (a
  // client waits for their outcome). Never blocks: the peer's threads wind
  // down in the background and are joined later.
  void RemovePeer(raft::NodeId id);

  // Never blocks on the network: enqueues per peer. kInstallSnapshot messages
  // start a snapshot stream (one at a time per peer) whose outcome is
  // reported with OnSnapshotStatus; one requested while a stream to the
  // same peer runs is dropped (that stream's outcome answers it). Messages
  // to unknown peers are dropped.
  void Send(std::vector<raft::Message> messages);

  void ForwardPropose(raft::NodeId leader, std::string command, absl::Duration timeout,
                      std::function<void(ForwardResult)> done);  // done called exactly once
  // Cancels every forwarded write in flight (their `done`s run with
  // CANCELLED, on the transport's threads): at shutdown, so that a write
  // forwarded to a leader that does not answer holds nothing up. Forwards
  // started later are not affected. Never blocks.
  void CancelForwards();

  // Counters of a peer; nullopt for an unknown one.
  std::optional<PeerStats> Stats(raft::NodeId peer) const;

  // The gRPC metadata key that carries the cluster id on InstallSnapshot
  // streams (InstallSnapshotChunk has no field for it).
  static constexpr char kClusterIdMetadataKey[] = "quorumkv-cluster-id";

 private:
  class Peer;
  class Service;
  class CallbackRunner;

  void ReapRetiredLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const PeerTransportOptions options_;
  PeerHandler* const handler_;
  std::unique_ptr<CallbackRunner> runner_;
  std::unique_ptr<Service> service_;

  mutable absl::Mutex mu_;
  std::map<raft::NodeId, std::shared_ptr<Peer>> peers_ ABSL_GUARDED_BY(mu_);
  // Removed or replaced peers whose threads and calls are winding down.
  std::vector<std::shared_ptr<Peer>> retired_ ABSL_GUARDED_BY(mu_);
  uint64_t next_seed_ ABSL_GUARDED_BY(mu_);
};

}  // namespace quorumkv::server
