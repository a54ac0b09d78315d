#include "kube/token_source.h"

#include <utility>

#include "common/log.h"
#include "kube/file_util.h"

namespace bg::kube {
namespace {

// A JWT is a few KiB; anything much larger is not a token.
constexpr size_t kMaxTokenBytes = size_t{64} * 1024;

std::string Trim(std::string_view s) {
  const char* kSpace = " \t\r\n";
  const size_t begin = s.find_first_not_of(kSpace);
  if (begin == std::string_view::npos) return "";
  const size_t end = s.find_last_not_of(kSpace);
  return std::string(s.substr(begin, end - begin + 1));
}

}  // namespace

TokenSource::TokenSource(std::string_view static_token, std::string token_file, const Clock* clock,
                         Clock::Duration refresh)
    : static_token_(Trim(static_token)),
      token_file_(std::move(token_file)),
      clock_(clock != nullptr ? clock : Clock::Real()),
      refresh_(refresh) {}

std::string TokenSource::Token() {
  if (token_file_.empty()) return static_token_;
  std::lock_guard<std::mutex> lock(mu_);
  if (!read_attempted_ || clock_->Now() >= next_read_) ReloadLocked();
  return file_token_.empty() ? static_token_ : file_token_;
}

void TokenSource::ReloadLocked() {
  read_attempted_ = true;
  next_read_ = clock_->Now() + refresh_;
  Result<std::string> content = ReadFileToString(token_file_, kMaxTokenBytes);
  std::string token = content.ok() ? Trim(content.value()) : "";
  if (!token.empty()) {
    if (failing_) log::Info("bearer token file readable again", {{"path", token_file_}});
    failing_ = false;
    file_token_ = std::move(token);
    return;
  }
  if (!failing_) {
    log::Warn("cannot read bearer token file; keeping the last good token",
              {{"path", token_file_},
               {"error", content.ok() ? "file is empty" : content.status().message()}});
  }
  failing_ = true;
}

}  // namespace bg::kube
