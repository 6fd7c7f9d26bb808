// tests/cpp/socket_io_test.cpp — read_some/write_some/write_vector: EINTR, EAGAIN, EPIPE, pipes.
#include "pyloop/socket_io.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <fstream>
#include <string>
#include <thread>

#include <fcntl.h>
#include <pthread.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

namespace pyloop {
namespace {

// A connected pair of Unix stream sockets, non-blocking unless asked otherwise.
struct socket_pair {
  int fds[2] = {-1, -1};
  explicit socket_pair(bool nonblocking = true) {
    EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | (nonblocking ? SOCK_NONBLOCK : 0), 0, fds), 0);
  }
  ~socket_pair() {
    for (int fd : fds) {
      if (fd >= 0) ::close(fd);
    }
  }
  void close_end(int i) {
    ::close(fds[i]);
    fds[i] = -1;
  }
};

// A pipe (fds[0] reads, fds[1] writes), non-blocking unless asked otherwise.
struct pipe_pair {
  int fds[2] = {-1, -1};
  explicit pipe_pair(bool nonblocking = true) {
    EXPECT_EQ(::pipe2(fds, O_CLOEXEC | (nonblocking ? O_NONBLOCK : 0)), 0);
  }
  ~pipe_pair() {
    for (int fd : fds) {
      if (fd >= 0) ::close(fd);
    }
  }
  void close_end(int i) {
    ::close(fds[i]);
    fds[i] = -1;
  }
};

std::string read_all(int fd) {
  std::string got;
  char buffer[4096];
  ssize_t n;
  while ((n = ::read(fd, buffer, sizeof buffer)) > 0) got.append(buffer, static_cast<size_t>(n));
  return got;
}

// Installs a disposition for a signal and unblocks it for the calling thread; restores both.
class signal_disposition {
 public:
  signal_disposition(int signum, void (*handler)(int)) : signum_(signum) {
    struct sigaction action {};
    action.sa_handler = handler;
    sigemptyset(&action.sa_mask);
    action.sa_flags = 0;  // no SA_RESTART: an interrupted call fails with EINTR
    EXPECT_EQ(::sigaction(signum, &action, &old_action_), 0);
    sigset_t unblock;
    sigemptyset(&unblock);
    sigaddset(&unblock, signum);
    EXPECT_EQ(::pthread_sigmask(SIG_UNBLOCK, &unblock, &old_mask_), 0);
  }
  ~signal_disposition() {
    ::pthread_sigmask(SIG_SETMASK, &old_mask_, nullptr);
    ::sigaction(signum_, &old_action_, nullptr);
  }
  signal_disposition(const signal_disposition&) = delete;
  signal_disposition& operator=(const signal_disposition&) = delete;

 private:
  int signum_;                      // the signal whose disposition is replaced
  struct sigaction old_action_ {};  // restored at the end
  sigset_t old_mask_{};             // the thread's signal mask before, restored at the end
};

TEST(SocketIo, SocketBytesGoThroughSendAndRecv) {
  socket_pair sp;
  io_result sent = write_some(descriptor_kind::socket, sp.fds[0], "hello", 5);
  EXPECT_TRUE(sent.ok());
  EXPECT_EQ(sent.bytes, 5);
  EXPECT_EQ(sent.error, 0);
  char buffer[16];
  io_result got = read_some(descriptor_kind::socket, sp.fds[1], buffer, sizeof buffer);
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(std::string(buffer, static_cast<size_t>(got.bytes)), "hello");
}

TEST(SocketIo, EmptyNonBlockingSocketReportsWouldBlock) {
  socket_pair sp;
  char buffer[16];
  io_result got = read_some(descriptor_kind::socket, sp.fds[0], buffer, sizeof buffer);
  EXPECT_FALSE(got.ok());
  EXPECT_TRUE(got.would_block());
  EXPECT_EQ(got.bytes, -1);
  EXPECT_TRUE(got.error == EAGAIN || got.error == EWOULDBLOCK);
}

