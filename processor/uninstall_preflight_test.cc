#include "processor/uninstall_preflight.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <sstream>

#include "domain/kinds.h"
#include "processor/receipt.h"
#include "tests/testing/fake_kube_api.h"
#include "tests/testing/forwarding_kube_api.h"

namespace bg::processor {
namespace {

using nlohmann::json;
using testing::FakeKubeApi;

constexpr char kNs[] = "longhorn-system";
constexpr int kDeadPort = 1;  // the fake prober refuses this port, answers every other
const kube::ResourceRef kCrd{"apiextensions.k8s.io", "v1", "customresourcedefinitions",
                             "CustomResourceDefinition"};

kube::ResourceRef R(const char* plural) { return domain::Resource(plural); }

json WebhookConfiguration(const std::string& name, int port, const std::string& group,
                          const std::string& kind = "ValidatingWebhookConfiguration") {
  return {{"kind", kind},
          {"metadata", {{"name", name}, {"namespace", ""}}},
          {"webhooks",
           {{{"name", name + ".example.com"},
             {"failurePolicy", "Fail"},
             {"clientConfig", {{"url", "https://127.0.0.1:" + std::to_string(port) + "/v"}}},
             {"rules",
              {{{"apiGroups", {group}},
                {"apiVersions", {"v1beta2"}},
                {"resources", {"backups"}},
                {"operations", {"DELETE"}}}}}}}}};
}

// Answers every port but kDeadPort, with a certificate the caBundle verifies.
kube::TlsProbe FakeProbe(const std::string&, int port, const std::string&, const std::string&) {
  kube::TlsProbe p;
  if (port == kDeadPort) {
    p.error = "connect: Connection refused";
    return p;
  }
  p.connected = p.handshake = p.ca_verifies = true;
  return p;
}

class PreflightTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char dir_template[] = "/tmp/preflight-test-XXXXXX";
    ASSERT_NE(mkdtemp(dir_template), nullptr);
    dir_ = dir_template;
    for (const char* plural : {"backups", "systembackups"}) {
      api_.Seed(kCrd, {{"metadata", {{"name", std::string(plural) + ".longhorn.io"}}},
                       {"spec",
                        {{"group", "longhorn.io"},
                         {"names", {{"plural", plural}, {"kind", R(plural).kind}}}}}});
    }
    api_.Seed(R("settings"),
              {{"metadata", {{"name", "deleting-confirmation-flag"}, {"namespace", kNs}}},
               {"value", "true"}});
    api_.Seed(
        R("backups"),
        {{"metadata",
          {{"name", "b-1"},
           {"namespace", kNs},
           {"labels", {{"backup-volume", "vol-1"}, {"backup-target", "default"}}}}},
         {"status", {{"state", "Completed"}, {"backupTargetName", "default"}, {"url", "s3://u"}}}});
    api_.Seed(R("systembackups"), {{"metadata", {{"name", "sb-1"}, {"namespace", kNs}}},
                                   {"status", {{"state", "Ready"}, {"version", "v1.10.0"}}}});
    preflight_.prober = FakeProbe;
    preflight_.receipt_path = dir_ + "/receipt.json";
  }
  void TearDown() override {
    std::remove((dir_ + "/receipt.json").c_str());
    rmdir(dir_.c_str());
  }

  int Run(UninstallOptions o = {}) {
    o.ns = kNs;
    o.poll_interval = std::chrono::milliseconds(5);
    o.timeout = std::chrono::seconds(10);
    return RunUninstallWithPreflight(api_, o, preflight_, out_, err_);
  }

  bool Exists(const kube::ResourceRef& r, const std::string& ns, const std::string& name) {
    return api_.Peek(r, ns, name).has_value();
  }

  std::string ReceiptFile() {
    std::ifstream in(preflight_.receipt_path);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
  }

  FakeKubeApi api_;
  PreflightOptions preflight_;
  std::string dir_;
  std::ostringstream out_, err_;
};

