// core/include/pyloop/socket_io.hpp — the system calls that move bytes through a descriptor.
#pragma once

#include <sys/types.h>
#include <sys/uio.h>

#include <cerrno>
#include <cstddef>

namespace pyloop {

// What kind of descriptor a transport moves bytes through: a socket takes recv()/send()
// (send() without SIGPIPE), anything else (a pipe, a FIFO, a character device such as a
// pty) takes read()/write(), which work on sockets too but cannot suppress SIGPIPE.
enum class descriptor_kind : unsigned char { socket, stream };

// The outcome of one system call: the bytes moved, or the errno it failed with.
struct io_result {
  ssize_t bytes = 0;  // >= 0 on success (0: end of stream for a read)
  int error = 0;      // errno when bytes < 0, else 0

  bool ok() const noexcept { return bytes >= 0; }
  // Nothing could be moved now: wait for readiness (EAGAIN/EWOULDBLOCK).
  bool would_block() const noexcept {
    return bytes < 0 && (error == EAGAIN || error == EWOULDBLOCK);
  }
};

// Each call is made once, retried only when a signal interrupted it (EINTR), and never
// throws. Every recv/send/read/write the loop makes goes through here, so the platform
// differences (MSG_NOSIGNAL) live in one place (core/src/socket_io.cpp).
io_result read_some(descriptor_kind kind, int fd, void* into, std::size_t size) noexcept;
io_result write_some(descriptor_kind kind, int fd, const void* data, std::size_t size) noexcept;
// Gathers up to `count` buffers in one call (sendmsg on a socket, writev otherwise).
io_result write_vector(descriptor_kind kind, int fd, const iovec* buffers,
                       std::size_t count) noexcept;

// Sends data[sent, size) until all of it is sent or the kernel would block, advancing `sent`;
// the result of the last call. Done when `sent == size`; an error when the result is neither
// ok() nor would_block(); otherwise wait for writability. At least one call is made, so that an
// empty send still reports the error of a broken connection, as socket.send(b"") does.
io_result write_until_blocked(descriptor_kind kind, int fd, const char* data, std::size_t size,
                              std::size_t& sent) noexcept;

// The most buffers write_vector() is given at once (well below every kernel's IOV_MAX).
inline constexpr std::size_t max_write_buffers = 64;

}  // namespace pyloop
