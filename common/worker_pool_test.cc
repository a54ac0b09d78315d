#include "common/worker_pool.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <future>
#include <mutex>
#include <set>
#include <thread>

namespace bg {
namespace {

TEST(WorkerPoolTest, JoinRunsEveryTaskQueuedBeforeIt) {
  std::atomic<int> ran{0};
  WorkerPool pool(3);
  for (int i = 0; i < 200; ++i) pool.Submit([&] { ran.fetch_add(1); });
  pool.Join();
  EXPECT_EQ(ran.load(), 200);
}

TEST(WorkerPoolTest, TasksRunOnThePoolsThreadsAtOnce) {
  // Three tasks that each wait for the other two can only finish on three threads of their own.
  constexpr int kThreads = 3;
  std::mutex mu;
  std::condition_variable cv;
  int arrived = 0;
  std::set<std::thread::id> ids;
  WorkerPool pool(kThreads);
  for (int i = 0; i < kThreads; ++i) {
    pool.Submit([&] {
      std::unique_lock<std::mutex> lock(mu);
      ids.insert(std::this_thread::get_id());
      ++arrived;
      cv.notify_all();
      cv.wait_for(lock, std::chrono::seconds(10), [&] { return arrived == kThreads; });
    });
  }
  pool.Join();
  EXPECT_EQ(arrived, kThreads);
  EXPECT_EQ(ids.size(), static_cast<std::size_t>(kThreads));
  EXPECT_EQ(ids.count(std::this_thread::get_id()), 0U);
}

TEST(WorkerPoolTest, DetachReturnsWhileATaskIsStillRunning) {
  // A detached thread still uses its pool after its task, so the pool must outlive it: here, to
  // the end of the process (reachable from a static, as the listener keeps its abandoned loop).
  static WorkerPool* const pool = new WorkerPool(1);
  std::promise<void> started;
  std::promise<void> release;
  std::shared_future<void> gate = release.get_future().share();
  pool->Submit([&started, gate] {
    started.set_value();
    gate.wait();
  });
  started.get_future().wait();
  pool->Detach();  // would block for ever if it joined
  release.set_value();
}

}  // namespace
}  // namespace bg
