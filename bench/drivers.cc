// The gRPC half of kvbench: the quorumkv and etcd drivers on the callback
// API (stub->async()->Method(context, request, response, callback)). The
// only translation unit of bench/ that includes gRPC headers.
#include <chrono>
#include <optional>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "bench/driver.h"
#include "etcd_rpc.grpc.pb.h"
#include "grpcpp/grpcpp.h"
#include "kv.grpc.pb.h"

namespace quorumkv::bench {

namespace {

constexpr absl::Duration kLeaderWait = absl::Seconds(15);
constexpr absl::Duration kStatusTimeout = absl::Seconds(1);

std::chrono::system_clock::time_point DeadlineIn(absl::Duration d) {
  return std::chrono::system_clock::now() + absl::ToChronoMicroseconds(d);
}

// A channel of its own: without a local subchannel pool, channels to one
// address with equal arguments share one HTTP/2 connection, which is what
// --channels is there to avoid.
std::shared_ptr<grpc::Channel> NewChannel(const std::string& endpoint, int index) {
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  args.SetInt("quorumkv.kvbench_channel", index);
  args.SetMaxReceiveMessageSize(64 << 20);
  return grpc::CreateCustomChannel(endpoint, grpc::InsecureChannelCredentials(), args);
}

OpResult ResultOf(const grpc::Status& s, bool found) {
  OpResult r;
  r.code = static_cast<int>(s.error_code());
  if (!s.ok()) {
    r.message = s.error_message();
  } else {
    r.found = found;
  }
  return r;
}

// Polls every endpoint until `is_leader(endpoint)` says yes for one of
// them. `is_leader` returns an error message (empty: not leader, no error)
// through its second argument.
absl::StatusOr<std::string> FindLeader(
    const std::vector<std::string>& endpoints,
    const std::function<bool(const std::string&, std::string*)>& is_leader) {
  const absl::Time end = absl::Now() + kLeaderWait;
  std::vector<std::string> last;
  while (true) {
    last.clear();
    for (const std::string& e : endpoints) {
      std::string why;
      if (is_leader(e, &why)) return e;
      last.push_back(absl::StrCat(e, ": ", why.empty() ? "not the leader" : why));
    }
    if (absl::Now() >= end) break;
    absl::SleepFor(absl::Milliseconds(100));
  }
  return absl::UnavailableError(absl::StrCat("no leader found within ", absl::FormatDuration(kLeaderWait),
                                             " (", absl::StrJoin(last, "; "), ")"));
}

// --- quorumkv ---------------------------------------------------------------

class QuorumKvCall final : public Call {
 public:
  QuorumKvCall(quorumkv::v1::KV::Stub* stub, quorumkv::v1::Consistency consistency, absl::Duration timeout,
               DoneCallback done)
      : stub_(stub), timeout_(timeout), done_(std::move(done)) {
    get_req_.set_consistency(consistency);
  }

  void Start(OpType op, absl::string_view key, absl::string_view value) override {
    // The previous call is complete (its callback is running or has run):
    // its context may go (gRPC's own callback benchmark does the same).
    ctx_.emplace();
    ctx_->set_deadline(DeadlineIn(timeout_));
    switch (op) {
      case OpType::kPut:
        put_req_.set_key(key.data(), key.size());
        put_req_.set_value(value.data(), value.size());
        stub_->async()->Put(&*ctx_, &put_req_, &put_resp_,
                            [this](grpc::Status s) { done_(ResultOf(s, false)); });
        break;
      case OpType::kGet:
        get_req_.set_key(key.data(), key.size());
        stub_->async()->Get(&*ctx_, &get_req_, &get_resp_,
                            [this](grpc::Status s) { done_(ResultOf(s, get_resp_.found())); });
        break;
      case OpType::kDelete:
        del_req_.set_key(key.data(), key.size());
        stub_->async()->Delete(&*ctx_, &del_req_, &del_resp_,
                               [this](grpc::Status s) { done_(ResultOf(s, del_resp_.deleted())); });
        break;
    }
  }

