#include "processor/receipt.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include "common/longhorn.h"
#include "domain/kinds.h"
#include "kube/kubeconfig.h"
#include "tests/testing/fake_kube_api.h"

namespace bg::processor {
namespace {

using nlohmann::json;
using testing::FakeKubeApi;

constexpr char kNs[] = "longhorn-system";

kube::ResourceRef R(const char* plural) { return domain::Resource(plural); }

json Backup(const std::string& name, const std::string& state, json labels, json status = {}) {
  status["state"] = state;
  return {{"metadata", {{"name", name}, {"namespace", kNs}, {"labels", std::move(labels)}}},
          {"status", std::move(status)}};
}

class ReceiptTest : public ::testing::Test {
 protected:
  void SeedEngine() {
    api_.Seed(R("backups"), Backup("b-labelled", "Completed",
                                   {{"backup-volume", "vol-1"}, {"backup-target", "t1"}},
                                   {{"volumeName", "other"},
                                    {"backupTargetName", "other"},
                                    {"url", "s3://b?backup=b-labelled&volume=vol-1"}}));
    api_.Seed(R("backups"), Backup("b-status", "Completed", json::object(),
                                   {{"volumeName", "vol-2"},
                                    {"backupTargetName", "t2"},
                                    {"url", "s3://b?backup=b-status&volume=vol-2"}}));
    api_.Seed(R("backups"), Backup("b-old-engine", "Completed", json::object(),
                                   {{"volumeName", "vol-3"}, {"url", "s3://x"}}));
    api_.Seed(R("backups"), Backup("b-failed", "Error", {{"backup-target", "default"}}));
    api_.Seed(R("backups"), Backup("b-running", "InProgress", {{"backup-volume", "vol-1"}}));
    api_.Seed(R("systembackups"), {{"metadata",
                                    {{"name", "sb-owned"},
                                     {"namespace", kNs},
                                     {"ownerReferences",
                                      {{{"apiVersion", "longhorn.io/v1beta2"},
                                        {"kind", "BackupTarget"},
                                        {"name", "t1"},
                                        {"uid", "u"}}}}}},
                                   {"status", {{"state", "Ready"}, {"version", "v1.10.0"}}}});
    api_.Seed(R("systembackups"), {{"metadata", {{"name", "sb-unowned"}, {"namespace", kNs}}},
                                   {"status", {{"state", "Ready"}, {"version", "v1.9.0"}}}});
    api_.Seed(R("systembackups"), {{"metadata", {{"name", "sb-error"}, {"namespace", kNs}}},
                                   {"status", {{"state", "Error"}}}});
  }

