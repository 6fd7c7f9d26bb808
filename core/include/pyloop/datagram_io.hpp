// core/include/pyloop/datagram_io.hpp — the I/O of one datagram transport: batched receives,
// sends, and the backlog of datagrams the kernel could not take yet.
#pragma once

#include <sys/socket.h>

#include <cstddef>
#include <deque>
#include <memory>
#include <system_error>
#include <vector>

#include "pyloop/callback.hpp"
#include "pyloop/socket_io.hpp"

namespace pyloop {

class loop_driver;

// Where a datagram_io event happens, so the owner knows who can take an error: `receiving`
// and `backlog` run inside the loop's callbacks (the owner reports a protocol's exception
// itself, as asyncio's handle would); `sending` runs inside the owner's own send call, which
// hands the exception to its caller (asyncio's sendto lets error_received's exception out).
enum class datagram_context : unsigned char { receiving, sending, backlog };

// What a datagram_io tells the transport that owns it. Every function gets the owner pointer
// given to the datagram_io. Those returning bool return false when the owner failed and left
// an error it did not handle pending: inside a loop callback, callback_failed() then reports
// it (SystemExit and KeyboardInterrupt abort the iteration); inside send(), the caller gets
// datagram_outcome::owner_failed.
struct datagram_io_events {
  // A datagram arrived. `data` and `from` are valid during the call only; from_length is 0
  // when the sender has no address (an unnamed Unix socket).
  bool (*datagram_received)(void* owner, const char* data, std::size_t size,
                            const sockaddr* from, socklen_t from_length) noexcept;
  // A receive or a send failed with errno `error` (an ICMP error such as ECONNREFUSED, a
  // datagram too long...): asyncio's protocol.error_received. The transport stays open.
  bool (*error_received)(void* owner, int error, datagram_context where) noexcept;
  // Around each read callback (the transport's context; debug timing). leave() runs whenever
  // enter() succeeded.
  bool (*enter)(void* owner) noexcept;
  bool (*leave)(void* owner) noexcept;
  // The backlog grew past the high-water mark: pause the protocol.
  bool (*above_high_water)(void* owner) noexcept;
  // The writability callback sent what it could: the owner resumes a paused protocol if the
  // backlog is at the low-water mark or below (asyncio's _maybe_resume_protocol).
  bool (*backlog_sent)(void* owner) noexcept;
  // A backlog that waited for writability is empty: the owner finishes a close.
  bool (*drained)(void* owner) noexcept;
  callback_status (*callback_failed)(void* owner) noexcept;
  // Keep the owner alive while a callback of this datagram_io is installed or queued.
  void (*retain)(void* owner) noexcept;
  void (*release)(void* owner) noexcept;
};

// How a send ended, for the caller to turn into its own error.
enum class datagram_outcome : unsigned char {
  ok,            // sent, queued, or the failure went to error_received
  owner_failed,  // an event returned false: the owner's error is pending
  loop_closed,   // the datagram had to wait for writability, and the loop is closed
  watch_failed,  // the writability watch could not be installed: see last_error()
};

// The datagram half of asyncio's selector transport, for one socket (UDP, Unix datagrams).
//
// Receiving: each readiness callback receives a batch of up to batch_limit() datagrams with
// one system call (recvmmsg on Linux; one recvfrom elsewhere) into a per-thread batch area,
// and hands them to datagram_received one by one, in order, each with its sender's address.
// A slot holds any UDP payload (64 KiB) or, for other families, asyncio's max_size (256 KiB):
// what asyncio's recvfrom(max_size) would deliver, this delivers. If reading stops in the
// middle of a batch (pause_reading, an exiting exception), the rest of the batch is kept and
// delivered first when reading resumes, so nothing received is lost or reordered.
//
// Sending: a datagram is sent at once when nothing waits (sendto, or send when connected, as
// asyncio does); one the kernel refuses with EAGAIN joins the backlog, which the writability
// callback sends in batches (sendmmsg). A send error goes to error_received and drops that
// datagram only. The backlog's size counts each datagram's length plus a per-datagram
// overhead (asyncio 3.13 counts 8 header bytes), against asyncio's water marks.
//
// Thread safety: the loop's thread only.
class datagram_io {
 public:
  // Receive slot sizes: every UDP payload fits in 64 KiB (65,527 bytes at most without IPv6
  // jumbograms); other families get asyncio's max_size.
  static constexpr std::size_t ip_slot_size = 64 * 1024;
  static constexpr std::size_t max_datagram_size = 256 * 1024;
  // The per-thread batch area: 16 IP slots, or 4 slots of max_datagram_size.
  static constexpr std::size_t batch_area_size = 1024 * 1024;
  static constexpr std::size_t default_batch_limit = 16;

