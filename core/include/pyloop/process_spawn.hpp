// core/include/pyloop/process_spawn.hpp — starting a child process with posix_spawn, as subprocess.Popen would.
#pragma once

#include <signal.h>
#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "pyloop/callback.hpp"
#include "pyloop/loop_mailbox.hpp"

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
  const sigset_t* signal_mask = nullptr;  // the child's signal mask; null: the calling thread's
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

// Ends a child nobody will wait for (its starter went away): closes the parent's pipe ends,
// kills the child (SIGKILL) and reaps it on the native runtime, so it leaves no zombie.
void abandon_child(spawn_result& started) noexcept;

// A spawn to run on the native runtime: the request's strings, owned, and once run its
// result. A job deleted with a child it started and nobody took (the loop closed meanwhile,
// the requester cancelled) abandons that child.
// Thread safety: one thread owns it at a time (requester, worker, then loop).
struct spawn_job {
  std::vector<std::string> argv;         // the child's argv
  std::vector<std::string> executables;  // paths to try in order
  std::optional<std::vector<std::string>> env;  // the environment; nullopt: the parent's
  std::optional<std::string> cwd;        // where to start; nullopt: the parent's directory
  std::vector<int> pass_fds;             // ascending
  child_stream stdio[3];                 // stdin, stdout, stderr
  bool close_fds = true;
  bool start_new_session = false;
  bool restore_signals = true;
  sigset_t signal_mask;                  // the requesting thread's (set by spawn_async)
  spawn_result result;                   // filled on the worker
  bool taken = false;                    // the requester took result (its descriptors, its child)
  std::uint64_t id = 0;                  // the requester's tag
  void* owner = nullptr;                 // the requester (opaque to the core)

  spawn_job() = default;
  spawn_job(const spawn_job&) = delete;
  spawn_job& operator=(const spawn_job&) = delete;
  ~spawn_job() {
    if (!taken) abandon_child(result);
  }
  // Runs the spawn with the job's own strings (any thread).
  void run() noexcept;
};

// Starts job's child on the native runtime, so the loop's thread does not wait for the
// child's exec (posix_spawn returns only then), and delivers callback{ops, job} to the
// mailbox; the callback owns the job. The child's signal mask is the calling thread's, as
// Popen's child inherits its caller's (the runtime's threads block every signal). If the
// mailbox is closed by then, the job is deleted there, abandoning its child. May throw
// std::bad_alloc, leaving the job with the caller.
void spawn_async(std::shared_ptr<loop_mailbox> mailbox, std::unique_ptr<spawn_job>& job,
                 const callback_ops* ops);

}  // namespace pyloop
