#include "kube/rest_api.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <httplib.h>

#include <atomic>
#include <chrono>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "kube/informer.h"
#include "kube/kube_lookup.h"
#include "kube/testutil.h"
#include "tests/testing/fake_transport.h"

namespace bg::kube {
namespace {

using nlohmann::json;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::StartsWith;

const ResourceRef kSecrets{"", "v1", "secrets", "Secret"};
const ResourceRef kCrds{"apiextensions.k8s.io", "v1", "customresourcedefinitions",
                        "CustomResourceDefinition"};
const ResourceRef kBackups = LonghornResource("backups", "Backup");
constexpr char kNs[] = "longhorn-system";
constexpr char kBackupsPath[] = "/apis/longhorn.io/v1beta2/namespaces/longhorn-system/backups";

using testing::FakeTransport;
using Recorded = FakeTransport::Recorded;
using StreamScript = FakeTransport::StreamScript;

// A transport that only answers plain requests: ApiTransport's default Stream.
class NoStreamTransport final : public ApiTransport {
 public:
  Result<HttpResponse> Request(std::string_view, const std::string&, const std::string&,
                               std::string_view) override {
    return HttpResponse{200, "{}"};
  }
};

// A clock that moves a second forward each time it is read: the rate limiter never waits, and
// the number of reads counts the tokens taken.
class CountingClock final : public Clock {
 public:
  TimePoint Now() const override {
    return TimePoint(std::chrono::seconds(3600 + reads_.fetch_add(1)));
  }
  // Time moves with every read: a deadline is always about to pass.
  void WaitUntil(std::condition_variable&, std::unique_lock<std::mutex>&,
                 TimePoint) const override {}
  int reads() const { return reads_.load(); }

 private:
  mutable std::atomic<int> reads_{0};
};

std::string Event(const std::string& type, const std::string& name, const std::string& rv) {
  return json{
      {"type", type},
      {"object", {{"kind", "Backup"}, {"metadata", {{"name", name}, {"resourceVersion", rv}}}}}}
      .dump();
}

class RestKubeApiTest : public ::testing::Test {
 protected:
  RestKubeApiTest() : transport_(std::make_shared<FakeTransport>()) {
    options_.qps = 0;  // no limiting unless a test asks for it
  }

  RestKubeApi& api() {
    if (!api_) api_ = std::make_unique<RestKubeApi>(transport_, options_);
    return *api_;
  }

  // Runs a watch and returns its Status; the events land in events_.
  Status Watch(const std::string& rv = "7") {
    return api().Watch(
        kBackups, kNs, rv,
        [this](const WatchEvent& e) {
          events_.push_back(e.type + " " + e.object["metadata"].value("name", ""));
          return true;
        },
        stop_);
  }

