// tests/cpp/io_watch_test.cpp — readiness callbacks: level-triggered, replace, remove, release.
#include "pyloop/io_watch.hpp"

#include <gtest/gtest.h>

#include <algorithm>

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "pyloop/loop_driver.hpp"
#include "test_callbacks.hpp"

namespace pyloop {
namespace {

using dir = io_watch::direction;

struct socket_pair {
  int fds[2];
  socket_pair() {
    EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, fds), 0);
  }
  ~socket_pair() {
    ::close(fds[0]);
    ::close(fds[1]);
  }
};

TEST(IoWatch, ReaderRunsEveryIterationWhileDataIsUnread) {
  recorder rec;
  socket_pair sp;
  loop_driver loop;
  callback replaced;
  ASSERT_FALSE(loop.watch(sp.fds[0], dir::read, rec.make(1), replaced));
  EXPECT_EQ(replaced.ops, nullptr);
  ASSERT_EQ(::write(sp.fds[1], "x", 1), 1);
  for (int i = 0; i < 20 && rec.ran.size() < 3; ++i) loop.run_once();
  EXPECT_EQ(rec.ran, (std::vector<int>{1, 1, 1}));  // never read: ready again each time
  callback removed = loop.unwatch(sp.fds[0], dir::read);
  ASSERT_NE(removed.ops, nullptr);
  removed.discard();
  loop.clear();
  EXPECT_EQ(rec.live, 0);
}

TEST(IoWatch, AHangUpIsRememberedWhileTheDescriptorIsWatched) {
  recorder rec;
  socket_pair sp;
  loop_driver loop;
  rec.on_run = [&](int) {
    char buffer[16];
    while (::read(sp.fds[0], buffer, sizeof buffer) > 0) {
    }
  };
  callback replaced;
  ASSERT_FALSE(loop.watch(sp.fds[0], dir::read, rec.make(1), replaced));
  ASSERT_EQ(::write(sp.fds[1], "x", 1), 1);
  for (int i = 0; i < 20 && rec.ran.empty(); ++i) loop.run_once();
  EXPECT_FALSE(loop.saw_hangup(sp.fds[0]));  // data alone
  ASSERT_EQ(::shutdown(sp.fds[1], SHUT_RDWR), 0);
  for (int i = 0; i < 20 && rec.ran.size() < 2; ++i) loop.run_once();
  EXPECT_TRUE(loop.saw_hangup(sp.fds[0]));
  callback removed = loop.unwatch(sp.fds[0], dir::read);
  removed.discard();
  EXPECT_FALSE(loop.saw_hangup(sp.fds[0]));  // no watch: nothing remembered
  loop.clear();
  EXPECT_EQ(rec.live, 0);
}

TEST(IoWatch, ReaderStopsOnceDataIsConsumed) {
  recorder rec;
  socket_pair sp;
  loop_driver loop;
  rec.on_run = [&](int) {
    char buffer[16];
    while (::read(sp.fds[0], buffer, sizeof buffer) > 0) {
    }
  };
  callback replaced;
  ASSERT_FALSE(loop.watch(sp.fds[0], dir::read, rec.make(1), replaced));
  ASSERT_EQ(::write(sp.fds[1], "abc", 3), 3);
  for (int i = 0; i < 20 && rec.ran.empty(); ++i) loop.run_once();
  ASSERT_EQ(rec.ran.size(), 1u);
  // Nothing more to read: a timer bounds the next wait, and the reader must not run.
  for (int i = 0; i < 3; ++i) {
    loop.call_soon(rec.make(100 + i));
    loop.run_once();
  }
  EXPECT_EQ(rec.ran, (std::vector<int>{1, 100, 101, 102}));
  loop.clear();
  EXPECT_EQ(rec.live, 0);
}

TEST(IoWatch, WriterRunsWhenWritableAndReplacingHandsBackTheOldCallback) {
  recorder rec;
  socket_pair sp;
  loop_driver loop;
  callback replaced;
  ASSERT_FALSE(loop.watch(sp.fds[0], dir::write, rec.make(1), replaced));
  ASSERT_FALSE(loop.watch(sp.fds[0], dir::write, rec.make(2), replaced));
  ASSERT_NE(replaced.ops, nullptr);
  replaced.discard();
  for (int i = 0; i < 20 && rec.ran.empty(); ++i) loop.run_once();
  EXPECT_EQ(rec.ran, (std::vector<int>{2}));
  EXPECT_TRUE(loop.watching(sp.fds[0], dir::write));
  EXPECT_FALSE(loop.watching(sp.fds[0], dir::read));
  loop.clear();
  EXPECT_FALSE(loop.watching(sp.fds[0], dir::write));
  EXPECT_EQ(rec.live, 0);
}

