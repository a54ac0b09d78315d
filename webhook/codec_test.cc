#include "webhook/codec.h"

#include <gtest/gtest.h>
#include <openssl/evp.h>

namespace bg::webhook {
namespace {

using nlohmann::json;

json Review(const std::string& version = "admission.k8s.io/v1") {
  return {{"apiVersion", version},
          {"kind", "AdmissionReview"},
          {"request",
           {{"uid", "abc-123"},
            {"kind", {{"group", "longhorn.io"}, {"version", "v1beta2"}, {"kind", "SystemBackup"}}},
            {"resource",
             {{"group", "longhorn.io"}, {"version", "v1beta2"}, {"resource", "systembackups"}}},
            {"name", "sb"},
            {"namespace", "longhorn-system"},
            {"operation", "CREATE"},
            {"dryRun", true},
            {"object", {{"metadata", {{"name", "sb"}}}}}}}};
}

DecodeError Error(const std::variant<DecodedReview, DecodeError>& v) {
  const DecodeError* e = std::get_if<DecodeError>(&v);
  return e ? *e : DecodeError{0, "decoded fine", "", ""};
}

TEST(CodecTest, DecodesV1Request) {
  auto v = DecodeReview(Review().dump());
  ASSERT_TRUE(std::holds_alternative<DecodedReview>(v)) << Error(v).message;
  const auto& d = std::get<DecodedReview>(v);
  EXPECT_EQ(d.api_version, "admission.k8s.io/v1");
  EXPECT_EQ(d.request.uid, "abc-123");
  EXPECT_EQ(d.request.resource, "systembackups");
  EXPECT_EQ(d.request.kind, "SystemBackup");
  EXPECT_EQ(d.request.operation, Operation::kCreate);
  EXPECT_TRUE(d.request.dry_run);
}

TEST(CodecTest, AcceptsV1beta1AndAnswersInIt) {
  auto v = DecodeReview(Review("admission.k8s.io/v1beta1").dump());
  ASSERT_TRUE(std::holds_alternative<DecodedReview>(v));
  json out =
      json::parse(EncodeReview(std::get<DecodedReview>(v).api_version, "abc-123", Allowed()));
  EXPECT_EQ(out["apiVersion"], "admission.k8s.io/v1beta1");
  EXPECT_EQ(out["kind"], "AdmissionReview");
  EXPECT_EQ(out["response"]["uid"], "abc-123");
}

TEST(CodecTest, EmptyBodyIs400) { EXPECT_EQ(Error(DecodeReview("")).http_status, 400); }

TEST(CodecTest, MalformedJsonIs400WithMessage) {
  const auto e = Error(DecodeReview("{\"apiVersion\": "));
  EXPECT_EQ(e.http_status, 400);
  EXPECT_NE(e.message.find("malformed JSON"), std::string::npos);
}

TEST(CodecTest, OversizedBodyIs413) {
  std::string big(kMaxReviewBytes + 1, ' ');
  EXPECT_EQ(Error(DecodeReview(big)).http_status, 413);
}

TEST(CodecTest, WrongApiVersionIs400) {
  const auto e = Error(DecodeReview(Review("admission.k8s.io/v2").dump()));
  EXPECT_EQ(e.http_status, 400);
  EXPECT_NE(e.message.find("apiVersion"), std::string::npos);
}

TEST(CodecTest, WrongKindIs400) {
  json r = Review();
  r["kind"] = "ConversionReview";
  EXPECT_NE(Error(DecodeReview(r.dump())).message.find("kind"), std::string::npos);
}

TEST(CodecTest, MissingRequestIs400) {
  json r = Review();
  r.erase("request");
  EXPECT_NE(Error(DecodeReview(r.dump())).message.find("missing request"), std::string::npos);
}

TEST(CodecTest, MissingUidIs400) {
  json r = Review();
  r["request"].erase("uid");
  EXPECT_NE(Error(DecodeReview(r.dump())).message.find("uid"), std::string::npos);
}

TEST(CodecTest, WrongShapesAre400AndEchoTheUid) {
  for (auto mutate : std::vector<std::function<void(json&)>>{
           [](json& r) { r["request"]["object"] = "a string"; },
           [](json& r) { r["request"]["object"]["metadata"] = 5; },
           [](json& r) { r["request"]["resource"] = json::array(); },
           [](json& r) { r["request"]["operation"] = "PATCH"; },
           [](json& r) { r["request"]["dryRun"] = "yes"; },
           [](json& r) { r["request"]["name"] = 12; },
           [](json& r) { r["request"].erase("object"); }}) {
    json r = Review();
    mutate(r);
    const auto e = Error(DecodeReview(r.dump()));
    EXPECT_EQ(e.http_status, 400) << r.dump();
    EXPECT_EQ(e.uid, "abc-123") << r.dump();
  }
}

TEST(CodecTest, NonObjectBodiesAre400) {
  for (const char* body : {"[]", "null", "42", "\"s\""}) {
    EXPECT_EQ(Error(DecodeReview(body)).http_status, 400) << body;
  }
}

TEST(CodecTest, PatchIsBase64JsonPatchWithType) {
  AdmissionResponse r = Patched({{"a", 1}}, {{"a", 1}, {"b", 2}});
  json out = json::parse(EncodeReview("admission.k8s.io/v1", "u", r));
  EXPECT_EQ(out["response"]["patchType"], "JSONPatch");
  const std::string b64 = out["response"]["patch"];
  std::string raw(b64.size(), '\0');
  const int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(raw.data()),
                                reinterpret_cast<const unsigned char*>(b64.data()),
                                static_cast<int>(b64.size()));
  ASSERT_GT(n, 0);
  raw.resize(static_cast<size_t>(n));
  while (!raw.empty() && raw.back() == '\0') raw.pop_back();  // base64 padding
  EXPECT_EQ(json::parse(raw), json::parse(R"([{"op":"add","path":"/b","value":2}])"));
}

TEST(CodecTest, NoPatchFieldWhenNothingChanges) {
  json out = json::parse(EncodeReview("admission.k8s.io/v1", "u", Patched({{"a", 1}}, {{"a", 1}})));
  EXPECT_FALSE(out["response"].contains("patch"));
  EXPECT_FALSE(out["response"].contains("patchType"));
}

TEST(CodecTest, DeniedCarriesStatusCodeAndMessage) {
  json out = json::parse(EncodeReview("admission.k8s.io/v1", "u", Denied(403, "nope")));
  EXPECT_EQ(out["response"]["allowed"], false);
  EXPECT_EQ(out["response"]["status"]["code"], 403);
  EXPECT_EQ(out["response"]["status"]["message"], "nope");
  EXPECT_EQ(out["response"]["status"]["reason"], "Forbidden");
}

TEST(CodecTest, WarningsAreEncoded) {
  json out = json::parse(EncodeReview("admission.k8s.io/v1", "u", AllowedWithWarning("careful")));
  EXPECT_EQ(out["response"]["warnings"], json::array({"careful"}));
}

TEST(CodecTest, ContentTypeMustBeJson) {
  EXPECT_TRUE(IsJsonContentType("application/json"));
  EXPECT_TRUE(IsJsonContentType("application/json; charset=utf-8"));
  EXPECT_TRUE(IsJsonContentType("Application/JSON"));
  EXPECT_FALSE(IsJsonContentType("text/plain"));
  EXPECT_FALSE(IsJsonContentType(""));
  EXPECT_FALSE(IsJsonContentType("application/yaml"));
}

}  // namespace
}  // namespace bg::webhook

