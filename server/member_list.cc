#include "server/member_list.h"

#include <cstdlib>
#include <sstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"

namespace quorumkv::server {

namespace {
// One member per line: id, role (v/l), peer address, client address,
// separated by tabs. Addresses never hold tabs or newlines (validated).
std::string EncodeOne(const Member& m) {
  return std::to_string(m.id) + "\t" + (m.voter ? "v" : "l") + "\t" + m.peer_address + "\t" +
         m.client_address + "\n";
}

std::optional<Member> DecodeOne(absl::string_view line) {
  std::vector<std::string> f = absl::StrSplit(line, '\t');
  if (f.size() != 4 || (f[1] != "v" && f[1] != "l")) return std::nullopt;
  Member m;
  if (!absl::SimpleAtoi(f[0], &m.id) || m.id == 0) return std::nullopt;
  m.voter = f[1] == "v";
  m.peer_address = f[2];
  m.client_address = f[3];
  return m;
}
}  // namespace

std::string EncodeMemberContext(const Member& m) { return EncodeOne(m); }

std::optional<Member> DecodeMemberContext(const std::string& bytes) {
  if (bytes.empty() || bytes.back() != '\n') return std::nullopt;
  return DecodeOne(absl::string_view(bytes).substr(0, bytes.size() - 1));
}

std::vector<Member> MemberList::ToVector() const {
  std::vector<Member> out;
  for (const auto& [id, m] : members_) out.push_back(m);
  return out;
}

const Member* MemberList::Find(uint64_t id) const {
  auto it = members_.find(id);
  return it == members_.end() ? nullptr : &it->second;
}

MemberList MemberList::Apply(const raft::ConfChange& change) const {
  MemberList out = *this;
  const uint64_t id = change.node_id.value();
  std::optional<Member> announced = DecodeMemberContext(change.context);
  switch (change.type) {
    case raft::ConfChangeType::kAddLearner:
    case raft::ConfChangeType::kAddVoter: {
      Member m = announced.value_or(Member{});
      m.id = id;
      m.voter = change.type == raft::ConfChangeType::kAddVoter;
      if (const Member* existing = Find(id); existing != nullptr && !announced) {
        m.peer_address = existing->peer_address;
        m.client_address = existing->client_address;
      }
      // Adding an existing voter as a learner changes nothing (as in the core).
      if (const Member* existing = Find(id); existing != nullptr && existing->voter && !m.voter) break;
      out.members_[id] = m;
      break;
    }
    case raft::ConfChangeType::kPromoteLearner:
      if (auto it = out.members_.find(id); it != out.members_.end()) it->second.voter = true;
      break;
    case raft::ConfChangeType::kRemoveNode:
      out.members_.erase(id);
      break;
  }
  return out;
}

std::string MemberList::Encode() const {
  std::string out;
  for (const auto& [id, m] : members_) out += EncodeOne(m);
  return out;
}

absl::StatusOr<MemberList> MemberList::Decode(const std::string& bytes) {
  MemberList list;
  for (absl::string_view line : absl::StrSplit(bytes, '\n', absl::SkipEmpty())) {
    std::optional<Member> m = DecodeOne(line);
    if (!m) return absl::DataLossError("member list record is malformed: " + std::string(line));
    list.members_[m->id] = *m;
  }
  return list;
}

bool ValidHostPort(const std::string& address) {
  size_t colon = address.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 >= address.size()) return false;
  for (char c : address) {
    if (c == '\t' || c == '\n' || c == ' ' || c == ',' || c == '=') return false;
  }
  int port = 0;
  if (!absl::SimpleAtoi(address.substr(colon + 1), &port)) return false;
  return port >= 1 && port <= 65535;
}

}  // namespace quorumkv::server
