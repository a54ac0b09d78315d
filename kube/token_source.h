// TokenSource: the bearer token sent with each API request.
//
// Bound service-account tokens expire (the kubelet rewrites the projected token file well before
// that), so a token file is re-read when the cached copy is older than the refresh period, as
// client-go does. When a re-read fails the last good token stays in use and the failure is logged
// once per failure streak.
//
// Thread-safety: Token() may be called from many threads at once.
#pragma once

#include <chrono>
#include <mutex>
#include <string>
#include <string_view>

#include "kube/clock.h"

namespace bg::kube {

// client-go re-reads token files every minute; kubelet refreshes projected tokens when 80% of
// their lifetime (at least an hour by default) has passed, so a minute is always early enough.
inline constexpr std::chrono::seconds kTokenFileRefresh{60};

class TokenSource {
 public:
  // `token_file` may be empty (static token only); `static_token` may be empty (file only, or no
  // token at all). `clock` must outlive this object; null means Clock::Real().
  TokenSource(std::string_view static_token, std::string token_file, const Clock* clock = nullptr,
              Clock::Duration refresh = kTokenFileRefresh);

  TokenSource(const TokenSource&) = delete;
  TokenSource& operator=(const TokenSource&) = delete;

  // The token to send, "" for none: the token file's content (trimmed) when it has ever been read,
  // else the static token.
  std::string Token();

 private:
  void ReloadLocked();

  const std::string static_token_;
  const std::string token_file_;
  const Clock* const clock_;
  const Clock::Duration refresh_;

  std::mutex mu_;
  std::string file_token_;        // guarded by mu_; last good content of token_file_
  Clock::TimePoint next_read_{};  // guarded by mu_
  bool read_attempted_ = false;   // guarded by mu_
  bool failing_ = false;          // guarded by mu_; the last read failed (and was logged)
};

}  // namespace bg::kube
