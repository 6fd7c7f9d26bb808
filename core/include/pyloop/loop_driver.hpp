// core/include/pyloop/loop_driver.hpp — one event loop's engine: queues, timers, wakeup, the wait.
//
// One iteration (run_once) follows asyncio's BaseEventLoop._run_once, phase by phase:
//   1. callbacks handed over from other threads join the ready queue;
//   2. cancelled timers are pruned (all of them when they dominate, else those at the top);
//   3. Asio handlers that are ready run (native work sharing the loop; see io()). Then the
//      wait: 0 when callbacks are ready or the loop is stopping, else until the next deadline
//      (at most 24 hours, rounded up to the millisecond as asyncio does), or indefinitely
//      when no timer is scheduled. The loop blocks in its own level-triggered readiness set
//      (readiness_set), or, while Asio has work pending, in Asio with that set as one of its
//      descriptors; the wait hooks run around it (the bindings release the GIL there);
//   4. callbacks handed over during the wait join the ready queue, and signals that arrived
//      through the interrupt pipe are handed to the on_signals hook (add_signal_handler);
//   5. timers due before now + clock resolution move, in deadline order, to the ready queue;
//   6. exactly the callbacks ready at this point run, in FIFO order: anything they schedule
//      runs in the next iteration. A callback that aborts ends the callback phase at once and
//      the rest stay queued;
//   7. the turn ends (aborted or not): the turn count advances and the end_of_turn hook runs;
//      it sends, through flush_writers(), what the transports' callbacks wrote during the
//      turn, one system call per transport (stream_writer).
// docs/architecture.md repeats this list; tests/cpp/loop_driver_test.cpp tests it rule by rule.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <system_error>
#include <unordered_map>
#include <utility>
#include <vector>

#include <asio/io_context.hpp>
#include <asio/posix/stream_descriptor.hpp>

#include "pyloop/callback.hpp"
#include "pyloop/interrupt_pipe.hpp"
#include "pyloop/io_watch.hpp"
#include "pyloop/loop_mailbox.hpp"
#include "pyloop/readiness_set.hpp"
#include "pyloop/ready_queue.hpp"
#include "pyloop/stream_writer.hpp"
#include "pyloop/threadsafe_queue.hpp"
#include "pyloop/timer_heap.hpp"

namespace pyloop {

// Code the bindings run at fixed points of an iteration. before_wait and after_wait run just
// before and just after the loop blocks (the bindings drop and retake the GIL). after_wait
// returning false aborts the iteration: its error is the caller's to report, as with a
// callback that aborts. on_signals runs (in phase 4) when signal numbers arrived through the
// interrupt pipe; it takes them with take_signals(). Returning false aborts likewise.
// end_of_turn runs after the callback phase (phase 7), also when a callback aborted (it must
// then leave that error in place). Returning false aborts the iteration likewise.
struct loop_hooks {
  void (*before_wait)(void* data) noexcept = nullptr;
  bool (*after_wait)(void* data) noexcept = nullptr;
  void* data = nullptr;
  bool (*on_signals)(void* data) noexcept = nullptr;
  bool (*end_of_turn)(void* data) noexcept = nullptr;
};

enum class run_status : unsigned char {
  stopped,  // stop() was honoured at the end of an iteration
  aborted,  // a callback aborted; its error is the caller's to report
};

// Lifetime: the driver makes its kernel objects when constructed (open_error() tells if that
// failed; such a driver must not run) and releases them in close(), after which it holds no
// descriptor and refuses new readiness callbacks, but stays a valid object until destroyed,
// so that transports and other objects referring to it can still ask closed().
// Thread safety: every member is for the loop's thread only, except call_soon_threadsafe(),
// which any thread may call while the driver is open.
class loop_driver {
 public:
  static constexpr double maximum_wait_seconds = 24.0 * 3600.0;
  // Size of the receive buffer transports read into: the most one read takes (asyncio's).
  static constexpr std::size_t receive_buffer_size = 256 * 1024;

  loop_driver();  // may throw std::bad_alloc; kernel failures go to open_error()
  loop_driver(const loop_driver&) = delete;
  loop_driver& operator=(const loop_driver&) = delete;
  ~loop_driver();

  // The kernel's error if the readiness set could not be made (EMFILE...), else empty.
  std::error_code open_error() const noexcept { return open_error_; }
  // Discards everything queued (as clear()) and releases every kernel object: the readiness
  // set and its wakeup, the signal pipe, Asio's context. Idempotent.
  void close() noexcept;
  bool closed() const noexcept { return closed_; }
  // Inside run_once(): transports write at once when the loop is not running, as asyncio's do.
  bool running() const noexcept { return running_; }

