#include "server/peer_transport.h"

#include <grpcpp/grpcpp.h>
#include <pthread.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <climits>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <random>
#include <set>
#include <thread>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "raft.grpc.pb.h"
#include "server/not_proposed.h"
#include "server/raft_wire.h"

namespace quorumkv::server {
namespace {

using Clock = std::chrono::steady_clock;

grpc::Status ToGrpcStatus(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  // absl and gRPC share the canonical code numbering.
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()), std::string(status.message()));
}

absl::Status FromGrpcStatus(const grpc::Status& status, absl::string_view context) {
  if (status.ok()) return absl::OkStatus();
  return absl::Status(static_cast<absl::StatusCode>(status.error_code()),
                      absl::StrCat(context, ": ", status.error_message()));
}

// Durations as the standard clocks take them; an infinite (or absurdly
// long) one becomes a year, so adding it to now() cannot overflow.
std::chrono::nanoseconds ToChrono(absl::Duration d) {
  return absl::ToChronoNanoseconds(std::clamp(d, absl::ZeroDuration(), absl::Hours(24 * 365)));
}

std::chrono::system_clock::time_point DeadlineAfter(absl::Duration timeout) {
  return std::chrono::system_clock::now() +
         std::chrono::duration_cast<std::chrono::system_clock::duration>(ToChrono(timeout));
}

Clock::duration ToClock(absl::Duration d) {
  return std::chrono::duration_cast<Clock::duration>(ToChrono(d));
}

int ClampToInt(int64_t v) {
  return static_cast<int>(std::clamp<int64_t>(v, 1, INT_MAX));
}

// Replaces unusable option values by the nearest usable ones, so a
// misconfigured transport degrades instead of dividing by zero or never
// sending (Validate() reports them).
PeerTransportOptions Sanitized(PeerTransportOptions o) {
  o.max_queued_messages_per_peer = std::max<size_t>(o.max_queued_messages_per_peer, 1);
  o.max_message_bytes = std::clamp<size_t>(o.max_message_bytes, 64 << 10, INT_MAX);
  o.max_batch_bytes = std::clamp<size_t>(o.max_batch_bytes, 1, o.max_message_bytes);
  if (o.rpc_timeout <= absl::ZeroDuration()) o.rpc_timeout = absl::Seconds(2);
  if (o.reconnect_backoff_min <= absl::ZeroDuration()) o.reconnect_backoff_min = absl::Milliseconds(1);
  o.reconnect_backoff_max = std::max(o.reconnect_backoff_max, o.reconnect_backoff_min);
  // Room for the chunk's header (meta with the configuration) in one message.
  o.snapshot_chunk_bytes =
      std::clamp<size_t>(o.snapshot_chunk_bytes, 1, o.max_message_bytes - (32 << 10));
  if (o.snapshot_chunk_timeout <= absl::ZeroDuration()) o.snapshot_chunk_timeout = absl::Seconds(10);
  return o;
}

// The client side of one InstallSnapshot stream. The snapshot thread drives
// it (one write at a time) and waits on it; gRPC threads only record
// completions, so no gRPC callback ever runs source or handler code.
class SnapshotWriter final : public grpc::ClientWriteReactor<raftpb::InstallSnapshotChunk> {
 public:
  grpc::ClientContext ctx;
  raftpb::InstallSnapshotResponse response;
  raftpb::InstallSnapshotChunk chunk;  // the write in flight

  // Starts writing `chunk` (the call is started on the first write).
  void Write(bool last) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      write_pending_ = true;
    }
    if (last) {
      StartWriteLast(&chunk, grpc::WriteOptions());
    } else {
      StartWrite(&chunk);
    }
    if (!started_) {
      started_ = true;
      StartCall();
    }
  }
  bool started() const { return started_; }

  enum class WriteOutcome { kOk, kFailed, kTimedOut };
  WriteOutcome WaitWrite(absl::Duration timeout) {
    std::unique_lock<std::mutex> lock(mu_);
    if (!cv_.wait_for(lock, ToClock(timeout), [&] { return !write_pending_ || done_; })) {
      return WriteOutcome::kTimedOut;
    }
    return (!write_pending_ && write_ok_) ? WriteOutcome::kOk : WriteOutcome::kFailed;
  }
  // Waits for the end of the call; false if `timeout` passed first.
  bool WaitDone(absl::Duration timeout) {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, ToClock(timeout), [&] { return done_; });
  }
  void WaitDone() {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [&] { return done_; });
  }
  grpc::Status status() {
    std::lock_guard<std::mutex> lock(mu_);
    return status_;
  }

  void OnWriteDone(bool ok) override {
    std::lock_guard<std::mutex> lock(mu_);
    write_pending_ = false;
    write_ok_ = ok;
    cv_.notify_all();
  }
  void OnDone(const grpc::Status& status) override {
    std::lock_guard<std::mutex> lock(mu_);
    done_ = true;
    status_ = status;
    cv_.notify_all();
  }

 private:
  bool started_ = false;  // only the snapshot thread touches it
  std::mutex mu_;
  std::condition_variable cv_;
  bool write_pending_ = false;
  bool write_ok_ = false;
  bool done_ = false;
  grpc::Status status_;
};

// Re-cuts a SnapshotStream's pieces into chunks of a fixed size, checking
// that the source's offsets follow on.
class Rechunker {
 public:
  Rechunker(SnapshotStream* source, size_t chunk_bytes)
      : source_(source), chunk_bytes_(chunk_bytes) {}

