#include "processor/uninstall_dry_run.h"

#include <deque>
#include <map>
#include <optional>

#include "common/longhorn.h"
#include "domain/kinds.h"
#include "domain/rules.h"
#include "kube/rest_api.h"
#include "processor/parallel.h"

namespace bg::processor {

using domain::Child;
using domain::LabelProtectsData;

using nlohmann::json;
namespace res = longhorn::resource;

namespace {

// Objects named per refusal in the server dry run's text (-o json lists every one).
constexpr size_t kDryRunNamesPerCause = 20;

std::string Name(const json& obj) { return longhorn::StringAt(obj, {"metadata", "name"}); }

// Ok for a result that holds a value, else its error.
template <typename T>
Status StatusOf(const Result<T>& r) {
  return r.ok() ? Status::Ok() : r.status();
}

// One write of the server dry run.
struct DryWrite {
  const std::string* resource;
  const json* obj;
  const char* verb;  // "empty the URL of", "label", "delete", "release"
  Status result = Status::Ok();
};

}  // namespace

int ServerDryRun(kube::KubeApi& dry, const std::vector<std::string>& order, UninstallSnapshot& snap,
                 const UninstallOptions& options,
                 const std::function<kube::ResourceRef(const std::string&)>& ref_of,
                 const std::function<std::string(const std::string&)>& kind_of, std::ostream& out) {
  std::vector<DryWrite> writes;
  std::deque<json> objects;  // the trees the writes point into (stable addresses)
  for (const std::string& resource : order) {
    snap.ForEach(resource, [&](size_t, json& tree) {
      const json& obj = objects.emplace_back(std::move(tree));
      const bool deleting = longhorn::IsBeingDeleted(obj);
      if (resource == res::kBackupTargets && !deleting &&
          !(longhorn::HasAnnotation(obj, longhorn::kDeleteBackupTargetAnnotation) &&
            longhorn::StringAt(obj, {"spec", "backupTargetURL"}).empty())) {
        writes.push_back({&resource, &obj, "empty the URL of"});
      }
      if (domain::IsCascaded(resource) && !longhorn::IsDeleteCustomResourceOnly(obj) &&
          LabelProtectsData(Child{resource, obj})) {
        writes.push_back({&resource, &obj, "label"});
      }
      if (!deleting) writes.push_back({&resource, &obj, "delete"});
      if (longhorn::HasFinalizer(obj, longhorn::kFinalizer)) {
        writes.push_back({&resource, &obj, "release"});
      }
    });
  }
  ParallelFor(writes.size(), options.workers, [&](size_t i) {
    DryWrite& w = writes[i];
    const kube::ResourceRef ref = ref_of(*w.resource);
    const std::string name = Name(*w.obj);
    const std::string verb = w.verb;
    if (verb == "empty the URL of") {
      w.result = StatusOf(dry.MergePatch(
          ref, options.ns, name,
          {{"metadata",
            {{"annotations", {{std::string(longhorn::kDeleteBackupTargetAnnotation), ""}}}}},
           {"spec", {{"backupTargetURL", ""}}}}));
    } else if (verb == "label") {
      w.result = StatusOf(dry.MergePatch(
          ref, options.ns, name,
          {{"metadata",
            {{"labels", {{std::string(longhorn::kDeleteCustomResourceOnlyLabel), "true"}}}}}}));
    } else if (verb == "delete") {
      w.result = StatusOf(dry.DeleteUnchanged(
          ref, options.ns, name, longhorn::StringAt(*w.obj, {"metadata", "uid"}),
          longhorn::StringAt(*w.obj, {"metadata", "resourceVersion"})));
    } else {
      json finalizers = json::array();
      for (const json& f : (*w.obj)["metadata"].value("finalizers", json::array())) {
        if (!(f.is_string() && f.get<std::string>() == longhorn::kFinalizer)) {
          finalizers.push_back(f);
        }
      }
      w.result = StatusOf(dry.MergePatch(
          ref, options.ns, name,
          {{"metadata",
            {{"finalizers", finalizers},
             {"resourceVersion", longhorn::StringAt(*w.obj, {"metadata", "resourceVersion"})}}}}));
    }
  });
  // Refusals grouped by webhook and reason, then other errors by message. NotFound and
  // Conflict say only that the object went or changed since the list.
  struct Group {
    std::optional<kube::WebhookError> webhook;
    std::string error;
    std::vector<const DryWrite*> writes;
  };
  std::map<std::string, Group> groups;
  size_t changed = 0;
  std::map<std::string, size_t> sent;
  for (const DryWrite& w : writes) {
    ++sent[w.verb];
    if (w.result.ok()) continue;
    if (w.result.IsNotFound() || w.result.IsConflict()) {
      ++changed;
      continue;
    }
    std::optional<kube::WebhookError> webhook = kube::WebhookErrorOf(w.result.message());
    const std::string key = webhook ? std::string(webhook->denied ? "0" : "1") + webhook->webhook +
                                          "\n" + webhook->reason
                                    : "2" + w.result.message();
    Group& g = groups[key];
    g.webhook = webhook;
    g.error = w.result.message();
    g.writes.push_back(&w);
  }
  out << "server dry run: sent " << writes.size() << " writes with dryRun=All (" << sent["delete"]
      << " DELETE, " << sent["release"] << " finalizer PATCH, " << sent["label"] << " label PATCH, "
      << sent["empty the URL of"] << " BackupTarget PATCH); nothing was changed" << std::endl;
  if (changed > 0) {
    out << "  " << changed << " objects changed or went since they were listed (not checked)"
        << std::endl;
  }
  if (groups.empty()) {
    out << "every admission webhook would admit every write" << std::endl;
    return 0;
  }
  out << "writes the API server would refuse:" << std::endl;
  for (const auto& [key, g] : groups) {
    const size_t n = g.writes.size();
    const std::string writes_text = std::to_string(n) + (n == 1 ? " write" : " writes");
    if (g.webhook && g.webhook->denied) {
      out << "  admission webhook \"" << g.webhook->webhook << "\" would refuse " << writes_text
          << ": " << g.webhook->reason << std::endl;
    } else if (g.webhook) {
      out << "  admission webhook \"" << g.webhook->webhook << "\" could not be called for "
          << writes_text << ": " << g.webhook->reason << std::endl;
    } else {
      out << "  " << writes_text << " failed: " << g.error << std::endl;
    }
    json objects = json::array();
    for (size_t i = 0; i < n; ++i) {
      const DryWrite& w = *g.writes[i];
      if (i < kDryRunNamesPerCause) {
        out << "    " << w.verb << " " << kind_of(*w.resource) << " " << Name(*w.obj) << std::endl;
      }
      objects.push_back({{"kind", kind_of(*w.resource)}, {"name", Name(*w.obj)}, {"verb", w.verb}});
    }
    if (n > kDryRunNamesPerCause) {
      out << "    and " << n - kDryRunNamesPerCause << " more"
          << (options.events != nullptr ? "" : " (-o json lists them all)") << std::endl;
    }
    if (options.events == nullptr) continue;
    if (g.webhook) {
      options.events->Write("webhook", {{"webhook", g.webhook->webhook},
                                        {"denied", g.webhook->denied},
                                        {"reason", g.webhook->reason},
                                        {"dry_run", true},
                                        {"failed_writes", n},
                                        {"objects", objects}});
    } else {
      options.events->Write(
          "blocker",
          {{"reason", g.error}, {"dry_run", true}, {"failed_writes", n}, {"objects", objects}});
    }
  }
  return 1;
}

}  // namespace bg::processor
