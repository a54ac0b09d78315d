// fuzz_watch_lines: watch-stream bodies through RestKubeApi::Watch, fed by a fake ApiTransport in
// chunks whose boundaries the input chooses.
//
// Input: an 8-byte header, then the response body.
//   byte 0   HTTP status: below 208 it is 200, else one of 401, 403, 410, 500, 503
//   byte 1   max_watch_event_bytes: below 128 the default, else 16 * (byte - 127)
//   byte 2   the caller stops after this many events (0: never)
//   byte 3   bit 0: the connection breaks after the body; bit 1: stop by returning false from
//            on_event instead of setting the stop flag
//   bytes 4-7  seed of the chunk boundaries
// (fuzz/make-seeds.sh writes seeds in this form.)
//
// Properties, for every input:
//  - no crash and no exception escapes Watch;
//  - every event handed over has an object that is a JSON object, and is never an ERROR event;
//  - the k-th event is exactly the k-th non-blank line of the body, parsed (an oracle that splits
//    the body itself);
//  - the events and the outcome do not depend on where the chunks were cut: the same body in one
//    chunk gives the same result;
//  - a non-200 answer hands over no event and returns an error.
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "common/log.h"
#include "domain/kinds.h"
#include "fuzz/fuzz_check.h"
#include "kube/api.h"
#include "kube/rest_api.h"
#include "kube/transport.h"

namespace {

using nlohmann::json;

constexpr size_t kHeaderBytes = 8;

struct Header {
  int status = 200;
  size_t max_event_bytes = 0;  // 0: the default
  unsigned stop_after = 0;
  bool break_connection = false;
  bool stop_by_return = false;
  uint32_t chunk_seed = 0;
};

Header ReadHeader(const uint8_t* data) {
  Header h;
  static constexpr int kErrorStatuses[] = {401, 403, 410, 500, 503};
  h.status = data[0] < 208 ? 200 : kErrorStatuses[data[0] % 5];
  h.max_event_bytes = data[1] < 128 ? 0 : size_t{16} * (data[1] - 127);
  h.stop_after = data[2];
  h.break_connection = (data[3] & 1) != 0;
  h.stop_by_return = (data[3] & 2) != 0;
  h.chunk_seed = static_cast<uint32_t>(data[4]) | static_cast<uint32_t>(data[5]) << 8 |
                 static_cast<uint32_t>(data[6]) << 16 | static_cast<uint32_t>(data[7]) << 24;
  return h;
}

// Answers a watch with `status` and `body`, cut into the given chunks.
class ScriptedTransport final : public bg::kube::ApiTransport {
 public:
  ScriptedTransport(int status, std::vector<std::string_view> chunks, bool break_connection)
      : status_(status), chunks_(std::move(chunks)), break_connection_(break_connection) {}

  bg::Result<bg::kube::HttpResponse> Request(std::string_view, const std::string&,
                                             const std::string&, std::string_view) override {
    return bg::Status::Unavailable("the watch fuzzer answers streams only");
  }

  bg::Status Stream(std::string_view, const std::string&, const std::atomic<bool>& stop,
                    const std::function<bool(int)>& on_status,
                    const std::function<bool(std::string_view)>& on_chunk) override {
    if (!on_status(status_)) return bg::Status::Ok();
    for (std::string_view chunk : chunks_) {
      if (stop.load()) return bg::Status::Ok();
      if (!on_chunk(chunk)) return bg::Status::Ok();
    }
    if (break_connection_) return bg::Status::Unavailable("connection reset mid-body");
    return bg::Status::Ok();
  }

