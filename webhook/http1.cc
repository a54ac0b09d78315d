#include "webhook/http1.h"

#include <algorithm>
#include <cctype>
#include <charconv>

namespace bg::webhook::http1 {
namespace {

// The longest chunk-size line we read: 16 hex digits plus room for chunk extensions.
constexpr std::size_t kMaxChunkLine = 1024;
// Trailer fields after the last chunk; nobody sends them to a webhook, so a small cap suffices.
constexpr std::size_t kMaxTrailerBytes = std::size_t{8} * 1024;

bool IsTokenChar(char c) {
  if (std::isalnum(static_cast<unsigned char>(c))) return true;
  switch (c) {
    case '!':
    case '#':
    case '$':
    case '%':
    case '&':
    case '\'':
    case '*':
    case '+':
    case '-':
    case '.':
    case '^':
    case '_':
    case '`':
    case '|':
    case '~':
      return true;
    default:
      return false;
  }
}

std::string Lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// Whether a comma-separated header value lists `token` (case-insensitive).
bool HasToken(std::string_view value, std::string_view token) {
  while (!value.empty()) {
    const std::size_t comma = value.find(',');
    std::string_view item = Trim(value.substr(0, comma));
    if (Lower(item) == token) return true;
    if (comma == std::string_view::npos) break;
    value.remove_prefix(comma + 1);
  }
  return false;
}

bool ParseDecimal(std::string_view s, std::size_t* out) {
  if (s.empty() || s.size() > 19) return false;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
  }
  return std::from_chars(s.data(), s.data() + s.size(), *out).ec == std::errc();
}

}  // namespace

std::string_view Request::Header(std::string_view lower_name) const {
  for (const auto& [name, value] : headers) {
    if (name == lower_name) return value;
  }
  return {};
}

RequestParser::Progress RequestParser::Fail(int status, std::string message) {
  error_status_ = status;
  error_message_ = std::move(message);
  return Progress::kError;
}

RequestParser::Progress RequestParser::Consume(std::string& buffer) {
  if (error_status_ != 0) return Progress::kError;
  if (state_ == State::kDone) return Progress::kComplete;
  if (state_ == State::kHeaders) {
    // Blank lines before a request line are allowed (RFC 9112 section 2.2).
    if (!started_) {
      std::size_t skip = 0;
      while (skip + 1 < buffer.size() && buffer[skip] == '\r' && buffer[skip + 1] == '\n')
        skip += 2;
      buffer.erase(0, skip);
      if (buffer == "\r") return Progress::kNeedMore;  // a blank line cut after its CR
      if (!buffer.empty()) started_ = true;
    }
    const std::size_t from = scanned_ >= 3 ? scanned_ - 3 : 0;
    const std::size_t end = buffer.find("\r\n\r\n", from);
    if (end == std::string::npos) {
      scanned_ = buffer.size();
      if (buffer.size() > limits_.max_header_bytes) {
        return Fail(
            431, "request headers exceed " + std::to_string(limits_.max_header_bytes) + " bytes");
      }
      return Progress::kNeedMore;
    }
    if (end + 4 > limits_.max_header_bytes) {
      return Fail(431,
                  "request headers exceed " + std::to_string(limits_.max_header_bytes) + " bytes");
    }
    if (Progress p = ParseHead(std::string_view(buffer).substr(0, end + 2));
        p == Progress::kError) {
      return p;
    }
    buffer.erase(0, end + 4);
    scanned_ = 0;
  }
  if (state_ == State::kBody) {
    const std::size_t take = std::min(body_left_, buffer.size());
    AppendBody(buffer, 0, take);
    buffer.erase(0, take);
    body_left_ -= take;
    if (take > 0) expect_continue_ = false;
    if (body_left_ == 0) state_ = State::kDone;
  } else if (state_ != State::kDone) {
    if (Progress p = ConsumeChunked(buffer); p == Progress::kError) return p;
  }
  return state_ == State::kDone ? Progress::kComplete : Progress::kNeedMore;
}

