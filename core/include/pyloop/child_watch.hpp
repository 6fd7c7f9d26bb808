// core/include/pyloop/child_watch.hpp — a child process's exit, noticed through the loop's readiness set.
#pragma once

#include <sys/types.h>

#include <system_error>

#include "pyloop/callback.hpp"

namespace pyloop {

class loop_driver;

// What a child watch tells its owner (the subprocess transport's side in the bindings).
// Every function gets the owner pointer given to the watch.
struct child_watch_events {
  // The child ended and was reaped: `returncode` as subprocess.Popen reports it (the exit
  // status, or minus the number of the signal that killed it). `error` is ECHILD, and
  // returncode meaningless, when someone else reaped the child first (a Popen.poll() call,
  // another process-wide waiter). Returns false when the owner failed and left an error pending.
  bool (*exited)(void* owner, pid_t pid, int returncode, int error) noexcept;
  // exited() returned false inside the readiness callback: the owner reports the error and
  // says whether to abort the iteration.
  callback_status (*callback_failed)(void* owner) noexcept;
  // Keep the owner alive while the watch is installed or its callback queued.
  void (*retain)(void* owner) noexcept;
  void (*release)(void* owner) noexcept;
};

// Waits for one child process to end, without polling and without a thread: a descriptor
// that becomes readable when the child ends (Linux: pidfd_open; macOS and the BSDs: a kqueue
// of its own holding an EVFILT_PROC NOTE_EXIT event) sits in the loop's readiness set; when it
// is readable the child is reaped (waitpid, WNOHANG) and the owner told, once. The watch then
// removes itself and closes its descriptor. A loop closed while the child runs drops the
// watch: a thread then waits for the child and reaps it (the owner is not told), as asyncio's
// threaded child watcher outlives a closed loop, so no child is left a zombie.
// Thread safety: the loop's thread only.
class child_watch {
 public:
  child_watch(loop_driver& loop, pid_t pid, const child_watch_events& events, void* owner) noexcept
      : loop_(loop), events_(events), owner_(owner), pid_(pid) {}
  child_watch(const child_watch&) = delete;
  child_watch& operator=(const child_watch&) = delete;
  ~child_watch() { stop(); }

  // Opens the exit descriptor and installs the readiness callback. Errors: ESRCH when pid is
  // no child of ours (or was reaped already), ENOSYS where the kernel has no pidfd (Linux
  // before 5.3: the caller waits some other way), EMFILE, EBADF once the loop is closed.
  // Nothing stays open or installed on failure.
  std::error_code start() noexcept;
  // Removes the callback and closes the descriptor; the child is left unreaped.
  void stop() noexcept;
  bool watching() const noexcept { return installed_; }
  pid_t pid() const noexcept { return pid_; }
  void* owner() const noexcept { return owner_; }

  // The readiness callback's table, and its payload's watch (GC traversal).
  static const callback_ops watch_ops;
  static child_watch* from_watch(void* payload) noexcept { return static_cast<child_watch*>(payload); }

 private:
  static callback_status run_watch(void* payload) noexcept;
  static void drop_watch(void* payload) noexcept;
  static void retain_watch(void* payload) noexcept;
  void close_handle() noexcept;

  loop_driver& loop_;                  // whose readiness set the exit descriptor is in
  const child_watch_events& events_;   // how to reach the owner
  void* owner_;                        // the transport side (opaque)
  pid_t pid_;                          // the child
  int handle_ = -1;                    // the exit descriptor (owned), -1 when none
  bool installed_ = false;             // the readiness callback is installed
};

// Reaps pid if it has ended, without blocking (waitpid with WNOHANG, retried on EINTR).
// Returns true with returncode set when it was reaped; false with error 0 while it runs, or
// with the errno (ECHILD: not our child, or reaped by someone else).
bool reap_child(pid_t pid, int& returncode, int& error) noexcept;

// A child's wait status as subprocess.Popen's returncode (os.waitstatus_to_exitcode).
int returncode_of_status(int status) noexcept;

}  // namespace pyloop