TEST(SocketIo, FullSocketReportsWouldBlockOnWrite) {
  socket_pair sp;
  std::string block(65536, 'x');
  io_result sent;
  std::size_t total = 0;
  for (int i = 0; i < 10000; ++i) {
    sent = write_some(descriptor_kind::socket, sp.fds[0], block.data(), block.size());
    if (!sent.ok()) break;
    total += static_cast<std::size_t>(sent.bytes);
  }
  EXPECT_GT(total, 0u);
  EXPECT_TRUE(sent.would_block());
  iovec two[2] = {{block.data(), 10}, {block.data(), 10}};
  EXPECT_TRUE(write_vector(descriptor_kind::socket, sp.fds[0], two, 2).would_block());
}

TEST(SocketIo, PeerClosedSocketReadsEndOfStream) {
  socket_pair sp;
  sp.close_end(1);
  char buffer[16];
  io_result got = read_some(descriptor_kind::socket, sp.fds[0], buffer, sizeof buffer);
  EXPECT_TRUE(got.ok());
  EXPECT_EQ(got.bytes, 0);
  EXPECT_FALSE(got.would_block());
}

TEST(SocketIo, BadDescriptorReportsEbadfWithoutThrowing) {
  char buffer[4] = {};
  io_result got = read_some(descriptor_kind::socket, -1, buffer, sizeof buffer);
  EXPECT_EQ(got.bytes, -1);
  EXPECT_EQ(got.error, EBADF);
  EXPECT_FALSE(got.would_block());
  io_result sent = write_some(descriptor_kind::stream, -1, buffer, sizeof buffer);
  EXPECT_EQ(sent.error, EBADF);
}

// SIGPIPE's default action kills the process: a test that survives proves MSG_NOSIGNAL.
TEST(SocketIo, SendToClosedPeerReportsEpipeInsteadOfSigpipe) {
  signal_disposition sigpipe(SIGPIPE, SIG_DFL);
  socket_pair sp;
  sp.close_end(1);
  io_result sent = write_some(descriptor_kind::socket, sp.fds[0], "x", 1);
  EXPECT_EQ(sent.bytes, -1);
  EXPECT_EQ(sent.error, EPIPE);
  EXPECT_FALSE(sent.would_block());
}

TEST(SocketIo, VectorSendToClosedPeerReportsEpipeInsteadOfSigpipe) {
  signal_disposition sigpipe(SIGPIPE, SIG_DFL);
  socket_pair sp;
  sp.close_end(1);
  char a[] = "ab", b[] = "cd", c[] = "ef";
  iovec one[1] = {{a, 2}};
  EXPECT_EQ(write_vector(descriptor_kind::socket, sp.fds[0], one, 1).error, EPIPE);
  iovec three[3] = {{a, 2}, {b, 2}, {c, 2}};
  io_result sent = write_vector(descriptor_kind::socket, sp.fds[0], three, 3);
  EXPECT_EQ(sent.bytes, -1);
  EXPECT_EQ(sent.error, EPIPE);
}

TEST(SocketIo, WriteVectorWithOneBufferSendsIt) {
  socket_pair sp;
  char a[] = "single";
  iovec one[1] = {{a, 6}};
  io_result sent = write_vector(descriptor_kind::socket, sp.fds[0], one, 1);
  EXPECT_EQ(sent.bytes, 6);
  EXPECT_EQ(read_all(sp.fds[1]), "single");
}

TEST(SocketIo, WriteVectorGathersSeveralBuffersInOrder) {
  socket_pair sp;
  char a[] = "head:", b[] = "", c[] = "body", d[] = ";tail";
  iovec four[4] = {{a, 5}, {b, 0}, {c, 4}, {d, 5}};
  io_result sent = write_vector(descriptor_kind::socket, sp.fds[0], four, 4);
  EXPECT_EQ(sent.bytes, 14);
  EXPECT_EQ(read_all(sp.fds[1]), "head:body;tail");
}

TEST(SocketIo, WriteVectorTakesMaxWriteBuffersAtOnce) {
  socket_pair sp;
  std::string expected;
  char letters[max_write_buffers];
  iovec buffers[max_write_buffers];
  for (std::size_t i = 0; i < max_write_buffers; ++i) {
    letters[i] = static_cast<char>('A' + i % 26);
    buffers[i] = iovec{&letters[i], 1};
    expected += letters[i];
  }
  io_result sent = write_vector(descriptor_kind::socket, sp.fds[0], buffers, max_write_buffers);
  EXPECT_EQ(sent.bytes, static_cast<ssize_t>(max_write_buffers));
  EXPECT_EQ(read_all(sp.fds[1]), expected);
}

