#include "tests/fault/workload.h"

#include <chrono>

#include "absl/strings/str_cat.h"
#include "grpcpp/grpcpp.h"
#include "nlohmann/json.hpp"

namespace quorumkv::fault {

namespace v1 = quorumkv::v1;
using lincheck::Consistency;
using lincheck::Event;
using lincheck::EventType;
using lincheck::Function;

namespace {

const char* CodeName(int code) {
  static const char* const kNames[] = {"OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED",
                                       "NOT_FOUND", "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED",
                                       "FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED",
                                       "INTERNAL", "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED"};
  return code >= 0 && code < 17 ? kNames[code] : "?";
}

int TypeIndex(EventType t) {
  switch (t) {
    case EventType::kOk:
      return 0;
    case EventType::kFail:
      return 1;
    default:
      return 2;
  }
}

}  // namespace

uint64_t OpCounts::Count(Function f, EventType t) const {
  return by_function[static_cast<int>(f)][TypeIndex(t)];
}
uint64_t OpCounts::ok() const {
  uint64_t n = 0;
  for (const auto& f : by_function) n += f[0];
  return n;
}
uint64_t OpCounts::failed() const {
  uint64_t n = 0;
  for (const auto& f : by_function) n += f[1];
  return n;
}
uint64_t OpCounts::info() const {
  uint64_t n = 0;
  for (const auto& f : by_function) n += f[2];
  return n;
}

HistoryRecorder::HistoryRecorder(const std::string& path) : path_(path), file_(path, std::ios::trunc) {
  if (!file_) {
    status_ = absl::InternalError("cannot write the history file " + path);
    return;
  }
}

HistoryRecorder::~HistoryRecorder() { Flush(); }

int64_t HistoryRecorder::Now() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

void HistoryRecorder::Record(const Event& e, uint64_t node, const std::string& error) {
  std::string line = lincheck::ToJsonLine(e);
  if ((node != 0 || !error.empty()) && !line.empty() && line.back() == '}') {
    line.pop_back();
    if (node != 0) line += ",\"node\":" + std::to_string(node);
    if (!error.empty()) {
      line += ",\"error\":" + nlohmann::json(error).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    }
    line += "}";
  }
  {
    std::lock_guard<std::mutex> lock(file_mu_);
    file_ << line << '\n';
  }
  std::lock_guard<std::mutex> lock(mu_);
  if (e.type == EventType::kInvoke) {
    ++counts_.invoked;
  } else {
    ++counts_.by_function[static_cast<int>(e.f)][TypeIndex(e.type)];
  }
}

void HistoryRecorder::CountError(const std::string& what) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = errors_.find(what);
  if (it != errors_.end()) {
    ++it->second;
  } else if (errors_.size() < 300) {
    errors_[what] = 1;
  } else {
    ++errors_["(other errors)"];
  }
}

void HistoryRecorder::Flush() {
  std::lock_guard<std::mutex> lock(file_mu_);
  file_.flush();
}

OpCounts HistoryRecorder::counts() const {
  std::lock_guard<std::mutex> lock(mu_);
  return counts_;
}

std::map<std::string, uint64_t> HistoryRecorder::errors() const {
  std::lock_guard<std::mutex> lock(mu_);
  return errors_;
}

OpOutcome RunOp(HistoryRecorder& history, int64_t process, Endpoint& ep, const OpRequest& request,
                absl::Duration timeout) {
  Event invoke;
  invoke.process = process;
  invoke.type = EventType::kInvoke;
  invoke.f = request.f;
  invoke.key = request.key;
  if (request.f == Function::kPut) invoke.value = request.value;
  if (request.f == Function::kGet) invoke.consistency = request.consistency;
  invoke.time_ns = HistoryRecorder::Now();
  history.Record(invoke, ep.id);

  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + absl::ToChronoNanoseconds(timeout));
  // A node that was just restarted: wait for the connection (within the
  // deadline) instead of failing while the channel backs off.
  ctx.set_wait_for_ready(true);
  grpc::Status s;
  OpOutcome out;
  switch (request.f) {
    case Function::kPut: {
      v1::PutRequest req;
      req.set_key(request.key);
      req.set_value(request.value.value_or(""));
      v1::PutResponse resp;
      s = ep.kv->Put(&ctx, req, &resp);
      break;
    }
    case Function::kDelete: {
      v1::DeleteRequest req;
      req.set_key(request.key);
      v1::DeleteResponse resp;
      s = ep.kv->Delete(&ctx, req, &resp);
      break;
    }
    case Function::kGet: {
      v1::GetRequest req;
      req.set_key(request.key);
      req.set_consistency(request.consistency == Consistency::kLease          ? v1::LEASE
                          : request.consistency == Consistency::kSerializable ? v1::SERIALIZABLE
                                                                              : v1::LINEARIZABLE);
      v1::GetResponse resp;
      s = ep.kv->Get(&ctx, req, &resp);
      if (s.ok() && resp.found()) out.value = resp.value();
      break;
    }
    case Function::kCas:
      s = grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "cas is not part of the kvserver API");
      break;
  }
  const int64_t done = HistoryRecorder::Now();
  out.code = s.error_code();
  out.message = s.error_message();
  if (s.ok()) {
    out.type = EventType::kOk;
  } else {
    const auto& trailers = ctx.GetServerTrailingMetadata();
    const bool not_proposed = trailers.find("quorumkv-not-proposed") != trailers.end();
    out.type = (s.error_code() == grpc::StatusCode::INVALID_ARGUMENT || not_proposed) ? EventType::kFail
                                                                                       : EventType::kInfo;
    std::string message = s.error_message();
    if (message.size() > 120) message = message.substr(0, 120) + "...";
    history.CountError(absl::StrCat(CodeName(s.error_code()), not_proposed ? " (not proposed)" : "", ": ", message));
  }
  Event completion = invoke;
  completion.type = out.type;
  completion.time_ns = done;
  if (request.f == Function::kGet) completion.value = out.type == EventType::kOk ? out.value : std::nullopt;
  history.Record(completion, 0, s.ok() ? "" : absl::StrCat(CodeName(s.error_code()), ": ", s.error_message()));
  return out;
}