  // The next chunk's data into *data; *last set on the final one.
  // `stopping` is polled between pieces of the source.
  absl::Status Next(const std::function<bool()>& stopping, uint64_t* offset, std::string* data,
                    bool* last) {
    while (!source_last_ && buffer_.size() - position_ < chunk_bytes_) {
      if (stopping()) return absl::CancelledError("the snapshot stream was cancelled");
      absl::StatusOr<SnapshotStream::Chunk> piece = source_->Next();
      if (!piece.ok()) {
        return absl::Status(piece.status().code(),
                            absl::StrCat("reading the snapshot image: ", piece.status().message()));
      }
      if (piece->offset != source_offset_) {
        return absl::InternalError(absl::StrCat("the snapshot source gave offset ", piece->offset,
                                                ", expected ", source_offset_));
      }
      source_offset_ += piece->data.size();
      source_last_ = piece->last;
      if (position_ > 0 && position_ >= buffer_.size() / 2) {
        buffer_.erase(0, position_);
        position_ = 0;
      }
      buffer_ += piece->data;
    }
    const size_t n = std::min(chunk_bytes_, buffer_.size() - position_);
    *offset = out_offset_;
    data->assign(buffer_, position_, n);
    position_ += n;
    out_offset_ += n;
    *last = source_last_ && position_ == buffer_.size();
    return absl::OkStatus();
  }

 private:
  SnapshotStream* const source_;
  const size_t chunk_bytes_;
  std::string buffer_;
  size_t position_ = 0;
  uint64_t source_offset_ = 0;
  uint64_t out_offset_ = 0;
  bool source_last_ = false;
};

}  // namespace

absl::Status PeerTransportOptions::Validate() const {
  if (self == raft::kNoNode) return absl::InvalidArgumentError("peer transport: self node id is 0");
  if (max_queued_messages_per_peer == 0) {
    return absl::InvalidArgumentError("peer transport: max_queued_messages_per_peer must be >= 1");
  }
  if (max_batch_bytes == 0) return absl::InvalidArgumentError("peer transport: max_batch_bytes must be >= 1");
  if (max_message_bytes < (64 << 10) || max_message_bytes > INT_MAX) {
    return absl::InvalidArgumentError(
        "peer transport: max_message_bytes must be between 64 KiB and 2 GiB - 1");
  }
  if (max_batch_bytes > max_message_bytes) {
    return absl::InvalidArgumentError("peer transport: max_batch_bytes exceeds max_message_bytes");
  }
  if (rpc_timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("peer transport: rpc_timeout must be positive");
  }
  if (reconnect_backoff_min <= absl::ZeroDuration() || reconnect_backoff_max < reconnect_backoff_min) {
    return absl::InvalidArgumentError(
        "peer transport: need 0 < reconnect_backoff_min <= reconnect_backoff_max");
  }
  if (snapshot_chunk_bytes == 0 || snapshot_chunk_bytes + (32 << 10) > max_message_bytes) {
    return absl::InvalidArgumentError(
        "peer transport: snapshot_chunk_bytes must be >= 1 and leave 32 KiB below max_message_bytes");
  }
  if (snapshot_chunk_timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("peer transport: snapshot_chunk_timeout must be positive");
  }
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------
// Runs callbacks that must not run inside the caller's call (a `done` for a
// ForwardPropose that could not even start).

class PeerTransport::CallbackRunner {
 public:
  CallbackRunner() : thread_([this] { Run(); }) {}
  // Runs what is queued, then joins.
  ~CallbackRunner() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stopping_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }
  void Post(std::function<void()> fn) {
    std::lock_guard<std::mutex> lock(mu_);
    queue_.push_back(std::move(fn));
    cv_.notify_all();
  }

 private:
  void Run() {
    std::unique_lock<std::mutex> lock(mu_);
    while (true) {
      cv_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
      if (queue_.empty()) return;  // stopping, and nothing left
      std::function<void()> fn = std::move(queue_.front());
      queue_.pop_front();
      lock.unlock();
      fn();
      lock.lock();
    }
  }

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> queue_;
  bool stopping_ = false;
  std::thread thread_;  // last: starts once the members above exist
};

// ---------------------------------------------------------------------------
// One peer: its connection, queue, sender thread and snapshot thread.
//
// Lifetime: created and started by UpsertPeer; Stop() (never blocking) when
// removed or replaced; then Finished() once its threads have exited and no
// call is in flight, and only then destroyed (after Join()). gRPC callbacks
// hold a raw pointer: every call is counted (streams_, inflight_forwards_)
// and the peer outlives the count.