  std::shared_ptr<FakeTransport> transport_;
  RestKubeApiOptions options_;
  std::unique_ptr<RestKubeApi> api_;
  std::vector<std::string> events_;
  std::atomic<bool> stop_{false};
};

// ---- the API server's clock ----

// Every answer's Date header, retried exchanges included, is recorded in the server clock.
TEST_F(RestKubeApiTest, AnswersSetTheServerClockFromTheirDateHeader) {
  ManualClock mono;
  ServerClock server_clock(&mono);
  options_.server_clock = &server_clock;
  std::atomic<int> calls{0};
  transport_->SetHandler([&calls](const Recorded&) {
    return ++calls == 1
               ? HttpResponse{200, R"({"kind":"Backup"})", "", "Thu, 01 Jan 2026 00:00:10 GMT"}
               : HttpResponse{404, "{}", "", "Thu, 01 Jan 2026 00:00:20 GMT"};
  });
  EXPECT_EQ(server_clock.Now(), std::nullopt);
  ASSERT_TRUE(api().Get(kBackups, kNs, "b-1").ok());
  EXPECT_EQ(server_clock.Now(), ParseHttpDate("Thu, 01 Jan 2026 00:00:10 GMT"));
  EXPECT_FALSE(api().Get(kBackups, kNs, "b-2").ok());  // an error answer has a Date too
  EXPECT_EQ(server_clock.Now(), ParseHttpDate("Thu, 01 Jan 2026 00:00:20 GMT"));
}

// ---- paths ----

TEST(ResourcePathTest, CoreGroupIsUnderApiV1) {
  EXPECT_EQ(ResourcePath(kSecrets, "kube-system", "token"),
            "/api/v1/namespaces/kube-system/secrets/token");
  EXPECT_EQ(ResourcePath(kSecrets, "kube-system"), "/api/v1/namespaces/kube-system/secrets");
}

TEST(ResourcePathTest, NamedGroupIsUnderApis) {
  EXPECT_EQ(ResourcePath(kBackups, kNs, "b-1"), std::string(kBackupsPath) + "/b-1");
  EXPECT_EQ(ResourcePath(kLeases, "ns", "leader"),
            "/apis/coordination.k8s.io/v1/namespaces/ns/leases/leader");
}

TEST(ResourcePathTest, EmptyNamespaceIsClusterScoped) {
  EXPECT_EQ(ResourcePath(kCrds, "", "backups.longhorn.io"),
            "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/backups.longhorn.io");
  EXPECT_EQ(ResourcePath(kBackups, ""), "/apis/longhorn.io/v1beta2/backups");
}

TEST(ResourcePathTest, NamesAreEncoded) {
  EXPECT_EQ(ResourcePath(kBackups, "a b", "x/y?z"),
            "/apis/longhorn.io/v1beta2/namespaces/a%20b/backups/x%2Fy%3Fz");
}

// ---- reads ----

TEST_F(RestKubeApiTest, GetReturnsTheObject) {
  transport_->AnswerAll(200, R"({"kind":"Backup","metadata":{"name":"b-1"}})");
  Result<json> got = api().Get(kBackups, kNs, "b-1");
  ASSERT_TRUE(got.ok()) << got.status().message();
  EXPECT_EQ((*got)["metadata"]["name"], "b-1");
  EXPECT_THAT(transport_->request_lines(),
              ElementsAre(std::string("GET ") + kBackupsPath + "/b-1"));
}

TEST_F(RestKubeApiTest, GetOfAnEmptyNameIsNotFoundWithoutARequest) {
  EXPECT_TRUE(api().Get(kBackups, kNs, "").status().IsNotFound());
  EXPECT_TRUE(api().Get(kBackups, kNs, "..").status().IsNotFound());
  EXPECT_TRUE(transport_->requests().empty());
}

TEST_F(RestKubeApiTest, MalformedBodyIsUnavailable) {
  transport_->AnswerAll(200, "<html>proxy error</html>");
  Result<json> got = api().Get(kBackups, kNs, "b-1");
  ASSERT_FALSE(got.ok());
  EXPECT_EQ(got.status().code(), Status::Code::kUnavailable);
  EXPECT_THAT(got.status().message(), HasSubstr("proxy error"));
}

TEST_F(RestKubeApiTest, TransportFailureKeepsItsCodeAndNamesTheRequest) {
  transport_->SetHandler(
      [](const Recorded&) -> Result<HttpResponse> { return Status::Unavailable("refused"); });
  Result<json> got = api().Get(kBackups, kNs, "b-1");
  ASSERT_FALSE(got.ok());
  EXPECT_EQ(got.status().code(), Status::Code::kUnavailable);
  EXPECT_EQ(got.status().message(), "get backups longhorn-system/b-1: refused");
}

TEST_F(RestKubeApiTest, ListEncodesTheSelectorAndAsksForPages) {
  transport_->AnswerAll(200, R"({"kind":"BackupList","metadata":{"resourceVersion":"5"}})");
  ASSERT_TRUE(api().List(kBackups, kNs, "backup-volume=vol-1,x!=y").ok());
  EXPECT_THAT(transport_->request_lines(),
              ElementsAre(std::string("GET ") + kBackupsPath +
                          "?labelSelector=backup-volume%3Dvol-1%2Cx%21%3Dy&limit=500"));
}

TEST_F(RestKubeApiTest, ListWithoutSelector) {
  transport_->AnswerAll(200, R"({"items":null})");
  Result<json> list = api().List(kCrds, "", "");
  ASSERT_TRUE(list.ok()) << list.status().message();
  EXPECT_EQ((*list)["items"], json::array());
  EXPECT_THAT(transport_->request_lines(),
              ElementsAre("GET /apis/apiextensions.k8s.io/v1/customresourcedefinitions?limit=500"));
}

// Serves `total` Backups in pages of the requested limit; continue tokens are "tok-<offset>".
// Each page has its own resourceVersion, so a test can see which one the result kept.
FakeTransport::Handler PagedBackups(int total) {
  return [total](const Recorded& r) -> Result<HttpResponse> {
    int offset = 0;
    int limit = total;
    if (auto c = r.path.find("continue=tok-"); c != std::string::npos) {
      offset = std::stoi(r.path.substr(c + 13));
    }
    if (auto l = r.path.find("limit="); l != std::string::npos) {
      limit = std::stoi(r.path.substr(l + 6));
    }
    json page = {{"kind", "BackupList"},
                 {"apiVersion", "longhorn.io/v1beta2"},
                 {"metadata", {{"resourceVersion", "rv-at-" + std::to_string(offset)}}},
                 {"items", json::array()}};
    const int end = std::min(total, offset + limit);
    for (int i = offset; i < end; ++i) {
      page["items"].push_back({{"metadata", {{"name", "b-" + std::to_string(i)}}}});
    }
    if (end < total) {
      page["metadata"]["continue"] = "tok-" + std::to_string(end);
      page["metadata"]["remainingItemCount"] = total - end;
    }
    return HttpResponse{200, page.dump()};
  };
}

TEST_F(RestKubeApiTest, ListConcatenatesTenThousandObjectsFromPages) {
  transport_->SetHandler(PagedBackups(10000));
  Result<json> list = api().List(kBackups, kNs, "");
  ASSERT_TRUE(list.ok()) << list.status().message();
  const json& items = (*list)["items"];
  ASSERT_EQ(items.size(), 10000u);
  for (int i = 0; i < 10000; ++i) {
    ASSERT_EQ(items[i]["metadata"]["name"], "b-" + std::to_string(i));
  }
  // Items get the kind and apiVersion that list responses leave out.
  EXPECT_EQ(items[9999]["kind"], "Backup");
  EXPECT_EQ(items[9999]["apiVersion"], "longhorn.io/v1beta2");
  // The first page's snapshot version, and nothing left of paging.
  EXPECT_EQ((*list)["metadata"], json({{"resourceVersion", "rv-at-0"}}));
  EXPECT_EQ((*list)["kind"], "BackupList");

  const std::vector<Recorded> requests = transport_->requests();
  ASSERT_EQ(requests.size(), 20u);
  EXPECT_EQ(requests[0].path, std::string(kBackupsPath) + "?limit=500");
  EXPECT_EQ(requests[1].path, std::string(kBackupsPath) + "?limit=500&continue=tok-500");
  EXPECT_EQ(requests[19].path, std::string(kBackupsPath) + "?limit=500&continue=tok-9500");
}

TEST_F(RestKubeApiTest, ListPageSizeIsConfigurable) {
  options_.list_page_size = 3;
  transport_->SetHandler(PagedBackups(7));
  Result<json> list = api().List(kBackups, kNs, "a=b");
  ASSERT_TRUE(list.ok());
  EXPECT_EQ((*list)["items"].size(), 7u);
  EXPECT_THAT(
      transport_->request_lines(),
      ElementsAre(
          std::string("GET ") + kBackupsPath + "?labelSelector=a%3Db&limit=3",
          std::string("GET ") + kBackupsPath + "?labelSelector=a%3Db&limit=3&continue=tok-3",
          std::string("GET ") + kBackupsPath + "?labelSelector=a%3Db&limit=3&continue=tok-6"));
}

TEST_F(RestKubeApiTest, ListWithAnExpiredContinueTokenListsAgainInOneRequest) {
  auto paged = PagedBackups(1200);
  transport_->SetHandler([paged](const Recorded& r) -> Result<HttpResponse> {
    if (r.path.find("continue=tok-1000") != std::string::npos) {
      return HttpResponse{410, R"({"kind":"Status","code":410,"reason":"Expired",
                                   "message":"The provided continue parameter is too old"})"};
    }
    return paged(r);
  });
  Result<json> list = api().List(kBackups, kNs, "");
  ASSERT_TRUE(list.ok()) << list.status().message();
  EXPECT_EQ((*list)["items"].size(), 1200u);
  const std::vector<std::string> lines = transport_->request_lines();
  ASSERT_EQ(lines.size(), 4u);
  EXPECT_EQ(lines[3], std::string("GET ") + kBackupsPath);
}

TEST_F(RestKubeApiTest, ListPagesHandsOverEachPageAsItArrives) {
  transport_->SetHandler(PagedBackups(1200));
  std::vector<std::size_t> sizes;
  std::size_t requests_at_first_page = 0;
  Status s = api().ListPages(kBackups, kNs, "", [&](std::vector<json>& items) {
    if (sizes.empty()) requests_at_first_page = transport_->requests().size();
    sizes.push_back(items.size());
    EXPECT_EQ(items.front()["kind"], "Backup");
    EXPECT_EQ(items.front()["apiVersion"], "longhorn.io/v1beta2");
  });
  ASSERT_TRUE(s.ok()) << s.message();
  EXPECT_THAT(sizes, ElementsAre(500u, 500u, 200u));
  EXPECT_EQ(requests_at_first_page, 1u) << "the first page is handed over before the second read";
  EXPECT_EQ(transport_->requests().back().path,
            std::string(kBackupsPath) + "?limit=500&continue=tok-1000");
}

TEST_F(RestKubeApiTest, ListPagesWithAnExpiredContinueTokenIsGone) {
  auto paged = PagedBackups(1200);
  transport_->SetHandler([paged](const Recorded& r) -> Result<HttpResponse> {
    if (r.path.find("continue=tok-1000") != std::string::npos) {
      return HttpResponse{410, R"({"kind":"Status","code":410,"message":"too old"})"};
    }
    return paged(r);
  });
  std::size_t seen = 0;
  Status s =
      api().ListPages(kBackups, kNs, "", [&](std::vector<json>& items) { seen += items.size(); });
  EXPECT_EQ(s.code(), Status::Code::kGone);
  EXPECT_EQ(seen, 1000u);
}

// kube-apiserver's answer for a resource type it does not serve (yet), e.g. while its CRD
// handler starts: a 404 that names no object.
constexpr char kTypeNotServed[] =
    R"({"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure",)"
    R"("message":"the server could not find the requested resource","reason":"NotFound",)"
    R"("details":{},"code":404})";

TEST_F(RestKubeApiTest, ListOfAKindNotServedIsAnErrorNotAbsence) {
  transport_->AnswerAll(404, kTypeNotServed);
  Result<json> list = api().List(kBackups, kNs, "");
  ASSERT_FALSE(list.ok());
  EXPECT_EQ(list.status().code(), Status::Code::kUnavailable);
  EXPECT_EQ(list.status().message(),
            "list backups in longhorn-system: HTTP 404: the server could not find the requested "
            "resource (no object named: the resource type is not served)");
}

TEST_F(RestKubeApiTest, GetOfATypeNotServedIsAnErrorNotAbsence) {
  transport_->AnswerAll(404, kTypeNotServed);
  Result<json> got = api().Get(LonghornResource("backuptargets", "BackupTarget"), kNs, "default");
  ASSERT_FALSE(got.ok());
  EXPECT_FALSE(got.status().IsNotFound()) << "the parent must never count as gone";
}

TEST_F(RestKubeApiTest, GetOfAMissingObjectIsNotFound) {
  transport_->AnswerAll(
      404,
      R"({"kind":"Status","status":"Failure","message":"backuptargets.longhorn.io \"default\" not found",)"
      R"("reason":"NotFound","details":{"name":"default","group":"longhorn.io","kind":"backuptargets"},"code":404})");
  Result<json> got = api().Get(LonghornResource("backuptargets", "BackupTarget"), kNs, "default");
  ASSERT_FALSE(got.ok());
  EXPECT_TRUE(got.status().IsNotFound());
}

TEST_F(RestKubeApiTest, ListFailingMidwayFailsWhole) {
  auto paged = PagedBackups(1200);
  transport_->SetHandler([paged](const Recorded& r) -> Result<HttpResponse> {
    if (r.path.find("continue=") != std::string::npos) return HttpResponse{503, "busy"};
    return paged(r);
  });
  Result<json> list = api().List(kBackups, kNs, "");
  ASSERT_FALSE(list.ok());
  EXPECT_EQ(list.status().code(), Status::Code::kUnavailable);
}

