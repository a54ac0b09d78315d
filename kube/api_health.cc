#include "kube/api_health.h"

#include <nlohmann/json.hpp>
#include <thread>
#include <utility>

#include "common/log.h"

namespace bg::kube {
namespace {

using nlohmann::json;

// Enough of an error body to see the API server's reason in a 503 message.
constexpr size_t kReasonBytes = 200;
// Before the first contact the probe does not wait a whole probe_interval.
constexpr std::chrono::milliseconds kStartupProbeInterval{1000};
constexpr std::chrono::milliseconds kRunStep{100};

std::string Seconds(Clock::Duration d) {
  const double s = std::chrono::duration<double>(d).count();
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.1fs", s);
  return buf;
}

// What an error body says: a Status object's message, or kube-apiserver's /readyz lines for the
// checks that failed ("[-]etcd failed: reason withheld"), else the start of the body.
std::string BodyReason(const std::string& body) {
  json status = json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (status.is_object()) {
    auto message = status.find("message");
    if (message != status.end() && message->is_string()) {
      return message->get<std::string>().substr(0, kReasonBytes);
    }
  }
  std::string failed;
  size_t start = 0;
  while (start < body.size()) {
    size_t end = body.find('\n', start);
    if (end == std::string::npos) end = body.size();
    std::string_view line(body.data() + start, end - start);
    if (line.starts_with("[-]")) {
      if (!failed.empty()) failed += "; ";
      failed += line.substr(3);
    }
    start = end + 1;
  }
  std::string reason = failed.empty() ? body : failed;
  while (!reason.empty() && (reason.back() == '\n' || reason.back() == ' ')) reason.pop_back();
  return reason.substr(0, kReasonBytes);
}

// The transport's message without the request path, which can name objects: "GET /apis/...
// to https://host:port: Read error" becomes "GET request to https://host:port: Read error".
std::string WithoutPath(std::string message, std::string_view method,
                        const std::string& path_and_query) {
  const std::string what = std::string(method) + " " + path_and_query;
  if (auto at = message.find(what); at != std::string::npos) {
    message.replace(at, what.size(), std::string(method) + " request");
  }
  return message;
}

}  // namespace

ApiHealth::ApiHealth(ApiHealthOptions options, ApiHealthObserver* observer)
    : options_(std::move(options)),
      clock_(options_.clock != nullptr ? options_.clock : Clock::Real()),
      observer_(observer) {}

Clock::Duration::rep ApiHealth::NowTicks() const {
  const Clock::Duration::rep now = clock_->Now().time_since_epoch().count();
  return now == kNever ? now + 1 : now;
}

void ApiHealth::RecordContact() {
  last_contact_.store(NowTicks(), std::memory_order_relaxed);
  if (observer_ != nullptr) observer_->OnContact();
}

void ApiHealth::RecordFailure(std::string_view reason) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    last_error_.assign(reason);
    last_error_at_ = NowTicks();
  }
  if (observer_ != nullptr) observer_->OnFailure();
}

Status ApiHealth::Check() const { return CheckAt(NowTicks()); }

Status ApiHealth::CheckAt(Clock::Duration::rep now) const {
  const Clock::Duration::rep contact = last_contact_.load(std::memory_order_relaxed);
  if (contact != kNever) {
    if (options_.unready_after.count() <= 0) return Status::Ok();
    const Clock::Duration since(now - contact);
    if (since < options_.unready_after) return Status::Ok();
  }
  std::string error;
  Clock::Duration::rep error_at = kNever;
  {
    std::lock_guard<std::mutex> lock(mu_);
    error = last_error_;
    error_at = last_error_at_;
  }
  std::string message;
  if (contact == kNever) {
    message = "kubernetes API not reached yet";
  } else {
    message = "kubernetes API unreachable: last contact " +
              Seconds(Clock::Duration(now - contact)) + " ago (not ready after " +
              Seconds(options_.unready_after) + ")";
  }
  if (error_at != kNever) {
    message += "; last error " + Seconds(Clock::Duration(now - error_at)) + " ago: " + error;
  }
  return Status::Unavailable(std::move(message));
}

