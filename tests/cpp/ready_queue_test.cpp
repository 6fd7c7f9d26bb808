// tests/cpp/ready_queue_test.cpp — FIFO order, growth across the ring's wrap, clearing.
#include "pyloop/ready_queue.hpp"

#include <gtest/gtest.h>

#include "test_callbacks.hpp"

namespace pyloop {
namespace {

TEST(ReadyQueue, PopsInPushOrderAcrossGrowthAndWrap) {
  recorder rec;
  ready_queue q;
  // Interleave pushes and pops so the head moves before the ring has to grow.
  int next_push = 0, next_pop = 0;
  for (int round = 0; round < 50; ++round) {
    for (int i = 0; i < 7; ++i) q.push(rec.make(next_push++));
    for (int i = 0; i < 3; ++i) {
      ASSERT_EQ(q.pop().invoke(), callback_status::done);
      EXPECT_EQ(rec.ran.back(), next_pop++);
    }
  }
  while (!q.empty()) {
    q.pop().invoke();
    EXPECT_EQ(rec.ran.back(), next_pop++);
  }
  EXPECT_EQ(next_pop, next_push);
  EXPECT_EQ(rec.live, 0);
}

TEST(ReadyQueue, ClearDiscardsEveryEntryWithoutRunningIt) {
  recorder rec;
  ready_queue q;
  for (int i = 0; i < 100; ++i) q.push(rec.make(i));
  q.clear();
  EXPECT_TRUE(q.empty());
  EXPECT_TRUE(rec.ran.empty());
  EXPECT_EQ(rec.discarded.size(), 100u);
  EXPECT_EQ(rec.live, 0);
}

TEST(ReadyQueue, DestructorReleasesPayloads) {
  recorder rec;
  {
    ready_queue q;
    for (int i = 0; i < 10; ++i) q.push(rec.make(i));
  }
  EXPECT_EQ(rec.live, 0);
}

TEST(ReadyQueue, DiscardThatQueuesMoreWorkLandsInTheLiveQueue) {
  recorder rec;
  ready_queue q;
  rec.on_discard = [&](int id) {
    if (id < 5) q.push(rec.make(id + 100));
  };
  for (int i = 0; i < 5; ++i) q.push(rec.make(i));
  q.clear();
  EXPECT_EQ(q.size(), 5u);  // pushed by the discards, after the detach
  rec.on_discard = nullptr;
  q.clear();
  EXPECT_EQ(rec.live, 0);
}

}  // namespace
}  // namespace pyloop