TEST(SocketIo, PipeMovesBytesThroughReadAndWrite) {
  pipe_pair pp;
  io_result sent = write_some(descriptor_kind::stream, pp.fds[1], "piped", 5);
  EXPECT_EQ(sent.bytes, 5);
  char a[] = "one,", b[] = "two";
  iovec two[2] = {{a, 4}, {b, 3}};
  EXPECT_EQ(write_vector(descriptor_kind::stream, pp.fds[1], two, 2).bytes, 7);
  iovec one[1] = {{a, 4}};
  EXPECT_EQ(write_vector(descriptor_kind::stream, pp.fds[1], one, 1).bytes, 4);
  char buffer[64];
  io_result got = read_some(descriptor_kind::stream, pp.fds[0], buffer, sizeof buffer);
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(std::string(buffer, static_cast<size_t>(got.bytes)), "pipedone,twoone,");
  EXPECT_TRUE(read_some(descriptor_kind::stream, pp.fds[0], buffer, sizeof buffer).would_block());
  pp.close_end(1);
  EXPECT_EQ(read_some(descriptor_kind::stream, pp.fds[0], buffer, sizeof buffer).bytes, 0);
}

// recv() on a pipe fails with ENOTSOCK: the stream kind must use read()/write().
TEST(SocketIo, StreamKindDoesNotUseSocketCalls) {
  pipe_pair pp;
  EXPECT_EQ(write_some(descriptor_kind::socket, pp.fds[1], "x", 1).error, ENOTSOCK);
  EXPECT_EQ(write_some(descriptor_kind::stream, pp.fds[1], "x", 1).bytes, 1);
  char c;
  EXPECT_EQ(read_some(descriptor_kind::socket, pp.fds[0], &c, 1).error, ENOTSOCK);
  EXPECT_EQ(read_some(descriptor_kind::stream, pp.fds[0], &c, 1).bytes, 1);
}

TEST(SocketIo, PipeWithoutReaderReportsEpipeWhenSigpipeIsIgnored) {
  // write() cannot suppress SIGPIPE; CPython ignores it at start-up, which gives EPIPE.
  signal_disposition sigpipe(SIGPIPE, SIG_IGN);
  pipe_pair pp;
  pp.close_end(0);
  char a[] = "ab", b[] = "cd";
  EXPECT_EQ(write_some(descriptor_kind::stream, pp.fds[1], a, 2).error, EPIPE);
  iovec two[2] = {{a, 2}, {b, 2}};
  EXPECT_EQ(write_vector(descriptor_kind::stream, pp.fds[1], two, 2).error, EPIPE);
}

// -- EINTR --------------------------------------------------------------------------------

std::atomic<int> interruptions{0};  // SIGUSR1 deliveries seen by the handler below
void count_interruption(int) { interruptions.fetch_add(1); }

// The system call thread `tid` is blocked in, or -1 when it is running or gone.
long blocked_syscall(pid_t tid) {
  std::ifstream file("/proc/self/task/" + std::to_string(tid) + "/syscall");
  long number = -1;
  if (!(file >> number)) return -2;  // unreadable: no such file on this kernel
  return number;
}

