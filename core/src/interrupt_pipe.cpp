// core/src/interrupt_pipe.cpp — the self-pipe that lets signals end a blocked wait.
#include "pyloop/interrupt_pipe.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>

namespace pyloop {
namespace {

bool make_nonblocking_cloexec(int fd) noexcept {
  int flags = ::fcntl(fd, F_GETFL);
  if (flags < 0 || ::fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0) return false;
  int fd_flags = ::fcntl(fd, F_GETFD);
  return fd_flags >= 0 && ::fcntl(fd, F_SETFD, fd_flags | FD_CLOEXEC) >= 0;
}

}  // namespace

void interrupt_pipe::close() noexcept {
  if (read_fd_ >= 0) ::close(read_fd_);
  if (write_fd_ >= 0) ::close(write_fd_);
  read_fd_ = write_fd_ = -1;
}

std::error_code interrupt_pipe::open() noexcept {
  if (is_open()) return {};
  int fds[2];
  if (::pipe(fds) != 0) return {errno, std::generic_category()};
  if (!make_nonblocking_cloexec(fds[0]) || !make_nonblocking_cloexec(fds[1])) {
    std::error_code ec{errno, std::generic_category()};
    ::close(fds[0]);
    ::close(fds[1]);
    return ec;
  }
  read_fd_ = fds[0];
  write_fd_ = fds[1];
  return {};
}

void interrupt_pipe::drain() noexcept {
  unsigned char buffer[256];
  ssize_t got;
  while ((got = ::read(read_fd_, buffer, sizeof buffer)) > 0) {
    for (ssize_t i = 0; i < got; ++i) seen_[buffer[i]] = true;
    any_signal_ = true;
  }
}

}  // namespace pyloop