TEST_F(RestKubeApiTest, ListRefusesARepeatedContinueToken) {
  transport_->AnswerAll(200, R"({"metadata":{"continue":"same"},"items":[{}]})");
  Result<json> list = api().List(kBackups, kNs, "");
  ASSERT_FALSE(list.ok());
  EXPECT_THAT(list.status().message(), HasSubstr("repeated a continue token"));
  EXPECT_EQ(transport_->requests().size(), 2u);
}

// ---- status mapping ----

TEST_F(RestKubeApiTest, HttpStatusMapsToStatusCodeWithTheServerMessage) {
  const std::vector<std::pair<int, Status::Code>> table = {
      {400, Status::Code::kInvalidArgument},
      {401, Status::Code::kUnavailable},
      {403, Status::Code::kPermissionDenied},
      {404, Status::Code::kNotFound},
      {405, Status::Code::kUnavailable},
      {409, Status::Code::kConflict},
      {410, Status::Code::kGone},
      {422, Status::Code::kInvalidArgument},
      {429, Status::Code::kUnavailable},
      {500, Status::Code::kUnavailable},
      {503, Status::Code::kUnavailable},
      {504, Status::Code::kUnavailable},
  };
  for (const auto& [http, code] : table) {
    transport_->AnswerAll(http, json{{"kind", "Status"},
                                     {"code", http},
                                     {"message", "reason number " + std::to_string(http)},
                                     {"details", {{"name", "b-1"}}}}
                                    .dump());
    Result<json> got = api().Get(kBackups, kNs, "b-1");
    ASSERT_FALSE(got.ok()) << http;
    EXPECT_EQ(got.status().code(), code) << http;
    EXPECT_EQ(got.status().message(), "get backups longhorn-system/b-1: HTTP " +
                                          std::to_string(http) + ": reason number " +
                                          std::to_string(http));
  }
}

TEST(StatusFromHttpTest, BodyWithoutStatusMessageIsQuoted) {
  Status s = StatusFromHttp(502, "<html>Bad Gateway</html>", "get x");
  EXPECT_EQ(s.code(), Status::Code::kUnavailable);
  EXPECT_EQ(s.message(), "get x: HTTP 502: <html>Bad Gateway</html>");
  EXPECT_EQ(StatusFromHttp(500, "", "get x").message(), "get x: HTTP 500");
  EXPECT_EQ(StatusFromHttp(404, "404 page not found\n", "get x").message(),
            "get x: HTTP 404: 404 page not found (no object named: the resource type is not "
            "served)");
  EXPECT_LT(StatusFromHttp(500, std::string(100000, 'x'), "get x").message().size(), 400u);
}

// ---- writes ----

TEST_F(RestKubeApiTest, CreatePostsToTheCollectionWithKindAndApiVersion) {
  transport_->AnswerAll(201, R"({"metadata":{"name":"b-1","uid":"u1"}})");
  Result<json> created = api().Create(kBackups, kNs, {{"metadata", {{"name", "b-1"}}}});
  ASSERT_TRUE(created.ok()) << created.status().message();
  EXPECT_EQ((*created)["metadata"]["uid"], "u1");
  const std::vector<Recorded> requests = transport_->requests();
  ASSERT_EQ(requests.size(), 1u);
  EXPECT_EQ(requests[0].method, "POST");
  EXPECT_EQ(requests[0].path, kBackupsPath);
  EXPECT_EQ(requests[0].content_type, "application/json");
  EXPECT_EQ(json::parse(requests[0].body), json({{"apiVersion", "longhorn.io/v1beta2"},
                                                 {"kind", "Backup"},
                                                 {"metadata", {{"name", "b-1"}}}}));
}

TEST_F(RestKubeApiTest, CreateOfACoreObjectUsesTheBareVersion) {
  ASSERT_TRUE(api().Create(kSecrets, "ns", {{"metadata", {{"name", "s"}}}}).ok());
  const Recorded r = transport_->requests().at(0);
  EXPECT_EQ(r.path, "/api/v1/namespaces/ns/secrets");
  EXPECT_EQ(json::parse(r.body)["apiVersion"], "v1");
}

TEST_F(RestKubeApiTest, CreateThatAlreadyExistsIsConflict) {
  transport_->AnswerAll(409, R"({"kind":"Status","reason":"AlreadyExists","message":"exists"})");
  EXPECT_TRUE(api().Create(kBackups, kNs, {{"metadata", {{"name", "b-1"}}}}).status().IsConflict());
}

TEST_F(RestKubeApiTest, UpdatePutsToTheObjectAndKeepsItsFields) {
  const json obj = {{"apiVersion", "longhorn.io/v1beta2"},
                    {"kind", "Backup"},
                    {"metadata", {{"name", "b-1"}, {"resourceVersion", "12"}}},
                    {"spec", {{"unknownField", true}}}};
  ASSERT_TRUE(api().Update(kBackups, kNs, obj).ok());
  const Recorded r = transport_->requests().at(0);
  EXPECT_EQ(r.method, "PUT");
  EXPECT_EQ(r.path, std::string(kBackupsPath) + "/b-1");
  EXPECT_EQ(json::parse(r.body), obj);
}

TEST_F(RestKubeApiTest, UpdateWithoutANameIsInvalidWithoutARequest) {
  EXPECT_EQ(api().Update(kBackups, kNs, {{"metadata", json::object()}}).status().code(),
            Status::Code::kInvalidArgument);
  EXPECT_EQ(api().Update(kBackups, kNs, json::array()).status().code(),
            Status::Code::kInvalidArgument);
  EXPECT_TRUE(transport_->requests().empty());
}

TEST_F(RestKubeApiTest, MergePatchSendsTheMergePatchContentType) {
  const json patch = {{"metadata", {{"finalizers", json::array()}, {"resourceVersion", "9"}}}};
  ASSERT_TRUE(api().MergePatch(kBackups, kNs, "b-1", patch).ok());
  const Recorded r = transport_->requests().at(0);
  EXPECT_EQ(r.method, "PATCH");
  EXPECT_EQ(r.path, std::string(kBackupsPath) + "/b-1");
  EXPECT_EQ(r.content_type, "application/merge-patch+json");
  EXPECT_EQ(json::parse(r.body), patch);
}

TEST_F(RestKubeApiTest, DryRunAllMarksEveryWriteAndNoRead) {
  options_.dry_run_all = true;
  transport_->AnswerAll(200, R"({"kind":"Backup","metadata":{"name":"b-1"}})");
  ASSERT_TRUE(api().Get(kBackups, kNs, "b-1").ok());
  ASSERT_TRUE(api().MergePatch(kBackups, kNs, "b-1", {{"metadata", json::object()}}).ok());
  ASSERT_TRUE(api().DeleteUnchanged(kBackups, kNs, "b-1", "u-1", "9").ok());
  ASSERT_TRUE(api().Create(kBackups, kNs, {{"metadata", {{"name", "b-2"}}}}).ok());
  ASSERT_TRUE(api().Update(kBackups, kNs, {{"metadata", {{"name", "b-2"}}}}).ok());
  const std::string b1 = std::string(kBackupsPath) + "/b-1";
  EXPECT_THAT(
      transport_->request_lines(),
      ElementsAre("GET " + b1, "PATCH " + b1 + "?dryRun=All", "DELETE " + b1 + "?dryRun=All",
                  std::string("POST ") + kBackupsPath + "?dryRun=All",
                  std::string("PUT ") + kBackupsPath + "/b-2?dryRun=All"));
}

TEST_F(RestKubeApiTest, DryRunAllIsInTheDeleteOptionsBodyTheApiServerReads) {
  options_.dry_run_all = true;
  ASSERT_TRUE(api().DeleteUnchanged(kBackups, kNs, "b-1", "u-1", "9").ok());
  const json body = json::parse(transport_->requests().at(0).body);
  EXPECT_EQ(body["dryRun"], json({"All"}));
  EXPECT_EQ(body["preconditions"], json({{"uid", "u-1"}, {"resourceVersion", "9"}}));
}

TEST_F(RestKubeApiTest, WritesAreNotDryRunByDefault) {
  ASSERT_TRUE(api().DeleteUnchanged(kBackups, kNs, "b-1", "u-1", "9").ok());
  EXPECT_FALSE(json::parse(transport_->requests().at(0).body).contains("dryRun"));
  ASSERT_TRUE(api().MergePatch(kBackups, kNs, "b-1", {{"metadata", json::object()}}).ok());
  EXPECT_EQ(transport_->requests().at(1).path, std::string(kBackupsPath) + "/b-1");
}

