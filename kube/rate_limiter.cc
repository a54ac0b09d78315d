#include "kube/rate_limiter.h"

#include <algorithm>
#include <chrono>
#include <thread>

namespace bg::kube {

RateLimiter::RateLimiter(double qps, int burst, const Clock* clock)
    : qps_(qps),
      burst_(static_cast<double>(std::max(burst, 1))),
      clock_(clock != nullptr ? clock : Clock::Real()),
      tokens_(burst_),
      last_(clock_->Now()) {}

void RateLimiter::RefillLocked(Clock::TimePoint now) {
  if (now <= last_) return;
  const double elapsed = std::chrono::duration<double>(now - last_).count();
  tokens_ = std::min(burst_, tokens_ + elapsed * qps_);
  last_ = now;
}

bool RateLimiter::TryAcquire() {
  if (qps_ <= 0) return true;
  std::lock_guard<std::mutex> lock(mu_);
  RefillLocked(clock_->Now());
  if (tokens_ < 1) return false;
  tokens_ -= 1;
  return true;
}

Clock::Duration RateLimiter::Reserve() {
  if (qps_ <= 0) return Clock::Duration::zero();
  std::lock_guard<std::mutex> lock(mu_);
  RefillLocked(clock_->Now());
  tokens_ -= 1;
  if (tokens_ >= 0) return Clock::Duration::zero();
  // The token this caller took arrives once the deficit has been refilled.
  return std::chrono::ceil<Clock::Duration>(std::chrono::duration<double>(-tokens_ / qps_));
}

void RateLimiter::Acquire() {
  const Clock::Duration wait = Reserve();
  if (wait > Clock::Duration::zero()) std::this_thread::sleep_for(wait);
}

}  // namespace bg::kube
