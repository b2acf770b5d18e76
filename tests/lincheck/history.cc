#include "tests/lincheck/history.h"

#include <cerrno>
#include <cstring>
#include <fstream>
#include <limits>

#include "absl/status/status.h"
#include "nlohmann/json.hpp"

namespace quorumkv::lincheck {
namespace {

using Json = nlohmann::json;
// ordered_json keeps the field order of HISTORY.md in what we write, so a
// person reading a history sees process/type/f/key/value/time in that order.
using OrderedJson = nlohmann::ordered_json;

absl::Status Invalid(std::string message) {
  return absl::InvalidArgumentError(std::move(message));
}

// A short rendering of a JSON value for error messages. dump() with the
// replace handler never throws.
std::string Show(const Json& j) {
  std::string s = j.dump(-1, ' ', false, Json::error_handler_t::replace);
  if (s.size() > 60) s = s.substr(0, 57) + "...";
  return s;
}

absl::StatusOr<int64_t> GetInt64(const Json& obj, const char* field) {
  auto it = obj.find(field);
  if (it == obj.end()) return Invalid(std::string("missing field '") + field + "'");
  if (it->is_number_unsigned()) {
    uint64_t u = it->get<uint64_t>();
    if (u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      return Invalid(std::string("field '") + field + "' is out of the int64 range: " + Show(*it));
    }
    return static_cast<int64_t>(u);
  }
  if (it->is_number_integer()) return it->get<int64_t>();
  return Invalid(std::string("field '") + field + "' must be an integer, got " + Show(*it));
}

absl::StatusOr<std::string> GetString(const Json& obj, const char* field) {
  auto it = obj.find(field);
  if (it == obj.end()) return Invalid(std::string("missing field '") + field + "'");
  if (!it->is_string()) {
    return Invalid(std::string("field '") + field + "' must be a string, got " + Show(*it));
  }
  return it->get<std::string>();
}

absl::StatusOr<EventType> ParseEventType(const std::string& s) {
  if (s == "invoke") return EventType::kInvoke;
  if (s == "ok") return EventType::kOk;
  if (s == "fail") return EventType::kFail;
  if (s == "info") return EventType::kInfo;
  return Invalid("field 'type' must be one of invoke, ok, fail, info; got \"" + s + "\"");
}

absl::StatusOr<Function> ParseFunction(const std::string& s) {
  if (s == "put") return Function::kPut;
  if (s == "get") return Function::kGet;
  if (s == "delete") return Function::kDelete;
  if (s == "cas") return Function::kCas;
  return Invalid("field 'f' must be one of put, get, delete, cas; got \"" + s + "\"");
}

absl::StatusOr<Consistency> ParseConsistency(const std::string& s) {
  if (s == "linearizable") return Consistency::kLinearizable;
  if (s == "lease") return Consistency::kLease;
  if (s == "serializable") return Consistency::kSerializable;
  return Invalid(
      "field 'consistency' must be one of linearizable, lease, serializable; got \"" + s + "\"");
}

// Fills the value fields of `e` from the JSON `value` (absent = null), by
// function and event type as HISTORY.md lays out.
absl::Status ParseValue(const Json& obj, Event& e) {
  static const Json kNull;
  auto it = obj.find("value");
  const Json& v = it == obj.end() ? kNull : *it;
  const std::string where = std::string(FunctionName(e.f)) + " " +
                            std::string(EventTypeName(e.type)) + ": field 'value' ";
  switch (e.f) {
    case Function::kPut:
      if (v.is_string()) {
        e.value = v.get<std::string>();
        return absl::OkStatus();
      }
      // A failed or timed-out put may omit what it tried to write: the
      // invoke carries it.
      if (v.is_null() && (e.type == EventType::kFail || e.type == EventType::kInfo)) {
        return absl::OkStatus();
      }
      return Invalid(where + "must be the string written, got " + Show(v));
    case Function::kGet:
      if (v.is_null()) return absl::OkStatus();
      if (v.is_string() && e.type == EventType::kOk) {
        e.value = v.get<std::string>();
        return absl::OkStatus();
      }
      if (e.type == EventType::kOk) {
        return Invalid(where + "must be the string read or null (key absent), got " + Show(v));
      }
      return Invalid(where + "must be null (only an ok get has read a value), got " + Show(v));
    case Function::kDelete:
      if (v.is_null()) return absl::OkStatus();
      return Invalid(where + "must be null, got " + Show(v));
    case Function::kCas: {
      // fail and info completions may leave the object out; the invoke has it.
      if (v.is_null() && (e.type == EventType::kFail || e.type == EventType::kInfo)) {
        return absl::OkStatus();
      }
      if (!v.is_object()) {
        return Invalid(where + "must be an object {\"expected\": string or null, \"new\": string" +
                       std::string(e.type == EventType::kOk ? ", \"ok\": bool}" : "}") +
                       ", got " + Show(v));
      }
      auto expected = v.find("expected");
      if (expected == v.end()) return Invalid(where + "lacks 'expected' (use null for key absent)");
      if (expected->is_string()) {
        e.cas_expected = expected->get<std::string>();
      } else if (!expected->is_null()) {
        return Invalid(where + "'expected' must be a string or null, got " + Show(*expected));
      }
      auto new_value = v.find("new");
      if (new_value == v.end() || !new_value->is_string()) {
        return Invalid(where + "'new' must be a string");
      }
      e.cas_new = new_value->get<std::string>();
      auto ok = v.find("ok");
      if (e.type == EventType::kOk) {
        if (ok == v.end() || !ok->is_boolean()) {
          return Invalid(where + "'ok' must be true or false on an ok cas (did the swap happen?)");
        }
        e.cas_ok = ok->get<bool>();
      } else if (ok != v.end()) {
        return Invalid(where + "'ok' belongs only on an ok completion");
      }
      return absl::OkStatus();
    }
  }
  return Invalid("unknown function");
}

// Writes the `value` field of HISTORY.md for `e`.
void PutValue(OrderedJson& obj, const Event& e) {
  switch (e.f) {
    case Function::kPut:
    case Function::kGet:
      if (e.value.has_value()) {
        obj["value"] = *e.value;
      } else {
        obj["value"] = nullptr;
      }
      return;
    case Function::kDelete:
      obj["value"] = nullptr;
      return;
    case Function::kCas: {
      OrderedJson cas = OrderedJson::object();
      if (e.cas_expected.has_value()) {
        cas["expected"] = *e.cas_expected;
      } else {
        cas["expected"] = nullptr;
      }
      cas["new"] = e.cas_new;
      if (e.type == EventType::kOk) cas["ok"] = e.cas_ok;
      obj["value"] = std::move(cas);
      return;
    }
  }
}

}  // namespace

std::string_view EventTypeName(EventType type) {
  switch (type) {
    case EventType::kInvoke: return "invoke";
    case EventType::kOk: return "ok";
    case EventType::kFail: return "fail";
    case EventType::kInfo: return "info";
  }
  return "?";
}

std::string_view FunctionName(Function f) {
  switch (f) {
    case Function::kPut: return "put";
    case Function::kGet: return "get";
    case Function::kDelete: return "delete";
    case Function::kCas: return "cas";
  }
  return "?";
}

std::string_view ConsistencyName(Consistency c) {
  switch (c) {
    case Consistency::kLinearizable: return "linearizable";
    case Consistency::kLease: return "lease";
    case Consistency::kSerializable: return "serializable";
  }
  return "?";
}

std::string ToJsonLine(const Event& e) {
  OrderedJson obj = OrderedJson::object();
  obj["process"] = e.process;
  obj["type"] = std::string(EventTypeName(e.type));
  obj["f"] = std::string(FunctionName(e.f));
  obj["key"] = e.key;
  PutValue(obj, e);
  obj["time"] = e.time_ns;
  if (e.f == Function::kGet && e.consistency != Consistency::kLinearizable) {
    obj["consistency"] = std::string(ConsistencyName(e.consistency));
  }
  return obj.dump(-1, ' ', false, OrderedJson::error_handler_t::replace);
}

absl::StatusOr<Event> ParseJsonLine(std::string_view line) {
  Json obj;
  try {
    obj = Json::parse(line.begin(), line.end());
  } catch (const Json::exception& ex) {
    return Invalid(std::string("not valid JSON: ") + ex.what());
  }
  if (!obj.is_object()) return Invalid("expected a JSON object, got " + Show(obj));

  Event e;
  absl::StatusOr<int64_t> process = GetInt64(obj, "process");
  if (!process.ok()) return process.status();
  e.process = *process;

  absl::StatusOr<std::string> type = GetString(obj, "type");
  if (!type.ok()) return type.status();
  absl::StatusOr<EventType> event_type = ParseEventType(*type);
  if (!event_type.ok()) return event_type.status();
  e.type = *event_type;

  absl::StatusOr<std::string> f = GetString(obj, "f");
  if (!f.ok()) return f.status();
  absl::StatusOr<Function> function = ParseFunction(*f);
  if (!function.ok()) return function.status();
  e.f = *function;

  absl::StatusOr<std::string> key = GetString(obj, "key");
  if (!key.ok()) return key.status();
  e.key = std::move(*key);

  if (absl::Status s = ParseValue(obj, e); !s.ok()) return s;

  absl::StatusOr<int64_t> time = GetInt64(obj, "time");
  if (!time.ok()) return time.status();
  e.time_ns = *time;

  if (obj.contains("consistency")) {
    if (e.f != Function::kGet) {
      return Invalid("field 'consistency' applies to get only, found on a " +
                     std::string(FunctionName(e.f)));
    }
    absl::StatusOr<std::string> c = GetString(obj, "consistency");
    if (!c.ok()) return c.status();
    absl::StatusOr<Consistency> consistency = ParseConsistency(*c);
    if (!consistency.ok()) return consistency.status();
    e.consistency = *consistency;
  }
  return e;
}

absl::StatusOr<std::vector<Event>> ReadHistory(std::istream& in) {
  std::vector<Event> events;
  std::string line;
  int64_t line_number = 0;
  while (std::getline(in, line)) {
    ++line_number;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    absl::StatusOr<Event> e = ParseJsonLine(line);
    if (!e.ok()) {
      return absl::Status(e.status().code(), "line " + std::to_string(line_number) + ": " +
                                                 std::string(e.status().message()));
    }
    events.push_back(*std::move(e));
  }
  if (in.bad()) {
    return absl::DataLossError("read error after line " + std::to_string(line_number));
  }
  return events;
}

absl::StatusOr<std::vector<Event>> ReadHistoryFile(const std::string& path) {
  std::ifstream in(path);
  if (!in.is_open()) {
    int err = errno;
    std::string reason = err != 0 ? std::strerror(err) : "cannot open";
    if (err == ENOENT) return absl::NotFoundError("cannot open history " + path + ": " + reason);
    return absl::FailedPreconditionError("cannot open history " + path + ": " + reason);
  }
  absl::StatusOr<std::vector<Event>> events = ReadHistory(in);
  if (!events.ok()) {
    return absl::Status(events.status().code(),
                        path + ": " + std::string(events.status().message()));
  }
  return events;
}

HistoryWriter::HistoryWriter(std::ostream& out) : out_(out) {}

void HistoryWriter::Write(const Event& e) {
  std::string line = ToJsonLine(e);
  line.push_back('\n');
  std::lock_guard<std::mutex> lock(mu_);
  out_.write(line.data(), static_cast<std::streamsize>(line.size()));
}

void HistoryWriter::Flush() {
  std::lock_guard<std::mutex> lock(mu_);
  out_.flush();
}

}  // namespace quorumkv::lincheck