  // `ip`: an AF_INET/AF_INET6 socket (64 KiB slots, more per batch).
  datagram_io(loop_driver& loop, int fd, bool ip, const datagram_io_events& events,
              void* owner) noexcept;
  datagram_io(const datagram_io&) = delete;
  datagram_io& operator=(const datagram_io&) = delete;
  ~datagram_io();  // stops reading, drops the backlog and whatever was kept unread

  // Installs the read callback. EBADF once the loop is closed; the kernel's refusal; ENOMEM.
  std::error_code start_reading() noexcept;
  // Removes it. Datagrams of a batch not yet delivered are kept for start_reading().
  void stop_reading() noexcept;
  bool reading() const noexcept { return reading_; }

  // One sendto() of the transport. May throw std::bad_alloc when queueing (nothing is lost).
  datagram_outcome send(const datagram_out& datagram);
  // Drops the backlog, the writability watch and any unread datagrams kept (abort, close).
  void discard() noexcept;

  std::size_t buffer_size() const noexcept { return size_; }  // backlog bytes + overheads
  std::size_t backlog() const noexcept { return queue_.size(); }
  bool waiting() const noexcept { return watching_; }
  int last_error() const noexcept { return last_error_; }
  void* owner() const noexcept { return owner_; }
  int fd() const noexcept { return fd_; }

  void set_limits(std::size_t high, std::size_t low) noexcept {
    high_water_ = high;
    low_water_ = low;
  }
  std::size_t low_water() const noexcept { return low_water_; }
  void set_overhead(std::size_t per_datagram) noexcept { overhead_ = per_datagram; }
  // Datagrams one receive call takes at most (1..max_datagram_batch; capped by the slots).
  void set_batch_limit(std::size_t limit) noexcept;
  std::size_t batch_limit() const noexcept { return batch_limit_; }
  // Receive calls and the datagrams they delivered (tests, measurements).
  std::size_t receive_calls() const noexcept { return receive_calls_; }
  std::size_t send_calls() const noexcept { return send_calls_; }

  // The callback tables (read and write watches, the resume hand-off) and their payload's
  // datagram_io (GC traversal).
  static const callback_ops read_ops;
  static const callback_ops write_ops;
  static const callback_ops resume_ops;
  static datagram_io* from_payload(void* payload) noexcept {
    return static_cast<datagram_io*>(payload);
  }

 private:
  struct queued {
    std::unique_ptr<char[]> data;  // a copy of the payload (the caller's buffer may change)
    std::size_t size;              // payload bytes
    sockaddr_storage to;           // destination, when has_to
    socklen_t to_length;           // its length; 0: the connected peer
  };
  struct kept {
    std::vector<char> data;  // a datagram received but not yet delivered
    sockaddr_storage from;   // its sender
    socklen_t from_length;
  };

  bool receive_batch();
  bool deliver_kept();
  void keep_rest(std::size_t from, std::size_t count) noexcept;
  void queue_resume() noexcept;
  bool on_writable();
  datagram_outcome start_watching();
  void stop_watching() noexcept;
  void pop_front() noexcept;
  static callback_status run_read(void* payload) noexcept;
  static callback_status run_write(void* payload) noexcept;
  static callback_status run_resume(void* payload) noexcept;
  static void drop_read(void* payload) noexcept;
  static void drop_write(void* payload) noexcept;
  static void drop_resume(void* payload) noexcept;
  static void retain_payload(void* payload) noexcept;

  loop_driver& loop_;                  // whose watches and ready queue it uses
  const datagram_io_events& events_;   // how to reach the owner
  void* owner_;                        // the transport (opaque)
  int fd_;                             // the socket (not owned)
  bool ip_;                            // AF_INET/AF_INET6: 64 KiB slots
  bool reading_ = false;               // the read callback is installed
  bool watching_ = false;              // the writability callback is installed
  bool resume_queued_ = false;         // a resume hand-off is in the ready queue
  bool discarded_ = false;             // discard() ran during a delivery: keep nothing
  int last_error_ = 0;                 // errno of the latest failed watch installation
  std::size_t batch_limit_ = default_batch_limit;  // datagrams per receive call
  std::deque<queued> queue_;           // the backlog, oldest first
  std::size_t size_ = 0;               // backlog bytes, overheads included
  std::size_t high_water_ = 64 * 1024;  // asyncio's default marks
  std::size_t low_water_ = 16 * 1024;
  std::size_t overhead_ = 0;           // bytes counted per queued datagram besides its payload
  std::vector<kept> kept_;             // received, not yet delivered (reading stopped mid-batch)
  std::size_t kept_next_ = 0;          // first undelivered entry of kept_
  std::size_t receive_calls_ = 0;      // receive system calls made
  std::size_t send_calls_ = 0;         // send system calls made
};

}  // namespace pyloop
