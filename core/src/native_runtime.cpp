// core/src/native_runtime.cpp — the shared worker pool, created on first use (and per process).
#include "pyloop/native_runtime.hpp"

#include <algorithm>
#include <thread>

#include "pyloop/worker_pool.hpp"

namespace pyloop {
namespace {

worker_pool& runtime_pool() {
  // Asked once: hardware_concurrency() reads /sys (an open, a read and a close per call).
  static const unsigned threads = std::max(2u, std::thread::hardware_concurrency());
  return shared_pool(shared_pool_id::native_runtime, threads);
}

}  // namespace

void run_on_native_runtime(std::function<void()> fn) { runtime_pool().post(std::move(fn)); }

void run_on_native_runtime(pool_task task) { runtime_pool().post(task); }

unsigned native_runtime_size() { return runtime_pool().max_threads(); }

}  // namespace pyloop
