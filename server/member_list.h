// The cluster's members with their addresses. Replicated: every change is a
// configuration entry whose context carries the member's addresses, and the
// committed list lives in the state machine under a reserved key, so it is
// in every snapshot and survives restarts. The encoding is deterministic
// (sorted by id), since every replica writes it on apply.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "raft/types.h"

namespace quorumkv::server {

struct Member {
  uint64_t id = 0;
  std::string peer_address;
  std::string client_address;
  bool voter = true;
  bool operator==(const Member&) const = default;
};

// The state-machine key that holds the committed member list. User keys
// starting with a NUL byte are refused by the client API, so no client
// can overwrite it.
inline constexpr char kMembersKey[] = "\0quorumkv/members";
inline constexpr size_t kMembersKeyLength = sizeof(kMembersKey) - 1;

// A member's addresses as the context of a configuration entry.
std::string EncodeMemberContext(const Member& m);
std::optional<Member> DecodeMemberContext(const std::string& bytes);

class MemberList {
 public:
  const std::map<uint64_t, Member>& members() const { return members_; }
  std::vector<Member> ToVector() const;
  const Member* Find(uint64_t id) const;

  // The list after a configuration change (the change's context carries
  // the addresses of an added member). Deterministic.
  MemberList Apply(const raft::ConfChange& change) const;
  void Upsert(const Member& m) { members_[m.id] = m; }

  std::string Encode() const;
  static absl::StatusOr<MemberList> Decode(const std::string& bytes);

 private:
  std::map<uint64_t, Member> members_;
};

// host:port with a non-empty host and a port in 1..65535.
bool ValidHostPort(const std::string& address);

}  // namespace quorumkv::server