bool ApiHealth::Tick(ApiTransport& transport) {
  const Clock::Duration::rep now = NowTicks();
  const Clock::Duration::rep contact = last_contact_.load(std::memory_order_relaxed);
  const Clock::Duration interval =
      contact == kNever ? std::min<Clock::Duration>(options_.probe_interval, kStartupProbeInterval)
                        : Clock::Duration(options_.probe_interval);
  bool due = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    const bool probe_recent =
        last_probe_at_ != kNever && Clock::Duration(now - last_probe_at_) < interval;
    const bool traffic_recent = contact != kNever && Clock::Duration(now - contact) < interval;
    due = !probe_recent && !traffic_recent;
    if (due) last_probe_at_ = now;
  }
  if (due) {
    Result<HttpResponse> response = transport.Request("GET", options_.probe_path, "", "");
    if (!response.ok()) {
      RecordFailure(response.status().message());
    } else if (response->status >= 500) {
      RecordFailure("GET " + options_.probe_path + " answered " + std::to_string(response->status) +
                    ": " + BodyReason(response->body));
    } else {
      RecordContact();
    }
  }

  // Log readiness changes here, on one thread, rather than in Check() (called per /readyz).
  const Status status = Check();
  std::lock_guard<std::mutex> lock(mu_);
  const bool reached = last_contact_.load(std::memory_order_relaxed) != kNever;
  if (reached && !logged_first_contact_) {
    logged_first_contact_ = true;
    log::Info("kubernetes API reachable", {{"probe_path", options_.probe_path}});
  }
  if (!status.ok() && reached && !reported_unready_) {
    reported_unready_ = true;
    log::Warn("kubernetes API unreachable for too long; /readyz answers 503",
              {{"reason", status.message()}});
  } else if (status.ok() && reported_unready_) {
    reported_unready_ = false;
    log::Info("kubernetes API reachable again; /readyz follows the other checks");
  }
  return due;
}

void ApiHealth::Run(ApiTransport& transport, const std::atomic<bool>& stop) {
  while (!stop.load()) {
    Tick(transport);
    std::this_thread::sleep_for(kRunStep);
  }
}

HealthRecordingTransport::HealthRecordingTransport(std::shared_ptr<ApiTransport> inner,
                                                   std::shared_ptr<ApiHealth> health)
    : inner_(std::move(inner)), health_(std::move(health)) {}

Result<HttpResponse> HealthRecordingTransport::Request(std::string_view method,
                                                       const std::string& path_and_query,
                                                       const std::string& body,
                                                       std::string_view content_type) {
  Result<HttpResponse> response = inner_->Request(method, path_and_query, body, content_type);
  if (!response.ok()) {
    // TooLarge and InvalidArgument are about the request or the answer's size, not the server.
    if (response.status().code() == Status::Code::kUnavailable) {
      health_->RecordFailure(WithoutPath(response.status().message(), method, path_and_query));
    }
  } else if (response->status >= 500) {
    health_->RecordFailure(std::string(method) + " request answered " +
                           std::to_string(response->status) + ": " + BodyReason(response->body));
  } else {
    health_->RecordContact();
  }
  return response;
}

Status HealthRecordingTransport::Stream(std::string_view method, const std::string& path_and_query,
                                        const std::atomic<bool>& stop,
                                        const std::function<bool(int status)>& on_status,
                                        const std::function<bool(std::string_view)>& on_chunk) {
  int answered = 0;
  Status s = inner_->Stream(
      method, path_and_query, stop,
      [&](int status) {
        answered = status;
        if (status >= 500) {
          health_->RecordFailure(std::string(method) + " stream answered " +
                                 std::to_string(status));
        } else {
          health_->RecordContact();
        }
        return on_status(status);
      },
      [&](std::string_view chunk) {
        if (answered < 500) health_->RecordContact();
        return on_chunk(chunk);
      });
  if (!s.ok() && !stop.load() && s.code() == Status::Code::kUnavailable) {
    health_->RecordFailure(WithoutPath(s.message(), method, path_and_query));
  }
  return s;
}

}  // namespace bg::kube