class PeerTransport::Peer {
 public:
  Peer(const PeerTransportOptions& options, PeerHandler* handler, CallbackRunner* runner,
       raft::NodeId id, std::string address, uint64_t seed)
      : options_(options), handler_(handler), runner_(runner), id_(id),
        address_(std::move(address)), rng_(seed) {
    grpc::ChannelArguments args;
    // gRPC's own reconnect back-off defaults to 1 s growing to 120 s: a
    // restarted peer would stay unreached for minutes. Use ours.
    args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS,
                ClampToInt(absl::ToInt64Milliseconds(options_.reconnect_backoff_min)));
    args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS,
                ClampToInt(absl::ToInt64Milliseconds(options_.reconnect_backoff_max)));
    // Despite its name, this one is the connect timeout of an attempt
    // (MIN_CONNECT_TIMEOUT in gRPC's doc/connection-backoff.md), not a
    // back-off: set to the 50 ms minimum back-off, a connection that needs
    // longer than that to set up would never come up. Give an attempt as
    // long as an RPC.
    args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS,
                ClampToInt(absl::ToInt64Milliseconds(options_.rpc_timeout)));
    // A forwarded write's answer carries a command result (it may hold a
    // value): allow what the server side allows.
    args.SetMaxReceiveMessageSize(static_cast<int>(options_.max_message_bytes));
    // A connection of our own per peer: a replaced peer gets a fresh one.
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    channel_ = grpc::CreateCustomChannel(address_, grpc::InsecureChannelCredentials(), args);
    stub_ = raftpb::RaftPeer::NewStub(channel_);
  }

  ~Peer() {
    // Normally joined already (Finished() then Join()); the transport's
    // destructor gets here only after Stop() and WaitIdle().
    if (sender_.joinable()) sender_.join();
  }

  const std::string& address() const { return address_; }

  void Start() {
    sender_ = std::thread([this] {
      pthread_setname_np(pthread_self(), "peer-sender");
      SenderLoop();
    });
  }

  void Enqueue(std::vector<raft::Message> messages) {
    bool wake = false;
    std::unique_lock<std::mutex> lock(mu_);
    if (stopping_) return;
    for (raft::Message& m : messages) {
      if (m.type == raft::MessageType::kInstallSnapshot) {
        // One stream at a time: a request made while one runs is answered
        // by that stream's OnSnapshotStatus; a pending one is superseded.
        if (!snapshot_active_) {
          snapshot_request_ = std::move(m);
          wake = true;
        }
        continue;
      }
      if (ApproximateWireSize(m) > options_.max_message_bytes) {
        ++stats_.dropped_oversize;
        report_unreachable_ = true;
        wake = true;
        continue;
      }
      if (queue_.size() >= options_.max_queued_messages_per_peer) {
        ++stats_.dropped_overflow;
        // One report until an RPC completes: the queue stays full while
        // the peer hangs, and a report per dropped message would flood
        // the node's event loop.
        if (!overflow_reported_) {
          overflow_reported_ = true;
          report_unreachable_ = true;
          wake = true;
        }
        continue;
      }
      queue_.push_back(std::move(m));
    }
    // During a back-off the sender thread sends when it ends: it must know
    // there is something to wait for.
    if (!queue_.empty() && Clock::now() < retry_at_) wake = true;
    if (wake) cv_.notify_all();
    PumpSendsLocked(lock);
  }

  // Stops sending and cancels the streams and the snapshot stream in
  // flight (and, if asked, the forwarded writes). Never blocks.
  void Stop(bool cancel_forwards) {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
    // Client callbacks never run inline in TryCancel (gRPC schedules them
    // on its own threads), so cancelling under our lock cannot deadlock.
    for (BatchStream* stream : streams_) stream->ctx.TryCancel();
    if (snapshot_writer_ != nullptr) snapshot_writer_->ctx.TryCancel();
    if (cancel_forwards) {
      for (ForwardCall* call : forward_calls_) call->ctx.TryCancel();
    }
    cv_.notify_all();
  }

  // Cancels the forwarded writes in flight; their `done`s run with
  // CANCELLED. Never blocks.
  void CancelForwards() {
    std::lock_guard<std::mutex> lock(mu_);
    for (ForwardCall* call : forward_calls_) call->ctx.TryCancel();
  }

  // The sender thread has exited (after its snapshot thread and Send
  // RPCs) and no forwarded write is in flight.
  bool Finished() {
    std::lock_guard<std::mutex> lock(mu_);
    return sender_exited_ && inflight_forwards_ == 0;
  }
  void WaitIdle() {
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] { return sender_exited_ && inflight_forwards_ == 0; });
    }
    if (sender_.joinable()) sender_.join();
  }
  void Join() {
    if (sender_.joinable()) sender_.join();
  }

  PeerStats Stats() {
    std::lock_guard<std::mutex> lock(mu_);
    PeerStats s = stats_;
    s.queued = queue_.size();
    return s;
  }

  void StartForward(std::string command, absl::Duration timeout,
                    std::function<void(ForwardResult)> done) {
    auto* call = new ForwardCall;
    call->done = std::move(done);
    call->request.set_from(options_.self.value());
    call->request.set_cluster_id(options_.cluster_id);
    call->request.set_command(std::move(command));
    call->ctx.set_deadline(DeadlineAfter(timeout));
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (stopping_) {
        ForwardResult result;
        result.status = NotProposed(absl::UnavailableError(
            absl::StrCat("node ", id_.value(), " was removed from this node's peers")));
        runner_->Post([call, result = std::move(result)]() mutable {
          call->done(std::move(result));
          delete call;
        });
        return;
      }
      forward_calls_.insert(call);
      ++inflight_forwards_;
    }
    stub_->async()->ForwardPropose(&call->ctx, &call->request, &call->response,
                                   [this, call](grpc::Status status) {
                                     OnForwardDone(call, status);
                                   });
  }

 private:
  // One SendStream. The fields below ctx are guarded by the peer's mu_.
  // The stream holds a hold (so gRPC calls OnDone only after it is
  // released) until no write will follow: then MaybeReleaseLocked gives it
  // up, outside mu_, since OnDone may run inside RemoveHold.
  class BatchStream final : public grpc::ClientBidiReactor<raftpb::MessageBatch, raftpb::SendAck> {
   public:
    explicit BatchStream(Peer* peer) : peer_(peer) {}
    void OnWriteDone(bool ok) override { peer_->OnStreamWriteDone(this, ok); }
    // The receiver never writes: the read ends when the stream does.
    void OnReadDone(bool /*ok*/) override { peer_->OnStreamEnded(this); }
    void OnDone(const grpc::Status& /*status*/) override { peer_->OnStreamDone(this); }

    grpc::ClientContext ctx;
    raftpb::MessageBatch batch;  // the write in flight
    raftpb::SendAck ack;         // the read that waits for the end
    size_t messages = 0;         // in `batch`
    bool writing = false;        // a write is in flight
    bool failed = false;         // ended, failed or cancelled: no more writes
    bool released = false;       // the hold is given up
    bool cancelled_for_hang = false;

   private:
    Peer* const peer_;
  };
  struct ForwardCall {
    grpc::ClientContext ctx;
    raftpb::ForwardRequest request;
    raftpb::ForwardResponse response;
    std::function<void(ForwardResult)> done;
  };

  // The sender thread: reports, starts snapshot streams, and issues Send
  // RPCs while the pipeline has room and no back-off is running.
  void SenderLoop() {
    std::unique_lock<std::mutex> lock(mu_);
    while (!stopping_) {
      if (report_unreachable_) {
        report_unreachable_ = false;
        lock.unlock();
        handler_->OnUnreachable(id_);
        lock.lock();
        continue;
      }
      const Clock::time_point now = Clock::now();
      const bool backing_off = now < retry_at_;
      if (!backing_off && snapshot_request_.has_value() && !snapshot_active_) {
        raft::Message request = std::move(*snapshot_request_);
        snapshot_request_.reset();
        snapshot_active_ = true;
        lock.unlock();
        // The previous stream cleared snapshot_active_ before reporting;
        // let it finish that report first, so reports keep stream order.
        if (snapshot_thread_.joinable()) snapshot_thread_.join();
        snapshot_thread_ = std::thread([this, request = std::move(request)] {
          SnapshotLoop(request);
        });
        lock.lock();
        continue;
      }
      if (!backing_off && !queue_.empty() && (stream_ == nullptr || !stream_->writing)) {
        PumpSendsLocked(lock);  // after a back-off
        continue;
      }
      // A write pending for rpc_timeout: the peer hangs (or its connection
      // does). Ending the stream reports it and drops what waits for it.
      Clock::time_point wake_at = Clock::time_point::max();
      if (stream_ != nullptr && stream_->writing && !stream_->cancelled_for_hang) {
        const Clock::time_point hang_at = write_started_ + ToClock(options_.rpc_timeout);
        if (now >= hang_at) {
          stream_->cancelled_for_hang = true;
          stream_->ctx.TryCancel();
          continue;
        }
        wake_at = hang_at;
      }
      if (backing_off && (snapshot_request_.has_value() || !queue_.empty())) {
        wake_at = std::min(wake_at, retry_at_);
      }
      if (wake_at == Clock::time_point::max()) {
        sender_idle_ = true;  // the next write wakes it, to watch that write
        cv_.wait(lock);
        sender_idle_ = false;
      } else {
        cv_.wait_until(lock, wake_at);
      }
    }
    // Stopping. A snapshot request that never started is answered now, so
    // the core is not left waiting for a stream that will not run.
    const bool unanswered_snapshot = snapshot_request_.has_value();
    snapshot_request_.reset();
    stats_.dropped_failed += queue_.size();
    queue_.clear();
    lock.unlock();
    if (unanswered_snapshot) handler_->OnSnapshotStatus(id_, false);
    if (snapshot_thread_.joinable()) snapshot_thread_.join();
    lock.lock();
    cv_.wait(lock, [&] { return live_streams_ == 0; });
    sender_exited_ = true;
    cv_.notify_all();
  }

  // Writes what is queued as the next batch of the peer's stream (opening
  // one if needed) unless a write is in flight or a back-off runs, on the
  // calling thread: the node's loop when it enqueues, a gRPC thread when a
  // write completes. Waking the sender thread for each batch instead cost
  // two more thread hand-offs per batch and peer (bench/RESULTS.md).
  void PumpSendsLocked(std::unique_lock<std::mutex>& lock) {
    if (stopping_ || queue_.empty() || Clock::now() < retry_at_) return;
    if (stream_ != nullptr && stream_->writing) return;  // OnStreamWriteDone pumps
    const bool open = stream_ == nullptr;
    if (open) {
      stream_ = new BatchStream(this);
      streams_.insert(stream_);
      ++live_streams_;
      ++stats_.streams_opened;
    }
    BatchStream* stream = stream_;
    std::vector<raft::Message> batch = TakeBatchLocked();
    stream->batch.Clear();
    stream->batch.mutable_messages()->Reserve(static_cast<int>(batch.size()));
    for (const raft::Message& m : batch) {
      // Cannot fail: kInstallSnapshot never enters the queue.
      (void)EncodeMessage(m, options_.cluster_id, stream->batch.add_messages());
    }
    stream->messages = batch.size();
    stream->writing = true;  // keeps the hold (and the stream) until OnWriteDone
    write_started_ = Clock::now();
    if (sender_idle_) cv_.notify_all();
    lock.unlock();
    if (open) {
      stub_->async()->SendStream(&stream->ctx, stream);
      stream->AddHold();
      stream->StartRead(&stream->ack);
      stream->StartWrite(&stream->batch);
      stream->StartCall();
    } else {
      stream->StartWrite(&stream->batch);
    }
    lock.lock();
  }

  // The stream takes no more writes: what is queued is dropped (stale by
  // the time the peer answers again; Raft retransmits), the peer reported
  // unreachable, and the next stream waits for a back-off.
  void FailStreamLocked(BatchStream* stream) {
    if (stream->failed) return;
    stream->failed = true;
    if (stream_ == stream) stream_ = nullptr;
    if (stopping_) return;
    ++stats_.rpc_failures;
    stats_.dropped_failed += queue_.size();
    queue_.clear();
    report_unreachable_ = true;
    const Clock::time_point now = Clock::now();
    if (now >= retry_at_) {
      backoff_ = backoff_ == Clock::duration::zero()
                     ? ToClock(options_.reconnect_backoff_min)
                     : std::min(backoff_ * 2, ToClock(options_.reconnect_backoff_max));
      // Jitter in [backoff/2, backoff]: peers that lost the same node do
      // not retry in lockstep.
      std::uniform_real_distribution<double> jitter(0.5, 1.0);
      retry_at_ = now + std::chrono::duration_cast<Clock::duration>(backoff_ * jitter(rng_));
    }
    cv_.notify_all();
  }

  // True when the caller must give up the stream's hold (outside mu_).
  bool MaybeReleaseLocked(BatchStream* stream) {
    if (stream->released || stream->writing || !(stream->failed || stopping_)) return false;
    stream->released = true;
    if (stream_ == stream) stream_ = nullptr;
    return true;
  }

  // On a gRPC thread.
  void OnStreamWriteDone(BatchStream* stream, bool ok) {
    std::unique_lock<std::mutex> lock(mu_);
    stream->writing = false;
    overflow_reported_ = false;  // news from the peer: a new overflow is news too
    if (ok) {
      ++stats_.batches_sent;
      stats_.messages_sent += stream->messages;
      backoff_ = Clock::duration::zero();
    } else {
      stats_.dropped_failed += stream->messages;
      FailStreamLocked(stream);
    }
    if (stream_ == stream) PumpSendsLocked(lock);
    // The sender thread only needs to hear of a stop (it waits for the
    // streams to end) or of a snapshot that waits for it.
    if (stopping_ || snapshot_request_.has_value()) cv_.notify_all();
    const bool release = MaybeReleaseLocked(stream);
    lock.unlock();
    if (release) stream->RemoveHold();
  }

  // On a gRPC thread: the receiver ended the stream, or it broke.
  void OnStreamEnded(BatchStream* stream) {
    std::unique_lock<std::mutex> lock(mu_);
    FailStreamLocked(stream);
    const bool release = MaybeReleaseLocked(stream);
    lock.unlock();
    if (release) stream->RemoveHold();
  }

  // On a gRPC thread: the stream's last reaction.
  void OnStreamDone(BatchStream* stream) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      streams_.erase(stream);  // Stop() no longer cancels it
    }
    // Deleted while still counted, so the channel its context refers to
    // (owned by this peer) is alive.
    delete stream;
    std::lock_guard<std::mutex> lock(mu_);
    --live_streams_;
    cv_.notify_all();
  }

  // Everything queued, up to max_batch_bytes (at least one message, so a
  // message larger than a batch still goes, alone).
  std::vector<raft::Message> TakeBatchLocked() {
    std::vector<raft::Message> batch;
    size_t bytes = 0;
    while (!queue_.empty()) {
      const size_t size = ApproximateWireSize(queue_.front());
      if (!batch.empty() && bytes + size > options_.max_batch_bytes) break;
      bytes += size;
      batch.push_back(std::move(queue_.front()));
      queue_.pop_front();
    }
    return batch;
  }

  // On a gRPC thread.
  void OnForwardDone(ForwardCall* call, const grpc::Status& status) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      forward_calls_.erase(call);
    }
    ForwardResult result;
    if (!status.ok()) {
      result.status = FromGrpcStatus(
          status, absl::StrCat("forwarding the write to leader ", id_.value(), " failed"));
    } else {
      const raftpb::ForwardResponse& r = call->response;
      if (r.code() < 0 || r.code() > static_cast<int>(absl::StatusCode::kUnauthenticated)) {
        result.status = absl::UnknownError(absl::StrCat(
            "leader ", id_.value(), " answered with unknown status code ", r.code(), ": ",
            r.message()));
      } else if (r.code() != 0) {
        result.status = absl::Status(static_cast<absl::StatusCode>(r.code()), r.message());
        if (r.not_proposed()) result.status = NotProposed(std::move(result.status));
      }
      result.result = r.result();
      result.leader_id = r.leader_id();
      result.term = r.term();
      result.applied_index = r.applied_index();
    }
    std::function<void(ForwardResult)> done = std::move(call->done);
    delete call;
    done(std::move(result));
    std::lock_guard<std::mutex> lock(mu_);
    --inflight_forwards_;
    cv_.notify_all();
  }

  // The snapshot thread: one stream, then its report.
  void SnapshotLoop(const raft::Message& request) {
    const bool delivered = StreamSnapshot(request);
    {
      std::lock_guard<std::mutex> lock(mu_);
      snapshot_active_ = false;
      if (delivered) {
        ++stats_.snapshots_sent;
      } else {
        ++stats_.snapshots_failed;
      }
      cv_.notify_all();  // a request that came meanwhile may start
    }
    handler_->OnSnapshotStatus(id_, delivered);
  }

  bool StreamSnapshot(const raft::Message& request) {
    absl::StatusOr<std::unique_ptr<SnapshotStream>> source =
        handler_->OpenSnapshot(request.snapshot.meta);
    if (!source.ok() || *source == nullptr) return false;

    SnapshotWriter writer;
    EncodeSnapshotChunkHeader(SnapshotChunkHeader{request.from, request.term, (*source)->meta()},
                              &writer.chunk);
    writer.ctx.AddMetadata(kClusterIdMetadataKey, absl::StrCat(options_.cluster_id));
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (stopping_) return false;
      snapshot_writer_ = &writer;
    }
    auto stopping = [this] {
      std::lock_guard<std::mutex> lock(mu_);
      return stopping_;
    };

    Rechunker rechunker(source->get(), options_.snapshot_chunk_bytes);
    bool failed = false;
    bool last = false;
    while (!last) {
      uint64_t offset = 0;
      if (!rechunker.Next(stopping, &offset, writer.chunk.mutable_data(), &last).ok()) {
        failed = true;
        break;
      }
      writer.chunk.set_offset(offset);
      writer.chunk.set_done(last);
      if (!writer.started()) {
        stub_->async()->InstallSnapshot(&writer.ctx, &writer.response, &writer);
      }
      writer.Write(last);
      if (writer.WaitWrite(options_.snapshot_chunk_timeout) != SnapshotWriter::WriteOutcome::kOk) {
        failed = true;
        break;
      }
    }
    bool delivered = false;
    if (writer.started()) {
      if (failed) {
        // The follower sees a cancelled stream and aborts its staging.
        writer.ctx.TryCancel();
      } else if (!writer.WaitDone(options_.snapshot_chunk_timeout)) {
        writer.ctx.TryCancel();  // the follower did not acknowledge in time
      }
      writer.WaitDone();  // always comes after a cancel
      delivered = !failed && writer.status().ok() && writer.response.success();
    }
    std::lock_guard<std::mutex> lock(mu_);
    snapshot_writer_ = nullptr;
    return delivered;
  }

  const PeerTransportOptions& options_;
  PeerHandler* const handler_;
  CallbackRunner* const runner_;
  const raft::NodeId id_;
  const std::string address_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<raftpb::RaftPeer::Stub> stub_;

  std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;
  bool sender_exited_ = false;
  std::deque<raft::Message> queue_;  // at most max_queued_messages_per_peer
  bool report_unreachable_ = false;  // coalesces reports until the sender runs
  bool overflow_reported_ = false;   // since the last stream write completed
  BatchStream* stream_ = nullptr;    // the stream batches go on; none: opened on demand
  Clock::time_point write_started_;  // of stream_'s write in flight
  bool sender_idle_ = false;         // the sender thread waits with no deadline
  std::set<BatchStream*> streams_;   // until their OnDone (Stop cancels them)
  int live_streams_ = 0;             // not yet deleted
  int inflight_forwards_ = 0;
  std::set<ForwardCall*> forward_calls_;
  Clock::time_point retry_at_;  // no stream, write or snapshot starts before it
  Clock::duration backoff_ = Clock::duration::zero();
  std::mt19937_64 rng_;
  std::optional<raft::Message> snapshot_request_;  // waiting to start
  bool snapshot_active_ = false;
  SnapshotWriter* snapshot_writer_ = nullptr;  // of the running stream, once it may start
  PeerStats stats_;

  std::thread snapshot_thread_;  // only the sender thread starts and joins it
  std::thread sender_;
};

