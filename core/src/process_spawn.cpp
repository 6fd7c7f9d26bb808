// core/src/process_spawn.cpp — posix_spawn with file actions for what subprocess.Popen's child does.
//
// glibc's posix_spawn clones with CLONE_VFORK: the parent resumes once the child has exec'd
// or failed, and gets the failure's errno back, so no error pipe is needed. The file actions
// reproduce Popen's child (Modules/_posixsubprocess.c) step for step: the standard streams
// dup'd into 0, 1, 2 (a dup onto itself clears close-on-exec, as Popen makes such a stream
// inheritable), then the directory change, then every descriptor above 2 closed except
// pass_fds (which are made inheritable); the attributes reset SIGPIPE and SIGXFSZ (Python
// ignores them) and start a session. The signal mask is the caller's, as with Popen.
#include "pyloop/process_spawn.hpp"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sys/wait.h>

#include <cerrno>
#include <utility>

#include "pyloop/native_runtime.hpp"

extern char** environ;

#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 34))
#define PYLOOP_FAST_SPAWN 1
#else
#define PYLOOP_FAST_SPAWN 0
#endif

namespace pyloop {

bool fast_spawn_available() noexcept { return PYLOOP_FAST_SPAWN != 0; }

#if PYLOOP_FAST_SPAWN
namespace {

// Descriptors the parent made for one spawn: its pipe ends (kept on success) and the child's
// ends and temporary copies (always closed).
struct spawn_fds {
  int parent[3] = {-1, -1, -1};  // stays with the caller on success
  int child[3] = {-1, -1, -1};   // the descriptor dup'd into 0, 1, 2 (not owned unless temp)
  bool temporary[3] = {false, false, false};  // child[i] was made here and is closed after

