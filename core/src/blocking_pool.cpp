// core/src/blocking_pool.cpp — the pool for blocking native work, created on first use (and
// per process), never destroyed.
#include "pyloop/blocking_pool.hpp"

#include <algorithm>
#include <thread>

#include "pyloop/worker_pool.hpp"

namespace pyloop {

void run_blocking(std::function<void()> fn) {
  // Capped so that a large machine does not start hundreds of threads for a few files. Asked
  // once: hardware_concurrency() reads /sys (an open, a read and a close per call).
  static const unsigned threads = std::min(64u, std::max(8u, 4 * std::thread::hardware_concurrency()));
  shared_pool(shared_pool_id::blocking, threads).post(std::move(fn));
}

}  // namespace pyloop
