// tests/cpp/loop_driver_test.cpp — the phase order of run_once, one test per rule.
#include "pyloop/loop_driver.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <thread>

#include <sys/socket.h>
#include <unistd.h>

#include <asio/steady_timer.hpp>

#include "test_callbacks.hpp"

namespace pyloop {
namespace {

TEST(LoopDriver, Rule6_CallbacksQueuedDuringAnIterationRunInTheNext) {
  recorder rec;
  loop_driver loop;
  rec.on_run = [&](int id) {
    if (id < 3) loop.call_soon(rec.make(id + 10));
  };
  for (int i = 0; i < 3; ++i) loop.call_soon(rec.make(i));
  loop.run_once();
  EXPECT_EQ(rec.ran, (std::vector<int>{0, 1, 2}));
  EXPECT_EQ(loop.ready_count(), 3u);
  loop.run_once();
  EXPECT_EQ(rec.ran, (std::vector<int>{0, 1, 2, 10, 11, 12}));
}

TEST(LoopDriver, Rule6_AbortLeavesTheRestQueued) {
  recorder rec;
  loop_driver loop;
  rec.abort_on = {1};
  for (int i = 0; i < 4; ++i) loop.call_soon(rec.make(i));
  EXPECT_EQ(loop.run_once(), run_status::aborted);
  EXPECT_EQ(rec.ran, (std::vector<int>{0, 1}));
  EXPECT_EQ(loop.ready_count(), 2u);
  loop.run_once();
  EXPECT_EQ(rec.ran, (std::vector<int>{0, 1, 2, 3}));
}

TEST(LoopDriver, Rule7_EndOfTurnRunsAfterTheCallbacksEvenWhenOneAborts) {
  recorder rec;
  loop_driver loop;
  struct turn_log {
    recorder* rec;
    std::vector<std::size_t> ran_at_end;  // callbacks run when each end_of_turn fired
  } log{&rec, {}};
  loop_hooks hooks;
  hooks.data = &log;
  hooks.end_of_turn = [](void* d) noexcept {
    auto* l = static_cast<turn_log*>(d);
    l->ran_at_end.push_back(l->rec->ran.size());
    return l->ran_at_end.size() != 3;  // the third turn's hook aborts
  };
  loop.set_hooks(hooks);
  rec.abort_on = {1};
  for (int i = 0; i < 3; ++i) loop.call_soon(rec.make(i));
  EXPECT_EQ(loop.run_once(), run_status::aborted);
  EXPECT_EQ(log.ran_at_end, (std::vector<std::size_t>{2}));
  EXPECT_EQ(loop.run_once(), run_status::stopped);
  EXPECT_EQ(log.ran_at_end, (std::vector<std::size_t>{2, 3}));
  loop.call_soon(rec.make(3));  // ready work: the next turn does not block
  EXPECT_EQ(loop.run_once(), run_status::aborted);
  EXPECT_EQ(rec.ran, (std::vector<int>{0, 1, 2, 3}));
}

TEST(LoopDriver, StopIsHonouredAfterTheIterationCompletes) {
  recorder rec;
  loop_driver loop;
  rec.on_run = [&](int id) {
    if (id == 0) loop.stop();
    loop.call_soon(rec.make(id + 1));  // always more work: only stop() ends the run
  };
  loop.call_soon(rec.make(0));
  loop.call_soon(rec.make(100));
  EXPECT_EQ(loop.run_until_stopped(), run_status::stopped);
  EXPECT_EQ(rec.ran, (std::vector<int>{0, 100}));
  EXPECT_FALSE(loop.stopping());
  loop.clear();
  EXPECT_EQ(rec.live, 0);
}

TEST(LoopDriver, Rule5_DueTimersRunInDeadlineOrderAfterReadyCallbacks) {
  recorder rec;
  loop_driver loop;
  const double now = loop_driver::now();
  loop.call_at(now - 1, rec.make(2));
  loop.call_at(now - 2, rec.make(1));
  loop.call_soon(rec.make(0));
  loop.call_at(now + 3600, rec.make(99));  // not due
  loop.run_once();
  EXPECT_EQ(rec.ran, (std::vector<int>{0, 1, 2}));
  EXPECT_EQ(rec.unscheduled, (std::vector<int>{1, 2}));
  EXPECT_EQ(loop.timer_count(), 1u);
  loop.clear();
  EXPECT_EQ(rec.live, 0);
}

TEST(LoopDriver, Rule3_WaitsUntilTheNextDeadline) {
  recorder rec;
  loop_driver loop;
  const double start = loop_driver::now();
  loop.call_at(start + 0.05, rec.make(1));
  while (rec.ran.empty()) loop.run_once();
  const double elapsed = loop_driver::now() - start;
  EXPECT_GE(elapsed, 0.05 - loop_driver::clock_resolution());
  EXPECT_LT(elapsed, 1.0);
}

TEST(LoopDriver, Rule2_CancelledTimersAreDroppedNotRun) {
  recorder rec;
  loop_driver loop;
  const double now = loop_driver::now();
  loop.call_at(now - 1, rec.make(1));
  loop.call_at(now - 1, rec.make(2));
  rec.cancelled = {1};
  loop.timer_cancelled();
  loop.run_once();
  EXPECT_EQ(rec.ran, (std::vector<int>{2}));
  EXPECT_EQ(rec.discarded, (std::vector<int>{1}));
  EXPECT_EQ(loop.cancelled_timer_count(), 0u);
}

TEST(LoopDriver, Rule1_ThreadsafeCallbackWakesABlockedWait) {
  recorder rec;
  loop_driver loop;
  int hooks_before = 0, hooks_after = 0;
  struct counters {
    int* before;
    int* after;
  } c{&hooks_before, &hooks_after};
  loop.set_hooks(loop_hooks{[](void* d) noexcept { ++*static_cast<counters*>(d)->before; },
                                 [](void* d) noexcept {
                                   ++*static_cast<counters*>(d)->after;
                                   return true;
                                 },
                                 &c});
  callback cb = rec.make(7);
  const double start = loop_driver::now();
  std::thread producer([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    loop.call_soon_threadsafe(cb);
  });
  // No timers and nothing ready: the wait is unbounded until the hand-over wakes it.
  while (rec.ran.empty()) loop.run_once();
  producer.join();
  EXPECT_EQ(rec.ran, (std::vector<int>{7}));
  EXPECT_LT(loop_driver::now() - start, 5.0);
  EXPECT_GE(hooks_before, 1);
  EXPECT_EQ(hooks_before, hooks_after);
}

TEST(LoopDriver, ReadyWorkNeverWaits) {
  recorder rec;
  loop_driver loop;
  int waits = 0;
  loop.set_hooks(loop_hooks{[](void* d) noexcept { ++*static_cast<int*>(d); }, nullptr, &waits});
  loop.call_at(loop_driver::now() + 3600, rec.make(99));
  for (int i = 0; i < 100; ++i) {
    loop.call_soon(rec.make(i));
    loop.run_once();
  }
  EXPECT_EQ(waits, 0);
  EXPECT_EQ(rec.ran.size(), 100u);
  loop.clear();
}

TEST(LoopDriver, ClearDiscardsReadyTimersAndHandOvers) {
  recorder rec;
  loop_driver loop;
  loop.call_soon(rec.make(1));
  loop.call_at(loop_driver::now() + 10, rec.make(2));
  loop.call_soon_threadsafe(rec.make(3));
  loop.clear();
  EXPECT_EQ(rec.live, 0);
  EXPECT_TRUE(rec.ran.empty());
}

}  // namespace
}  // namespace pyloop

