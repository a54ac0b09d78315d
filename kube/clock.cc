#include "kube/clock.h"

namespace bg::kube {
namespace {

class SteadyClock final : public Clock {
 public:
  TimePoint Now() const override { return std::chrono::steady_clock::now(); }
};

}  // namespace

const Clock* Clock::Real() {
  static const SteadyClock* const kClock = new SteadyClock();
  return kClock;
}

}  // namespace bg::kube