 private:
  quorumkv::v1::KV::Stub* const stub_;
  const absl::Duration timeout_;
  const DoneCallback done_;
  std::optional<grpc::ClientContext> ctx_;
  quorumkv::v1::PutRequest put_req_;
  quorumkv::v1::PutResponse put_resp_;
  quorumkv::v1::GetRequest get_req_;
  quorumkv::v1::GetResponse get_resp_;
  quorumkv::v1::DeleteRequest del_req_;
  quorumkv::v1::DeleteResponse del_resp_;
};

class QuorumKvDriver final : public Driver {
 public:
  static absl::StatusOr<std::unique_ptr<Driver>> Create(const BenchOptions& o) {
    auto d = std::unique_ptr<QuorumKvDriver>(new QuorumKvDriver(o));
    if (o.target == Target::kLeader) {
      auto leader = FindLeader(o.endpoints, [](const std::string& e, std::string* why) {
        auto stub = quorumkv::v1::Cluster::NewStub(NewChannel(e, -1));
        grpc::ClientContext ctx;
        ctx.set_deadline(DeadlineIn(kStatusTimeout));
        quorumkv::v1::StatusResponse resp;
        grpc::Status s = stub->Status(&ctx, quorumkv::v1::StatusRequest(), &resp);
        if (!s.ok()) {
          *why = absl::StrCat(StatusCodeName(s.error_code()), " ", s.error_message());
          return false;
        }
        if (resp.role() == "leader" && resp.leader_id() == resp.node_id()) return true;
        *why = absl::StrCat("node ", resp.node_id(), " is ", resp.role(), ", leader ", resp.leader_id());
        return false;
      });
      if (!leader.ok()) return leader.status();
      d->targets_ = {*leader};
    } else {
      d->targets_ = o.endpoints;
    }
    int index = 0;
    for (int c = 0; c < o.channels; ++c) {
      for (const std::string& e : d->targets_) {
        d->stubs_.push_back(quorumkv::v1::KV::NewStub(NewChannel(e, index++)));
      }
    }
    return std::unique_ptr<Driver>(std::move(d));
  }

  std::unique_ptr<Call> NewCall(size_t slot, DoneCallback done) override {
    quorumkv::v1::Consistency c = quorumkv::v1::LINEARIZABLE;
    if (options_.consistency == Consistency::kLease) c = quorumkv::v1::LEASE;
    if (options_.consistency == Consistency::kSerializable) c = quorumkv::v1::SERIALIZABLE;
    return std::make_unique<QuorumKvCall>(stubs_[slot % stubs_.size()].get(), c, options_.timeout,
                                          std::move(done));
  }
  std::vector<std::string> targets() const override { return targets_; }
  std::string effective_consistency() const override { return ConsistencyName(options_.consistency); }
  std::vector<std::string> notes() const override { return {}; }

 private:
  explicit QuorumKvDriver(const BenchOptions& o) : options_(o) {}
  const BenchOptions options_;
  std::vector<std::string> targets_;
  std::vector<std::unique_ptr<quorumkv::v1::KV::Stub>> stubs_;
};

// --- etcd -------------------------------------------------------------------

class EtcdCall final : public Call {
 public:
  EtcdCall(etcdserverpb::KV::Stub* stub, bool serializable, absl::Duration timeout, DoneCallback done)
      : stub_(stub), timeout_(timeout), done_(std::move(done)) {
    range_req_.set_serializable(serializable);
  }

