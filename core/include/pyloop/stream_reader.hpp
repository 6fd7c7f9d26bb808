// core/include/pyloop/stream_reader.hpp — the read half of a stream transport.
#pragma once

#include <cstddef>
#include <system_error>

#include "pyloop/callback.hpp"
#include "pyloop/socket_io.hpp"

namespace pyloop {

class loop_driver;

// Memory a protocol lends the reader to receive into (asyncio's BufferedProtocol.get_buffer).
struct lent_buffer {
  char* data = nullptr;
  std::size_t size = 0;
};

// What a reader tells the transport that owns it. Every function gets the owner pointer given
// to the reader. Those returning bool return false when the owner failed and left an error it
// did not handle pending (a failure the owner handles itself, as asyncio's transport turns a
// protocol's exception into _fatal_error, returns true).
struct stream_reader_events {
  // Bytes arrived (asyncio.Protocol): `data` is valid during the call only.
  bool (*data_received)(void* owner, const char* data, std::size_t size) noexcept;
  // BufferedProtocol: where to receive. Leaving `out` empty means the owner met a failure and
  // handled it: nothing is read this time.
  bool (*get_buffer)(void* owner, lent_buffer& out) noexcept;
  // After the read into get_buffer's memory, whatever came of it: the owner lets go of it.
  void (*release_buffer)(void* owner) noexcept;
  bool (*buffer_updated)(void* owner, std::size_t size) noexcept;
  bool (*eof_received)(void* owner) noexcept;
  bool (*read_failed)(void* owner, int error) noexcept;
  // Around each readiness callback (the transport's context). leave() runs whenever enter()
  // succeeded.
  bool (*enter)(void* owner) noexcept;
  bool (*leave)(void* owner) noexcept;
  // A function above returned false inside the readiness callback, where no caller can take
  // the error: the owner reports it, and asks to abort the iteration or not.
  callback_status (*callback_failed)(void* owner) noexcept;
  // Keep the owner alive while its readiness callback is installed or running.
  void (*retain)(void* owner) noexcept;
  void (*release)(void* owner) noexcept;
};

// Reads a stream transport's descriptor whenever it is readable: one read per readiness
// callback, into the loop's receive buffer (then data_received with the bytes) or, for a
// BufferedProtocol, into the protocol's own buffer (no intermediate copy). The callback is a
// native entry in the loop's readiness registry, not a Python handle.
// Thread safety: the loop's thread only.
class stream_reader {
 public:
  enum class mode : unsigned char { copy, into_buffer };

  stream_reader(loop_driver& loop, int fd, descriptor_kind kind,
                const stream_reader_events& events, void* owner) noexcept;
  stream_reader(const stream_reader&) = delete;
  stream_reader& operator=(const stream_reader&) = delete;
  ~stream_reader() { stop(); }

  // Installs the readiness callback (or switches the mode of the installed one). EBADF if
  // the loop is closed; the kernel's error if it refuses the descriptor.
  std::error_code start(mode m) noexcept;
  // Removes it; a read already queued for this iteration does not run.
  void stop() noexcept;
  bool reading() const noexcept { return installed_; }
  // The loop's wait reported an error or hang-up on the descriptor while it was read (a
  // peer's reset): a write queued now would fail when sent.
  bool peer_hung_up() const;
  void* owner() const noexcept { return owner_; }

  // The readiness callback's table, and its payload's reader (GC traversal).
  static const callback_ops watch_ops;
  static stream_reader* from_watch(void* payload) noexcept {
    return static_cast<stream_reader*>(payload);
  }

 private:
  bool read_once();
  bool read_into_buffer();
  static callback_status run_watch(void* payload) noexcept;
  static void drop_watch(void* payload) noexcept;
  static void retain_watch(void* payload) noexcept;

  loop_driver& loop_;                   // whose readiness registry and receive buffer it uses
  const stream_reader_events& events_;  // how to reach the owner
  void* owner_;                         // the transport (opaque)
  int fd_;                              // the transport's descriptor (not owned)
  descriptor_kind kind_;                // which system call reads it
  mode mode_ = mode::copy;              // how the installed callback reads
  bool installed_ = false;              // the readiness callback is installed
};

}  // namespace pyloop
