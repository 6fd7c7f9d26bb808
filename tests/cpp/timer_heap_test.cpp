// tests/cpp/timer_heap_test.cpp — deadline order, FIFO ties, lazy cancellation, compaction.
#include "pyloop/timer_heap.hpp"

#include <gtest/gtest.h>

#include <random>

#include "test_callbacks.hpp"

namespace pyloop {
namespace {

TEST(TimerHeap, PopsByDeadlineThenInsertionOrder) {
  recorder rec;
  timer_heap heap;
  std::mt19937 rng(42);
  std::uniform_int_distribution<int> deadline(0, 20);  // many ties on purpose
  std::vector<std::pair<double, int>> expected;
  for (int i = 0; i < 500; ++i) {
    double when = deadline(rng);
    heap.push(when, rec.make(i));
    expected.emplace_back(when, i);
  }
  std::stable_sort(expected.begin(), expected.end(),
                   [](auto& a, auto& b) { return a.first < b.first; });
  for (auto& [when, id] : expected) {
    ASSERT_FALSE(heap.empty());
    EXPECT_EQ(heap.top().when, when);
    heap.pop().cb.invoke();
    EXPECT_EQ(rec.ran.back(), id);
  }
  EXPECT_TRUE(heap.empty());
  EXPECT_EQ(rec.live, 0);
}

TEST(TimerHeap, PruneDropsCancelledEntriesAtTheTopOnly) {
  recorder rec;
  timer_heap heap;
  for (int i = 0; i < 10; ++i) heap.push(i, rec.make(i));
  rec.cancelled = {0, 1, 5};
  for (int i = 0; i < 3; ++i) heap.note_cancelled();
  heap.prune();
  EXPECT_EQ(heap.top().when, 2.0);
  EXPECT_EQ(heap.size(), 8u);  // entry 5 stays until it reaches the top
  EXPECT_EQ(heap.cancelled_count(), 1u);
  EXPECT_EQ(rec.discarded, (std::vector<int>{0, 1}));
}

TEST(TimerHeap, CompactsWhenCancelledEntriesDominateALargeHeap) {
  recorder rec;
  timer_heap heap;
  const int n = 300;
  for (int i = 0; i < n; ++i) heap.push(n - i, rec.make(i));
  for (int i = 0; i < n; i += 3) {
    rec.cancelled.insert(i);
    rec.cancelled.insert(i + 1);
    heap.note_cancelled();
    heap.note_cancelled();
  }
  heap.prune();
  EXPECT_EQ(heap.size(), static_cast<std::size_t>(n / 3));
  EXPECT_EQ(heap.cancelled_count(), 0u);
  EXPECT_EQ(rec.discarded.size(), static_cast<std::size_t>(2 * n / 3));
  double last = -1;
  while (!heap.empty()) {
    timer_entry e = heap.pop();
    EXPECT_GE(e.when, last);
    last = e.when;
    e.cb.discard();
  }
  EXPECT_EQ(rec.live, 0);
}

TEST(TimerHeap, SmallHeapIsNeverCompacted) {
  recorder rec;
  timer_heap heap;
  for (int i = 0; i < 50; ++i) heap.push(100 - i, rec.make(i));
  for (int i = 1; i < 50; ++i) {  // every entry but the top one (id 49 has the earliest deadline)
    if (i == 49) continue;
    rec.cancelled.insert(i);
    heap.note_cancelled();
  }
  heap.prune();
  EXPECT_EQ(heap.size(), 50u);  // the top is live, so nothing is dropped
  heap.clear();
  EXPECT_EQ(rec.live, 0);
}

}  // namespace
}  // namespace pyloop
