// core/include/pyloop/socket_io.hpp — the system calls that move bytes through a descriptor.
#pragma once

#include <sys/socket.h>
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

// -- datagrams (core/src/datagram_io.cpp) ----------------------------------------------------

// One datagram to receive into: `data` and `capacity` in, `size` (bytes received; a datagram
// longer than capacity is truncated, as recvfrom() truncates it) and the sender's address out.
struct datagram_slot {
  char* data;              // where the payload goes
  std::size_t capacity;    // room at data
  std::size_t size;        // out: payload bytes
  sockaddr_storage* from;  // out: the sender's address
  socklen_t from_length;   // out: its length (0: no address, e.g. an unnamed Unix socket)
};

// One datagram to send: to == nullptr sends to the connected peer.
struct datagram_out {
  const char* data;    // the payload
  std::size_t size;    // its length (0 is a valid, empty datagram)
  const sockaddr* to;  // the destination, or null
  socklen_t to_length;
};

// The most datagrams one receive_datagrams() or send_datagrams() call moves.
inline constexpr std::size_t max_datagram_batch = 64;

// Receives up to `count` datagrams (at most max_datagram_batch) in one call where the platform
// can (recvmmsg on Linux), else one (recvfrom). The result's bytes is the number of slots
// filled; an error is the error of the first datagram (the kernel reports a later one, such as
// an ICMP error queued on the socket, at the next call).
io_result receive_datagrams(int fd, datagram_slot* slots, std::size_t count) noexcept;
// Sends one datagram (sendto, or send to the connected peer).
io_result send_datagram(int fd, const datagram_out& datagram) noexcept;
// Sends up to `count` datagrams (at most max_datagram_batch) in one call where the platform
// can (sendmmsg on Linux), else one. The result's bytes is the number of datagrams sent (fewer
// than count when a later one would block or failed: the next call reports that one); an
// error is the first datagram's.
io_result send_datagrams(int fd, const datagram_out* datagrams, std::size_t count) noexcept;

}  // namespace pyloop