  FakeKubeApi api_;
};

TEST_F(ReceiptTest, ReceiptHoldsEveryCompletedBackupAndReadySystemBackupWithTargetVolumeAndUrl) {
  SeedEngine();
  auto r = BuildReceipt(api_, kNs, "2026-01-01T00:00:00Z");
  ASSERT_TRUE(r.ok()) << r.status().message();
  ASSERT_EQ(r->backups.size(), 3u);
  std::map<std::string, ReceiptBackup> by_name;
  for (const auto& b : r->backups) by_name[b.name] = b;
  // Labels first, then status, then the default target (engines before v1.8).
  EXPECT_EQ(by_name["b-labelled"].volume, "vol-1");
  EXPECT_EQ(by_name["b-labelled"].target, "t1");
  EXPECT_EQ(by_name["b-labelled"].url, "s3://b?backup=b-labelled&volume=vol-1");
  EXPECT_EQ(by_name["b-status"].volume, "vol-2");
  EXPECT_EQ(by_name["b-status"].target, "t2");
  EXPECT_EQ(by_name["b-old-engine"].target, "default");
  EXPECT_EQ(by_name.count("b-failed"), 0u);
  EXPECT_EQ(by_name.count("b-running"), 0u);
  ASSERT_EQ(r->system_backups.size(), 2u);
  std::map<std::string, ReceiptSystemBackup> sbs;
  for (const auto& sb : r->system_backups) sbs[sb.name] = sb;
  EXPECT_EQ(sbs["sb-owned"].target, "t1");
  EXPECT_EQ(sbs["sb-owned"].version, "v1.10.0");
  EXPECT_EQ(sbs["sb-unowned"].target, "default");
}

TEST_F(ReceiptTest, ReceiptRoundTripsThroughJson) {
  SeedEngine();
  auto r = BuildReceipt(api_, kNs, "2026-01-01T00:00:00Z");
  ASSERT_TRUE(r.ok());
  const json doc = ToJson(*r);
  EXPECT_EQ(doc["kind"], kReceiptKind);
  EXPECT_EQ(doc["namespace"], kNs);
  auto back = ParseReceipt(doc.dump());
  ASSERT_TRUE(back.ok()) << back.status().message();
  EXPECT_EQ(ToJson(*back), doc);
}

TEST_F(ReceiptTest, ABadReceiptIsAClearErrorNeverAnException) {
  EXPECT_NE(ParseReceipt("{not json").status().message().find("not valid JSON"), std::string::npos);
  EXPECT_NE(ParseReceipt("[]").status().message().find("not a JSON object"), std::string::npos);
  EXPECT_NE(ParseReceipt(R"({"kind":"ConfigMap"})").status().message().find("not a backup-guard"),
            std::string::npos);
  const std::string head = std::string(R"({"kind":")") + kReceiptKind + "\",";
  EXPECT_NE(ParseReceipt(head + R"("backups":[]})").status().message().find("systemBackups"),
            std::string::npos);
  auto s = ParseReceipt(head + R"("backups":[{"volume":"v"}],"systemBackups":[]})").status();
  EXPECT_EQ(s.code(), Status::Code::kInvalidArgument);
  EXPECT_NE(s.message().find("backups[0]: \"name\" is missing"), std::string::npos) << s.message();
  s = ParseReceipt(head + R"("backups":[],"systemBackups":[{"name":7}]})").status();
  EXPECT_NE(s.message().find("systemBackups[0]: \"name\" is not a string"), std::string::npos)
      << s.message();
}

TEST_F(ReceiptTest, TheReceiptFileIsWrittenAtomicallyAndReplaced) {
  char dir_template[] = "/tmp/receipt-test-XXXXXX";
  ASSERT_NE(mkdtemp(dir_template), nullptr);
  const std::string path = std::string(dir_template) + "/r.json";
  ASSERT_TRUE(WriteFileAtomically(path, "first").ok());
  ASSERT_TRUE(WriteFileAtomically(path, "second").ok());
  std::ifstream in(path);
  std::stringstream got;
  got << in.rdbuf();
  EXPECT_EQ(got.str(), "second");
  EXPECT_FALSE(WriteFileAtomically(std::string(dir_template) + "/no/such/dir/r.json", "x").ok());
  std::remove(path.c_str());
  rmdir(dir_template);
}

TEST_F(ReceiptTest, DefaultReceiptPathIsTimestampedInTheWorkingDirectory) {
  EXPECT_EQ(DefaultReceiptPath(1767225600), "backup-guard-receipt-20260101T000000Z.json");
  EXPECT_EQ(longhorn::Rfc3339Utc(1767225600), "2026-01-01T00:00:00Z");
}

TEST_F(ReceiptTest, TheReceiptConfigMapIsCreatedThenReplaced) {
  ASSERT_EQ(StoreReceiptConfigMap(api_, kNs, "one").value(), ReceiptStorage::kPlain);
  auto cm = api_.Peek(kConfigMaps, kNs, kReceiptConfigMap);
  ASSERT_TRUE(cm.has_value());
  EXPECT_EQ((*cm)["data"][kReceiptConfigMapKey], "one");
  ASSERT_TRUE(StoreReceiptConfigMap(api_, kNs, "two").ok());
  EXPECT_EQ((*api_.Peek(kConfigMaps, kNs, kReceiptConfigMap))["data"][kReceiptConfigMapKey], "two");
  api_.FailNext("create", 1, Status::PermissionDenied("configmaps is forbidden"));
  auto s = StoreReceiptConfigMap(api_, kNs, "three");
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.status().message().find("forbidden"), std::string::npos);
}

// A receipt of `backups` Completed Backups, as the uninstall writes it to the file.
std::string ReceiptText(int backups) {
  Receipt r;
  r.ns = kNs;
  r.created_at = "2026-01-01T00:00:00Z";
  for (int i = 0; i < backups; ++i) {
    const std::string n = std::to_string(i);
    r.backups.push_back(
        {"backup-" + n, "vol-" + std::to_string(i % 500), "default",
         "s3://backups@us-east-1/?backup=backup-" + n + "&volume=vol-" + std::to_string(i % 500)});
  }
  return ToJson(r).dump(2) + "\n";
}

TEST_F(ReceiptTest, AReceiptTooLargeForAConfigMapIsStoredCompressedAndReadsBack) {
  // 25,000 Completed Backups (the benchmark's 50,000 with half failed): several MiB of JSON.
  const std::string text = ReceiptText(25000);
  ASSERT_GT(text.size(), kConfigMapDataLimit);
  auto stored = StoreReceiptConfigMap(api_, kNs, text, "/receipt/r.json");
  ASSERT_TRUE(stored.ok()) << stored.status().message();
  EXPECT_EQ(*stored, ReceiptStorage::kGzip);
  const json cm = *api_.Peek(kConfigMaps, kNs, kReceiptConfigMap);
  EXPECT_FALSE(cm["data"].contains(kReceiptConfigMapKey));
  EXPECT_NE(cm["data"][kReceiptConfigMapNoteKey].get<std::string>().find("base64 -d | gunzip"),
            std::string::npos);
  const std::string b64 = cm["binaryData"][kReceiptConfigMapGzipKey];
  size_t total = b64.size() * 3 / 4;
  for (auto it = cm["data"].begin(); it != cm["data"].end(); ++it) {
    total += it.value().get<std::string>().size();
  }
  EXPECT_LE(total, size_t{1024} * 1024) << "the API server refuses a ConfigMap over 1 MiB";
  auto raw = kube::DecodeBase64(b64);
  ASSERT_TRUE(raw.ok());
  auto back = Gunzip(*raw);
  ASSERT_TRUE(back.ok()) << back.status().message();
  EXPECT_EQ(*back, text);
  auto parsed = ParseReceipt(*back);
  ASSERT_TRUE(parsed.ok());
  EXPECT_EQ(parsed->backups.size(), 25000u);

  // A later, small receipt replaces the compressed one: no stale key of the other form is left.
  ASSERT_EQ(StoreReceiptConfigMap(api_, kNs, "small").value(), ReceiptStorage::kPlain);
  const json again = *api_.Peek(kConfigMaps, kNs, kReceiptConfigMap);
  EXPECT_EQ(again["data"][kReceiptConfigMapKey], "small");
  EXPECT_FALSE(again["data"].contains(kReceiptConfigMapNoteKey)) << again.dump();
  EXPECT_FALSE(again.contains("binaryData") &&
               again["binaryData"].contains(kReceiptConfigMapGzipKey))
      << again.dump();
}

TEST_F(ReceiptTest, AReceiptTooLargeEvenCompressedLeavesANoteNamingTheFile) {
  // Incompressible: 2 MiB of pseudo-random text.
  std::string text;
  uint64_t x = 88172645463325252ULL;
  while (text.size() < size_t{2} * 1024 * 1024) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    text.push_back(static_cast<char>(33 + x % 90));
  }
  auto stored = StoreReceiptConfigMap(api_, kNs, text, "/receipt/r.json");
  ASSERT_TRUE(stored.ok());
  EXPECT_EQ(*stored, ReceiptStorage::kFileOnly);
  const json cm = *api_.Peek(kConfigMaps, kNs, kReceiptConfigMap);
  EXPECT_FALSE(cm["data"].contains(kReceiptConfigMapKey));
  EXPECT_NE(cm["data"][kReceiptConfigMapNoteKey].get<std::string>().find("/receipt/r.json"),
            std::string::npos);
}

