// tests/cpp/datagram_io_test.cpp — batched receives (order, addresses, the rest of a batch
// kept across a pause or a failure), immediate sends, the backlog and its flow control, errors.
#include "pyloop/datagram_io.hpp"

#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "pyloop/loop_driver.hpp"
#include "test_transport_owner.hpp"

namespace pyloop {
namespace {

using testing::run_turn;

// A stand-in transport recording what its datagram_io told it.
struct datagram_owner {
  int refs = 0;                          // references held by watches and queued entries
  std::vector<std::string> datagrams;    // payloads, in delivery order
  std::vector<std::string> senders;      // "host:port" of each, or "" for no address
  std::vector<std::string> events;       // "error:<errno>@<where>", "high", "sent", "drained"
  std::function<void(std::size_t)> on_datagram;  // after the n-th datagram (0-based)
  bool fail_on_datagram = false;         // datagram_received returns false (an exit exception)
  int callback_failures = 0;

  static datagram_owner& of(void* o) { return *static_cast<datagram_owner*>(o); }
  static bool received(void* o, const char* data, std::size_t size, const sockaddr* from,
                       socklen_t length) noexcept {
    datagram_owner& self = of(o);
    self.datagrams.emplace_back(data, size);
    std::string sender;
    if (length != 0 && from->sa_family == AF_INET) {
      auto* in = reinterpret_cast<const sockaddr_in*>(from);
      char host[INET_ADDRSTRLEN];
      ::inet_ntop(AF_INET, &in->sin_addr, host, sizeof host);
      sender = std::string(host) + ":" + std::to_string(ntohs(in->sin_port));
    } else if (length != 0 && from->sa_family == AF_UNIX) {
      sender = "unix";
    }
    self.senders.push_back(sender);
    if (self.on_datagram) self.on_datagram(self.datagrams.size() - 1);
    if (self.fail_on_datagram) {
      self.fail_on_datagram = false;
      return false;
    }
    return true;
  }
  static bool error(void* o, int error, datagram_context where) noexcept {
    of(o).events.push_back("error:" + std::to_string(error) + "@" +
                           std::to_string(static_cast<int>(where)));
    return true;
  }
  static bool yes(void*) noexcept { return true; }
  static bool high(void* o) noexcept {
    of(o).events.push_back("high");
    return true;
  }
  static bool sent(void* o) noexcept {
    of(o).events.push_back("sent");
    return true;
  }
  static bool drained(void* o) noexcept {
    of(o).events.push_back("drained");
    return true;
  }
  static callback_status failed(void* o) noexcept {
    ++of(o).callback_failures;
    return callback_status::done;
  }
  static void retain(void* o) noexcept { ++of(o).refs; }
  static void release(void* o) noexcept { --of(o).refs; }
};

constexpr datagram_io_events owner_events{
    datagram_owner::received, datagram_owner::error, datagram_owner::yes,  datagram_owner::yes,
    datagram_owner::high,     datagram_owner::sent,  datagram_owner::drained,
    datagram_owner::failed,   datagram_owner::retain, datagram_owner::release};

// A non-blocking UDP socket bound to an ephemeral loopback port.
struct udp_socket {
  int fd = ::socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
  sockaddr_in address{};
  udp_socket() {
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address), 0);
    socklen_t length = sizeof address;
    EXPECT_EQ(::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length), 0);
  }
  ~udp_socket() { ::close(fd); }
  const sockaddr* addr() const { return reinterpret_cast<const sockaddr*>(&address); }
  void send_to(const udp_socket& to, const std::string& data) const {
    ASSERT_EQ(::sendto(fd, data.data(), data.size(), 0, to.addr(), sizeof to.address),
              static_cast<ssize_t>(data.size()));
  }
  std::vector<std::string> drain() const {
    std::vector<std::string> got;
    char buffer[65536];
    ssize_t n;
    while ((n = ::recv(fd, buffer, sizeof buffer, 0)) >= 0) got.emplace_back(buffer, n);
    return got;
  }
};

