#include "kv/command.h"

#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "kv/coding.h"

namespace quorumkv::kv {
namespace {

constexpr uint8_t kFlagSession = 1 << 0;
constexpr uint8_t kFlagExpected = 1 << 1;

constexpr uint8_t kResultFormatVersion = 1;
constexpr uint8_t kResultFound = 1 << 0;
constexpr uint8_t kResultSwapped = 1 << 1;
constexpr uint8_t kResultHasCurrent = 1 << 2;

absl::Status Malformed(const coding::Reader& r, absl::string_view what) {
  return absl::InvalidArgumentError(
      absl::StrCat("malformed command at byte ", r.position(), ": ", what));
}

}  // namespace

const char* CommandTypeName(CommandType type) {
  switch (type) {
    case CommandType::kPut:
      return "Put";
    case CommandType::kDelete:
      return "Delete";
    case CommandType::kCompareAndSwap:
      return "CompareAndSwap";
  }
  return "Unknown";
}

Command Command::Put(std::string key, std::string value) {
  Command c;
  c.type = CommandType::kPut;
  c.key = std::move(key);
  c.value = std::move(value);
  return c;
}

Command Command::Delete(std::string key) {
  Command c;
  c.type = CommandType::kDelete;
  c.key = std::move(key);
  return c;
}

Command Command::CompareAndSwap(std::string key, std::optional<std::string> expected_value,
                                std::string new_value) {
  Command c;
  c.type = CommandType::kCompareAndSwap;
  c.key = std::move(key);
  c.expected_value = std::move(expected_value);
  c.value = std::move(new_value);
  return c;
}

std::string EncodeCommand(const Command& command) {
  std::string out;
  out.reserve(16 + command.key.size() + command.value.size() +
              (command.expected_value ? command.expected_value->size() : 0));
  uint8_t flags = 0;
  if (command.has_session()) flags |= kFlagSession;
  if (command.type == CommandType::kCompareAndSwap && command.expected_value.has_value()) {
    flags |= kFlagExpected;
  }
  out.push_back(static_cast<char>(kCommandFormatVersion));
  out.push_back(static_cast<char>(command.type));
  out.push_back(static_cast<char>(flags));
  coding::PutVarint64(&out, command.proposed_at_unix_ms);
  if (command.has_session()) {
    coding::PutVarint64(&out, command.client_id);
    coding::PutVarint64(&out, command.sequence);
  }
  coding::PutLengthPrefixed(&out, command.key);
  switch (command.type) {
    case CommandType::kPut:
      coding::PutLengthPrefixed(&out, command.value);
      break;
    case CommandType::kDelete:
      break;
    case CommandType::kCompareAndSwap:
      if (command.expected_value.has_value()) {
        coding::PutLengthPrefixed(&out, *command.expected_value);
      }
      coding::PutLengthPrefixed(&out, command.value);
      break;
  }
  return out;
}

absl::StatusOr<Command> DecodeCommand(absl::string_view bytes) {
  coding::Reader r(bytes);
  uint8_t version = 0, type = 0, flags = 0;
  if (!r.ReadByte(&version)) return Malformed(r, "empty input, expected a version byte");
  if (version != kCommandFormatVersion) {
    return absl::InvalidArgumentError(absl::StrCat("unsupported command format version ", version,
                                                   " (this build reads version ",
                                                   kCommandFormatVersion, ")"));
  }
  if (!r.ReadByte(&type)) return Malformed(r, "missing command type");
  if (type < static_cast<uint8_t>(CommandType::kPut) ||
      type > static_cast<uint8_t>(CommandType::kCompareAndSwap)) {
    return Malformed(r, absl::StrCat("unknown command type ", type));
  }
  Command c;
  c.type = static_cast<CommandType>(type);
  if (!r.ReadByte(&flags)) return Malformed(r, "missing flags byte");
  const uint8_t allowed =
      kFlagSession | (c.type == CommandType::kCompareAndSwap ? kFlagExpected : 0);
  if ((flags & ~allowed) != 0) {
    return Malformed(
        r, absl::StrCat("flags 0x", absl::Hex(flags), " not valid for ", CommandTypeName(c.type)));
  }
  if (!r.ReadVarint64(&c.proposed_at_unix_ms)) {
    return Malformed(r, "bad or truncated proposed_at_unix_ms varint");
  }
  if (flags & kFlagSession) {
    if (!r.ReadVarint64(&c.client_id)) return Malformed(r, "bad or truncated client_id varint");
    if (c.client_id == kNoClient) return Malformed(r, "session flag set with client_id 0");
    if (!r.ReadVarint64(&c.sequence)) return Malformed(r, "bad or truncated sequence varint");
  }
  absl::string_view field;
  if (!r.ReadLengthPrefixed(&field)) return Malformed(r, "bad or truncated key");
  c.key = std::string(field);
  switch (c.type) {
    case CommandType::kPut:
      if (!r.ReadLengthPrefixed(&field)) return Malformed(r, "bad or truncated value");
      c.value = std::string(field);
      break;
    case CommandType::kDelete:
      break;
    case CommandType::kCompareAndSwap:
      if (flags & kFlagExpected) {
        if (!r.ReadLengthPrefixed(&field)) return Malformed(r, "bad or truncated expected value");
        c.expected_value = std::string(field);
      }
      if (!r.ReadLengthPrefixed(&field)) return Malformed(r, "bad or truncated new value");
      c.value = std::string(field);
      break;
  }
  if (!r.empty()) return Malformed(r, absl::StrCat(r.remaining(), " trailing bytes"));
  return c;
}

std::string EncodeCommandResult(const CommandResult& result) {
  std::string out;
  uint8_t flags = 0;
  if (result.found) flags |= kResultFound;
  if (result.swapped) flags |= kResultSwapped;
  if (result.current_value.has_value()) flags |= kResultHasCurrent;
  out.push_back(static_cast<char>(kResultFormatVersion));
  out.push_back(static_cast<char>(flags));
  if (result.current_value.has_value()) coding::PutLengthPrefixed(&out, *result.current_value);
  return out;
}

absl::StatusOr<CommandResult> DecodeCommandResult(absl::string_view bytes) {
  coding::Reader r(bytes);
  uint8_t version = 0, flags = 0;
  if (!r.ReadByte(&version) || version != kResultFormatVersion) {
    return absl::InvalidArgumentError("malformed command result: bad version byte");
  }
  if (!r.ReadByte(&flags) || (flags & ~(kResultFound | kResultSwapped | kResultHasCurrent)) != 0) {
    return absl::InvalidArgumentError("malformed command result: bad flags byte");
  }
  CommandResult result;
  result.found = flags & kResultFound;
  result.swapped = flags & kResultSwapped;
  if (flags & kResultHasCurrent) {
    absl::string_view value;
    if (!r.ReadLengthPrefixed(&value)) {
      return absl::InvalidArgumentError("malformed command result: bad current value");
    }
    result.current_value = std::string(value);
  }
  if (!r.empty()) return absl::InvalidArgumentError("malformed command result: trailing bytes");
  return result;
}

}  // namespace quorumkv::kv
