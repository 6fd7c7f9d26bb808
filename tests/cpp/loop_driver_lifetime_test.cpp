// tests/cpp/loop_driver_lifetime_test.cpp — open_error(), close(), closed(), turn(), running().
#include "pyloop/loop_driver.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <memory>
#include <set>
#include <vector>

#include <dirent.h>
#include <fcntl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <asio/steady_timer.hpp>

#include "test_callbacks.hpp"

namespace pyloop {
namespace {

using dir = io_watch::direction;

// The process's open descriptors: the entries of /proc/self/fd, less the listing's own.
std::set<int> open_descriptors() {
  std::set<int> fds;
  DIR* listing = ::opendir("/proc/self/fd");
  if (listing == nullptr) {
    ADD_FAILURE() << "cannot list /proc/self/fd";
    return fds;
  }
  const int own = ::dirfd(listing);
  while (const dirent* entry = ::readdir(listing)) {
    if (entry->d_name[0] == '.') continue;
    const int fd = std::atoi(entry->d_name);
    if (fd != own) fds.insert(fd);
  }
  ::closedir(listing);
  return fds;
}

// The n-th lowest descriptor number not open now (0: the next one the kernel hands out).
int free_descriptor(const std::set<int>& open, int n) {
  for (int fd = 0;; ++fd) {
    if (open.count(fd) == 0 && n-- == 0) return fd;
  }
}

// Runs loop iterations until the Asio timer fires, so that the loop waits inside Asio: the
// context's reactor (its own epoll, eventfd, timerfd) and the set's descriptor in it exist.
void wait_inside_asio(loop_driver& loop) {
  asio::steady_timer timer(loop.io(), std::chrono::milliseconds(5));
  bool fired = false;
  timer.async_wait([&](const asio::error_code& ec) { fired = !ec; });
  const double start = loop_driver::now();
  while (!fired && loop_driver::now() - start < 10.0) loop.run_once();
  EXPECT_TRUE(fired);
}

// Restores the descriptor limit at the end of a scope, whatever the test did.
struct descriptor_limit_guard {
  rlimit saved{};
  descriptor_limit_guard() { EXPECT_EQ(::getrlimit(RLIMIT_NOFILE, &saved), 0); }
  ~descriptor_limit_guard() { restore(); }
  void lower_to(rlim_t limit) {
    rlimit lowered = saved;
    lowered.rlim_cur = limit;
    ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &lowered), 0);
  }
  void restore() { EXPECT_EQ(::setrlimit(RLIMIT_NOFILE, &saved), 0); }
};

TEST(LoopDriverLifetime, CloseReleasesEveryDescriptor) {
  const std::set<int> before = open_descriptors();
  {
    loop_driver plain;
    loop_driver busy;
    EXPECT_FALSE(plain.open_error());
    EXPECT_FALSE(busy.open_error());
    std::error_code ec;
    EXPECT_GE(busy.interrupt_fd(ec), 0);
    EXPECT_FALSE(ec);
    wait_inside_asio(busy);
    // Two readiness sets (epoll + eventfd each), the interrupt pipe and Asio's reactor.
    EXPECT_GE(open_descriptors().size(), before.size() + 6);
    plain.close();
    busy.close();
    EXPECT_TRUE(plain.closed());
    EXPECT_TRUE(busy.closed());
    EXPECT_EQ(open_descriptors(), before);
  }
  EXPECT_EQ(open_descriptors(), before);
}

TEST(LoopDriverLifetime, DestroyingAnOpenDriverReleasesEveryDescriptor) {
  const std::set<int> before = open_descriptors();
  {
    loop_driver loop;
    std::error_code ec;
    EXPECT_GE(loop.interrupt_fd(ec), 0);
    wait_inside_asio(loop);
    EXPECT_GT(open_descriptors().size(), before.size());
  }
  EXPECT_EQ(open_descriptors(), before);
}

TEST(LoopDriverLifetime, CloseIsIdempotentAndNeverClosesAnotherOwnersDescriptor) {
  recorder rec;
  auto loop = std::make_unique<loop_driver>();
  std::error_code ec;
  ASSERT_GE(loop->interrupt_fd(ec), 0);
  loop->call_soon(rec.make(1));
  loop->call_at(loop_driver::now() + 3600, rec.make(2));
  loop->call_soon_threadsafe(rec.make(3));
  const std::set<int> open_with_loop = open_descriptors();
  loop->close();
  EXPECT_EQ(rec.live, 0);  // everything queued was discarded, nothing ran
  EXPECT_TRUE(rec.ran.empty());
  // New descriptors take the numbers close() freed: a second close must not touch them.
  int fds[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM, 0, fds), 0);
  ASSERT_EQ(open_with_loop.count(fds[0]), 1u) << "the new pair did not reuse a number of the loop";
  loop->close();
  EXPECT_TRUE(loop->closed());
  loop.reset();
  EXPECT_GE(::fcntl(fds[0], F_GETFD), 0);
  EXPECT_GE(::fcntl(fds[1], F_GETFD), 0);
  ::close(fds[0]);
  ::close(fds[1]);
}

