#include "cmd/manifests.h"

#include <gtest/gtest.h>

#include <fstream>
#include <set>
#include <sstream>

#include "domain/kinds.h"

namespace bg::cmd {
namespace {

std::string ReadSource(const std::string& path) {
  std::ifstream in(std::string(BG_SOURCE_DIR) + "/" + path);
  EXPECT_TRUE(in.good()) << path;
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

std::vector<std::string> Lines(const std::string& text) {
  std::vector<std::string> out;
  std::stringstream s(text);
  for (std::string line; std::getline(s, line);) out.push_back(line);
  return out;
}

size_t Indent(const std::string& line) { return line.find_first_not_of(' '); }

// The `rules:` list of the webhook named `webhook` in a manifest (a chart template or the e2e
// copy), dedented to indentation 0: the lines after `rules:` that are indented deeper than it.
std::string RulesOf(const std::string& manifest, const std::string& webhook) {
  const std::vector<std::string> lines = Lines(manifest);
  size_t i = 0;
  while (i < lines.size() && lines[i].find("name: " + webhook) == std::string::npos) ++i;
  while (i < lines.size() && lines[i].find("rules:") == std::string::npos) ++i;
  if (i == lines.size()) return "(no rules for " + webhook + ")";
  const size_t rules_indent = Indent(lines[i]);
  std::string out;
  size_t base = std::string::npos;
  for (++i; i < lines.size(); ++i) {
    const size_t indent = Indent(lines[i]);
    if (indent == std::string::npos || indent <= rules_indent) {
      // A list item may sit at the indentation of its key; anything else ends the list.
      if (indent != rules_indent || lines[i].compare(indent, 2, "- ") != 0) break;
    }
    if (base == std::string::npos) base = indent;
    out += lines[i].substr(std::min(base, indent)) + "\n";
  }
  return out;
}

// The `- item` lines under the first `resources:` key that follows `after` in a chart template.
std::vector<std::string> ResourcesAfter(const std::string& manifest, const std::string& after) {
  const std::vector<std::string> lines = Lines(manifest);
  size_t i = 0;
  while (i < lines.size() && lines[i].find(after) == std::string::npos) ++i;
  while (i < lines.size() && lines[i].find("resources:") == std::string::npos) ++i;
  std::vector<std::string> out;
  for (++i; i < lines.size(); ++i) {
    const size_t indent = Indent(lines[i]);
    if (indent == std::string::npos || lines[i].compare(indent, 2, "- ") != 0) break;
    out.push_back(lines[i].substr(indent + 2));
  }
  return out;
}

constexpr char kChartWebhooks[] = "charts/backup-guard/templates/webhooks.yaml";
constexpr char kE2eWebhooks[] = "tests/e2e/manifests/webhooks.yaml.tmpl";
constexpr char kMutator[] = "mutator.backup-guard.longhorn.io";
constexpr char kValidator[] = "validator.backup-guard.longhorn.io";

TEST(ManifestsTest, RulesAreOneEntryPerResourceInRegistrationOrder) {
  const std::string yaml = WebhookRulesYaml(
      {{"longhorn.io", "backups", {webhook::Operation::kCreate, webhook::Operation::kDelete}}});
  EXPECT_EQ(yaml,
            "- apiGroups: [\"longhorn.io\"]\n"
            "  apiVersions: [\"v1beta2\"]\n"
            "  resources: [\"backups\"]\n"
            "  operations: [\"CREATE\", \"DELETE\"]\n"
            "  scope: Namespaced\n");
}

TEST(ManifestsTest, ChartWebhookRulesAreTheRegisteredHandlers) {
  const std::string chart = ReadSource(kChartWebhooks);
  EXPECT_EQ(RulesOf(chart, kMutator), WebhookRulesYaml(MutatingRules()))
      << kChartWebhooks << " differs from `backup-guard manifests`";
  EXPECT_EQ(RulesOf(chart, kValidator), WebhookRulesYaml(ValidatingRules()))
      << kChartWebhooks << " differs from `backup-guard manifests`";
}

TEST(ManifestsTest, E2eWebhookRulesAreTheRegisteredHandlers) {
  const std::string e2e = ReadSource(kE2eWebhooks);
  EXPECT_EQ(RulesOf(e2e, kMutator), WebhookRulesYaml(MutatingRules()))
      << kE2eWebhooks << " differs from `backup-guard manifests`";
  EXPECT_EQ(RulesOf(e2e, kValidator), WebhookRulesYaml(ValidatingRules()))
      << kE2eWebhooks << " differs from `backup-guard manifests`";
}

TEST(ManifestsTest, ChartServerRoleGrantsTheKindsTable) {
  const std::string rbac = ReadSource("charts/backup-guard/templates/rbac.yaml");
  EXPECT_EQ(ResourcesAfter(rbac, "kind: Role"), ServerRoleDeletable());
  EXPECT_EQ(ResourcesAfter(rbac, "- backupbackingimages"), ServerRolePatchable());
  EXPECT_NE(rbac.find("resources: [\"settings\"]\n    verbs: [\"get\", \"list\", \"watch\"]"),
            std::string::npos);
}

TEST(ManifestsTest, UninstallHookGrantsTheUninstallOrderFirst) {
  const std::string hook = ReadSource("charts/backup-guard/templates/uninstall-hook.yaml");
  const std::string marker = "$resources := list";
  const size_t at = hook.find(marker);
  ASSERT_NE(at, std::string::npos);
  std::stringstream list(hook.substr(at + marker.size(), hook.find('}', at) - at - marker.size()));
  std::vector<std::string> granted;
  for (std::string word; list >> word;) {
    if (word.size() > 2 && word.front() == '"') granted.push_back(word.substr(1, word.size() - 2));
  }
  const std::vector<std::string>& order = domain::UninstallOrder();
  ASSERT_GE(granted.size(), order.size());
  EXPECT_EQ(std::vector<std::string>(granted.begin(), granted.begin() + order.size()), order);
  EXPECT_EQ(std::set<std::string>(granted.begin(), granted.end()).size(), granted.size());
}

TEST(ManifestsTest, PrintsEveryPart) {
  const std::string all = Manifests();
  for (const char* part : {kMutator, kValidator, "server Role", "uninstall hook Role"}) {
    EXPECT_NE(all.find(part), std::string::npos) << part;
  }
  EXPECT_NE(all.find(WebhookRulesYaml(ValidatingRules())), std::string::npos);
}

}  // namespace
}  // namespace bg::cmd