RequestParser::Progress RequestParser::ParseHead(std::string_view head) {
  // Request line: method SP target SP HTTP/1.x CRLF
  const std::size_t line_end = head.find("\r\n");
  std::string_view line = head.substr(0, line_end);
  const std::size_t sp1 = line.find(' ');
  const std::size_t sp2 = sp1 == std::string_view::npos ? sp1 : line.find(' ', sp1 + 1);
  if (sp1 == std::string_view::npos || sp2 == std::string_view::npos || sp1 == 0 ||
      sp2 == sp1 + 1 || line.find(' ', sp2 + 1) != std::string_view::npos) {
    return Fail(400, "malformed request line");
  }
  std::string_view method = line.substr(0, sp1);
  if (!std::all_of(method.begin(), method.end(), IsTokenChar)) {
    return Fail(400, "malformed request method");
  }
  std::string_view version = line.substr(sp2 + 1);
  if (version == "HTTP/1.1") {
    request_.minor_version = 1;
  } else if (version == "HTTP/1.0") {
    request_.minor_version = 0;
  } else if (version.size() == 8 && version.substr(0, 5) == "HTTP/") {
    return Fail(505, "HTTP version not supported: " + std::string(version));
  } else {
    return Fail(400, "malformed request line");
  }
  request_.method = std::string(method);
  request_.target = std::string(line.substr(sp1 + 1, sp2 - sp1 - 1));
  for (char c : request_.target) {
    if (static_cast<unsigned char>(c) <= 0x20 || c == 0x7f) {
      return Fail(400, "malformed request target");
    }
  }
  request_.path = request_.target.substr(0, request_.target.find('?'));

  // Header fields: name ":" OWS value OWS CRLF
  std::string_view rest = head.substr(line_end + 2);
  while (!rest.empty()) {
    const std::size_t eol = rest.find("\r\n");
    std::string_view field = rest.substr(0, eol);
    rest.remove_prefix(eol + 2);
    if (field.front() == ' ' || field.front() == '\t') {
      return Fail(400, "obsolete header line folding is not accepted");
    }
    const std::size_t colon = field.find(':');
    if (colon == std::string_view::npos || colon == 0) return Fail(400, "malformed header field");
    std::string_view name = field.substr(0, colon);
    if (!std::all_of(name.begin(), name.end(), IsTokenChar)) {
      return Fail(400, "malformed header field name");
    }
    std::string_view value = Trim(field.substr(colon + 1));
    for (char c : value) {
      if ((static_cast<unsigned char>(c) < 0x20 && c != '\t') || c == 0x7f) {
        return Fail(400, "control character in header field value");
      }
    }
    request_.headers.emplace_back(Lower(name), std::string(value));
  }

  // Framing. Transfer-Encoding wins over Content-Length in RFC 9112, but a message with both is
  // how request smuggling works, so it is refused.
  std::string_view connection = request_.Header("connection");
  request_.keep_alive = request_.minor_version == 1 ? !HasToken(connection, "close")
                                                    : HasToken(connection, "keep-alive");
  bool has_length = false;
  std::size_t length = 0;
  bool chunked = false;
  for (const auto& [name, value] : request_.headers) {
    if (name == "content-length") {
      std::size_t this_length = 0;
      if (!ParseDecimal(value, &this_length)) return Fail(400, "invalid Content-Length");
      if (has_length && this_length != length) return Fail(400, "conflicting Content-Length");
      has_length = true;
      length = this_length;
    } else if (name == "transfer-encoding") {
      if (chunked || Lower(value) != "chunked") {
        return Fail(501, "unsupported Transfer-Encoding \"" + value + "\": only chunked");
      }
      chunked = true;
    }
  }
  if (chunked && has_length) return Fail(400, "both Content-Length and Transfer-Encoding");
  if (chunked && request_.minor_version == 0) return Fail(400, "chunked body in HTTP/1.0");
  if (has_length && length > limits_.max_body_bytes) {
    return Fail(413, "request body exceeds the limit of " + std::to_string(limits_.max_body_bytes) +
                         " bytes");
  }
  std::string_view expect = request_.Header("expect");
  if (!expect.empty()) {
    if (Lower(expect) != "100-continue")
      return Fail(417, "unsupported Expect: " + std::string(expect));
    expect_continue_ = request_.minor_version == 1 && (chunked || length > 0);
  }
  if (chunked) {
    state_ = State::kChunkSize;
  } else if (length > 0) {
    state_ = State::kBody;
    // Nothing is reserved for the declared length: memory follows the bytes that arrive, so a
    // client that announces 7 MiB and sends nothing costs nothing (the listener's body budget
    // counts the declared length instead).
    body_left_ = length;
  } else {
    state_ = State::kDone;
  }
  return Progress::kNeedMore;
}

