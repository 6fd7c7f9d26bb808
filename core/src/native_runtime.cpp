// core/src/native_runtime.cpp — the shared worker pool, created on first use (and per process).
#include "pyloop/native_runtime.hpp"

#include <unistd.h>

#include <algorithm>
#include <mutex>
#include <thread>

#include <asio/post.hpp>
#include <asio/thread_pool.hpp>

namespace pyloop {
namespace {

std::mutex pool_mutex;                 // guards pool and pool_pid
asio::thread_pool* pool = nullptr;     // the pool of this process; never destroyed (below)
pid_t pool_pid = 0;                    // process that created pool
unsigned pool_threads = 0;             // threads of pool

asio::thread_pool& current_pool() {
  std::lock_guard<std::mutex> lock(pool_mutex);
  if (pool == nullptr || pool_pid != ::getpid()) {
    // A pool inherited through fork() has no threads in the child: it is abandoned, not
    // destroyed (its destructor would wait for threads that do not exist). The process's own
    // pool lives until exit, so work still running then (a slow DNS query) cannot make
    // interpreter shutdown wait for it.
    const unsigned cores = std::max(2u, std::thread::hardware_concurrency());
    pool = new asio::thread_pool(cores);
    pool_threads = cores;
    pool_pid = ::getpid();
  }
  return *pool;
}

}  // namespace

void run_on_native_runtime(std::function<void()> fn) { asio::post(current_pool(), std::move(fn)); }

unsigned native_runtime_size() {
  (void)current_pool();
  std::lock_guard<std::mutex> lock(pool_mutex);
  return pool_threads;
}

}  // namespace pyloop
