// The uninstall receipt (SPEC.md "Uninstall"): before `backup-guard uninstall` deletes anything it
// records every Completed Backup and Ready SystemBackup, with its target, volume and URL in the
// store, so that after a reinstall `backup-guard verify --receipt FILE` can say which of them the
// engine has synced back from the store.
//
// The receipt goes to a file (written atomically) and to a ConfigMap in the engine's namespace,
// which outlives the uninstall (it deletes only longhorn.io kinds).
//
// Thread-safety: the functions keep no state.
#pragma once

#include <ctime>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "kube/api.h"

namespace bg::processor {

inline constexpr char kReceiptConfigMap[] = "backup-guard-uninstall-receipt";
inline constexpr char kReceiptConfigMapKey[] = "receipt.json";
inline constexpr char kReceiptKind[] = "BackupGuardUninstallReceipt";
inline constexpr char kReceiptApiVersion[] = "backup-guard.io/v1";
inline const kube::ResourceRef kConfigMaps{"", "v1", "configmaps", "ConfigMap"};

struct ReceiptBackup {
  std::string name;
  std::string volume;  // the backup-volume label, else status.volumeName
  std::string target;  // the backup-target label, else status.backupTargetName, else "default"
  std::string url;     // status.url: where the backup is in the store
};

struct ReceiptSystemBackup {
  std::string name;
  std::string target;   // its BackupTarget owner reference, else "default"
  std::string version;  // status.version: the engine version it was taken of
};

struct Receipt {
  std::string ns;
  std::string created_at;  // RFC 3339, UTC
  std::vector<ReceiptBackup> backups;
  std::vector<ReceiptSystemBackup> system_backups;
};

// Reads every Backup whose status.state is Completed and every SystemBackup whose status.state is
// Ready in `ns` (page by page; only the recorded fields are kept). A kind whose CRD is not
// installed contributes nothing.
Result<Receipt> BuildReceipt(kube::KubeApi& api, const std::string& ns,
                             const std::string& created_at);

nlohmann::json ToJson(const Receipt& receipt);
// Untrusted input (a file a person may have edited): anything malformed is InvalidArgument naming
// the field, never an exception.
Result<Receipt> ReceiptFromJson(const nlohmann::json& doc);
Result<Receipt> ParseReceipt(const std::string& text);

// The default receipt file: backup-guard-receipt-<UTC time>.json in the working directory.
std::string DefaultReceiptPath(std::time_t now);

// Writes `content` to `path` atomically (a temporary file in the same directory, fsync, rename).
Status WriteFileAtomically(const std::string& path, const std::string& content);

// What a ConfigMap holds at most: the API server refuses one whose data and binaryData add up to
// more than 1 MiB. A little is kept back for the note that a compressed receipt carries.
inline constexpr size_t kConfigMapDataLimit = size_t{1024} * 1024 - 4096;
inline constexpr char kReceiptConfigMapGzipKey[] = "receipt.json.gz";
inline constexpr char kReceiptConfigMapNoteKey[] = "README";

// How the receipt went into the ConfigMap.
enum class ReceiptStorage {
  kPlain,     // data[kReceiptConfigMapKey]: the receipt as written to the file
  kGzip,      // binaryData[kReceiptConfigMapGzipKey]: the same, gzip-compressed (too large plain;
              // tens of thousands of Completed Backups), and a README saying how to read it
  kFileOnly,  // too large even compressed: the ConfigMap holds only a README naming the file;
              // the caller must warn that the file is the only copy
};

// Creates the ConfigMap kReceiptConfigMap in `ns` holding `content` (the receipt file's text) in
// the first form of ReceiptStorage that fits kConfigMapDataLimit, or replaces the data of the one
// already there (the keys of the other forms are removed). `file` is named in the README.
Result<ReceiptStorage> StoreReceiptConfigMap(kube::KubeApi& api, const std::string& ns,
                                             const std::string& content,
                                             const std::string& file = "");

// gzip (RFC 1952) of `data`, and back; for the ConfigMap's compressed form.
Result<std::string> Gzip(std::string_view data);
Result<std::string> Gunzip(std::string_view data);

// What `backup-guard verify` finds for a receipt after a reinstall.
struct Verification {
  struct Entry {
    std::string kind;  // Backup or SystemBackup
    std::string name;
    std::string volume;  // Backups only
    std::string target;
    bool back = false;
    std::string why;  // when not back: "not found", or "found with volume X, not Y"
  };
  std::vector<Entry> entries;  // the receipt's order: Backups, then SystemBackups
  size_t missing() const;
};

// A Backup is back when one with the same name exists in `ns` and, when the receipt records a
// volume, it has that volume (backup-volume label, else status.volumeName); a SystemBackup when
// one with the same name exists. An unreadable cluster (a kind not served included) is an error.
Result<Verification> VerifyReceipt(kube::KubeApi& api, const std::string& ns,
                                   const Receipt& receipt);
nlohmann::json ToJson(const Verification& verification, const std::string& ns);

}  // namespace bg::processor
