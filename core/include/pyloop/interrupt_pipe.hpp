// core/include/pyloop/interrupt_pipe.hpp — a pipe whose readability ends the loop's wait.
#pragma once

#include <system_error>

namespace pyloop {

// Signal handlers cannot queue callbacks, but they can write a byte to a pipe (the bindings
// hand write_fd() to Python's signal.set_wakeup_fd). The loop registers read_fd() in its
// readiness set, so a byte on the pipe ends a blocked wait (also when the loop waits inside
// another reactor, which would resume an interrupted wait), and the loop can run the
// interpreter's pending signal handlers.
// Thread safety: drain() and the destructor on the loop's thread; write_fd() anywhere.
class interrupt_pipe {
 public:
  interrupt_pipe() = default;
  interrupt_pipe(const interrupt_pipe&) = delete;
  interrupt_pipe& operator=(const interrupt_pipe&) = delete;
  ~interrupt_pipe() { close(); }

  // Creates the pipe on first use. Returns an error if the pipe cannot be made.
  std::error_code open() noexcept;
  void close() noexcept;  // closes both ends; open() may make a new pipe
  bool is_open() const noexcept { return write_fd_ >= 0; }
  int write_fd() const noexcept { return write_fd_; }
  int read_fd() const noexcept { return read_fd_; }

  // Reads what the pipe holds, noting the signal numbers for take_signals().
  void drain() noexcept;

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
  static constexpr int max_signal = 256;   // a wakeup byte holds the signal number

  bool seen_[max_signal] = {};             // signal numbers read, not yet taken
  bool any_signal_ = false;                // some seen_ entry is set
  int read_fd_ = -1;                       // read end (non-blocking, close-on-exec)
  int write_fd_ = -1;                      // write end (non-blocking, close-on-exec)
};

}  // namespace pyloop
