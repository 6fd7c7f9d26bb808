// core/include/pyloop/process_spawn.hpp — starting a child process with posix_spawn, as subprocess.Popen would.
#pragma once

#include <sys/types.h>

#include <cstddef>

namespace pyloop {

// One standard stream of the child (what Popen's stdin/stdout/stderr arguments mean).
struct child_stream {
  enum class kind : unsigned char {
    inherit,         // None: the parent's own descriptor
    pipe,            // PIPE: a new pipe; the parent keeps the other end
    devnull,         // DEVNULL: /dev/null, opened read-write as Popen opens it
    descriptor,      // a descriptor of the parent's (a file object's fileno())
    same_as_stdout,  // STDOUT (stderr only): whatever the child's stdout is
  };
  kind how = kind::inherit;
  int fd = -1;  // descriptor: the parent's descriptor
};

// Everything Popen's fork-and-exec path takes that posix_spawn can express. Strings are
// the encoded (os.fsencode) forms; arrays of strings end with a null pointer.
struct spawn_request {
  const char* const* argv = nullptr;         // the child's argv
  const char* const* executables = nullptr;  // paths to try in order (Popen's executable_list)
  const char* const* envp = nullptr;         // the child's environment; null: the parent's
  const char* cwd = nullptr;                 // directory to start in; null: the parent's
  child_stream stdio[3];                     // stdin, stdout, stderr
  const int* pass_fds = nullptr;             // descriptors kept open (ascending, each > 2)
  std::size_t pass_fd_count = 0;
  bool close_fds = true;             // close every other descriptor above 2
  bool start_new_session = false;    // setsid() in the child
  bool restore_signals = true;       // SIGPIPE and SIGXFSZ back to their default action
};

// The outcome of spawn_process.
struct spawn_result {
  pid_t pid = -1;                 // the child, when it started
  int parent_fds[3] = {-1, -1, -1};  // the parent's pipe ends: stdin's write end, stdout's
                                     // and stderr's read ends (-1 where no pipe); blocking,
                                     // close-on-exec, owned by the caller on success
  int error = 0;                  // errno of a failure (the child never ran)
  bool in_chdir = false;          // the failure was changing into cwd (Popen names cwd)
};

// True where spawn_process can honour every field of a request (glibc 2.34 or later:
// posix_spawn reports exec errors and has closefrom and chdir file actions). Elsewhere the
// caller uses subprocess.Popen.
bool fast_spawn_available() noexcept;

// Starts the child: makes the pipes, then tries each executable in turn with posix_spawn,
// as Popen's child tries execve on each: a candidate that does not exist (ENOENT, ENOTDIR)
// is skipped; the error reported is the first other error met, else the last one. Nothing
// stays open on failure. Thread safety: any thread (descriptors are made close-on-exec).
spawn_result spawn_process(const spawn_request& request) noexcept;

}  // namespace pyloop