// ---------------------------------------------------------------------------
// The RaftPeer service (receiving side).

namespace {

// The follower side of one InstallSnapshot stream.
class SnapshotReadReactor final : public grpc::ServerReadReactor<raftpb::InstallSnapshotChunk> {
 public:
  SnapshotReadReactor(grpc::CallbackServerContext* ctx, raftpb::InstallSnapshotResponse* response,
                      const PeerTransportOptions& options, PeerHandler* handler)
      : response_(response), handler_(handler) {
    absl::Status cluster = CheckCluster(ctx, options.cluster_id);
    if (!cluster.ok()) {
      Finish(ToGrpcStatus(cluster));
      return;
    }
    StartRead(&chunk_);
  }

  void OnReadDone(bool ok) override {
    if (!ok) {
      Finish(ToGrpcStatus(absl::AbortedError(
          "the snapshot stream ended (cancelled or broken) before its last chunk")));
      return;
    }
    absl::Status status = Consume();
    if (!status.ok()) {
      Finish(ToGrpcStatus(status));
      return;
    }
    if (finished_) {
      response_->set_success(true);
      response_->set_match_index(header_.meta.index.value());
      Finish(grpc::Status::OK);
      return;
    }
    StartRead(&chunk_);
  }

  void OnDone() override {
    // Whatever ended the stream before a successful Finish: discard.
    if (receiver_ != nullptr && !finished_) receiver_->Abort();
    delete this;
  }

