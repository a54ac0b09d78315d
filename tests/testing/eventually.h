#ifndef BG_TESTS_TESTING_EVENTUALLY_H_
#define BG_TESTS_TESTING_EVENTUALLY_H_

#include <chrono>
#include <thread>

#include "kube/clock.h"

namespace bg::testing {

// Polls `pred` every 10 ms until it holds (true) or `ms` have passed (false). For waiting on
// something that must happen; never for proving that something did not.
template <typename Pred>
bool Eventually(Pred pred, int ms = 5000) {
  for (int i = 0; i < ms / 10; ++i) {
    if (pred()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return false;
}

// Eventually, moving `clock` forward by `step` before each look: for waiting on something that
// the code under test does when its time on `clock` comes (a delayed re-queue, a backoff).
template <typename Pred>
bool EventuallyAdvancing(kube::ManualClock& clock, kube::Clock::Duration step, Pred pred,
                         int ms = 5000) {
  return Eventually(
      [&] {
        clock.Advance(step);
        return pred();
      },
      ms);
}

}  // namespace bg::testing

#endif  // BG_TESTS_TESTING_EVENTUALLY_H_
