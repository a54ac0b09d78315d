#include "processor/receipt.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <cerrno>
#include <cstring>
#include <functional>
#include <map>
#include <string_view>

#include "common/base64.h"
#include "common/longhorn.h"
#include "domain/kinds.h"

namespace bg::processor {

using nlohmann::json;
namespace res = longhorn::resource;

namespace {

std::string Name(const json& obj) { return longhorn::StringAt(obj, {"metadata", "name"}); }

// The name of the BackupTarget owner reference, "" when there is none.
std::string OwnerTarget(const json& obj) {
  const json* meta = obj.is_object() && obj.contains("metadata") ? &obj["metadata"] : nullptr;
  if (meta == nullptr || !meta->is_object()) return "";
  auto refs = meta->find("ownerReferences");
  if (refs == meta->end() || !refs->is_array()) return "";
  for (const json& ref : *refs) {
    if (longhorn::StringAt(ref, {"kind"}) != "BackupTarget") continue;
    const std::string api_version = longhorn::StringAt(ref, {"apiVersion"});
    if (api_version.rfind(std::string(longhorn::kGroup) + "/", 0) != 0) continue;
    std::string name = longhorn::StringAt(ref, {"name"});
    if (!name.empty()) return name;
  }
  return "";
}

std::string FirstNonEmpty(std::initializer_list<std::string> candidates) {
  for (const std::string& c : candidates) {
    if (!c.empty()) return c;
  }
  return "";
}

// The volume a Backup belongs to, as the engine records it.
std::string BackupVolume(const json& backup) {
  return FirstNonEmpty({longhorn::Label(backup, longhorn::kBackupVolumeLabel),
                        longhorn::StringAt(backup, {"status", "volumeName"})});
}

// Lists `plural` in `ns` page by page, handing each item to `fn`. A kind that is not installed
// (NotFound) has no items.
Status EachItem(kube::KubeApi& api, std::string_view plural, const std::string& ns,
                const std::function<void(const json&)>& fn) {
  Status s = api.ListPages(domain::Resource(plural), ns, "", [&](std::vector<json>& items) {
    for (json& item : items) {
      fn(item);
      item = json();
    }
  });
  if (s.IsNotFound()) return Status::Ok();
  if (!s.ok()) return Status::Unavailable("listing " + std::string(plural) + ": " + s.message());
  return s;
}

Status FieldError(const std::string& where, const std::string& what) {
  return Status::InvalidArgument("receipt: " + where + ": " + what);
}

// Reads the string member `key` of `obj` into `out`; a missing member is "" unless `required`.
Status StringField(const json& obj, const char* key, bool required, const std::string& where,
                   std::string* out) {
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) {
    if (required) return FieldError(where, std::string("\"") + key + "\" is missing");
    out->clear();
    return Status::Ok();
  }
  if (!it->is_string()) return FieldError(where, std::string("\"") + key + "\" is not a string");
  *out = it->get<std::string>();
  if (required && out->empty()) return FieldError(where, std::string("\"") + key + "\" is empty");
  return Status::Ok();
}

}  // namespace

Result<Receipt> BuildReceipt(kube::KubeApi& api, const std::string& ns,
                             const std::string& created_at) {
  Receipt receipt;
  receipt.ns = ns;
  receipt.created_at = created_at;
  Status s = EachItem(api, res::kBackups, ns, [&](const json& b) {
    if (longhorn::StringAt(b, {"status", "state"}) != "Completed") return;
    receipt.backups.push_back({Name(b), BackupVolume(b),
                               FirstNonEmpty({longhorn::Label(b, longhorn::kBackupTargetLabel),
                                              longhorn::StringAt(b, {"status", "backupTargetName"}),
                                              std::string(longhorn::kDefaultBackupTarget)}),
                               longhorn::StringAt(b, {"status", "url"})});
  });
  if (!s.ok()) return s;
  s = EachItem(api, res::kSystemBackups, ns, [&](const json& sb) {
    if (longhorn::StringAt(sb, {"status", "state"}) != "Ready") return;
    receipt.system_backups.push_back(
        {Name(sb), FirstNonEmpty({OwnerTarget(sb), std::string(longhorn::kDefaultBackupTarget)}),
         longhorn::StringAt(sb, {"status", "version"})});
  });
  if (!s.ok()) return s;
  return receipt;
}

