// core/include/pyloop/threadsafe_queue.hpp — callbacks handed to the loop from other threads.
#pragma once

#include <atomic>
#include <mutex>
#include <vector>

#include "pyloop/callback.hpp"
#include "pyloop/ready_queue.hpp"

namespace pyloop {

// A mutex-protected inbox. Producers on any thread push; the loop thread drains the whole
// inbox into its ready queue once per iteration. The vectors are swapped, not copied, and
// both keep their capacity, so steady traffic allocates nothing.
// Thread safety: push() and maybe_nonempty() from any thread; drain_into() and clear() from
// the loop's thread only.
class threadsafe_queue {
 public:
  threadsafe_queue() = default;
  threadsafe_queue(const threadsafe_queue&) = delete;
  threadsafe_queue& operator=(const threadsafe_queue&) = delete;
  ~threadsafe_queue() { clear(); }

  void push(callback cb);
  // A cheap, possibly stale hint; the loop uses it to skip taking the lock when idle.
  bool maybe_nonempty() const noexcept { return pending_.load(std::memory_order_acquire); }
  // Moves everything pushed so far, in push order, to the end of ready.
  void drain_into(ready_queue& ready);
  void clear() noexcept;

 private:
  std::mutex mutex_;                  // guards inbox_
  std::vector<callback> inbox_;       // pushed, not yet drained
  std::vector<callback> draining_;    // loop-thread scratch space, reused across drains
  std::atomic<bool> pending_{false};  // inbox_ was non-empty when last written
};

}  // namespace pyloop
