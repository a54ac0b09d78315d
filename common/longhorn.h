// Names shared with the storage engine (SPEC.md "Resources") and small, total accessors over
// untrusted objects: each returns an empty value when the field is absent or has the wrong type.
#pragma once

#include <ctime>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

namespace bg::longhorn {

inline constexpr std::string_view kGroup = "longhorn.io";
inline constexpr std::string_view kVersion = "v1beta2";
inline constexpr std::string_view kApiVersion = "longhorn.io/v1beta2";

inline constexpr std::string_view kFinalizer = "longhorn.io";
inline constexpr std::string_view kDefaultBackupTarget = "default";
inline constexpr std::string_view kDeleteCustomResourceOnlyLabel =
    "longhorn.io/delete-custom-resource-only";
inline constexpr std::string_view kDeleteBackupTargetAnnotation =
    "longhorn.io/delete-backup-target-from-longhorn";
inline constexpr std::string_view kDeletingConfirmationFlag = "deleting-confirmation-flag";
inline constexpr std::string_view kBackupVolumeLabel = "backup-volume";
inline constexpr std::string_view kBackupTargetLabel = "backup-target";

namespace resource {
inline constexpr std::string_view kBackupTargets = "backuptargets";
inline constexpr std::string_view kBackupVolumes = "backupvolumes";
inline constexpr std::string_view kBackups = "backups";
inline constexpr std::string_view kSystemBackups = "systembackups";
inline constexpr std::string_view kBackupBackingImages = "backupbackingimages";
inline constexpr std::string_view kVolumes = "volumes";
inline constexpr std::string_view kSettings = "settings";
}  // namespace resource

// Follows `path` ("spec", "backupTargetName") through objects; returns "" unless it ends at a
// string.
std::string StringAt(const nlohmann::json& obj, std::initializer_list<std::string_view> path);

std::string Label(const nlohmann::json& obj, std::string_view key);
bool HasLabel(const nlohmann::json& obj, std::string_view key);
bool HasAnnotation(const nlohmann::json& obj, std::string_view key);
bool IsBeingDeleted(const nlohmann::json& obj);
// `t` as the API server writes metadata timestamps: RFC 3339, whole seconds, UTC
// ("2026-01-31T12:00:00Z").
std::string Rfc3339Utc(std::time_t t);
bool HasFinalizer(const nlohmann::json& obj, std::string_view finalizer);
bool IsDeleteCustomResourceOnly(const nlohmann::json& obj);

// True when `obj` has an owner reference of kind BackupTarget in group longhorn.io.
bool HasBackupTargetOwner(const nlohmann::json& obj);

// The owner reference a SystemBackup carries to its BackupTarget: no controller and no
// blockOwnerDeletion, so the writer needs no extra RBAC.
nlohmann::json BackupTargetOwnerReference(const nlohmann::json& target);

}  // namespace bg::longhorn