TEST_F(RestKubeApiTest, ConflictIsReturnedNotRetried) {
  transport_->AnswerAll(409, R"({"kind":"Status","code":409,"reason":"Conflict",
      "message":"Operation cannot be fulfilled on backups.longhorn.io \"b-1\": the object has been modified"})");
  Result<json> patched =
      api().MergePatch(kBackups, kNs, "b-1", {{"metadata", {{"resourceVersion", "1"}}}});
  ASSERT_FALSE(patched.ok());
  EXPECT_TRUE(patched.status().IsConflict());
  EXPECT_THAT(patched.status().message(), HasSubstr("the object has been modified"));
  EXPECT_EQ(transport_->requests().size(), 1u);
}

TEST_F(RestKubeApiTest, MergePatchNeedsANameAndAnObject) {
  EXPECT_EQ(api().MergePatch(kBackups, kNs, "", json::object()).status().code(),
            Status::Code::kInvalidArgument);
  EXPECT_EQ(api().MergePatch(kBackups, kNs, "b", json::array()).status().code(),
            Status::Code::kInvalidArgument);
  EXPECT_TRUE(transport_->requests().empty());
}

TEST_F(RestKubeApiTest, DeleteWithUidSendsBackgroundPropagationAndAPrecondition) {
  ASSERT_TRUE(api().Delete(kBackups, kNs, "b-1", "uid-123").ok());
  const Recorded r = transport_->requests().at(0);
  EXPECT_EQ(r.method, "DELETE");
  EXPECT_EQ(r.path, std::string(kBackupsPath) + "/b-1");
  EXPECT_EQ(r.content_type, "application/json");
  EXPECT_EQ(json::parse(r.body), json({{"kind", "DeleteOptions"},
                                       {"apiVersion", "v1"},
                                       {"propagationPolicy", "Background"},
                                       {"preconditions", {{"uid", "uid-123"}}}}));
}

TEST_F(RestKubeApiTest, DeleteReturningObjectAnswersTheObjectBeingDeleted) {
  transport_->AnswerAll(200, R"({"kind":"Backup","metadata":{"name":"b-1","resourceVersion":"7",
                                 "deletionTimestamp":"2026-01-01T00:00:00Z"}})");
  Result<json> obj = api().DeleteReturningObject(kBackups, kNs, "b-1", "uid-123");
  ASSERT_TRUE(obj.ok()) << obj.status().message();
  EXPECT_EQ((*obj)["metadata"]["resourceVersion"], "7");
  EXPECT_EQ(json::parse(transport_->requests().at(0).body)["preconditions"]["uid"], "uid-123");
}

TEST_F(RestKubeApiTest, DeleteReturningObjectAnswersAnEmptyObjectForAStatus) {
  transport_->AnswerAll(202, R"({"kind":"Status","status":"Success","metadata":{}})");
  Result<json> obj = api().DeleteReturningObject(kBackups, kNs, "b-1");
  ASSERT_TRUE(obj.ok());
  EXPECT_EQ(*obj, json::object());
}

TEST_F(RestKubeApiTest, DeleteWithoutUidHasNoPrecondition) {
  transport_->AnswerAll(202, R"({"kind":"Status","status":"Success"})");
  ASSERT_TRUE(api().Delete(kBackups, kNs, "b-1").ok());
  EXPECT_FALSE(json::parse(transport_->requests().at(0).body).contains("preconditions"));
}

TEST_F(RestKubeApiTest, DeleteOfAMissingObjectIsNotFound) {
  transport_->AnswerAll(404, R"({"kind":"Status","code":404,"message":"backups \"b-1\" not found",)"
                             R"("details":{"name":"b-1","kind":"backups"}})");
  Status s = api().Delete(kBackups, kNs, "b-1");
  EXPECT_TRUE(s.IsNotFound());
  EXPECT_THAT(s.message(), HasSubstr("not found"));
}

TEST_F(RestKubeApiTest, DeleteWithAStaleUidIsConflict) {
  transport_->AnswerAll(
      409,
      R"({"kind":"Status","code":409,"message":"Precondition failed: UID in precondition: uid-1, UID in object meta: uid-2"})");
  EXPECT_TRUE(api().Delete(kBackups, kNs, "b-1", "uid-1").IsConflict());
}

TEST_F(RestKubeApiTest, DeleteWithoutANameNeverDeletesTheCollection) {
  EXPECT_EQ(api().Delete(kBackups, kNs, "").code(), Status::Code::kInvalidArgument);
  EXPECT_TRUE(transport_->requests().empty());
}

// ---- rate limiting ----

TEST_F(RestKubeApiTest, EveryRequestButWatchesTakesAToken) {
  CountingClock clock;
  options_.qps = 50;
  options_.burst = 100;
  options_.clock = &clock;
  options_.list_page_size = 2;
  const int at_start = [&] {
    api();
    return clock.reads();
  }();
  transport_->SetHandler(PagedBackups(5));  // three pages
  ASSERT_TRUE(api().List(kBackups, kNs, "").ok());
  EXPECT_EQ(clock.reads() - at_start, 3);
  transport_->AnswerAll(200, "{}");
  ASSERT_TRUE(api().Get(kBackups, kNs, "b").ok());
  ASSERT_TRUE(api().MergePatch(kBackups, kNs, "b", json::object()).ok());
  ASSERT_TRUE(api().Delete(kBackups, kNs, "b").ok());
  EXPECT_EQ(clock.reads() - at_start, 6);
  transport_->Script({Status::Ok(), 200, {Event("ADDED", "b", "8") + "\n"}});
  ASSERT_TRUE(Watch().ok());
  EXPECT_EQ(clock.reads() - at_start, 6);
}

// Only the lower bound of real sleeping is certain, so only it is checked.
TEST_F(RestKubeApiTest, RequestsBeyondTheBurstWaitForTokens) {
  options_.qps = 20;
  options_.burst = 1;
  const auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(api().Get(kBackups, kNs, "b").ok());
  EXPECT_GE(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(200));
}

// ---- watch ----

TEST_F(RestKubeApiTest, WatchAsksForAStreamWithBookmarksAndAJitteredTimeout) {
  for (int i = 0; i < 20; ++i) {
    transport_->Script({});
    ASSERT_TRUE(Watch("12").ok());
  }
  const std::vector<Recorded> streams = transport_->streams();
  ASSERT_EQ(streams.size(), 20u);
  const std::string prefix = std::string(kBackupsPath) +
                             "?watch=true&allowWatchBookmarks=true&resourceVersion=12"
                             "&timeoutSeconds=";
  for (const Recorded& s : streams) {
    EXPECT_EQ(s.method, "GET");
    ASSERT_THAT(s.path, StartsWith(prefix));
    const int timeout = std::stoi(s.path.substr(prefix.size()));
    EXPECT_GE(timeout, 300);
    EXPECT_LT(timeout, 360);
  }
  EXPECT_TRUE(transport_->requests().empty());
}

TEST_F(RestKubeApiTest, WatchFromNowSendsNoResourceVersion) {
  options_.watch_timeout_jitter = std::chrono::seconds(0);
  transport_->Script({});
  ASSERT_TRUE(Watch("").ok());
  EXPECT_EQ(transport_->streams().at(0).path,
            std::string(kBackupsPath) + "?watch=true&allowWatchBookmarks=true&timeoutSeconds=300");
}

TEST_F(RestKubeApiTest, WatchDeliversEventsWhateverTheChunkBoundaries) {
  const std::string stream = Event("ADDED", "a", "8") + "\n" + Event("MODIFIED", "a", "9") +
                             "\n\n" + Event("BOOKMARK", "", "10") + "\r\n" +
                             Event("DELETED", "a", "11") + "\n";
  // Every way of cutting the stream in two, and one byte at a time.
  for (size_t cut = 0; cut <= stream.size(); ++cut) {
    transport_->Script({Status::Ok(), 200, {stream.substr(0, cut), stream.substr(cut)}});
    events_.clear();
    ASSERT_TRUE(Watch().ok()) << cut;
    ASSERT_THAT(events_, ElementsAre("ADDED a", "MODIFIED a", "BOOKMARK ", "DELETED a")) << cut;
  }
  std::vector<std::string> bytes;
  for (char c : stream) bytes.emplace_back(1, c);
  transport_->Script({Status::Ok(), 200, bytes});
  events_.clear();
  ASSERT_TRUE(Watch().ok());
  EXPECT_THAT(events_, ElementsAre("ADDED a", "MODIFIED a", "BOOKMARK ", "DELETED a"));
}

