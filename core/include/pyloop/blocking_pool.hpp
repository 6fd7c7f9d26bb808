// core/include/pyloop/blocking_pool.hpp — the process-wide pool for native work that waits
// on the kernel (file system calls), beside the core-sized native runtime.
#pragma once

#include <functional>

namespace pyloop {

// Runs fn on one of the blocking pool's threads: more threads than cores (four per core, at
// least eight, at most 64, started as calls queue up), shared by every loop, since file
// system calls spend much of their time asleep in the kernel (an open() with O_TRUNC waits
// for the disk to discard blocks) and a core-sized pool would leave the cores idle behind
// them. Work completes into its loop through a mailbox, as on the native runtime. After
// fork() the child starts a fresh pool.
// Thread safety: callable from any thread.
void run_blocking(std::function<void()> fn);

}  // namespace pyloop
