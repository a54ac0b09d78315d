// HTTP/1.1 request parsing and response writing for the admission listener (RFC 9112), without
// I/O: bytes go in, whole requests come out. The parser is incremental, so a body that arrives in
// many TLS records is scanned once, and it refuses what would make two parties frame a message
// differently (Content-Length together with Transfer-Encoding, conflicting lengths, obsolete line
// folding, whitespace before a header colon).
//
// Thread-safety: none; one parser belongs to one connection.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace bg::webhook::http1 {

struct Request {
  std::string method;
  std::string target;  // as sent, query included
  std::string path;    // the target up to '?'
  int minor_version = 1;
  std::vector<std::pair<std::string, std::string>> headers;  // names lower-cased
  std::string body;
  bool keep_alive = true;  // what the client asked for (HTTP/1.0 defaults to close)

  // The first header with this lower-case name, or empty.
  std::string_view Header(std::string_view lower_name) const;
};

struct Response {
  int status = 200;
  std::string content_type = "text/plain";
  std::string body;
  bool close = false;  // say "Connection: close" and close after writing
};

struct Limits {
  // The request line and headers together. Kubernetes sends a few hundred bytes; 64 KiB leaves
  // room for long proxies' headers and is what many servers use.
  std::size_t max_header_bytes = 64 * 1024;
  std::size_t max_body_bytes = 7 * 1024 * 1024;
};

class RequestParser {
 public:
  enum class Progress {
    kNeedMore,  // consumed everything useful; feed more bytes
    kComplete,  // a whole request is ready: Take() it
    kError,     // the request is refused: error_status() and error_message(); close afterwards
  };

  explicit RequestParser(Limits limits) : limits_(limits) {}

  // Consumes bytes from the front of `buffer` that belong to the current request. Bytes after a
  // complete request stay in `buffer` (the next, pipelined request).
  Progress Consume(std::string& buffer);

  // True once the headers of the current request are in and nothing of its body has been read.
  bool HeadersDone() const { return state_ != State::kHeaders; }
  // The client sent "Expect: 100-continue" and waits for a 100 before sending the body.
  bool ExpectsContinue() const { return expect_continue_; }
  // True once any byte of the current request has arrived.
  bool Started() const { return started_; }
  // Body bytes the current request has committed to: those received plus the rest of the declared
  // Content-Length or of the current chunk. What a body budget must cover before more is read.
  std::size_t BodyBytesPromised() const { return request_.body.size() + body_left_; }
  // Bytes the body buffer holds in memory now (its capacity), for tests.
  std::size_t BodyCapacity() const { return request_.body.capacity(); }

  Request Take();  // after kComplete; resets the parser for the next request
  int error_status() const { return error_status_; }
  const std::string& error_message() const { return error_message_; }

 private:
  enum class State { kHeaders, kBody, kChunkSize, kChunkData, kChunkDataEnd, kTrailers, kDone };

  Progress Fail(int status, std::string message);
  Progress ParseHead(std::string_view head);
  Progress ConsumeChunked(std::string& buffer);
  // Appends `count` bytes of `from` at `pos` to the body, growing it by at most what is promised.
  void AppendBody(const std::string& from, std::size_t pos, std::size_t count);

  Limits limits_;
  State state_ = State::kHeaders;
  Request request_;
  std::size_t scanned_ = 0;    // bytes of `buffer` already searched for the end of the head
  std::size_t body_left_ = 0;  // kBody: bytes still to come; kChunkData: of this chunk
  std::size_t trailer_bytes_ = 0;
  bool expect_continue_ = false;
  bool started_ = false;
  int error_status_ = 0;
  std::string error_message_;
};

// The status line, headers and body, ready to write.
std::string Serialize(const Response& response);

// "OK", "Not Found", ...; "Unknown" for a code this server never sends.
const char* ReasonPhrase(int status);

}  // namespace bg::webhook::http1
