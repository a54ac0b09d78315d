#include "cmd/tar_gz.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <cstdio>
#include <cstring>
#include <filesystem>

namespace bg::cmd {

namespace {

constexpr size_t kBlock = 512;

// Writes `value` as a zero-padded octal field of `width` bytes (the last one NUL).
void Octal(char* field, size_t width, unsigned long long value) {
  std::snprintf(field, width, "%0*llo", static_cast<int>(width - 1), value);
}

}  // namespace

Result<std::string> TarArchive(const std::vector<TarEntry>& entries, std::time_t mtime) {
  std::string out;
  for (const TarEntry& e : entries) {
    if (e.name.empty() || e.name.size() > 100) {
      return Status::InvalidArgument("tar: a file name must have 1 to 100 bytes: " + e.name);
    }
    char header[kBlock] = {};
    e.name.copy(header, e.name.size());         // name[100]
    Octal(header + 100, 8, 0644);               // mode
    Octal(header + 108, 8, 0);                  // uid
    Octal(header + 116, 8, 0);                  // gid
    Octal(header + 124, 12, e.content.size());  // size
    Octal(header + 136, 12, static_cast<unsigned long long>(mtime));
    header[156] = '0';                      // typeflag: regular file
    std::memcpy(header + 257, "ustar", 6);  // magic "ustar\0"
    header[263] = header[264] = '0';        // version
    // The checksum is computed with its own field as eight spaces.
    std::memset(header + 148, ' ', 8);
    unsigned int sum = 0;
    for (unsigned char c : header) sum += c;
    std::snprintf(header + 148, 8, "%06o", sum);  // six digits, NUL, and the space already there
    out.append(header, kBlock);
    out += e.content;
    out.append((kBlock - e.content.size() % kBlock) % kBlock, '\0');
  }
  out.append(2 * kBlock, '\0');
  return out;
}

Status WriteTarGz(const std::string& path, const std::vector<TarEntry>& entries,
                  std::time_t mtime) {
  Result<std::string> tar = TarArchive(entries, mtime);
  if (!tar.ok()) return tar.status();
  const std::string tmp = path + ".tmp";
  const int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return Status::Unavailable(tmp + ": " + std::strerror(errno));
  gzFile gz = gzdopen(fd, "wb9");
  if (gz == nullptr) {
    close(fd);
    return Status::Unavailable(tmp + ": cannot start gzip");
  }
  const std::string& data = tar.value();
  size_t written = 0;
  bool ok = true;
  while (written < data.size() && ok) {
    // gzwrite takes an unsigned int length: write in pieces well below its limit.
    const size_t piece = std::min<size_t>(data.size() - written, size_t{1} << 20);
    ok =
        gzwrite(gz, data.data() + written, static_cast<unsigned>(piece)) == static_cast<int>(piece);
    written += piece;
  }
  ok = (gzclose(gz) == Z_OK) && ok;  // closes fd
  if (!ok) {
    std::remove(tmp.c_str());
    return Status::Unavailable(tmp + ": writing the archive failed");
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) {
    std::remove(tmp.c_str());
    return Status::Unavailable(path + ": " + ec.message());
  }
  return Status::Ok();
}

}  // namespace bg::cmd
