// core/include/pyloop/io_watch.hpp — level-triggered readiness callbacks on one descriptor.
#pragma once

#include <asio/io_context.hpp>
#include <asio/posix/stream_descriptor.hpp>
#include <system_error>

#include "pyloop/callback.hpp"
#include "pyloop/ready_queue.hpp"

namespace pyloop {

// asyncio's add_reader/add_writer for one file descriptor. The descriptor is registered
// with Asio's reactor (never owned: it is released, not closed, at the end). A wait is armed
// for each installed callback; when the descriptor is ready, a dispatch entry joins the ready
// queue, and running it runs the callback and re-arms the wait. Re-arming re-evaluates
// readiness, so a callback that leaves data unread runs again next iteration, as with
// asyncio's level-triggered selectors.
//
// Lifetime: reference-counted by its registry entry, each armed wait and each queued
// dispatch, because Asio completes cancelled waits later and dispatches may be queued when
// the callback is removed. Thread safety: the loop's thread only.
class io_watch {
 public:
  enum class direction : unsigned char { read = 0, write = 1 };

  io_watch(asio::io_context& io, ready_queue& ready, int fd);
  io_watch(const io_watch&) = delete;
  io_watch& operator=(const io_watch&) = delete;

  // Registers the descriptor with the reactor.
  std::error_code open();

  // Installs cb for a direction and returns the callback it replaces (ops null if none);
  // the caller disposes of the replaced one (asyncio cancels the old handle).
  callback install(direction d, callback cb);
  // Removes and returns the callback of a direction (ops null if there was none).
  callback remove(direction d);
  bool has(direction d) const noexcept { return side_[index(d)].cb.ops != nullptr; }
  bool idle() const noexcept { return !has(direction::read) && !has(direction::write); }

  // Stops watching: discards both callbacks, releases the descriptor from the reactor and
  // drops the registry's reference. The object deletes itself once pending waits (completed
  // by the reactor as aborted) and queued dispatches are done.
  void detach() noexcept;

  int fd() const noexcept { return fd_; }

  // Visits the installed callbacks (for garbage-collector traversal).
  template <class Visitor>
  void for_each_callback(Visitor&& visit) const {
    for (const side& s : side_) {
      if (s.cb.ops != nullptr) visit(s.cb);
    }
  }

 private:
  struct side {
    callback cb{nullptr, nullptr};  // installed callback; ops null when none
    bool waiting = false;           // an async_wait is pending in the reactor
    bool queued = false;            // a dispatch entry is in the ready queue
  };
  static constexpr int index(direction d) noexcept { return static_cast<int>(d); }

  ~io_watch();
  void arm(direction d);
  void on_ready(direction d);
  void release_ref() noexcept;
  static callback_status dispatch_read(void* self) noexcept;
  static callback_status dispatch_write(void* self) noexcept;
  static void drop_read(void* self) noexcept;
  static void drop_write(void* self) noexcept;
  static bool never_cancelled(const void*) noexcept { return false; }
  callback_status dispatch(direction d) noexcept;

  static const callback_ops read_dispatch_ops;
  static const callback_ops write_dispatch_ops;

  asio::posix::stream_descriptor descriptor_;  // the fd, registered with the reactor
  ready_queue& ready_;                         // where dispatch entries go
  side side_[2];                               // read and write state
  int fd_;                                     // the watched descriptor (not owned)
  int refs_ = 1;                               // registry + armed waits + queued dispatches
  bool detached_ = false;                      // detach() was called
};

}  // namespace pyloop
