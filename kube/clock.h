// Clock: the monotonic time source of the kube layer, behind an interface so that tests can move
// time by hand (TTL caches, token refresh, rate-limited logs).
//
// Thread-safety: implementations are safe to call from many threads at once.
#pragma once

#include <atomic>
#include <chrono>

namespace bg::kube {

class Clock {
 public:
  using TimePoint = std::chrono::steady_clock::time_point;
  using Duration = std::chrono::steady_clock::duration;

  virtual ~Clock() = default;
  virtual TimePoint Now() const = 0;

  // The process-wide real clock (std::chrono::steady_clock). Never null, never destroyed.
  static const Clock* Real();
};

// A clock that moves only when told to. For tests.
class ManualClock final : public Clock {
 public:
  TimePoint Now() const override { return TimePoint(Duration(ticks_.load())); }
  void Advance(Duration d) { ticks_.fetch_add(d.count()); }

 private:
  // Starts a year after the epoch so that "now minus an interval" never goes before the epoch.
  std::atomic<Duration::rep> ticks_{
      std::chrono::duration_cast<Duration>(std::chrono::hours(24 * 365)).count()};
};

}  // namespace bg::kube
