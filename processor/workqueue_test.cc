#include "processor/workqueue.h"

#include <gtest/gtest.h>

#include <atomic>
#include <thread>
#include <vector>

#include "kube/clock.h"
#include "tests/testing/eventually.h"

namespace bg::processor {
namespace {

using ::bg::testing::Eventually;
using std::chrono::hours;
using std::chrono::milliseconds;

TEST(WorkQueueTest, AKeyIsQueuedOnce) {
  WorkQueue q(milliseconds(1), milliseconds(10));
  q.Add("a");
  q.Add("a");
  q.Add("b");
  EXPECT_EQ(q.Depth(), 2u);
}

TEST(WorkQueueTest, KeyAddedWhileProcessingIsRequeuedOnDoneNotHandedOutTwice) {
  WorkQueue q(milliseconds(1), milliseconds(10));
  q.Add("a");
  std::string key;
  ASSERT_TRUE(q.Get(&key));
  q.Add("a");
  EXPECT_EQ(q.Depth(), 0u) << "must not be handed to a second worker while held";
  q.Done("a");
  EXPECT_EQ(q.Depth(), 1u);
}

TEST(WorkQueueTest, BackoffGrowsPerKeyAndForgetResetsIt) {
  WorkQueue q(milliseconds(1), milliseconds(1000));
  q.AddRateLimited("a");
  q.AddRateLimited("a");
  q.AddRateLimited("a");
  EXPECT_EQ(q.Retries("a"), 3);
  EXPECT_EQ(q.Retries("b"), 0);
  q.Forget("a");
  EXPECT_EQ(q.Retries("a"), 0);
}

TEST(WorkQueueTest, DelayedKeyArrives) {
  WorkQueue q(milliseconds(1), milliseconds(10));
  q.AddAfter("later", milliseconds(20));
  std::string key;
  ASSERT_TRUE(q.Get(&key));  // blocks until the delay has passed
  EXPECT_EQ(key, "later");
}

TEST(WorkQueueTest, AKeyIsDelayedUntilItsTimeOnTheQueuesClock) {
  kube::ManualClock clock;
  WorkQueue q(milliseconds(1), milliseconds(10), &clock);
  q.AddAfter("late", hours(2));
  q.AddAfter("soon", hours(1));
  clock.Advance(hours(1));
  ASSERT_TRUE(Eventually([&] { return q.Depth() > 0; }));
  std::string key;
  ASSERT_TRUE(q.Get(&key));
  EXPECT_EQ(key, "soon");
  // Keys that come due together are queued together: a "late" due now would be ahead of "now".
  q.Add("now");
  ASSERT_TRUE(q.Get(&key));
  EXPECT_EQ(key, "now") << "a key due in an hour was handed out";
  clock.Advance(hours(1));
  ASSERT_TRUE(q.Get(&key));
  EXPECT_EQ(key, "late");
}

TEST(WorkQueueTest, BackoffIsMeasuredOnTheQueuesClock) {
  kube::ManualClock clock;
  WorkQueue q(hours(1), hours(8), &clock);
  q.AddRateLimited("a");
  clock.Advance(hours(1));
  EXPECT_TRUE(Eventually([&] { return q.Depth() == 1; }));
}

TEST(WorkQueueTest, ShutDownReleasesWaitingWorkers) {
  WorkQueue q(milliseconds(1), milliseconds(10));
  std::atomic<bool> returned{false};
  std::thread worker([&] {
    std::string key;
    EXPECT_FALSE(q.Get(&key));
    returned = true;
  });
  q.ShutDown();
  worker.join();
  EXPECT_TRUE(returned);
}

TEST(WorkQueueTest, ManyWorkersNeverShareAKey) {
  WorkQueue q(milliseconds(1), milliseconds(10));
  std::mutex mu;
  std::set<std::string> held;
  std::atomic<int> processed{0};
  std::atomic<bool> overlap{false};
  std::vector<std::thread> workers;
  for (int w = 0; w < 4; ++w) {
    workers.emplace_back([&] {
      std::string key;
      while (q.Get(&key)) {
        {
          std::lock_guard<std::mutex> lock(mu);
          if (!held.insert(key).second) overlap = true;
        }
        std::this_thread::yield();
        {
          std::lock_guard<std::mutex> lock(mu);
          held.erase(key);
        }
        ++processed;
        q.Done(key);
      }
    });
  }
  for (int i = 0; i < 2000; ++i) q.Add("k" + std::to_string(i % 7));
  ASSERT_TRUE(Eventually([&] { return q.Depth() == 0; }));
  q.ShutDown();  // the keys still held are finished before the workers return
  for (auto& t : workers) t.join();
  EXPECT_FALSE(overlap);
  EXPECT_GT(processed.load(), 0);
}

class CountingObserver final : public QueueObserver {
 public:
  void Added() override { ++added; }
  void Waited(double seconds) override { waited.push_back(seconds); }
  void Worked(double seconds) override { worked.push_back(seconds); }
  void Retried() override { ++retried; }
  int added = 0;
  int retried = 0;
  std::vector<double> waited;
  std::vector<double> worked;
};

TEST(WorkQueueTest, ReportsAddsWaitsWorkAndRetriesAsClientGoDoes) {
  WorkQueue q(milliseconds(1), milliseconds(1));
  CountingObserver seen;
  q.SetObserver(&seen);
  q.Add("a");
  q.Add("a");  // already queued: no second add
  std::string key;
  ASSERT_TRUE(q.Get(&key));
  double total = 0;
  double longest = 0;
  q.Unfinished(&total, &longest);
  EXPECT_GE(total, 0.0);
  EXPECT_EQ(total, longest) << "one key held";
  q.Done(key);
  q.Unfinished(&total, &longest);
  EXPECT_EQ(total, 0.0);
  q.AddRateLimited("a");
  EXPECT_EQ(seen.added, 1);
  EXPECT_EQ(seen.retried, 1);
  ASSERT_EQ(seen.waited.size(), 1u);
  ASSERT_EQ(seen.worked.size(), 1u);
  EXPECT_GE(seen.waited[0], 0.0);
  EXPECT_GE(seen.worked[0], 0.0);
  q.ShutDown();
}

}  // namespace
}  // namespace bg::processor
