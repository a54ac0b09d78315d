// Clock: the monotonic time source of the kube layer and the processor, behind an interface so
// that tests can move time by hand (TTL caches, token refresh, rate-limited logs, the work queue's
// delays, leader election).
//
// Thread-safety: implementations are safe to call from many threads at once.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>

namespace bg::kube {

class Clock {
 public:
  using TimePoint = std::chrono::steady_clock::time_point;
  using Duration = std::chrono::steady_clock::duration;

  virtual ~Clock() = default;
  virtual TimePoint Now() const = 0;
  // Waits on `cv` (`lock` held, as std::condition_variable::wait_until) until notified or until
  // Now() may have reached `deadline`. May return early: callers check their condition and the
  // time again. The real clock waits until `deadline` itself.
  virtual void WaitUntil(std::condition_variable& cv, std::unique_lock<std::mutex>& lock,
                         TimePoint deadline) const = 0;

  // The process-wide real clock (std::chrono::steady_clock). Never null, never destroyed.
  static const Clock* Real();
};

// A clock that moves only when told to. For tests.
class ManualClock final : public Clock {
 public:
  TimePoint Now() const override { return TimePoint(Duration(ticks_.load())); }
  void Advance(Duration d) { ticks_.fetch_add(d.count()); }
  // Advance() does not know the waiters, so a waiter looks at the time again every millisecond.
  void WaitUntil(std::condition_variable& cv, std::unique_lock<std::mutex>& lock,
                 TimePoint deadline) const override {
    if (Now() < deadline) cv.wait_for(lock, std::chrono::milliseconds(1));
  }

 private:
  // Starts a year after the epoch so that "now minus an interval" never goes before the epoch.
  std::atomic<Duration::rep> ticks_{
      std::chrono::duration_cast<Duration>(std::chrono::hours(24 * 365)).count()};
};

}  // namespace bg::kube