json ToJson(const Receipt& receipt) {
  json backups = json::array();
  for (const ReceiptBackup& b : receipt.backups) {
    backups.push_back(
        {{"name", b.name}, {"volume", b.volume}, {"target", b.target}, {"url", b.url}});
  }
  json system_backups = json::array();
  for (const ReceiptSystemBackup& sb : receipt.system_backups) {
    system_backups.push_back({{"name", sb.name}, {"target", sb.target}, {"version", sb.version}});
  }
  return {{"apiVersion", kReceiptApiVersion}, {"kind", kReceiptKind},
          {"namespace", receipt.ns},          {"createdAt", receipt.created_at},
          {"backups", std::move(backups)},    {"systemBackups", std::move(system_backups)}};
}

Result<Receipt> ReceiptFromJson(const json& doc) {
  if (!doc.is_object()) return FieldError("the document", "not a JSON object");
  if (doc.value("kind", json()) != kReceiptKind) {
    return FieldError("the document", std::string("\"kind\" is not \"") + kReceiptKind +
                                          "\" (not a backup-guard uninstall receipt)");
  }
  Receipt r;
  if (Status s = StringField(doc, "namespace", false, "the document", &r.ns); !s.ok()) return s;
  if (Status s = StringField(doc, "createdAt", false, "the document", &r.created_at); !s.ok()) {
    return s;
  }
  for (const char* key : {"backups", "systemBackups"}) {
    auto it = doc.find(key);
    if (it == doc.end() || !it->is_array()) {
      return FieldError("the document", std::string("\"") + key + "\" is missing or not a list");
    }
  }
  size_t i = 0;
  for (const json& e : doc["backups"]) {
    const std::string where = "backups[" + std::to_string(i++) + "]";
    if (!e.is_object()) return FieldError(where, "not an object");
    ReceiptBackup b;
    if (Status s = StringField(e, "name", true, where, &b.name); !s.ok()) return s;
    if (Status s = StringField(e, "volume", false, where, &b.volume); !s.ok()) return s;
    if (Status s = StringField(e, "target", false, where, &b.target); !s.ok()) return s;
    if (Status s = StringField(e, "url", false, where, &b.url); !s.ok()) return s;
    r.backups.push_back(std::move(b));
  }
  i = 0;
  for (const json& e : doc["systemBackups"]) {
    const std::string where = "systemBackups[" + std::to_string(i++) + "]";
    if (!e.is_object()) return FieldError(where, "not an object");
    ReceiptSystemBackup sb;
    if (Status s = StringField(e, "name", true, where, &sb.name); !s.ok()) return s;
    if (Status s = StringField(e, "target", false, where, &sb.target); !s.ok()) return s;
    if (Status s = StringField(e, "version", false, where, &sb.version); !s.ok()) return s;
    r.system_backups.push_back(std::move(sb));
  }
  return r;
}

Result<Receipt> ParseReceipt(const std::string& text) {
  json doc = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded()) return Status::InvalidArgument("receipt: not valid JSON");
  return ReceiptFromJson(doc);
}

std::string DefaultReceiptPath(std::time_t now) {
  std::tm tm{};
  gmtime_r(&now, &tm);
  char buf[64];
  // No colons: the name must be usable on every filesystem and in `kubectl cp`.
  std::strftime(buf, sizeof(buf), "backup-guard-receipt-%Y%m%dT%H%M%SZ.json", &tm);
  return buf;
}

