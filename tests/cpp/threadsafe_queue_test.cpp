// tests/cpp/threadsafe_queue_test.cpp — hand-over from many threads keeps each thread's order.
#include "pyloop/threadsafe_queue.hpp"

#include <gtest/gtest.h>

#include <map>
#include <thread>

#include "test_callbacks.hpp"

namespace pyloop {
namespace {

TEST(ThreadsafeQueue, DrainsEverythingPushedFromManyThreadsInPerThreadOrder) {
  recorder rec;
  threadsafe_queue inbox;
  ready_queue ready;
  constexpr int threads = 4, per_thread = 5000;
  // Pre-create payloads: recorder itself is not thread-safe.
  std::vector<std::vector<callback>> work(threads);
  for (int t = 0; t < threads; ++t)
    for (int i = 0; i < per_thread; ++i) work[t].push_back(rec.make(t * per_thread + i));
  std::vector<std::thread> producers;
  for (int t = 0; t < threads; ++t)
    producers.emplace_back([&, t] {
      for (const callback& cb : work[t]) inbox.push(cb);
    });
  std::size_t drained = 0;
  while (drained < threads * per_thread) {
    if (inbox.maybe_nonempty()) inbox.drain_into(ready);
    drained = ready.size();
  }
  for (auto& p : producers) p.join();
  EXPECT_FALSE(inbox.maybe_nonempty());
  std::map<int, int> last_seen;
  while (!ready.empty()) {
    ready.pop().invoke();
    int id = rec.ran.back();
    int t = id / per_thread;
    if (last_seen.count(t)) {
      EXPECT_GT(id, last_seen[t]);
    }
    last_seen[t] = id;
  }
  EXPECT_EQ(rec.live, 0);
}

TEST(ThreadsafeQueue, ClearDiscardsPendingEntries) {
  recorder rec;
  threadsafe_queue inbox;
  for (int i = 0; i < 10; ++i) inbox.push(rec.make(i));
  inbox.clear();
  EXPECT_EQ(rec.discarded.size(), 10u);
  EXPECT_EQ(rec.live, 0);
}

}  // namespace
}  // namespace pyloop
