// A gzip-compressed tar archive (POSIX ustar) of in-memory files, for `backup-guard diagnose
// --bundle`. Regular files only, mode 0644, one timestamp; names up to 100 bytes.
#pragma once

#include <ctime>
#include <string>
#include <utility>
#include <vector>

#include "common/status.h"

namespace bg::cmd {

struct TarEntry {
  std::string name;  // relative path inside the archive
  std::string content;
};

// The tar stream itself (uncompressed): a 512-byte header per file, the content padded to 512
// bytes, and two zero blocks at the end.
Result<std::string> TarArchive(const std::vector<TarEntry>& entries, std::time_t mtime);

// Writes TarArchive(entries) gzip-compressed to `path` (mode 0600: a bundle describes the
// cluster), replacing it atomically.
Status WriteTarGz(const std::string& path, const std::vector<TarEntry>& entries, std::time_t mtime);

}  // namespace bg::cmd
