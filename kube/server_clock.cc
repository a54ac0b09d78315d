#include "kube/server_clock.h"

#include <array>
#include <charconv>
#include <ctime>
#include <string>

namespace bg::kube {
namespace {

// The number at text[pos, pos + len), all digits, or -1.
int Digits(std::string_view text, size_t pos, size_t len) {
  if (pos + len > text.size()) return -1;
  int value = 0;
  const char* begin = text.data() + pos;
  const auto [end, ec] = std::from_chars(begin, begin + len, value);
  return ec == std::errc() && end == begin + len ? value : -1;
}

}  // namespace

std::optional<std::chrono::system_clock::time_point> ParseHttpDate(std::string_view text) {
  // "Sun, 06 Nov 1994 08:49:37 GMT": 29 characters, every field at a fixed place.
  static constexpr std::array<std::string_view, 7> kDays = {"Sun", "Mon", "Tue", "Wed",
                                                            "Thu", "Fri", "Sat"};
  static constexpr std::array<std::string_view, 12> kMonths = {
      "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  if (text.size() != 29 || text.substr(3, 2) != ", " || text[7] != ' ' || text[11] != ' ' ||
      text[16] != ' ' || text[19] != ':' || text[22] != ':' || text.substr(25) != " GMT") {
    return std::nullopt;
  }
  bool day_known = false;
  for (std::string_view d : kDays) day_known = day_known || text.substr(0, 3) == d;
  int month = -1;
  for (size_t i = 0; i < kMonths.size(); ++i) {
    if (text.substr(8, 3) == kMonths[i]) month = static_cast<int>(i);
  }
  const int mday = Digits(text, 5, 2), year = Digits(text, 12, 4), hour = Digits(text, 17, 2),
            min = Digits(text, 20, 2), sec = Digits(text, 23, 2);
  if (!day_known || month < 0 || mday < 1 || mday > 31 || year < 1970 || hour < 0 || hour > 23 ||
      min < 0 || min > 59 || sec < 0 || sec > 60) {
    return std::nullopt;
  }
  std::tm tm{};
  tm.tm_year = year - 1900;
  tm.tm_mon = month;
  tm.tm_mday = mday;
  tm.tm_hour = hour;
  tm.tm_min = min;
  tm.tm_sec = sec;
  const std::time_t t = timegm(&tm);
  if (t == static_cast<std::time_t>(-1) || tm.tm_mday != mday) return std::nullopt;  // 31 Feb
  return std::chrono::system_clock::from_time_t(t);
}

ServerClock::ServerClock(const Clock* monotonic)
    : monotonic_(monotonic != nullptr ? monotonic : Clock::Real()) {}

void ServerClock::Observe(std::string_view date_header) {
  const auto date = ParseHttpDate(date_header);
  if (!date) return;
  const Clock::TimePoint now = monotonic_->Now();
  std::lock_guard<std::mutex> lock(mu_);
  date_ = date;
  read_at_ = now;
}

std::optional<std::chrono::system_clock::time_point> ServerClock::Now() const {
  const Clock::TimePoint now = monotonic_->Now();
  std::lock_guard<std::mutex> lock(mu_);
  if (!date_) return std::nullopt;
  return *date_ + std::chrono::duration_cast<std::chrono::system_clock::duration>(now - read_at_);
}

}  // namespace bg::kube
