// fuzz_admission: request bodies through the AdmissionReview codec and both registries, as the
// server's admission route runs them (webhook/server.cc), with lookups that hold a default
// BackupTarget, a BackupVolume and the confirmation Setting so that handlers take their deep paths.
//
// Properties, for every input:
//  - no exception escapes DecodeReview, Registry::Handle or EncodeReview (the server turns a
//    handler exception into a 500; here it is a finding);
//  - a refused body is a 400 or 413 with a message;
//  - the encoded answer is an AdmissionReview in the request's apiVersion that echoes the uid and
//    the decision, with the patch base64-encoded;
//  - validation: a Backup DELETE is always allowed, a denial is a 4xx, no validator patches;
//  - mutation: never denies; the patch applies to the request object (checked with the independent
//    tests/testing/json_patch_apply.h), removes nothing, replaces no array entry, grows arrays only
//    with "/-"; a SystemBackup that is not being deleted comes out with the finalizer and a policy;
//    and the mutated object needs no further patch (mutation is idempotent).
#include <cstddef>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <variant>

#include "common/log.h"
#include "common/longhorn.h"
#include "fuzz/fuzz_check.h"
#include "kube/kubeconfig.h"
#include "mutators/mutators.h"
#include "tests/testing/fake_lookup.h"
#include "tests/testing/json_patch_apply.h"
#include "validators/validators.h"
#include "webhook/codec.h"
#include "webhook/registry.h"

