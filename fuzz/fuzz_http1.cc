// fuzz_http1: the admission listener's HTTP/1.1 request parser (webhook/http1), fed a byte stream
// that the input cuts into reads.
//
// Input: a 4-byte chunk seed, then the bytes a client sends on one connection.
//
// Properties, for every input:
//  - no crash, no exception, no unbounded growth: a refused request has a 4xx/5xx status and a
//    message, a body is never longer than the limit, and the buffer left over never grows past
//    what was fed;
//  - the requests and the final refusal do not depend on where the reads were cut: feeding the
//    whole stream at once gives the same sequence;
//  - a request that completes has a non-empty method and a path that starts the target.
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "fuzz/fuzz_check.h"
#include "webhook/http1.h"

namespace {

using bg::webhook::http1::Limits;
using bg::webhook::http1::Request;
using bg::webhook::http1::RequestParser;

struct Outcome {
  std::vector<std::string> requests;  // method, target, body and keep-alive of each, flattened
  int error_status = 0;
};

std::string Flatten(const Request& r) {
  std::string out = r.method + '\n' + r.target + '\n' + std::to_string(r.body.size()) + '\n' +
                    r.body + (r.keep_alive ? "\nka" : "\nclose");
  for (const auto& [name, value] : r.headers) out += '\n' + name + ':' + value;
  return out;
}

Outcome Parse(const std::string& stream, uint32_t seed, bool one_piece) {
  Limits limits;
  limits.max_header_bytes = 2048;
  limits.max_body_bytes = 4096;
  RequestParser parser(limits);
  Outcome outcome;
  std::string buffer;
  std::size_t pos = 0;
  uint32_t state = seed | 1;
  while (pos < stream.size()) {
    std::size_t take = stream.size() - pos;
    if (!one_piece) {
      state = state * 1103515245u + 12345u;
      take = std::min<std::size_t>(take, 1 + (state >> 16) % 64);
    }
    buffer.append(stream, pos, take);
    pos += take;
    for (;;) {
      const auto progress = parser.Consume(buffer);
      BG_FUZZ_CHECK(buffer.size() <= stream.size(), "the buffer grew past the input");
      if (progress == RequestParser::Progress::kNeedMore) break;
      if (progress == RequestParser::Progress::kError) {
        BG_FUZZ_CHECK(parser.error_status() >= 400 && parser.error_status() < 600,
                      std::to_string(parser.error_status()));
        BG_FUZZ_CHECK(!parser.error_message().empty(), "a refusal without a message");
        outcome.error_status = parser.error_status();
        return outcome;
      }
      Request request = parser.Take();
      BG_FUZZ_CHECK(!request.method.empty(), "a request without a method");
      BG_FUZZ_CHECK(request.target.compare(0, request.path.size(), request.path) == 0,
                    "the path is not the start of the target");
      BG_FUZZ_CHECK(request.body.size() <= limits.max_body_bytes, "a body over the limit");
      outcome.requests.push_back(Flatten(request));
    }
  }
  return outcome;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 4) return 0;
  const uint32_t seed = static_cast<uint32_t>(data[0]) | static_cast<uint32_t>(data[1]) << 8 |
                        static_cast<uint32_t>(data[2]) << 16 | static_cast<uint32_t>(data[3]) << 24;
  const std::string stream(reinterpret_cast<const char*>(data) + 4, size - 4);
  const Outcome cut = Parse(stream, seed, /*one_piece=*/false);
  const Outcome whole = Parse(stream, seed, /*one_piece=*/true);
  BG_FUZZ_CHECK(cut.requests == whole.requests, "requests differ with the reads cut differently (" +
                                                    std::to_string(cut.requests.size()) + " vs " +
                                                    std::to_string(whole.requests.size()) + ")");
  BG_FUZZ_CHECK(cut.error_status == whole.error_status,
                "refusal differs: " + std::to_string(cut.error_status) + " vs " +
                    std::to_string(whole.error_status));
  return 0;
}
