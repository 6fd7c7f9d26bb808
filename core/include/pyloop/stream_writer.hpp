// core/include/pyloop/stream_writer.hpp — the write half of a stream transport.
#pragma once

#include <cstddef>
#include <cstdint>
#include <system_error>
#include <vector>

#include "pyloop/callback.hpp"
#include "pyloop/socket_io.hpp"

namespace pyloop {

class loop_driver;

// What a writer tells the transport that owns it. Every function gets the owner pointer given
// to the writer. Those returning bool return false when the owner failed and left its own
// error pending (a Python exception): the writer stops what it was doing and reports false to
// its caller, who knows what to do with that error.
struct stream_writer_events {
  // A chunk queued by reference (write()'s `keep`) is sent or dropped: let go of it.
  void (*release_chunk)(void* kept) noexcept;
  // Take one more reference to a chunk's object, to queue it by reference.
  void (*retain_chunk)(void* kept) noexcept;
  // A send failed with errno `error`; the queue and the watch are gone. The owner closes.
  bool (*write_failed)(void* owner, int error) noexcept;
  // The queue is above the high-water mark after a write: pause the protocol.
  bool (*above_high_water)(void* owner) noexcept;
  // The queue fell to the low-water mark or below while waiting for writability: the owner
  // resumes the protocol if it had paused it.
  bool (*at_low_water)(void* owner) noexcept;
  // A queue that had waited for writability is empty: the owner finishes a close, a
  // write_eof or wakes a sendfile.
  bool (*drained)(void* owner) noexcept;
  // An event failed inside the writability callback, where there is no caller to hand the
  // error to: the owner reports it, and asks to abort the iteration or not.
  callback_status (*callback_failed)(void* owner) noexcept;
  // Keep the owner alive while it is in the loop's flush list or its watch runs.
  void (*retain)(void* owner) noexcept;
  void (*release)(void* owner) noexcept;
};

// How a write call ended, for the caller to turn into its own error.
enum class write_outcome : unsigned char {
  ok,            // done (sent, queued, or the failure went to write_failed)
  owner_failed,  // an event returned false: the owner's error is pending
  loop_closed,   // the rest had to wait for writability, and the loop is closed
  watch_failed,  // the writability watch could not be installed: see last_error()
};

// The queue and the sending policy of one stream transport, owned by the transport.
//
// Coalescing: written data is queued, and at the end of the loop turn (phase 7) every writer
// written to sends everything with one system call, so a header and a body cost one send.
// Three things send earlier: the loop not running (asyncio sends inside write()); the queue
// passing the high-water mark (then above_high_water, as asyncio's write() pauses the
// protocol); and a transport writing once per turn (see note_write in stream_writer.cpp).
// What the kernel does not take waits for writability on the loop's watch for the descriptor.
//
// Data is queued by reference when the caller offers an object to keep (`keep`: an immutable
// buffer, released through the events), otherwise copied, as asyncio copies a bytearray.
//
// Thread safety: the loop's thread only.
class stream_writer {
 public:
  // Bytes from which a borrowed buffer written to an idle writer is sent at once rather than
  // copied for the end-of-turn send: a copy of 16 KiB costs about one small send.
  static constexpr std::size_t send_now_threshold = 16 * 1024;
  // Consecutive turns with exactly one write after which a turn's first write is sent at once.
  static constexpr std::uint8_t single_write_turns_to_send_at_once = 2;

  stream_writer(loop_driver& loop, int fd, descriptor_kind kind,
                const stream_writer_events& events, void* owner) noexcept;
  stream_writer(const stream_writer&) = delete;
  stream_writer& operator=(const stream_writer&) = delete;
  ~stream_writer();  // drops the queue and the watch

  // One write() of the transport: `size` bytes at `data`, valid during the call. `keep`, if
  // not null, is an object that keeps them valid for as long as it is retained; otherwise
  // the bytes are copied if they must wait. May throw std::bad_alloc (nothing is lost then).
  write_outcome write(const char* data, std::size_t size, void* keep);

  // writelines(): begin_writes() counts one write and says whether it goes out at once, each
  // piece is queued, and finish_writes() sends as write() would have.
  bool begin_writes() noexcept { return note_write(); }
  void queue(const char* data, std::size_t size, void* keep);  // may throw std::bad_alloc
  write_outcome finish_writes(std::size_t size_before, bool send_at_once);

  // Sends what is queued now; the rest waits for writability.
  write_outcome flush();
  // Drops the queue and the watch (abort, fatal errors). With send_first and no writability
  // wait in progress, one attempt is made to hand the queue to the kernel first, as asyncio
  // would have sent it inside write() (a queue waiting for writability could not be sent).
  void discard(bool send_first) noexcept;

  std::size_t size() const noexcept { return size_; }  // bytes not yet taken by the kernel
  bool waiting() const noexcept { return watching_; }  // a writability watch is installed
  int last_error() const noexcept { return last_error_; }
  int fd() const noexcept { return fd_; }
  void* owner() const noexcept { return owner_; }

  void set_limits(std::size_t high, std::size_t low) noexcept {
    high_water_ = high;
    low_water_ = low;
  }
  std::size_t high_water() const noexcept { return high_water_; }

  // The writability watch's callback table, and its payload's writer (GC traversal).
  static const callback_ops watch_ops;
  static stream_writer* from_watch(void* payload) noexcept {
    return static_cast<stream_writer*>(payload);
  }

 private:
  struct chunk {
    const char* data;   // first byte of the chunk
    std::size_t size;   // bytes in the chunk
    std::size_t sent;   // bytes already taken by the kernel
    void* kept;         // the object keeping data alive, or null: data is our own copy
  };
  enum class send_result { drained, blocked, failed };

  bool note_write() noexcept;
  void push_chunk(const char* data, std::size_t size, void* keep);
  void release(chunk& c) noexcept;
  void drop_chunks() noexcept;
  send_result send_queued() noexcept;
  io_result send_direct(const char* data, std::size_t size) noexcept;
  write_outcome after_queued(std::size_t size_before, bool send_at_once);
  write_outcome start_watching();
  void stop_watching() noexcept;
  bool report_failure(int error);
  bool on_writable();
  static callback_status run_watch(void* payload) noexcept;
  static void drop_watch(void* payload) noexcept;
  static void retain_watch(void* payload) noexcept;

  loop_driver& loop_;                 // whose watches, turn and flush list it uses
  const stream_writer_events& events_;  // how to reach the owner
  void* owner_;                       // the transport (opaque)
  std::vector<chunk> chunks_;         // queued output, oldest first, from head_ on
  std::size_t head_ = 0;              // first unsent chunk
  std::size_t size_ = 0;              // unsent bytes in total
  std::size_t high_water_ = 64 * 1024;  // asyncio's default high-water mark
  std::size_t low_water_ = 16 * 1024;   // asyncio's default low-water mark (high / 4)
  int fd_;                            // the transport's descriptor (not owned)
  int last_error_ = 0;                // errno of the latest failed watch installation
  descriptor_kind kind_;              // which system calls move its bytes
  bool watching_ = false;             // the writability watch is installed
  bool in_flush_list_ = false;        // listed for the loop's end-of-turn flush
  // The write pattern (note_write): the turn of the latest write, writes in that turn
  // (counted up to 2), and turns in a row whose writes were exactly one.
  std::uint64_t write_turn_ = 0;
  std::uint8_t writes_in_turn_ = 0;
  std::uint8_t single_write_turns_ = 0;

  friend class loop_driver;
};

}  // namespace pyloop
