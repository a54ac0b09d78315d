// LeaderElector: leader election on a coordination.k8s.io/v1 Lease, following client-go's rules.
//  - A candidate takes the Lease when it is absent, held by nobody, or not renewed for
//    lease_duration as observed by this process's own clock (no cross-node clock comparison).
//  - The leader renews every retry_period. If no renewal has succeeded for renew_deadline, it stops
//    being leader at once: IsLeader() turns false the moment the deadline passes, even before the
//    loop notices, so callers that check it before each write never act on a stale lease.
//  - Leadership is counted from the start of the renewal that succeeded (not its end), and a
//    renewal that took longer than renew_deadline does not count: the Lease may have been seen
//    as renewed as soon as the PUT landed. LeadershipDeadline() says until when this replica may
//    write; a write must reach the API server by then (RestKubeApiOptions::write_deadline).
//    Because renew_deadline < lease_duration, a successor cannot take the Lease before that.
//  - On stop, a leader gives the Lease up (empty holder) so another replica takes over without
//    waiting out lease_duration. The caller stops everything that writes under the Lease first
//    (cmd/background.h), so no write of this replica is in flight once the holder is emptied.
//
// Thread-safety: Run() on its own thread; IsLeader() from any thread. The callbacks run on the
// Run() thread.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <mutex>
#include <optional>
#include <string>

#include "kube/api.h"
#include "kube/clock.h"

namespace bg::kube {

struct LeaderElectionOptions {
  std::string lease_name = "backup-guard";
  std::string ns = "longhorn-system";
  std::string identity;
  std::chrono::milliseconds lease_duration{15000};
  std::chrono::milliseconds renew_deadline{10000};
  std::chrono::milliseconds retry_period{2000};
  // The monotonic clock of expiry and the renew deadline; null: Clock::Real(). Must outlive the
  // elector, and be the clock of the API client that LeadershipDeadline() fences.
  const Clock* clock = nullptr;
};

// client-go's rules (leaderelection.NewLeaderElector): every timing positive, lease_duration >
// renew_deadline (a successor waits out the lease; this replica must have stopped writing by
// then), and renew_deadline > retry_period * 1.2 (client-go's jitter factor: at least one retry
// fits in the deadline). InvalidArgument naming the flags otherwise.
Status ValidateLeaderElectionTimings(const LeaderElectionOptions& options);

class LeaderElector {
 public:
  LeaderElector(KubeApi& api, LeaderElectionOptions options, std::function<void()> on_started,
                std::function<void()> on_stopped);
  LeaderElector(const LeaderElector&) = delete;
  LeaderElector& operator=(const LeaderElector&) = delete;

  void Run(const std::atomic<bool>& stop);
  bool IsLeader() const;
  // While leader: the moment leadership lapses unless renewed (start of the last successful
  // renewal + renew_deadline), on the options' clock. Nothing when not leader.
  std::optional<Clock::TimePoint> LeadershipDeadline() const;
  const std::string& identity() const { return options_.identity; }

 private:
  bool TryAcquireOrRenew();
  void Release();
  void SetLeader(bool leader);

  KubeApi& api_;
  const LeaderElectionOptions options_;
  const Clock* const clock_;
  std::function<void()> on_started_;
  std::function<void()> on_stopped_;

  std::atomic<bool> leader_{false};
  // Clock ticks of the start of the last successful renewal.
  std::atomic<Clock::Duration::rep> last_renew_{0};

  // What we last saw of the Lease, and when (by our clock): the basis of expiry decisions.
  std::string observed_holder_;
  std::string observed_renew_time_;
  Clock::TimePoint observed_at_{};
};

// RFC 3339 with microseconds, as the API server writes MicroTime.
std::string MicroTimeNow();

}  // namespace bg::kube