TEST_F(RestKubeApiTest, WatchHandsOverEachEventBeforeTheNextChunkIsRead) {
  transport_->Script({Status::Ok(),
                      200,
                      {Event("ADDED", "a", "8") + "\n" + Event("ADDED", "b", "9").substr(0, 10),
                       Event("ADDED", "b", "9").substr(10) + "\n"}});
  std::vector<int> chunks_seen;
  Status s = api().Watch(
      kBackups, kNs, "7",
      [&](const WatchEvent&) {
        chunks_seen.push_back(transport_->chunks_delivered());
        return true;
      },
      stop_);
  ASSERT_TRUE(s.ok());
  EXPECT_THAT(chunks_seen, ElementsAre(1, 2));
}

TEST_F(RestKubeApiTest, WatchDeliversBookmarksWithTheirVersion) {
  transport_->Script(
      {Status::Ok(),
       200,
       {R"({"type":"BOOKMARK","object":{"kind":"Backup","apiVersion":"longhorn.io/v1beta2","metadata":{"resourceVersion":"4711","annotations":{"k8s.io/initial-events-end":"true"}}}})"
        "\n"}});
  std::vector<WatchEvent> seen;
  ASSERT_TRUE(api()
                  .Watch(
                      kBackups, kNs, "7",
                      [&](const WatchEvent& e) {
                        seen.push_back(e);
                        return true;
                      },
                      stop_)
                  .ok());
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0].type, "BOOKMARK");
  EXPECT_EQ(seen[0].object["metadata"]["resourceVersion"], "4711");
}

TEST_F(RestKubeApiTest, WatchErrorEventWithCode410IsGone) {
  transport_->Script(
      {Status::Ok(),
       200,
       {Event("ADDED", "a", "8") + "\n",
        R"j({"type":"ERROR","object":{"kind":"Status","apiVersion":"v1","status":"Failure","message":"too old resource version: 7 (4711)","reason":"Expired","code":410}})j"
        "\n",
        Event("ADDED", "never", "9") + "\n"}});
  Status s = Watch();
  EXPECT_EQ(s.code(), Status::Code::kGone);
  EXPECT_THAT(s.message(), HasSubstr("too old resource version"));
  EXPECT_THAT(events_, ElementsAre("ADDED a"));
}

TEST_F(RestKubeApiTest, WatchOtherErrorEventIsUnavailable) {
  transport_->Script(
      {Status::Ok(),
       200,
       {R"({"type":"ERROR","object":{"kind":"Status","code":500,"message":"etcd is sad"}})"
        "\n"}});
  Status s = Watch();
  EXPECT_EQ(s.code(), Status::Code::kUnavailable);
  EXPECT_THAT(s.message(), HasSubstr("etcd is sad"));
  EXPECT_TRUE(events_.empty());
}

TEST_F(RestKubeApiTest, WatchAnsweredWithHttp410IsGone) {
  transport_->Script({Status::Ok(),
                      410,
                      {R"({"kind":"Status","code":410,"reason":"Expired",)",
                       R"j("message":"too old resource version: 1 (200)"})j"}});
  Status s = Watch("1");
  EXPECT_EQ(s.code(), Status::Code::kGone);
  EXPECT_THAT(s.message(), HasSubstr("too old resource version: 1 (200)"));
  EXPECT_TRUE(events_.empty());
}

TEST_F(RestKubeApiTest, WatchOtherHttpErrorsAreMapped) {
  transport_->Script({Status::Ok(), 403, {R"({"kind":"Status","message":"forbidden: watch"})"}});
  EXPECT_EQ(Watch().code(), Status::Code::kPermissionDenied);
  transport_->Script({Status::Ok(), 404, {"404 page not found\n"}});
  Status s = Watch();
  EXPECT_EQ(s.code(), Status::Code::kUnavailable) << "a 404 naming no object is no absence";
  EXPECT_EQ(s.message(),
            "watch backups in longhorn-system: HTTP 404: 404 page not found (no object named: the "
            "resource type is not served)");
  transport_->Script({Status::Ok(), 500, {}});
  EXPECT_EQ(Watch().code(), Status::Code::kUnavailable);
}

TEST_F(RestKubeApiTest, WatchMalformedLinesEndTheWatchAsGoneWithoutLosingEarlierEvents) {
  for (const std::string& bad : std::vector<std::string>{
           "this is not json", R"({"type":"ADDED"})", "[1,2,3]", R"({"type":5,"object":{}})",
           R"({"type":"ADDED","object":"a string"})", R"({"type":"ADDED","object":{"a":)",
           "\xff\xfe{}"}) {
    transport_->Script(
        {Status::Ok(),
         200,
         {Event("ADDED", "a", "8") + "\n" + bad + "\n", Event("ADDED", "b", "9") + "\n"}});
    events_.clear();
    Status s = Watch();
    EXPECT_EQ(s.code(), Status::Code::kGone) << bad;
    EXPECT_THAT(s.message(), HasSubstr("malformed event")) << bad;
    EXPECT_THAT(events_, ElementsAre("ADDED a")) << bad;
  }
}

TEST_F(RestKubeApiTest, WatchLineOverTheLimitIsGone) {
  options_.max_watch_event_bytes = 200;
  const std::string big = Event("ADDED", std::string(300, 'x'), "9");
  transport_->Script(
      {Status::Ok(),
       200,
       {Event("ADDED", "a", "8") + "\n" + big.substr(0, 150), big.substr(150), "\n"}});
  Status s = Watch();
  EXPECT_EQ(s.code(), Status::Code::kGone);
  EXPECT_THAT(s.message(), HasSubstr("larger than 200 bytes"));
  EXPECT_THAT(events_, ElementsAre("ADDED a"));
  // Stopped reading as soon as the limit was passed.
  EXPECT_EQ(transport_->chunks_delivered(), 2);
}

// An informer over the REST client: a watch that ends on an event it cannot read, or with 410
// Gone, lists again and watches from the new list's version. Resuming from the version before
// the event would read the same event again for ever, and the cache would freeze (issue 14,
// suspect 2).
TEST_F(RestKubeApiTest, InformerRelistsAfterAWatchItCannotResume) {
  options_.max_watch_event_bytes = 200;
  const std::string huge = Event("MODIFIED", std::string(300, 'x'), "11");
  const std::vector<std::pair<std::string, StreamScript>> endings = {
      {"oversized event", {Status::Ok(), 200, {huge + "\n"}}},
      {"malformed event",
       {Status::Ok(),
        200,
        {R"({"type":"MODIFIED","object":{"metadata":)"
         "\n"}}},
      {"ERROR event 410",
       {Status::Ok(),
        200,
        {R"({"type":"ERROR","object":{"kind":"Status","code":410,)"
         R"("message":"too old resource version"}})"
         "\n"}}},
      {"HTTP 410", {Status::Ok(), 410, {R"({"kind":"Status","code":410,"reason":"Expired"})"}}},
  };
  for (const auto& [ending, script] : endings) {
    transport_ = std::make_shared<FakeTransport>();
    api_.reset();
    std::atomic<int> lists{0};
    transport_->SetHandler([&lists](const Recorded&) {
      // The first list is at version 10; the second, after the unreadable event, at 20 and
      // holds the object as it is now.
      const int n = ++lists;
      const std::string rv = n == 1 ? "10" : "20";
      const std::string name = n == 1 ? "a" : "b";
      return HttpResponse{200, R"({"kind":"BackupList","metadata":{"resourceVersion":")" + rv +
                                   R"("},"items":[{"metadata":{"name":")" + name +
                                   R"(","resourceVersion":")" + rv + R"("}}]})"};
    });
    transport_->Script(script);
    StreamScript idle;
    idle.hold_open = true;
    transport_->Script(idle);
    Informer informer(api(), kBackups, kNs, [](const std::string&) {});
    std::atomic<bool> stop{false};
    std::thread runner([&] { informer.Run(stop); });
    for (int i = 0; i < 500 && transport_->streams().size() < 2; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    stop = true;
    runner.join();
    const std::vector<Recorded> streams = transport_->streams();
    ASSERT_GE(streams.size(), 2u) << ending;
    EXPECT_THAT(streams[0].path, HasSubstr("resourceVersion=10&")) << ending;
    EXPECT_THAT(streams[1].path, HasSubstr("resourceVersion=20&"))
        << ending << ": the second watch must follow a new list, not resume before the event";
    EXPECT_EQ(lists.load(), 2) << ending;
    EXPECT_TRUE(informer.Get("b").has_value()) << ending;
    EXPECT_FALSE(informer.Get("a").has_value()) << ending;
  }
}

