// Which process owns the other end of a loopback TCP connection: what
// `ss -tp` does, from /proc. The peer proxy uses it to tell which kvserver
// opened a connection, so that it can cut one directed link (a -> b) while
// leaving every other link into b open, without the nodes' cooperation.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>

namespace quorumkv::fault {

// The inode of the TCP socket (IPv4 or IPv6, e.g. a v4-mapped dual-stack
// socket) whose local port is `local_port` and whose remote port is
// `remote_port`, from /proc/net/tcp and /proc/net/tcp6; nullopt if none.
// On loopback a (local port, remote port) pair names one connection end.
std::optional<uint64_t> FindTcpSocketInode(int local_port, int remote_port);

// Whether process `pid` has the socket with this inode open (one of its
// /proc/PID/fd links reads "socket:[inode]").
bool ProcessHasSocket(pid_t pid, uint64_t inode);

// Parses one line of /proc/net/tcp or /proc/net/tcp6: local port, remote
// port and inode; nullopt for the header line or a malformed one. Exposed
// for the unit test.
struct TcpSocketLine {
  int local_port = 0;
  int remote_port = 0;
  uint64_t inode = 0;
};
std::optional<TcpSocketLine> ParseProcNetTcpLine(const std::string& line);

}  // namespace quorumkv::fault
