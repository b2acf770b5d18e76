// State-machine commands: what a Raft log entry of type "normal" carries as
// its data, and the results the state machine returns for them.
//
// Wire format of a command (version 1; every integer is a canonical LEB128
// varint unless noted):
//
//   byte     version             kCommandFormatVersion (1)
//   byte     type                CommandType
//   byte     flags               bit 0: has a client session (client_id, sequence)
//                                bit 1: CAS only: an expected value follows
//                                other bits must be zero
//   varint   proposed_at_unix_ms the proposing leader's clock (see below)
//   [varint  client_id, varint sequence]       if flags bit 0
//   varint   key length, key bytes
//   kPut:    varint value length, value bytes
//   kDelete: nothing more
//   kCompareAndSwap:
//            [varint expected length, expected bytes]   if flags bit 1
//            varint new value length, new value bytes
//
// The encoding is canonical: DecodeCommand accepts exactly the bytes that
// EncodeCommand produces (no trailing bytes, no unused flag bits, shortest
// varints), so Encode(Decode(b)) == b whenever Decode(b) succeeds. A new
// format gets a new version byte; old versions stay decodable, because old
// entries stay in the log.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace quorumkv::kv {

inline constexpr uint8_t kCommandFormatVersion = 1;

// client_id 0 means "no session": the command is applied every time it
// appears in the log (no de-duplication).
inline constexpr uint64_t kNoClient = 0;

enum class CommandType : uint8_t {
  kPut = 1,
  kDelete = 2,
  kCompareAndSwap = 3,
};

const char* CommandTypeName(CommandType type);

struct Command {
  CommandType type = CommandType::kPut;
  std::string key;
  // kPut: the value to store. kCompareAndSwap: the new value. Not encoded
  // for kDelete.
  std::string value;
  // kCompareAndSwap only: the value the key must hold for the swap to
  // happen, or nullopt: the key must be absent. Not encoded otherwise.
  std::optional<std::string> expected_value;

  // Exactly-once semantics (Raft thesis §6.3): a client that retries a
  // write sends the same (client_id, sequence). The state machine keeps the
  // last (sequence, result) per client, so one client has at most one write
  // outstanding at a time and uses increasing sequences. sequence is not
  // encoded when client_id == kNoClient.
  uint64_t client_id = kNoClient;
  uint64_t sequence = 0;

  // Stamped by the leader when it proposes the command, from its own wall
  // clock. The state machine reads time only from here (never its local
  // clock), to expire client sessions identically on every replica.
  uint64_t proposed_at_unix_ms = 0;

  bool has_session() const { return client_id != kNoClient; }
  bool operator==(const Command&) const = default;

  static Command Put(std::string key, std::string value);
  static Command Delete(std::string key);
  static Command CompareAndSwap(std::string key, std::optional<std::string> expected_value,
                                std::string new_value);
};

std::string EncodeCommand(const Command& command);

// INVALID_ARGUMENT, with what was wrong and at which byte, for any input
// that EncodeCommand could not have produced. Never crashes, whatever the
// bytes.
absl::StatusOr<Command> DecodeCommand(absl::string_view bytes);

// The outcome of a command that took effect.
struct CommandResult {
  // Whether the key held a value just before the command: kPut replaced a
  // value; kDelete removed one (false: the key was already absent);
  // kCompareAndSwap found one.
  bool found = false;
  // kCompareAndSwap: whether the key held the expected value (or was absent
  // when absence was expected) and now holds the new value.
  bool swapped = false;
  // kCompareAndSwap: the key's value after the command (the new value if
  // swapped, else the unchanged current value; nullopt: absent).
  std::optional<std::string> current_value;

  bool operator==(const CommandResult&) const = default;
};

// A result is stored in the session table, so it has a compact, versioned
// encoding of its own:
//   byte version (1), byte flags (bit 0 found, bit 1 swapped, bit 2 has
//   current value), [varint length, current value bytes].
std::string EncodeCommandResult(const CommandResult& result);
absl::StatusOr<CommandResult> DecodeCommandResult(absl::string_view bytes);

}  // namespace quorumkv::kv