TEST_F(RestKubeApiTest, WatchLastLineWithoutNewlineIsStillAnEvent) {
  transport_->Script({Status::Ok(), 200, {Event("ADDED", "a", "8")}});
  ASSERT_TRUE(Watch().ok());
  EXPECT_THAT(events_, ElementsAre("ADDED a"));
  // A truncated last line is not: Gone, so the caller lists again instead of missing it.
  transport_->Script({Status::Ok(), 200, {Event("ADDED", "a", "8").substr(0, 20)}});
  EXPECT_EQ(Watch().code(), Status::Code::kGone);
}

TEST_F(RestKubeApiTest, WatchEndsWhenTheCallbackSaysSo) {
  transport_->Script({Status::Ok(),
                      200,
                      {Event("ADDED", "a", "8") + "\n" + Event("ADDED", "b", "9") + "\n",
                       Event("ADDED", "c", "10") + "\n"},
                      /*hold_open=*/true});
  int calls = 0;
  Status s = api().Watch(
      kBackups, kNs, "7",
      [&](const WatchEvent&) {
        ++calls;
        return false;
      },
      stop_);
  EXPECT_TRUE(s.ok());
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(transport_->chunks_delivered(), 1);
}

TEST_F(RestKubeApiTest, StopSetDuringAnEventEndsTheWatch) {
  transport_->Script({Status::Ok(),
                      200,
                      {Event("ADDED", "a", "8") + "\n" + Event("ADDED", "b", "9") + "\n"},
                      /*hold_open=*/true});
  int calls = 0;
  Status s = api().Watch(
      kBackups, kNs, "7",
      [&](const WatchEvent&) {
        ++calls;
        stop_ = true;
        return true;
      },
      stop_);
  EXPECT_TRUE(s.ok());
  EXPECT_EQ(calls, 1);
}

TEST_F(RestKubeApiTest, StopFromAnotherThreadEndsAnIdleWatch) {
  transport_->Script({Status::Ok(), 200, {Event("ADDED", "a", "8") + "\n"}, /*hold_open=*/true});
  std::atomic<bool> got_event{false};
  std::thread stopper([&] {
    while (!got_event.load()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    stop_ = true;
  });
  Status s = api().Watch(
      kBackups, kNs, "7",
      [&](const WatchEvent&) {
        got_event = true;
        return true;
      },
      stop_);
  stopper.join();
  EXPECT_TRUE(s.ok());
}

TEST_F(RestKubeApiTest, WatchBrokenMidStreamKeepsTheTransportError) {
  transport_->Script(
      {Status::Unavailable("connection reset"), 200, {Event("ADDED", "a", "8") + "\n"}});
  Status s = Watch();
  EXPECT_EQ(s.code(), Status::Code::kUnavailable);
  EXPECT_THAT(s.message(), HasSubstr("connection reset"));
  EXPECT_THAT(events_, ElementsAre("ADDED a"));
}

TEST(RestKubeApiNoStreamTest, TransportWithoutStreamingIsUnavailable) {
  RestKubeApi api(std::make_shared<NoStreamTransport>());
  std::atomic<bool> stop{false};
  Status s = api.Watch(
      kBackups, kNs, "1", [](const WatchEvent&) { return true; }, stop);
  EXPECT_EQ(s.code(), Status::Code::kUnavailable);
  EXPECT_THAT(s.message(), HasSubstr("streaming not supported"));
}

// ---- retries (RestKubeApiOptions::retry) ----

class RestKubeApiRetryTest : public RestKubeApiTest {
 protected:
  RestKubeApiRetryTest() {
    options_.retry = CommandRetry();
    options_.sleep = [this](std::chrono::milliseconds d) {
      std::lock_guard<std::mutex> lock(mu_);
      waits_.push_back(d);
    };
  }
  // Answers the first `n` requests with `first`, then 200 and `{}`.
  void AnswerFirst(int n, HttpResponse first) {
    auto left = std::make_shared<std::atomic<int>>(n);
    transport_->SetHandler([left, first](const Recorded&) -> Result<HttpResponse> {
      if (left->fetch_sub(1) > 0) return first;
      return HttpResponse{200, R"({"kind":"Backup","metadata":{"name":"b-1"}})"};
    });
  }
  std::vector<std::chrono::milliseconds> waits() {
    std::lock_guard<std::mutex> lock(mu_);
    return waits_;
  }

  std::mutex mu_;
  std::vector<std::chrono::milliseconds> waits_;
};

constexpr char kTooManyRequests[] =
    R"({"kind":"Status","code":429,"reason":"TooManyRequests","message":"Too many requests, please try again later.","details":{"retryAfterSeconds":1}})";

TEST_F(RestKubeApiTest, RetriesAreOffByDefaultSoAdmissionLookupsAnswerAtOnce) {
  transport_->AnswerAll(503, "{}");
  EXPECT_EQ(api().Get(kBackups, kNs, "b-1").status().code(), Status::Code::kUnavailable);
  EXPECT_EQ(transport_->requests().size(), 1u);
}

TEST_F(RestKubeApiRetryTest, A429IsRetriedAfterItsRetryAfterSeconds) {
  AnswerFirst(2, HttpResponse{429, kTooManyRequests, "3"});
  Result<json> got = api().Get(kBackups, kNs, "b-1");
  ASSERT_TRUE(got.ok()) << got.status().message();
  EXPECT_EQ(transport_->requests().size(), 3u);
  EXPECT_THAT(waits(),
              ElementsAre(std::chrono::milliseconds(3000), std::chrono::milliseconds(3000)));
}

TEST_F(RestKubeApiRetryTest, RetryAfterOfTheStatusDetailsCountsWhenTheHeaderIsMissing) {
  AnswerFirst(1, HttpResponse{429, kTooManyRequests});
  ASSERT_TRUE(api().Get(kBackups, kNs, "b-1").ok());
  EXPECT_THAT(waits(), ElementsAre(std::chrono::milliseconds(1000)));
}

TEST_F(RestKubeApiRetryTest, ARetryAfterBeyondTheCapIsCut) {
  AnswerFirst(1, HttpResponse{429, "{}", "86400"});
  ASSERT_TRUE(api().Get(kBackups, kNs, "b-1").ok());
  EXPECT_THAT(waits(), ElementsAre(std::chrono::milliseconds(60000)));
}

TEST_F(RestKubeApiRetryTest, ARetryAfterDateFallsBackToTheBackoff) {
  AnswerFirst(1, HttpResponse{429, "{}", "Wed, 21 Oct 2015 07:28:00 GMT"});
  ASSERT_TRUE(api().Get(kBackups, kNs, "b-1").ok());
  ASSERT_EQ(waits().size(), 1u);
  EXPECT_GE(waits()[0], std::chrono::milliseconds(125));
  EXPECT_LE(waits()[0], std::chrono::milliseconds(250));
}

TEST_F(RestKubeApiRetryTest, FiveHundredsBackOffExponentiallyWithJitterUpToTheCapThenFail) {
  transport_->AnswerAll(503, R"({"kind":"Status","code":503,"message":"etcd is busy"})");
  Result<json> got = api().Get(kBackups, kNs, "b-1");
  ASSERT_FALSE(got.ok());
  EXPECT_EQ(got.status().code(), Status::Code::kUnavailable);
  EXPECT_THAT(got.status().message(), HasSubstr("etcd is busy"));
  EXPECT_EQ(transport_->requests().size(), 6u) << "max_attempts bounds the calls";
  const std::vector<std::chrono::milliseconds> w = waits();
  ASSERT_EQ(w.size(), 5u);
  int64_t backoff = 250;
  for (const auto& d : w) {
    const int64_t capped = std::min<int64_t>(backoff, 8000);
    EXPECT_GE(d.count(), capped - capped / 2);
    EXPECT_LE(d.count(), capped);
    backoff *= 2;
  }
}

TEST_F(RestKubeApiRetryTest, TimeoutsOfReadsPatchesAndDeletesAreRetried) {
  auto fails = std::make_shared<std::atomic<int>>(0);
  transport_->SetHandler([fails](const Recorded& r) -> Result<HttpResponse> {
    if (fails->fetch_add(1) % 2 == 0) {
      return Status::Unavailable(r.method + " " + r.path + ": Read timeout");
    }
    return HttpResponse{200, R"({"kind":"Backup","metadata":{"name":"b-1"}})"};
  });
  EXPECT_TRUE(api().Get(kBackups, kNs, "b-1").ok());
  EXPECT_TRUE(api().MergePatch(kBackups, kNs, "b-1", {{"metadata", json::object()}}).ok());
  EXPECT_TRUE(api().Delete(kBackups, kNs, "b-1", "uid-1").ok());
  EXPECT_EQ(transport_->requests().size(), 6u);
}

// Fencing (issue 14, suspect 4): a write made under a Lease carries what is left of the
// leadership as the API server's timeout, and none is sent (nor retried) once it has lapsed.
TEST_F(RestKubeApiTest, WritesCarryWhatIsLeftOfTheLeadershipAsTheirServerTimeout) {
  ManualClock clock;
  options_.clock = &clock;
  options_.write_deadline = [&clock]() -> std::optional<Clock::TimePoint> {
    return clock.Now() + std::chrono::milliseconds(2500);
  };
  transport_->AnswerAll(200, R"({"kind":"Backup","metadata":{"name":"b-1"}})");
  ASSERT_TRUE(api().Get(kBackups, kNs, "b-1").ok());
  ASSERT_TRUE(api().MergePatch(kBackups, kNs, "b-1", {{"metadata", json::object()}}).ok());
  ASSERT_TRUE(api().Delete(kBackups, kNs, "b-1", "uid-1").ok());
  ASSERT_TRUE(api().Create(kSecrets, kNs, {{"metadata", {{"name", "s"}}}}).ok());
  EXPECT_THAT(transport_->request_lines(),
              ElementsAre(std::string("GET ") + kBackupsPath + "/b-1",
                          std::string("PATCH ") + kBackupsPath + "/b-1?timeout=2500ms",
                          std::string("DELETE ") + kBackupsPath + "/b-1?timeout=2500ms",
                          "POST /api/v1/namespaces/longhorn-system/secrets?timeout=2500ms"));
}

TEST_F(RestKubeApiTest, NoWriteIsSentOnceTheLeadershipHasLapsed) {
  std::optional<Clock::TimePoint> deadline;  // not leader
  options_.write_deadline = [&deadline] { return deadline; };
  Status patched = api().MergePatch(kBackups, kNs, "b-1", {{"metadata", json::object()}}).status();
  EXPECT_EQ(patched.code(), Status::Code::kUnavailable);
  EXPECT_THAT(patched.message(), HasSubstr("leadership"));
  deadline = Clock::Real()->Now() - std::chrono::milliseconds(1);  // lapsed a moment ago
  EXPECT_EQ(api().Delete(kBackups, kNs, "b-1", "uid-1").code(), Status::Code::kUnavailable);
  EXPECT_TRUE(api().Get(kBackups, kNs, "b-1").ok()) << "reads are not fenced";
  EXPECT_THAT(transport_->request_lines(),
              ElementsAre(std::string("GET ") + kBackupsPath + "/b-1"));
}

TEST_F(RestKubeApiRetryTest, RetriesOfAWriteStopWhenTheLeadershipLapses) {
  std::atomic<int> renewals_left{2};  // leadership holds for the first two attempts only
  options_.write_deadline = [&renewals_left]() -> std::optional<Clock::TimePoint> {
    if (renewals_left.fetch_sub(1) <= 0) return std::nullopt;
    return Clock::Real()->Now() + std::chrono::seconds(5);
  };
  transport_->AnswerAll(503, R"({"kind":"Status","code":503,"message":"etcd timeout"})");
  Status s = api().MergePatch(kBackups, kNs, "b-1", {{"metadata", json::object()}}).status();
  EXPECT_EQ(s.code(), Status::Code::kUnavailable);
  EXPECT_THAT(s.message(), HasSubstr("leadership"));
  EXPECT_EQ(transport_->requests().size(), 2u);
}

TEST_F(RestKubeApiRetryTest, ACreateOrUpdateWhoseOutcomeIsUnknownIsNotSentAgain) {
  transport_->SetHandler([](const Recorded& r) -> Result<HttpResponse> {
    return Status::Unavailable(r.method + ": Read timeout");
  });
  EXPECT_FALSE(api().Create(kBackups, kNs, {{"metadata", {{"name", "b-1"}}}}).ok());
  EXPECT_FALSE(api().Update(kBackups, kNs, {{"metadata", {{"name", "b-1"}}}}).ok());
  transport_->AnswerAll(500, R"({"kind":"Status","code":500,"message":"boom"})");
  EXPECT_FALSE(api().Create(kBackups, kNs, {{"metadata", {{"name", "b-1"}}}}).ok());
  EXPECT_EQ(transport_->requests().size(), 3u) << "one request each";
  EXPECT_TRUE(waits().empty());
}

TEST_F(RestKubeApiRetryTest, ACreateRefusedWith429IsSentAgain) {
  AnswerFirst(1, HttpResponse{429, kTooManyRequests, "1"});
  EXPECT_TRUE(api().Create(kBackups, kNs, {{"metadata", {{"name", "b-1"}}}}).ok());
  EXPECT_EQ(transport_->requests().size(), 2u);
}

TEST_F(RestKubeApiRetryTest, ConflictsAndAdmissionWebhookFailuresGoBackToTheCaller) {
  transport_->AnswerAll(409,
                        R"({"kind":"Status","code":409,"message":"the object has been modified"})");
  EXPECT_TRUE(
      api().MergePatch(kBackups, kNs, "b-1", {{"metadata", json::object()}}).status().IsConflict());
  transport_->AnswerAll(
      500,
      R"({"kind":"Status","code":500,"message":"Internal error occurred: failed calling webhook \"v.example.com\": failed to call webhook: Post \"https://127.0.0.1:1/\": dial tcp 127.0.0.1:1: connect: connection refused"})");
  Status s = api().Delete(kBackups, kNs, "b-1", "uid-1");
  EXPECT_THAT(s.message(), HasSubstr("failed calling webhook"));
  EXPECT_EQ(transport_->requests().size(), 2u) << "one request each";
}