 private:
  static absl::Status CheckCluster(grpc::CallbackServerContext* ctx, uint64_t cluster_id) {
    const auto& metadata = ctx->client_metadata();
    auto it = metadata.find(PeerTransport::kClusterIdMetadataKey);
    if (it == metadata.end()) {
      return absl::FailedPreconditionError(absl::StrCat(
          "refused a snapshot stream without the ", PeerTransport::kClusterIdMetadataKey,
          " header: this node belongs to cluster ", cluster_id));
    }
    uint64_t theirs = 0;
    absl::string_view value(it->second.data(), it->second.size());
    if (!absl::SimpleAtoi(value, &theirs) || theirs != cluster_id) {
      return absl::FailedPreconditionError(
          absl::StrCat("refused a snapshot stream from cluster ", value,
                       ": this node belongs to cluster ", cluster_id));
    }
    return absl::OkStatus();
  }

  absl::Status Consume() {
    absl::StatusOr<SnapshotChunkHeader> header = DecodeSnapshotChunkHeader(chunk_);
    if (!header.ok()) return header.status();
    if (receiver_ == nullptr) {
      if (chunk_.offset() != 0) {
        return absl::InvalidArgumentError(
            absl::StrCat("the first snapshot chunk starts at offset ", chunk_.offset(), ", not 0"));
      }
      absl::StatusOr<std::unique_ptr<SnapshotReceiver>> receiver =
          handler_->BeginSnapshot(header->leader, header->term, header->meta);
      if (!receiver.ok()) return receiver.status();
      if (*receiver == nullptr) return absl::InternalError("BeginSnapshot gave no receiver");
      receiver_ = *std::move(receiver);
      header_ = *std::move(header);
    } else if (!(*header == header_)) {
      return absl::InvalidArgumentError(
          "the snapshot's leader, term or meta changed in the middle of the stream");
    }
    if (chunk_.offset() != next_offset_) {
      return absl::InvalidArgumentError(absl::StrCat("snapshot chunk at offset ", chunk_.offset(),
                                                     ", expected ", next_offset_));
    }
    const std::string& data = chunk_.data();
    if (absl::Status s = receiver_->Write(next_offset_, std::string_view(data)); !s.ok()) return s;
    next_offset_ += data.size();
    if (chunk_.done()) {
      if (absl::Status s = receiver_->Finish(); !s.ok()) return s;
      finished_ = true;
    }
    return absl::OkStatus();
  }

