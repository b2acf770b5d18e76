#include "tests/fault/socket_owner.h"

#include <dirent.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <vector>

namespace quorumkv::fault {

namespace {

// "0100007F:1F90" or "00000000000000000000FFFF0100007F:1F90" -> 0x1F90.
std::optional<int> PortOf(const std::string& address) {
  const size_t colon = address.rfind(':');
  if (colon == std::string::npos || colon + 1 >= address.size()) return std::nullopt;
  char* end = nullptr;
  const long port = std::strtol(address.c_str() + colon + 1, &end, 16);
  if (end == nullptr || *end != '\0' || port < 0 || port > 65535) return std::nullopt;
  return static_cast<int>(port);
}

}  // namespace

std::optional<TcpSocketLine> ParseProcNetTcpLine(const std::string& line) {
  // sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode ...
  std::istringstream in(line);
  std::vector<std::string> fields;
  std::string f;
  while (in >> f && fields.size() < 10) fields.push_back(f);
  if (fields.size() < 10 || fields[0].empty() || fields[0].back() != ':') return std::nullopt;
  std::optional<int> local = PortOf(fields[1]);
  std::optional<int> remote = PortOf(fields[2]);
  if (!local || !remote) return std::nullopt;
  char* end = nullptr;
  const unsigned long long inode = std::strtoull(fields[9].c_str(), &end, 10);
  if (end == nullptr || *end != '\0') return std::nullopt;
  return TcpSocketLine{*local, *remote, inode};
}

std::optional<uint64_t> FindTcpSocketInode(int local_port, int remote_port) {
  for (const char* file : {"/proc/net/tcp", "/proc/net/tcp6"}) {
    std::ifstream in(file);
    std::string line;
    while (std::getline(in, line)) {
      std::optional<TcpSocketLine> s = ParseProcNetTcpLine(line);
      // Inode 0: a socket in TIME_WAIT, owned by nobody.
      if (s && s->local_port == local_port && s->remote_port == remote_port && s->inode != 0) return s->inode;
    }
  }
  return std::nullopt;
}

bool ProcessHasSocket(pid_t pid, uint64_t inode) {
  const std::string dir = "/proc/" + std::to_string(pid) + "/fd";
  DIR* d = opendir(dir.c_str());
  if (d == nullptr) return false;
  const std::string want = "socket:[" + std::to_string(inode) + "]";
  bool found = false;
  char target[128];
  while (dirent* e = readdir(d)) {
    if (e->d_name[0] == '.') continue;
    const std::string link = dir + "/" + e->d_name;
    const ssize_t n = readlink(link.c_str(), target, sizeof target - 1);
    if (n <= 0) continue;
    target[n] = '\0';
    if (want == target) {
      found = true;
      break;
    }
  }
  closedir(d);
  return found;
}

}  // namespace quorumkv::fault
