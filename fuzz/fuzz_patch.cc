// fuzz_patch: webhook::MakePatch checked against the independent RFC 6902 applier in
// tests/testing/json_patch_apply.h.
//
// Input: a mode byte, then an original JSON document, then a NUL byte, then
//   mode even: the modified JSON document;
//   mode odd:  edit instructions that derive the modified document from the original: add keys
//              (with '/' and '~' in them), append array items, add whole arrays, change or remove
//              values.
// (fuzz/make-seeds.sh writes seeds in this form.)
//
// Properties:
//  - applying MakePatch(original, modified) to original yields modified, and MakePatch of a
//    document with itself is empty;
//  - operations are add, remove or replace, and an add into an array appends with "/-";
//  - when every edit only added keys or appended items, the patch only adds;
//  - the SystemBackup mutator, run on the original as a CREATE, answers a patch that applies,
//    removes nothing, replaces no entry of an existing array, and only adds when the original
//    needs no repair (fields of the expected types, no empty policy).
#include <fuzzer/FuzzedDataProvider.h>

#include <cstddef>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "common/log.h"
#include "fuzz/fuzz_check.h"
#include "mutators/mutators.h"
#include "tests/testing/fake_lookup.h"
#include "tests/testing/json_patch_apply.h"
#include "webhook/admission.h"
#include "webhook/registry.h"

