// tests/cpp/completion_link_test.cpp — a native future's completion reaches its loop from any thread,
// once; cancellation reaches the native side once; the link frees itself and its hook.
#include "pyloop/completion_link.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <thread>
#include <vector>

#include "pyloop/loop_driver.hpp"
#include "pyloop/native_runtime.hpp"

namespace pyloop {
namespace {

std::atomic<int> ran{0};
std::atomic<int> dropped{0};

callback_status count_run(void*) noexcept {
  ++ran;
  return callback_status::done;
}
void count_drop(void*) noexcept { ++dropped; }
const callback_ops ops{count_run, count_drop, nullptr, nullptr, nullptr};

struct hook_counts {
  int cancels = 0;   // cancel() calls
  int releases = 0;  // release() calls
};
void on_cancel(void* ctx) noexcept { ++static_cast<hook_counts*>(ctx)->cancels; }
void on_release(void* ctx) noexcept { ++static_cast<hook_counts*>(ctx)->releases; }

TEST(CompletionLink, FirstCompletionFromAWorkerWakesTheLoop) {
  loop_driver loop;
  ran = 0;
  auto* link = new completion_link(loop.mailbox(), 7, {});
  std::thread worker([link] {
    EXPECT_EQ(link->complete(callback{&ops, nullptr}), link_delivery::delivered);
    EXPECT_EQ(link->complete(callback{&ops, nullptr}), link_delivery::already_completed);
  });
  // Nothing else to do: the loop blocks until the worker's completion wakes it.
  while (ran == 0) loop.run_once();
  worker.join();
  EXPECT_TRUE(link->completed());
  EXPECT_EQ(link->id(), 7u);
  link->release();
}

TEST(CompletionLink, ClosedLoopRefusesTheCompletion) {
  auto loop = std::make_unique<loop_driver>();
  auto* link = new completion_link(loop->mailbox(), 1, {});
  loop->close();
  EXPECT_EQ(link->complete(callback{&ops, nullptr}), link_delivery::loop_closed);
  loop.reset();  // the link outlives its loop safely
  link->release();
}

TEST(CompletionLink, QueuedCompletionIsDiscardedWhenTheLoopCloses) {
  loop_driver loop;
  dropped = 0;
  auto* link = new completion_link(loop.mailbox(), 1, {});
  EXPECT_EQ(link->complete(callback{&ops, nullptr}), link_delivery::delivered);
  loop.close();
  EXPECT_EQ(dropped, 1);
  link->release();
}

TEST(CompletionLink, CancelRunsTheHookOnceAndReleaseFreesIt) {
  loop_driver loop;
  hook_counts counts;
  auto* link = new completion_link(loop.mailbox(), 1, cancel_hook{on_cancel, on_release, &counts});
  link->retain();
  link->mark_cancelled();
  link->mark_cancelled();
  EXPECT_TRUE(link->cancelled());
  EXPECT_EQ(counts.cancels, 1);
  link->release();
  EXPECT_EQ(counts.releases, 0);
  link->release();
  EXPECT_EQ(counts.releases, 1);
}

TEST(CompletionLink, CancelAfterCompletionSkipsTheHook) {
  loop_driver loop;
  hook_counts counts;
  auto* link = new completion_link(loop.mailbox(), 1, cancel_hook{on_cancel, on_release, &counts});
  dropped = 0;
  EXPECT_EQ(link->complete(callback{&ops, nullptr}), link_delivery::delivered);
  link->mark_cancelled();
  EXPECT_EQ(counts.cancels, 0);
  link->release();
  EXPECT_EQ(counts.releases, 1);
}

TEST(CompletionLink, ManyWorkersCompleteManyLinksEachOnce) {
  loop_driver loop;
  ran = 0;
  constexpr int links = 200;
  std::vector<completion_link*> all;
  for (int i = 0; i < links; ++i) all.push_back(new completion_link(loop.mailbox(), i, {}));
  std::atomic<int> delivered{0};
  for (int worker = 0; worker < 4; ++worker) {
    for (completion_link* link : all) {
      link->retain();
      run_on_native_runtime([link, &delivered] {
        if (link->complete(callback{&ops, nullptr}) == link_delivery::delivered) ++delivered;
        link->release();
      });
    }
  }
  while (ran < links) loop.run_once();
  while (true) {
    bool last = true;
    for (completion_link* link : all) last = last && link->completed();
    if (last) break;
  }
  EXPECT_EQ(ran, links);
  for (completion_link* link : all) link->release();
  EXPECT_GE(native_runtime_size(), 2u);
}

}  // namespace
}  // namespace pyloop