  void Start(OpType op, absl::string_view key, absl::string_view value) override {
    ctx_.emplace();
    ctx_->set_deadline(DeadlineIn(timeout_));
    switch (op) {
      case OpType::kPut:
        put_req_.set_key(key.data(), key.size());
        put_req_.set_value(value.data(), value.size());
        stub_->async()->Put(&*ctx_, &put_req_, &put_resp_,
                            [this](grpc::Status s) { done_(ResultOf(s, false)); });
        break;
      case OpType::kGet:
        range_req_.set_key(key.data(), key.size());
        stub_->async()->Range(&*ctx_, &range_req_, &range_resp_,
                              [this](grpc::Status s) { done_(ResultOf(s, range_resp_.kvs_size() > 0)); });
        break;
      case OpType::kDelete:
        del_req_.set_key(key.data(), key.size());
        stub_->async()->DeleteRange(&*ctx_, &del_req_, &del_resp_,
                                    [this](grpc::Status s) { done_(ResultOf(s, del_resp_.deleted() > 0)); });
        break;
    }
  }

 private:
  etcdserverpb::KV::Stub* const stub_;
  const absl::Duration timeout_;
  const DoneCallback done_;
  std::optional<grpc::ClientContext> ctx_;
  etcdserverpb::PutRequest put_req_;
  etcdserverpb::PutResponse put_resp_;
  etcdserverpb::RangeRequest range_req_;
  etcdserverpb::RangeResponse range_resp_;
  etcdserverpb::DeleteRangeRequest del_req_;
  etcdserverpb::DeleteRangeResponse del_resp_;
};

class EtcdDriver final : public Driver {
 public:
  static absl::StatusOr<std::unique_ptr<Driver>> Create(const BenchOptions& o) {
    auto d = std::unique_ptr<EtcdDriver>(new EtcdDriver(o));
    if (o.target == Target::kLeader) {
      auto leader = FindLeader(o.endpoints, [](const std::string& e, std::string* why) {
        auto stub = etcdserverpb::Maintenance::NewStub(NewChannel(e, -1));
        grpc::ClientContext ctx;
        ctx.set_deadline(DeadlineIn(kStatusTimeout));
        etcdserverpb::StatusResponse resp;
        grpc::Status s = stub->Status(&ctx, etcdserverpb::StatusRequest(), &resp);
        if (!s.ok()) {
          *why = absl::StrCat(StatusCodeName(s.error_code()), " ", s.error_message());
          return false;
        }
        if (resp.leader() != 0 && resp.leader() == resp.header().member_id()) return true;
        *why = absl::StrCat("member ", absl::Hex(resp.header().member_id()), " follows ", absl::Hex(resp.leader()));
        return false;
      });
      if (!leader.ok()) return leader.status();
      d->targets_ = {*leader};
    } else {
      d->targets_ = o.endpoints;
    }
    int index = 0;
    for (int c = 0; c < o.channels; ++c) {
      for (const std::string& e : d->targets_) {
        d->stubs_.push_back(etcdserverpb::KV::NewStub(NewChannel(e, index++)));
      }
    }
    return std::unique_ptr<Driver>(std::move(d));
  }

  std::unique_ptr<Call> NewCall(size_t slot, DoneCallback done) override {
    const bool serializable = options_.consistency != Consistency::kLinearizable;
    return std::make_unique<EtcdCall>(stubs_[slot % stubs_.size()].get(), serializable, options_.timeout,
                                      std::move(done));
  }
  std::vector<std::string> targets() const override { return targets_; }
  std::string effective_consistency() const override {
    return options_.consistency == Consistency::kLinearizable ? "linearizable" : "serializable";
  }
  std::vector<std::string> notes() const override {
    if (options_.consistency == Consistency::kLease && options_.mix.get > 0) {
      return {"etcd has no lease reads: --consistency lease was sent as serializable=true (a local, possibly "
              "stale read)"};
    }
    return {};
  }

 private:
  explicit EtcdDriver(const BenchOptions& o) : options_(o) {}
  const BenchOptions options_;
  std::vector<std::string> targets_;
  std::vector<std::unique_ptr<etcdserverpb::KV::Stub>> stubs_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Driver>> MakeDriver(const BenchOptions& options) {
  if (options.system == System::kEtcd) return EtcdDriver::Create(options);
  return QuorumKvDriver::Create(options);
}

}  // namespace quorumkv::bench