namespace {

using nlohmann::json;

std::string Dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

// Pieces keys are built from: the characters JSON Pointer escapes, digits and "-" (which look
// like array indices), and a multi-byte character.
constexpr std::string_view kKeyPieces[] = {"a",        "b",   "/",        "~",         "0", "1",
                                           "~0",       "~1",  "-",        "",          " ", ".",
                                           "\xc3\xa9", "x/y", "metadata", "finalizers"};

std::string MakeKey(FuzzedDataProvider& in) {
  std::string key;
  const int pieces = in.ConsumeIntegralInRange(0, 4);
  for (int i = 0; i < pieces; ++i) key += in.PickValueInArray(kKeyPieces);
  return key;
}

json MakeValue(FuzzedDataProvider& in, int depth) {
  switch (in.ConsumeIntegralInRange(0, depth > 2 ? 4 : 6)) {
    case 0:
      return nullptr;
    case 1:
      return in.ConsumeBool();
    case 2:
      return in.ConsumeIntegral<int32_t>();
    case 3:
      return in.ConsumeFloatingPointInRange(-1e6, 1e6);
    case 4:
      return MakeKey(in);
    case 5: {
      json arr = json::array();
      const int n = in.ConsumeIntegralInRange(0, 3);
      for (int i = 0; i < n; ++i) arr.push_back(MakeValue(in, depth + 1));
      return arr;
    }
    default: {
      json obj = json::object();
      const int n = in.ConsumeIntegralInRange(0, 3);
      for (int i = 0; i < n; ++i) obj[MakeKey(in)] = MakeValue(in, depth + 1);
      return obj;
    }
  }
}

// Every node of `doc` that `keep` accepts, parents before children.
template <typename Keep>
std::vector<json*> Nodes(json& doc, Keep keep) {
  std::vector<json*> out;
  std::vector<json*> todo = {&doc};
  while (!todo.empty()) {
    json* node = todo.back();
    todo.pop_back();
    if (keep(*node)) out.push_back(node);
    if (node->is_structured()) {
      for (json& child : *node) todo.push_back(&child);
    }
  }
  return out;
}

// Applies fuzz-chosen edits to `doc`; returns true when every edit only added or appended.
bool Edit(FuzzedDataProvider& in, json& doc) {
  bool append_only = true;
  for (int edits = 0; edits < 16 && in.remaining_bytes() > 0; ++edits) {
    const int kind = in.ConsumeIntegralInRange(0, 4);
    if (kind <= 1) {  // add a key that is not there yet (kind 1: an array value, added whole)
      auto objects = Nodes(doc, [](const json& n) { return n.is_object(); });
      if (objects.empty()) continue;
      json& target = *objects[in.ConsumeIntegralInRange<size_t>(0, objects.size() - 1)];
      const std::string key = MakeKey(in);
      if (target.contains(key)) continue;
      target[key] = kind == 0 ? MakeValue(in, 0) : json::array({MakeValue(in, 1)});
    } else if (kind == 2) {  // append to an array
      auto arrays = Nodes(doc, [](const json& n) { return n.is_array(); });
      if (arrays.empty()) continue;
      arrays[in.ConsumeIntegralInRange<size_t>(0, arrays.size() - 1)]->push_back(MakeValue(in, 0));
    } else if (kind == 3) {  // change any value, the root included
      auto all = Nodes(doc, [](const json&) { return true; });
      *all[in.ConsumeIntegralInRange<size_t>(0, all.size() - 1)] = MakeValue(in, 0);
      append_only = false;
    } else {  // remove a key or an array item
      auto containers = Nodes(doc, [](const json& n) { return n.is_structured() && !n.empty(); });
      if (containers.empty()) continue;
      json& target = *containers[in.ConsumeIntegralInRange<size_t>(0, containers.size() - 1)];
      const size_t index = in.ConsumeIntegralInRange<size_t>(0, target.size() - 1);
      if (target.is_array()) {
        target.erase(index);
      } else {
        target.erase(std::next(target.begin(), static_cast<std::ptrdiff_t>(index)).key());
      }
      append_only = false;
    }
  }
  return append_only;
}

// True when `path` names an element of an array of `doc` (or the end of one).
bool ParentIsArray(const json& doc, const std::string& path) {
  const auto slash = path.rfind('/');  // the last separator: a '/' inside a key is written ~1
  if (slash == std::string::npos) return false;
  bg::Result<json> parent = bg::testing::ResolveJsonPointer(doc, path.substr(0, slash));
  return parent.ok() && parent->is_array();
}

// Applies `patch` to `original` one operation at a time, checking each against the document it
// applies to; returns the result.
json ApplyChecked(const json& original, const json& patch, bool only_adds, bool keep_arrays,
                  const std::string& context) {
  BG_FUZZ_CHECK(patch.is_array(), context + ": patch is not an array: " + Dump(patch));
  json doc = original;
  for (const json& op : patch) {
    BG_FUZZ_CHECK(op.is_object() && op.value("path", json()).is_string(),
                  context + ": malformed operation " + Dump(op));
    const std::string name = op.value("op", "");
    const std::string path = op["path"].get<std::string>();
    BG_FUZZ_CHECK(name == "add" || name == "remove" || name == "replace",
                  context + ": unexpected operation " + Dump(op));
    BG_FUZZ_CHECK(!only_adds || name == "add", context + ": " + name + " for an add-only change: " +
                                                   Dump(patch) + "\noriginal: " + Dump(original));
    if (ParentIsArray(doc, path)) {
      if (name == "add") {
        BG_FUZZ_CHECK(path.ends_with("/-"), context + ": array insert by index: " + Dump(op));
      } else {
        BG_FUZZ_CHECK(!keep_arrays, context + ": " + name + " of an existing array entry: " +
                                        Dump(op) + "\noriginal: " + Dump(original));
      }
    }
    bg::Result<json> next = bg::testing::ApplyJsonPatch(doc, json::array({op}));
    BG_FUZZ_CHECK(next.ok(), context + ": patch does not apply: " + next.status().message() +
                                 "\npatch: " + Dump(patch) + "\noriginal: " + Dump(original));
    doc = std::move(next).value();
  }
  return doc;
}

void CheckMakePatch(const json& original, const json& modified, bool append_only) {
  const json patch = bg::webhook::MakePatch(original, modified);
  const json result =
      ApplyChecked(original, patch, append_only, /*keep_arrays=*/append_only, "MakePatch");
  BG_FUZZ_CHECK(result == modified, "MakePatch: applied patch " + Dump(patch) + " gives " +
                                        Dump(result) + ", want " + Dump(modified));
  BG_FUZZ_CHECK(bg::webhook::MakePatch(modified, modified).empty(),
                "MakePatch of a document with itself is not empty");
}

struct Mutation {
  Mutation() {
    lookup.Put("backuptargets",
               {{"apiVersion", "longhorn.io/v1beta2"},
                {"kind", "BackupTarget"},
                {"metadata",
                 {{"name", "default"}, {"namespace", "longhorn-system"}, {"uid", "uid-default"}}},
                {"spec", {{"backupTargetURL", "s3://backups@us-east-1/"}}}});
    registry = bg::mutators::BuildMutationRegistry(lookup);
  }
  bg::testing::FakeLookup lookup;
  bg::webhook::Registry registry;
};

// The mutator's edit is append-only unless a field it writes has to be repaired or defaulted.
bool MutatorOnlyAppends(const json& obj) {
  auto absent_or = [](const json& parent, const char* key, auto is_ok) {
    auto it = parent.find(key);
    return it == parent.end() || is_ok(*it);
  };
  auto is_object = [](const json& v) { return v.is_object(); };
  auto is_array = [](const json& v) { return v.is_array(); };
  auto is_policy = [](const json& v) { return v.is_string() && !v.get<std::string>().empty(); };
  if (!absent_or(obj, "metadata", is_object) || !absent_or(obj, "spec", is_object)) return false;
  if (obj.contains("metadata") && (!absent_or(obj["metadata"], "finalizers", is_array) ||
                                   !absent_or(obj["metadata"], "ownerReferences", is_array))) {
    return false;
  }
  return !obj.contains("spec") || absent_or(obj["spec"], "volumeBackupPolicy", is_policy);
}

void CheckMutator(const json& original) {
  if (!original.is_object()) return;  // the codec admits only objects
  static Mutation* mutation = new Mutation();
  const bg::webhook::AdmissionRequest request =
      bg::testing::MakeRequest("systembackups", bg::webhook::Operation::kCreate, original);
  bg::webhook::AdmissionResponse answer;
  try {
    answer = mutation->registry.Handle(request);
  } catch (const std::exception& e) {
    BG_FUZZ_FAIL(std::string("exception escaped the mutator: ") + e.what());
  }
  BG_FUZZ_CHECK(answer.allowed, "the mutator denied: " + answer.message);
  ApplyChecked(original, answer.patch, MutatorOnlyAppends(original), /*keep_arrays=*/true,
               "mutator");
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  bg::log::SetLevel("error");
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const bool edit_mode = (data[0] & 1) != 0;
  const std::string_view rest(reinterpret_cast<const char*>(data) + 1, size - 1);
  const size_t nul = rest.find('\0');
  const std::string_view first = rest.substr(0, nul);
  const std::string_view second =
      nul == std::string_view::npos ? std::string_view() : rest.substr(nul + 1);

  const json original = json::parse(first, nullptr, /*allow_exceptions=*/false);
  if (original.is_discarded()) return 0;
  CheckMutator(original);

  if (!edit_mode) {
    const json modified = json::parse(second, nullptr, /*allow_exceptions=*/false);
    if (modified.is_discarded()) return 0;
    CheckMakePatch(original, modified, /*append_only=*/false);
    return 0;
  }
  FuzzedDataProvider in(reinterpret_cast<const uint8_t*>(second.data()), second.size());
  json modified = original;
  const bool append_only = Edit(in, modified);
  CheckMakePatch(original, modified, append_only);
  return 0;
}
