#include "processor/uninstall_events.h"

#include <ctime>

namespace bg::processor {

std::string Rfc3339Millis(std::chrono::system_clock::time_point t) {
  const std::time_t seconds = std::chrono::system_clock::to_time_t(t);
  const auto millis = std::chrono::duration_cast<std::chrono::milliseconds>(
                          t.time_since_epoch() - std::chrono::seconds(seconds))
                          .count();
  std::tm tm{};
  gmtime_r(&seconds, &tm);
  char buf[40];
  const size_t n = std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%S", &tm);
  std::snprintf(buf + n, sizeof(buf) - n, ".%03dZ", static_cast<int>(millis < 0 ? 0 : millis));
  return buf;
}

void UninstallEvents::Write(std::string_view type, const nlohmann::json& fields) {
  nlohmann::json event = {{"event", type},
                          {"time", Rfc3339Millis(std::chrono::system_clock::now())}};
  if (fields.is_object()) {
    for (auto it = fields.begin(); it != fields.end(); ++it) event[it.key()] = it.value();
  }
  // Names come from the cluster: never let an invalid UTF-8 byte end the stream.
  const std::string line = event.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  std::lock_guard<std::mutex> lock(mu_);
  out_ << line << '\n' << std::flush;
}

}  // namespace bg::processor
