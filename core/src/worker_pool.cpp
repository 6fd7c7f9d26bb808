// core/src/worker_pool.cpp — worker threads woken only as the queued work needs them.
#include "pyloop/worker_pool.hpp"

#include <pthread.h>
#include <sched.h>

#include <memory>
#include <new>
#include <thread>
#include <utility>

namespace pyloop {

bool worker_pool::wake_locked() {
  if (waking_) return false;  // that thread will take work, then wake the next if needed
  if (idle_ > 0) {
    waking_ = true;
    return true;
  }
  if (started_ < max_threads_) {
    std::thread(&worker_pool::work, this).detach();  // std::system_error: nothing changed
    ++started_;
    waking_ = true;
  }
  return false;  // every thread is busy: one of them comes back to the queue
}

void worker_pool::post(pool_task task) {
  bool signal = false;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    queue_.push_back(task);
    try {
      signal = wake_locked();
    } catch (...) {
      // No thread could be started. With others running, one of them takes the task; with
      // none, nothing ever would: it is given back.
      if (started_ == 0) {
        queue_.pop_back();
        throw;
      }
    }
  }
  if (signal) wakeup_.notify_one();
}

namespace {

void run_function(void* arg) {
  std::unique_ptr<std::function<void()>> fn(static_cast<std::function<void()>*>(arg));
  (*fn)();  // an exception ends the process (the worker's loop is noexcept)
}

}  // namespace

void worker_pool::post(std::function<void()> fn) {
  auto owned = std::make_unique<std::function<void()>>(std::move(fn));
  post(pool_task{run_function, owned.get()});
  owned.release();
}

unsigned worker_pool::started_threads() {
  std::lock_guard<std::mutex> lock(mutex_);
  return started_;
}

void worker_pool::work() noexcept {
  // SCHED_BATCH: a worker woken by a post does not preempt the posting thread (the loop,
  // usually, with more to post and a turn to finish); it runs on another core at once, or
  // on the same one when the loop waits. Same priority otherwise; refused quietly.
  sched_param normal{};
  (void)::pthread_setschedparam(::pthread_self(), SCHED_BATCH, &normal);
  std::unique_lock<std::mutex> lock(mutex_);
  for (;;) {
    while (queue_.empty()) {
      ++idle_;
      wakeup_.wait(lock);
      --idle_;
    }
    const pool_task task = queue_.front();
    queue_.pop_front();
    waking_ = false;  // this thread is the one that was on its way (or does its work)
    bool signal = false;
    if (!queue_.empty()) {
      // More is queued than this thread takes now: the next thread ramps up. A thread that
      // cannot be started leaves the work to the running ones.
      try {
        signal = wake_locked();
      } catch (...) {  // std::system_error, std::bad_alloc
      }
    }
    lock.unlock();
    if (signal) wakeup_.notify_one();
    task.fn(task.arg);
    lock.lock();
  }
}

namespace {

struct pool_slot {
  std::mutex mutex;             // guards pool
  worker_pool* pool = nullptr;  // this process's pool, once made
};
pool_slot shared_slots[2];  // by shared_pool_id

// In the child of fork(): the pools' threads do not exist there, and a slot's mutex may have
// been held by one of the parent's threads. The pools are abandoned, not destroyed.
void forget_shared_pools() noexcept {
  for (pool_slot& slot : shared_slots) {
    new (&slot.mutex) std::mutex();
    slot.pool = nullptr;
  }
}

}  // namespace

worker_pool& shared_pool(shared_pool_id id, unsigned threads) {
  static const bool fork_handler = ::pthread_atfork(nullptr, nullptr, forget_shared_pools) == 0;
  (void)fork_handler;
  pool_slot& slot = shared_slots[static_cast<int>(id)];
  std::lock_guard<std::mutex> lock(slot.mutex);
  if (slot.pool == nullptr) slot.pool = new worker_pool(threads);
  return *slot.pool;
}

}  // namespace pyloop
