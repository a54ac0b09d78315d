// FakeTransport: an in-memory ApiTransport for unit tests of the kube/ layer. It records every
// exchange, answers requests from a table by exact path, a handler or one standing answer, plays
// streams from scripts, can hold requests until released, and can move a ManualClock by the time
// each exchange takes. The real transport is exercised by kube/transport_test.cc (a local TLS
// server) and the e2e tests.
//
// Thread-safety: every method may be called from any thread.
#pragma once

#include <atomic>
#include <condition_variable>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "kube/clock.h"
#include "kube/transport.h"

namespace bg::testing {

class FakeTransport final : public kube::ApiTransport {
 public:
  struct Recorded {
    std::string method;
    std::string path;  // with the query
    std::string body;
    std::string content_type;
  };
  using Handler = std::function<Result<kube::HttpResponse>(const Recorded&)>;

  // What one streaming exchange answers: `status` (0: no answer arrives and the exchange fails
  // with `error` at once), then the body in `chunks`, then the end: `error` when it is not Ok.
  // With `hold_open` the stream then stays open until its stop flag is set, as an idle watch does.
  struct StreamScript {
    Status error = Status::Ok();
    int status = 200;
    std::vector<std::string> chunks = {};
    bool hold_open = false;
  };

  FakeTransport() = default;
  // Every exchange moves `clock` forward by takes() before it answers, and a stream's body by
  // body_takes() after its status; `clock` must outlive the transport.
  explicit FakeTransport(kube::ManualClock* clock) : clock_(clock) {}
  FakeTransport(const FakeTransport&) = delete;
  FakeTransport& operator=(const FakeTransport&) = delete;

  // A request is answered by the first of: the answer set for its exact path, the handler, the
  // standing answer (200 and an empty object until changed).
  void Answer(const std::string& path, int status, const std::string& body);
  void Fail(const std::string& path, Status status);
  void SetHandler(Handler handler);
  void AnswerAll(kube::HttpResponse response);
  void AnswerAll(int status, const std::string& body) { AnswerAll({status, body}); }
  void FailAll(Status status);

  // Streams play the scripts in the order given; once these are used up, the standing script
  // (status 200, an empty body, Ok until changed).
  void Script(StreamScript script);
  void ScriptAll(StreamScript script);

  void Takes(kube::Clock::Duration takes, kube::Clock::Duration body_takes = {});

  // While blocked, requests wait (after being recorded) until Block(false).
  void Block(bool block);
  // Waits until a request is waiting in Block.
  void WaitBlocked();

  std::vector<Recorded> requests();
  // "METHOD path" of every request, in order.
  std::vector<std::string> request_lines();
  std::size_t count();
  std::vector<Recorded> streams();
  int chunks_delivered() const { return chunks_delivered_.load(); }

  Result<kube::HttpResponse> Request(std::string_view method, const std::string& path_and_query,
                                     const std::string& body,
                                     std::string_view content_type) override;
  Status Stream(std::string_view method, const std::string& path_and_query,
                const std::atomic<bool>& stop, const std::function<bool(int)>& on_status,
                const std::function<bool(std::string_view)>& on_chunk) override;

 private:
  void Pass(kube::Clock::Duration d) {
    if (clock_ != nullptr) clock_->Advance(d);
  }

  kube::ManualClock* const clock_ = nullptr;
  std::mutex mu_;
  std::condition_variable cv_;
  std::map<std::string, Result<kube::HttpResponse>> by_path_;
  Handler handler_;
  Result<kube::HttpResponse> standing_ = kube::HttpResponse{200, "{}"};
  std::vector<StreamScript> scripts_;
  StreamScript standing_script_;
  kube::Clock::Duration takes_{};
  kube::Clock::Duration body_takes_{};
  bool block_ = false;
  bool blocked_ = false;
  std::vector<Recorded> requests_;
  std::vector<Recorded> streams_;
  std::atomic<int> chunks_delivered_{0};
};

}  // namespace bg::testing
