// core/include/pyloop/interrupt_pipe.hpp — a pipe whose readability ends the loop's wait.
#pragma once

#include <asio/io_context.hpp>
#include <asio/posix/stream_descriptor.hpp>
#include <system_error>

namespace pyloop {

// Signal handlers cannot post to an io_context, but they can write a byte to a pipe (the
// bindings hand write_fd() to Python's signal.set_wakeup_fd). While armed, a byte on the pipe
// completes a read-wait in the reactor, so a loop blocked in its wait returns and can run the
// interpreter's pending signal handlers; a blocked epoll_wait interrupted by EINTR would
// otherwise be resumed by Asio without returning.
// Thread safety: arm() and the destructor on the loop's thread; write_fd() is safe anywhere.
class interrupt_pipe {
 public:
  explicit interrupt_pipe(asio::io_context& io);
  interrupt_pipe(const interrupt_pipe&) = delete;
  interrupt_pipe& operator=(const interrupt_pipe&) = delete;
  ~interrupt_pipe();

  // Creates the pipe on first use. Returns an error if the pipe cannot be made.
  std::error_code open();
  bool is_open() const noexcept { return write_fd_ >= 0; }
  int write_fd() const noexcept { return write_fd_; }

  // Bytes read from the pipe are signal numbers (Python's wakeup fd protocol). Calls
  // visit(signum) once for each signal seen since the last call, in ascending order.
  template <class Visitor>
  void take_signals(Visitor&& visit) {
    if (!any_signal_) return;
    any_signal_ = false;
    for (int signum = 0; signum < max_signal; ++signum) {
      if (seen_[signum]) {
        seen_[signum] = false;
        visit(signum);
      }
    }
  }
  bool signals_pending() const noexcept { return any_signal_; }

 private:
  void arm();
  void drain() noexcept;

  static constexpr int max_signal = 256;   // a wakeup byte holds the signal number

  asio::posix::stream_descriptor reader_;  // read end, registered with the reactor
  bool seen_[max_signal] = {};             // signal numbers read, not yet taken
  bool any_signal_ = false;                // some seen_ entry is set
  int write_fd_ = -1;                      // write end (non-blocking, close-on-exec)
  bool armed_ = false;                     // a read-wait is pending in the reactor
};

}  // namespace pyloop
