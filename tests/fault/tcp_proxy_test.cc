// The peer proxy and the socket-owner lookup, on plain loopback sockets: an
// echo server stands in for a node's peer port.
#include "tests/fault/tcp_proxy.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "tests/fault/socket_owner.h"

namespace quorumkv::fault {
namespace {

int Listen(int* port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  EXPECT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  EXPECT_EQ(listen(fd, 16), 0);
  EXPECT_EQ(getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len), 0);
  *port = ntohs(addr.sin_port);
  return fd;
}

int Connect(int port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  EXPECT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  return fd;
}

int LocalPort(int fd) {
  sockaddr_in addr{};
  socklen_t len = sizeof addr;
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  return ntohs(addr.sin_port);
}

// Reads what arrives within `wait`; "" if nothing; "<closed>" on EOF/reset.
std::string ReadFor(int fd, std::chrono::milliseconds wait) {
  pollfd p{fd, POLLIN, 0};
  if (poll(&p, 1, static_cast<int>(wait.count())) <= 0) return "";
  char buf[256];
  const ssize_t n = recv(fd, buf, sizeof buf, 0);
  if (n <= 0) return "<closed>";
  return std::string(buf, static_cast<size_t>(n));
}

void Send(int fd, const std::string& s) { ASSERT_EQ(send(fd, s.data(), s.size(), MSG_NOSIGNAL), static_cast<ssize_t>(s.size())); }

// Echoes every connection back to its sender.
class EchoServer {
 public:
  EchoServer() {
    listen_fd_ = Listen(&port_);
    thread_ = std::thread([this] {
      while (!stop_) {
        pollfd p{listen_fd_, POLLIN, 0};
        if (poll(&p, 1, 50) <= 0) continue;
        const int fd = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
        if (fd < 0) continue;
        fds_.push_back(fd);
        workers_.emplace_back([this, fd] {
          char buf[256];
          while (!stop_) {
            pollfd q{fd, POLLIN, 0};
            if (poll(&q, 1, 50) <= 0) continue;
            const ssize_t n = recv(fd, buf, sizeof buf, 0);
            if (n <= 0) break;
            send(fd, buf, static_cast<size_t>(n), MSG_NOSIGNAL);
          }
        });
      }
    });
  }
  ~EchoServer() {
    stop_ = true;
    thread_.join();
    for (std::thread& t : workers_) t.join();
    for (int fd : fds_) close(fd);
    close(listen_fd_);
  }
  int port() const { return port_; }

