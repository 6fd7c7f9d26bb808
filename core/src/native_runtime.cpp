// core/src/native_runtime.cpp — the shared worker pool, created on first use (and per process).
#include "pyloop/native_runtime.hpp"

#include <pthread.h>

#include <algorithm>
#include <mutex>
#include <new>
#include <thread>

#include "pyloop/worker_pool.hpp"

namespace pyloop {
namespace {

std::mutex pool_mutex;          // guards pool
worker_pool* pool = nullptr;    // the pool of this process; never destroyed (below)

// In a child of fork() the pool's threads do not exist (and its mutex may have been held by
// one of them): the child abandons it, and starts its own on first use.
void forget_pool_in_child() noexcept {
  new (&pool_mutex) std::mutex();
  pool = nullptr;
}

worker_pool& current_pool() {
  std::lock_guard<std::mutex> lock(pool_mutex);
  if (pool == nullptr) {
    static const bool fork_handler_installed = [] {
      return ::pthread_atfork(nullptr, nullptr, forget_pool_in_child) == 0;
    }();
    (void)fork_handler_installed;
    // Never destroyed: work still running at exit (a slow DNS query) cannot make interpreter
    // shutdown wait for it.
    pool = new worker_pool(std::max(2u, std::thread::hardware_concurrency()));
  }
  return *pool;
}

}  // namespace

void run_on_native_runtime(std::function<void()> fn) { current_pool().post(std::move(fn)); }

void run_on_native_runtime(pool_task task) { current_pool().post(task); }

unsigned native_runtime_size() { return current_pool().max_threads(); }

}  // namespace pyloop