namespace bg::webhook {
namespace {

TEST(CodecTest, DeeplyNestedDocumentIs400NotACrash) {
  // 100,000 levels once overflowed the stack when the object was copied.
  std::string deep =
      R"({"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"d","object":)";
  deep += std::string(100000, '[') + std::string(100000, ']') + "}}";
  auto v = DecodeReview(deep);
  ASSERT_TRUE(std::holds_alternative<DecodeError>(v));
  EXPECT_EQ(std::get<DecodeError>(v).http_status, 400);
  EXPECT_NE(std::get<DecodeError>(v).message.find("nested deeper"), std::string::npos);
}

TEST(CodecTest, NestingDepthIgnoresBracketsInStrings) {
  EXPECT_EQ(NestingDepth(R"({"a":"[[[[{{{{\"[[["})", 100), 1u);
  EXPECT_EQ(NestingDepth(R"({"a":[{"b":[]}]})", 100), 4u);
  EXPECT_EQ(NestingDepth("[[[[[[", 3), 4u);
}

TEST(CodecTest, ReasonableNestingIsAccepted) {
  std::string ok =
      R"({"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"d","operation":"CREATE","resource":{"resource":"x"},"object":{"a":)";
  ok += std::string(200, '[') + std::string(200, ']') + "}}}";
  EXPECT_TRUE(std::holds_alternative<DecodedReview>(DecodeReview(ok)));
}

}  // namespace
}  // namespace bg::webhook