TEST(LoopDriverLifetime, ClosedDriverRefusesWatchAndInterruptFdWithEbadf) {
  recorder rec;
  loop_driver loop;
  std::error_code ec;
  const int interrupt_write_fd = loop.interrupt_fd(ec);
  ASSERT_GE(interrupt_write_fd, 0);
  int fds[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, fds), 0);
  loop.close();
  EXPECT_EQ(::fcntl(interrupt_write_fd, F_GETFD), -1);  // the pipe went with close()

  callback cb = rec.make(1);
  callback replaced{&recorder::ops, nullptr};  // must be overwritten with "none"
  EXPECT_EQ(loop.watch(fds[0], dir::read, cb, replaced).value(), EBADF);
  EXPECT_EQ(replaced.ops, nullptr);
  EXPECT_FALSE(loop.watching(fds[0], dir::read));
  EXPECT_EQ(rec.live, 1);  // not taken: still the caller's
  cb.discard();

  ec.clear();
  EXPECT_EQ(loop.interrupt_fd(ec), -1);
  EXPECT_EQ(ec.value(), EBADF);
  ::close(fds[0]);
  ::close(fds[1]);
  EXPECT_EQ(rec.live, 0);
}

// Out of descriptors: with none left, the readiness set's epoll_create1 fails; with exactly
// one left, its eventfd fails and the epoll descriptor already made must be closed again.
TEST(LoopDriverLifetime, OpenErrorReportsEmfileAndTheDriverHoldsNoDescriptor) {
  // UBSan's vptr check (PYLOOP_SANITIZE) reads an object it has not seen yet through a pipe
  // (sanitizer_common's IsAccessibleMemoryRange), which cannot be made with no descriptor
  // left: it would report the driver's shared_ptr control block as invalid. A driver made
  // first puts those types in its cache.
  { loop_driver warm_up; }
  const std::set<int> before = open_descriptors();
  for (int left : {0, 1}) {
    SCOPED_TRACE(left == 0 ? "no descriptor left" : "one descriptor left");
    descriptor_limit_guard limit;
    limit.lower_to(static_cast<rlim_t>(free_descriptor(before, left)));
    auto loop = std::make_unique<loop_driver>();
    limit.restore();  // listing /proc/self/fd takes a descriptor
    EXPECT_EQ(loop->open_error().value(), EMFILE);
    EXPECT_TRUE(loop->closed());
    EXPECT_EQ(open_descriptors(), before);
    recorder rec;
    callback cb = rec.make(1);
    callback replaced;
    EXPECT_EQ(loop->watch(0, dir::read, cb, replaced).value(), EBADF);
    cb.discard();
    std::error_code ec;
    EXPECT_EQ(loop->interrupt_fd(ec), -1);
    EXPECT_EQ(ec.value(), EBADF);
    loop.reset();
    EXPECT_EQ(open_descriptors(), before);
  }
}

// -- turn() and running() -----------------------------------------------------------------

TEST(LoopDriverLifetime, TurnAdvancesOncePerRunOnceAbortedOrNot) {
  recorder rec;
  loop_driver loop;
  std::vector<std::uint64_t> turn_inside;
  rec.on_run = [&](int) { turn_inside.push_back(loop.turn()); };
  EXPECT_EQ(loop.turn(), 0u);
  loop.call_soon(rec.make(1));
  loop.call_soon(rec.make(2));
  loop.run_once();
  EXPECT_EQ(loop.turn(), 1u);
  rec.abort_on = {3};
  loop.call_soon(rec.make(3));
  EXPECT_EQ(loop.run_once(), run_status::aborted);
  EXPECT_EQ(loop.turn(), 2u);
  loop.call_at(loop_driver::now() - 1, rec.make(4));  // a due timer, nothing else ready
  loop.run_once();
  EXPECT_EQ(loop.turn(), 3u);
  // Callbacks of one turn see the count of turns ended before it.
  EXPECT_EQ(turn_inside, (std::vector<std::uint64_t>{0, 0, 1, 2}));
}

TEST(LoopDriverLifetime, RunningIsTrueOnlyInsideRunOnce) {
  recorder rec;
  loop_driver loop;
  std::vector<bool> running_inside;
  rec.on_run = [&](int) { running_inside.push_back(loop.running()); };
  struct end_of_turn_probe {
    loop_driver* loop;     // the loop observed
    bool running = false;  // its running() when the hook last ran
  } probe{&loop};
  loop_hooks hooks;
  hooks.data = &probe;
  hooks.end_of_turn = [](void* d) noexcept {
    auto* p = static_cast<end_of_turn_probe*>(d);
    p->running = p->loop->running();
    return true;
  };
  loop.set_hooks(hooks);
  EXPECT_FALSE(loop.running());
  loop.call_soon(rec.make(1));
  loop.run_once();
  EXPECT_FALSE(loop.running());
  EXPECT_TRUE(probe.running);
  rec.abort_on = {2};
  loop.call_soon(rec.make(2));
  EXPECT_EQ(loop.run_once(), run_status::aborted);
  EXPECT_FALSE(loop.running());  // also after an aborted iteration
  rec.on_run = [&](int id) {
    running_inside.push_back(loop.running());
    if (id == 3) loop.stop();
  };
  loop.call_soon(rec.make(3));
  EXPECT_EQ(loop.run_until_stopped(), run_status::stopped);
  EXPECT_FALSE(loop.running());
  EXPECT_EQ(running_inside, (std::vector<bool>{true, true, true}));
}

}  // namespace
}  // namespace pyloop