  // Seconds on the monotonic clock (CLOCK_MONOTONIC on Linux, as time.monotonic()).
  static double now() noexcept;
  static double clock_resolution() noexcept;

  void call_soon(callback cb) { ready_.push(cb); }
  void call_at(double when, callback cb) { timers_.push(when, cb); }
  // Tells the heap that one of its entries was cancelled (lazy removal bookkeeping).
  void timer_cancelled() noexcept { timers_.note_cancelled(); }
  // Any thread: queues cb for the next iteration and wakes the loop if it is waiting.
  void call_soon_threadsafe(callback cb);

  run_status run_once();
  // Runs iterations until stop() is honoured or a callback aborts; the stop request is
  // consumed either way, as asyncio's run_forever resets _stopping in its finally clause.
  run_status run_until_stopped();
  void stop() noexcept { stopping_ = true; }
  bool stopping() const noexcept { return stopping_; }

  // Discards everything queued: ready callbacks, timers, and cross-thread hand-overs.
  void clear();

  void set_hooks(loop_hooks hooks) noexcept { hooks_ = hooks; }

  // The write end of a pipe that ends a blocked wait when written to (for signal wakeups);
  // created on first call. Returns -1 and sets ec if it cannot be created.
  int interrupt_fd(std::error_code& ec) noexcept;
  // Signal numbers that arrived through the interrupt pipe since the last call (see
  // interrupt_pipe::take_signals); the bindings call it from the after_wait hook.
  template <class Visitor>
  void take_signals(Visitor&& visit) {
    interrupt_.take_signals(visit);
  }

  // Readiness callbacks (asyncio's add_reader/add_writer). watch() installs cb for fd and
  // direction and hands back the callback it replaced (ops null if none) for the caller to
  // dispose of; unwatch() hands back the removed one. A descriptor with no callback left is
  // removed from the readiness set.
  // Refused with EBADF once closed; ENOMEM when memory runs out (cb is then not taken).
  std::error_code watch(int fd, io_watch::direction d, callback cb, callback& replaced) noexcept;
  callback unwatch(int fd, io_watch::direction d);
  bool watching(int fd, io_watch::direction d) const;
  // A wait reported an error or hang-up on fd while it was watched (io_watch::saw_hangup).
  bool saw_hangup(int fd) const;

  // I/O sources registered in the readiness set. While there are none, an iteration with
  // ready callbacks skips the readiness poll entirely: nothing but the wakeup could be
  // reported.
  void add_io_source() noexcept { ++io_sources_; }
  void remove_io_source() noexcept { --io_sources_; }

  // Turns ended so far (phase 7): stream writers' write pattern counts writes per turn.
  std::uint64_t turn() const noexcept { return turn_; }

  // Writers written to during this turn, sent by flush_writers(). A listed writer's owner is
  // retained until its flush (stream_writer_events::retain).
  void schedule_flush(stream_writer* writer);
  // Sends every listed writer's queue. on_failure(writer, outcome) runs for a writer whose
  // flush failed (its error pending) and returns false to make this return false (abort the
  // iteration) once the rest are flushed. Writes made meanwhile are listed for next time.
  template <class OnFailure>
  bool flush_writers(OnFailure&& on_failure);
  // A listed writer going away (also while flush_writers() is sending the list): takes it
  // off and releases the owner reference the list held.
  void forget_flush(stream_writer* writer) noexcept;
  bool flush_pending() const noexcept { return !flush_list_.empty(); }
  std::uint64_t sends() const noexcept { return sends_; }  // send calls of writers (tests)
  void count_send() noexcept { ++sends_; }

  // The transports' receive buffer (receive_buffer_size bytes), made on first use; null if
  // that allocation fails.
  char* receive_buffer() noexcept;

  std::size_t ready_count() const noexcept { return ready_.size(); }
  std::size_t timer_count() const noexcept { return timers_.size(); }
  std::size_t cancelled_timer_count() const noexcept { return timers_.cancelled_count(); }
  // Earliest live deadline, or a negative value when no timer is scheduled.
  double next_deadline();

  // The loop's Asio context, for native asynchronous code that shares the loop (timers,
  // sockets, C++ coroutines). Its handlers run on the loop's thread, in phase 3 or during
  // the wait (without the GIL). Other threads hand work to the loop through mailbox() or
  // call_soon_threadsafe(); posting to io() from another thread wakes the loop only while
  // io() has work pending (hold a work guard), as with any Asio context. Until io() is first
  // called nothing can be queued on the context, and the loop does not poll it.
  // The context is made on first call (which may throw std::bad_alloc or std::system_error).
  asio::io_context& io();