TEST_F(RestKubeApiTest, DeleteUnchangedSendsUidAndResourceVersionPreconditions) {
  ASSERT_TRUE(api().DeleteUnchanged(kBackups, kNs, "b-1", "uid-123", "42").ok());
  EXPECT_EQ(json::parse(transport_->requests().at(0).body)["preconditions"],
            json({{"uid", "uid-123"}, {"resourceVersion", "42"}}));
}

TEST(WebhookErrorOfTest, ReadsADenialAndAFailedCall) {
  auto denied = WebhookErrorOf(
      "delete backups ns/b: HTTP 403: admission webhook \"validator.longhorn.io\" denied the "
      "request: backup is in progress");
  ASSERT_TRUE(denied.has_value());
  EXPECT_TRUE(denied->denied);
  EXPECT_EQ(denied->webhook, "validator.longhorn.io");
  EXPECT_EQ(denied->reason, "backup is in progress");
  auto failed = WebhookErrorOf(
      "HTTP 500: Internal error occurred: failed calling webhook \"dead.example.com\": failed to "
      "call webhook: connection refused");
  ASSERT_TRUE(failed.has_value());
  EXPECT_FALSE(failed->denied);
  EXPECT_EQ(failed->webhook, "dead.example.com");
  EXPECT_EQ(failed->reason, "failed to call webhook: connection refused");
  EXPECT_FALSE(WebhookErrorOf("HTTP 500: etcdserver: request timed out").has_value());
}

// ---- over TLS, against a local server that streams like the API server ----

// An HTTPS server on 127.0.0.1 and a free port that answers every GET with `handler`, which a
// test sets before its first request.
class LocalApiServer {
 public:
  using Handler = std::function<void(const httplib::Request&, httplib::Response&)>;

