#include "kube/rate_limiter.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

namespace bg::kube {
namespace {

using std::chrono::milliseconds;

TEST(RateLimiterTest, StartsWithAFullBurst) {
  ManualClock clock;
  RateLimiter limiter(/*qps=*/10, /*burst=*/3, &clock);
  EXPECT_TRUE(limiter.TryAcquire());
  EXPECT_TRUE(limiter.TryAcquire());
  EXPECT_TRUE(limiter.TryAcquire());
  EXPECT_FALSE(limiter.TryAcquire());
}

TEST(RateLimiterTest, RefillsAtQps) {
  ManualClock clock;
  RateLimiter limiter(/*qps=*/10, /*burst=*/1, &clock);
  EXPECT_TRUE(limiter.TryAcquire());
  clock.Advance(milliseconds(99));
  EXPECT_FALSE(limiter.TryAcquire());
  clock.Advance(milliseconds(1));
  EXPECT_TRUE(limiter.TryAcquire());
  EXPECT_FALSE(limiter.TryAcquire());
}

TEST(RateLimiterTest, RefillStopsAtBurst) {
  ManualClock clock;
  RateLimiter limiter(/*qps=*/100, /*burst=*/2, &clock);
  EXPECT_TRUE(limiter.TryAcquire());
  EXPECT_TRUE(limiter.TryAcquire());
  clock.Advance(std::chrono::hours(1));
  EXPECT_TRUE(limiter.TryAcquire());
  EXPECT_TRUE(limiter.TryAcquire());
  EXPECT_FALSE(limiter.TryAcquire());
}

TEST(RateLimiterTest, ReserveQueuesCallersBehindEachOther) {
  ManualClock clock;
  RateLimiter limiter(/*qps=*/50, /*burst=*/1, &clock);
  EXPECT_EQ(limiter.Reserve(), Clock::Duration::zero());
  EXPECT_EQ(limiter.Reserve(), milliseconds(20));
  EXPECT_EQ(limiter.Reserve(), milliseconds(40));
  // A reservation is not a free token: TryAcquire does not jump the queue.
  EXPECT_FALSE(limiter.TryAcquire());
  clock.Advance(milliseconds(40));
  EXPECT_FALSE(limiter.TryAcquire());
  clock.Advance(milliseconds(20));
  EXPECT_TRUE(limiter.TryAcquire());
}

TEST(RateLimiterTest, ZeroQpsIsUnlimited) {
  ManualClock clock;
  RateLimiter limiter(/*qps=*/0, /*burst=*/1, &clock);
  for (int i = 0; i < 1000; ++i) {
    EXPECT_TRUE(limiter.TryAcquire());
    EXPECT_EQ(limiter.Reserve(), Clock::Duration::zero());
  }
}

TEST(RateLimiterTest, BurstBelowOneCountsAsOne) {
  ManualClock clock;
  RateLimiter limiter(/*qps=*/10, /*burst=*/0, &clock);
  EXPECT_TRUE(limiter.TryAcquire());
  EXPECT_FALSE(limiter.TryAcquire());
}

// Acquire sleeps on the real clock; only the lower bound is certain, so only it is checked.
TEST(RateLimiterTest, AcquireWaitsForTheNextToken) {
  RateLimiter limiter(/*qps=*/100, /*burst=*/1);
  const auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < 4; ++i) limiter.Acquire();
  EXPECT_GE(std::chrono::steady_clock::now() - start, milliseconds(30));
}

TEST(RateLimiterTest, ConcurrentCallersShareTheBucket) {
  ManualClock clock;
  RateLimiter limiter(/*qps=*/1, /*burst=*/100, &clock);
  std::atomic<int> granted{0};
  std::vector<std::thread> threads;
  threads.reserve(8);
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 50; ++i) {
        if (limiter.TryAcquire()) ++granted;
      }
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(granted.load(), 100);
}

}  // namespace
}  // namespace bg::kube
