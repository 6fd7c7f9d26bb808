// tests/cpp/process_spawn_test.cpp — posix_spawn with Popen's streams, search, cwd and descriptor rules.
#include "pyloop/process_spawn.hpp"

#include <gtest/gtest.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <string>
#include <thread>

#include "pyloop/loop_driver.hpp"

namespace pyloop {
namespace {

std::string read_all(int fd) {
  std::string got;
  char buffer[4096];
  ssize_t n;
  while ((n = ::read(fd, buffer, sizeof buffer)) > 0) got.append(buffer, n);
  return got;
}

int wait_for(pid_t pid) {
  int status = 0;
  EXPECT_EQ(::waitpid(pid, &status, 0), pid);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -WTERMSIG(status);
}

// Runs /bin/sh -c script with stdout (and stderr as given) piped; returns the output.
struct shell_run {
  const char* argv[4] = {"/bin/sh", "-c", nullptr, nullptr};
  const char* executables[2] = {"/bin/sh", nullptr};
  spawn_request request;
  explicit shell_run(const char* script) {
    argv[2] = script;
    request.argv = argv;
    request.executables = executables;
    request.stdio[1].how = child_stream::kind::pipe;
  }
  std::string output(int* returncode = nullptr) {
    spawn_result r = spawn_process(request);
    EXPECT_EQ(r.error, 0);
    if (r.error != 0) return {};
    std::string out = read_all(r.parent_fds[1]);
    for (int fd : r.parent_fds) {
      if (fd >= 0) ::close(fd);
    }
    const int rc = wait_for(r.pid);
    if (returncode != nullptr) *returncode = rc;
    return out;
  }
};

TEST(ProcessSpawn, PipesArgvAndExitStatus) {
  ASSERT_TRUE(fast_spawn_available());
  shell_run run("echo out; echo err >&2; exit 4");
  run.request.stdio[2].how = child_stream::kind::pipe;
  spawn_result r = spawn_process(run.request);
  ASSERT_EQ(r.error, 0);
  EXPECT_EQ(r.parent_fds[0], -1);
  EXPECT_EQ(read_all(r.parent_fds[1]), "out\n");
  EXPECT_EQ(read_all(r.parent_fds[2]), "err\n");
  EXPECT_TRUE(::fcntl(r.parent_fds[1], F_GETFD) & FD_CLOEXEC);
  ::close(r.parent_fds[1]);
  ::close(r.parent_fds[2]);
  EXPECT_EQ(wait_for(r.pid), 4);
}

TEST(ProcessSpawn, StdinPipeAndStderrToStdout) {
  shell_run run("cat; echo err >&2");
  run.request.stdio[0].how = child_stream::kind::pipe;
  run.request.stdio[2].how = child_stream::kind::same_as_stdout;
  spawn_result r = spawn_process(run.request);
  ASSERT_EQ(r.error, 0);
  ASSERT_EQ(::write(r.parent_fds[0], "in\n", 3), 3);
  ::close(r.parent_fds[0]);
  EXPECT_EQ(read_all(r.parent_fds[1]), "in\nerr\n");
  ::close(r.parent_fds[1]);
  EXPECT_EQ(wait_for(r.pid), 0);
}

TEST(ProcessSpawn, Devnull) {
  shell_run run("cat; echo done");
  run.request.stdio[0].how = child_stream::kind::devnull;
  EXPECT_EQ(run.output(), "done\n");
}

TEST(ProcessSpawn, SearchSkipsMissingCandidatesAndReportsTheRelevantError) {
  const char* argv[] = {"x", nullptr};
  spawn_request request;
  request.argv = argv;
  const char* missing[] = {"/nonexistent/x", "/etc/passwd/x", nullptr};
  request.executables = missing;
  EXPECT_EQ(spawn_process(request).error, ENOTDIR);  // the last candidate's
  const char* not_executable[] = {"/nonexistent/x", "/etc/passwd", "/nonexistent/y", nullptr};
  request.executables = not_executable;
  EXPECT_EQ(spawn_process(request).error, EACCES);  // the first error other than "missing"
  const char* found[] = {"/nonexistent/true", "/etc/passwd", "/bin/true", nullptr};
  request.executables = found;
  spawn_result r = spawn_process(request);
  ASSERT_EQ(r.error, 0);
  EXPECT_EQ(wait_for(r.pid), 0);
}

TEST(ProcessSpawn, CwdAndItsErrors) {
  shell_run run("pwd");
  run.request.cwd = "/tmp";
  EXPECT_EQ(run.output(), "/tmp\n");
  run.request.cwd = "/nonexistent-dir";
  spawn_result r = spawn_process(run.request);
  EXPECT_EQ(r.error, ENOENT);
  EXPECT_TRUE(r.in_chdir);
  EXPECT_EQ(r.pid, -1);
  for (int fd : r.parent_fds) EXPECT_EQ(fd, -1);
}

TEST(ProcessSpawn, Environment) {
  shell_run run("echo \"$ONLY\"; env | wc -l");
  const char* envp[] = {"ONLY=yes", nullptr};
  run.request.envp = envp;
  const std::string out = run.output();
  EXPECT_EQ(out.substr(0, 4), "yes\n");
}

TEST(ProcessSpawn, CloseFdsKeepsOnlyPassFds) {
  int a[2], b[2];
  ASSERT_EQ(::pipe(a), 0);  // inheritable: only close_fds closes them
  ASSERT_EQ(::pipe2(b, O_CLOEXEC), 0);
  const std::string script = "for fd in " + std::to_string(a[0]) + " " + std::to_string(a[1]) +
                             " " + std::to_string(b[0]) + " " + std::to_string(b[1]) +
                             "; do if [ -e /proc/self/fd/$fd ]; then echo $fd; fi; done";
  shell_run run(script.c_str());
  int keep[] = {b[1]};
  run.request.pass_fds = keep;
  run.request.pass_fd_count = 1;
  EXPECT_EQ(run.output(), std::to_string(b[1]) + "\n");  // close-on-exec cleared for it
  run.request.close_fds = false;
  run.request.pass_fd_count = 0;
  EXPECT_EQ(run.output(), std::to_string(a[0]) + "\n" + std::to_string(a[1]) + "\n");
  for (int fd : {a[0], a[1], b[0], b[1]}) ::close(fd);
}

TEST(ProcessSpawn, NewSessionAndSignalDefaults) {
  shell_run run("echo $$; cut -d' ' -f6 /proc/$$/stat");
  run.request.start_new_session = true;
  const std::string out = run.output();
  const auto nl = out.find('\n');
  ASSERT_NE(nl, std::string::npos);
  EXPECT_EQ(out.substr(0, nl), out.substr(nl + 1, out.size() - nl - 2));  // sid == pid
  ::signal(SIGPIPE, SIG_IGN);
  shell_run sig("grep SigIgn /proc/self/status");
  const std::string restored = sig.output();
  sig.request.restore_signals = false;
  const std::string kept = sig.output();
  EXPECT_NE(restored, kept);  // SIGPIPE stays ignored only without restore_signals
  ::signal(SIGPIPE, SIG_DFL);
}

TEST(ProcessSpawn, StandardDescriptorsSwapped) {
  // stdout to the parent's descriptor 2 and stderr to its 1, as Popen(stdout=2, stderr=1).
  int p[2], q[2];
  ASSERT_EQ(::pipe(p), 0);
  ASSERT_EQ(::pipe(q), 0);
  const int saved1 = ::dup(1), saved2 = ::dup(2);
  ::dup2(p[1], 2);
  ::dup2(q[1], 1);
  shell_run run("echo to-stdout; echo to-stderr >&2");
  run.request.stdio[1] = {child_stream::kind::descriptor, 2};
  run.request.stdio[2] = {child_stream::kind::descriptor, 1};
  spawn_result r = spawn_process(run.request);
  ::dup2(saved1, 1);
  ::dup2(saved2, 2);
  ::close(p[1]);
  ::close(q[1]);
  ASSERT_EQ(r.error, 0);
  EXPECT_EQ(wait_for(r.pid), 0);
  EXPECT_EQ(read_all(p[0]), "to-stdout\n");
  EXPECT_EQ(read_all(q[0]), "to-stderr\n");
  for (int fd : {p[0], q[0], saved1, saved2}) ::close(fd);
}

// The completion of spawn_async: keeps the job for the test.
struct job_sink {
  static inline std::unique_ptr<spawn_job> last;
  static callback_status take(void* payload) noexcept {
    last.reset(static_cast<spawn_job*>(payload));
    return callback_status::done;
  }
  static void drop(void* payload) noexcept { delete static_cast<spawn_job*>(payload); }
  static constexpr callback_ops ops{take, drop, nullptr, nullptr, nullptr};
};

std::unique_ptr<spawn_job> shell_job(const char* script) {
  auto job = std::make_unique<spawn_job>();
  job->argv = {"/bin/sh", "-c", script};
  job->executables = {"/nonexistent/sh", "/bin/sh"};
  job->stdio[1].how = child_stream::kind::pipe;
  return job;
}

TEST(ProcessSpawn, AsyncSpawnCompletesIntoTheLoopWithTheCallersSignalMask) {
  loop_driver loop;
  sigset_t block, old;
  sigemptyset(&block);
  sigaddset(&block, SIGUSR1);
  ASSERT_EQ(::pthread_sigmask(SIG_BLOCK, &block, &old), 0);
  auto job = shell_job("");
  job->argv = {"grep", "SigBlk", "/proc/self/status"};  // no shell: dash resets its mask
  job->executables = {"/bin/grep", "/usr/bin/grep"};
  ::setenv("PYLOOP_SPAWN_TEST", "seen", 1);
  spawn_async(loop.mailbox(), job, &job_sink::ops);
  ::unsetenv("PYLOOP_SPAWN_TEST");  // the job took the environment when it was asked for
  ASSERT_EQ(::pthread_sigmask(SIG_SETMASK, &old, nullptr), 0);
  EXPECT_EQ(job, nullptr);
  for (int i = 0; i < 200 && !job_sink::last; ++i) loop.run_once();
  ASSERT_TRUE(job_sink::last);
  spawn_job& done = *job_sink::last;
  ASSERT_EQ(done.result.error, 0);
  ASSERT_TRUE(done.env.has_value());
  bool found = false;
  for (const std::string& e : *done.env) found = found || e == "PYLOOP_SPAWN_TEST=seen";
  EXPECT_TRUE(found);
  const std::string out = read_all(done.result.parent_fds[1]);
  EXPECT_EQ(out, "SigBlk:\t0000000000000200\n");  // SIGUSR1 (10): bit 9
  ::close(done.result.parent_fds[1]);
  EXPECT_EQ(wait_for(done.result.pid), 0);
  done.taken = true;
  job_sink::last.reset();
}

TEST(ProcessSpawn, AnUntakenJobKillsAndReapsItsChild) {
  auto job = shell_job("exec sleep 30");
  job->run();
  ASSERT_EQ(job->result.error, 0);
  const pid_t pid = job->result.pid;
  const int fd = job->result.parent_fds[1];
  job.reset();  // nobody took it
  EXPECT_EQ(::fcntl(fd, F_GETFD), -1);  // the pipe end is closed
  bool gone = false;
  for (int i = 0; i < 200 && !gone; ++i) {
    gone = ::kill(pid, 0) != 0 && errno == ESRCH;  // reaped on the runtime: no zombie left
    if (!gone) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_TRUE(gone);
}

TEST(ProcessSpawn, AClosedMailboxAbandonsTheChild) {
  auto job = shell_job("exec sleep 30");
  pid_t pid = -1;
  {
    loop_driver loop;
    spawn_async(loop.mailbox(), job, &job_sink::ops);
    loop.close();  // before or after the worker ran: either way nobody takes the child
  }
  // The job was deleted by the worker or by the loop's clear; its child is killed and reaped.
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  EXPECT_FALSE(job_sink::last);
  (void)pid;
  int status;
  EXPECT_EQ(::waitpid(-1, &status, WNOHANG), -1);
  EXPECT_EQ(errno, ECHILD);
}

}  // namespace
}  // namespace pyloop
