// RateLimiter: a token bucket that bounds how fast this process calls the Kubernetes API, like
// client-go's default client-side limiter. Tokens refill at `qps` per second up to `burst`; each
// request takes one.
//
// Callers that find the bucket empty reserve a future token and wait for it, so waiting callers
// are served in the order they arrived and a burst of callers is spread out at `qps`.
//
// Thread-safety: every method may be called from many threads at once.
#pragma once

#include <mutex>

#include "kube/clock.h"

namespace bg::kube {

class RateLimiter {
 public:
  // `qps` <= 0 disables limiting (every call succeeds at once). `burst` below 1 counts as 1.
  // `clock` null means Clock::Real(); it must outlive the limiter. The bucket starts full.
  RateLimiter(double qps, int burst, const Clock* clock = nullptr);

  RateLimiter(const RateLimiter&) = delete;
  RateLimiter& operator=(const RateLimiter&) = delete;

  // Takes a token if one is available now; never waits and never reserves.
  bool TryAcquire();

  // Takes a token, reserving the next one to come when the bucket is empty, and returns how long
  // the caller must wait before using it (zero when a token was available).
  Clock::Duration Reserve();

  // Reserve(), then sleeps for the wait (on the real clock, whatever clock measures the bucket).
  void Acquire();

 private:
  // Adds the tokens earned since the last refill; requires mu_.
  void RefillLocked(Clock::TimePoint now);

  const double qps_;
  const double burst_;
  const Clock* const clock_;

  std::mutex mu_;
  double tokens_;          // guarded by mu_; negative while reservations are outstanding
  Clock::TimePoint last_;  // guarded by mu_
};

}  // namespace bg::kube