  void close_child_side() noexcept {
    for (int i = 0; i < 3; ++i) {
      if (temporary[i] && child[i] >= 0) ::close(child[i]);
      child[i] = -1;
      temporary[i] = false;
    }
  }
  void close_parent_side() noexcept {
    for (int& fd : parent) {
      if (fd >= 0) ::close(fd);
      fd = -1;
    }
  }
};

// Makes the descriptors the file actions need. Returns 0 or the errno.
int prepare_streams(const spawn_request& r, spawn_fds& fds) noexcept {
  for (int i = 0; i < 3; ++i) {
    const child_stream& s = r.stdio[i];
    if (s.how == child_stream::kind::pipe) {
      int ends[2];
      if (::pipe2(ends, O_CLOEXEC) != 0) return errno;
      // stdin: the child reads ends[0]; stdout and stderr: the child writes ends[1].
      fds.parent[i] = i == 0 ? ends[1] : ends[0];
      fds.child[i] = i == 0 ? ends[0] : ends[1];
      fds.temporary[i] = true;
    } else if (s.how == child_stream::kind::descriptor) {
      fds.child[i] = s.fd;
    } else {
      continue;
    }
    if (fds.child[i] < 3 && fds.child[i] != i) {
      // A standard descriptor given to another stream would be overwritten by the dup of
      // an earlier stream: give the child a copy above 2 instead, as Popen's child does.
      const int copy = ::fcntl(fds.child[i], F_DUPFD_CLOEXEC, 3);
      if (copy < 0) return errno;
      if (fds.temporary[i]) ::close(fds.child[i]);
      fds.child[i] = copy;
      fds.temporary[i] = true;
    }
  }
  return 0;
}

int add_actions(const spawn_request& r, const spawn_fds& fds, posix_spawn_file_actions_t* fa) noexcept {
  int err = 0;
  for (int i = 0; i < 3 && err == 0; ++i) {
    switch (r.stdio[i].how) {
      case child_stream::kind::inherit:
        break;
      case child_stream::kind::devnull:
        err = ::posix_spawn_file_actions_addopen(fa, i, "/dev/null", O_RDWR, 0);
        break;
      case child_stream::kind::same_as_stdout:
        err = ::posix_spawn_file_actions_adddup2(fa, 1, i);
        break;
      case child_stream::kind::pipe:
      case child_stream::kind::descriptor:
        err = ::posix_spawn_file_actions_adddup2(fa, fds.child[i], i);
        break;
    }
  }
  if (err == 0 && r.cwd != nullptr) err = ::posix_spawn_file_actions_addchdir_np(fa, r.cwd);
  if (err != 0 || !r.close_fds) {
    // Without close_fds the parent's inheritable descriptors stay, and pass_fds with them
    // (Popen forces close_fds on when pass_fds is given; the caller does the same).
    return err;
  }
  int next = 3;  // the lowest descriptor not dealt with yet
  for (std::size_t k = 0; k < r.pass_fd_count && err == 0; ++k) {
    const int keep = r.pass_fds[k];
    if (keep < next) continue;  // a duplicate, or a standard descriptor
    // Close every descriptor below the kept one, open or not (glibc ignores EBADF for an
    // in-range close action), then keep it, inheritable. Not asking which are open now
    // matters: another thread may open a descriptor between this list and the spawn.
    for (int fd = next; fd < keep && err == 0; ++fd) {
      err = ::posix_spawn_file_actions_addclose(fa, fd);
    }
    if (err == 0) err = ::posix_spawn_file_actions_adddup2(fa, keep, keep);
    next = keep + 1;
  }
  if (err == 0) err = ::posix_spawn_file_actions_addclosefrom_np(fa, next);
  return err;
}

int set_attributes(const spawn_request& r, posix_spawnattr_t* attr) noexcept {
  short flags = 0;
  if (r.restore_signals) {
    sigset_t defaults;
    sigemptyset(&defaults);
    sigaddset(&defaults, SIGPIPE);
    sigaddset(&defaults, SIGXFSZ);
    if (int err = ::posix_spawnattr_setsigdefault(attr, &defaults)) return err;
    flags |= POSIX_SPAWN_SETSIGDEF;
  }
  if (r.start_new_session) flags |= POSIX_SPAWN_SETSID;
  if (r.signal_mask != nullptr) {
    if (int err = ::posix_spawnattr_setsigmask(attr, r.signal_mask)) return err;
    flags |= POSIX_SPAWN_SETSIGMASK;
  }
  return ::posix_spawnattr_setflags(attr, flags);
}

// Why changing into cwd would fail, or 0 (asked only after a spawn failed).
int directory_error(const char* cwd) noexcept {
  struct stat st;
  if (::stat(cwd, &st) != 0) return errno;
  if (!S_ISDIR(st.st_mode)) return ENOTDIR;
  if (::access(cwd, X_OK) != 0) return errno;
  return 0;
}

bool missing(int err) noexcept { return err == ENOENT || err == ENOTDIR; }

// Tries each executable as Popen's child does; returns 0 or the errno to report.
int spawn_first(const spawn_request& r, const posix_spawn_file_actions_t* fa,
                const posix_spawnattr_t* attr, pid_t& pid) noexcept {
  char* const* argv = const_cast<char* const*>(r.argv);
  char* const* envp = r.envp != nullptr ? const_cast<char* const*>(r.envp) : environ;
  int saved = 0;      // the first error other than "not there"
  int last = ENOENT;  // the last error of any kind
  for (const char* const* path = r.executables; *path != nullptr; ++path) {
    // A candidate that does not exist costs a stat, not a clone. Relative paths are taken
    // after the child's chdir, so only the child can tell when cwd is given. The last
    // candidate goes straight to posix_spawn: its own error is the same, and the stat would
    // only add its cost to every start of an existing program (an absolute path, say).
    struct stat st;
    const bool last_candidate = path[1] == nullptr;
    if (!last_candidate && (r.cwd == nullptr || (*path)[0] == '/') && ::stat(*path, &st) != 0 &&
        missing(errno)) {
      last = errno;
      continue;
    }
    const int err = ::posix_spawn(&pid, *path, fa, attr, argv, envp);
    if (err == 0) return 0;
    last = err;
    if (!missing(err) && saved == 0) saved = err;
  }
  return saved != 0 ? saved : last;
}

}  // namespace

spawn_result spawn_process(const spawn_request& r) noexcept {
  spawn_result result;
  spawn_fds fds;
  posix_spawn_file_actions_t fa;
  posix_spawnattr_t attr;
  int err = prepare_streams(r, fds);
  bool have_fa = false;
  bool have_attr = false;
  if (err == 0) {
    err = ::posix_spawn_file_actions_init(&fa);
    have_fa = err == 0;
  }
  if (err == 0) {
    err = ::posix_spawnattr_init(&attr);
    have_attr = err == 0;
  }
  if (err == 0) err = add_actions(r, fds, &fa);
  if (err == 0) err = set_attributes(r, &attr);
  if (err == 0) {
    err = spawn_first(r, &fa, &attr, result.pid);
    if (err != 0 && r.cwd != nullptr) {
      if (const int dir_err = directory_error(r.cwd)) {
        err = dir_err;
        result.in_chdir = true;
      }
    }
  }
  if (have_attr) ::posix_spawnattr_destroy(&attr);
  if (have_fa) ::posix_spawn_file_actions_destroy(&fa);
  fds.close_child_side();
  if (err != 0) {
    fds.close_parent_side();
    result.pid = -1;
    result.error = err;
    return result;
  }
  for (int i = 0; i < 3; ++i) result.parent_fds[i] = fds.parent[i];
  return result;
}

#else

spawn_result spawn_process(const spawn_request&) noexcept {
  spawn_result result;
  result.error = ENOSYS;
  return result;
}

#endif


namespace {

void reap_blocking(pid_t pid) noexcept {
  int status;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
}

std::vector<const char*> c_strings(const std::vector<std::string>& strings) {
  std::vector<const char*> out;
  out.reserve(strings.size() + 1);
  for (const std::string& s : strings) out.push_back(s.c_str());
  out.push_back(nullptr);
  return out;
}

}  // namespace

void abandon_child(spawn_result& started) noexcept {
  for (int& fd : started.parent_fds) {
    if (fd >= 0) ::close(fd);
    fd = -1;
  }
  const pid_t pid = started.pid;
  started.pid = -1;
  if (pid <= 0) return;
  ::kill(pid, SIGKILL);
  try {
    run_on_native_runtime([pid] { reap_blocking(pid); });
  } catch (...) {
    reap_blocking(pid);  // no memory for the hand-over: a killed child ends promptly
  }
}

void spawn_job::run() noexcept {
  try {
    std::vector<const char*> argv_ptrs = c_strings(argv);
    std::vector<const char*> exec_ptrs = c_strings(executables);
    std::vector<const char*> env_ptrs;
    spawn_request request;
    request.argv = argv_ptrs.data();
    request.executables = exec_ptrs.data();
    if (env) {
      env_ptrs = c_strings(*env);
      request.envp = env_ptrs.data();
    }
    request.cwd = cwd ? cwd->c_str() : nullptr;
    for (int i = 0; i < 3; ++i) request.stdio[i] = stdio[i];
    request.pass_fds = pass_fds.data();
    request.pass_fd_count = pass_fds.size();
    request.close_fds = close_fds;
    request.start_new_session = start_new_session;
    request.restore_signals = restore_signals;
    request.signal_mask = &signal_mask;
    result = spawn_process(request);
  } catch (...) {
    result = spawn_result{};
    result.error = ENOMEM;
  }
}

void spawn_async(std::shared_ptr<loop_mailbox> mailbox, std::unique_ptr<spawn_job>& job,
                 const callback_ops* ops) {
  ::pthread_sigmask(SIG_BLOCK, nullptr, &job->signal_mask);
  if (!job->env) {
    // The environment as it is now, read on the requesting thread: another thread may change
    // it (os.environ's putenv) while the worker spawns, and environ is not safe to read then.
    std::vector<std::string> current;
    for (char** entry = environ; *entry != nullptr; ++entry) current.emplace_back(*entry);
    job->env = std::move(current);
  }
  spawn_job* raw = job.get();
  run_on_native_runtime([mailbox = std::move(mailbox), raw, ops] {
    std::unique_ptr<spawn_job> owned(raw);
    owned->run();
    if (mailbox->deliver(callback{ops, owned.get()})) owned.release();
    // Otherwise the loop is gone: the job is deleted here, abandoning its child.
  });
  (void)job.release();  // the worker owns it now
}

}  // namespace pyloop
