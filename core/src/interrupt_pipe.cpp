// core/src/interrupt_pipe.cpp — the self-pipe that lets signals end a blocked wait.
#include "pyloop/interrupt_pipe.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>

namespace pyloop {
namespace {

bool make_nonblocking_cloexec(int fd) {
  int flags = ::fcntl(fd, F_GETFL);
  if (flags < 0 || ::fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0) return false;
  int fd_flags = ::fcntl(fd, F_GETFD);
  return fd_flags >= 0 && ::fcntl(fd, F_SETFD, fd_flags | FD_CLOEXEC) >= 0;
}

}  // namespace

interrupt_pipe::interrupt_pipe(asio::io_context& io) : reader_(io) {}

interrupt_pipe::~interrupt_pipe() {
  asio::error_code ignored;
  reader_.close(ignored);  // closes the read end and cancels the pending wait
  if (write_fd_ >= 0) ::close(write_fd_);
}

std::error_code interrupt_pipe::open() {
  if (is_open()) return {};
  int fds[2];
  if (::pipe(fds) != 0) return {errno, std::generic_category()};
  if (!make_nonblocking_cloexec(fds[0]) || !make_nonblocking_cloexec(fds[1])) {
    std::error_code ec{errno, std::generic_category()};
    ::close(fds[0]);
    ::close(fds[1]);
    return ec;
  }
  asio::error_code ec;
  reader_.assign(fds[0], ec);
  if (ec) {
    ::close(fds[0]);
    ::close(fds[1]);
    return ec;
  }
  write_fd_ = fds[1];
  arm();
  return {};
}

void interrupt_pipe::arm() {
  if (armed_) return;
  armed_ = true;
  reader_.async_wait(asio::posix::stream_descriptor::wait_read, [this](const asio::error_code& ec) {
    armed_ = false;
    if (ec == asio::error::operation_aborted) return;  // closing
    drain();
    arm();
  });
}

void interrupt_pipe::drain() noexcept {
  unsigned char buffer[256];
  ssize_t got;
  while ((got = ::read(reader_.native_handle(), buffer, sizeof buffer)) > 0) {
    for (ssize_t i = 0; i < got; ++i) seen_[buffer[i]] = true;
    any_signal_ = true;
  }
}

}  // namespace pyloop
