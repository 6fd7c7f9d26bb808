// core/src/blocking_pool.cpp — the pool for blocking native work, created on first use (and
// per process), never destroyed.
#include "pyloop/blocking_pool.hpp"

#include <pthread.h>

#include <algorithm>
#include <mutex>
#include <new>
#include <thread>

#include "pyloop/worker_pool.hpp"

namespace pyloop {
namespace {

std::mutex pool_mutex;        // guards pool
worker_pool* pool = nullptr;  // the pool of this process

// As the native runtime's pool: one inherited through fork() has no threads and is
// abandoned.
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
    // Never destroyed, so that a call still asleep in the kernel at exit cannot hold up
    // interpreter shutdown. Threads start as calls queue up, up to the cap: a large machine
    // does not start hundreds of them for a few files.
    pool = new worker_pool(std::min(64u, std::max(8u, 4 * std::thread::hardware_concurrency())));
  }
  return *pool;
}

}  // namespace

void run_blocking(std::function<void()> fn) { current_pool().post(std::move(fn)); }

}  // namespace pyloop
