// core/src/child_watch.cpp — a child's exit descriptor in the readiness set, reaped when readable.
//
// The platform choice for this concept is made here alone: Linux gives a process descriptor
// (pidfd_open, 5.3+) that polls readable once the process has ended; macOS and the BSDs give
// kqueue's EVFILT_PROC, and a kqueue of one event is itself a descriptor that polls readable
// when the event fires, so both end up as one descriptor in the loop's readiness set.
#include "pyloop/child_watch.hpp"

#include <pthread.h>
#include <signal.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <thread>

#include "pyloop/loop_driver.hpp"

#if defined(__linux__)
#include <sys/syscall.h>
#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434  // the same number on every Linux architecture
#endif
#else
#include <sys/event.h>
#endif

namespace pyloop {
namespace {

// A descriptor that polls readable once pid has ended (close-on-exec), or -1 with errno.
int open_exit_descriptor(pid_t pid) noexcept {
#if defined(__linux__)
  return static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));  // close-on-exec by definition
#else
  int kq = ::kqueue();  // kqueues are not inherited by children
  if (kq < 0) return -1;
  struct kevent change;
  EV_SET(&change, pid, EVFILT_PROC, EV_ADD | EV_ONESHOT, NOTE_EXIT, 0, nullptr);
  if (::kevent(kq, &change, 1, nullptr, 0, nullptr) == 0) return kq;
  if (errno == ESRCH) {
    // The child has ended already (a zombie cannot be watched): make the kqueue readable at
    // once with a user event, and the reap finds the status (or that it is not our child).
    EV_SET(&change, 1, EVFILT_USER, EV_ADD | EV_ONESHOT, NOTE_TRIGGER, 0, nullptr);
    if (::kevent(kq, &change, 1, nullptr, 0, nullptr) == 0) return kq;
  }
  const int saved = errno;
  ::close(kq);
  errno = saved;
  return -1;
#endif
}

// The loop let go of a watch whose child still runs (it was closed): a thread of its own waits
// for the child and reaps it, as asyncio's ThreadedChildWatcher keeps waiting for the children
// of a closed loop, so none is left a zombie. Not the native runtime's pool: the child may run
// for as long as it likes. The thread blocks every signal (they are the main thread's to take).
void reap_in_background(pid_t pid) noexcept {
  sigset_t all;
  sigset_t before;
  sigfillset(&all);
  const bool masked = ::pthread_sigmask(SIG_SETMASK, &all, &before) == 0;
  try {
    std::thread([pid] {
      int status;
      while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
      }
    }).detach();
  } catch (...) {
    // No thread to be had: the child stays unreaped until someone waits for it (Popen.poll).
  }
  if (masked) ::pthread_sigmask(SIG_SETMASK, &before, nullptr);
}

}  // namespace

const callback_ops child_watch::watch_ops{run_watch, drop_watch, nullptr, nullptr, retain_watch};

int returncode_of_status(int status) noexcept {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return -WTERMSIG(status);
  return status;  // not an end (stopped, continued): never asked for without WUNTRACED
}

bool reap_child(pid_t pid, int& returncode, int& error) noexcept {
  int status = 0;
  pid_t got;
  do {
    got = ::waitpid(pid, &status, WNOHANG);
  } while (got < 0 && errno == EINTR);
  if (got < 0) {
    error = errno;
    return false;
  }
  error = 0;
  if (got == 0) return false;  // still running
  returncode = returncode_of_status(status);
  return true;
}

std::error_code child_watch::start() noexcept {
  if (installed_) return {};
  if (loop_.closed()) return {EBADF, std::generic_category()};
  if (handle_ < 0) {
    handle_ = open_exit_descriptor(pid_);
    if (handle_ < 0) return {errno, std::generic_category()};
  }
  events_.retain(owner_);  // the registry's reference
  callback replaced;
  if (std::error_code ec =
          loop_.watch(handle_, io_watch::direction::read, callback{&watch_ops, this}, replaced)) {
    close_handle();
    events_.release(owner_);  // last: the owner may go with it
    return ec;
  }
  installed_ = true;
  // The descriptor is new and ours: nothing else can have been installed on it.
  if (replaced.ops != nullptr) replaced.discard();
  return {};
}

void child_watch::stop() noexcept {
  if (installed_) {
    installed_ = false;  // first: drop_watch tells this removal from the loop's close by it
    callback removed = loop_.unwatch(handle_, io_watch::direction::read);
    if (removed.ops != nullptr) removed.discard();  // drop_watch: owner released
  }
  close_handle();
}

void child_watch::close_handle() noexcept {
  if (handle_ >= 0) ::close(handle_);
  handle_ = -1;
}

callback_status child_watch::run_watch(void* payload) noexcept {
  child_watch* w = from_watch(payload);
  const child_watch_events& events = w->events_;
  void* owner = w->owner_;
  callback_status status = callback_status::done;
  // Stopped after this dispatch was queued: nothing to report.
  if (w->installed_) {
    int returncode = 0;
    int error = 0;
    if (reap_child(w->pid_, returncode, error) || error != 0) {
      const pid_t pid = w->pid_;
      w->stop();  // once: the dispatch's reference keeps the owner (and w) alive until below
      if (!events.exited(owner, pid, returncode, error)) status = events.callback_failed(owner);
    }
  }
  events.release(owner);  // the dispatch's reference; w may be gone after this
  return status;
}

void child_watch::drop_watch(void* payload) noexcept {
  child_watch* w = from_watch(payload);
  if (w->installed_) {
    // Dropped while installed: the loop was closed with the child unreaped (stop() clears the
    // flag before it removes the callback; a queued dispatch's copy is dropped after the
    // registry's, or before it with the flag still set, and hands the child over once).
    w->installed_ = false;
    reap_in_background(w->pid_);
  }
  w->events_.release(w->owner_);
}

void child_watch::retain_watch(void* payload) noexcept {
  child_watch* w = from_watch(payload);
  w->events_.retain(w->owner_);
}

}  // namespace pyloop