Status WriteFileAtomically(const std::string& path, const std::string& content) {
  const size_t slash = path.rfind('/');
  const std::string dir = slash == std::string::npos ? "." : path.substr(0, slash + 1);
  std::string tmp = (slash == std::string::npos ? std::string() : dir) + ".receipt-XXXXXX";
  const int fd = mkstemp(tmp.data());
  if (fd < 0) {
    return Status::Unavailable("cannot create a temporary file in " + dir + ": " +
                               std::strerror(errno));
  }
  auto fail = [&](const std::string& what) {
    const std::string err = std::strerror(errno);
    ::close(fd);
    ::unlink(tmp.c_str());
    return Status::Unavailable(what + " " + path + ": " + err);
  };
  size_t written = 0;
  while (written < content.size()) {
    const ssize_t n = ::write(fd, content.data() + written, content.size() - written);
    if (n < 0) {
      if (errno == EINTR) continue;
      return fail("cannot write");
    }
    written += static_cast<size_t>(n);
  }
  // Readable by others like any file the user writes: a receipt holds names and URLs, no secrets.
  if (::fchmod(fd, 0644) != 0 || ::fsync(fd) != 0) return fail("cannot write");
  if (::close(fd) != 0) {
    ::unlink(tmp.c_str());
    return Status::Unavailable("cannot write " + path + ": " + std::strerror(errno));
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    const std::string err = std::strerror(errno);
    ::unlink(tmp.c_str());
    return Status::Unavailable("cannot write " + path + ": " + err);
  }
  return Status::Ok();
}

Result<std::string> Gzip(std::string_view data) {
  z_stream z{};
  // windowBits 15 + 16: a gzip header and trailer around the deflate stream.
  if (deflateInit2(&z, 9, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK) {
    return Status::Internal("gzip: cannot start");
  }
  std::string out(deflateBound(&z, static_cast<uLong>(data.size())), '\0');
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data()));
  z.avail_in = static_cast<uInt>(data.size());
  z.next_out = reinterpret_cast<Bytef*>(out.data());
  z.avail_out = static_cast<uInt>(out.size());
  const int rc = deflate(&z, Z_FINISH);
  out.resize(z.total_out);
  deflateEnd(&z);
  if (rc != Z_STREAM_END) return Status::Internal("gzip: cannot compress");
  return out;
}

Result<std::string> Gunzip(std::string_view data) {
  z_stream z{};
  if (inflateInit2(&z, 15 + 16) != Z_OK) return Status::Internal("gunzip: cannot start");
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data()));
  z.avail_in = static_cast<uInt>(data.size());
  std::string out;
  char buf[65536];
  int rc = Z_OK;
  while (rc == Z_OK) {
    z.next_out = reinterpret_cast<Bytef*>(buf);
    z.avail_out = sizeof(buf);
    rc = inflate(&z, Z_NO_FLUSH);
    out.append(buf, sizeof(buf) - z.avail_out);
    if (rc == Z_BUF_ERROR && z.avail_in == 0) break;  // truncated input
  }
  inflateEnd(&z);
  if (rc != Z_STREAM_END) return Status::InvalidArgument("gunzip: not a whole gzip stream");
  return out;
}

Result<ReceiptStorage> StoreReceiptConfigMap(kube::KubeApi& api, const std::string& ns,
                                             const std::string& content, const std::string& file) {
  const std::string where = file.empty() ? "the receipt file" : file;
  json data = json::object();
  json binary = json::object();
  ReceiptStorage storage = ReceiptStorage::kPlain;
  if (content.size() <= kConfigMapDataLimit) {
    data[kReceiptConfigMapKey] = content;
  } else {
    auto gz = Gzip(content);
    if (!gz.ok()) return gz.status();
    if (gz->size() <= kConfigMapDataLimit) {
      storage = ReceiptStorage::kGzip;
      binary[kReceiptConfigMapGzipKey] = Base64Encode(*gz);
      data[kReceiptConfigMapNoteKey] =
          std::string("The receipt (") + std::to_string(content.size()) +
          " bytes) is larger than a ConfigMap may hold, so it is stored gzip-compressed in "
          "binaryData." +
          kReceiptConfigMapGzipKey + ". Read it with: kubectl -n " + ns + " get configmap " +
          kReceiptConfigMap +
          " -o jsonpath='{.binaryData.receipt\\.json\\.gz}' | base64 -d | gunzip"
          " > receipt.json\n";
    } else {
      storage = ReceiptStorage::kFileOnly;
      data[kReceiptConfigMapNoteKey] =
          std::string("The receipt (") + std::to_string(content.size()) + " bytes, " +
          std::to_string(gz->size()) +
          " compressed) is larger than a ConfigMap may hold even compressed; it was written only "
          "to " +
          where + ".\n";
    }
  }
  json config_map = {{"apiVersion", "v1"},
                     {"kind", "ConfigMap"},
                     {"metadata",
                      {{"name", kReceiptConfigMap},
                       {"namespace", ns},
                       {"labels", {{"app.kubernetes.io/managed-by", "backup-guard"}}}}},
                     {"data", data}};
  if (!binary.empty()) config_map["binaryData"] = binary;
  auto created = api.Create(kConfigMaps, ns, config_map);
  if (created.ok()) return storage;
  if (!created.status().IsConflict()) {
    return Status::Unavailable("creating ConfigMap " + ns + "/" + kReceiptConfigMap + ": " +
                               created.status().message());
  }
  // There from an earlier run: replace its data, removing the keys of the other forms. A merge
  // patch needs no resourceVersion, and the receipt is the only writer of these keys.
  json patch_data = data;
  json patch_binary = binary;
  for (const char* key : {kReceiptConfigMapKey, kReceiptConfigMapNoteKey}) {
    if (!patch_data.contains(key)) patch_data[key] = nullptr;
  }
  if (!patch_binary.contains(kReceiptConfigMapGzipKey)) {
    patch_binary[kReceiptConfigMapGzipKey] = nullptr;
  }
  auto patched = api.MergePatch(kConfigMaps, ns, kReceiptConfigMap,
                                {{"data", patch_data}, {"binaryData", patch_binary}});
  if (!patched.ok()) {
    return Status::Unavailable("replacing ConfigMap " + ns + "/" + kReceiptConfigMap + ": " +
                               patched.status().message());
  }
  return storage;
}