 private:
  const int status_;
  const std::vector<std::string_view> chunks_;
  const bool break_connection_;
};

std::vector<std::string_view> CutChunks(std::string_view body, uint32_t seed) {
  std::vector<std::string_view> chunks;
  uint64_t state = seed;
  while (!body.empty()) {
    // splitmix64: cheap, and the same seed always cuts the same way.
    state += 0x9E3779B97F4A7C15ULL;
    uint64_t z = state;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    z ^= z >> 31;
    // Mostly short pieces (a line split many times), sometimes long ones.
    const size_t len = (z & 7) == 0 ? 1 + (z >> 8) % 4096 : 1 + (z >> 8) % 24;
    chunks.push_back(body.substr(0, len));
    body.remove_prefix(std::min(len, body.size()));
  }
  return chunks;
}

struct Outcome {
  std::vector<bg::kube::WatchEvent> events;
  bg::Status status;
};

Outcome RunWatch(const Header& h, std::vector<std::string_view> chunks) {
  bg::kube::RestKubeApiOptions options;
  options.watch_timeout_jitter = std::chrono::seconds(0);
  if (h.max_event_bytes != 0) options.max_watch_event_bytes = h.max_event_bytes;
  bg::kube::RestKubeApi api(
      std::make_shared<ScriptedTransport>(h.status, std::move(chunks), h.break_connection),
      options);
  Outcome out;
  std::atomic<bool> stop{false};
  auto on_event = [&](const bg::kube::WatchEvent& e) {
    out.events.push_back(e);
    if (h.stop_after != 0 && out.events.size() >= h.stop_after) {
      if (h.stop_by_return) return false;
      stop = true;
    }
    return true;
  };
  try {
    out.status =
        api.Watch(bg::domain::Resource("backups"), "longhorn-system", "42", on_event, stop);
  } catch (const std::exception& e) {
    BG_FUZZ_FAIL(std::string("exception escaped RestKubeApi::Watch: ") + e.what());
  }
  return out;
}

std::string Dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

// The body's lines that are not blank, as the API server writes them: one event per line.
std::vector<std::string_view> NonBlankLines(std::string_view body) {
  std::vector<std::string_view> lines;
  while (true) {
    const size_t newline = body.find('\n');
    const std::string_view line = body.substr(0, newline);
    if (line.find_first_not_of(" \t\r") != std::string_view::npos) lines.push_back(line);
    if (newline == std::string_view::npos) break;
    body.remove_prefix(newline + 1);
  }
  return lines;
}

std::string Describe(const Outcome& o) {
  std::string out = "status " + std::to_string(static_cast<int>(o.status.code())) + " \"" +
                    o.status.message() + "\", events:";
  for (const auto& e : o.events) out += " " + e.type + ":" + Dump(e.object).substr(0, 80);
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  bg::log::SetLevel("error");
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < kHeaderBytes) return 0;
  const Header h = ReadHeader(data);
  const std::string_view body(reinterpret_cast<const char*>(data) + kHeaderBytes,
                              size - kHeaderBytes);

  const Outcome cut = RunWatch(h, CutChunks(body, h.chunk_seed));
  const Outcome whole = RunWatch(
      h, body.empty() ? std::vector<std::string_view>{} : std::vector<std::string_view>{body});

  BG_FUZZ_CHECK(cut.status.code() == whole.status.code() &&
                    cut.status.message() == whole.status.message() &&
                    cut.events.size() == whole.events.size(),
                "the outcome depends on the chunking:\n  cut:   " + Describe(cut) +
                    "\n  whole: " + Describe(whole));
  if (h.status != 200) {
    BG_FUZZ_CHECK(cut.events.empty() && !cut.status.ok(),
                  "HTTP " + std::to_string(h.status) + " answered with " + Describe(cut));
  }

  const std::vector<std::string_view> lines = NonBlankLines(body);
  BG_FUZZ_CHECK(cut.events.size() <= lines.size(), "more events than lines: " + Describe(cut));
  for (size_t i = 0; i < cut.events.size(); ++i) {
    const bg::kube::WatchEvent& e = cut.events[i];
    BG_FUZZ_CHECK(e.object.is_object(), "event object is not a JSON object: " + Dump(e.object));
    BG_FUZZ_CHECK(e.type != "ERROR", "an ERROR event was handed over: " + Dump(e.object));
    BG_FUZZ_CHECK(e.type == whole.events[i].type && e.object == whole.events[i].object,
                  "event " + std::to_string(i) + " depends on the chunking");
    const json line = json::parse(lines[i], nullptr, /*allow_exceptions=*/false);
    BG_FUZZ_CHECK(line.is_object() && line.value("type", json()) == e.type &&
                      line.value("object", json()) == e.object,
                  "event " + std::to_string(i) + " (" + e.type + " " + Dump(e.object) +
                      ") is not line " + std::string(lines[i]));
  }
  return 0;
}
