// LeaderElector: leader election on a coordination.k8s.io/v1 Lease, following client-go's rules.
//  - A candidate takes the Lease when it is absent, held by nobody, or not renewed for
//    lease_duration as observed by this process's own clock (no cross-node clock comparison).
//  - The leader renews every retry_period. If no renewal has succeeded for renew_deadline, it stops
//    being leader at once: IsLeader() turns false the moment the deadline passes, even before the
//    loop notices, so callers that check it before each write never act on a stale lease.
//  - On stop, a leader gives the Lease up (empty holder) so another replica takes over without
//    waiting out lease_duration.
//
// Thread-safety: Run() on its own thread; IsLeader() from any thread. The callbacks run on the
// Run() thread.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <mutex>
#include <string>

#include "kube/api.h"

namespace bg::kube {

struct LeaderElectionOptions {
  std::string lease_name = "backup-guard";
  std::string ns = "longhorn-system";
  std::string identity;
  std::chrono::milliseconds lease_duration{15000};
  std::chrono::milliseconds renew_deadline{10000};
  std::chrono::milliseconds retry_period{2000};
};

class LeaderElector {
 public:
  LeaderElector(KubeApi& api, LeaderElectionOptions options, std::function<void()> on_started,
                std::function<void()> on_stopped);
  LeaderElector(const LeaderElector&) = delete;
  LeaderElector& operator=(const LeaderElector&) = delete;

  void Run(const std::atomic<bool>& stop);
  bool IsLeader() const;
  const std::string& identity() const { return options_.identity; }

 private:
  using Clock = std::chrono::steady_clock;
  bool TryAcquireOrRenew();
  void Release();
  void SetLeader(bool leader);

  KubeApi& api_;
  const LeaderElectionOptions options_;
  std::function<void()> on_started_;
  std::function<void()> on_stopped_;

  std::atomic<bool> leader_{false};
  std::atomic<Clock::rep> last_renew_{0};  // steady-clock ticks of the last successful renewal

  // What we last saw of the Lease, and when (by our clock): the basis of expiry decisions.
  std::string observed_holder_;
  std::string observed_renew_time_;
  Clock::time_point observed_at_{};
};

// RFC 3339 with microseconds, as the API server writes MicroTime.
std::string MicroTimeNow();

}  // namespace bg::kube