  raftpb::InstallSnapshotResponse* const response_;
  PeerHandler* const handler_;
  raftpb::InstallSnapshotChunk chunk_;
  SnapshotChunkHeader header_;
  std::unique_ptr<SnapshotReceiver> receiver_;
  uint64_t next_offset_ = 0;
  bool finished_ = false;  // the receiver's Finish succeeded
};

// The leader's answer to one forwarded write. `done` may be copied around
// by the handler; the last copy to go finishes the call if nobody did, so
// a forgotten `done` cannot leave the follower (and Server::Shutdown)
// waiting.
class ForwardCompletion {
 public:
  ForwardCompletion(grpc::ServerUnaryReactor* reactor, raftpb::ForwardResponse* response)
      : reactor_(reactor), response_(response) {}
  ~ForwardCompletion() {
    if (!called_.exchange(true)) {
      reactor_->Finish(grpc::Status(grpc::StatusCode::INTERNAL,
                                    "the leader dropped the forwarded write without answering"));
    }
  }
  void Complete(ForwardResult result) {
    if (called_.exchange(true)) return;  // exactly once
    response_->set_code(static_cast<int32_t>(result.status.code()));
    response_->set_message(std::string(result.status.message()));
    response_->set_result(std::move(result.result));
    response_->set_leader_id(result.leader_id);
    response_->set_term(result.term);
    response_->set_applied_index(result.applied_index);
    response_->set_not_proposed(IsNotProposed(result.status));
    reactor_->Finish(grpc::Status::OK);
  }

