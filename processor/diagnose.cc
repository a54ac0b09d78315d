#include "processor/diagnose.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <regex>
#include <set>
#include <sstream>
#include <vector>

#include "common/longhorn.h"
#include "domain/confirmation.h"
#include "domain/kinds.h"
#include "domain/rules.h"
#include "kube/informer.h"

namespace bg::processor {

using domain::Plan;
using domain::PlanFor;
using domain::RuleContext;
using domain::SecondsDeleting;

using nlohmann::json;
namespace res = longhorn::resource;

namespace {

const kube::ResourceRef kCrds{"apiextensions.k8s.io", "v1", "customresourcedefinitions",
                              "CustomResourceDefinition"};
const kube::ResourceRef kDaemonSets{"apps", "v1", "daemonsets", "DaemonSet"};

// Labels the rules and the engine read to link objects.
constexpr std::string_view kLabelsThatMatter[] = {longhorn::kBackupTargetLabel,
                                                  longhorn::kBackupVolumeLabel, "backing-image",
                                                  longhorn::kDeleteCustomResourceOnlyLabel};

// Problem categories, in the order the table shows them, with a heading.
struct Category {
  const char* id;
  const char* heading;
};
constexpr Category kCategories[] = {
    {"held", "Objects being deleted that a finalizer holds"},
    {"webhook-stale", "Webhook configurations whose endpoint does not answer"},
    {"webhook-ca", "Webhook configurations whose caBundle does not verify the served certificate"},
    {"stored-version", "CRDs that store a version no longer served"},
    {"backupvolume-empty-name", "BackupVolumes with an empty target or volume name"},
    {"backupvolume-duplicate", "BackupVolumes duplicated for one (target, volume)"},
    {"volume-target-missing", "Volumes whose BackupTarget does not exist"},
    {"unreadable", "Objects that could not be read"},
    {"backup-guard", "backup-guard itself"},
};

std::string Name(const json& obj) { return longhorn::StringAt(obj, {"metadata", "name"}); }

// "1h2m3s", as Go prints a duration (whole seconds).
std::string Duration(long long seconds) {
  if (seconds < 0) return "?";
  std::string out;
  if (seconds >= 3600) out += std::to_string(seconds / 3600) + "h";
  if (seconds >= 60) out += std::to_string((seconds % 3600) / 60) + "m";
  return out + std::to_string(seconds % 60) + "s";
}

json Problem(const char* category, std::string object, std::string detail, std::string fix) {
  return {{"category", category},
          {"object", std::move(object)},
          {"detail", std::move(detail)},
          {"fix", std::move(fix)}};
}

const json& Items(const json& list) {
  static const json kEmpty = json::array();
  auto it = list.find("items");
  return it != list.end() && it->is_array() ? *it : kEmpty;
}

// A point-in-time copy of the engine's objects for the rules: Get by name, List by selector.
class SnapshotLookup final : public kube::ResourceLookup {
 public:
  void Add(const std::string& resource, const json& obj) { kinds_[resource].push_back(obj); }

  const std::vector<json>& Items(const std::string& resource) const {
    static const std::vector<json> kNone;
    auto it = kinds_.find(resource);
    return it == kinds_.end() ? kNone : it->second;
  }

  // The object of `resource` named `name`; a copy never fails a read.
  std::optional<json> Find(std::string_view resource, std::string_view name) const {
    if (name.empty()) return std::nullopt;
    for (const json& obj : Items(std::string(resource))) {
      if (Name(obj) == name) return obj;
    }
    return std::nullopt;
  }

  kube::GetResult Get(std::string_view resource, std::string_view, std::string_view name) override {
    return Find(resource, name);
  }

  kube::ListResult List(std::string_view resource, std::string_view,
                        std::string_view selector) override {
    std::vector<json> out;
    for (const json& obj : Items(std::string(resource))) {
      if (kube::MatchesSelector(obj, std::string(selector))) out.push_back(obj);
    }
    return out;
  }

  bool Ready() override { return true; }

