// tests/cpp/pipe_descriptor_test.cpp — prepare_pipe: the kinds pipe transports take, O_NONBLOCK.
#include "pyloop/pipe_descriptor.hpp"

#include <gtest/gtest.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <string>

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

namespace pyloop {
namespace {

bool nonblocking(int fd) { return (::fcntl(fd, F_GETFL) & O_NONBLOCK) != 0; }

struct closing_fds {
  int fds[2] = {-1, -1};
  ~closing_fds() {
    for (int fd : fds) {
      if (fd >= 0) ::close(fd);
    }
  }
};

TEST(PipeDescriptor, PipeEndsAreFifosMadeNonBlocking) {
  closing_fds p;
  ASSERT_EQ(::pipe(p.fds), 0);
  for (int fd : p.fds) {
    ASSERT_FALSE(nonblocking(fd));
    pipe_file kind = pipe_file::other;
    EXPECT_FALSE(prepare_pipe(fd, kind));
    EXPECT_EQ(kind, pipe_file::fifo);
    EXPECT_TRUE(nonblocking(fd));
    // Again: already non-blocking, nothing changes.
    EXPECT_FALSE(prepare_pipe(fd, kind));
    EXPECT_TRUE(nonblocking(fd));
  }
}

TEST(PipeDescriptor, SocketsAreTaken) {
  closing_fds s;
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM, 0, s.fds), 0);
  pipe_file kind = pipe_file::other;
  EXPECT_FALSE(prepare_pipe(s.fds[0], kind));
  EXPECT_EQ(kind, pipe_file::socket);
  EXPECT_TRUE(nonblocking(s.fds[0]));
  EXPECT_FALSE(nonblocking(s.fds[1]));
}

TEST(PipeDescriptor, CharacterDevicesAreTaken) {
  const int fd = ::open("/dev/null", O_RDWR);
  ASSERT_GE(fd, 0);
  pipe_file kind = pipe_file::other;
  EXPECT_FALSE(prepare_pipe(fd, kind));
  EXPECT_EQ(kind, pipe_file::character);
  EXPECT_TRUE(nonblocking(fd));
  ::close(fd);
}

TEST(PipeDescriptor, RegularFilesAndDirectoriesAreRefusedUntouched) {
  char path[] = "/tmp/pyloop-pipe-descriptor-XXXXXX";
  const int file = ::mkstemp(path);
  ASSERT_GE(file, 0);
  ::unlink(path);
  pipe_file kind = pipe_file::fifo;
  EXPECT_FALSE(prepare_pipe(file, kind));
  EXPECT_EQ(kind, pipe_file::other);
  EXPECT_FALSE(nonblocking(file));
  ::close(file);

  const int dir = ::open("/", O_RDONLY | O_DIRECTORY);
  ASSERT_GE(dir, 0);
  kind = pipe_file::fifo;
  EXPECT_FALSE(prepare_pipe(dir, kind));
  EXPECT_EQ(kind, pipe_file::other);
  ::close(dir);
}

TEST(PipeDescriptor, ClosedDescriptorIsEbadf) {
  closing_fds p;
  ASSERT_EQ(::pipe(p.fds), 0);
  const int fd = p.fds[0];
  ::close(fd);
  p.fds[0] = -1;
  pipe_file kind = pipe_file::other;
  EXPECT_EQ(prepare_pipe(fd, kind).value(), EBADF);
}

}  // namespace
}  // namespace pyloop