 private:
  grpc::ServerUnaryReactor* const reactor_;
  raftpb::ForwardResponse* const response_;
  std::atomic<bool> called_{false};
};

}  // namespace

class PeerTransport::Service final : public raftpb::RaftPeer::CallbackService {
 public:
  Service(const PeerTransportOptions& options, PeerHandler* handler)
      : options_(options), handler_(handler) {}

  grpc::ServerBidiReactor<raftpb::MessageBatch, raftpb::SendAck>* SendStream(
      grpc::CallbackServerContext* /*ctx*/) override {
    auto* stream = new BatchReader(this);
    // Under the lock, so StopServingStreams cannot end the stream before its
    // first read is started. gRPC runs neither OnReadDone nor OnDone inline
    // in StartRead or Finish (both take mu_), so this cannot deadlock.
    absl::MutexLock lock(&mu_);
    if (serving_) {
      readers_.insert(stream);
      stream->StartRead(&stream->batch);
    } else {
      stream->End(absl::UnavailableError("this node is shutting down"));
    }
    return stream;
  }

  void StopServingStreams() {
    absl::MutexLock lock(&mu_);
    serving_ = false;
    // A reader's OnDone (which erases and deletes it) may run on a gRPC
    // thread as soon as it ends: End them under the lock so none is
    // deleted meanwhile.
    for (BatchReader* r : readers_) r->End(absl::UnavailableError("this node is shutting down"));
  }

  grpc::ServerUnaryReactor* Send(grpc::CallbackServerContext* ctx,
                                 const raftpb::MessageBatch* request,
                                 raftpb::SendAck* /*response*/) override {
    grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
    reactor->Finish(ToGrpcStatus(Deliver(*request)));
    return reactor;
  }

  grpc::ServerReadReactor<raftpb::InstallSnapshotChunk>* InstallSnapshot(
      grpc::CallbackServerContext* ctx, raftpb::InstallSnapshotResponse* response) override {
    return new SnapshotReadReactor(ctx, response, options_, handler_);
  }

  grpc::ServerUnaryReactor* ForwardPropose(grpc::CallbackServerContext* ctx,
                                           const raftpb::ForwardRequest* request,
                                           raftpb::ForwardResponse* response) override {
    grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
    if (request->cluster_id() != options_.cluster_id) {
      reactor->Finish(ToGrpcStatus(absl::FailedPreconditionError(absl::StrCat(
          "refused a write forwarded by node ", request->from(), " of cluster ",
          request->cluster_id(), ": this node belongs to cluster ", options_.cluster_id))));
      return reactor;
    }
    if (request->from() == 0) {
      reactor->Finish(ToGrpcStatus(absl::InvalidArgumentError("forwarded write with from 0")));
      return reactor;
    }
    auto completion = std::make_shared<ForwardCompletion>(reactor, response);
    handler_->OnForwardPropose(raft::NodeId(request->from()), request->command(),
                               [completion](ForwardResult result) {
                                 completion->Complete(std::move(result));
                               });
    return reactor;
  }

 private:
  absl::Status Deliver(const raftpb::MessageBatch& batch) {
    std::vector<raft::Message> messages;
    messages.reserve(batch.messages_size());
    for (int i = 0; i < batch.messages_size(); ++i) {
      const raftpb::RaftMessage& pm = batch.messages(i);
      if (pm.cluster_id() != options_.cluster_id) {
        return absl::FailedPreconditionError(absl::StrCat(
            "refused a message from node ", pm.from(), " of cluster ", pm.cluster_id(),
            ": this node (", options_.self.value(), ") belongs to cluster ", options_.cluster_id));
      }
      if (pm.to() != options_.self.value()) {
        return absl::FailedPreconditionError(
            absl::StrCat("a message for node ", pm.to(), " reached node ", options_.self.value(),
                         " (the sender has a stale address for it)"));
      }
      absl::StatusOr<raft::Message> m = DecodeMessage(pm);
      if (!m.ok()) {
        return absl::InvalidArgumentError(
            absl::StrCat("message ", i, " of the batch: ", m.status().message()));
      }
      if (!messages.empty() && m->from != messages.front().from) {
        return absl::InvalidArgumentError(absl::StrCat(
            "a batch mixes senders (", messages.front().from.value(), " and ", m->from.value(), ")"));
      }
      messages.push_back(*std::move(m));
    }
    if (!messages.empty()) handler_->OnMessages(std::move(messages));
    return absl::OkStatus();
  }

  // The receiving side of one SendStream: delivers each batch as it comes,
  // and ends the stream at the first batch it refuses.
  class BatchReader final : public grpc::ServerBidiReactor<raftpb::MessageBatch, raftpb::SendAck> {
   public:
    explicit BatchReader(Service* service) : service_(service) {}
    raftpb::MessageBatch batch;

