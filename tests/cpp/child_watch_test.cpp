// tests/cpp/child_watch_test.cpp — a child's exit reported once through the loop's readiness set.
#include "pyloop/child_watch.hpp"

#include <gtest/gtest.h>

#include <dirent.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <memory>
#include <vector>

#include "pyloop/loop_driver.hpp"
#include "pyloop/process_spawn.hpp"

namespace pyloop {
namespace {

// The owner side: records exits and counts references.
struct exit_log {
  int refs = 0;                  // references held by the watch and its dispatches
  std::vector<pid_t> pids;       // exited(): pid
  std::vector<int> returncodes;  // exited(): returncode
  std::vector<int> errors;       // exited(): error
  static exit_log& of(void* o) { return *static_cast<exit_log*>(o); }
};

const child_watch_events log_events{
    [](void* o, pid_t pid, int returncode, int error) noexcept {
      exit_log& log = exit_log::of(o);
      log.pids.push_back(pid);
      log.returncodes.push_back(returncode);
      log.errors.push_back(error);
      return true;
    },
    [](void*) noexcept { return callback_status::done; },
    [](void* o) noexcept { ++exit_log::of(o).refs; },
    [](void* o) noexcept { --exit_log::of(o).refs; },
};

// Starts /bin/sh -c script with inherited streams; returns the pid.
pid_t start_shell(const char* script) {
  const char* argv[] = {"/bin/sh", "-c", script, nullptr};
  const char* executables[] = {"/bin/sh", nullptr};
  spawn_request request;
  request.argv = argv;
  request.executables = executables;
  spawn_result started = spawn_process(request);
  EXPECT_EQ(started.error, 0);
  return started.pid;
}

std::size_t open_descriptors() {
  std::size_t count = 0;
  if (DIR* dir = ::opendir("/proc/self/fd")) {
    while (::readdir(dir) != nullptr) ++count;
    ::closedir(dir);
  }
  return count;
}

// Blocking iterations until the log has an exit (at most 200: each waits for I/O).
void run_until_exit(loop_driver& loop, const exit_log& log) {
  for (int i = 0; i < 200 && log.pids.empty(); ++i) loop.run_once();
}

TEST(ChildWatch, ReportsTheExitStatusOnceAndLetsGo) {
  ASSERT_TRUE(fast_spawn_available());
  loop_driver loop;
  exit_log log;
  const std::size_t before = open_descriptors();
  const pid_t pid = start_shell("exit 3");
  child_watch watch(loop, pid, log_events, &log);
  ASSERT_FALSE(watch.start());
  EXPECT_TRUE(watch.watching());
  EXPECT_EQ(log.refs, 1);
  run_until_exit(loop, log);
  ASSERT_EQ(log.pids.size(), 1u);
  EXPECT_EQ(log.pids[0], pid);
  EXPECT_EQ(log.returncodes[0], 3);
  EXPECT_EQ(log.errors[0], 0);
  EXPECT_FALSE(watch.watching());
  EXPECT_EQ(log.refs, 0);
  EXPECT_EQ(open_descriptors(), before);  // the exit descriptor is closed
  int status;
  EXPECT_EQ(::waitpid(pid, &status, WNOHANG), -1);  // reaped: no zombie
  EXPECT_EQ(errno, ECHILD);
}

TEST(ChildWatch, ASignalGivesMinusItsNumber) {
  loop_driver loop;
  exit_log log;
  const pid_t pid = start_shell("exec sleep 30");
  child_watch watch(loop, pid, log_events, &log);
  ASSERT_FALSE(watch.start());
  ASSERT_EQ(::kill(pid, SIGKILL), 0);
  run_until_exit(loop, log);
  ASSERT_EQ(log.returncodes.size(), 1u);
  EXPECT_EQ(log.returncodes[0], -SIGKILL);
}

TEST(ChildWatch, AChildThatEndedBeforeTheWatchIsStillReported) {
  loop_driver loop;
  exit_log log;
  const pid_t pid = start_shell("exit 7");
  ::usleep(100 * 1000);  // a zombie by now
  child_watch watch(loop, pid, log_events, &log);
  ASSERT_FALSE(watch.start());
  run_until_exit(loop, log);
  ASSERT_EQ(log.returncodes.size(), 1u);
  EXPECT_EQ(log.returncodes[0], 7);
}

TEST(ChildWatch, ReapedBySomeoneElseReportsEchild) {
  loop_driver loop;
  exit_log log;
  const pid_t pid = start_shell("exit 0");
  child_watch watch(loop, pid, log_events, &log);
  ASSERT_FALSE(watch.start());
  int status;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);  // another waiter takes the status
  run_until_exit(loop, log);
  ASSERT_EQ(log.errors.size(), 1u);
  EXPECT_EQ(log.errors[0], ECHILD);
  EXPECT_EQ(log.refs, 0);
}

TEST(ChildWatch, NoSuchChildIsRefusedAtStart) {
  loop_driver loop;
  exit_log log;
  const pid_t pid = start_shell("exit 0");
  int status;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  child_watch watch(loop, pid, log_events, &log);
  const std::error_code ec = watch.start();
  EXPECT_EQ(ec.value(), ESRCH);
  EXPECT_FALSE(watch.watching());
  EXPECT_EQ(log.refs, 0);
}

TEST(ChildWatch, StopAndLoopCloseReleaseTheOwnerAndTheDescriptor) {
  const std::size_t before = open_descriptors();
  exit_log log;
  const pid_t pid = start_shell("exec sleep 30");
  {
    loop_driver loop;
    auto watch = std::make_unique<child_watch>(loop, pid, log_events, &log);
    ASSERT_FALSE(watch->start());
    watch->stop();
    EXPECT_EQ(log.refs, 0);
    ASSERT_FALSE(watch->start());
    EXPECT_EQ(log.refs, 1);
    loop.close();  // the registry lets go of the watch
    EXPECT_EQ(log.refs, 0);
    EXPECT_FALSE(watch->watching());
    EXPECT_EQ(watch->start().value(), EBADF);
    watch.reset();
  }
  EXPECT_EQ(open_descriptors(), before);
  EXPECT_TRUE(log.pids.empty());
  // The loop closed with the child running: a thread waits for it, so it is no zombie once
  // it ends.
  ::kill(pid, SIGKILL);
  for (int i = 0; i < 500 && ::kill(pid, 0) == 0; ++i) ::usleep(10 * 1000);
  EXPECT_EQ(::kill(pid, 0), -1);  // reaped: not even a zombie is left
  int status;
  EXPECT_EQ(::waitpid(pid, &status, WNOHANG), -1);
  EXPECT_EQ(errno, ECHILD);
}

TEST(ChildWatch, StopLeavesTheChildToItsOwner) {
  exit_log log;
  const pid_t pid = start_shell("exec sleep 30");
  loop_driver loop;
  child_watch watch(loop, pid, log_events, &log);
  ASSERT_FALSE(watch.start());
  watch.stop();  // the owner's choice: nobody reaps the child behind its back
  loop.close();
  ASSERT_EQ(::kill(pid, SIGKILL), 0);
  int status;
  EXPECT_EQ(::waitpid(pid, &status, 0), pid);
}

TEST(ChildWatch, ManyChildrenAtOnce) {
  loop_driver loop;
  exit_log log;
  std::vector<std::unique_ptr<child_watch>> watches;
  for (int i = 0; i < 50; ++i) {
    watches.push_back(std::make_unique<child_watch>(loop, start_shell("exit 1"), log_events, &log));
    ASSERT_FALSE(watches.back()->start());
  }
  for (int i = 0; i < 500 && log.pids.size() < 50; ++i) loop.run_once();
  EXPECT_EQ(log.pids.size(), 50u);
  EXPECT_EQ(log.refs, 0);
  for (int rc : log.returncodes) EXPECT_EQ(rc, 1);
}

TEST(ChildWatch, ReturncodeOfStatus) {
  EXPECT_EQ(returncode_of_status(0), 0);
  EXPECT_EQ(returncode_of_status(5 << 8), 5);
  EXPECT_EQ(returncode_of_status(SIGTERM), -SIGTERM);
}

}  // namespace
}  // namespace pyloop