  // The address other threads' native work completes to (closed when the driver goes).
  const std::shared_ptr<loop_mailbox>& mailbox() const noexcept { return mailbox_; }

  template <class Visitor>
  void for_each_queued(Visitor&& visit) const {
    ready_.for_each(visit);
    timers_.for_each(visit);
    for (const auto& [fd, watch] : watches_) watch->for_each_callback(visit);
  }
  // Visits the owner of each writer in the flush list (for garbage-collector traversal).
  template <class Visitor>
  void for_each_flush_owner(Visitor&& visit) const {
    for (const stream_writer* w : flush_list_) visit(w->owner());
  }

 private:
  bool wait(double timeout_seconds);
  void wait_inside_asio(double timeout_seconds);
  void poll_asio();
  void collect(readiness_set::result ready);
  void take_incoming();
  void move_due_timers();
  void release_flush_list() noexcept;
  void release_asio() noexcept;

  readiness_set readiness_;               // the descriptors the loop waits on, and its wakeup
  std::error_code open_error_;            // why readiness_ could not be opened, if it could not
  std::unique_ptr<asio::io_context> io_;  // native Asio work, made by io(); loop thread only
  // readiness_ seen from io_ (not owned), made the first time the loop waits inside Asio.
  std::optional<asio::posix::stream_descriptor> readiness_in_asio_;
  bool asio_busy_ = false;                // io_ had work pending at its last poll
  bool closed_ = false;                   // close() has run
  bool running_ = false;                  // inside run_once()
  std::uint64_t turn_ = 0;                // turns ended so far
  std::uint64_t sends_ = 0;               // writers' send calls
  std::vector<stream_writer*> flush_list_;   // writers to flush at the end of the turn
  std::vector<stream_writer*> spare_list_;   // the previous flush list, kept for its capacity
  // The lists flush_writers() calls are sending, innermost first: forget_flush() clears a
  // destroyed writer's slot there, so the flush skips it.
  struct flush_in_progress {
    std::vector<stream_writer*>* due;  // the detached list being sent
    flush_in_progress* outer;          // the call this one is nested in, or null
  };
  flush_in_progress* flushing_ = nullptr;
  std::unique_ptr<char[]> receive_buffer_;   // see receive_buffer()
  ready_queue ready_;                     // callbacks for the next iteration
  timer_heap timers_;                     // callbacks waiting for a deadline
  threadsafe_queue incoming_;             // callbacks handed over by other threads
  std::atomic<bool> wakeup_posted_{false};  // readiness_ was woken; no wait has seen it yet
  loop_hooks hooks_;                      // run around the wait and at the end of a turn
  interrupt_pipe interrupt_;              // signal wakeups; unopened until asked for
  std::size_t io_sources_ = 0;            // registered I/O sources (see add_io_source)
  std::unordered_map<int, io_watch*> watches_;  // readiness callbacks by descriptor
  bool stopping_ = false;                 // stop() called; honoured after this iteration
  std::shared_ptr<loop_mailbox> mailbox_ = std::make_shared<loop_mailbox>(this);  // see mailbox()
};

template <class OnFailure>
bool loop_driver::flush_writers(OnFailure&& on_failure) {
  if (flush_list_.empty()) return true;
  // Detached first: a flush may write again (an error handler), for the next flush.
  std::vector<stream_writer*> due;
  due.swap(flush_list_);
  flush_list_.swap(spare_list_);
  flush_in_progress frame{&due, flushing_};
  flushing_ = &frame;
  struct pop_frame {
    flush_in_progress*& top;
    flush_in_progress* outer;
    ~pop_frame() { top = outer; }
  } pop{flushing_, frame.outer};
  bool keep_going = true;
  // By index, each slot cleared as it is taken: an event may destroy a writer further on.
  for (std::size_t i = 0; i < due.size(); ++i) {
    stream_writer* w = std::exchange(due[i], nullptr);
    if (w == nullptr) continue;  // destroyed meanwhile: forget_flush() released it
    w->in_flush_list_ = false;
    const stream_writer_events& events = w->events_;
    void* owner = w->owner_;
    write_outcome outcome = w->flush();
    if (outcome != write_outcome::ok && !on_failure(*w, outcome)) keep_going = false;
    events.release(owner);  // the list's reference; w may be gone after this
  }
  due.clear();
  if (spare_list_.capacity() < due.capacity()) spare_list_.swap(due);
  return keep_going;
}

}  // namespace pyloop
