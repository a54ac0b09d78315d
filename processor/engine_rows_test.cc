// The rules against docs/ENGINE.md, row by row: tests/engine/rows.json holds, for every row of its
// "Row by row" table, the object a rule sees and what backup-guard must do. Each case is a test
// named after its row; the end-to-end suite runs the same cases through the real API server
// (tests/e2e/test_engine_rows.py).
#include <gtest/gtest.h>

#include <fstream>
#include <regex>
#include <set>
#include <sstream>

#include "domain/rules.h"
#include "tests/testing/fake_lookup.h"

namespace bg::processor {

using domain::Plan;
using domain::PlanFor;
using domain::RuleContext;
namespace {

using nlohmann::json;
using testing::FakeLookup;

constexpr char kNs[] = "longhorn-system";
constexpr char kDeletedAt[] = "2026-01-01T00:00:00Z";
constexpr std::time_t kDeletedAtEpoch = 1767225600;

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

const json& Rows() {
  static const json rows =
      json::parse(ReadFile(std::string(BG_SOURCE_DIR) + "/tests/engine/rows.json"))["rows"];
  return rows;
}

// Replaces the placeholders of rows.json in every string of `v`.
json Substitute(json v, const std::map<std::string, std::string>& values) {
  if (v.is_string()) {
    std::string s = v.get<std::string>();
    for (const auto& [key, value] : values) {
      for (auto at = s.find(key); at != std::string::npos; at = s.find(key, at + value.size())) {
        s.replace(at, key.size(), value);
      }
    }
    return s;
  }
  if (v.is_object() || v.is_array()) {
    for (auto& item : v) item = Substitute(item, values);
  }
  return v;
}

json Meta(const std::string& name, json labels = json::object()) {
  return {{"name", name},
          {"namespace", kNs},
          {"uid", "uid-" + name},
          {"labels", std::move(labels)},
          {"finalizers", {"longhorn.io"}}};
}

struct Case {
  std::string row;
  std::string expect;
  json spec;
};

// gtest prints a failing parameter with this: its row, not its bytes.
void PrintTo(const Case& c, std::ostream* os) { *os << c.row; }

std::vector<Case> GenericCases() {
  std::vector<Case> cases;
  for (const json& r : Rows()) {
    if (!r.contains("object")) continue;
    cases.push_back(Case{r["row"], r["expect"], r});
  }
  return cases;
}

std::string ActionOf(const Plan& plan) {
  if (plan.release) return "release";
  if (!plan.cascade.empty()) return "cascade";
  return "leave";
}

class EngineRowTest : public ::testing::TestWithParam<Case> {};

TEST_P(EngineRowTest, BackupGuardDoesWhatTheRowSays) {
  const json& c = GetParam().spec;
  const std::string target_name = c.value("targetName", std::string("default"));
  const std::string volume = "vol-1";
  const std::string name = c.value("nameAfterVolume", false) ? volume : "obj";
  const std::string target_state = c.value("target", std::string("available"));
  const std::map<std::string, std::string> values = {
      {"$T", target_name}, {"$V", volume}, {"$N", name}};

  FakeLookup view;
  json target = {{"metadata", Meta(target_name)},
                 {"spec", {{"backupTargetURL", "s3://bucket@region/store"}}},
                 {"status", {{"available", true}}}};
  if (target_state == "unavailable") target["status"]["available"] = false;
  if (target_state == "url-empty") target["spec"]["backupTargetURL"] = "";
  if (target_state == "deleting") target["metadata"]["deletionTimestamp"] = kDeletedAt;
  if (target_state != "gone") view.Put("backuptargets", target);

  const std::string bv_state = c.value("backupVolume", std::string("present"));
  if (c["object"]["kind"] == "Backup" && bv_state != "gone") {
    json bv = {{"metadata",
                Meta("bv-" + volume, {{"backup-target", target_name}, {"backup-volume", volume}})},
               {"spec", {{"backupTargetName", target_name}, {"volumeName", volume}}}};
    if (bv_state == "named-after-volume") bv = {{"metadata", Meta(volume)}};
    if (bv_state == "deleting") bv["metadata"]["deletionTimestamp"] = kDeletedAt;
    view.Put("backupvolumes", bv);
    if (bv_state == "duplicated") {
      bv["metadata"]["name"] = "bv-" + volume + "-again";
      view.Put("backupvolumes", bv);
    }
  }
  int child = 0;
  for (const json& raw : c.value("children", json::array())) {
    const std::string child_name = "child-" + std::to_string(child++);
    json obj = Substitute(raw, {{"$T", target_name}, {"$V", volume}, {"$N", child_name}});
    obj["metadata"].update(Meta(child_name, obj["metadata"].value("labels", json::object())));
    view.Put("backups", obj);
  }

  json obj = Substitute(c["object"], values);
  const json labels = obj["metadata"].value("labels", json::object());
  const json owners = obj["metadata"].value("ownerReferences", json());
  obj["metadata"] = Meta(name, labels);
  obj["metadata"]["deletionTimestamp"] = kDeletedAt;
  if (owners == "$OWNER") {
    obj["metadata"]["ownerReferences"] = {{{"apiVersion", "longhorn.io/v1beta2"},
                                           {"kind", "BackupTarget"},
                                           {"name", target_name},
                                           {"uid", c.value("ownerUid", "uid-" + target_name)}}};
  }
  const std::string kind = obj["kind"];
  const std::string resource = kind == "Backup"               ? "backups"
                               : kind == "BackupVolume"       ? "backupvolumes"
                               : kind == "SystemBackup"       ? "systembackups"
                               : kind == "BackupBackingImage" ? "backupbackingimages"
                                                              : "volumes";

  RuleContext ctx;
  ctx.ns = kNs;
  ctx.now = std::chrono::system_clock::from_time_t(kDeletedAtEpoch + 10);
  ctx.uninstall_confirmed = c.value("flag", false);
  ctx.release_grace = std::chrono::seconds(5);
  const Plan plan = PlanFor(resource, obj, view, ctx);
  EXPECT_EQ(ActionOf(plan), GetParam().expect)
      << GetParam().row << ": reason " << plan.reason << ", held because " << plan.held_because;
  if (GetParam().expect == "leave") {
    EXPECT_NE(plan.held_because.find("engine"), std::string::npos) << plan.held_because;
  }
}

INSTANTIATE_TEST_SUITE_P(Rows, EngineRowTest, ::testing::ValuesIn(GenericCases()),
                         [](const ::testing::TestParamInfo<Case>& info) {
                           std::string name = info.param.row;
                           for (char& ch : name) {
                             if (ch == '-') ch = '_';
                           }
                           return name;
                         });

// The row ids of docs/ENGINE.md's "Row by row" table, in order.
std::vector<std::string> EngineMdRows() {
  const std::string md = ReadFile(std::string(BG_SOURCE_DIR) + "/docs/ENGINE.md");
  const auto start = md.find("### Row by row");
  EXPECT_NE(start, std::string::npos) << "docs/ENGINE.md has no \"### Row by row\" table";
  std::vector<std::string> rows;
  std::istringstream in(md.substr(start == std::string::npos ? 0 : start));
  std::string line;
  const std::regex first_cell(R"(^\| `([a-z0-9-]+)` \|)");
  std::smatch m;
  std::getline(in, line);  // the heading
  while (std::getline(in, line)) {
    if (line.rfind("#", 0) == 0) break;  // the next section
    if (std::regex_search(line, m, first_cell)) rows.push_back(m[1]);
  }
  return rows;
}

TEST(EngineRowsTest, EveryRowOfEngineMdHasACaseAndEveryCaseARow) {
  std::set<std::string> in_md;
  for (const std::string& r : EngineMdRows()) EXPECT_TRUE(in_md.insert(r).second) << r;
  std::set<std::string> in_json;
  for (const json& r : Rows()) {
    const std::string id = r["row"];
    EXPECT_TRUE(in_json.insert(id).second) << "duplicated case " << id;
    EXPECT_TRUE(r.contains("object") || (r.contains("unit") && r.contains("e2e")))
        << id << ": a case needs an object, or the names of its unit and end-to-end tests";
  }
  for (const std::string& r : in_md) EXPECT_TRUE(in_json.count(r)) << "no case for row " << r;
  for (const std::string& r : in_json) EXPECT_TRUE(in_md.count(r)) << "no ENGINE.md row for " << r;
  EXPECT_GE(in_md.size(), 40u);
}

}  // namespace
}  // namespace bg::processor