  explicit LocalApiServer(const testutil::CertAndKey& cert) {
    testutil::X509Ptr x509 = testutil::ParseCert(cert.cert_pem);
    testutil::PkeyPtr key = testutil::ParseKey(cert.key_pem);
    server_ = std::make_unique<httplib::SSLServer>(x509.get(), key.get());
    if (!server_->is_valid()) std::abort();
    server_->Get(
        ".*", [this](const httplib::Request& req, httplib::Response& res) { handler_(req, res); });
    port_ = server_->bind_to_any_port("127.0.0.1");
    if (port_ <= 0) std::abort();
    thread_ = std::thread([this] { server_->listen_after_bind(); });
    while (!server_->is_running()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  ~LocalApiServer() {
    released_ = true;
    server_->stop();
    thread_.join();
  }

  void set_handler(Handler h) {
    std::lock_guard<std::mutex> lock(mu_);
    handler_ = std::move(h);
  }
  int port() const { return port_; }
  // Stream handlers that hold a connection open wait for this.
  bool released() const { return released_.load(); }

 private:
  std::mutex mu_;
  Handler handler_;  // guarded by mu_
  std::atomic<bool> released_{false};
  std::unique_ptr<httplib::SSLServer> server_;
  int port_ = 0;
  std::thread thread_;
};

class RestKubeApiOverTlsTest : public ::testing::Test {
 protected:
  RestKubeApiOverTlsTest() : ca_("local API server CA"), server_(ca_.IssueServer()) {
    ClusterConfig config;
    config.host = "127.0.0.1";
    config.port = server_.port();
    config.ca_pem = ca_.cert_pem();
    Result<std::unique_ptr<HttpsTransport>> transport = HttpsTransport::Create(config);
    if (!transport.ok()) std::abort();
    RestKubeApiOptions options;
    options.qps = 0;
    api_ = std::make_unique<RestKubeApi>(std::move(transport).value(), options);
  }

  testutil::TestCa ca_;
  LocalApiServer server_;
  std::unique_ptr<RestKubeApi> api_;
};

TEST_F(RestKubeApiOverTlsTest, WatchEventsArriveWhileTheStreamIsOpen) {
  std::atomic<bool> client_saw_first{false};
  std::atomic<bool> ack_before_end{false};
  std::mutex mu;
  std::string query;  // guarded by mu
  server_.set_handler([&](const httplib::Request& req, httplib::Response& res) {
    {
      std::lock_guard<std::mutex> lock(mu);
      query = req.get_param_value("watch") + " " + req.get_param_value("allowWatchBookmarks") +
              " " + req.get_param_value("resourceVersion");
    }
    res.set_chunked_content_provider("application/json", [&](size_t, httplib::DataSink& sink) {
      const std::string first = Event("ADDED", "a", "8") + "\n";
      // One event in two pieces with a pause between them.
      sink.write(first.data(), 10);
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
      sink.write(first.data() + 10, first.size() - 10);
      const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
      while (!client_saw_first.load() && std::chrono::steady_clock::now() < deadline) {
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
      }
      ack_before_end = client_saw_first.load();
      const std::string rest = Event("BOOKMARK", "", "9") + "\n" + Event("MODIFIED", "a", "10") +
                               "\n" + Event("DELETED", "a", "11") + "\n";
      sink.write(rest.data(), rest.size());
      sink.done();
      return true;
    });
  });
  std::vector<std::string> events;
  std::atomic<bool> stop{false};
  Status s = api_->Watch(
      kBackups, kNs, "7",
      [&](const WatchEvent& e) {
        events.push_back(e.type + " " + e.object["metadata"].value("name", ""));
        client_saw_first = true;
        return true;
      },
      stop);
  ASSERT_TRUE(s.ok()) << s.message();
  {
    std::lock_guard<std::mutex> lock(mu);
    EXPECT_EQ(query, "true true 7");
  }
  EXPECT_THAT(events, ElementsAre("ADDED a", "BOOKMARK ", "MODIFIED a", "DELETED a"));
  EXPECT_TRUE(ack_before_end) << "the first event arrived only after the stream ended";
}

TEST_F(RestKubeApiOverTlsTest, StopEndsAnIdleWatch) {
  // Shared, not on this frame: the handler thread still writes it during fixture teardown.
  auto holding_ptr = std::make_shared<std::atomic<bool>>(false);
  std::atomic<bool>& holding = *holding_ptr;
  server_.set_handler([this, holding_ptr](const httplib::Request&, httplib::Response& res) {
    res.set_chunked_content_provider("application/json",
                                     [this, holding_ptr](size_t, httplib::DataSink& sink) {
                                       const std::string first = Event("ADDED", "a", "8") + "\n";
                                       sink.write(first.data(), first.size());
                                       *holding_ptr = true;
                                       while (!server_.released())
                                         std::this_thread::sleep_for(std::chrono::milliseconds(5));
                                       *holding_ptr = false;
                                       return false;
                                     });
  });
  std::atomic<bool> stop{false};
  std::atomic<bool> got_event{false};
  std::thread stopper([&] {
    while (!got_event.load()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    std::this_thread::sleep_for(std::chrono::milliseconds(50));  // let the read block
    stop = true;
  });
  const auto start = std::chrono::steady_clock::now();
  Status s = api_->Watch(
      kBackups, kNs, "7",
      [&](const WatchEvent&) {
        got_event = true;
        return true;
      },
      stop);
  const auto elapsed = std::chrono::steady_clock::now() - start;
  stopper.join();
  EXPECT_TRUE(s.ok()) << s.message();
  EXPECT_TRUE(holding) << "the server ended the stream, not stop";
  EXPECT_LT(elapsed, std::chrono::seconds(10));  // generous; the read timeout is minutes
}

TEST_F(RestKubeApiOverTlsTest, WatchAnswered410IsGone) {
  server_.set_handler([](const httplib::Request&, httplib::Response& res) {
    res.status = 410;
    res.set_content(
        R"j({"kind":"Status","code":410,"reason":"Expired","message":"too old resource version: 1 (99)"})j",
        "application/json");
  });
  std::atomic<bool> stop{false};
  Status s = api_->Watch(
      kBackups, kNs, "1", [](const WatchEvent&) { return true; }, stop);
  EXPECT_EQ(s.code(), Status::Code::kGone);
  EXPECT_THAT(s.message(), HasSubstr("too old resource version: 1 (99)"));
}

TEST_F(RestKubeApiOverTlsTest, ListPagesThroughTwoThousandObjects) {
  std::atomic<int> requests{0};
  std::atomic<int> selector_matches{0};
  server_.set_handler([&](const httplib::Request& req, httplib::Response& res) {
    ++requests;
    if (req.get_param_value("labelSelector") == "backup-volume=vol-1") ++selector_matches;
    const int limit = std::stoi(req.get_param_value("limit"));
    const std::string token = req.get_param_value("continue");
    const int offset = token.empty() ? 0 : std::stoi(token);
    json page = {{"kind", "BackupList"},
                 {"apiVersion", "longhorn.io/v1beta2"},
                 {"metadata", {{"resourceVersion", std::to_string(1000 + offset)}}},
                 {"items", json::array()}};
    for (int i = offset; i < std::min(offset + limit, 2000); ++i) {
      page["items"].push_back({{"metadata", {{"name", "b-" + std::to_string(i)}}}});
    }
    if (offset + limit < 2000) page["metadata"]["continue"] = std::to_string(offset + limit);
    res.set_content(page.dump(), "application/json");
  });
  Result<json> list = api_->List(kBackups, kNs, "backup-volume=vol-1");
  ASSERT_TRUE(list.ok()) << list.status().message();
  EXPECT_EQ((*list)["items"].size(), 2000u);
  EXPECT_EQ((*list)["items"][1999]["metadata"]["name"], "b-1999");
  EXPECT_EQ((*list)["metadata"]["resourceVersion"], "1000");
  EXPECT_EQ(requests.load(), 4);
  EXPECT_EQ(selector_matches.load(), 4);
}

TEST_F(RestKubeApiOverTlsTest, A429RetryAfterHeaderIsHonouredOverTheWire) {
  ClusterConfig config;
  config.host = "127.0.0.1";
  config.port = server_.port();
  config.ca_pem = ca_.cert_pem();
  Result<std::unique_ptr<HttpsTransport>> transport = HttpsTransport::Create(config);
  ASSERT_TRUE(transport.ok());
  RestKubeApiOptions options;
  options.qps = 0;
  options.retry = CommandRetry();
  std::vector<std::chrono::milliseconds> waits;
  options.sleep = [&](std::chrono::milliseconds d) { waits.push_back(d); };
  RestKubeApi api(std::move(transport).value(), options);
  std::atomic<int> requests{0};
  server_.set_handler([&](const httplib::Request&, httplib::Response& res) {
    if (requests.fetch_add(1) == 0) {
      res.status = 429;
      res.set_header("Retry-After", "2");
      res.set_content(R"({"kind":"Status","code":429})", "application/json");
      return;
    }
    res.set_content(R"({"kind":"Backup","metadata":{"name":"b-1"}})", "application/json");
  });
  Result<json> got = api.Get(kBackups, kNs, "b-1");
  ASSERT_TRUE(got.ok()) << got.status().message();
  EXPECT_EQ(requests.load(), 2);
  EXPECT_THAT(waits, ElementsAre(std::chrono::milliseconds(2000)));
}

}  // namespace
}  // namespace bg::kube
