#include "kube/exec_credential.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <nlohmann/json.hpp>
#include <set>
#include <utility>
#include <vector>

#include "common/base64.h"
#include "common/log.h"

extern char** environ;  // NOLINT(readability-redundant-declaration): POSIX, not in a header

namespace bg::kube {
namespace {

using nlohmann::json;

// An ExecCredential is a token and perhaps a certificate: a few KiB. Anything this large is not.
constexpr size_t kMaxPluginOutputBytes = size_t{1024} * 1024;

std::string ServerUrl(const ClusterConfig& cluster) {
  const bool v6 = cluster.host.find(':') != std::string::npos;
  return "https://" + (v6 ? "[" + cluster.host + "]" : cluster.host) + ":" +
         std::to_string(cluster.port) + cluster.base_path;
}

// The error `status` with `prefix` in front, of the same kind: a configuration error stays
// InvalidArgument, anything else (a plugin that failed, perhaps for a moment) is Unavailable.
Status Prefixed(const std::string& prefix, const Status& status) {
  if (status.code() == Status::Code::kInvalidArgument) {
    return Status::InvalidArgument(prefix + status.message());
  }
  return Status::Unavailable(prefix + status.message());
}

// Parses exactly `n` digits at `*pos`.
bool Digits(std::string_view text, size_t* pos, size_t n, int* out) {
  if (*pos + n > text.size()) return false;
  int value = 0;
  for (size_t i = 0; i < n; ++i) {
    const char c = text[*pos + i];
    if (c < '0' || c > '9') return false;
    value = value * 10 + (c - '0');
  }
  *pos += n;
  *out = value;
  return true;
}

bool Expect(std::string_view text, size_t* pos, std::string_view one_of) {
  if (*pos >= text.size() || one_of.find(text[*pos]) == std::string_view::npos) return false;
  ++*pos;
  return true;
}

// The environment of a plugin: ours, with the entry's variables and KUBERNETES_EXEC_INFO
// replacing any of the same name.
std::vector<std::string> PluginEnvironment(const ExecConfig& exec, const std::string& exec_info) {
  std::vector<std::pair<std::string, std::string>> extra = exec.env;
  extra.emplace_back("KUBERNETES_EXEC_INFO", exec_info);
  std::set<std::string> replaced;
  for (const auto& [name, value] : extra) replaced.insert(name);
  std::vector<std::string> env;
  for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
    const std::string_view entry(*e);
    const std::string name(entry.substr(0, entry.find('=')));
    if (replaced.count(name) == 0) env.emplace_back(entry);
  }
  // A name set twice in the kubeconfig: the last one wins, as in Go's os/exec.
  for (size_t i = 0; i < extra.size(); ++i) {
    bool later = false;
    for (size_t j = i + 1; j < extra.size(); ++j) later = later || extra[j].first == extra[i].first;
    if (!later) env.push_back(extra[i].first + "=" + extra[i].second);
  }
  return env;
}

std::vector<char*> CStrings(std::vector<std::string>& strings) {
  std::vector<char*> out;
  out.reserve(strings.size() + 1);
  for (std::string& s : strings) out.push_back(s.data());
  out.push_back(nullptr);
  return out;
}

}  // namespace

std::string ExecInfoJson(const ExecConfig& exec, const ClusterConfig& cluster, bool interactive) {
  json spec = {{"interactive", interactive}};
  if (exec.provide_cluster_info) {
    json info = {{"server", ServerUrl(cluster)}};
    if (!cluster.ca_pem.empty()) info["certificate-authority-data"] = Base64Encode(cluster.ca_pem);
    if (cluster.insecure_skip_tls_verify) info["insecure-skip-tls-verify"] = true;
    spec["cluster"] = std::move(info);
  }
  return json{{"apiVersion", exec.api_version}, {"kind", "ExecCredential"}, {"spec", spec}}.dump();
}

