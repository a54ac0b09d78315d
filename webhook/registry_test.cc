#include "webhook/registry.h"

#include <gtest/gtest.h>

namespace bg::webhook {
namespace {

AdmissionRequest Request(const std::string& resource, Operation op) {
  AdmissionRequest r;
  r.group = "longhorn.io";
  r.resource = resource;
  r.operation = op;
  return r;
}

TEST(RegistryTest, DispatchesByGroupResourceAndOperation) {
  Registry registry;
  registry.Register("longhorn.io", "backups", Operation::kDelete,
                    [](const AdmissionRequest&) { return Denied(403, "delete"); });
  EXPECT_EQ(registry.Handle(Request("backups", Operation::kDelete)).message, "delete");
  EXPECT_TRUE(registry.Handle(Request("backups", Operation::kCreate)).allowed);
  EXPECT_TRUE(registry.Handle(Request("volumes", Operation::kDelete)).allowed);
  EXPECT_TRUE(registry.Has("longhorn.io", "backups", Operation::kDelete));
  EXPECT_FALSE(registry.Has("other.io", "backups", Operation::kDelete));
}

TEST(RegistryTest, BypassAnswersBeforeHandlers) {
  Registry registry;
  registry.Register("longhorn.io", "backups", Operation::kDelete,
                    [](const AdmissionRequest&) { return Denied(403, "delete"); });
  registry.AddBypass([](const AdmissionRequest& r) -> std::optional<AdmissionResponse> {
    if (r.dry_run) return Allowed("bypassed");
    return std::nullopt;
  });
  AdmissionRequest r = Request("backups", Operation::kDelete);
  EXPECT_FALSE(registry.Handle(r).allowed);
  r.dry_run = true;
  EXPECT_EQ(registry.Handle(r).message, "bypassed");
}

TEST(RegistryDeathTest, DuplicateRegistrationCrashesLoudly) {
  Registry registry;
  registry.Register("g", "r", Operation::kCreate,
                    [](const AdmissionRequest&) { return Allowed(); });
  EXPECT_DEATH(registry.Register("g", "r", Operation::kCreate,
                                 [](const AdmissionRequest&) { return Allowed(); }),
               "");
}

}  // namespace
}  // namespace bg::webhook
