#include "raft/types.h"

#include <algorithm>
#include <sstream>

namespace quorumkv::raft {

bool ConfState::IsVoter(NodeId id) const {
  return std::binary_search(voters.begin(), voters.end(), id);
}

bool ConfState::IsLearner(NodeId id) const {
  return std::binary_search(learners.begin(), learners.end(), id);
}

std::string ConfState::ToString() const {
  std::ostringstream os;
  os << "voters=[";
  for (size_t i = 0; i < voters.size(); ++i) os << (i ? "," : "") << voters[i];
  os << "] learners=[";
  for (size_t i = 0; i < learners.size(); ++i) os << (i ? "," : "") << learners[i];
  os << "]";
  return os.str();
}

namespace {
void PutU64(std::string& out, uint64_t v) {
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
bool GetU64(const std::string& in, size_t& pos, uint64_t& v) {
  if (in.size() - pos < 8) return false;
  v = 0;
  for (int i = 0; i < 8; ++i) v |= static_cast<uint64_t>(static_cast<uint8_t>(in[pos + i])) << (8 * i);
  pos += 8;
  return true;
}
constexpr uint8_t kConfChangeVersion = 1;
}  // namespace

// Layout: version (1 byte), type (1 byte), node id (u64 LE), context length
// (u64 LE), context bytes.
std::string ConfChange::Encode() const {
  std::string out;
  out.push_back(static_cast<char>(kConfChangeVersion));
  out.push_back(static_cast<char>(type));
  PutU64(out, node_id.value());
  PutU64(out, context.size());
  out += context;
  return out;
}

std::optional<ConfChange> ConfChange::Decode(const std::string& bytes) {
  if (bytes.size() < 2 || static_cast<uint8_t>(bytes[0]) != kConfChangeVersion) return std::nullopt;
  uint8_t type = static_cast<uint8_t>(bytes[1]);
  if (type > static_cast<uint8_t>(ConfChangeType::kAddVoter)) return std::nullopt;
  size_t pos = 2;
  uint64_t id = 0, len = 0;
  if (!GetU64(bytes, pos, id) || !GetU64(bytes, pos, len)) return std::nullopt;
  if (bytes.size() - pos != len) return std::nullopt;
  ConfChange cc;
  cc.type = static_cast<ConfChangeType>(type);
  cc.node_id = NodeId(id);
  cc.context = bytes.substr(pos);
  return cc;
}

ConfState ApplyConfChange(const ConfState& conf, const ConfChange& cc) {
  ConfState out = conf;
  auto erase = [](std::vector<NodeId>& v, NodeId id) { v.erase(std::remove(v.begin(), v.end(), id), v.end()); };
  auto insert = [](std::vector<NodeId>& v, NodeId id) {
    auto it = std::lower_bound(v.begin(), v.end(), id);
    if (it == v.end() || *it != id) v.insert(it, id);
  };
  switch (cc.type) {
    case ConfChangeType::kAddLearner:
      if (!out.IsVoter(cc.node_id)) insert(out.learners, cc.node_id);
      break;
    case ConfChangeType::kPromoteLearner:
      if (out.IsLearner(cc.node_id)) {
        erase(out.learners, cc.node_id);
        insert(out.voters, cc.node_id);
      }
      break;
    case ConfChangeType::kAddVoter:
      erase(out.learners, cc.node_id);
      insert(out.voters, cc.node_id);
      break;
    case ConfChangeType::kRemoveNode:
      erase(out.learners, cc.node_id);
      erase(out.voters, cc.node_id);
      break;
  }
  return out;
}

const char* RoleName(Role role) {
  switch (role) {
    case Role::kFollower: return "follower";
    case Role::kPreCandidate: return "pre-candidate";
    case Role::kCandidate: return "candidate";
    case Role::kLeader: return "leader";
  }
  return "?";
}

}  // namespace quorumkv::raft
