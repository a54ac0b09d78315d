#include "kube/api.h"

#include "common/longhorn.h"

namespace bg::kube {

ResourceRef LonghornResource(std::string_view plural) {
  static const std::pair<std::string_view, std::string_view> kKinds[] = {
      {"backuptargets", "BackupTarget"},
      {"backupvolumes", "BackupVolume"},
      {"backups", "Backup"},
      {"systembackups", "SystemBackup"},
      {"backupbackingimages", "BackupBackingImage"},
      {"volumes", "Volume"},
      {"settings", "Setting"}};
  std::string kind;
  for (const auto& [p, k] : kKinds) {
    if (p == plural) kind = k;
  }
  return ResourceRef{std::string(longhorn::kGroup), std::string(longhorn::kVersion),
                     std::string(plural), kind};
}

}  // namespace bg::kube