TEST(IoWatch, CallbackRemovingItselfRunsOnceAndTheDescriptorStaysOpen) {
  recorder rec;
  socket_pair sp;
  loop_driver loop;
  rec.on_run = [&](int id) {
    if (id != 1) return;
    callback removed = loop.unwatch(sp.fds[0], dir::write);
    if (removed.ops) removed.discard();
  };
  callback replaced;
  ASSERT_FALSE(loop.watch(sp.fds[0], dir::write, rec.make(1), replaced));
  for (int i = 0; i < 5; ++i) {
    loop.call_soon(rec.make(10 + i));
    loop.run_once();
  }
  EXPECT_EQ(std::count(rec.ran.begin(), rec.ran.end(), 1), 1);
  EXPECT_GE(::fcntl(sp.fds[0], F_GETFD), 0);  // released, not closed
  EXPECT_EQ(rec.live, 0);
}

TEST(IoWatch, RemovedReaderQueuedForThisIterationDoesNotRun) {
  recorder rec;
  socket_pair sp;
  loop_driver loop;
  callback replaced;
  ASSERT_FALSE(loop.watch(sp.fds[0], dir::write, rec.make(1), replaced));
  // A callback queued before the dispatch removes the writer in the same iteration.
  loop.call_soon(rec.make(0));
  rec.on_run = [&](int id) {
    if (id == 0) {
      callback removed = loop.unwatch(sp.fds[0], dir::write);
      if (removed.ops) removed.discard();
    }
  };
  loop.run_once();  // runs 0 (readiness may already be dispatched behind it)
  loop.call_soon(rec.make(5));  // keeps the next iteration from waiting indefinitely
  loop.run_once();
  EXPECT_EQ(rec.ran, (std::vector<int>{0, 5}));
  EXPECT_EQ(rec.live, 0);
}

TEST(IoWatch, ClosedLoopReleasesEverything) {
  recorder rec;
  socket_pair sp;
  {
    loop_driver loop;
    callback replaced;
    ASSERT_FALSE(loop.watch(sp.fds[0], dir::read, rec.make(1), replaced));
    ASSERT_FALSE(loop.watch(sp.fds[0], dir::write, rec.make(2), replaced));
  }
  EXPECT_EQ(rec.live, 0);
  EXPECT_TRUE(rec.ran.empty());
}

}  // namespace
}  // namespace pyloop

namespace pyloop {
namespace {

// Discarding a callback may run foreign code (a Python finalizer) that calls back into the
// driver; clear() must not be iterating its registry then.
TEST(IoWatch, ClearSurvivesADiscardThatUnwatchesAndWatchesOtherDescriptors) {
  recorder rec;
  socket_pair first, second, third;
  loop_driver loop;
  callback replaced;
  ASSERT_FALSE(loop.watch(first.fds[0], io_watch::direction::read, rec.make(1), replaced));
  ASSERT_FALSE(loop.watch(second.fds[0], io_watch::direction::read, rec.make(2), replaced));
  bool reentered = false;
  rec.on_discard = [&](int) {
    if (reentered) return;
    reentered = true;
    callback removed = loop.unwatch(second.fds[0], io_watch::direction::read);
    if (removed.ops != nullptr) removed.discard();
    removed = loop.unwatch(first.fds[0], io_watch::direction::read);
    if (removed.ops != nullptr) removed.discard();
    callback ignored;
    EXPECT_FALSE(loop.watch(third.fds[0], io_watch::direction::read, rec.make(3), ignored));
  };
  loop.clear();
  EXPECT_TRUE(reentered);
  // Each callback was discarded once; the one watched during clear() is left for next time.
  std::vector<int> discarded = rec.discarded;
  std::sort(discarded.begin(), discarded.end());
  EXPECT_EQ(discarded, (std::vector<int>{1, 2}));
  EXPECT_TRUE(loop.watching(third.fds[0], io_watch::direction::read));
  loop.clear();
  EXPECT_FALSE(loop.watching(third.fds[0], io_watch::direction::read));
  discarded = rec.discarded;
  std::sort(discarded.begin(), discarded.end());
  EXPECT_EQ(discarded, (std::vector<int>{1, 2, 3}));
}

}  // namespace
}  // namespace pyloop
