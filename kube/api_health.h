// ApiHealth: whether the Kubernetes API server can currently be reached, for /readyz and metrics.
//
// Two sources feed it:
//  - real traffic: every exchange of the process's API clients goes through a
//    HealthRecordingTransport, so lookups, the processor's lists, watches (each chunk of a stream
//    counts) and leader-election renewals all report contact or failure as they happen;
//  - a background probe (Run): GET /readyz of the API server every probe_interval, sent only when
//    real traffic has made no contact for that long, so a quiet replica still notices an outage.
// An answer with an HTTP status below 500 is contact (the server answered, even with 403/404 or
// 429); a 5xx (an API server whose etcd is gone answers /readyz with 500) or no answer at all
// (refused, reset, TLS failure, timeout) is a failure.
//
// Check() reports not ready only when there has been no contact for unready_after. The API server
// is the webhook's only caller, and it routes to every replica through the same Service: if a
// blip of a few seconds made every replica unready at once, the Service would have no endpoints
// and every admission call would fail for longer than the blip itself. Before the first contact
// Check() is not ready (the process has not shown that it can reach the API at all).
//
// Check() only reads state: it never sends a request, so /readyz answers at once even while the
// API is a black hole.
//
// Thread-safety: every method may be called from any thread; Run on one thread at a time.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>

#include "common/status.h"
#include "kube/clock.h"
#include "kube/transport.h"

namespace bg::kube {

struct ApiHealthOptions {
  // How long the API may go without contact before Check() reports not ready. Zero: never, once
  // the API has been reached (readiness then only waits for the first contact).
  std::chrono::milliseconds unready_after{20000};
  // The background probe's period, while real traffic is quiet. Before the first contact the
  // probe runs every second at most, so a fresh replica turns ready quickly.
  std::chrono::milliseconds probe_interval{5000};
  // kube-apiserver's own readiness: 500 while etcd cannot be reached or the server shuts down.
  // Readable by every client through the default system:public-info-viewer binding.
  std::string probe_path = "/readyz";
  const Clock* clock = nullptr;  // null: Clock::Real(); must outlive the ApiHealth
};

// Told about every outcome, from the thread that saw it; for metrics. Must be cheap.
class ApiHealthObserver {
 public:
  virtual ~ApiHealthObserver() = default;
  virtual void OnContact() = 0;
  virtual void OnFailure() = 0;
};

class ApiHealth {
 public:
  explicit ApiHealth(ApiHealthOptions options = {}, ApiHealthObserver* observer = nullptr);
  ApiHealth(const ApiHealth&) = delete;
  ApiHealth& operator=(const ApiHealth&) = delete;

  // The API server answered (status < 500).
  void RecordContact();
  // No usable answer; `reason` says why (kept for the 503 message).
  void RecordFailure(std::string_view reason);

  // OK while the API has been reached within unready_after; else Unavailable, with the time
  // since the last contact and the last error in the message.
  Status Check() const;

  // Sends one probe through `transport` when one is due (see ApiHealthOptions) and records its
  // outcome; also logs when readiness changes. Returns whether a probe was sent.
  bool Tick(ApiTransport& transport);
  // Calls Tick about every 100 ms until `stop` is true. The probe's own duration is bounded by the
  // transport's timeouts; Check() does not wait for it.
  void Run(ApiTransport& transport, const std::atomic<bool>& stop);

  const ApiHealthOptions& options() const { return options_; }

 private:
  static constexpr Clock::Duration::rep kNever = 0;

  Clock::Duration::rep NowTicks() const;
  Status CheckAt(Clock::Duration::rep now) const;

  const ApiHealthOptions options_;
  const Clock* const clock_;
  ApiHealthObserver* const observer_;

  // Monotonic clock ticks of the last contact, kNever before the first one.
  std::atomic<Clock::Duration::rep> last_contact_{kNever};

  mutable std::mutex mu_;
  std::string last_error_;                       // guarded by mu_
  Clock::Duration::rep last_error_at_ = kNever;  // guarded by mu_
  Clock::Duration::rep last_probe_at_ = kNever;  // guarded by mu_; touched by Tick only
  bool reported_unready_ = false;                // guarded by mu_; Tick's last logged state
  bool logged_first_contact_ = false;            // guarded by mu_
};

// An ApiTransport that forwards to `inner` and reports every outcome to `health`. Streams report
// contact when their status arrives and with every chunk, and a failure when they break; a
// stream ended by its `stop` flag reports nothing more.
class HealthRecordingTransport final : public ApiTransport {
 public:
  HealthRecordingTransport(std::shared_ptr<ApiTransport> inner, std::shared_ptr<ApiHealth> health);

  Result<HttpResponse> Request(std::string_view method, const std::string& path_and_query,
                               const std::string& body, std::string_view content_type) override;
  Status Stream(std::string_view method, const std::string& path_and_query,
                const std::atomic<bool>& stop, const std::function<bool(int status)>& on_status,
                const std::function<bool(std::string_view chunk)>& on_chunk) override;

 private:
  const std::shared_ptr<ApiTransport> inner_;
  const std::shared_ptr<ApiHealth> health_;
};

}  // namespace bg::kube
