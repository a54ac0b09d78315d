#include "webhook/http1.h"

#include <gtest/gtest.h>

namespace bg::webhook::http1 {
namespace {

using Progress = RequestParser::Progress;

constexpr char kPost[] =
    "POST /v1/webhook/mutation?timeout=10s HTTP/1.1\r\n"
    "Host: backup-guard\r\n"
    "Content-Type: application/json\r\n"
    "Content-Length: 7\r\n"
    "\r\n"
    "{\"a\":1}";

Limits SmallLimits() {
  Limits limits;
  limits.max_header_bytes = 1024;
  limits.max_body_bytes = 64;
  return limits;
}

TEST(RequestParserTest, WholeRequestInOneBufferIsComplete) {
  RequestParser parser(SmallLimits());
  std::string buffer = kPost;
  ASSERT_EQ(parser.Consume(buffer), Progress::kComplete);
  Request request = parser.Take();
  EXPECT_EQ(request.method, "POST");
  EXPECT_EQ(request.target, "/v1/webhook/mutation?timeout=10s");
  EXPECT_EQ(request.path, "/v1/webhook/mutation");
  EXPECT_EQ(request.Header("content-type"), "application/json");
  EXPECT_EQ(request.body, "{\"a\":1}");
  EXPECT_TRUE(request.keep_alive);
  EXPECT_TRUE(buffer.empty());
}

TEST(RequestParserTest, RequestArrivingOneByteAtATimeIsAssembled) {
  RequestParser parser(SmallLimits());
  std::string buffer;
  const std::string all = kPost;
  for (std::size_t i = 0; i < all.size(); ++i) {
    buffer.push_back(all[i]);
    const Progress p = parser.Consume(buffer);
    if (i + 1 < all.size()) {
      ASSERT_EQ(p, Progress::kNeedMore) << "at byte " << i;
      EXPECT_TRUE(parser.Started());
    } else {
      ASSERT_EQ(p, Progress::kComplete);
    }
  }
  EXPECT_EQ(parser.Take().body, "{\"a\":1}");
  EXPECT_FALSE(parser.Started());
}

TEST(RequestParserTest, PipelinedRequestStaysInTheBufferForTheNextRound) {
  RequestParser parser(SmallLimits());
  std::string buffer = std::string(kPost) + "GET /healthz HTTP/1.1\r\n\r\n";
  ASSERT_EQ(parser.Consume(buffer), Progress::kComplete);
  EXPECT_EQ(parser.Take().method, "POST");
  ASSERT_EQ(parser.Consume(buffer), Progress::kComplete);
  Request second = parser.Take();
  EXPECT_EQ(second.method, "GET");
  EXPECT_EQ(second.path, "/healthz");
  EXPECT_TRUE(buffer.empty());
}

TEST(RequestParserTest, ChunkedBodyIsDecodedWithExtensionsAndTrailers) {
  RequestParser parser(SmallLimits());
  std::string buffer =
      "POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
      "3;name=value\r\nabc\r\n"
      "A\r\n0123456789\r\n"
      "0\r\nX-Trailer: yes\r\n\r\n";
  // Split the chunked stream at every position to exercise each state boundary.
  for (std::size_t split = 1; split < buffer.size(); ++split) {
    RequestParser p(SmallLimits());
    std::string first = buffer.substr(0, split);
    std::string rest = buffer.substr(split);
    ASSERT_NE(p.Consume(first), Progress::kError) << "split at " << split;
    first += rest;
    ASSERT_EQ(p.Consume(first), Progress::kComplete) << "split at " << split;
    EXPECT_EQ(p.Take().body, "abc0123456789") << "split at " << split;
  }
  ASSERT_EQ(parser.Consume(buffer), Progress::kComplete);
}

TEST(RequestParserTest, ContentLengthTogetherWithTransferEncodingIsRefused) {
  RequestParser parser(SmallLimits());
  std::string buffer =
      "POST /x HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n";
  ASSERT_EQ(parser.Consume(buffer), Progress::kError);
  EXPECT_EQ(parser.error_status(), 400);
}

TEST(RequestParserTest, ConflictingContentLengthsAreRefused) {
  RequestParser parser(SmallLimits());
  std::string buffer = "POST /x HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd";
  ASSERT_EQ(parser.Consume(buffer), Progress::kError);
  EXPECT_EQ(parser.error_status(), 400);
}

TEST(RequestParserTest, InvalidContentLengthIsRefused) {
  for (const char* length : {"-1", "1x", "", "99999999999999999999"}) {
    RequestParser parser(SmallLimits());
    std::string buffer = std::string("POST /x HTTP/1.1\r\nContent-Length: ") + length + "\r\n\r\n";
    ASSERT_EQ(parser.Consume(buffer), Progress::kError) << length;
    EXPECT_EQ(parser.error_status(), 400) << length;
  }
}

TEST(RequestParserTest, DeclaredBodyOverTheLimitIs413BeforeItArrives) {
  RequestParser parser(SmallLimits());
  std::string buffer = "POST /x HTTP/1.1\r\nContent-Length: 65\r\n\r\n";
  ASSERT_EQ(parser.Consume(buffer), Progress::kError);
  EXPECT_EQ(parser.error_status(), 413);
  EXPECT_NE(parser.error_message().find("exceeds the limit of 64 bytes"), std::string::npos);
}

TEST(RequestParserTest, DeclaredBodyIsNotReservedBeforeItArrives) {
  Limits limits;
  limits.max_body_bytes = std::size_t{7} * 1024 * 1024;
  RequestParser parser(limits);
  std::string buffer = "POST /x HTTP/1.1\r\nContent-Length: 7340032\r\n\r\n" + std::string(10, 'a');
  ASSERT_EQ(parser.Consume(buffer), Progress::kNeedMore);
  // Memory follows the bytes received; the promise is what a budget has to cover.
  EXPECT_LT(parser.BodyCapacity(), std::size_t{64} * 1024);
  EXPECT_EQ(parser.BodyBytesPromised(), std::size_t{7340032});
}

TEST(RequestParserTest, ChunkedBodyPromisesWhatArrivedPlusTheCurrentChunk) {
  RequestParser parser(SmallLimits());
  std::string buffer =
      "POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\n10\r\nab";
  ASSERT_EQ(parser.Consume(buffer), Progress::kNeedMore);
  EXPECT_EQ(parser.BodyBytesPromised(), std::size_t{4 + 16});
}

TEST(RequestParserTest, ChunkedBodyOverTheLimitIs413) {
  RequestParser parser(SmallLimits());
  std::string buffer = "POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n20\r\n" +
                       std::string(32, 'a') + "\r\n21\r\n";
  ASSERT_EQ(parser.Consume(buffer), Progress::kError);
  EXPECT_EQ(parser.error_status(), 413);
}

TEST(RequestParserTest, HeadersOverTheLimitAre431EvenWithoutAnEnd) {
  RequestParser parser(SmallLimits());
  std::string buffer = "GET /x HTTP/1.1\r\nX-Long: " + std::string(2000, 'a');
  ASSERT_EQ(parser.Consume(buffer), Progress::kError);
  EXPECT_EQ(parser.error_status(), 431);
}

TEST(RequestParserTest, ObsoleteLineFoldingAndSpaceBeforeColonAreRefused) {
  for (const char* head :
       {"GET /x HTTP/1.1\r\nX-A: 1\r\n  continued\r\n\r\n", "GET /x HTTP/1.1\r\nX-A : 1\r\n\r\n",
        "GET /x HTTP/1.1\r\n: 1\r\n\r\n", "GET /x HTTP/1.1\r\nX-A: a\x01z\r\n\r\n"}) {
    RequestParser parser(SmallLimits());
    std::string buffer = head;
    ASSERT_EQ(parser.Consume(buffer), Progress::kError) << head;
    EXPECT_EQ(parser.error_status(), 400) << head;
  }
}

TEST(RequestParserTest, MalformedRequestLinesAre400AndOtherVersions505) {
  for (const char* line :
       {"GET\r\n\r\n", "GET /x\r\n\r\n", "GET  /x HTTP/1.1\r\n\r\n",
        "GET /x HTTP/1.1 extra\r\n\r\n", "G(T /x HTTP/1.1\r\n\r\n", "GET /x FTP/1.1\r\n\r\n"}) {
    RequestParser parser(SmallLimits());
    std::string buffer = line;
    ASSERT_EQ(parser.Consume(buffer), Progress::kError) << line;
    EXPECT_EQ(parser.error_status(), 400) << line;
  }
  RequestParser parser(SmallLimits());
  std::string buffer = "GET /x HTTP/2.0\r\n\r\n";
  ASSERT_EQ(parser.Consume(buffer), Progress::kError);
  EXPECT_EQ(parser.error_status(), 505);
}

TEST(RequestParserTest, OnlyChunkedTransferEncodingIsSupported) {
  RequestParser parser(SmallLimits());
  std::string buffer = "POST /x HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n";
  ASSERT_EQ(parser.Consume(buffer), Progress::kError);
  EXPECT_EQ(parser.error_status(), 501);
}

TEST(RequestParserTest, Http10ClosesUnlessAskedAndHttp11KeepsAliveUnlessAsked) {
  struct Case {
    const char* head;
    bool keep_alive;
  } cases[] = {
      {"GET /x HTTP/1.0\r\n\r\n", false},
      {"GET /x HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", true},
      {"GET /x HTTP/1.1\r\n\r\n", true},
      {"GET /x HTTP/1.1\r\nConnection: Keep-Alive, Close\r\n\r\n", false},
  };
  for (const Case& c : cases) {
    RequestParser parser(SmallLimits());
    std::string buffer = c.head;
    ASSERT_EQ(parser.Consume(buffer), Progress::kComplete) << c.head;
    EXPECT_EQ(parser.Take().keep_alive, c.keep_alive) << c.head;
  }
}

TEST(RequestParserTest, ExpectContinueIsReportedUntilTheBodyStarts) {
  RequestParser parser(SmallLimits());
  std::string buffer = "POST /x HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n";
  ASSERT_EQ(parser.Consume(buffer), Progress::kNeedMore);
  EXPECT_TRUE(parser.HeadersDone());
  EXPECT_TRUE(parser.ExpectsContinue());
  buffer = "ok";
  ASSERT_EQ(parser.Consume(buffer), Progress::kComplete);
  EXPECT_FALSE(parser.ExpectsContinue());
  EXPECT_EQ(parser.Take().body, "ok");

  std::string other = "POST /x HTTP/1.1\r\nExpect: something-else\r\n\r\n";
  ASSERT_EQ(parser.Consume(other), Progress::kError);
  EXPECT_EQ(parser.error_status(), 417);
}

TEST(RequestParserTest, BlankLinesBeforeARequestAreSkipped) {
  RequestParser parser(SmallLimits());
  std::string buffer = "\r\n\r\nGET /healthz HTTP/1.1\r\n\r\n";
  ASSERT_EQ(parser.Consume(buffer), Progress::kComplete);
  EXPECT_EQ(parser.Take().path, "/healthz");
}

TEST(RequestParserTest, BlankLineCutAfterItsCarriageReturnIsStillSkipped) {
  // Found by fuzz_http1: a lone CR used to start the request, so the rest of the blank line
  // became an empty request line.
  RequestParser parser(SmallLimits());
  std::string buffer = "\r";
  ASSERT_EQ(parser.Consume(buffer), Progress::kNeedMore);
  EXPECT_FALSE(parser.Started());
  buffer += "\nGET /healthz HTTP/1.1\r\n\r\n";
  ASSERT_EQ(parser.Consume(buffer), Progress::kComplete);
  EXPECT_EQ(parser.Take().path, "/healthz");
}

TEST(SerializeTest, AnswerCarriesLengthTypeAndCloseWhenAsked) {
  Response response;
  response.status = 413;
  response.content_type = "text/plain";
  response.body = "too big\n";
  response.close = true;
  EXPECT_EQ(Serialize(response),
            "HTTP/1.1 413 Content Too Large\r\nContent-Type: text/plain\r\nContent-Length: 8\r\n"
            "Connection: close\r\n\r\ntoo big\n");
  response.close = false;
  EXPECT_EQ(Serialize(response).find("Connection"), std::string::npos);
}

}  // namespace
}  // namespace bg::webhook::http1
