// Operation histories for linearizability checking: the in-memory event and
// its JSON Lines encoding. The format is fixed by shared/HISTORY.md; every
// recorder (the simulator, the real-process fault tests) writes it through
// HistoryWriter and every checker reads it through ReadHistory, so the two
// sides cannot drift apart.
#pragma once

#include <cstdint>
#include <istream>
#include <mutex>
#include <optional>
#include <ostream>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace quorumkv::lincheck {

enum class EventType { kInvoke, kOk, kFail, kInfo };
enum class Function { kPut, kGet, kDelete, kCas };
enum class Consistency { kLinearizable, kLease, kSerializable };

// One line of a history: an invocation or its completion.
struct Event {
  int64_t process = 0;
  EventType type = EventType::kInvoke;
  Function f = Function::kGet;
  std::string key;
  // put: the value written; get ok: the value read, nullopt = key absent;
  // otherwise nullopt.
  std::optional<std::string> value;
  // cas only: expected (nullopt = "key absent"), new value, and on ok
  // whether the swap happened.
  std::optional<std::string> cas_expected;
  std::string cas_new;
  bool cas_ok = false;
  int64_t time_ns = 0;
  Consistency consistency = Consistency::kLinearizable;  // get only

  bool operator==(const Event&) const = default;
};

// The names used in the JSON encoding ("invoke", "put", "lease", ...).
std::string_view EventTypeName(EventType type);
std::string_view FunctionName(Function f);
std::string_view ConsistencyName(Consistency c);

// One JSON object on one line, without a trailing newline. Fields are written
// in the order of HISTORY.md (process, type, f, key, value, time,
// consistency); `consistency` only for gets that are not linearizable, cas
// `ok` only on an ok completion. JSON strings are Unicode: bytes of a key or
// value that are not valid UTF-8 are written as U+FFFD (never a crash).
std::string ToJsonLine(const Event& e);

// Parses one line. Unknown fields are ignored (room for additions such as an
// error text); missing or ill-typed required fields, unknown names and values
// that contradict the format (a value on a delete, a cas without its object,
// ...) are InvalidArgument with a message naming the field.
absl::StatusOr<Event> ParseJsonLine(std::string_view line);

// Reads a whole history, one event per line; blank lines are skipped. An error
// names the 1-based line number ("line 17: ...").
absl::StatusOr<std::vector<Event>> ReadHistory(std::istream& in);
absl::StatusOr<std::vector<Event>> ReadHistoryFile(const std::string& path);

// Appends events as JSON lines to a stream. Write() is safe to call from
// several client threads at once: each line is written whole, under a lock,
// so lines never interleave. The stream must outlive the writer.
class HistoryWriter {
 public:
  explicit HistoryWriter(std::ostream& out);
  HistoryWriter(const HistoryWriter&) = delete;
  HistoryWriter& operator=(const HistoryWriter&) = delete;

  void Write(const Event& e);
  // Flushes the stream, e.g. before a test inspects the file.
  void Flush();

 private:
  std::mutex mu_;
  std::ostream& out_;
};

}  // namespace quorumkv::lincheck
