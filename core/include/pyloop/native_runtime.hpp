// core/include/pyloop/native_runtime.hpp — the process-wide pool of native worker threads.
#pragma once

#include <functional>

namespace pyloop {

// Runs fn on one of the runtime's threads (as many as the machine has cores, at least two),
// shared by every loop of the process. Blocking native work goes here (name resolution) so
// that no loop thread and no Python executor thread waits on it; work completes into its
// loop through a mailbox (see loop_mailbox). After fork() the child starts a fresh pool.
// Thread safety: callable from any thread.
void run_on_native_runtime(std::function<void()> fn);

// The pool's thread count (it is created by this call if it does not exist yet).
unsigned native_runtime_size();

}  // namespace pyloop
