#include "tests/fault/tcp_proxy.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace quorumkv::fault {

// ---------------------------------------------------------------------------
// LinkTable

void LinkTable::Block(uint64_t from, uint64_t to) {
  std::lock_guard<std::mutex> lock(mu_);
  blocked_.emplace(from, to);
  ++generation_;
}

void LinkTable::Unblock(uint64_t from, uint64_t to) {
  std::lock_guard<std::mutex> lock(mu_);
  blocked_.erase({from, to});
  ++generation_;
}

void LinkTable::HealAll() {
  std::lock_guard<std::mutex> lock(mu_);
  blocked_.clear();
  ++generation_;
}

bool LinkTable::Blocked(uint64_t from, uint64_t to) const {
  std::lock_guard<std::mutex> lock(mu_);
  if (from != kUnknownNode) return blocked_.contains({from, to});
  for (const auto& [f, t] : blocked_) {
    if (t == to) return true;
  }
  return false;
}

std::vector<std::pair<uint64_t, uint64_t>> LinkTable::BlockedLinks() const {
  std::lock_guard<std::mutex> lock(mu_);
  return {blocked_.begin(), blocked_.end()};
}

// ---------------------------------------------------------------------------
// PeerProxy

namespace {

void SetNoDelay(int fd) {
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

// Closes with a reset rather than a FIN: what a peer sees when the host
// behind the proxy refuses the connection.
void CloseWithReset(int fd) {
  linger l{1, 0};
  setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
  close(fd);
}

int ConnectLoopback(int port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

int PortOf(const sockaddr_storage& addr) {
  if (addr.ss_family == AF_INET) return ntohs(reinterpret_cast<const sockaddr_in&>(addr).sin_port);
  if (addr.ss_family == AF_INET6) return ntohs(reinterpret_cast<const sockaddr_in6&>(addr).sin6_port);
  return 0;
}

}  // namespace

PeerProxy::PeerProxy(uint64_t node_id, int upstream_port, const LinkTable* links, SourceResolver resolver)
    : node_id_(node_id), upstream_port_(upstream_port), links_(links), resolver_(std::move(resolver)) {}

absl::StatusOr<std::unique_ptr<PeerProxy>> PeerProxy::Start(uint64_t node_id, int upstream_port,
                                                            const LinkTable* links, SourceResolver resolver) {
  if (links == nullptr) return absl::InvalidArgumentError("PeerProxy needs a link table");
  std::unique_ptr<PeerProxy> p(new PeerProxy(node_id, upstream_port, links, std::move(resolver)));
  p->listen_fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (p->listen_fd_ < 0) return absl::InternalError(absl::StrCat("socket: ", std::strerror(errno)));
  int one = 1;
  setsockopt(p->listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof addr;
  if (bind(p->listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      listen(p->listen_fd_, 128) != 0 ||
      getsockname(p->listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    return absl::InternalError(absl::StrCat("proxy for node ", node_id, " cannot listen: ", std::strerror(errno)));
  }
  p->port_ = ntohs(addr.sin_port);
  p->acceptor_ = std::thread([raw = p.get()] { raw->AcceptLoop(); });
  return p;
}

PeerProxy::~PeerProxy() {
  stop_ = true;
  if (acceptor_.joinable()) acceptor_.join();
  if (listen_fd_ >= 0) close(listen_fd_);
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto& c : connections_) {
      shutdown(c->client_fd, SHUT_RDWR);
      shutdown(c->upstream_fd, SHUT_RDWR);
    }
  }
  ReapFinished(true);
}

ProxyStats PeerProxy::stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  ProxyStats s = stats_;
  s.bytes_forwarded = bytes_forwarded_.load();
  return s;
}

std::vector<uint64_t> PeerProxy::ConnectionSources() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<uint64_t> out;
  for (const auto& c : connections_) {
    if (c->live_pumps.load() > 0) out.push_back(c->src);
  }
  return out;
}

void PeerProxy::AcceptLoop() {
  while (!stop_.load()) {
    pollfd p{listen_fd_, POLLIN, 0};
    const int r = poll(&p, 1, 100);
    ReapFinished(false);
    if (r <= 0 || (p.revents & POLLIN) == 0) continue;
    sockaddr_storage addr{};
    socklen_t len = sizeof addr;
    const int fd = accept4(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len, SOCK_CLOEXEC);
    if (fd < 0) continue;
    const uint64_t src = resolver_ ? resolver_(PortOf(addr), port_) : kUnknownNode;
    const int up = ConnectLoopback(upstream_port_);
    {
      std::lock_guard<std::mutex> lock(mu_);
      ++stats_.accepted;
      if (src == kUnknownNode) ++stats_.unknown_source;
      if (up < 0) ++stats_.upstream_refused;
    }
    if (up < 0) {
      CloseWithReset(fd);
      continue;
    }
    SetNoDelay(fd);
    SetNoDelay(up);
    auto c = std::make_unique<Connection>();
    c->src = src;
    c->client_fd = fd;
    c->upstream_fd = up;
    Connection* raw = c.get();
    // Listed before its pumps start: once bytes flow through it, the
    // connection is visible to ConnectionSources. Only this thread reaps
    // (until the destructor, which joins it first), so the threads can be
    // started after the connection is listed.
    {
      std::lock_guard<std::mutex> lock(mu_);
      connections_.push_back(std::move(c));
    }
    raw->to_upstream = std::thread([this, raw] { Pump(raw, raw->client_fd, raw->upstream_fd); });
    raw->to_client = std::thread([this, raw] { Pump(raw, raw->upstream_fd, raw->client_fd); });
  }
}

// Copies bytes from one socket to the other while the connection's link is
// open; while it is blocked, reads nothing (the black hole).
void PeerProxy::Pump(Connection* c, int from_fd, int to_fd) {
  std::vector<char> buf(64 * 1024);
  bool failed = false;
  while (!stop_.load()) {
    if (links_->Blocked(c->src, node_id_)) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
      continue;
    }
    pollfd p{from_fd, POLLIN, 0};
    const int r = poll(&p, 1, 20);
    if (r < 0 && errno != EINTR) {
      failed = true;
      break;
    }
    // The link may have been cut while we waited: what arrived stays put.
    if (r <= 0 || links_->Blocked(c->src, node_id_)) continue;
    const ssize_t n = recv(from_fd, buf.data(), buf.size(), 0);
    if (n == 0) {
      shutdown(to_fd, SHUT_WR);  // pass the half-close on
      break;
    }
    if (n < 0) {
      if (errno == EINTR || errno == EAGAIN) continue;
      failed = true;
      break;
    }
    size_t off = 0;
    while (off < static_cast<size_t>(n)) {
      const ssize_t w = send(to_fd, buf.data() + off, static_cast<size_t>(n) - off, MSG_NOSIGNAL);
      if (w < 0) {
        if (errno == EINTR) continue;
        failed = true;
        break;
      }
      off += static_cast<size_t>(w);
    }
    if (failed) break;
    bytes_forwarded_ += static_cast<uint64_t>(n);
  }
  if (failed || stop_.load()) {
    // A reset or a dead end on one side: end both directions.
    shutdown(from_fd, SHUT_RDWR);
    shutdown(to_fd, SHUT_RDWR);
  }
  --c->live_pumps;
}

void PeerProxy::ReapFinished(bool all) {
  std::list<std::unique_ptr<Connection>> done;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto it = connections_.begin(); it != connections_.end();) {
      if (all || (*it)->live_pumps.load() == 0) {
        done.push_back(std::move(*it));
        it = connections_.erase(it);
      } else {
        ++it;
      }
    }
  }
  for (auto& c : done) {
    if (c->to_upstream.joinable()) c->to_upstream.join();
    if (c->to_client.joinable()) c->to_client.join();
    close(c->client_fd);
    close(c->upstream_fd);
  }
}

}  // namespace quorumkv::fault