RequestParser::Progress RequestParser::ConsumeChunked(std::string& buffer) {
  std::size_t pos = 0;
  Progress result = Progress::kNeedMore;
  while (state_ != State::kDone && result != Progress::kError) {
    if (state_ == State::kChunkSize) {
      const std::size_t eol = buffer.find("\r\n", pos);
      if (eol == std::string::npos) {
        if (buffer.size() - pos > kMaxChunkLine) result = Fail(400, "chunk size line too long");
        break;
      }
      std::string_view line = std::string_view(buffer).substr(pos, eol - pos);
      line = line.substr(0, line.find(';'));  // chunk extensions are ignored
      line = Trim(line);
      std::size_t size = 0;
      if (line.empty() || line.size() > 16 ||
          std::from_chars(line.data(), line.data() + line.size(), size, 16).ptr !=
              line.data() + line.size()) {
        result = Fail(400, "invalid chunk size");
        break;
      }
      pos = eol + 2;
      if (size == 0) {
        state_ = State::kTrailers;
        continue;
      }
      if (size > limits_.max_body_bytes - request_.body.size()) {
        result = Fail(413, "request body exceeds the limit of " +
                               std::to_string(limits_.max_body_bytes) + " bytes");
        break;
      }
      body_left_ = size;
      state_ = State::kChunkData;
      expect_continue_ = false;
    } else if (state_ == State::kChunkData) {
      const std::size_t take = std::min(body_left_, buffer.size() - pos);
      AppendBody(buffer, pos, take);
      pos += take;
      body_left_ -= take;
      if (body_left_ > 0) break;
      state_ = State::kChunkDataEnd;
    } else if (state_ == State::kChunkDataEnd) {
      if (buffer.size() - pos < 2) break;
      if (buffer.compare(pos, 2, "\r\n") != 0) {
        result = Fail(400, "chunk data not followed by CRLF");
        break;
      }
      pos += 2;
      state_ = State::kChunkSize;
    } else {  // kTrailers: fields until an empty line; their content is ignored
      const std::size_t eol = buffer.find("\r\n", pos);
      if (eol == std::string::npos) {
        if (trailer_bytes_ + (buffer.size() - pos) > kMaxTrailerBytes) {
          result = Fail(431, "trailer fields too long");
        }
        break;
      }
      trailer_bytes_ += eol + 2 - pos;
      if (trailer_bytes_ > kMaxTrailerBytes) {
        result = Fail(431, "trailer fields too long");
        break;
      }
      const bool last = eol == pos;
      pos = eol + 2;
      if (last) state_ = State::kDone;
    }
  }
  buffer.erase(0, pos);
  return result;
}

void RequestParser::AppendBody(const std::string& from, std::size_t pos, std::size_t count) {
  std::string& body = request_.body;
  const std::size_t needed = body.size() + count;
  if (needed > body.capacity()) {
    // Doubling keeps appends amortised; the cap keeps the buffer within what was promised, so
    // the memory of a body never exceeds what the body budget charged for it.
    body.reserve(std::min(std::max(needed, body.capacity() * 2), BodyBytesPromised()));
  }
  body.append(from, pos, count);
}

Request RequestParser::Take() {
  Request out = std::move(request_);
  request_ = Request();
  state_ = State::kHeaders;
  scanned_ = 0;
  body_left_ = 0;
  trailer_bytes_ = 0;
  expect_continue_ = false;
  started_ = false;
  return out;
}

const char* ReasonPhrase(int status) {
  switch (status) {
    case 100:
      return "Continue";
    case 200:
      return "OK";
    case 400:
      return "Bad Request";
    case 401:
      return "Unauthorized";
    case 403:
      return "Forbidden";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 408:
      return "Request Timeout";
    case 411:
      return "Length Required";
    case 413:
      return "Content Too Large";
    case 415:
      return "Unsupported Media Type";
    case 417:
      return "Expectation Failed";
    case 422:
      return "Unprocessable Content";
    case 431:
      return "Request Header Fields Too Large";
    case 500:
      return "Internal Server Error";
    case 501:
      return "Not Implemented";
    case 503:
      return "Service Unavailable";
    case 505:
      return "HTTP Version Not Supported";
    default:
      return "Unknown";
  }
}

std::string Serialize(const Response& response) {
  std::string out;
  out.reserve(128 + response.body.size());
  out += "HTTP/1.1 ";
  out += std::to_string(response.status);
  out += ' ';
  out += ReasonPhrase(response.status);
  out += "\r\nContent-Type: ";
  out += response.content_type;
  out += "\r\nContent-Length: ";
  out += std::to_string(response.body.size());
  if (response.close) out += "\r\nConnection: close";
  out += "\r\n\r\n";
  out += response.body;
  return out;
}

}  // namespace bg::webhook::http1
