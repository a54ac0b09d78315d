// DeletionClock: how long objects have been deleting, for the uninstall grace (SPEC: during a
// confirmed uninstall, an object still deleting after the grace is released).
//
// metadata.deletionTimestamp is written by the API server's clock; this process's wall clock may
// be ahead of it (a replica 90 s fast would read every new deletion as 90 s old and release at
// once). So the age is the lesser of two readings:
//  - the local wall clock against deletionTimestamp (right across restarts when clocks agree);
//  - the monotonic time since this process first saw that deletion (never more than the truth,
//    whatever either wall clock says).
// A fast local clock is thereby bounded by the second; a slow one only makes the first smaller,
// which holds the object longer, never shorter.
//
// Thread-safety: SecondsDeleting may be called from many threads at once.
#pragma once

#include <chrono>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>

#include "kube/clock.h"

namespace bg::domain {

class DeletionClock {
 public:
  // `monotonic` must outlive this object; Clock::Real() in production, a ManualClock in tests.
  explicit DeletionClock(const kube::Clock* monotonic = kube::Clock::Real());
  DeletionClock(const DeletionClock&) = delete;
  DeletionClock& operator=(const DeletionClock&) = delete;

  // Seconds `obj` has been deleting as the header says (negative while the local clock is behind
  // the stamp), or -1 when it carries no (readable) deletionTimestamp. The first call for a
  // deletion (uid and deletionTimestamp) starts its monotonic reading at 0.
  long long SecondsDeleting(const nlohmann::json& obj, std::chrono::system_clock::time_point now);

  // Deletions recorded; entries not asked about for kForgetAfter are dropped (the object is
  // gone: a held one is reconciled again at least every resync period).
  std::size_t size() const;
  static constexpr std::chrono::hours kForgetAfter{1};

 private:
  struct Seen {
    kube::Clock::TimePoint first;
    kube::Clock::TimePoint last;
  };
  void ForgetStale(kube::Clock::TimePoint now);  // mu_ held

  const kube::Clock* const monotonic_;
  mutable std::mutex mu_;
  std::map<std::string, Seen> seen_;  // "uid deletionTimestamp" -> readings; guarded by mu_
  kube::Clock::TimePoint next_sweep_{};
};

}  // namespace bg::domain