TEST_F(ReceiptTest, GunzipRefusesATruncatedStream) {
  auto gz = Gzip("hello hello hello");
  ASSERT_TRUE(gz.ok());
  EXPECT_EQ(Gunzip(*gz).value(), "hello hello hello");
  EXPECT_FALSE(Gunzip(gz->substr(0, gz->size() - 4)).ok());
  EXPECT_FALSE(Gunzip("not gzip").ok());
}

TEST_F(ReceiptTest, VerifyNamesWhatIsBackAndWhatIsMissing) {
  Receipt r;
  r.ns = kNs;
  r.backups = {{"b-back", "vol-1", "default", "u"},
               {"b-missing", "vol-1", "default", "u"},
               {"b-other-volume", "vol-1", "default", "u"},
               {"b-no-volume-recorded", "", "default", "u"}};
  r.system_backups = {{"sb-back", "default", "v"}, {"sb-missing", "default", "v"}};
  api_.Seed(R("backups"), Backup("b-back", "Completed", {{"backup-volume", "vol-1"}}));
  api_.Seed(R("backups"), Backup("b-other-volume", "Completed", {{"backup-volume", "vol-9"}}));
  api_.Seed(R("backups"),
            Backup("b-no-volume-recorded", "Completed", json::object(), {{"volumeName", "x"}}));
  api_.Seed(R("systembackups"), {{"metadata", {{"name", "sb-back"}, {"namespace", kNs}}}});
  auto v = VerifyReceipt(api_, kNs, r);
  ASSERT_TRUE(v.ok()) << v.status().message();
  EXPECT_EQ(v->missing(), 3u);
  const json doc = ToJson(*v, kNs);
  EXPECT_FALSE(doc["allBack"].get<bool>());
  std::map<std::string, std::string> missing;
  for (const json& e : doc["missing"]) missing[e["name"]] = e["why"];
  EXPECT_EQ(missing["b-missing"], "not found");
  EXPECT_EQ(missing["b-other-volume"], "found with volume \"vol-9\", not \"vol-1\"");
  EXPECT_EQ(missing["sb-missing"], "not found");
  EXPECT_EQ(doc["back"].size(), 3u);

  api_.Seed(R("backups"),
            Backup("b-missing", "Completed", json::object(), {{"volumeName", "vol-1"}}));
  api_.Seed(R("backups"), Backup("b-other-volume", "Completed", {{"backup-volume", "vol-1"}}));
  api_.Seed(R("systembackups"), {{"metadata", {{"name", "sb-missing"}, {"namespace", kNs}}}});
  v = VerifyReceipt(api_, kNs, r);
  ASSERT_TRUE(v.ok());
  EXPECT_EQ(v->missing(), 0u);
  EXPECT_TRUE(ToJson(*v, kNs)["allBack"].get<bool>());
}

TEST_F(ReceiptTest, VerifyOnAnUnreadableClusterIsAnError) {
  api_.FailNext("list", 1, Status::Unavailable("connection refused"));
  auto v = VerifyReceipt(api_, kNs, Receipt{});
  EXPECT_FALSE(v.ok());
  EXPECT_NE(v.status().message().find("connection refused"), std::string::npos);
}

}  // namespace
}  // namespace bg::processor