 private:
  std::map<std::string, std::vector<json>> kinds_;
};

// The version to list a CRD's objects at: v1beta2 when served, else the storage version, else
// the first served one.
std::string ListVersion(const json& crd) {
  std::string storage, first;
  const json* versions = nullptr;
  if (auto spec = crd.find("spec"); spec != crd.end() && spec->is_object()) {
    if (auto v = spec->find("versions"); v != spec->end() && v->is_array()) versions = &*v;
  }
  if (versions == nullptr) return std::string(longhorn::kVersion);
  for (const json& v : *versions) {
    if (!v.is_object() || !v.value("served", false)) continue;
    std::string name = v.value("name", std::string());
    if (name == longhorn::kVersion) return name;
    if (v.value("storage", false)) storage = name;
    if (first.empty()) first = name;
  }
  return !storage.empty() ? storage : first;
}

// True when the CRD's schema for `version` declares spec.<field>.
bool SchemaHasSpecField(const json& crd, const std::string& version, const char* field) {
  if (!crd.is_object() || !crd.contains("spec") || !crd["spec"].is_object()) return false;
  for (const json& v : crd["spec"].value("versions", json::array())) {
    if (!v.is_object() || v.value("name", std::string()) != version) continue;
    const json::json_pointer path("/schema/openAPIV3Schema/properties/spec/properties/" +
                                  std::string(field));
    return v.contains(path);
  }
  return false;
}

struct EngineState {
  bool running = false;
  std::string not_running;  // the sentence when not running
  json report;
};

EngineState ReadEngine(kube::KubeApi& api, const DiagnoseOptions& o) {
  EngineState e;
  e.report = {{"daemonSet", o.engine_daemonset}, {"namespace", o.ns}};
  const std::string sentence =
      "the engine is not running: no ready pod of its manager DaemonSet \"" + o.engine_daemonset +
      "\"";
  auto ds = api.Get(kDaemonSets, o.ns, o.engine_daemonset);
  if (!ds.ok()) {
    e.report["found"] = false;
    if (ds.status().IsNotFound()) {
      e.not_running = sentence + " (it does not exist)";
    } else {
      e.report["error"] = ds.status().message();
      e.not_running = sentence + " (it could not be read: " + ds.status().message() + ")";
    }
    e.report["running"] = false;
    return e;
  }
  long long ready = 0;
  if (auto status = ds->find("status"); status != ds->end() && status->is_object()) {
    if (auto n = status->find("numberReady"); n != status->end() && n->is_number_integer()) {
      ready = n->get<long long>();
    }
  }
  e.report["found"] = true;
  e.report["numberReady"] = ready;
  e.running = ready > 0;
  e.report["running"] = e.running;
  if (!e.running) e.not_running = sentence;
  return e;
}

std::string KubectlName(const std::string& plural, const std::string& name) {
  return plural + ".longhorn.io " + name;
}

// The fix for an object held (or releasable) by the rules.
std::string HeldFix(const std::string& plural, const json& obj, const Plan& plan,
                    const EngineState& engine, const DiagnoseOptions& o) {
  const std::string& ns = o.ns;
  const std::string name = Name(obj);
  const std::string target = KubectlName(plural, name) + " -n " + ns;
  const std::string keep_data = "kubectl label " + target + " " +
                                std::string(longhorn::kDeleteCustomResourceOnlyLabel) + "=true";
  if (plan.release) {
    // The rules allow the release: only a running processor is missing.
    size_t index = 0;
    const json finalizers = obj["metadata"].value("finalizers", json::array());
    for (size_t i = 0; i < finalizers.size(); ++i) {
      if (finalizers[i] == longhorn::kFinalizer) index = i;
    }
    const std::string at = "/metadata/finalizers/" + std::to_string(index);
    return "backup-guard's rules release it; start `backup-guard serve` (its processor releases "
           "it), or remove the finalizer yourself: kubectl patch " +
           target + " --type=json -p '[{\"op\":\"test\",\"path\":\"" + at +
           "\",\"value\":\"longhorn.io\"},{\"op\":\"remove\",\"path\":\"" + at + "\"}]'";
  }
  if (plan.held_because.rfind("waiting for the engine", 0) == 0) {
    std::string fix = engine.running
                          ? "the engine deletes its data in the store, then releases it: wait"
                          : "start the engine (DaemonSet " + o.engine_daemonset +
                                ") so it deletes the data in the store and releases it";
    return fix +
           "; or keep the data in the store and delete only the custom resource: " + keep_data +
           " (backup-guard's processor, or `backup-guard uninstall`, then releases it)";
  }
  if (plural == res::kBackupVolumes) {
    std::string volume = longhorn::StringAt(obj, {"spec", "volumeName"});
    if (volume.empty()) volume = longhorn::Label(obj, longhorn::kBackupVolumeLabel);
    return "its Backups go first (listed above when they are being deleted); with backup-guard "
           "running they are marked delete-custom-resource-only and deleted for you, else: "
           "kubectl label backups.longhorn.io -n " +
           ns + " -l " + std::string(longhorn::kBackupVolumeLabel) + "=" + volume + " " +
           std::string(longhorn::kDeleteCustomResourceOnlyLabel) +
           "=true && kubectl delete backups.longhorn.io -n " + ns + " -l " +
           std::string(longhorn::kBackupVolumeLabel) + "=" + volume;
  }
  if (plural == res::kBackupTargets) {
    return "its children go first; `backup-guard serve` (its processor) or `backup-guard "
           "uninstall` marks them delete-custom-resource-only and deletes them";
  }
  return engine.running ? "the engine releases it when it has finished with it: wait"
                        : "start the engine so it finishes with it; during a confirmed "
                          "uninstall `backup-guard uninstall --namespace " +
                              ns + "` releases it after --release-grace";
}

// Every object being deleted that still has a finalizer.
void ReportDeleting(const std::vector<std::pair<std::string, std::string>>& kinds,
                    SnapshotLookup& view, const RuleContext& ctx, const EngineState& engine,
                    const DiagnoseOptions& o, json& report, json& problems) {
  json deleting = json::array();
  for (const auto& [plural, kind] : kinds) {
    for (const json& obj : view.Items(plural)) {
      if (!longhorn::IsBeingDeleted(obj)) continue;
      const json& meta = obj["metadata"];
      const json finalizers = meta.value("finalizers", json::array());
      if (!finalizers.is_array() || finalizers.empty()) continue;
      json entry = {{"kind", kind}, {"resource", plural}, {"name", Name(obj)}};
      const long long seconds = SecondsDeleting(obj, ctx.now);
      entry["deletingSeconds"] = seconds;
      entry["deletingFor"] = Duration(seconds);
      entry["finalizers"] = finalizers;
      json owners = json::array();
      for (const json& ref : meta.value("ownerReferences", json::array())) {
        if (!ref.is_object()) continue;
        owners.push_back({{"kind", ref.value("kind", std::string())},
                          {"name", ref.value("name", std::string())},
                          {"uid", ref.value("uid", std::string())}});
      }
      entry["ownerReferences"] = owners;
      json labels = json::object();
      for (std::string_view key : kLabelsThatMatter) {
        if (longhorn::HasLabel(obj, key)) labels[std::string(key)] = longhorn::Label(obj, key);
      }
      entry["labels"] = labels;
      entry["state"] = longhorn::StringAt(obj, {"status", "state"});
      std::string why;
      std::string fix;
      if (!longhorn::HasFinalizer(obj, longhorn::kFinalizer)) {
        entry["verdict"] = "foreign-finalizers";
        why = "its finalizers are not longhorn.io: their owner must remove them";
        fix = "find the controller that owns " + finalizers.dump() + " and let it finish";
      } else {
        const Plan plan = PlanFor(plural, obj, view, ctx);
        fix = HeldFix(plural, obj, plan, engine, o);
        if (plan.release) {
          entry["verdict"] = "releasable";
          entry["releaseReason"] = plan.reason;
          why = "backup-guard's rules release it (" + plan.reason +
                ") but no backup-guard processor has: is `backup-guard serve` running with "
                "--namespace " +
                o.ns + "?";
        } else {
          entry["verdict"] = "held";
          why = plan.held_because;
          const bool engine_decides =
              why.rfind("waiting for the engine", 0) == 0 || why == "the storage engine owns it";
          if (engine_decides && !engine.running) why += "; " + engine.not_running;
          if (plan.children_remaining > 0) entry["childrenRemaining"] = plan.children_remaining;
        }
      }
      entry["why"] = why;
      entry["fix"] = fix;
      problems.push_back(Problem(
          "held", kind + " " + Name(obj),
          "deleting for " + Duration(seconds) + ", finalizers " + finalizers.dump() + ": " + why,
          fix));
      deleting.push_back(std::move(entry));
    }
  }
  report["deleting"] = std::move(deleting);
}

void ReportWebhooks(kube::KubeApi& api, const std::vector<json>& configurations,
                    const DiagnoseOptions& o, const kube::TlsProber& prober, json& report,
                    json& problems) {
  json out = json::array();
  for (const json& config : configurations) {
    const std::string kind = longhorn::StringAt(config, {"kind"});
    const std::string resource = kind == kube::kMutatingWebhookConfigurations.kind
                                     ? "mutatingwebhookconfiguration"
                                     : "validatingwebhookconfiguration";
    const std::vector<kube::WebhookTarget> hooks = kube::WebhooksOf(config);
    for (size_t i = 0; i < hooks.size(); ++i) {
      const kube::WebhookTarget& w = hooks[i];
      if (!kube::ConcernsLonghorn(w, o.ns)) continue;
      const kube::EndpointReport r = kube::CheckWebhookEndpoint(w, api, prober);
      json entry = kube::ToJson(w);
      entry["endpoint"] = kube::ToJson(r);
      out.push_back(entry);
      const std::string what = kind + " " + w.configuration + " (webhook " + w.name +
                               ", failurePolicy " + entry["failurePolicy"].get<std::string>() + ")";
      if (r.stale) {
        problems.push_back(Problem(
            "webhook-stale", what, r.problem,
            "start the server it calls, or, if it is gone for good, delete the configuration: "
            "kubectl delete " +
                resource + " " + w.configuration));
      } else if (r.ca_mismatch) {
        problems.push_back(Problem(
            "webhook-ca", what, r.problem,
            "put the CA that issued the served certificate in the caBundle: kubectl patch " +
                resource + " " + w.configuration +
                " --type=json -p '[{\"op\":\"replace\",\"path\":\"/webhooks/" + std::to_string(i) +
                "/clientConfig/caBundle\",\"value\":\"<base64 of the CA PEM>\"}]' (backup-guard's "
                "own configurations: `backup-guard serve --mutating-webhook-configuration M "
                "--validating-webhook-configuration V` keeps them current)"));
      } else if (!r.problem.empty()) {
        problems.push_back(Problem("unreadable", what, r.problem,
                                   "check that your kubeconfig may get Services and list "
                                   "EndpointSlices, then run diagnose again"));
      }
    }
  }
  report["webhooks"] = std::move(out);
}

void ReportCrd(const json& crd, json& crds, json& problems) {
  const std::string name = Name(crd);
  std::set<std::string> served, declared;
  if (crd.contains("spec") && crd["spec"].is_object()) {
    for (const json& v : crd["spec"].value("versions", json::array())) {
      if (!v.is_object()) continue;
      declared.insert(v.value("name", std::string()));
      if (v.value("served", false)) served.insert(v.value("name", std::string()));
    }
  }
  json stored = json::array();
  if (auto status = crd.find("status"); status != crd.end() && status->is_object()) {
    stored = status->value("storedVersions", json::array());
  }
  json not_served = json::array();
  for (const json& v : stored) {
    if (v.is_string() && !served.count(v.get<std::string>())) not_served.push_back(v);
  }
  crds.push_back({{"name", name},
                  {"storedVersions", stored},
                  {"servedVersions", served},
                  {"notServed", not_served}});
  if (not_served.empty()) return;
  std::string keep;
  for (const json& v : stored) {
    if (v.is_string() && served.count(v.get<std::string>())) {
      keep += (keep.empty() ? "" : ",") + ("\"" + v.get<std::string>() + "\"");
    }
  }
  const std::string plural = name.substr(0, name.find('.'));
  problems.push_back(Problem(
      "stored-version", "CustomResourceDefinition " + name,
      "status.storedVersions " + stored.dump() + " holds " + not_served.dump() +
          ", which the CRD no longer serves; an engine upgrade that drops it fails (engine issue "
          "#11886)",
      "rewrite every object at a served version (kubectl get " + plural +
          ".longhorn.io -A -o json | kubectl replace -f -), then: kubectl patch crd " + name +
          " --subresource=status --type=merge -p '{\"status\":{\"storedVersions\":[" + keep +
          "]}}'"));
}

// BackupVolumes with an empty name and duplicates of one (target, volume).
void ReportBackupVolumes(const std::vector<json>& volumes, const json& crd, const std::string& ns,
                         json& report, json& problems) {
  const std::string version = crd.is_object() ? ListVersion(crd) : "";
  json empty = json::array();
  std::map<std::pair<std::string, std::string>, std::vector<json>> by_pair;
  for (const json& bv : volumes) {
    const std::string name = Name(bv);
    const std::string cr_only_delete =
        "keep the data in the store and delete only the custom resource: kubectl label "
        "backupvolumes.longhorn.io " +
        name + " -n " + ns + " " + std::string(longhorn::kDeleteCustomResourceOnlyLabel) +
        "=true && kubectl delete backupvolumes.longhorn.io " + name + " -n " + ns;
    for (const char* field : {"backupTargetName", "volumeName"}) {
      // Engines before v1.8 have neither field: only a schema that declares it can leave it empty.
      if (!SchemaHasSpecField(crd, version, field)) continue;
      if (!longhorn::StringAt(bv, {"spec", field}).empty()) continue;
      empty.push_back({{"name", name}, {"field", std::string("spec.") + field}});
      problems.push_back(Problem("backupvolume-empty-name", "BackupVolume " + name,
                                 std::string("spec.") + field +
                                     " is empty (engine issue #11154); the engine v1.10 target "
                                     "sync deletes such a BackupVolume",
                                 cr_only_delete));
    }
    std::string target = longhorn::Label(bv, longhorn::kBackupTargetLabel);
    if (target.empty()) target = longhorn::StringAt(bv, {"spec", "backupTargetName"});
    std::string volume = longhorn::Label(bv, longhorn::kBackupVolumeLabel);
    if (volume.empty()) volume = longhorn::StringAt(bv, {"spec", "volumeName"});
    if (!target.empty() && !volume.empty()) by_pair[{target, volume}].push_back(bv);
  }
  json duplicates = json::array();
  for (auto& [pair, group] : by_pair) {
    if (group.size() < 2) continue;
    // The engine keeps the oldest (v1.10 cleanupDuplicateBackupVolumeForBackupTarget).
    std::sort(group.begin(), group.end(), [](const json& a, const json& b) {
      return longhorn::StringAt(a, {"metadata", "creationTimestamp"}) + Name(a) <
             longhorn::StringAt(b, {"metadata", "creationTimestamp"}) + Name(b);
    });
    json names = json::array();
    for (const json& bv : group) names.push_back(Name(bv));
    duplicates.push_back({{"target", pair.first}, {"volume", pair.second}, {"names", names}});
    std::string fix = "keep the oldest, " + Name(group.front()) +
                      ", and delete the others as custom resources only (they name the same "
                      "data in the store): ";
    for (size_t i = 1; i < group.size(); ++i) {
      const std::string n = Name(group[i]);
      fix += (i > 1 ? " && " : "") + std::string("kubectl label backupvolumes.longhorn.io ") + n +
             " -n " + ns + " " + std::string(longhorn::kDeleteCustomResourceOnlyLabel) +
             "=true && kubectl delete backupvolumes.longhorn.io " + n + " -n " + ns;
    }
    problems.push_back(Problem("backupvolume-duplicate",
                               "BackupVolumes " + names.dump() + " of target \"" + pair.first +
                                   "\" and volume \"" + pair.second + "\"",
                               std::to_string(group.size()) +
                                   " BackupVolumes for one (target, volume) (engine issue #11152)",
                               fix));
  }
  report["backupVolumes"] = {{"emptyNames", empty}, {"duplicates", duplicates}};
}

void ReportVolumeTargets(SnapshotLookup& view, const std::string& ns, json& report,
                         json& problems) {
  json missing = json::array();
  for (const json& v : view.Items(std::string(res::kVolumes))) {
    const std::string target = longhorn::StringAt(v, {"spec", "backupTargetName"});
    if (target.empty() || view.Find(res::kBackupTargets, target)) continue;
    missing.push_back({{"name", Name(v)}, {"backupTargetName", target}});
    std::string fix = "create the BackupTarget \"" + target + "\", or point the volume at one " +
                      "that exists: kubectl patch volumes.longhorn.io " + Name(v) + " -n " + ns +
                      " --type=merge -p '{\"spec\":{\"backupTargetName\":\"default\"}}'";
    problems.push_back(Problem(
        "volume-target-missing", "Volume " + Name(v),
        "spec.backupTargetName names the BackupTarget \"" + target + "\", which does not exist",
        fix));
  }
  report["volumesWithMissingTarget"] = missing;
}

json ReportFlag(const SnapshotLookup& view) {
  auto setting = view.Find(res::kSettings, longhorn::kDeletingConfirmationFlag);
  json out = {{"name", std::string(longhorn::kDeletingConfirmationFlag)}, {"found", bool(setting)}};
  if (!setting) {
    out["parsesAsTrue"] = false;
    return out;
  }
  const std::string value = longhorn::StringAt(*setting, {"value"});
  out["value"] = value;
  out["parsesAsBool"] = domain::ParseGoBool(value).has_value();
  out["parsesAsTrue"] = domain::ConfirmationFlagTrue(*setting);
  return out;
}

// One sample of a Prometheus text exposition: name, labels, value.
struct Sample {
  std::string name;
  std::map<std::string, std::string> labels;
  double value = 0;
};

std::vector<Sample> ParseMetrics(const std::string& text) {
  std::vector<Sample> out;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    Sample s;
    size_t pos = line.find_first_of("{ ");
    if (pos == std::string::npos) continue;
    s.name = line.substr(0, pos);
    if (line[pos] == '{') {
      const size_t close = line.find('}', pos);
      if (close == std::string::npos) continue;
      std::string body = line.substr(pos + 1, close - pos - 1);
      size_t i = 0;
      while (i < body.size()) {
        const size_t eq = body.find('=', i);
        if (eq == std::string::npos || eq + 1 >= body.size() || body[eq + 1] != '"') break;
        std::string value;
        size_t j = eq + 2;
        for (; j < body.size() && body[j] != '"'; ++j) {
          if (body[j] == '\\' && j + 1 < body.size()) ++j;
          value += body[j];
        }
        s.labels[body.substr(i, eq - i)] = value;
        i = body.find(',', j);
        if (i == std::string::npos) break;
        ++i;
      }
      pos = close + 1;
    }
    try {
      s.value = std::stod(line.substr(pos));
    } catch (const std::exception&) {
      continue;  // untrusted text: a sample that does not parse is skipped
    }
    out.push_back(std::move(s));
  }
  return out;
}

std::string IsoTime(double unix_seconds) {
  return longhorn::Rfc3339Utc(static_cast<std::time_t>(unix_seconds));
}

}  // namespace

