// kvctl: the command-line client of quorumkv. Run `kvctl --help`.
//
// Exit codes: 0 success; 1 an error from the cluster (message on stderr as
// "kvctl: CODE: endpoint: message"), a missing key for `get`, or some
// endpoint failing `status` / `endpoint health`; 2 a usage error (usage on
// stderr).
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"
#include "client/kv_client.h"
#include "nlohmann/json.hpp"

namespace quorumkv::client {
namespace {

namespace v1 = ::quorumkv::v1;
using nlohmann::json;

constexpr int kExitOk = 0;
constexpr int kExitError = 1;
constexpr int kExitUsage = 2;

// The client ports of the three-node local cluster.
constexpr char kDefaultEndpoints[] = "127.0.0.1:2379,127.0.0.1:22379,127.0.0.1:32379";
constexpr char kEndpointsEnv[] = "QUORUMKV_ENDPOINTS";

constexpr char kUsage[] = R"(Usage: kvctl [flags] COMMAND [args]

Commands:
  put KEY VALUE                 write a key
  get KEY [--consistency L]     print the value (L: linearizable (default), lease,
                                serializable); a missing key prints nothing on
                                stdout, "key not found: KEY" on stderr, exit 1
  del KEY                       delete a key ("deleted" or "not found")
  status                        one row per endpoint: id, role, term, leader,
                                commit and applied index (or why it failed)
  member list                   the cluster's members
  member add ID PEER_ADDR [--client-addr HOST:PORT] [--voter]
                                add a member (a learner unless --voter)
  member remove ID              remove a member
  member promote ID             make a learner a voter
  leader transfer [ID]          move leadership to ID (default: the most
                                up-to-date other voter)
  endpoint health               the gRPC health status of each endpoint

Flags (before or after the command; --flag=value or --flag value):
  --endpoints H:P,H:P   nodes to talk to (default: $QUORUMKV_ENDPOINTS, else
                        127.0.0.1:2379,127.0.0.1:22379,127.0.0.1:32379)
  --output table|json   output format (default table; json prints one document)
  --timeout DURATION    time limit of the command, retries included (default 5s)
  --help                print this help
  --                    the arguments after it are not flags (a value "-x")

Exit status: 0 ok; 1 error (stderr "kvctl: CODE: ..."), missing key, or an
endpoint failing status / health; 2 usage error.
)";

enum class Output { kTable, kJson };

struct Args {
  std::optional<std::string> endpoints;  // --endpoints, unparsed
  Output output = Output::kTable;
  absl::Duration timeout = absl::Seconds(5);
  std::optional<std::string> consistency;
  std::optional<std::string> client_addr;
  bool voter = false;
  bool help = false;
  std::vector<std::string> positional;
};

// A usage error: the message, then the usage text, on stderr.
struct UsageError {
  std::string message;
};

int Usage(const UsageError& error) {
  std::cerr << "kvctl: " << error.message << "\n\n" << kUsage;
  return kExitUsage;
}

int Fail(const absl::Status& status) {
  std::cerr << "kvctl: " << status.ToString() << "\n";
  return kExitError;
}

// Flags are parsed by hand: every flag is known, an unknown one is an error.
std::optional<UsageError> ParseArgs(int argc, char** argv, Args* args) {
  bool flags_done = false;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (flags_done || arg.size() < 2 || arg[0] != '-') {
      args->positional.push_back(arg);
      continue;
    }
    if (arg == "--") {
      flags_done = true;
      continue;
    }
    if (arg == "-h" || arg == "--help") {
      args->help = true;
      continue;
    }
    if (arg.rfind("--", 0) != 0) return UsageError{absl::StrCat("unknown flag ", arg)};
    std::string name = arg.substr(2);
    std::optional<std::string> value;
    if (const size_t eq = name.find('='); eq != std::string::npos) {
      value = name.substr(eq + 1);
      name = name.substr(0, eq);
    }
    if (name == "voter") {
      if (value.has_value()) return UsageError{"--voter takes no value"};
      args->voter = true;
      continue;
    }
    if (name != "endpoints" && name != "output" && name != "timeout" && name != "consistency" &&
        name != "client-addr") {
      return UsageError{absl::StrCat("unknown flag --", name)};
    }
    if (!value.has_value()) {
      if (i + 1 >= argc) return UsageError{absl::StrCat("flag --", name, " needs a value")};
      value = argv[++i];
    }
    if (name == "endpoints") {
      args->endpoints = *value;
    } else if (name == "output") {
      if (*value == "table") {
        args->output = Output::kTable;
      } else if (*value == "json") {
        args->output = Output::kJson;
      } else {
        return UsageError{absl::StrCat("bad --output \"", *value, "\" (want table or json)")};
      }
    } else if (name == "timeout") {
      absl::Duration timeout;
      if (!absl::ParseDuration(*value, &timeout) || timeout <= absl::ZeroDuration() ||
          timeout == absl::InfiniteDuration()) {
        return UsageError{
            absl::StrCat("bad --timeout \"", *value, "\" (want a positive duration: 5s, 500ms)")};
      }
      args->timeout = timeout;
    } else if (name == "consistency") {
      args->consistency = *value;
    } else {
      args->client_addr = *value;
    }
  }
  return std::nullopt;
}

