#include "processor/diagnose.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "domain/kinds.h"
#include "tests/testing/fake_kube_api.h"

namespace bg::processor {
namespace {

using nlohmann::json;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr char kNs[] = "longhorn-system";
const kube::ResourceRef kCrds{"apiextensions.k8s.io", "v1", "customresourcedefinitions",
                              "CustomResourceDefinition"};
const kube::ResourceRef kDaemonSets{"apps", "v1", "daemonsets", "DaemonSet"};

json Crd(
    const std::string& plural, const std::string& kind, json stored = {"v1beta2"},
    json versions = json::array({{{"name", "v1beta2"},
                                  {"served", true},
                                  {"storage", true},
                                  {"schema",
                                   {{"openAPIV3Schema",
                                     {{"properties",
                                       {{"spec",
                                         {{"properties",
                                           {{"backupTargetName", {{"type", "string"}}},
                                            {"volumeName", {{"type", "string"}}}}}}}}}}}}}}})) {
  return {{"metadata", {{"name", plural + ".longhorn.io"}}},
          {"spec",
           {{"group", "longhorn.io"},
            {"scope", "Namespaced"},
            {"names", {{"plural", plural}, {"kind", kind}}},
            {"versions", versions}}},
          {"status", {{"storedVersions", stored}}}};
}

json Obj(const std::string& name, json labels = json::object(), json spec = json::object(),
         json status = json::object()) {
  return {
      {"metadata",
       {{"name", name}, {"namespace", kNs}, {"labels", labels}, {"finalizers", {"longhorn.io"}}}},
      {"spec", spec},
      {"status", status}};
}

json Deleting(json obj) {
  obj["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z";
  return obj;
}

class DiagnoseTest : public ::testing::Test {
 protected:
  void SetUp() override {
    for (auto [plural, kind] : std::vector<std::pair<std::string, std::string>>{
             {"backuptargets", "BackupTarget"},
             {"backupvolumes", "BackupVolume"},
             {"backups", "Backup"},
             {"systembackups", "SystemBackup"},
             {"backupbackingimages", "BackupBackingImage"},
             {"volumes", "Volume"},
             {"settings", "Setting"}}) {
      api_.Seed(kCrds, Crd(plural, kind));
    }
    options_.ns = kNs;
    // 2 minutes 5 seconds after every deletionTimestamp of these tests.
    std::tm tm{};
    strptime("2026-01-01T00:02:05Z", "%Y-%m-%dT%H:%M:%SZ", &tm);
    options_.now = std::chrono::system_clock::from_time_t(timegm(&tm));
  }

  void Seed(const std::string& plural, const json& obj) {
    api_.Seed(domain::Resource(plural), obj);
  }

  void AvailableTarget() {
    Seed("backuptargets",
         Obj("default", json::object(), {{"backupTargetURL", "s3://bucket@us-east-1/"}},
             {{"available", true}}));
  }

  json Report() {
    auto d = Diagnose(api_, options_, prober_);
    EXPECT_TRUE(d.ok()) << d.status().message();
    if (!d.ok()) return json::object();
    bundle_ = d->bundle;
    return d->report;
  }

  // The problems of `category`.
  static std::vector<json> Problems(const json& report, const std::string& category) {
    std::vector<json> out;
    for (const json& p : report["problems"]) {
      if (p["category"] == category) out.push_back(p);
    }
    return out;
  }

  static json DeletingEntry(const json& report, const std::string& name) {
    for (const json& e : report["deleting"]) {
      if (e["name"] == name) return e;
    }
    ADD_FAILURE() << "no deleting entry " << name << " in " << report.dump(2);
    return json::object();
  }

  testing::FakeKubeApi api_;
  DiagnoseOptions options_;
  int probes_ = 0;
  kube::TlsProbe probe_answer_;
  kube::TlsProber prober_ = [this](const std::string&, int, const std::string&,
                                   const std::string&) {
    ++probes_;
    return probe_answer_;
  };
  json bundle_;
};

TEST_F(DiagnoseTest, NothingStuckExitsZero) {
  AvailableTarget();
  json report = Report();
  EXPECT_EQ(report["problems"], json::array()) << report.dump(2);
  EXPECT_EQ(ExitStatus(report), 0);
  EXPECT_THAT(RenderTable(report), HasSubstr("No problem found"));
}

TEST_F(DiagnoseTest, BackupLeftToTheEngineNamesTheRuleAndTheStoppedEngine) {
  AvailableTarget();
  Seed("backupvolumes", Obj("bv-vol-1", {{"backup-target", "default"}, {"backup-volume", "vol-1"}},
                            {{"backupTargetName", "default"}, {"volumeName", "vol-1"}}));
  Seed("backups",
       Deleting(Obj("backup-1", {{"backup-target", "default"}, {"backup-volume", "vol-1"}},
                    {{"snapshotName", "snap-1"}},
                    {{"state", "Completed"}, {"backupTargetName", "default"}})));
  json report = Report();
  json e = DeletingEntry(report, "backup-1");
  EXPECT_EQ(e["kind"], "Backup");
  EXPECT_EQ(e["verdict"], "held");
  EXPECT_EQ(e["deletingFor"], "2m5s");
  EXPECT_EQ(e["state"], "Completed");
  EXPECT_EQ(e["labels"]["backup-volume"], "vol-1");
  EXPECT_THAT(e["why"].get<std::string>(),
              HasSubstr("waiting for the engine: its BackupTarget \"default\" is available and it "
                        "has data in the store"));
  EXPECT_THAT(e["why"].get<std::string>(),
              HasSubstr("the engine is not running: no ready pod of its manager DaemonSet "
                        "\"longhorn-manager\""));
  EXPECT_THAT(e["fix"].get<std::string>(),
              HasSubstr("kubectl label backups.longhorn.io backup-1 -n longhorn-system "
                        "longhorn.io/delete-custom-resource-only=true"));
  EXPECT_EQ(ExitStatus(report), 1);
  const std::string table = RenderTable(report);
  EXPECT_THAT(table, HasSubstr("Objects being deleted that a finalizer holds"));
  EXPECT_THAT(table, HasSubstr("* Backup backup-1"));
}

TEST_F(DiagnoseTest, RunningEngineIsNotBlamed) {
  AvailableTarget();
  api_.Seed(kDaemonSets, {{"metadata", {{"name", "longhorn-manager"}, {"namespace", kNs}}},
                          {"status", {{"numberReady", 3}}}});
  Seed("systembackups",
       Deleting(Obj("sb-1", json::object(), json::object(), {{"state", "Ready"}})));
  json report = Report();
  EXPECT_EQ(report["engine"]["running"], true);
  json e = DeletingEntry(report, "sb-1");
  EXPECT_THAT(e["why"].get<std::string>(), HasSubstr("waiting for the engine"));
  EXPECT_THAT(e["why"].get<std::string>(), Not(HasSubstr("not running")));
}

TEST_F(DiagnoseTest, EngineWithNoReadyPodIsNotRunning) {
  AvailableTarget();
  api_.Seed(kDaemonSets, {{"metadata", {{"name", "longhorn-manager"}, {"namespace", kNs}}},
                          {"status", {{"numberReady", 0}}}});
  Seed("systembackups",
       Deleting(Obj("sb-1", json::object(), json::object(), {{"state", "Ready"}})));
  json report = Report();
  EXPECT_EQ(report["engine"]["running"], false);
  EXPECT_THAT(DeletingEntry(report, "sb-1")["why"].get<std::string>(),
              HasSubstr("no ready pod of its manager DaemonSet"));
}

TEST_F(DiagnoseTest, BackupVolumeWithBackupsRemaining) {
  Seed("backuptargets", Obj("default", json::object(), {{"backupTargetURL", ""}}));
  Seed("backupvolumes",
       Deleting(Obj("bv-vol-1", {{"backup-target", "default"}, {"backup-volume", "vol-1"}},
                    {{"backupTargetName", "default"}, {"volumeName", "vol-1"}})));
  for (const char* name : {"b1", "b2", "b3"}) {
    Seed("backups",
         Obj(name, {{"backup-target", "default"}, {"backup-volume", "vol-1"}},
             {{"snapshotName", "s"}}, {{"state", "Completed"}, {"backupTargetName", "default"}}));
  }
  json report = Report();
  json e = DeletingEntry(report, "bv-vol-1");
  EXPECT_EQ(e["why"], "3 Backups of volume \"vol-1\" remain");
  EXPECT_EQ(e["childrenRemaining"], 3);
  EXPECT_THAT(e["fix"].get<std::string>(), HasSubstr("-l backup-volume=vol-1"));
}

TEST_F(DiagnoseTest, ReleasableObjectSaysNoProcessorReleasedIt) {
  Seed("backups", Deleting(Obj("failed", {{"backup-target", "default"}}, {{"snapshotName", "s"}},
                               {{"state", "Error"}, {"backupTargetName", ""}})));
  json report = Report();
  json e = DeletingEntry(report, "failed");
  EXPECT_EQ(e["verdict"], "releasable");
  EXPECT_EQ(e["releaseReason"], "no-volume-label");
  EXPECT_THAT(e["why"].get<std::string>(), HasSubstr("backup-guard serve"));
  EXPECT_THAT(e["fix"].get<std::string>(),
              HasSubstr("kubectl patch backups.longhorn.io failed -n longhorn-system --type=json"));
}

TEST_F(DiagnoseTest, ForeignFinalizerIsLeftToItsOwner) {
  json v = Deleting(Obj("vol-1"));
  v["metadata"]["finalizers"] = {"example.com/guard"};
  Seed("volumes", v);
  json report = Report();
  EXPECT_EQ(DeletingEntry(report, "vol-1")["verdict"], "foreign-finalizers");
}

TEST_F(DiagnoseTest, StoredVersionNoLongerServed) {
  api_.Seed(kCrds, Crd("engines", "Engine", {"v1beta1", "v1beta2"},
                       json::array({{{"name", "v1beta1"}, {"served", false}, {"storage", false}},
                                    {{"name", "v1beta2"}, {"served", true}, {"storage", true}}})));
  json report = Report();
  auto problems = Problems(report, "stored-version");
  ASSERT_EQ(problems.size(), 1u) << report.dump(2);
  EXPECT_EQ(problems[0]["object"], "CustomResourceDefinition engines.longhorn.io");
  EXPECT_THAT(problems[0]["detail"].get<std::string>(), HasSubstr("[\"v1beta1\"]"));
  EXPECT_THAT(problems[0]["fix"].get<std::string>(),
              HasSubstr("kubectl patch crd engines.longhorn.io --subresource=status"));
  EXPECT_THAT(problems[0]["fix"].get<std::string>(), HasSubstr("[\"v1beta2\"]"));
}

TEST_F(DiagnoseTest, EmptyAndDuplicatedBackupVolumes) {
  Seed("backupvolumes", Obj("bv-empty", {{"backup-target", "default"}},
                            {{"backupTargetName", "default"}, {"volumeName", ""}}));
  json older = Obj("bv-a", {{"backup-target", "default"}, {"backup-volume", "vol-1"}},
                   {{"backupTargetName", "default"}, {"volumeName", "vol-1"}});
  older["metadata"]["creationTimestamp"] = "2025-01-01T00:00:00Z";
  json newer = older;
  newer["metadata"]["name"] = "bv-b";
  newer["metadata"]["creationTimestamp"] = "2025-06-01T00:00:00Z";
  Seed("backupvolumes", newer);
  Seed("backupvolumes", older);
  json report = Report();
  auto empty = Problems(report, "backupvolume-empty-name");
  ASSERT_EQ(empty.size(), 1u) << report.dump(2);
  EXPECT_EQ(empty[0]["object"], "BackupVolume bv-empty");
  EXPECT_THAT(empty[0]["detail"].get<std::string>(), HasSubstr("spec.volumeName is empty"));
  auto dup = Problems(report, "backupvolume-duplicate");
  ASSERT_EQ(dup.size(), 1u);
  EXPECT_THAT(dup[0]["fix"].get<std::string>(), HasSubstr("keep the oldest, bv-a"));
  // The duplicate is labelled before it is deleted, so the engine does not delete the shared data.
  EXPECT_THAT(dup[0]["fix"].get<std::string>(),
              HasSubstr("kubectl label backupvolumes.longhorn.io bv-b -n longhorn-system "
                        "longhorn.io/delete-custom-resource-only=true && kubectl delete "
                        "backupvolumes.longhorn.io bv-b"));
  EXPECT_EQ(report["backupVolumes"]["duplicates"][0]["names"], json({"bv-a", "bv-b"}));
}

TEST_F(DiagnoseTest, EmptyNamesAreNotFlaggedUnderASchemaWithoutTheFields) {
  // The engine before v1.8: BackupVolumes have neither field.
  api_.Seed(kCrds, Crd("backupvolumes", "BackupVolume", {"v1beta2"},
                       json::array({{{"name", "v1beta2"}, {"served", true}, {"storage", true}}})));
  Seed("backupvolumes", Obj("vol-1"));
  EXPECT_TRUE(Problems(Report(), "backupvolume-empty-name").empty());
}

TEST_F(DiagnoseTest, VolumeWhoseTargetIsMissing) {
  AvailableTarget();
  Seed("volumes", Obj("vol-ok", json::object(), {{"backupTargetName", "default"}}));
  Seed("volumes", Obj("vol-lost", json::object(), {{"backupTargetName", "gone"}}));
  json report = Report();
  auto p = Problems(report, "volume-target-missing");
  ASSERT_EQ(p.size(), 1u) << report.dump(2);
  EXPECT_EQ(p[0]["object"], "Volume vol-lost");
  EXPECT_THAT(p[0]["detail"].get<std::string>(), HasSubstr("\"gone\", which does not exist"));
}

TEST_F(DiagnoseTest, ConfirmationFlagParsedAsTheEngineParsesIt) {
  json setting = {{"metadata", {{"name", "deleting-confirmation-flag"}, {"namespace", kNs}}},
                  {"value", "True"}};
  Seed("settings", setting);
  EXPECT_EQ(Report()["confirmationFlag"]["parsesAsTrue"], true);
  setting["value"] = "yes";
  Seed("settings", setting);
  json flag = Report()["confirmationFlag"];
  EXPECT_EQ(flag["value"], "yes");
  EXPECT_EQ(flag["parsesAsBool"], false);
  EXPECT_EQ(flag["parsesAsTrue"], false);
}

TEST_F(DiagnoseTest, DeadWebhookIsReportedWithAFix) {
  api_.Seed(
      kube::kValidatingWebhookConfigurations,
      {{"metadata", {{"name", "dead"}}},
       {"webhooks", json::array({{{"name", "dead.example.com"},
                                  {"failurePolicy", "Fail"},
                                  {"clientConfig", {{"url", "https://127.0.0.1:9/v"}}},
                                  {"rules", json::array({{{"apiGroups", {"longhorn.io"}}}})}}})}});
  api_.Seed(kube::kMutatingWebhookConfigurations,
            {{"metadata", {{"name", "unrelated"}}},
             {"webhooks", json::array({{{"name", "apps.example.com"},
                                        {"clientConfig", {{"url", "https://127.0.0.1:9/m"}}},
                                        {"rules", json::array({{{"apiGroups", {"apps"}}}})}}})}});
  probe_answer_.error = "connect to 127.0.0.1:9: Connection refused";
  json report = Report();
  EXPECT_EQ(probes_, 1);  // the unrelated webhook is not checked
  auto p = Problems(report, "webhook-stale");
  ASSERT_EQ(p.size(), 1u) << report.dump(2);
  EXPECT_THAT(p[0]["object"].get<std::string>(),
              HasSubstr("ValidatingWebhookConfiguration dead (webhook dead.example.com, "
                        "failurePolicy Fail)"));
  EXPECT_THAT(p[0]["fix"].get<std::string>(),
              HasSubstr("kubectl delete validatingwebhookconfiguration dead"));
  EXPECT_EQ(bundle_["webhookconfigurations.json"].size(), 2u);
}

TEST_F(DiagnoseTest, CaBundleThatDoesNotVerify) {
  api_.Seed(
      kube::kMutatingWebhookConfigurations,
      {{"metadata", {{"name", "bg"}}},
       {"webhooks", json::array({{{"name", "m.example.com"},
                                  {"clientConfig", {{"url", "https://127.0.0.1:9443/m"}}},
                                  {"rules", json::array({{{"apiGroups", {"longhorn.io"}}}})}}})}});
  probe_answer_.connected = probe_answer_.handshake = true;
  probe_answer_.ca_error = "unable to get local issuer certificate";
  auto p = Problems(Report(), "webhook-ca");
  ASSERT_EQ(p.size(), 1u);
  EXPECT_THAT(p[0]["fix"].get<std::string>(),
              HasSubstr("kubectl patch mutatingwebhookconfiguration bg --type=json"));
  EXPECT_THAT(p[0]["fix"].get<std::string>(), HasSubstr("/webhooks/0/clientConfig/caBundle"));
}

TEST_F(DiagnoseTest, ClusterThatCannotBeReadIsAnError) {
  api_.FailNext("list", 1, Status::Unavailable("connection refused"));
  auto d = Diagnose(api_, options_, prober_);
  ASSERT_FALSE(d.ok());
  EXPECT_THAT(d.status().message(), HasSubstr("CustomResourceDefinitions"));
}

TEST_F(DiagnoseTest, BundleHoldsMetadataNotSpecs) {
  json target = Obj(
      "default", json::object(),
      {{"backupTargetURL", "cifs://user:password@host/share"}, {"credentialSecret", "cifs-secret"}},
      {{"available", true}});
  target["metadata"]["annotations"] = {
      {"kubectl.kubernetes.io/last-applied-configuration", "{\"spec\":\"password\"}"},
      {"longhorn.io/delete-backup-target-from-longhorn", "true"}};
  target["metadata"]["managedFields"] = json::array({{{"manager", "kubectl"}}});
  Seed("backuptargets", target);
  Report();
  const std::string text = bundle_.dump();
  EXPECT_THAT(text, Not(HasSubstr("password")));
  EXPECT_THAT(text, Not(HasSubstr("cifs-secret")));
  EXPECT_THAT(text, Not(HasSubstr("managedFields")));
  EXPECT_THAT(text, HasSubstr("longhorn.io/delete-backup-target-from-longhorn"));
  ASSERT_EQ(bundle_["objects/backuptargets.json"].size(), 1u);
  EXPECT_EQ(bundle_["objects/backuptargets.json"][0]["metadata"]["name"], "default");
  EXPECT_TRUE(bundle_.contains("crds.json"));
}

TEST(RedactTokens, BearerAndJwtGo) {
  const std::string jwt =
      "eyJhbGciOiJSUzI1NiIsImtpZCI6IjEifQ.eyJzdWIiOiJzeXN0ZW06c2EifQ.c2lnbmF0dXJl";
  const std::string out =
      RedactTokens("Authorization: Bearer abc.def-123\ntoken=" + jwt + " done\n");
  EXPECT_THAT(out, Not(HasSubstr("abc.def-123")));
  EXPECT_THAT(out, Not(HasSubstr("eyJ")));
  EXPECT_THAT(out, HasSubstr("Bearer [redacted]"));
  EXPECT_THAT(out, HasSubstr(" done"));
}

TEST(BackupGuardState, ReadsLeaderCertificatesAndApiContact) {
  const auto now = std::chrono::system_clock::from_time_t(1'800'000'000);
  json problems = json::array();
  json state = BackupGuardState(
      "# HELP x\nbackup_guard_leader 1\n"
      "backup_guard_build_info{version=\"0.1.0\"} 1\n"
      "backup_guard_certificate_expiry_timestamp_seconds{certificate=\"serving\"} 1800003600\n"
      "backup_guard_certificate_expiry_timestamp_seconds{certificate=\"ca\"} 1799999000\n"
      "backup_guard_kube_api_last_contact_timestamp_seconds 1799999990\n"
      "backup_guard_kube_api_reachable 1\n",
      now, problems);
  EXPECT_EQ(state["leader"], true);
  EXPECT_EQ(state["version"], "0.1.0");
  EXPECT_EQ(state["certificates"]["serving"]["secondsLeft"], 3600);
  EXPECT_EQ(state["lastApiContactSecondsAgo"], 10);
  ASSERT_EQ(problems.size(), 1u) << problems.dump();  // the expired CA
  EXPECT_EQ(problems[0]["object"], "certificate ca");
}

TEST(BackupGuardState, LongSilenceFromTheApiIsAProblem) {
  const auto now = std::chrono::system_clock::from_time_t(1'800'000'000);
  json problems = json::array();
  BackupGuardState(
      "backup_guard_leader 0\nbackup_guard_kube_api_last_contact_timestamp_seconds "
      "1799999000\n",
      now, problems);
  ASSERT_EQ(problems.size(), 1u);
  EXPECT_THAT(problems[0]["detail"].get<std::string>(), HasSubstr("16m40s"));
}

}  // namespace
}  // namespace bg::processor
