// Network partitions for real on the wire: a TCP proxy in front of each
// node's peer port, and a table of blocked directed links.
//
// Design (TESTING.md, "The peer proxy"): every node advertises its proxy's
// address (--advertise-peer-addr, and the same address in --initial-cluster /
// --join / AddMember), so every connection from any peer to node B passes
// through B's proxy. On accept, the proxy finds which kvserver process owns
// the connecting socket (socket_owner.h: /proc/net/tcp + /proc/PID/fd, what
// `ss -tp` does), so each connection is tagged with its directed link
// (source A -> destination B). One listener per destination suffices for
// per-link control, and it survives membership changes (a node added later
// gets a proxy like the founders; there is no per-pair address to hand out).
//
// A connection belongs to the link of the node that opened it: everything A
// initiates toward B (A's Raft messages, A's forwarded writes, A's snapshot
// streams, and B's transport-level replies to those calls) travels on
// connections A opened to B's proxy. Blocking A -> B therefore stops every
// message A sends to B, while B's own calls to A (on connections B opened to
// A's proxy) still flow: a one-way partition at the message level.
//
// Blocking is a black hole, like a dropped-packet firewall rule and unlike a
// refused connection: the proxy stops reading from both sockets of the
// link's connections, bytes pile up in kernel buffers, the sender's calls
// time out; new connections are accepted and held the same way. Healing
// resumes the flow, and what was held is delivered late, in order, as TCP
// would after a short outage. A connection whose upstream node is down is
// closed at once (the peer sees a reset, as with a dead host's refusal).
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"

namespace quorumkv::fault {

// Node id 0 stands for "unknown source".
inline constexpr uint64_t kUnknownNode = 0;

// The set of blocked directed links (from, to). Thread-safe.
class LinkTable {
 public:
  void Block(uint64_t from, uint64_t to);
  void Unblock(uint64_t from, uint64_t to);
  void HealAll();
  // A connection of unknown origin into `to` is blocked as soon as any link
  // into `to` is: partitions err on the side of cutting.
  bool Blocked(uint64_t from, uint64_t to) const;
  std::vector<std::pair<uint64_t, uint64_t>> BlockedLinks() const;
  // Bumped on every change; pumps poll it cheaply.
  uint64_t generation() const { return generation_.load(); }

 private:
  mutable std::mutex mu_;
  std::set<std::pair<uint64_t, uint64_t>> blocked_;
  std::atomic<uint64_t> generation_{0};
};

struct ProxyStats {
  uint64_t accepted = 0;
  uint64_t unknown_source = 0;    // connections whose owner was not found
  uint64_t upstream_refused = 0;  // the node behind the proxy was down
  uint64_t bytes_forwarded = 0;
};

class PeerProxy {
 public:
  // Maps the port of a connecting socket (its local port; the remote port
  // is the proxy's) to the node that owns it, or kUnknownNode.
  using SourceResolver = std::function<uint64_t(int client_port, int proxy_port)>;

  // Listens on 127.0.0.1 (an OS-chosen port) in front of node `node_id`,
  // whose real peer port is `upstream_port`.
  static absl::StatusOr<std::unique_ptr<PeerProxy>> Start(uint64_t node_id, int upstream_port,
                                                          const LinkTable* links, SourceResolver resolver);
  ~PeerProxy();  // stops accepting, closes every connection, joins its threads
  PeerProxy(const PeerProxy&) = delete;
  PeerProxy& operator=(const PeerProxy&) = delete;

  int port() const { return port_; }
  uint64_t node_id() const { return node_id_; }
  ProxyStats stats() const;
  // Live connections by source node (for the nemesis log and the tests).
  std::vector<uint64_t> ConnectionSources() const;

 private:
  struct Connection {
    uint64_t src = kUnknownNode;
    int client_fd = -1;
    int upstream_fd = -1;
    std::atomic<int> live_pumps{2};
    std::thread to_upstream;
    std::thread to_client;
  };

  PeerProxy(uint64_t node_id, int upstream_port, const LinkTable* links, SourceResolver resolver);
  void AcceptLoop();
  void Pump(Connection* c, int from_fd, int to_fd);
  void ReapFinished(bool all);

  const uint64_t node_id_;
  const int upstream_port_;
  const LinkTable* const links_;
  const SourceResolver resolver_;
  int listen_fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::thread acceptor_;

  mutable std::mutex mu_;
  std::list<std::unique_ptr<Connection>> connections_;
  ProxyStats stats_;
  std::atomic<uint64_t> bytes_forwarded_{0};
};

}  // namespace quorumkv::fault
