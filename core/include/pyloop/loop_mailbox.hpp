// core/include/pyloop/loop_mailbox.hpp — how native work on other threads completes into a loop.
#pragma once

#include <memory>
#include <mutex>

#include "pyloop/callback.hpp"

namespace pyloop {

class loop_driver;

// A loop's address for work finishing on other threads. The loop closes it before its
// driver goes away; delivering to a closed mailbox fails, and the sender then disposes of
// its result itself (without touching the loop or Python).
// Thread safety: deliver() from any thread; close() from the loop's thread.
class loop_mailbox {
 public:
  explicit loop_mailbox(loop_driver* loop) : loop_(loop) {}

  // Queues cb for the loop's next iteration (as call_soon_threadsafe). False if closed.
  bool deliver(callback cb);
  void close();

 private:
  std::mutex mutex_;    // guards loop_ against the driver's destruction
  loop_driver* loop_;   // null once closed
};

}  // namespace pyloop