namespace pyloop {
namespace {

TEST(LoopDriver, Rule3_InterruptPipeEndsABlockedWaitAndHookCanAbort) {
  loop_driver loop;
  std::error_code ec;
  const int fd = loop.interrupt_fd(ec);
  ASSERT_FALSE(ec);
  ASSERT_GE(fd, 0);
  EXPECT_EQ(loop.interrupt_fd(ec), fd);  // created once
  bool abort_next = true;
  loop.set_hooks(loop_hooks{nullptr, [](void* d) noexcept { return !*static_cast<bool*>(d); },
                                 &abort_next});
  const double start = loop_driver::now();
  std::thread writer([fd] {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    char byte = 2;
    EXPECT_EQ(::write(fd, &byte, 1), 1);
  });
  EXPECT_EQ(loop.run_once(), run_status::aborted);  // unbounded wait, ended by the pipe
  writer.join();
  EXPECT_LT(loop_driver::now() - start, 5.0);
}

}  // namespace
}  // namespace pyloop

namespace pyloop {
namespace {

// Native asynchronous code shares the loop through io(): its handlers run on the loop's
// thread, and while it has work pending the loop blocks inside Asio, where the loop's own
// readiness set is one more descriptor.
TEST(LoopDriver, Rule3_NativeAsioTimerCompletesWhileTheLoopWaits) {
  recorder rec;
  loop_driver loop;
  asio::steady_timer timer(loop.io(), std::chrono::milliseconds(30));
  timer.async_wait([&](const asio::error_code& ec) {
    if (!ec) loop.call_soon(rec.make(1));
  });
  const double start = loop_driver::now();
  // No timer of the loop's own and nothing ready: only Asio's timer can end the wait.
  while (rec.ran.empty() && loop_driver::now() - start < 5.0) loop.run_once();
  EXPECT_EQ(rec.ran, (std::vector<int>{1}));
  EXPECT_GE(loop_driver::now() - start, 0.025);
}

TEST(LoopDriver, Rule3_ReadinessAndHandOversStillEndAWaitInsideAsio) {
  recorder rec;
  loop_driver loop;
  asio::steady_timer pending(loop.io(), std::chrono::hours(1));  // keeps Asio busy
  bool timer_cancelled = false;
  pending.async_wait([&](const asio::error_code& ec) {
    timer_cancelled = ec == asio::error::operation_aborted;
  });
  int fds[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, fds), 0);
  callback replaced;
  ASSERT_FALSE(loop.watch(fds[0], io_watch::direction::read, rec.make(1), replaced));
  std::thread peer([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    EXPECT_EQ(::write(fds[1], "x", 1), 1);
  });
  const double start = loop_driver::now();
  while (rec.ran.empty() && loop_driver::now() - start < 5.0) loop.run_once();
  peer.join();
  EXPECT_EQ(rec.ran, (std::vector<int>{1}));
  callback removed = loop.unwatch(fds[0], io_watch::direction::read);
  removed.discard();

  callback cb = rec.make(2);
  std::thread producer([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    loop.call_soon_threadsafe(cb);
  });
  while (rec.ran.size() < 2 && loop_driver::now() - start < 5.0) loop.run_once();
  producer.join();
  EXPECT_EQ(rec.ran, (std::vector<int>{1, 2}));

  // Once the native work is gone, the loop waits in its own set again and still wakes.
  pending.cancel();
  callback cb3 = rec.make(3);
  std::thread late([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    loop.call_soon_threadsafe(cb3);
  });
  while (rec.ran.size() < 3 && loop_driver::now() - start < 5.0) loop.run_once();
  late.join();
  EXPECT_TRUE(timer_cancelled);
  EXPECT_EQ(rec.ran, (std::vector<int>{1, 2, 3}));
  ::close(fds[0]);
  ::close(fds[1]);
  EXPECT_EQ(rec.live, 0);
}

}  // namespace
}  // namespace pyloop
