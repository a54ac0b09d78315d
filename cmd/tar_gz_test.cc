#include "cmd/tar_gz.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace bg::cmd {
namespace {

std::string Shell(const std::string& command) {
  std::string out;
  FILE* p = popen(command.c_str(), "r");
  if (p == nullptr) return out;
  char buf[4096];
  size_t n = 0;
  while ((n = fread(buf, 1, sizeof(buf), p)) > 0) out.append(buf, n);
  pclose(p);
  return out;
}

TEST(TarArchive, BlocksAndChecksumAsUstar) {
  auto tar = TarArchive({{"a.json", "{}"}, {"dir/b.log", std::string(600, 'x')}}, 0);
  ASSERT_TRUE(tar.ok());
  // header + 1 block, header + 2 blocks, 2 end blocks
  EXPECT_EQ(tar->size(), 512u * (2 + 3 + 2));
  EXPECT_EQ(tar->substr(257, 5), "ustar");
}

TEST(TarArchive, RefusesNamesTooLongForUstar) {
  EXPECT_FALSE(TarArchive({{std::string(101, 'n'), ""}}, 0).ok());
  EXPECT_FALSE(TarArchive({{"", ""}}, 0).ok());
}

// The archive is read back by the system's tar, which checks every header checksum.
TEST(WriteTarGz, SystemTarReadsItBack) {
  const std::filesystem::path dir =
      std::filesystem::temp_directory_path() / ("tar-gz-test-" + std::to_string(getpid()));
  std::filesystem::create_directories(dir);
  const std::string path = (dir / "bundle.tar.gz").string();
  ASSERT_TRUE(WriteTarGz(path, {{"report.json", "{\"stuck\":true}\n"}, {"logs/x.log", "line\n"}},
                         1700000000)
                  .ok());
  EXPECT_EQ((std::filesystem::status(path).permissions() & std::filesystem::perms::all),
            std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);
  EXPECT_EQ(Shell("tar -tzf " + path), "report.json\nlogs/x.log\n");
  EXPECT_EQ(Shell("tar -xzOf " + path + " report.json"), "{\"stuck\":true}\n");
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace bg::cmd