size_t Verification::missing() const {
  size_t n = 0;
  for (const Entry& e : entries) n += e.back ? 0 : 1;
  return n;
}

Result<Verification> VerifyReceipt(kube::KubeApi& api, const std::string& ns,
                                   const Receipt& receipt) {
  std::map<std::string, std::string> backups;  // name -> volume
  std::map<std::string, bool> system_backups;
  auto list = [&](std::string_view plural, const std::function<void(const json&)>& fn) -> Status {
    Status s = api.ListPages(domain::Resource(plural), ns, "", [&](std::vector<json>& items) {
      for (const json& item : items) fn(item);
    });
    if (!s.ok()) return Status::Unavailable("listing " + std::string(plural) + ": " + s.message());
    return s;
  };
  if (Status s = list(res::kBackups, [&](const json& b) { backups[Name(b)] = BackupVolume(b); });
      !s.ok()) {
    return s;
  }
  if (Status s =
          list(res::kSystemBackups, [&](const json& sb) { system_backups[Name(sb)] = true; });
      !s.ok()) {
    return s;
  }
  Verification v;
  for (const ReceiptBackup& b : receipt.backups) {
    Verification::Entry e{"Backup", b.name, b.volume, b.target, false, ""};
    auto it = backups.find(b.name);
    if (it == backups.end()) {
      e.why = "not found";
    } else if (!b.volume.empty() && it->second != b.volume) {
      e.why = "found with volume \"" + it->second + "\", not \"" + b.volume + "\"";
    } else {
      e.back = true;
    }
    v.entries.push_back(std::move(e));
  }
  for (const ReceiptSystemBackup& sb : receipt.system_backups) {
    Verification::Entry e{"SystemBackup", sb.name, "", sb.target, false, ""};
    e.back = system_backups.count(sb.name) > 0;
    if (!e.back) e.why = "not found";
    v.entries.push_back(std::move(e));
  }
  return v;
}

json ToJson(const Verification& verification, const std::string& ns) {
  json back = json::array(), missing = json::array();
  for (const Verification::Entry& e : verification.entries) {
    json entry = {{"kind", e.kind}, {"name", e.name}, {"target", e.target}};
    if (e.kind == "Backup") entry["volume"] = e.volume;
    if (e.back) {
      back.push_back(std::move(entry));
    } else {
      entry["why"] = e.why;
      missing.push_back(std::move(entry));
    }
  }
  return {{"namespace", ns},
          {"total", verification.entries.size()},
          {"back", std::move(back)},
          {"missing", std::move(missing)},
          {"allBack", verification.missing() == 0}};
}

}  // namespace bg::processor