 private:
  int listen_fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::thread thread_;
  std::vector<std::thread> workers_;
  std::vector<int> fds_;
};

constexpr uint64_t kDestination = 3;

TEST(SocketOwnerTest, ParsesProcNetTcpLines) {
  auto v4 = ParseProcNetTcpLine(
      "   3: 0100007F:9C40 0100007F:1F90 01 00000000:00000000 00:00000000 00000000     0        0 123456 1 "
      "0000000000000000 20 4 30 10 -1");
  ASSERT_TRUE(v4.has_value());
  EXPECT_EQ(v4->local_port, 0x9C40);
  EXPECT_EQ(v4->remote_port, 0x1F90);
  EXPECT_EQ(v4->inode, 123456u);
  auto v6 = ParseProcNetTcpLine(
      "   0: 0000000000000000FFFF00000100007F:A000 0000000000000000FFFF00000100007F:0050 01 00000000:00000000 "
      "00:00000000 00000000     0        0 42 1 0000000000000000 20 4 30 10 -1");
  ASSERT_TRUE(v6.has_value());
  EXPECT_EQ(v6->local_port, 0xA000);
  EXPECT_EQ(v6->remote_port, 0x50);
  EXPECT_EQ(v6->inode, 42u);
  EXPECT_FALSE(ParseProcNetTcpLine("  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  "
                                   "timeout inode").has_value());
  EXPECT_FALSE(ParseProcNetTcpLine("").has_value());
}

TEST(SocketOwnerTest, FindsTheProcessThatOwnsAConnection) {
  int port = 0;
  const int listener = Listen(&port);
  const int client = Connect(port);
  std::optional<uint64_t> inode = FindTcpSocketInode(LocalPort(client), port);
  ASSERT_TRUE(inode.has_value());
  EXPECT_TRUE(ProcessHasSocket(getpid(), *inode));
  EXPECT_FALSE(ProcessHasSocket(getpid(), *inode + 1000000007ull));
  EXPECT_FALSE(FindTcpSocketInode(LocalPort(client), port == 1 ? 2 : 1).has_value());
  close(client);
  close(listener);
}

TEST(LinkTableTest, BlocksDirectedLinksAndUnknownSourcesConservatively) {
  LinkTable links;
  EXPECT_FALSE(links.Blocked(1, 2));
  links.Block(1, 2);
  EXPECT_TRUE(links.Blocked(1, 2));
  EXPECT_FALSE(links.Blocked(2, 1));
  EXPECT_FALSE(links.Blocked(3, 2));
  EXPECT_TRUE(links.Blocked(kUnknownNode, 2));
  EXPECT_FALSE(links.Blocked(kUnknownNode, 1));
  links.HealAll();
  EXPECT_FALSE(links.Blocked(1, 2));
  EXPECT_TRUE(links.BlockedLinks().empty());
}

TEST(PeerProxyTest, ForwardsBothWays) {
  EchoServer echo;
  LinkTable links;
  auto proxy = PeerProxy::Start(kDestination, echo.port(), &links, [](int, int) { return uint64_t{1}; });
  ASSERT_TRUE(proxy.ok()) << proxy.status();
  const int c = Connect((*proxy)->port());
  Send(c, "hello");
  EXPECT_EQ(ReadFor(c, std::chrono::milliseconds(2000)), "hello");
  close(c);
}

TEST(PeerProxyTest, BlockedLinkHoldsBytesAndDeliversThemAfterHealing) {
  EchoServer echo;
  LinkTable links;
  auto proxy = PeerProxy::Start(kDestination, echo.port(), &links, [](int, int) { return uint64_t{1}; });
  ASSERT_TRUE(proxy.ok()) << proxy.status();
  const int c = Connect((*proxy)->port());
  Send(c, "a");
  EXPECT_EQ(ReadFor(c, std::chrono::milliseconds(2000)), "a");
  links.Block(1, kDestination);
  Send(c, "b");
  EXPECT_EQ(ReadFor(c, std::chrono::milliseconds(300)), "");  // a black hole, not a reset
  links.Unblock(1, kDestination);
  EXPECT_EQ(ReadFor(c, std::chrono::milliseconds(2000)), "b");
  close(c);
}

TEST(PeerProxyTest, NewConnectionsOnABlockedLinkAreHeldToo) {
  EchoServer echo;
  LinkTable links;
  links.Block(1, kDestination);
  auto proxy = PeerProxy::Start(kDestination, echo.port(), &links, [](int, int) { return uint64_t{1}; });
  ASSERT_TRUE(proxy.ok()) << proxy.status();
  const int c = Connect((*proxy)->port());
  Send(c, "x");
  EXPECT_EQ(ReadFor(c, std::chrono::milliseconds(300)), "");
  links.HealAll();
  EXPECT_EQ(ReadFor(c, std::chrono::milliseconds(2000)), "x");
  close(c);
}

TEST(PeerProxyTest, OneWayBlockLeavesOtherSourcesAlone) {
  EchoServer echo;
  LinkTable links;
  std::atomic<uint64_t> next_source{1};
  // The first connection comes from node 1, the second from node 2.
  auto proxy = PeerProxy::Start(kDestination, echo.port(), &links, [&](int, int) { return next_source++; });
  ASSERT_TRUE(proxy.ok()) << proxy.status();
  const int from1 = Connect((*proxy)->port());
  Send(from1, "1");
  ASSERT_EQ(ReadFor(from1, std::chrono::milliseconds(2000)), "1");
  const int from2 = Connect((*proxy)->port());
  Send(from2, "2");
  ASSERT_EQ(ReadFor(from2, std::chrono::milliseconds(2000)), "2");
  links.Block(1, kDestination);
  links.Block(kDestination, 2);  // the reverse direction: not this proxy's business
  Send(from1, "x");
  Send(from2, "y");
  EXPECT_EQ(ReadFor(from2, std::chrono::milliseconds(2000)), "y");
  EXPECT_EQ(ReadFor(from1, std::chrono::milliseconds(300)), "");
  close(from1);
  close(from2);
}

TEST(PeerProxyTest, UpstreamDownClosesTheConnection) {
  int port = 0;
  const int placeholder = Listen(&port);
  close(placeholder);  // nothing listens on `port` any more
  LinkTable links;
  auto proxy = PeerProxy::Start(kDestination, port, &links, [](int, int) { return uint64_t{1}; });
  ASSERT_TRUE(proxy.ok()) << proxy.status();
  const int c = Connect((*proxy)->port());
  EXPECT_EQ(ReadFor(c, std::chrono::milliseconds(2000)), "<closed>");
  close(c);
  EXPECT_EQ((*proxy)->stats().upstream_refused, 1u);
}

TEST(PeerProxyTest, IdentifiesTheConnectingProcessFromProc) {
  EchoServer echo;
  LinkTable links;
  auto proxy = PeerProxy::Start(kDestination, echo.port(), &links, [](int client_port, int proxy_port) {
    std::optional<uint64_t> inode = FindTcpSocketInode(client_port, proxy_port);
    return inode && ProcessHasSocket(getpid(), *inode) ? uint64_t{5} : kUnknownNode;
  });
  ASSERT_TRUE(proxy.ok()) << proxy.status();
  const int c = Connect((*proxy)->port());
  Send(c, "z");
  ASSERT_EQ(ReadFor(c, std::chrono::milliseconds(2000)), "z");
  EXPECT_EQ((*proxy)->ConnectionSources(), std::vector<uint64_t>{5});
  EXPECT_EQ((*proxy)->stats().unknown_source, 0u);
  links.Block(5, kDestination);
  Send(c, "w");
  EXPECT_EQ(ReadFor(c, std::chrono::milliseconds(300)), "");
  close(c);
}

}  // namespace
}  // namespace quorumkv::fault
