#include "kube/clock.h"

namespace bg::kube {
namespace {

class SteadyClock final : public Clock {
 public:
  TimePoint Now() const override { return std::chrono::steady_clock::now(); }
  void WaitUntil(std::condition_variable& cv, std::unique_lock<std::mutex>& lock,
                 TimePoint deadline) const override {
    cv.wait_until(lock, deadline);
  }
};

}  // namespace

const Clock* Clock::Real() {
  static const SteadyClock* const kClock = new SteadyClock();
  return kClock;
}

}  // namespace bg::kube