json BackupGuardState(const std::string& text, std::chrono::system_clock::time_point now,
                      json& problems) {
  const double now_s = std::chrono::duration<double>(now.time_since_epoch()).count();
  json out = json::object();
  bool any = false;
  for (const Sample& s : ParseMetrics(text)) {
    if (s.name == "backup_guard_leader") {
      out["leader"] = s.value == 1;
      any = true;
    } else if (s.name == "backup_guard_build_info" && s.labels.count("version")) {
      out["version"] = s.labels.at("version");
    } else if (s.name == "backup_guard_certificate_expiry_timestamp_seconds") {
      const std::string which = s.labels.count("certificate") ? s.labels.at("certificate") : "";
      if (s.value <= 0) continue;  // no certificate loaded yet
      const long long left = std::llround(s.value - now_s);
      out["certificates"][which] = {{"expires", IsoTime(s.value)}, {"secondsLeft", left}};
      if (left <= 0) {
        problems.push_back(Problem("backup-guard", "certificate " + which,
                                   "expired at " + IsoTime(s.value),
                                   "renew it: self-managed certificates renew on the leader; with "
                                   "--tls-cert-file, replace the files"));
      }
      any = true;
    } else if (s.name == "backup_guard_kube_api_last_contact_timestamp_seconds") {
      if (s.value <= 0) continue;
      const long long ago = std::llround(now_s - s.value);
      out["lastApiContact"] = IsoTime(s.value);
      out["lastApiContactSecondsAgo"] = ago;
      // Its readiness threshold (--api-unready-after) is 20 s by default; three times that is
      // beyond any blip.
      if (ago > 60) {
        problems.push_back(
            Problem("backup-guard", "API contact",
                    "backup-guard has had no answer from the Kubernetes API for " + Duration(ago),
                    "check its log and its network path to the API server"));
      }
      any = true;
    } else if (s.name == "backup_guard_kube_api_reachable") {
      out["apiReachable"] = s.value == 1;
    }
  }
  if (!any) {
    problems.push_back(Problem("backup-guard", "metrics",
                               "the text holds none of backup-guard's state metrics",
                               "check that --metrics-url points at backup-guard's /metrics"));
  }
  return out;
}

