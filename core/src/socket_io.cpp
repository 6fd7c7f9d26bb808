// core/src/socket_io.cpp — recv/send/read/write with EINTR retried and SIGPIPE suppressed.
#include "pyloop/socket_io.hpp"

#include <sys/socket.h>
#include <unistd.h>

namespace pyloop {
namespace {

// A peer that went away must give EPIPE, not kill the process with SIGPIPE. Where send()
// has no such flag (macOS), CPython ignores SIGPIPE at start-up, which gives EPIPE as well.
#ifdef MSG_NOSIGNAL
constexpr int send_flags = MSG_NOSIGNAL;
#else
constexpr int send_flags = 0;
#endif

template <class Call>
io_result retried(Call&& call) noexcept {
  ssize_t n;
  do {
    n = call();
  } while (n < 0 && errno == EINTR);
  return n < 0 ? io_result{-1, errno} : io_result{n, 0};
}

}  // namespace

io_result read_some(descriptor_kind kind, int fd, void* into, std::size_t size) noexcept {
  if (kind == descriptor_kind::socket) return retried([&] { return ::recv(fd, into, size, 0); });
  return retried([&] { return ::read(fd, into, size); });
}

io_result write_some(descriptor_kind kind, int fd, const void* data, std::size_t size) noexcept {
  if (kind == descriptor_kind::socket) {
    return retried([&] { return ::send(fd, data, size, send_flags); });
  }
  return retried([&] { return ::write(fd, data, size); });
}

io_result write_vector(descriptor_kind kind, int fd, const iovec* buffers,
                       std::size_t count) noexcept {
  // One buffer goes through send()/write(): the kernel's sendmsg() path first copies in and
  // checks a message header and an iovec array, which a single buffer does not need.
  if (count == 1) return write_some(kind, fd, buffers[0].iov_base, buffers[0].iov_len);
  if (kind == descriptor_kind::socket) {
    msghdr message{};
    message.msg_iov = const_cast<iovec*>(buffers);
    message.msg_iovlen = count;
    return retried([&] { return ::sendmsg(fd, &message, send_flags); });
  }
  return retried([&] { return ::writev(fd, buffers, static_cast<int>(count)); });
}

io_result write_until_blocked(descriptor_kind kind, int fd, const char* data, std::size_t size,
                              std::size_t& sent) noexcept {
  io_result last;
  do {
    last = write_some(kind, fd, data + sent, size - sent);
    if (!last.ok() || last.bytes == 0) return last;  // an error, or no room (never seen)
    sent += static_cast<std::size_t>(last.bytes);
  } while (sent < size);
  return last;
}

}  // namespace pyloop