TEST_F(PreflightTest, TheReceiptIsWrittenToTheFileAndTheConfigMapBeforeAnythingIsDeleted) {
  EXPECT_EQ(Run(), 0) << err_.str();
  auto receipt = ParseReceipt(ReceiptFile());
  ASSERT_TRUE(receipt.ok()) << receipt.status().message();
  ASSERT_EQ(receipt->backups.size(), 1u);
  EXPECT_EQ(receipt->backups[0].name, "b-1");
  EXPECT_EQ(receipt->backups[0].url, "s3://u");
  ASSERT_EQ(receipt->system_backups.size(), 1u);
  auto cm = api_.Peek(kConfigMaps, kNs, kReceiptConfigMap);
  ASSERT_TRUE(cm.has_value());
  EXPECT_EQ(ParseReceipt((*cm)["data"][kReceiptConfigMapKey]).ok(), true);
  EXPECT_FALSE(Exists(R("backups"), kNs, "b-1")) << "the uninstall ran on";
}

TEST_F(PreflightTest, AReceiptThatCannotBeWrittenStopsTheUninstallBeforeAnyDelete) {
  preflight_.receipt_path = dir_ + "/no/such/dir/receipt.json";
  EXPECT_EQ(Run(), 1);
  EXPECT_NE(err_.str().find("cannot write the receipt, so nothing was deleted"), std::string::npos)
      << err_.str();
  EXPECT_EQ(api_.calls("delete"), 0);
  EXPECT_EQ(api_.calls("patch"), 0);

  preflight_.receipt_path = dir_ + "/receipt.json";
  api_.FailNext("create", 1, Status::PermissionDenied("configmaps is forbidden"));
  EXPECT_EQ(Run(), 1);
  EXPECT_NE(err_.str().find("configmaps is forbidden"), std::string::npos) << err_.str();
  EXPECT_EQ(api_.calls("delete"), 0);
}

TEST_F(PreflightTest, TheDryRunPrintsTheReceiptAndStaleWebhooksAndWritesNothing) {
  api_.Seed(kube::kValidatingWebhookConfigurations,
            WebhookConfiguration("dead", kDeadPort, "longhorn.io"));
  UninstallOptions o;
  o.dry_run = true;
  EXPECT_EQ(Run(o), 0) << err_.str();
  EXPECT_NE(out_.str().find("receipt (not written in a dry run): 1 Completed Backups, 1 Ready "
                            "SystemBackups"),
            std::string::npos)
      << out_.str();
  EXPECT_NE(out_.str().find("Backup b-1 volume=vol-1 target=default url=s3://u"),
            std::string::npos);
  EXPECT_NE(out_.str().find("ValidatingWebhookConfiguration dead (webhook dead.example.com, "
                            "failurePolicy Fail"),
            std::string::npos)
      << out_.str();
  EXPECT_FALSE(Exists(kConfigMaps, kNs, kReceiptConfigMap));
  EXPECT_TRUE(ReceiptFile().empty());
  EXPECT_TRUE(Exists(kube::kValidatingWebhookConfigurations, "", "dead"));
  EXPECT_EQ(api_.calls("delete"), 0);
}

TEST_F(PreflightTest, StaleWebhooksAreRemovedOnlyWithTheFlagAndOnlyTheStaleOnes) {
  api_.Seed(kube::kValidatingWebhookConfigurations,
            WebhookConfiguration("dead", kDeadPort, "longhorn.io"));
  api_.Seed(kube::kMutatingWebhookConfigurations,
            WebhookConfiguration("live", 9443, "longhorn.io", "MutatingWebhookConfiguration"));
  api_.Seed(kube::kValidatingWebhookConfigurations,
            WebhookConfiguration("dead-elsewhere", kDeadPort, "apps"));
  auto stale = FindStaleWebhooks(api_, kNs, FakeProbe);
  ASSERT_TRUE(stale.ok());
  ASSERT_EQ(stale->size(), 1u);
  EXPECT_EQ((*stale)[0].configuration, "dead");

  preflight_.remove_stale_webhooks = true;
  EXPECT_EQ(Run(), 0) << err_.str();
  EXPECT_NE(out_.str().find("deleted stale ValidatingWebhookConfiguration dead"), std::string::npos)
      << out_.str();
  EXPECT_FALSE(Exists(kube::kValidatingWebhookConfigurations, "", "dead"));
  EXPECT_TRUE(Exists(kube::kMutatingWebhookConfigurations, "", "live"));
  EXPECT_TRUE(Exists(kube::kValidatingWebhookConfigurations, "", "dead-elsewhere"))
      << "a webhook that does not concern the engine is not the uninstall's to remove";
}

