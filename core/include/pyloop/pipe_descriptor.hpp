// core/include/pyloop/pipe_descriptor.hpp — which descriptors a pipe transport accepts.
#pragma once

#include <system_error>

namespace pyloop {

// The kinds of file asyncio's pipe transports take (unix_events.py checks S_ISFIFO,
// S_ISSOCK and S_ISCHR), and `other` for everything they refuse (a regular file, a
// directory, a block device).
enum class pipe_file : unsigned char { fifo, socket, character, other };

// Looks at what `fd` is (fstat) and, for a kind a pipe transport takes, makes it
// non-blocking, as asyncio's transports do (os.set_blocking(fd, False)); a file of another
// kind is left as it is and reported as `other`. The kernel's error when fstat or fcntl
// fails (EBADF for a closed descriptor).
// Thread safety: stateless, any thread.
std::error_code prepare_pipe(int fd, pipe_file& kind) noexcept;

}  // namespace pyloop
