// `backup-guard uninstall -o json`: one JSON object per line on stdout, for machines (SPEC.md
// "Uninstall": "-o json prints one JSON event per line"). Every event has "event" (its type) and
// "time" (RFC 3339, UTC, milliseconds); the types and their fields are documented in README.md
// ("uninstall -o json"):
//
//   plan      the kinds in order, with how many objects each has, before anything is written
//   progress  per-kind remaining counts, elapsed time and rate, every --progress-interval
//   blocker   an object that holds (or, in a dry run, would hold) the uninstall, or a group of
//             failed writes that are being retried
//   webhook   an admission webhook that refused writes (or would, in --dry-run=server), could not
//             be called, or whose endpoint does not answer
//   done      the exit code and what it means, the last line
//
// Thread-safety: Write may be called from many threads; each event is one whole line.
#pragma once

#include <chrono>
#include <mutex>
#include <nlohmann/json.hpp>
#include <ostream>
#include <string>
#include <string_view>

namespace bg::processor {

class UninstallEvents {
 public:
  explicit UninstallEvents(std::ostream& out) : out_(out) {}

  UninstallEvents(const UninstallEvents&) = delete;
  UninstallEvents& operator=(const UninstallEvents&) = delete;

  // Writes {"event": type, "time": now, ...fields} and a newline, and flushes.
  void Write(std::string_view type, const nlohmann::json& fields);

 private:
  std::mutex mu_;
  std::ostream& out_;
};

// "2026-01-31T12:00:00.123Z" for `t`.
std::string Rfc3339Millis(std::chrono::system_clock::time_point t);

}  // namespace bg::processor