Result<std::chrono::system_clock::time_point> ParseRfc3339(std::string_view text) {
  const Status bad = Status::InvalidArgument("not an RFC 3339 time: \"" + std::string(text) + "\"");
  size_t pos = 0;
  std::tm tm{};
  int year = 0, month = 0, day = 0, hour = 0, minute = 0, second = 0;
  if (!Digits(text, &pos, 4, &year) || !Expect(text, &pos, "-") || !Digits(text, &pos, 2, &month) ||
      !Expect(text, &pos, "-") || !Digits(text, &pos, 2, &day) || !Expect(text, &pos, "Tt ") ||
      !Digits(text, &pos, 2, &hour) || !Expect(text, &pos, ":") ||
      !Digits(text, &pos, 2, &minute) || !Expect(text, &pos, ":") ||
      !Digits(text, &pos, 2, &second)) {
    return bad;
  }
  if (month < 1 || month > 12 || day < 1 || day > 31 || hour > 23 || minute > 59 || second > 60) {
    return bad;
  }
  std::chrono::nanoseconds fraction{0};
  if (pos < text.size() && text[pos] == '.') {
    ++pos;
    const size_t start = pos;
    int64_t nanos = 0;
    int digits = 0;
    while (pos < text.size() && text[pos] >= '0' && text[pos] <= '9') {
      if (digits < 9) {
        nanos = nanos * 10 + (text[pos] - '0');
        ++digits;
      }
      ++pos;
    }
    if (pos == start) return bad;
    for (; digits < 9; ++digits) nanos *= 10;
    fraction = std::chrono::nanoseconds(nanos);
  }
  int offset_seconds = 0;
  if (Expect(text, &pos, "Zz")) {
    // UTC
  } else if (pos < text.size() && (text[pos] == '+' || text[pos] == '-')) {
    const int sign = text[pos] == '-' ? -1 : 1;
    ++pos;
    int oh = 0, om = 0;
    if (!Digits(text, &pos, 2, &oh) || !Expect(text, &pos, ":") || !Digits(text, &pos, 2, &om) ||
        oh > 23 || om > 59) {
      return bad;
    }
    offset_seconds = sign * (oh * 3600 + om * 60);
  } else {
    return bad;
  }
  if (pos != text.size()) return bad;
  tm.tm_year = year - 1900;
  tm.tm_mon = month - 1;
  tm.tm_mday = day;
  tm.tm_hour = hour;
  tm.tm_min = minute;
  tm.tm_sec = second;
  const time_t utc = timegm(&tm);
  return std::chrono::system_clock::from_time_t(utc - offset_seconds) +
         std::chrono::duration_cast<std::chrono::system_clock::duration>(fraction);
}

Result<ExecCredential> ParseExecCredential(std::string_view output, std::string_view api_version) {
  json doc = json::parse(output, nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded() || !doc.is_object()) {
    return Status::Unavailable("the plugin did not print an ExecCredential (JSON) object");
  }
  const json api = doc.value("apiVersion", json());
  if (api != api_version) {
    return Status::Unavailable("the plugin answered apiVersion " +
                               api.dump(-1, ' ', false, json::error_handler_t::replace) +
                               ", configured \"" + std::string(api_version) + "\"");
  }
  if (doc.value("kind", json()) != "ExecCredential") {
    return Status::Unavailable(
        "the plugin answered kind " +
        doc.value("kind", json()).dump(-1, ' ', false, json::error_handler_t::replace) +
        ", want \"ExecCredential\"");
  }
  auto status = doc.find("status");
  if (status == doc.end() || !status->is_object()) {
    return Status::Unavailable("the plugin's ExecCredential has no status");
  }
  ExecCredential credential;
  const json token = status->value("token", json());
  if (!token.is_null() && !token.is_string()) {
    return Status::Unavailable("the plugin's status.token is not a string");
  }
  if (token.is_string()) credential.token = token.get<std::string>();
  if (credential.token.empty()) {
    if (status->contains("clientCertificateData") || status->contains("clientKeyData")) {
      return Status::InvalidArgument(
          "the plugin answered with a client certificate; only tokens from exec plugins are "
          "supported");
    }
    return Status::Unavailable("the plugin's ExecCredential has no status.token");
  }
  const json expiry = status->value("expirationTimestamp", json());
  if (!expiry.is_null()) {
    if (!expiry.is_string()) {
      return Status::Unavailable("the plugin's status.expirationTimestamp is not a string");
    }
    Result<std::chrono::system_clock::time_point> when = ParseRfc3339(expiry.get<std::string>());
    if (!when.ok()) {
      return Status::Unavailable("the plugin's status.expirationTimestamp: " +
                                 when.status().message());
    }
    credential.expiry = when.value();
  }
  return credential;
}

Result<bool> ExecInteractive(ExecInteractiveMode mode, bool stdin_is_terminal) {
  switch (mode) {
    case ExecInteractiveMode::kNever:
      return false;
    case ExecInteractiveMode::kIfAvailable:
      return stdin_is_terminal;
    case ExecInteractiveMode::kAlways:
      if (!stdin_is_terminal) {
        return Status::InvalidArgument(
            "interactiveMode is Always, but standard input is not a terminal");
      }
      return true;
  }
  return false;
}