class DatagramIO : public ::testing::Test {
 protected:
  void TearDown() override {
    io.reset();
    EXPECT_EQ(owner.refs, 0) << "owner references left";
  }
  int turns_until(std::size_t datagrams) {
    int turns = 0;
    while (owner.datagrams.size() < datagrams && turns < 20) {
      run_turn(loop);
      ++turns;
    }
    return turns;
  }

  loop_driver loop;
  udp_socket local, peer;
  datagram_owner owner;
  std::unique_ptr<datagram_io> io =
      std::make_unique<datagram_io>(loop, local.fd, true, owner_events, &owner);
};

TEST_F(DatagramIO, ABurstArrivesInOneReceiveCallInOrderWithSenders) {
  ASSERT_FALSE(io->start_reading());
  for (int i = 0; i < 10; ++i) peer.send_to(local, "d" + std::to_string(i));
  EXPECT_EQ(turns_until(10), 1);
  ASSERT_EQ(owner.datagrams.size(), 10u);
  for (int i = 0; i < 10; ++i) EXPECT_EQ(owner.datagrams[i], "d" + std::to_string(i));
  const std::string sender = "127.0.0.1:" + std::to_string(ntohs(peer.address.sin_port));
  for (const std::string& s : owner.senders) EXPECT_EQ(s, sender);
  EXPECT_EQ(io->receive_calls(), 1u);
}

TEST_F(DatagramIO, TheBatchLimitBoundsOneCall) {
  io->set_batch_limit(4);
  ASSERT_FALSE(io->start_reading());
  for (int i = 0; i < 10; ++i) peer.send_to(local, "d" + std::to_string(i));
  EXPECT_EQ(turns_until(10), 3);
  EXPECT_EQ(owner.datagrams.back(), "d9");
}

TEST_F(DatagramIO, EmptyAndLargeDatagramsArriveWhole) {
  ASSERT_FALSE(io->start_reading());
  const std::string large(60 * 1024, 'L');
  peer.send_to(local, "");
  peer.send_to(local, large);
  turns_until(2);
  ASSERT_EQ(owner.datagrams.size(), 2u);
  EXPECT_EQ(owner.datagrams[0], "");
  EXPECT_EQ(owner.datagrams[1], large);
}

TEST_F(DatagramIO, PausingMidBatchKeepsTheRestForResume) {
  ASSERT_FALSE(io->start_reading());
  owner.on_datagram = [&](std::size_t n) {
    if (n == 2) io->stop_reading();
  };
  for (int i = 0; i < 6; ++i) peer.send_to(local, "d" + std::to_string(i));
  turns_until(6);
  EXPECT_EQ(owner.datagrams.size(), 3u);
  owner.on_datagram = nullptr;
  ASSERT_FALSE(io->start_reading());  // nothing more arrives: the kept ones still come
  turns_until(6);
  ASSERT_EQ(owner.datagrams.size(), 6u);
  for (int i = 0; i < 6; ++i) EXPECT_EQ(owner.datagrams[i], "d" + std::to_string(i));
}

TEST_F(DatagramIO, AFailedDeliveryAbortsAndTheRestFollowsNextTurn) {
  ASSERT_FALSE(io->start_reading());
  owner.on_datagram = [&](std::size_t n) {
    if (n == 1) owner.fail_on_datagram = true;
  };
  for (int i = 0; i < 4; ++i) peer.send_to(local, "d" + std::to_string(i));
  run_turn(loop);
  EXPECT_EQ(owner.datagrams.size(), 2u);
  EXPECT_EQ(owner.callback_failures, 1);
  owner.on_datagram = nullptr;
  turns_until(4);
  ASSERT_EQ(owner.datagrams.size(), 4u);
  EXPECT_EQ(owner.datagrams[3], "d3");
}