std::string RedactTokens(const std::string& text) {
  static const std::regex kBearer(R"((Bearer|bearer)\s+[^\s"',]+)");
  static const std::regex kJwt(R"(eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*)");
  return std::regex_replace(std::regex_replace(text, kBearer, "$1 [redacted]"), kJwt, "[redacted]");
}

json BundleMetadata(const json& obj) {
  json out = json::object();
  if (!obj.is_object()) return out;
  for (const char* key : {"apiVersion", "kind"}) {
    if (auto it = obj.find(key); it != obj.end()) out[key] = *it;
  }
  if (auto m = obj.find("metadata"); m != obj.end() && m->is_object()) {
    json meta = json::object();
    for (const char* key : {"name", "namespace", "uid", "resourceVersion", "generation",
                            "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds",
                            "labels", "finalizers", "ownerReferences"}) {
      if (auto it = m->find(key); it != m->end()) meta[key] = *it;
    }
    if (auto a = m->find("annotations"); a != m->end() && a->is_object()) {
      json kept = json::object();
      for (auto it = a->begin(); it != a->end(); ++it) {
        const std::string& k = it.key();
        if (k.rfind("longhorn.io/", 0) == 0 || k.rfind("meta.helm.sh/", 0) == 0 ||
            k.rfind("helm.sh/", 0) == 0) {
          kept[k] = it.value();
        }
      }
      if (!kept.empty()) meta["annotations"] = std::move(kept);
    }
    out["metadata"] = std::move(meta);
  }
  for (const char* key : {"backupTargetName", "volumeName"}) {
    const std::string v = longhorn::StringAt(obj, {"spec", key});
    if (!v.empty()) out["spec"][key] = v;
  }
  const std::string state = longhorn::StringAt(obj, {"status", "state"});
  if (!state.empty()) out["status"]["state"] = state;
  return out;
}

Result<Diagnosis> Diagnose(kube::KubeApi& api, const DiagnoseOptions& o,
                           const kube::TlsProber& prober) {
  Diagnosis d;
  json& report = d.report;
  json problems = json::array();
  report["namespace"] = o.ns;
  report["time"] = IsoTime(std::chrono::duration<double>(o.now.time_since_epoch()).count());

  auto crd_list = api.List(kCrds, "", "");
  if (!crd_list.ok()) {
    return Status::Unavailable("cannot list CustomResourceDefinitions: " +
                               crd_list.status().message());
  }
  // The engine's kinds, and what each CRD stores.
  std::vector<std::pair<std::string, std::string>> kinds;  // plural, Kind
  SnapshotLookup view;
  json crds = json::array();
  json bundle_crds = json::array();
  json backup_volume_crd;
  for (const json& crd : Items(*crd_list)) {
    if (longhorn::StringAt(crd, {"spec", "group"}) != longhorn::kGroup) continue;
    ReportCrd(crd, crds, problems);
    json kept = BundleMetadata(crd);
    kept["spec"] = {{"group", longhorn::StringAt(crd, {"spec", "group"})},
                    {"scope", longhorn::StringAt(crd, {"spec", "scope"})},
                    {"versions", json::array()}};
    for (const json& v : crd["spec"].value("versions", json::array())) {
      if (!v.is_object()) continue;
      kept["spec"]["versions"].push_back({{"name", v.value("name", std::string())},
                                          {"served", v.value("served", false)},
                                          {"storage", v.value("storage", false)}});
    }
    if (crd.contains("status")) kept["status"] = crd["status"];
    bundle_crds.push_back(std::move(kept));
    const std::string plural = longhorn::StringAt(crd, {"spec", "names", "plural"});
    const std::string kind = longhorn::StringAt(crd, {"spec", "names", "kind"});
    if (plural.empty()) continue;
    if (plural == res::kBackupVolumes) backup_volume_crd = crd;
    const bool namespaced = longhorn::StringAt(crd, {"spec", "scope"}) != "Cluster";
    const kube::ResourceRef ref{std::string(longhorn::kGroup), ListVersion(crd), plural, kind};
    auto list = api.List(ref, namespaced ? o.ns : "", "");
    if (!list.ok()) {
      if (domain::FindKind(plural) != nullptr) {  // a kind the rules read: without it, no basis
        return Status::Unavailable("cannot list " + plural + ".longhorn.io in " + o.ns + ": " +
                                   list.status().message());
      }
      problems.push_back(Problem("unreadable", kind, list.status().message(),
                                 "check that your kubeconfig may list " + plural + ".longhorn.io"));
      continue;
    }
    kinds.emplace_back(plural, kind);
    json metadata = json::array();
    for (const json& item : Items(*list)) {
      view.Add(plural, item);
      metadata.push_back(BundleMetadata(item));
    }
    d.bundle["objects/" + plural + ".json"] = std::move(metadata);
  }
  report["crds"] = std::move(crds);
  d.bundle["crds.json"] = std::move(bundle_crds);
  // Deleting objects in the uninstall order, then the rest.
  const std::vector<std::string>& order = domain::UninstallOrder();
  std::stable_sort(kinds.begin(), kinds.end(), [&](const auto& a, const auto& b) {
    auto rank = [&](const std::string& p) {
      return std::find(order.begin(), order.end(), p) - order.begin();
    };
    return rank(a.first) < rank(b.first);
  });

  std::vector<json> configurations;
  json bundle_webhooks = json::array();
  for (const kube::ResourceRef* ref :
       {&kube::kMutatingWebhookConfigurations, &kube::kValidatingWebhookConfigurations}) {
    auto list = api.List(*ref, "", "");
    if (!list.ok()) {
      return Status::Unavailable("cannot list " + ref->resource + ": " + list.status().message());
    }
    for (json item : Items(*list)) {
      item["kind"] = ref->kind;  // list items may lack it
      if (item.contains("metadata") && item["metadata"].is_object()) {
        item["metadata"].erase("managedFields");
      }
      bundle_webhooks.push_back(item);
      configurations.push_back(std::move(item));
    }
  }
  d.bundle["webhookconfigurations.json"] = std::move(bundle_webhooks);

  const EngineState engine = ReadEngine(api, o);
  report["engine"] = engine.report;
  report["confirmationFlag"] = ReportFlag(view);

  RuleContext ctx;
  ctx.ns = o.ns;
  ctx.uninstall_confirmed = report["confirmationFlag"].value("parsesAsTrue", false);
  ctx.now = o.now;
  ctx.release_grace = o.release_grace;
  ReportDeleting(kinds, view, ctx, engine, o, report, problems);
  ReportWebhooks(api, configurations, o, prober, report, problems);
  ReportBackupVolumes(view.Items(std::string(res::kBackupVolumes)), backup_volume_crd, o.ns, report,
                      problems);
  ReportVolumeTargets(view, o.ns, report, problems);

  if (o.metrics) {
    if (o.metrics->ok()) {
      report["backupGuard"] = BackupGuardState(o.metrics->value(), o.now, problems);
    } else {
      report["backupGuard"] = {{"error", o.metrics->status().message()}};
      problems.push_back(Problem("backup-guard", o.metrics_url, o.metrics->status().message(),
                                 "check that backup-guard runs and that --metrics-url reaches its "
                                 "metrics listener (serve --metrics-listen)"));
    }
    report["backupGuard"]["metricsUrl"] = o.metrics_url;
  }
  report["stuck"] = !problems.empty();
  report["problems"] = std::move(problems);
  return d;
}

int ExitStatus(const json& report) {
  auto p = report.find("problems");
  return p != report.end() && p->is_array() && !p->empty() ? 1 : 0;
}

std::string RenderTable(const json& report) {
  std::ostringstream out;
  const json problems = report.value("problems", json::array());
  out << "backup-guard diagnose: namespace " << report.value("namespace", std::string()) << ", "
      << report.value("time", std::string()) << "\n";
  if (problems.empty()) out << "\nNo problem found: nothing is stuck.\n";
  for (const Category& c : kCategories) {
    bool heading = false;
    for (const json& p : problems) {
      if (p.value("category", std::string()) != c.id) continue;
      if (!heading) {
        out << "\n== " << c.heading << " ==\n";
        heading = true;
      }
      out << "* " << p.value("object", std::string()) << "\n"
          << "    why: " << p.value("detail", std::string()) << "\n"
          << "    fix: " << p.value("fix", std::string()) << "\n";
    }
  }
  out << "\n== State ==\n";
  const json engine = report.value("engine", json::object());
  out << "engine: DaemonSet " << engine.value("daemonSet", std::string()) << " "
      << (engine.value("running", false)
              ? "has " + std::to_string(engine.value("numberReady", 0)) + " ready pod(s)"
              : std::string(engine.value("found", false) ? "has no ready pod" : "not found"))
      << "\n";
  const json flag = report.value("confirmationFlag", json::object());
  out << "confirmation flag " << flag.value("name", std::string()) << ": "
      << (flag.value("found", false)
              ? "\"" + flag.value("value", std::string()) + "\"" +
                    (flag.value("parsesAsTrue", false)   ? " (true: an uninstall is confirmed)"
                     : flag.value("parsesAsBool", false) ? " (false)"
                                                         : " (not a boolean: read as false)")
              : std::string("not set (read as false)"))
      << "\n";
  out << "objects being deleted: " << report.value("deleting", json::array()).size() << "\n";
  out << "webhooks concerning the engine:\n";
  for (const json& w : report.value("webhooks", json::array())) {
    const json e = w.value("endpoint", json::object());
    std::string verdict = "answers";
    if (e.value("stale", false)) {
      verdict = "DOES NOT ANSWER";
    } else if (e.value("caMismatch", false)) {
      verdict = "caBundle DOES NOT VERIFY";
    } else if (!e.contains("tls")) {
      verdict = "not probed";
    } else if (!e["tls"].value("handshake", false)) {
      verdict = "ready endpoints, not reachable from here";
    } else {
      verdict = "answers, caBundle verifies";
    }
    out << "  " << w.value("kind", std::string()) << " " << w.value("configuration", std::string())
        << " / " << w.value("webhook", std::string()) << " -> "
        << e.value("endpoint", std::string()) << ": " << verdict << "\n";
  }
  out << "CRD stored versions:\n";
  for (const json& c : report.value("crds", json::array())) {
    out << "  " << c.value("name", std::string()) << " "
        << c.value("storedVersions", json::array()).dump()
        << (c.value("notServed", json::array()).empty() ? "" : "  NOT SERVED: ") +
               (c.value("notServed", json::array()).empty()
                    ? std::string()
                    : c.value("notServed", json::array()).dump())
        << "\n";
  }
  if (report.contains("backupGuard")) {
    out << "backup-guard (" << report["backupGuard"].value("metricsUrl", std::string())
        << "): " << report["backupGuard"].dump() << "\n";
  }
  return out.str();
}

}  // namespace bg::processor
