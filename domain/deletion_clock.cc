#include "domain/deletion_clock.h"

#include <algorithm>

#include "common/longhorn.h"
#include "domain/rules.h"

namespace bg::domain {

DeletionClock::DeletionClock(const kube::Clock* monotonic) : monotonic_(monotonic) {}

long long DeletionClock::SecondsDeleting(const nlohmann::json& obj,
                                         std::chrono::system_clock::time_point now) {
  const auto deleted_at = DeletionTime(obj);
  if (!deleted_at) return -1;
  const long long by_wall_clock =
      std::chrono::duration_cast<std::chrono::seconds>(now - *deleted_at).count();
  const std::string key = longhorn::StringAt(obj, {"metadata", "uid"}) + " " +
                          longhorn::StringAt(obj, {"metadata", "deletionTimestamp"});
  const kube::Clock::TimePoint mono_now = monotonic_->Now();
  kube::Clock::TimePoint first;
  {
    std::lock_guard<std::mutex> lock(mu_);
    ForgetStale(mono_now);
    auto [it, inserted] = seen_.try_emplace(key, Seen{mono_now, mono_now});
    it->second.last = mono_now;
    first = it->second.first;
  }
  const long long since_seen =
      std::chrono::duration_cast<std::chrono::seconds>(mono_now - first).count();
  return std::min(by_wall_clock, since_seen);
}

std::size_t DeletionClock::size() const {
  std::lock_guard<std::mutex> lock(mu_);
  return seen_.size();
}

void DeletionClock::ForgetStale(kube::Clock::TimePoint now) {
  if (now < next_sweep_) return;
  next_sweep_ = now + std::chrono::minutes(1);
  for (auto it = seen_.begin(); it != seen_.end();) {
    it = now - it->second.last > kForgetAfter ? seen_.erase(it) : std::next(it);
  }
}

}  // namespace bg::domain
