#include "tokend/state_file.h"

#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>

#include "scoped_temp_dir.h"

namespace tokend {
namespace {

namespace fs = std::filesystem;

PersistedToken Token(const std::string& tenant) {
  return {tenant, "tok-" + tenant, "Bearer", 1000, 3601000, "0123456789abcdef"};
}

void WriteFile(const fs::path& p, const std::string& text, mode_t mode = 0600) {
  std::ofstream(p) << text;
  chmod(p.c_str(), mode);
}

TEST(StateFileTest, SaveThenLoadRoundTripsWithMode0600) {
  ScopedTempDir dir;
  StateFile file(dir.File("state.json"));
  ASSERT_EQ(file.Save({Token("a"), Token("b")}), "");
  struct stat st;
  ASSERT_EQ(stat(file.path().c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0600u);
  EXPECT_FALSE(fs::exists(file.path() + ".tmp"));

  StateLoadResult loaded = file.Load();
  EXPECT_EQ(loaded.error, "");
  ASSERT_EQ(loaded.tokens.size(), 2u);
  EXPECT_EQ(loaded.tokens[1].tenant, "b");
  EXPECT_EQ(loaded.tokens[1].access_token, "tok-b");
  EXPECT_EQ(loaded.tokens[1].expires_unix_ms, 3601000);
  EXPECT_EQ(loaded.tokens[1].fingerprint, "0123456789abcdef");
}

TEST(StateFileTest, MissingFileIsNoError) {
  ScopedTempDir dir;
  StateLoadResult loaded = StateFile(dir.File("none.json")).Load();
  EXPECT_EQ(loaded.error, "");
  EXPECT_TRUE(loaded.tokens.empty());
}

TEST(StateFileTest, GroupReadableFileIsRefusedAndLeftAlone) {
  ScopedTempDir dir;
  StateFile file(dir.File("state.json"));
  ASSERT_EQ(file.Save({Token("a")}), "");
  chmod(file.path().c_str(), 0640);
  StateLoadResult loaded = file.Load();
  EXPECT_NE(loaded.error.find("readable by group or others"), std::string::npos);
  EXPECT_TRUE(loaded.tokens.empty());
  EXPECT_TRUE(fs::exists(file.path()));
}

TEST(StateFileTest, CorruptTruncatedOrForeignFilesAreSetAside) {
  for (std::string text : {std::string("{\"version\":1,\"tokens\":[{\"tenant\":"), std::string("garbage"),
                           std::string("{\"version\":99,\"tokens\":[]}"),
                           std::string("{\"version\":1,\"tokens\":[{\"tenant\":\"a\"}]}"),
                           std::string("")}) {
    ScopedTempDir dir;
    fs::path p = dir.File("state.json");
    WriteFile(p, text);
    StateLoadResult loaded = StateFile(p.string()).Load();
    EXPECT_NE(loaded.error, "") << text;
    EXPECT_TRUE(loaded.tokens.empty()) << text;
    EXPECT_TRUE(loaded.set_aside) << text;
    EXPECT_FALSE(fs::exists(p)) << text;
  }
}

TEST(StateFileTest, SaveReplacesAtomically) {
  ScopedTempDir dir;
  StateFile file(dir.File("state.json"));
  ASSERT_EQ(file.Save({Token("a")}), "");
  ASSERT_EQ(file.Save({Token("b")}), "");
  StateLoadResult loaded = file.Load();
  ASSERT_EQ(loaded.tokens.size(), 1u);
  EXPECT_EQ(loaded.tokens[0].tenant, "b");
}

TEST(StateFileTest, SaveIntoMissingDirectoryIsAnError) {
  StateFile file("/nonexistent-dir-for-tokend/state.json");
  EXPECT_NE(file.Save({Token("a")}), "");
}

}  // namespace
}  // namespace tokend
