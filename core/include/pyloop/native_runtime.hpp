// core/include/pyloop/native_runtime.hpp — the process-wide pool of native worker threads.
#pragma once

#include <functional>

#include "pyloop/worker_pool.hpp"

namespace pyloop {

// Runs fn on one of the runtime's threads (as many as the machine has cores, at least two,
// started as work needs them), shared by every loop of the process. Blocking native work goes
// here (name resolution) so that no loop thread and no Python executor thread waits on it;
// work completes into its loop through a mailbox (see loop_mailbox). After fork() the child
// starts a fresh pool. Throws std::bad_alloc, or std::system_error if no thread can start.
// Thread safety: callable from any thread.
void run_on_native_runtime(std::function<void()> fn);

// The same for a plain function and argument: no allocation per task (the native bridge's
// run_on_pool).
void run_on_native_runtime(pool_task task);

// The pool's thread count (it is created by this call if it does not exist yet).
unsigned native_runtime_size();

}  // namespace pyloop