    void OnReadDone(bool ok) override {
      if (!ok) {  // the sender closed or cancelled it, or we ended it
        End(absl::OkStatus());
        return;
      }
      absl::Status delivered = service_->Deliver(batch);
      if (!delivered.ok()) {
        End(delivered);
        return;
      }
      StartRead(&batch);
    }
    void OnDone() override {
      {
        absl::MutexLock lock(&service_->mu_);
        service_->readers_.erase(this);
      }
      delete this;
    }
    // Finishes the call once, from a reaction or from StopServingStreams (a
    // read may be pending then; it completes not ok).
    void End(const absl::Status& status) {
      if (ended_.exchange(true)) return;
      Finish(ToGrpcStatus(status));
    }

   private:
    Service* const service_;
    std::atomic<bool> ended_{false};
  };

  const PeerTransportOptions& options_;
  PeerHandler* const handler_;
  absl::Mutex mu_;
  bool serving_ ABSL_GUARDED_BY(mu_) = true;
  std::set<BatchReader*> readers_ ABSL_GUARDED_BY(mu_);
};

// ---------------------------------------------------------------------------

PeerTransport::PeerTransport(PeerTransportOptions options, PeerHandler* handler)
    : options_(Sanitized(std::move(options))),
      handler_(handler),
      runner_(std::make_unique<CallbackRunner>()),
      service_(std::make_unique<Service>(options_, handler)),
      next_seed_(options_.jitter_seed != 0 ? options_.jitter_seed
                                           : (uint64_t{std::random_device{}()} << 32) ^
                                                 std::random_device{}()) {}

PeerTransport::~PeerTransport() {
  std::vector<std::shared_ptr<Peer>> all;
  {
    absl::MutexLock lock(&mu_);
    for (auto& [id, peer] : peers_) all.push_back(std::move(peer));
    peers_.clear();
    for (auto& peer : retired_) all.push_back(std::move(peer));
    retired_.clear();
  }
  for (auto& peer : all) peer->Stop(/*cancel_forwards=*/true);
  for (auto& peer : all) peer->WaitIdle();
  all.clear();
  runner_.reset();  // runs the `done`s still queued
}

grpc::Service* PeerTransport::service() { return service_.get(); }

void PeerTransport::ConfigureServer(grpc::ServerBuilder& builder) const {
  builder.SetMaxReceiveMessageSize(static_cast<int>(options_.max_message_bytes));
}

void PeerTransport::StopServingStreams() { service_->StopServingStreams(); }

void PeerTransport::CancelForwards() {
  absl::MutexLock lock(&mu_);
  for (auto& [id, peer] : peers_) peer->CancelForwards();
  for (auto& peer : retired_) peer->CancelForwards();
}

void PeerTransport::UpsertPeer(raft::NodeId id, std::string address) {
  if (id == raft::kNoNode || id == options_.self) return;
  absl::MutexLock lock(&mu_);
  ReapRetiredLocked();
  auto it = peers_.find(id);
  if (it != peers_.end()) {
    if (it->second->address() == address) return;
    it->second->Stop(/*cancel_forwards=*/false);
    retired_.push_back(std::move(it->second));
    peers_.erase(it);
  }
  const uint64_t seed = next_seed_ ^ (id.value() * 0x9E3779B97F4A7C15ULL);
  next_seed_ = next_seed_ * 6364136223846793005ULL + 1442695040888963407ULL;
  auto peer = std::make_shared<Peer>(options_, handler_, runner_.get(), id, std::move(address), seed);
  peer->Start();
  peers_.emplace(id, std::move(peer));
}

void PeerTransport::RemovePeer(raft::NodeId id) {
  absl::MutexLock lock(&mu_);
  ReapRetiredLocked();
  auto it = peers_.find(id);
  if (it == peers_.end()) return;
  it->second->Stop(/*cancel_forwards=*/false);
  retired_.push_back(std::move(it->second));
  peers_.erase(it);
}

void PeerTransport::ReapRetiredLocked() {
  // Joining a peer whose threads have exited does not block.
  auto finished = [](const std::shared_ptr<Peer>& peer) {
    if (!peer->Finished()) return false;
    peer->Join();
    return true;
  };
  retired_.erase(std::remove_if(retired_.begin(), retired_.end(), finished), retired_.end());
}

void PeerTransport::Send(std::vector<raft::Message> messages) {
  // Split by destination, keeping each peer's messages in order.
  std::map<raft::NodeId, std::vector<raft::Message>> by_peer;
  for (raft::Message& m : messages) by_peer[m.to].push_back(std::move(m));
  absl::ReaderMutexLock lock(&mu_);
  for (auto& [id, batch] : by_peer) {
    auto it = peers_.find(id);
    if (it == peers_.end()) continue;  // unknown peer: dropped
    it->second->Enqueue(std::move(batch));
  }
}

void PeerTransport::ForwardPropose(raft::NodeId leader, std::string command,
                                   absl::Duration timeout,
                                   std::function<void(ForwardResult)> done) {
  std::shared_ptr<Peer> peer;
  {
    absl::ReaderMutexLock lock(&mu_);
    auto it = peers_.find(leader);
    if (it != peers_.end()) peer = it->second;
  }
  if (peer == nullptr) {
    ForwardResult result;
    result.status = absl::UnavailableError(
        absl::StrCat("no address known for the leader, node ", leader.value()));
    runner_->Post([done = std::move(done), result = std::move(result)]() mutable {
      done(std::move(result));
    });
    return;
  }
  peer->StartForward(std::move(command), timeout, std::move(done));
}

std::optional<PeerStats> PeerTransport::Stats(raft::NodeId peer) const {
  absl::ReaderMutexLock lock(&mu_);
  auto it = peers_.find(peer);
  if (it == peers_.end()) return std::nullopt;
  return it->second->Stats();
}

}  // namespace quorumkv::server
