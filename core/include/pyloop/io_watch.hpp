// core/include/pyloop/io_watch.hpp — level-triggered readiness callbacks on one descriptor.
#pragma once

#include <system_error>

#include "pyloop/callback.hpp"
#include "pyloop/readiness_set.hpp"
#include "pyloop/ready_queue.hpp"

namespace pyloop {

// asyncio's add_reader/add_writer for one file descriptor. The descriptor is registered in
// the loop's readiness set (never owned: it is removed, not closed, at the end) with the
// directions that have a callback. When a wait reports it ready, a dispatch entry joins the
// ready queue, and running it runs the callback. The set is level-triggered, so a callback
// that leaves data unread runs again next iteration, as with asyncio's selectors, and
// nothing needs re-arming between iterations.
//
// Lifetime: reference-counted by its registry entry and each queued dispatch, because
// dispatches may be queued when the callback is removed. Thread safety: the loop's thread.
class io_watch {
 public:
  enum class direction : unsigned char { read = 0, write = 1 };

  io_watch(readiness_set& set, ready_queue& ready, int fd) : set_(set), ready_(ready), fd_(fd) {}
  io_watch(const io_watch&) = delete;
  io_watch& operator=(const io_watch&) = delete;

  // Installs cb for a direction and hands back the callback it replaces (ops null if none)
  // for the caller to dispose of (asyncio cancels the old handle). Fails, installing
  // nothing, when the kernel refuses the descriptor (EPERM for regular files, EBADF).
  std::error_code install(direction d, callback cb, callback& replaced) noexcept;
  // Removes and returns the callback of a direction (ops null if there was none).
  callback remove(direction d) noexcept;
  bool has(direction d) const noexcept { return side_[index(d)].cb.ops != nullptr; }
  bool idle() const noexcept { return !has(direction::read) && !has(direction::write); }

  // A wait reported the descriptor ready (readiness_bits): queues a dispatch for each
  // ready direction that has a callback and none queued yet.
  void on_ready(unsigned bits);

  // Stops watching: discards both callbacks, removes the descriptor from the readiness set
  // and drops the registry's reference. The object deletes itself once queued dispatches
  // are done.
  void detach() noexcept;

  int fd() const noexcept { return fd_; }
  // A wait reported an error or hang-up on the descriptor (readiness_bits::hangup) since it
  // was first watched: the peer reset the connection, say. Sticky; a descriptor watched
  // again after its callbacks were all removed starts with a fresh watch.
  bool saw_hangup() const noexcept { return saw_hangup_; }

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
    bool queued = false;            // a dispatch entry is in the ready queue
  };
  static constexpr int index(direction d) noexcept { return static_cast<int>(d); }
  static constexpr unsigned bit(direction d) noexcept {
    return d == direction::read ? readable : writable;
  }

  ~io_watch() = default;
  unsigned interest() const noexcept;
  void queue(direction d);
  void release_ref() noexcept;
  static callback_status dispatch_read(void* self) noexcept;
  static callback_status dispatch_write(void* self) noexcept;
  static void drop_read(void* self) noexcept;
  static void drop_write(void* self) noexcept;
  static bool never_cancelled(const void*) noexcept { return false; }
  callback_status dispatch(direction d) noexcept;

  static const callback_ops read_dispatch_ops;
  static const callback_ops write_dispatch_ops;

  readiness_set& set_;     // where the descriptor is registered
  ready_queue& ready_;     // where dispatch entries go
  side side_[2];           // read and write state
  int fd_;                 // the watched descriptor (not owned)
  unsigned registered_ = 0;  // interest registered in set_ (readiness_bits)
  int refs_ = 1;           // registry + queued dispatches
  bool detached_ = false;  // detach() was called
  bool saw_hangup_ = false;  // a wait reported hangup (see saw_hangup())
};

}  // namespace pyloop
