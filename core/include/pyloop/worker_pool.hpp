// core/include/pyloop/worker_pool.hpp — a pool of worker threads that wakes as few of them
// as the queued work needs: the engine behind the native runtime and the blocking pool.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <mutex>

namespace pyloop {

// One unit of work: fn(arg) on a worker. fn must not throw: a worker has nobody to give an
// exception to, and one that escapes ends the process (the worker's loop is noexcept).
struct pool_task {
  void (*fn)(void* arg);
  void* arg;
};

// Threads are started on demand, up to max_threads, and live until the process ends (the
// pools are never destroyed: see shared_pool below).
//
// Why not asio::thread_pool: it signals a sleeping thread for every post, so a burst of
// small jobs from a loop costs a futex wake and a context switch per job (measured: 1,000
// pool completions in flight ran at a third of the rate of call_soon_threadsafe from one
// Python thread, 23% of the samples in futex wake and wait). Here a post wakes a thread only
// when none is already on its way (`waking_`); a thread that takes work while more is queued
// wakes the next one, so a burst ramps up to every thread with one wake paid by the poster.
// Thread safety: post() from any thread.
class worker_pool {
 public:
  explicit worker_pool(unsigned max_threads) : max_threads_(max_threads < 1 ? 1 : max_threads) {}
  worker_pool(const worker_pool&) = delete;
  worker_pool& operator=(const worker_pool&) = delete;

  // Queues task. Throws std::bad_alloc (queue growth) or std::system_error when no thread
  // exists and none can be started; the task was not taken then.
  void post(pool_task task);

  // Queues fn, moved to the heap (one allocation); same errors as post().
  void post(std::function<void()> fn);

  unsigned max_threads() const noexcept { return max_threads_; }
  unsigned started_threads();  // threads started so far (for tests)

 private:
  // Under mutex_: gets one more thread looking at the queue unless one is on its way. A
  // thread is started here (under the lock, at most max_threads times in all); true means an
  // idle one must be signalled, after the lock is let go. Throws what starting throws.
  bool wake_locked();
  void work() noexcept;

  const unsigned max_threads_;
  std::mutex mutex_;                  // guards everything below
  std::condition_variable wakeup_;   // idle threads wait here
  std::deque<pool_task> queue_;       // work not yet taken
  unsigned started_ = 0;              // threads started (never fewer: they do not exit)
  unsigned idle_ = 0;                 // threads waiting on wakeup_
  bool waking_ = false;               // a thread was signalled or started and has not taken
                                      // work yet: the next post need not wake another
};

// The process-wide pools (native_runtime.hpp, blocking_pool.hpp): each made on first use
// with `threads` (ignored afterwards) and never destroyed, so work still running at exit (a
// slow DNS query, a file call asleep in the kernel) cannot hold up interpreter shutdown; a
// child of fork() abandons the inherited ones (their threads do not exist there) and makes
// its own on first use.
// Thread safety: any thread.
enum class shared_pool_id { native_runtime, blocking };
worker_pool& shared_pool(shared_pool_id id, unsigned threads);

}  // namespace pyloop
