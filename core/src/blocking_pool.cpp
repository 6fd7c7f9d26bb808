// core/src/blocking_pool.cpp — the pool for blocking native work, created on first use (and
// per process), never destroyed.
#include "pyloop/blocking_pool.hpp"

#include <unistd.h>

#include <algorithm>
#include <mutex>
#include <thread>

#include <asio/post.hpp>
#include <asio/thread_pool.hpp>

namespace pyloop {
namespace {

std::mutex pool_mutex;              // guards pool and pool_pid
asio::thread_pool* pool = nullptr;  // the pool of this process
pid_t pool_pid = 0;                 // process that created pool

asio::thread_pool& current_pool() {
  std::lock_guard<std::mutex> lock(pool_mutex);
  if (pool == nullptr || pool_pid != ::getpid()) {
    // As the native runtime's pool: one inherited through fork() has no threads and is
    // abandoned, and the process's own lives until exit so that a call still asleep in the
    // kernel then cannot hold up interpreter shutdown.
    // All threads start with the pool (Asio's pool does not grow): capped so that a large
    // machine does not start hundreds of them for a few files.
    const unsigned threads = std::min(64u, std::max(8u, 4 * std::thread::hardware_concurrency()));
    pool = new asio::thread_pool(threads);
    pool_pid = ::getpid();
  }
  return *pool;
}

}  // namespace

void run_blocking(std::function<void()> fn) { asio::post(current_pool(), std::move(fn)); }

}  // namespace pyloop