Workload::Workload(FaultCluster* cluster, HistoryRecorder* history, const WorkloadOptions& options)
    : cluster_(cluster), history_(history), options_(options) {}

Workload::~Workload() { Stop(); }

void Workload::Start() {
  for (int i = 0; i < options_.clients; ++i) clients_.emplace_back([this, i] { ClientLoop(i); });
}

void Workload::Stop() {
  stop_ = true;
  for (std::thread& t : clients_) {
    if (t.joinable()) t.join();
  }
  clients_.clear();
}

std::vector<std::string> Workload::Keys() const {
  std::lock_guard<std::mutex> lock(mu_);
  return {keys_.begin(), keys_.end()};
}

OpRequest Workload::NextOp(std::mt19937_64& rng, int64_t process, uint64_t& counter) {
  const uint64_t n = started_ops_++;
  const uint64_t per_generation =
      static_cast<uint64_t>(std::max(1, options_.keys)) * static_cast<uint64_t>(std::max(1, options_.ops_per_key));
  const uint64_t generation = n / per_generation;
  const uint64_t slot = std::uniform_int_distribution<uint64_t>(0, static_cast<uint64_t>(options_.keys - 1))(rng);
  OpRequest op;
  op.key = absl::StrCat("k", generation, "-", slot);
  {
    std::lock_guard<std::mutex> lock(mu_);
    keys_.insert(op.key);
  }
  const int dice = std::uniform_int_distribution<int>(0, 99)(rng);
  int edge = options_.put_percent;
  if (dice < edge) {
    op.f = Function::kPut;
    op.value = absl::StrCat("v-", process, "-", ++counter);
    return op;
  }
  edge += options_.delete_percent;
  if (dice < edge) {
    op.f = Function::kDelete;
    return op;
  }
  op.f = Function::kGet;
  edge += options_.lease_get_percent;
  if (dice < edge) {
    op.consistency = Consistency::kLease;
    return op;
  }
  edge += options_.serializable_get_percent;
  op.consistency = dice < edge ? Consistency::kSerializable : Consistency::kLinearizable;
  return op;
}

void Workload::ClientLoop(int index) {
  std::mt19937_64 rng(options_.seed * 1000003 + static_cast<uint64_t>(index));
  int64_t process = history_->NewProcess();
  uint64_t counter = 0;
  while (!stop_.load()) {
    std::vector<std::shared_ptr<Endpoint>> endpoints = cluster_->ClientEndpoints();
    if (endpoints.empty()) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
      continue;
    }
    std::shared_ptr<Endpoint> ep =
        endpoints[std::uniform_int_distribution<size_t>(0, endpoints.size() - 1)(rng)];
    const OpRequest op = NextOp(rng, process, counter);
    const OpOutcome out = RunOp(*history_, process, *ep, op, options_.op_timeout);
    if (out.type == EventType::kInfo) {
      // Its operation may still take effect: this process is done.
      process = history_->NewProcess();
      counter = 0;
    }
    if (out.type != EventType::kOk) {
      // Do not spin on a node that refuses at once (no leader yet, down).
      std::this_thread::sleep_for(std::chrono::milliseconds(std::uniform_int_distribution<int>(5, 25)(rng)));
    }
  }
}

}  // namespace quorumkv::fault
