// core/src/socket_io.cpp — recv/send/read/write with EINTR retried and SIGPIPE suppressed.
#include "pyloop/socket_io.hpp"

#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>

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

// -- datagrams -------------------------------------------------------------------------------

io_result send_datagram(int fd, const datagram_out& d) noexcept {
  if (d.to == nullptr) return retried([&] { return ::send(fd, d.data, d.size, send_flags); });
  return retried([&] { return ::sendto(fd, d.data, d.size, send_flags, d.to, d.to_length); });
}

// recvmmsg/sendmmsg (Linux): one system call for a batch. Elsewhere, one datagram per call.
#if defined(__linux__)

io_result receive_datagrams(int fd, datagram_slot* slots, std::size_t count) noexcept {
  count = std::min(count, max_datagram_batch);
  mmsghdr headers[max_datagram_batch];
  iovec buffers[max_datagram_batch];
  for (std::size_t i = 0; i < count; ++i) {
    buffers[i] = iovec{slots[i].data, slots[i].capacity};
    headers[i] = mmsghdr{};
    headers[i].msg_hdr.msg_name = slots[i].from;
    headers[i].msg_hdr.msg_namelen = sizeof(sockaddr_storage);
    headers[i].msg_hdr.msg_iov = &buffers[i];
    headers[i].msg_hdr.msg_iovlen = 1;
  }
  io_result got = retried([&] {
    // MSG_DONTWAIT: a batch ends when nothing is left, even on a socket left blocking.
    return static_cast<ssize_t>(
        ::recvmmsg(fd, headers, static_cast<unsigned>(count), MSG_DONTWAIT, nullptr));
  });
  for (ssize_t i = 0; i < got.bytes; ++i) {
    slots[i].size = headers[i].msg_len;
    slots[i].from_length = headers[i].msg_hdr.msg_namelen;
  }
  return got;
}

io_result send_datagrams(int fd, const datagram_out* datagrams, std::size_t count) noexcept {
  count = std::min(count, max_datagram_batch);
  if (count == 1) {
    io_result one = send_datagram(fd, datagrams[0]);
    return one.ok() ? io_result{1, 0} : one;
  }
  mmsghdr headers[max_datagram_batch];
  iovec buffers[max_datagram_batch];
  for (std::size_t i = 0; i < count; ++i) {
    buffers[i] = iovec{const_cast<char*>(datagrams[i].data), datagrams[i].size};
    headers[i] = mmsghdr{};
    headers[i].msg_hdr.msg_name = const_cast<sockaddr*>(datagrams[i].to);
    headers[i].msg_hdr.msg_namelen = datagrams[i].to == nullptr ? 0 : datagrams[i].to_length;
    headers[i].msg_hdr.msg_iov = &buffers[i];
    headers[i].msg_hdr.msg_iovlen = 1;
  }
  return retried([&] {
    return static_cast<ssize_t>(
        ::sendmmsg(fd, headers, static_cast<unsigned>(count), send_flags));
  });
}

#else

io_result receive_datagrams(int fd, datagram_slot* slots, std::size_t count) noexcept {
  if (count == 0) return io_result{0, 0};
  datagram_slot& slot = slots[0];
  socklen_t length = sizeof(sockaddr_storage);
  io_result got = retried([&] {
    return ::recvfrom(fd, slot.data, slot.capacity, 0, reinterpret_cast<sockaddr*>(slot.from),
                      &length);
  });
  if (!got.ok()) return got;
  slot.size = std::min(static_cast<std::size_t>(got.bytes), slot.capacity);
  slot.from_length = length;
  return io_result{1, 0};
}

io_result send_datagrams(int fd, const datagram_out* datagrams, std::size_t count) noexcept {
  if (count == 0) return io_result{0, 0};
  io_result one = send_datagram(fd, datagrams[0]);
  return one.ok() ? io_result{1, 0} : one;
}

#endif

}  // namespace pyloop