TEST_F(PreflightTest, WithoutTheFlagStaleWebhooksAreReportedAndLeft) {
  api_.Seed(kube::kValidatingWebhookConfigurations,
            WebhookConfiguration("dead", kDeadPort, "longhorn.io"));
  EXPECT_EQ(Run(), 0) << err_.str();
  EXPECT_NE(out_.str().find("--remove-stale-webhooks deletes these"), std::string::npos)
      << out_.str();
  EXPECT_TRUE(Exists(kube::kValidatingWebhookConfigurations, "", "dead"));
}

// A webhook that dies after the check: the write it refuses ends the run; the check runs again,
// removes it and the uninstall resumes, without rewriting the receipt.
class DyingWebhookApi final : public testing::ForwardingKubeApi {
 public:
  explicit DyingWebhookApi(FakeKubeApi& api) : ForwardingKubeApi(api), api_(api) {}
  Result<json> DeleteReturningObject(const kube::ResourceRef& r, const std::string& ns,
                                     const std::string& name, const std::string& uid) override {
    if (r.group == "longhorn.io" &&
        api_.Peek(kube::kValidatingWebhookConfigurations, "", "dying")) {
      return Status::Unavailable(
          "backups " + name +
          ": HTTP 500: Internal error occurred: failed calling webhook \"dying.example.com\": "
          "failed to call webhook: connect: connection refused");
    }
    return api_.DeleteReturningObject(r, ns, name, uid);
  }

 private:
  FakeKubeApi& api_;
};

TEST_F(PreflightTest, AWriteRefusedByAFailingWebhookCallRechecksRemovesAndResumes) {
  api_.Seed(kube::kValidatingWebhookConfigurations,
            WebhookConfiguration("dying", kDeadPort, "longhorn.io"));
  int probes = 0;  // the first check finds it answering; it is dead from then on
  preflight_.prober = [&](const std::string& h, int port, const std::string& n,
                          const std::string& ca) {
    return FakeProbe(h, probes++ == 0 ? 9443 : port, n, ca);
  };
  preflight_.remove_stale_webhooks = true;
  DyingWebhookApi api(api_);
  UninstallOptions o;
  o.ns = kNs;
  o.poll_interval = std::chrono::milliseconds(5);
  o.timeout = std::chrono::seconds(10);
  std::ostringstream out, err;
  EXPECT_EQ(RunUninstallWithPreflight(api, o, preflight_, out, err), 0) << err.str() << out.str();
  EXPECT_NE(err.str().find("could not be called"), std::string::npos) << err.str();
  EXPECT_NE(out.str().find("deleted stale ValidatingWebhookConfiguration dying"), std::string::npos)
      << out.str();
  EXPECT_NE(out.str().find("resuming the uninstall"), std::string::npos);
  EXPECT_FALSE(Exists(R("backups"), kNs, "b-1"));
  // Written once, before the first write: it still lists b-1.
  auto receipt = ParseReceipt(ReceiptFile());
  ASSERT_TRUE(receipt.ok());
  EXPECT_EQ(receipt->backups.size(), 1u);
}

TEST_F(PreflightTest, OnlyAFailedWebhookCallCountsNotADenial) {
  EXPECT_TRUE(IsWebhookCallFailure(Status::Unavailable(
      "HTTP 500: Internal error occurred: failed calling webhook \"x\": connection refused")));
  EXPECT_FALSE(IsWebhookCallFailure(
      Status::PermissionDenied("admission webhook \"x\" denied the request: no")));
  EXPECT_FALSE(IsWebhookCallFailure(Status::Ok()));
}

}  // namespace
}  // namespace bg::processor