Result<std::string> RunExecPlugin(const ExecConfig& exec, const std::string& exec_info,
                                  bool interactive, std::chrono::milliseconds timeout) {
  const std::string what = "exec plugin " + exec.command;
  int out[2];
  if (::pipe2(out, O_CLOEXEC) != 0) {
    return Status::Unavailable(what + ": pipe: " + std::strerror(errno));
  }
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  // Not interactive: the plugin must not wait for input that never comes (client-go gives it
  // none either).
  if (!interactive) posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&actions, out[1], 1);  // the copy on fd 1 is not close-on-exec

  std::vector<std::string> argv_strings = {exec.command};
  argv_strings.insert(argv_strings.end(), exec.args.begin(), exec.args.end());
  std::vector<std::string> env_strings = PluginEnvironment(exec, exec_info);
  std::vector<char*> argv = CStrings(argv_strings);
  std::vector<char*> envp = CStrings(env_strings);
  pid_t pid = 0;
  const int spawned =
      posix_spawnp(&pid, exec.command.c_str(), &actions, nullptr, argv.data(), envp.data());
  posix_spawn_file_actions_destroy(&actions);
  ::close(out[1]);
  if (spawned != 0) {
    ::close(out[0]);
    std::string message = what + ": cannot run it: " + std::strerror(spawned);
    if (spawned == ENOENT && !exec.install_hint.empty()) message += "\n" + exec.install_hint;
    return Status::InvalidArgument(std::move(message));
  }

  std::string output;
  bool too_large = false;
  bool timed_out = false;
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (true) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      timed_out = true;
      break;
    }
    pollfd pfd{out[0], POLLIN, 0};
    const int ready = ::poll(&pfd, 1, static_cast<int>(std::min<int64_t>(left.count(), 1000)));
    if (ready < 0 && errno != EINTR) break;
    if (ready <= 0) continue;
    char buf[4096];
    const ssize_t n = ::read(out[0], buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    if (output.size() + static_cast<size_t>(n) > kMaxPluginOutputBytes) {
      too_large = true;
      break;
    }
    output.append(buf, static_cast<size_t>(n));
  }
  ::close(out[0]);
  if (timed_out || too_large) ::kill(pid, SIGKILL);
  int wait_status = 0;
  while (::waitpid(pid, &wait_status, 0) < 0 && errno == EINTR) {
  }
  if (timed_out) {
    return Status::Unavailable(what + ": no answer within " +
                               std::to_string(timeout.count() / 1000) + " s; stopped it");
  }
  if (too_large) {
    return Status::Unavailable(what + ": printed more than " +
                               std::to_string(kMaxPluginOutputBytes) + " bytes");
  }
  if (WIFSIGNALED(wait_status)) {
    return Status::Unavailable(what + ": killed by signal " +
                               std::to_string(WTERMSIG(wait_status)));
  }
  if (WIFEXITED(wait_status) && WEXITSTATUS(wait_status) != 0) {
    std::string message = what + ": exited with status " + std::to_string(WEXITSTATUS(wait_status));
    if (WEXITSTATUS(wait_status) == 127 && !exec.install_hint.empty()) {
      message += "\n" + exec.install_hint;
    }
    return Status::Unavailable(std::move(message));
  }
  return output;
}

ExecCredentialSource::ExecCredentialSource(ExecConfig exec, ClusterConfig cluster,
                                           const Clock* clock, Runner runner,
                                           std::optional<bool> stdin_is_terminal)
    : exec_(std::move(exec)),
      cluster_(std::move(cluster)),
      clock_(clock != nullptr ? clock : Clock::Real()),
      runner_(std::move(runner)),
      stdin_is_terminal_(stdin_is_terminal.value_or(::isatty(STDIN_FILENO) == 1)) {}

Result<std::string> ExecCredentialSource::Token() {
  std::lock_guard<std::mutex> lock(mu_);
  if (!token_.empty() && (!expires_ || clock_->Now() < *expires_)) return token_;
  const std::string prefix = exec_.where + ": ";
  Result<bool> interactive = ExecInteractive(exec_.interactive_mode, stdin_is_terminal_);
  if (!interactive.ok()) return Prefixed(prefix, interactive.status());
  const std::string info = ExecInfoJson(exec_, cluster_, interactive.value());
  ++runs_;
  Result<std::string> output =
      runner_
          ? runner_(exec_, info, interactive.value())
          : RunExecPlugin(exec_, info, interactive.value(),
                          interactive.value() ? kInteractiveExecPluginTimeout : kExecPluginTimeout);
  if (!output.ok()) return Prefixed(prefix, output.status());
  Result<ExecCredential> credential = ParseExecCredential(output.value(), exec_.api_version);
  if (!credential.ok()) {
    return Prefixed(prefix + "exec plugin " + exec_.command + ": ", credential.status());
  }
  token_ = credential->token;
  expires_.reset();
  nlohmann::json fields = {{"command", exec_.command}, {"runs", runs_}};
  if (credential->expiry) {
    // The plugin speaks wall-clock time; the cache runs on the monotonic clock.
    const auto left = *credential->expiry - std::chrono::system_clock::now();
    expires_ = clock_->Now() + std::chrono::duration_cast<Clock::Duration>(left);
    fields["expires_in_seconds"] = std::chrono::duration_cast<std::chrono::seconds>(left).count();
  }
  log::Info("exec credential plugin gave a token", fields);
  return token_;
}

void ExecCredentialSource::Unauthorized(const std::string& token) {
  std::lock_guard<std::mutex> lock(mu_);
  if (token.empty() || token != token_) return;
  log::Info("the API server refused the exec plugin's token; it runs again on the next request",
            {{"command", exec_.command}});
  token_.clear();
  expires_.reset();
}

int ExecCredentialSource::runs() const {
  std::lock_guard<std::mutex> lock(mu_);
  return runs_;
}

}  // namespace bg::kube