absl::StatusOr<std::vector<std::string>> ParseEndpoints(const std::string& text,
                                                        const std::string& source) {
  std::vector<std::string> endpoints;
  for (absl::string_view part : absl::StrSplit(text, ',')) {
    part = absl::StripAsciiWhitespace(part);
    if (absl::Status status = ValidateEndpoint(std::string_view(part.data(), part.size()));
        !status.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(source, ": ", status.message()));
    }
    endpoints.emplace_back(part);
  }
  return endpoints;
}

std::optional<uint64_t> ParseId(const std::string& text) {
  if (text.empty() || text.size() > 20 ||
      !std::all_of(text.begin(), text.end(),
                   [](char c) { return absl::ascii_isdigit(static_cast<unsigned char>(c)); })) {
    return std::nullopt;
  }
  uint64_t id = 0;
  if (!absl::SimpleAtoi(text, &id) || id == 0) return std::nullopt;
  return id;
}

// True if `s` is well-formed UTF-8 (no overlong forms, no surrogates, at
// most U+10FFFF): such bytes can go into a JSON string as they are.
bool IsUtf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    size_t n = 0;
    uint32_t cp = 0;
    if (c < 0x80) {
      ++i;
      continue;
    } else if ((c & 0xE0) == 0xC0) {
      n = 1;
      cp = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
      n = 2;
      cp = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
      n = 3;
      cp = c & 0x07;
    } else {
      return false;
    }
    if (i + n >= s.size()) return false;  // truncated sequence
    for (size_t k = 1; k <= n; ++k) {
      const auto cc = static_cast<unsigned char>(s[i + k]);
      if ((cc & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (cc & 0x3F);
    }
    static constexpr uint32_t kMin[] = {0, 0x80, 0x800, 0x10000};
    if (cp < kMin[n] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
    i += n + 1;
  }
  return true;
}

std::string Base64(std::string_view data) {
  static constexpr char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((data.size() + 2) / 3 * 4);
  size_t i = 0;
  for (; i + 2 < data.size(); i += 3) {
    const uint32_t v = (static_cast<unsigned char>(data[i]) << 16) |
                       (static_cast<unsigned char>(data[i + 1]) << 8) |
                       static_cast<unsigned char>(data[i + 2]);
    out += kAlphabet[(v >> 18) & 63];
    out += kAlphabet[(v >> 12) & 63];
    out += kAlphabet[(v >> 6) & 63];
    out += kAlphabet[v & 63];
  }
  if (i + 1 == data.size()) {
    const uint32_t v = static_cast<unsigned char>(data[i]) << 16;
    out += kAlphabet[(v >> 18) & 63];
    out += kAlphabet[(v >> 12) & 63];
    out += "==";
  } else if (i + 2 == data.size()) {
    const uint32_t v = (static_cast<unsigned char>(data[i]) << 16) |
                       (static_cast<unsigned char>(data[i + 1]) << 8);
    out += kAlphabet[(v >> 18) & 63];
    out += kAlphabet[(v >> 12) & 63];
    out += kAlphabet[(v >> 6) & 63];
    out += '=';
  }
  return out;
}

// Adds `bytes` to `object` as `name` when it is UTF-8, else base64-encoded
// as `name`_base64: JSON strings cannot carry arbitrary bytes.
void AddBytes(json& object, const std::string& name, std::string_view bytes) {
  if (IsUtf8(bytes)) {
    object[name] = std::string(bytes);
  } else {
    object[name + "_base64"] = Base64(bytes);
  }
}

void PrintJson(const json& document) {
  std::cout << document.dump(2, ' ', false, json::error_handler_t::replace) << "\n";
}

// Aligned columns, two spaces apart, the header row first.
void PrintTable(const std::vector<std::string>& header,
                const std::vector<std::vector<std::string>>& rows) {
  std::vector<size_t> widths(header.size(), 0);
  auto measure = [&](const std::vector<std::string>& row) {
    for (size_t i = 0; i < row.size() && i < widths.size(); ++i) {
      widths[i] = std::max(widths[i], row[i].size());
    }
  };
  measure(header);
  for (const auto& row : rows) measure(row);
  auto print = [&](const std::vector<std::string>& row) {
    std::string line;
    for (size_t i = 0; i < row.size(); ++i) {
      line += row[i];
      if (i + 1 < row.size()) line += std::string(widths[i] - row[i].size() + 2, ' ');
    }
    while (!line.empty() && line.back() == ' ') line.pop_back();
    std::cout << line << "\n";
  };
  print(header);
  for (const auto& row : rows) print(row);
}

std::string RoleName(v1::MemberRole role) {
  switch (role) {
    case v1::VOTER:
      return "voter";
    case v1::LEARNER:
      return "learner";
    default:
      return "unspecified";
  }
}

int PrintMembers(std::vector<v1::Member> members, Output output) {
  std::sort(members.begin(), members.end(),
            [](const v1::Member& a, const v1::Member& b) { return a.id() < b.id(); });
  if (output == Output::kJson) {
    json list = json::array();
    for (const v1::Member& m : members) {
      list.push_back({{"id", m.id()},
                      {"role", RoleName(m.role())},
                      {"peer_address", m.peer_address()},
                      {"client_address", m.client_address()}});
    }
    PrintJson({{"members", list}});
    return kExitOk;
  }
  std::vector<std::vector<std::string>> rows;
  for (const v1::Member& m : members) {
    rows.push_back({absl::StrCat(m.id()), RoleName(m.role()), m.peer_address(),
                    m.client_address().empty() ? "-" : m.client_address()});
  }
  PrintTable({"ID", "ROLE", "PEER_ADDRESS", "CLIENT_ADDRESS"}, rows);
  return kExitOk;
}

// "unreachable" when the endpoint did not answer, "error" when it answered
// with an error.
std::string FailureKind(const absl::Status& status) {
  return status.code() == absl::StatusCode::kUnavailable ||
                 status.code() == absl::StatusCode::kDeadlineExceeded
             ? "unreachable"
             : "error";
}

// Runs `fn(endpoint)` for every endpoint at once (an unreachable one costs
// a timeout, which should not add up).
template <typename T, typename Fn>
std::vector<T> ForEachEndpoint(const std::vector<std::string>& endpoints, Fn fn) {
  std::vector<std::optional<T>> results(endpoints.size());
  std::vector<std::thread> threads;
  for (size_t i = 0; i < endpoints.size(); ++i) {
    threads.emplace_back([&, i] { results[i].emplace(fn(endpoints[i])); });
  }
  for (std::thread& t : threads) t.join();
  std::vector<T> out;
  for (auto& r : results) out.push_back(std::move(*r));
  return out;
}

int CmdStatus(KvClient& client, const std::vector<std::string>& endpoints, Output output) {
  const auto results = ForEachEndpoint<absl::StatusOr<v1::StatusResponse>>(
      endpoints, [&](const std::string& endpoint) { return client.Status(endpoint); });
  size_t failed = 0;
  json list = json::array();
  std::vector<std::vector<std::string>> rows;
  for (size_t i = 0; i < endpoints.size(); ++i) {
    const auto& r = results[i];
    if (!r.ok()) {
      ++failed;
      list.push_back({{"endpoint", endpoints[i]},
                      {"reachable", false},
                      {"error", r.status().ToString()}});
      rows.push_back({endpoints[i], "-", FailureKind(r.status()), "-", "-", "-", "-",
                      r.status().ToString()});
      continue;
    }
    json members = json::array();
    for (const v1::Member& m : r->members()) {
      members.push_back({{"id", m.id()},
                         {"role", RoleName(m.role())},
                         {"peer_address", m.peer_address()},
                         {"client_address", m.client_address()}});
    }
    list.push_back({{"endpoint", endpoints[i]},
                    {"reachable", true},
                    {"node_id", r->node_id()},
                    {"role", r->role()},
                    {"term", r->term()},
                    {"leader_id", r->leader_id()},
                    {"commit_index", r->commit_index()},
                    {"applied_index", r->applied_index()},
                    {"first_index", r->first_index()},
                    {"last_index", r->last_index()},
                    {"cluster_id", r->cluster_id()},
                    {"version", r->version()},
                    {"members", members}});
    rows.push_back({endpoints[i], absl::StrCat(r->node_id()), r->role(), absl::StrCat(r->term()),
                    r->leader_id() == 0 ? "-" : absl::StrCat(r->leader_id()),
                    absl::StrCat(r->commit_index()), absl::StrCat(r->applied_index()), ""});
  }
  if (output == Output::kJson) {
    PrintJson({{"endpoints", list}});
  } else {
    PrintTable({"ENDPOINT", "ID", "ROLE", "TERM", "LEADER", "COMMIT", "APPLIED", "ERROR"}, rows);
  }
  if (failed > 0) {
    std::cerr << "kvctl: " << failed << " of " << endpoints.size() << " endpoints failed\n";
    return kExitError;
  }
  return kExitOk;
}

int CmdHealth(KvClient& client, const std::vector<std::string>& endpoints, Output output) {
  const auto results = ForEachEndpoint<absl::StatusOr<HealthStatus>>(
      endpoints, [&](const std::string& endpoint) { return client.CheckHealth(endpoint); });
  size_t unhealthy = 0;
  json list = json::array();
  std::vector<std::vector<std::string>> rows;
  for (size_t i = 0; i < endpoints.size(); ++i) {
    const auto& r = results[i];
    json entry = {{"endpoint", endpoints[i]}};
    std::string health;
    std::string error;
    if (r.ok()) {
      health = std::string(HealthStatusName(*r));
    } else {
      health = FailureKind(r.status());
      error = r.status().ToString();
      entry["error"] = error;
    }
    if (!r.ok() || *r != HealthStatus::kServing) ++unhealthy;
    entry["health"] = health;
    list.push_back(entry);
    rows.push_back({endpoints[i], health, error});
  }
  if (output == Output::kJson) {
    PrintJson({{"endpoints", list}});
  } else {
    PrintTable({"ENDPOINT", "HEALTH", "ERROR"}, rows);
  }
  if (unhealthy > 0) {
    std::cerr << "kvctl: " << unhealthy << " of " << endpoints.size()
              << " endpoints not serving\n";
    return kExitError;
  }
  return kExitOk;
}

// Checks the number of arguments of a command (after its name).
std::optional<UsageError> WantArgs(const std::vector<std::string>& args, size_t skip, size_t min,
                                   size_t max, const std::string& command) {
  const size_t n = args.size() - skip;
  if (n < min) return UsageError{absl::StrCat(command, ": missing argument")};
  if (n > max) return UsageError{absl::StrCat(command, ": too many arguments")};
  return std::nullopt;
}

int Run(int argc, char** argv) {
  Args args;
  if (auto error = ParseArgs(argc, argv, &args)) return Usage(*error);
  if (args.help) {
    std::cout << kUsage;
    return kExitOk;
  }
  const std::vector<std::string>& pos = args.positional;
  if (pos.empty()) return Usage(UsageError{"no command given"});

  // Which command, its argument count and the flags that belong to it.
  std::string command = pos[0];
  size_t skip = 1;
  if (command == "member" || command == "leader" || command == "endpoint") {
    if (pos.size() < 2) return Usage(UsageError{absl::StrCat(command, ": missing subcommand")});
    command = absl::StrCat(pos[0], " ", pos[1]);
    skip = 2;
  }
  std::optional<UsageError> arity;
  if (command == "put") {
    arity = WantArgs(pos, skip, 2, 2, command);
  } else if (command == "get" || command == "del") {
    arity = WantArgs(pos, skip, 1, 1, command);
  } else if (command == "status" || command == "member list" || command == "endpoint health") {
    arity = WantArgs(pos, skip, 0, 0, command);
  } else if (command == "member add") {
    arity = WantArgs(pos, skip, 2, 2, command);
  } else if (command == "member remove" || command == "member promote") {
    arity = WantArgs(pos, skip, 1, 1, command);
  } else if (command == "leader transfer") {
    arity = WantArgs(pos, skip, 0, 1, command);
  } else {
    return Usage(UsageError{absl::StrCat("unknown command \"", command, "\"")});
  }
  if (arity.has_value()) return Usage(*arity);
  if (args.consistency.has_value() && command != "get") {
    return Usage(UsageError{"--consistency applies to get only"});
  }
  if ((args.client_addr.has_value() || args.voter) && command != "member add") {
    return Usage(UsageError{"--client-addr and --voter apply to member add only"});
  }

  v1::Consistency consistency = v1::LINEARIZABLE;
  if (args.consistency.has_value()) {
    const std::string level = absl::AsciiStrToLower(*args.consistency);
    if (level == "linearizable") {
      consistency = v1::LINEARIZABLE;
    } else if (level == "lease") {
      consistency = v1::LEASE;
    } else if (level == "serializable") {
      consistency = v1::SERIALIZABLE;
    } else {
      return Usage(UsageError{absl::StrCat("bad --consistency \"", *args.consistency,
                                           "\" (want linearizable, lease or serializable)")});
    }
  }
  std::optional<uint64_t> id;
  if (command == "member add" || command == "member remove" || command == "member promote" ||
      (command == "leader transfer" && pos.size() > skip)) {
    id = ParseId(pos[skip]);
    if (!id.has_value()) {
      return Usage(UsageError{
          absl::StrCat(command, ": bad member id \"", pos[skip], "\" (want a positive integer)")});
    }
  }
  if (command == "member add") {
    if (absl::Status s = ValidateEndpoint(pos[skip + 1]); !s.ok()) {
      return Usage(UsageError{absl::StrCat("member add: peer address: ", s.message())});
    }
    if (args.client_addr.has_value()) {
      if (absl::Status s = ValidateEndpoint(*args.client_addr); !s.ok()) {
        return Usage(UsageError{absl::StrCat("member add: --client-addr: ", s.message())});
      }
    }
  }

  absl::StatusOr<std::vector<std::string>> endpoints;
  if (args.endpoints.has_value()) {
    endpoints = ParseEndpoints(*args.endpoints, "--endpoints");
  } else if (const char* env = std::getenv(kEndpointsEnv); env != nullptr && *env != '\0') {
    endpoints = ParseEndpoints(env, kEndpointsEnv);
  } else {
    endpoints = ParseEndpoints(kDefaultEndpoints, "default endpoints");
  }
  if (!endpoints.ok()) return Usage(UsageError{std::string(endpoints.status().message())});

  ClientOptions options;
  options.endpoints = *endpoints;
  // --timeout bounds the whole command; the attempts within it are bounded
  // by time, not by count. One attempt gets a third of it (at least 2 s, at
  // most all of it), so a hung node leaves time to try another.
  options.total_timeout = args.timeout;
  options.request_timeout = std::min(args.timeout, std::max(absl::Seconds(2), args.timeout / 3));
  options.max_attempts = 1000;
  auto client_or = KvClient::Create(options);
  if (!client_or.ok()) return Usage(UsageError{std::string(client_or.status().message())});
  KvClient& client = **client_or;
  const Output output = args.output;

  if (command == "put") {
    if (absl::Status s = client.Put(pos[1], pos[2]); !s.ok()) return Fail(s);
    if (output == Output::kJson) {
      json doc = {{"ok", true}};
      AddBytes(doc, "key", pos[1]);
      PrintJson(doc);
    } else {
      std::cout << "OK\n";
    }
    return kExitOk;
  }
  if (command == "get") {
    auto value = client.Get(pos[1], consistency);
    if (!value.ok()) return Fail(value.status());
    if (!value->has_value()) {
      std::cerr << "key not found: " << pos[1] << "\n";
      return kExitError;
    }
    if (output == Output::kJson) {
      json doc = json::object();
      AddBytes(doc, "key", pos[1]);
      AddBytes(doc, "value", **value);
      PrintJson(doc);
    } else {
      std::cout << **value << "\n";
    }
    return kExitOk;
  }
  if (command == "del") {
    auto deleted = client.Delete(pos[1]);
    if (!deleted.ok()) return Fail(deleted.status());
    if (output == Output::kJson) {
      json doc = {{"deleted", *deleted}};
      AddBytes(doc, "key", pos[1]);
      PrintJson(doc);
    } else {
      std::cout << (*deleted ? "deleted" : "not found") << "\n";
    }
    return kExitOk;
  }
  if (command == "status") return CmdStatus(client, *endpoints, output);
  if (command == "endpoint health") return CmdHealth(client, *endpoints, output);

  absl::StatusOr<std::vector<v1::Member>> members;
  if (command == "member list") {
    members = client.ListMembers();
  } else if (command == "member add") {
    members = client.AddMember(*id, pos[skip + 1], args.client_addr.value_or(""), args.voter);
  } else if (command == "member remove") {
    members = client.RemoveMember(*id);
  } else if (command == "member promote") {
    members = client.PromoteMember(*id);
  } else {  // leader transfer
    auto leader = client.TransferLeadership(id.value_or(0));
    if (!leader.ok()) return Fail(leader.status());
    if (output == Output::kJson) {
      PrintJson({{"leader_id", *leader}});
    } else {
      std::cout << "leader: " << *leader << "\n";
    }
    return kExitOk;
  }
  if (!members.ok()) return Fail(members.status());
  return PrintMembers(*std::move(members), output);
}

}  // namespace
}  // namespace quorumkv::client

int main(int argc, char** argv) { return quorumkv::client::Run(argc, argv); }
