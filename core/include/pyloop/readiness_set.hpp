// core/include/pyloop/readiness_set.hpp — the loop's level-triggered readiness wait.
#pragma once

#include <cstddef>
#include <system_error>

namespace pyloop {

// Bits of interest and of readiness. An error or hang-up on a descriptor reports both, as
// asyncio's selectors do, so whichever callback is installed runs and meets the error; it
// also reports `hangup` (never an interest): the kernel said so (EPOLLERR or EPOLLHUP, such
// as a peer's reset; kqueue's EV_ERROR, or EV_EOF carrying an error).
enum readiness_bits : unsigned { readable = 1u, writable = 2u, hangup = 4u };

struct ready_descriptor {
  int fd;
  unsigned bits;  // readiness_bits
};

// The kernel readiness set the loop blocks in: epoll on Linux, kqueue on the BSDs and macOS,
// both level-triggered. A descriptor is registered once with the directions it has callbacks
// for and changed only when that interest changes, so a descriptor that is read and written
// every iteration costs no registration call (an edge-triggered reactor re-arms each wait).
// It also owns the loop's thread-safe wakeup (an eventfd, or an EVFILT_USER event).
// Thread safety: wake() from any thread; everything else on the loop's thread.
class readiness_set {
 public:
  static constexpr std::size_t batch_size = 128;  // descriptors reported per wait at most

  readiness_set() noexcept = default;
  readiness_set(const readiness_set&) = delete;
  readiness_set& operator=(const readiness_set&) = delete;
  ~readiness_set() { close(); }

  // Makes the kernel objects (the epoll or kqueue descriptor and the wakeup). Returns the
  // kernel's error (EMFILE when the process is out of descriptors), leaving nothing open.
  std::error_code open() noexcept;
  bool is_open() const noexcept { return queue_fd_ >= 0; }
  // Closes them: a closed set holds no descriptor. open() may be called again.
  void close() noexcept;

  // Changes fd's registered interest from `before` to `after` (readiness_bits; 0 = none).
  // Removing a descriptor that was closed meanwhile is not an error: the kernel dropped it.
  // A registration the kernel dropped because the descriptor was closed and its number
  // reused is made again.
  std::error_code update(int fd, unsigned before, unsigned after) noexcept;

  // Waits up to timeout_ms (negative: indefinitely; 0: only looks) and returns the ready
  // descriptors, valid until the next call. A wakeup is consumed here and not reported; a
  // signal ends the wait early with nothing reported.
  struct result {
    const ready_descriptor* begin_;
    std::size_t count;
    const ready_descriptor* begin() const noexcept { return begin_; }
    const ready_descriptor* end() const noexcept { return begin_ + count; }
  };
  result wait(int timeout_ms) noexcept;

  // Any thread: makes the current or next wait return.
  void wake() noexcept;

  // Readable while a wait would report something: lets another reactor wait on this set.
  int native_handle() const noexcept { return queue_fd_; }

 private:
  int queue_fd_ = -1;  // the epoll or kqueue descriptor
  int wake_fd_ = -1;   // the eventfd (epoll); unused with kqueue (EVFILT_USER)
  ready_descriptor ready_[batch_size];
};

}  // namespace pyloop
