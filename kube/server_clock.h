// ServerClock: the API server's wall clock, as read from the `Date` header of its answers.
//
// metadata.deletionTimestamp is written on the API server's clock, so an age compared with it
// must be read on that clock too, not on this machine's (one 90 s fast would see every new
// deletion as 90 s old). Each answer's Date (RFC 9110 IMF-fixdate, whole seconds) is recorded
// with the monotonic time it was read at; Now() is the latest such Date plus the monotonic time
// elapsed since. That is never ahead of the server's true time:
//  - the server wrote the Date before the answer was read here, and truncated it to the second;
//  - the elapsed part is monotonic, so neither a step of this machine's wall clock nor its skew
//    enters it.
// The latest answer, not the highest reading, is kept, so a server clock stepped back is
// followed at the next answer.
//
// Thread-safety: Observe and Now may be called from many threads at once.
#pragma once

#include <chrono>
#include <mutex>
#include <optional>
#include <string_view>

#include "kube/clock.h"

namespace bg::kube {

// The time of an HTTP date in its IMF-fixdate form ("Sun, 06 Nov 1994 08:49:37 GMT"), the one
// that servers must send; nothing for any other text (the obsolete forms included).
std::optional<std::chrono::system_clock::time_point> ParseHttpDate(std::string_view text);

class ServerClock {
 public:
  // `monotonic` must outlive this object; null: Clock::Real().
  explicit ServerClock(const Clock* monotonic = nullptr);
  ServerClock(const ServerClock&) = delete;
  ServerClock& operator=(const ServerClock&) = delete;

  // Records the Date header of an answer read just now; a missing or unreadable one is ignored.
  void Observe(std::string_view date_header);

  // The API server's time now, or nothing before an answer with a readable Date was observed.
  std::optional<std::chrono::system_clock::time_point> Now() const;

 private:
  const Clock* const monotonic_;
  mutable std::mutex mu_;
  // guarded by mu_: the latest Date and the monotonic time it was read at
  std::optional<std::chrono::system_clock::time_point> date_;
  Clock::TimePoint read_at_{};
};

}  // namespace bg::kube
