#include "tests/testing/fake_transport.h"

#include <thread>

namespace bg::testing {

void FakeTransport::Answer(const std::string& path, int status, const std::string& body) {
  std::lock_guard<std::mutex> lock(mu_);
  by_path_.insert_or_assign(path, Result<kube::HttpResponse>(kube::HttpResponse{status, body}));
}

void FakeTransport::Fail(const std::string& path, Status status) {
  std::lock_guard<std::mutex> lock(mu_);
  by_path_.insert_or_assign(path, Result<kube::HttpResponse>(std::move(status)));
}

void FakeTransport::SetHandler(Handler handler) {
  std::lock_guard<std::mutex> lock(mu_);
  handler_ = std::move(handler);
}

void FakeTransport::AnswerAll(kube::HttpResponse response) {
  std::lock_guard<std::mutex> lock(mu_);
  standing_ = std::move(response);
}

void FakeTransport::FailAll(Status status) {
  std::lock_guard<std::mutex> lock(mu_);
  standing_ = std::move(status);
}

void FakeTransport::Script(StreamScript script) {
  std::lock_guard<std::mutex> lock(mu_);
  scripts_.push_back(std::move(script));
}

void FakeTransport::ScriptAll(StreamScript script) {
  std::lock_guard<std::mutex> lock(mu_);
  standing_script_ = std::move(script);
}

void FakeTransport::Takes(kube::Clock::Duration takes, kube::Clock::Duration body_takes) {
  std::lock_guard<std::mutex> lock(mu_);
  takes_ = takes;
  body_takes_ = body_takes;
}

void FakeTransport::Block(bool block) {
  std::lock_guard<std::mutex> lock(mu_);
  block_ = block;
  cv_.notify_all();
}

void FakeTransport::WaitBlocked() {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait(lock, [this] { return blocked_; });
}

std::vector<FakeTransport::Recorded> FakeTransport::requests() {
  std::lock_guard<std::mutex> lock(mu_);
  return requests_;
}

std::vector<std::string> FakeTransport::request_lines() {
  std::vector<std::string> out;
  for (const Recorded& r : requests()) out.push_back(r.method + " " + r.path);
  return out;
}

std::size_t FakeTransport::count() { return requests().size(); }

std::vector<FakeTransport::Recorded> FakeTransport::streams() {
  std::lock_guard<std::mutex> lock(mu_);
  return streams_;
}

Result<kube::HttpResponse> FakeTransport::Request(std::string_view method,
                                                  const std::string& path_and_query,
                                                  const std::string& body,
                                                  std::string_view content_type) {
  Recorded r{std::string(method), path_and_query, body, std::string(content_type)};
  Handler handler;
  std::optional<Result<kube::HttpResponse>> answer;
  {
    std::unique_lock<std::mutex> lock(mu_);
    requests_.push_back(r);
    Pass(takes_);
    if (block_) {
      blocked_ = true;
      cv_.notify_all();
      cv_.wait(lock, [this] { return !block_; });
    }
    if (auto it = by_path_.find(path_and_query); it != by_path_.end()) {
      answer = it->second;
    } else if (handler_) {
      handler = handler_;
    } else {
      answer = standing_;
    }
  }
  if (answer) return *std::move(answer);
  return handler(r);  // unlocked: a handler may call back into the transport
}

Status FakeTransport::Stream(std::string_view method, const std::string& path_and_query,
                             const std::atomic<bool>& stop,
                             const std::function<bool(int)>& on_status,
                             const std::function<bool(std::string_view)>& on_chunk) {
  StreamScript script;
  kube::Clock::Duration body_takes;
  {
    std::lock_guard<std::mutex> lock(mu_);
    streams_.push_back(Recorded{std::string(method), path_and_query, "", ""});
    if (!scripts_.empty()) {
      script = std::move(scripts_.front());
      scripts_.erase(scripts_.begin());
    } else {
      script = standing_script_;
    }
    Pass(takes_);
    body_takes = body_takes_;
  }
  if (stop.load()) return Status::Ok();
  if (script.status == 0) return script.error;
  if (!on_status(script.status)) return Status::Ok();
  Pass(body_takes);
  for (const std::string& chunk : script.chunks) {
    if (stop.load()) return Status::Ok();
    ++chunks_delivered_;
    if (!on_chunk(chunk)) return Status::Ok();
  }
  if (stop.load()) return Status::Ok();
  if (!script.error.ok()) return script.error;
  // A held stream sends nothing more; the stop flag ends it, as a transport's watchdog does.
  while (script.hold_open && !stop.load()) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return Status::Ok();
}

}  // namespace bg::testing