namespace {

using nlohmann::json;
using namespace bg::webhook;  // NOLINT(google-build-using-namespace)

std::string Dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

json Object(std::string_view kind, std::string_view ns, std::string_view name, const json& extra) {
  json obj = {
      {"apiVersion", "longhorn.io/v1beta2"},
      {"kind", kind},
      {"metadata", {{"name", name}, {"namespace", ns}, {"uid", "uid-" + std::string(name)}}}};
  obj.merge_patch(extra);
  return obj;
}

// Namespaces of the lookup, each steering the handlers to another branch:
//  longhorn-system: everything present, uninstall confirmed;
//  guarded: a default target with a URL, uninstall not confirmed, no BackupVolume;
//  empty-url: a default target with an empty URL;
//  deleting: a default target that is being deleted.
// Any other namespace finds nothing.
void Seed(bg::testing::FakeLookup& lookup) {
  const json url = {{"spec", {{"backupTargetURL", "s3://backups@us-east-1/"}}}};
  lookup.Put("backuptargets", Object("BackupTarget", "longhorn-system", "default", url));
  lookup.Put("backuptargets", Object("BackupTarget", "longhorn-system", "secondary", url));
  lookup.Put("backupvolumes",
             Object("BackupVolume", "longhorn-system", "vol-1",
                    {{"metadata",
                      {{"labels", {{"backup-target", "default"}, {"backup-volume", "vol-1"}}}}},
                     {"spec", {{"backupTargetName", "default"}, {"volumeName", "vol-1"}}}}));
  lookup.Put("settings", Object("Setting", "longhorn-system", "deleting-confirmation-flag",
                                {{"value", "true"}}));
  lookup.Put("backuptargets", Object("BackupTarget", "guarded", "default", url));
  lookup.Put("settings",
             Object("Setting", "guarded", "deleting-confirmation-flag", {{"value", "false"}}));
  lookup.Put("backuptargets",
             Object("BackupTarget", "empty-url", "default", {{"spec", {{"backupTargetURL", ""}}}}));
  json deleting = Object("BackupTarget", "deleting", "default", url);
  deleting["metadata"]["deletionTimestamp"] = "2024-01-01T00:00:00Z";
  lookup.Put("backuptargets", deleting);
}

struct World {
  World() {
    Seed(lookup);
    mutation = bg::mutators::BuildMutationRegistry(lookup);
    validation = bg::validators::BuildValidationRegistry(lookup);
  }
  bg::testing::FakeLookup lookup;
  Registry mutation;
  Registry validation;
};

World& TheWorld() {
  static World* world = new World();  // never destroyed: other statics may still use it at exit
  return *world;
}

AdmissionResponse HandleOrDie(const Registry& registry, const AdmissionRequest& request) {
  try {
    return registry.Handle(request);
  } catch (const std::exception& e) {
    BG_FUZZ_FAIL(std::string("exception escaped Registry::Handle: ") + e.what());
  } catch (...) {
    BG_FUZZ_FAIL("non-standard exception escaped Registry::Handle");
  }
}

void CheckEncoded(const std::string& encoded, const std::string& api_version,
                  const std::string& uid, const AdmissionResponse& answer) {
  const json review = json::parse(encoded, nullptr, /*allow_exceptions=*/false);
  BG_FUZZ_CHECK(review.is_object(), "EncodeReview wrote no JSON object: " + encoded);
  BG_FUZZ_CHECK(review.value("apiVersion", json()) == api_version, encoded);
  BG_FUZZ_CHECK(review.value("kind", json()) == "AdmissionReview", encoded);
  const json response = review.value("response", json());
  BG_FUZZ_CHECK(response.is_object(), encoded);
  BG_FUZZ_CHECK(response.value("uid", json()) == uid, "uid not echoed: " + encoded);
  BG_FUZZ_CHECK(response.value("allowed", json()) == answer.allowed, encoded);
  if (!answer.allowed) {
    BG_FUZZ_CHECK(
        response.contains("status") && response["status"].value("code", json()) == answer.code,
        encoded);
  }
  if (answer.allowed && !answer.patch.empty()) {
    BG_FUZZ_CHECK(response.value("patchType", json()) == "JSONPatch", encoded);
    const json encoded_patch = response.value("patch", json());
    BG_FUZZ_CHECK(encoded_patch.is_string(), encoded);
    bg::Result<std::string> raw = bg::kube::DecodeBase64(encoded_patch.get<std::string>());
    BG_FUZZ_CHECK(raw.ok(), "patch is not base64: " + encoded);
    BG_FUZZ_CHECK(json::parse(raw.value(), nullptr, false) == answer.patch,
                  "patch does not round-trip: " + encoded);
  } else {
    BG_FUZZ_CHECK(!response.contains("patch"), encoded);
  }
}

// True when `path` names an element of an array of `doc` (or the end of one).
bool ParentIsArray(const json& doc, const std::string& path) {
  const auto slash = path.rfind('/');  // the last separator: a '/' inside a key is written ~1
  if (slash == std::string::npos) return false;
  bg::Result<json> parent = bg::testing::ResolveJsonPointer(doc, path.substr(0, slash));
  return parent.ok() && parent->is_array();
}

void CheckMutation(const Registry& mutation, const AdmissionRequest& request,
                   const AdmissionResponse& answer) {
  BG_FUZZ_CHECK(answer.allowed, "a mutator denied: " + answer.message);
  BG_FUZZ_CHECK(answer.patch.is_array(), Dump(answer.patch));
  if (answer.patch.empty()) return;
  // Step by step, so that each operation is judged against the document it applies to.
  json doc = request.object;
  for (const json& op : answer.patch) {
    const std::string name = op.value("op", "");
    const std::string path = op.value("path", "");
    BG_FUZZ_CHECK(name == "add" || name == "replace",
                  "mutation patch operation other than add/replace: " + Dump(op));
    if (ParentIsArray(doc, path)) {
      BG_FUZZ_CHECK(name == "add" && path.ends_with("/-"),
                    "mutation patch touches an existing array entry: " + Dump(op) + " on " +
                        Dump(request.object));
    }
    bg::Result<json> next = bg::testing::ApplyJsonPatch(doc, json::array({op}));
    BG_FUZZ_CHECK(next.ok(), "mutation patch does not apply: " + next.status().message() +
                                 "\npatch: " + Dump(answer.patch) +
                                 "\nobject: " + Dump(request.object));
    doc = std::move(next).value();
  }
  if (request.group == bg::longhorn::kGroup &&
      request.resource == bg::longhorn::resource::kSystemBackups &&
      !bg::longhorn::IsBeingDeleted(request.object)) {
    BG_FUZZ_CHECK(bg::longhorn::HasFinalizer(doc, bg::longhorn::kFinalizer), Dump(doc));
    BG_FUZZ_CHECK(!bg::longhorn::StringAt(doc, {"spec", "volumeBackupPolicy"}).empty(), Dump(doc));
  }
  AdmissionRequest again = request;
  again.object = doc;
  const AdmissionResponse second = HandleOrDie(mutation, again);
  BG_FUZZ_CHECK(second.patch.empty(), "mutation is not idempotent: second patch " +
                                          Dump(second.patch) + " for " + Dump(doc));
}

void CheckValidation(const AdmissionRequest& request, const AdmissionResponse& answer) {
  BG_FUZZ_CHECK(answer.patch.empty(), "a validator patched: " + Dump(answer.patch));
  if (!answer.allowed) {
    BG_FUZZ_CHECK(answer.code >= 400 && answer.code < 500,
                  "denial with code " + std::to_string(answer.code) + ": " + answer.message);
  }
  if (request.group == bg::longhorn::kGroup &&
      request.resource == bg::longhorn::resource::kBackups &&
      request.operation == Operation::kDelete) {
    BG_FUZZ_CHECK(answer.allowed, "a Backup DELETE was refused: " + answer.message);
  }
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  bg::log::SetLevel("error");
  TheWorld();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const World& world = TheWorld();
  const std::string_view body(reinterpret_cast<const char*>(data), size);
  auto decoded = DecodeReview(body);
  if (const auto* error = std::get_if<DecodeError>(&decoded)) {
    BG_FUZZ_CHECK(error->http_status == 400 || error->http_status == 413,
                  "decode error status " + std::to_string(error->http_status));
    BG_FUZZ_CHECK(!error->message.empty(), "decode error without a message");
    const AdmissionResponse answer = Errored(error->http_status, error->message);
    CheckEncoded(EncodeReview(error->api_version, error->uid, answer), error->api_version,
                 error->uid, answer);
    return 0;
  }
  const DecodedReview& review = std::get<DecodedReview>(decoded);
  BG_FUZZ_CHECK(!review.request.uid.empty(), "decoded a review without a uid");

  const AdmissionResponse mutated = HandleOrDie(world.mutation, review.request);
  CheckEncoded(EncodeReview(review.api_version, review.request.uid, mutated), review.api_version,
               review.request.uid, mutated);
  CheckMutation(world.mutation, review.request, mutated);

  const AdmissionResponse validated = HandleOrDie(world.validation, review.request);
  CheckEncoded(EncodeReview(review.api_version, review.request.uid, validated), review.api_version,
               review.request.uid, validated);
  CheckValidation(review.request, validated);
  return 0;
}