TEST_F(DatagramIO, DiscardDropsWhatWasKept) {
  ASSERT_FALSE(io->start_reading());
  owner.on_datagram = [&](std::size_t n) {
    if (n == 0) {
      io->stop_reading();
      io->discard();
    }
  };
  for (int i = 0; i < 3; ++i) peer.send_to(local, "d");
  turns_until(3);
  owner.on_datagram = nullptr;
  ASSERT_FALSE(io->start_reading());
  run_turn(loop);
  run_turn(loop);
  EXPECT_EQ(owner.datagrams.size(), 1u);
}

TEST_F(DatagramIO, SendGoesOutAtOnceToTheGivenAddress) {
  const std::string data = "hello";
  EXPECT_EQ(io->send(datagram_out{data.data(), data.size(), peer.addr(), sizeof peer.address}),
            datagram_outcome::ok);
  EXPECT_EQ(io->backlog(), 0u);
  EXPECT_EQ(peer.drain(), (std::vector<std::string>{"hello"}));
}

TEST_F(DatagramIO, ARefusedPeerReachesErrorReceived) {
  // Connected to a port nobody listens on: the ICMP error comes back on the next call.
  int closed_port;
  {
    udp_socket gone;
    closed_port = gone.address.sin_port;
  }
  sockaddr_in to = peer.address;
  to.sin_port = closed_port;
  ASSERT_EQ(::connect(local.fd, reinterpret_cast<sockaddr*>(&to), sizeof to), 0);
  ASSERT_FALSE(io->start_reading());
  EXPECT_EQ(io->send(datagram_out{"x", 1, nullptr, 0}), datagram_outcome::ok);
  for (int i = 0; i < 20 && owner.events.empty(); ++i) run_turn(loop);
  ASSERT_FALSE(owner.events.empty());
  EXPECT_EQ(owner.events[0], "error:" + std::to_string(ECONNREFUSED) + "@0");
}

TEST_F(DatagramIO, ABacklogFormsOnEagainPausesAndDrainsInOrder) {
  // Unix datagram sockets block when the receiver's queue is full, unlike loopback UDP.
  int fds[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK, 0, fds), 0);
  datagram_owner unix_owner;
  {
    datagram_io unix_io(loop, fds[0], false, owner_events, &unix_owner);
    unix_io.set_limits(4096, 1024);
    unix_io.set_overhead(8);
    const std::string block(1000, 'b');
    int sent = 0;
    while (unix_io.backlog() == 0 && sent < 100000) {
      ASSERT_EQ(unix_io.send(datagram_out{block.data(), block.size(), nullptr, 0}),
                datagram_outcome::ok);
      ++sent;
    }
    ASSERT_EQ(unix_io.backlog(), 1u);
    EXPECT_TRUE(unix_io.waiting());
    for (int i = 0; i < 5; ++i) {
      std::string numbered = std::to_string(i) + block;
      ASSERT_EQ(unix_io.send(datagram_out{numbered.data(), numbered.size(), nullptr, 0}),
                datagram_outcome::ok);
    }
    EXPECT_EQ(unix_io.backlog(), 6u);
    EXPECT_EQ(unix_io.buffer_size(), 6 * 1008u + 5);
    EXPECT_EQ(unix_owner.events.front(), "high");
    // The reader takes everything; the writability callback sends the backlog in order.
    char buffer[2048];
    int read = 0;
    std::vector<std::string> tail;
    for (int turn = 0; turn < 200 && unix_io.backlog() > 0; ++turn) {
      ssize_t n;
      while ((n = ::recv(fds[1], buffer, sizeof buffer, 0)) >= 0) {
        ++read;
        if (read > sent) tail.emplace_back(buffer, 1);
      }
      run_turn(loop);
    }
    ssize_t n;
    while ((n = ::recv(fds[1], buffer, sizeof buffer, 0)) >= 0) {
      ++read;
      if (read > sent) tail.emplace_back(buffer, 1);
    }
    EXPECT_EQ(unix_io.backlog(), 0u);
    EXPECT_EQ(unix_io.buffer_size(), 0u);
    EXPECT_FALSE(unix_io.waiting());
    EXPECT_EQ(read, sent + 5);
    EXPECT_EQ(tail, (std::vector<std::string>{"0", "1", "2", "3", "4"}));  // after the queued "b"
    EXPECT_EQ(unix_owner.events.back(), "drained");
  }
  EXPECT_EQ(unix_owner.refs, 0);
  ::close(fds[0]);
  ::close(fds[1]);
}

