// tests/cpp/worker_pool_test.cpp — every posted task runs once; threads start as work
// queues up, never past the cap; a burst spreads over the threads; posting from many
// threads loses nothing; a forked child's runtime pool runs work.
#include "pyloop/worker_pool.hpp"

#include <gtest/gtest.h>

#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

#include "pyloop/native_runtime.hpp"

namespace pyloop {
namespace {

// Counts runs and the threads they ran on, and lets a test wait for a total.
struct tally {
  std::mutex mutex;
  std::condition_variable changed;
  int runs = 0;
  std::set<std::thread::id> threads;

  void record() {
    std::lock_guard<std::mutex> lock(mutex);
    ++runs;
    threads.insert(std::this_thread::get_id());
    changed.notify_all();
  }
  bool wait_for(int total) {
    std::unique_lock<std::mutex> lock(mutex);
    return changed.wait_for(lock, std::chrono::seconds(20), [&] { return runs >= total; });
  }
};

void record(void* arg) { static_cast<tally*>(arg)->record(); }

// Holds a worker until released: a task that sleeps in the kernel, as a file call does.
struct gate {
  std::mutex mutex;
  std::condition_variable opened;
  bool open = false;
  std::atomic<int> waiting{0};

  void pass() {
    ++waiting;
    std::unique_lock<std::mutex> lock(mutex);
    opened.wait(lock, [&] { return open; });
  }
  void release() {
    std::lock_guard<std::mutex> lock(mutex);
    open = true;
    opened.notify_all();
  }
};

void pass_gate(void* arg) { static_cast<gate*>(arg)->pass(); }

// Pools are never destroyed (their threads live on): the tests keep theirs here, reachable,
// to the end of the process, as the shared pools are kept.
std::vector<std::unique_ptr<worker_pool>>* kept_pools = new std::vector<std::unique_ptr<worker_pool>>();

worker_pool& new_pool(unsigned threads) {
  kept_pools->push_back(std::make_unique<worker_pool>(threads));
  return *kept_pools->back();
}

TEST(WorkerPool, NoThreadStartsBeforeWorkArrives) {
  worker_pool& pool = new_pool(4);
  EXPECT_EQ(pool.started_threads(), 0u);
  EXPECT_EQ(pool.max_threads(), 4u);
}

TEST(WorkerPool, EveryTaskOfABurstRunsOnce) {
  worker_pool& pool = new_pool(3);
  tally t;
  for (int i = 0; i < 10000; ++i) pool.post(pool_task{record, &t});
  ASSERT_TRUE(t.wait_for(10000));
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  std::lock_guard<std::mutex> lock(t.mutex);
  EXPECT_EQ(t.runs, 10000);
  EXPECT_LE(pool.started_threads(), 3u);
}

TEST(WorkerPool, ThreadsStartWhileEveryStartedOneIsBusyUpToTheCap) {
  worker_pool& pool = new_pool(5);
  gate g;
  for (int i = 0; i < 8; ++i) pool.post(pool_task{pass_gate, &g});
  // Five are held in the gate at once: each busy thread made the pool start another.
  for (int i = 0; i < 2000 && g.waiting.load() < 5; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  EXPECT_EQ(g.waiting.load(), 5);
  EXPECT_EQ(pool.started_threads(), 5u);
  g.release();
  for (int i = 0; i < 2000 && g.waiting.load() < 8; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  EXPECT_EQ(g.waiting.load(), 8);  // the three queued behind them ran too
  EXPECT_EQ(pool.started_threads(), 5u);
}

TEST(WorkerPool, PostsFromManyThreadsAllRun) {
  worker_pool& pool = new_pool(2);
  tally t;
  std::vector<std::thread> posters;
  for (int p = 0; p < 4; ++p) {
    posters.emplace_back([&] {
      for (int i = 0; i < 5000; ++i) pool.post(pool_task{record, &t});
    });
  }
  for (auto& p : posters) p.join();
  ASSERT_TRUE(t.wait_for(20000));
}

TEST(WorkerPool, IdleThreadsAreWokenForLaterWork) {
  worker_pool& pool = new_pool(2);
  tally t;
  for (int round = 1; round <= 50; ++round) {
    pool.post(pool_task{record, &t});
    ASSERT_TRUE(t.wait_for(round));
    std::this_thread::sleep_for(std::chrono::microseconds(200));  // the threads go idle
  }
}

TEST(WorkerPool, FunctionsRunAndAreFreed) {
  worker_pool& pool = new_pool(2);
  tally t;
  auto shared = std::make_shared<int>(0);
  for (int i = 0; i < 100; ++i) pool.post([&t, shared] { t.record(); });
  ASSERT_TRUE(t.wait_for(100));
  for (int i = 0; i < 2000 && shared.use_count() > 1; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  EXPECT_EQ(shared.use_count(), 1);  // each function was destroyed after it ran
}

TEST(NativeRuntime, AForkedChildRunsWorkOnAFreshPool) {
  tally t;
  run_on_native_runtime(pool_task{record, &t});
  ASSERT_TRUE(t.wait_for(1));
  pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    // The parent's threads do not exist here: the work must run on the child's own.
    tally mine;
    run_on_native_runtime(pool_task{record, &mine});
    ::_exit(mine.wait_for(1) ? 0 : 1);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  EXPECT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0);
}

}  // namespace
}  // namespace pyloop