// Blocks a thread in read_some on an empty blocking descriptor, interrupts that very system
// call with a signal whose handler has no SA_RESTART, then feeds it data: read_some must
// retry and return the data rather than fail with EINTR.
void expect_interrupted_read_is_retried(descriptor_kind kind, int read_fd, int write_fd,
                                        long syscall_number) {
  signal_disposition usr1(SIGUSR1, count_interruption);
  interruptions = 0;
  std::atomic<pid_t> reader_tid{0};
  std::atomic<bool> returned{false};
  io_result got;
  char buffer[16] = {};
  std::thread reader([&] {
    reader_tid = static_cast<pid_t>(::syscall(SYS_gettid));
    got = read_some(kind, read_fd, buffer, sizeof buffer);
    returned = true;
  });
  // Waits (up to 10 s) until the reader sits in the expected system call.
  auto wait_until_blocked = [&] {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (std::chrono::steady_clock::now() < deadline) {
      const pid_t tid = reader_tid.load();
      if (tid != 0) {
        const long number = blocked_syscall(tid);
        if (number == -2) return -2L;
        if (number == syscall_number) return number;
      }
      std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
    return -1L;
  };
  const long first = wait_until_blocked();
  if (first == -2) {
    EXPECT_EQ(::write(write_fd, "x", 1), 1);
    reader.join();
    GTEST_SKIP() << "/proc/self/task/<tid>/syscall is not readable here";
  }
  ASSERT_EQ(first, syscall_number);
  ASSERT_EQ(::pthread_kill(reader.native_handle(), SIGUSR1), 0);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (interruptions.load() == 0 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
  EXPECT_EQ(interruptions.load(), 1);
  // Retried: the reader is back in the same system call instead of returning EINTR.
  EXPECT_EQ(wait_until_blocked(), syscall_number);
  EXPECT_FALSE(returned.load());
  EXPECT_EQ(::write(write_fd, "after", 5), 5);
  reader.join();
  EXPECT_TRUE(got.ok()) << "error " << got.error;
  EXPECT_EQ(got.bytes, 5);
  EXPECT_EQ(std::string(buffer, 5), "after");
}

TEST(SocketIo, SocketReadInterruptedBySignalIsRetried) {
  socket_pair sp(/*nonblocking=*/false);
  expect_interrupted_read_is_retried(descriptor_kind::socket, sp.fds[0], sp.fds[1],
                                     SYS_recvfrom);
}

TEST(SocketIo, PipeReadInterruptedBySignalIsRetried) {
  pipe_pair pp(/*nonblocking=*/false);
  expect_interrupted_read_is_retried(descriptor_kind::stream, pp.fds[0], pp.fds[1], SYS_read);
}

}  // namespace
}  // namespace pyloop

namespace pyloop {
namespace {

TEST(SocketIoWriteUntilBlocked, SendsEverythingTheKernelTakesAndAdvancesSent) {
  int fds[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, fds), 0);
  const std::string data(1000, 'x');
  std::size_t sent = 0;
  io_result last = write_until_blocked(descriptor_kind::socket, fds[0], data.data(), data.size(), sent);
  EXPECT_TRUE(last.ok());
  EXPECT_EQ(sent, data.size());
  char back[2000];
  EXPECT_EQ(::read(fds[1], back, sizeof back), 1000);
  ::close(fds[0]);
  ::close(fds[1]);
}

TEST(SocketIoWriteUntilBlocked, StopsAtAFullSocketWithWouldBlockAndResumesFromSent) {
  int fds[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, fds), 0);
  const int small = 4096;
  ::setsockopt(fds[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof small);
  const std::string data(1 << 20, 'y');
  std::size_t sent = 0;
  io_result last = write_until_blocked(descriptor_kind::socket, fds[0], data.data(), data.size(), sent);
  EXPECT_TRUE(last.would_block());
  ASSERT_GT(sent, 0u);
  ASSERT_LT(sent, data.size());
  std::size_t received = 0;
  char sink[65536];
  while (sent < data.size()) {  // drain the peer, then send the rest from where it stopped
    ssize_t n;
    while ((n = ::read(fds[1], sink, sizeof sink)) > 0) received += static_cast<std::size_t>(n);
    last = write_until_blocked(descriptor_kind::socket, fds[0], data.data(), data.size(), sent);
    ASSERT_TRUE(last.ok() || last.would_block());
  }
  ssize_t n;
  while ((n = ::read(fds[1], sink, sizeof sink)) > 0) received += static_cast<std::size_t>(n);
  EXPECT_EQ(received, data.size());
  ::close(fds[0]);
  ::close(fds[1]);
}

TEST(SocketIoWriteUntilBlocked, EmptyDataStillMakesOneCallAndReportsABrokenPeer) {
  int fds[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, fds), 0);
  ::close(fds[1]);
  std::size_t sent = 0;
  io_result last = write_until_blocked(descriptor_kind::socket, fds[0], "", 0, sent);
  EXPECT_FALSE(last.ok());
  EXPECT_EQ(last.error, EPIPE);
  EXPECT_EQ(sent, 0u);
  ::close(fds[0]);
}

}  // namespace
}  // namespace pyloop