TEST_F(DatagramIO, DiscardDropsTheBacklogAndTheWatch) {
  int fds[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK, 0, fds), 0);
  datagram_owner unix_owner;
  {
    datagram_io unix_io(loop, fds[0], false, owner_events, &unix_owner);
    const std::string block(1000, 'b');
    while (unix_io.backlog() == 0) unix_io.send(datagram_out{block.data(), block.size(), nullptr, 0});
    EXPECT_EQ(unix_owner.refs, 1);  // the writability watch
    unix_io.discard();
    EXPECT_EQ(unix_io.backlog(), 0u);
    EXPECT_FALSE(unix_io.waiting());
    EXPECT_EQ(unix_owner.refs, 0);
  }
  ::close(fds[0]);
  ::close(fds[1]);
}

TEST_F(DatagramIO, StartingOnAClosedLoopIsRefused) {
  loop.close();
  EXPECT_EQ(io->start_reading(), std::error_code(EBADF, std::generic_category()));
  EXPECT_FALSE(io->reading());
}

// -- the system calls (core/src/socket_io.cpp) ---------------------------------------------

TEST(DatagramCalls, ReceiveDatagramsFillsSlotsAndTruncatesLikeRecvfrom) {
  udp_socket a, b;
  b.send_to(a, "short");
  b.send_to(a, "a longer datagram");
  char memory[2][8];
  sockaddr_storage from[2];
  datagram_slot slots[2] = {{memory[0], 8, 0, &from[0], 0}, {memory[1], 8, 0, &from[1], 0}};
  io_result got = receive_datagrams(a.fd, slots, 2);
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(got.bytes, 2);
  EXPECT_EQ(std::string(memory[0], slots[0].size), "short");
  EXPECT_EQ(std::string(memory[1], slots[1].size), "a longer");  // truncated to the slot
  EXPECT_EQ(slots[0].from_length, sizeof(sockaddr_in));
  EXPECT_EQ(reinterpret_cast<sockaddr_in*>(&from[1])->sin_port, b.address.sin_port);
  EXPECT_TRUE(receive_datagrams(a.fd, slots, 2).would_block());
}

TEST(DatagramCalls, AnUnnamedUnixSenderHasNoAddress) {
  int fds[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK, 0, fds), 0);
  ASSERT_EQ(::send(fds[1], "x", 1, 0), 1);
  char memory[4];
  sockaddr_storage from;
  datagram_slot slot{memory, sizeof memory, 0, &from, 0};
  io_result got = receive_datagrams(fds[0], &slot, 1);
  EXPECT_EQ(got.bytes, 1);
  EXPECT_EQ(slot.from_length, 0u);
  ::close(fds[0]);
  ::close(fds[1]);
}

TEST(DatagramCalls, SendDatagramsSendsABatchInOrder) {
  udp_socket a, b;
  const std::string payloads[3] = {"one", "", "three"};
  datagram_out batch[3];
  for (int i = 0; i < 3; ++i) {
    batch[i] = datagram_out{payloads[i].data(), payloads[i].size(), b.addr(), sizeof b.address};
  }
  io_result sent = send_datagrams(a.fd, batch, 3);
  ASSERT_TRUE(sent.ok());
  std::vector<std::string> got = b.drain();
  EXPECT_EQ(static_cast<std::size_t>(sent.bytes), got.size());  // 3 with sendmmsg, 1 without
  EXPECT_EQ(got.front(), "one");
}

}  // namespace
}  // namespace pyloop
