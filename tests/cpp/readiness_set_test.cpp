// tests/cpp/readiness_set_test.cpp — the loop's level-triggered kernel readiness set.
#include "pyloop/readiness_set.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <thread>
#include <vector>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

namespace pyloop {
namespace {

struct socket_pair {
  int fds[2];
  socket_pair() { EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, fds), 0); }
  ~socket_pair() {
    if (fds[0] >= 0) ::close(fds[0]);
    if (fds[1] >= 0) ::close(fds[1]);
  }
};

std::vector<ready_descriptor> wait_for(readiness_set& set, int timeout_ms) {
  std::vector<ready_descriptor> got;
  for (const ready_descriptor& r : set.wait(timeout_ms)) got.push_back(r);
  return got;
}

TEST(ReadinessSet, ReportsALevelUntilItIsConsumed) {
  readiness_set set;
  ASSERT_FALSE(set.open());
  socket_pair sp;
  ASSERT_FALSE(set.update(sp.fds[0], 0, readable));
  EXPECT_TRUE(wait_for(set, 0).empty());
  ASSERT_EQ(::write(sp.fds[1], "ab", 2), 2);
  for (int i = 0; i < 3; ++i) {  // level-triggered: reported again while unread
    auto got = wait_for(set, 1000);
    ASSERT_EQ(got.size(), 1u);
    EXPECT_EQ(got[0].fd, sp.fds[0]);
    EXPECT_EQ(got[0].bits, static_cast<unsigned>(readable));
  }
  char buffer[4];
  ASSERT_EQ(::read(sp.fds[0], buffer, sizeof buffer), 2);
  EXPECT_TRUE(wait_for(set, 0).empty());
}

TEST(ReadinessSet, InterestChangesAddAndDropDirections) {
  readiness_set set;
  ASSERT_FALSE(set.open());
  socket_pair sp;
  ASSERT_FALSE(set.update(sp.fds[0], 0, readable));
  EXPECT_TRUE(wait_for(set, 0).empty());  // writable, but only reading is of interest
  ASSERT_FALSE(set.update(sp.fds[0], readable, readable | writable));
  auto got = wait_for(set, 0);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].bits, static_cast<unsigned>(writable));
  ASSERT_FALSE(set.update(sp.fds[0], readable | writable, 0));
  ASSERT_EQ(::write(sp.fds[1], "x", 1), 1);
  EXPECT_TRUE(wait_for(set, 0).empty());
}

TEST(ReadinessSet, HangUpWakesBothDirectionsAndIsReported) {
  readiness_set set;
  ASSERT_FALSE(set.open());
  socket_pair sp;
  ASSERT_FALSE(set.update(sp.fds[0], 0, readable));
  ::close(sp.fds[1]);
  sp.fds[1] = -1;
  auto got = wait_for(set, 1000);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].bits, static_cast<unsigned>(readable | writable | hangup));
}

TEST(ReadinessSet, APeersResetIsReportedAsHangUpWithTheDataBeforeIt) {
  readiness_set set;
  ASSERT_FALSE(set.open());
  int listener = ::socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(listener, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t length = sizeof address;
  ASSERT_EQ(::bind(listener, reinterpret_cast<sockaddr*>(&address), sizeof address), 0);
  ASSERT_EQ(::listen(listener, 1), 0);
  ASSERT_EQ(::getsockname(listener, reinterpret_cast<sockaddr*>(&address), &length), 0);
  int client = ::socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_EQ(::connect(client, reinterpret_cast<sockaddr*>(&address), sizeof address), 0);
  int server = ::accept4(listener, nullptr, nullptr, SOCK_NONBLOCK);
  ASSERT_GE(server, 0);
  ASSERT_FALSE(set.update(server, 0, readable));
  ASSERT_EQ(::write(client, "GET", 3), 3);
  auto got = wait_for(set, 1000);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].bits, static_cast<unsigned>(readable));  // data alone: no hang-up
  linger reset{1, 0};  // close() sends RST
  ASSERT_EQ(::setsockopt(client, SOL_SOCKET, SO_LINGER, &reset, sizeof reset), 0);
  ::close(client);
  got = wait_for(set, 1000);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].bits, static_cast<unsigned>(readable | writable | hangup));
  char buffer[8];
  EXPECT_EQ(::read(server, buffer, sizeof buffer), 3);  // the data sent before the reset
  ASSERT_FALSE(set.update(server, readable, 0));
  ::close(server);
  ::close(listener);
}

TEST(ReadinessSet, ClosedDescriptorsLeaveQuietlyAndTheirNumbersCanBeRegisteredAgain) {
  readiness_set set;
  ASSERT_FALSE(set.open());
  socket_pair first;
  const int fd = first.fds[0];
  ASSERT_FALSE(set.update(fd, 0, readable));
  ::close(fd);  // the kernel drops the registration with the last reference
  first.fds[0] = -1;
  EXPECT_FALSE(set.update(fd, readable, 0));  // removing it is not an error
  // The number is reused while the set still believes the old registration exists:
  // the change is made against the new descriptor.
  socket_pair second;
  const int reused = ::dup2(second.fds[0], fd);
  ASSERT_EQ(reused, fd);
  ASSERT_FALSE(set.update(fd, readable, readable | writable));
  auto got = wait_for(set, 0);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].fd, fd);
  EXPECT_EQ(got[0].bits, static_cast<unsigned>(writable));
  ASSERT_FALSE(set.update(fd, readable | writable, 0));
  ::close(fd);
}

TEST(ReadinessSet, RefusesDescriptorsTheKernelCannotWatch) {
  readiness_set set;
  ASSERT_FALSE(set.open());
  EXPECT_TRUE(set.update(12345, 0, readable));  // not open
  char path[] = "/tmp/pyloop-readiness-XXXXXX";
  const int file = ::mkstemp(path);
  ASSERT_GE(file, 0);
  ::unlink(path);
  EXPECT_TRUE(set.update(file, 0, readable));  // regular files are always ready: refused
  ::close(file);
}

TEST(ReadinessSet, WakeEndsAnIndefiniteWaitAndIsNotReported) {
  readiness_set set;
  ASSERT_FALSE(set.open());
  std::thread waker([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    set.wake();
  });
  const auto start = std::chrono::steady_clock::now();
  auto got = wait_for(set, -1);
  waker.join();
  EXPECT_TRUE(got.empty());
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(5));
  EXPECT_TRUE(wait_for(set, 0).empty());  // consumed
}

}  // namespace
}  // namespace pyloop
