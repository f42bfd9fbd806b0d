// crpipe show on a hand-made image directory: JSON as crit prints it, readable socket
// names, raw data as "extra", and the socket graph.
#include <gtest/gtest.h>

#include "coordinator/show_command.h"
#include "coordinator/socket_graph.h"
#include "tests/unit/image_fixture.h"
#include "tests/unit/temp_dir.h"

namespace crpipe {
namespace {

class Show : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(testing::writeSampleImages(dir_.fd())); }
  testing::TempDir dir_;
};

TEST_F(Show, QueueFileExactJson) {
  auto out = showImages(dir_.sub("sk-queues.img"), false);
  ASSERT_TRUE(out) << out.error().str();
  EXPECT_EQ(*out, R"({
    "magic": "SK_QUEUES",
    "entries": [
        {
            "id_for": 4,
            "length": 3,
            "extra": "616263"
        },
        {
            "id_for": 4,
            "length": 4,
            "extra": "0001feff"
        }
    ]
}
)");
}

TEST_F(Show, FilesJsonHasProtoNamesEnumsAndReadableNames) {
  auto out = showImages(dir_.sub("files.img"), false);
  ASSERT_TRUE(out) << out.error().str();
  const std::string& j = *out;
  EXPECT_EQ(j.rfind("{\n    \"magic\": \"FILES\",\n    \"entries\": [", 0), 0u) << j;
  EXPECT_NE(j.find("\"type\": \"UNIXSK\""), std::string::npos);
  EXPECT_NE(j.find("\"ino\": 4711"), std::string::npos);
  EXPECT_NE(j.find("\"so_sndbuf\": 212992"), std::string::npos);
  EXPECT_NE(j.find("\"name\": \"\\u0000abc\\u0000d\""), std::string::npos) << j;
  EXPECT_NE(j.find("\"name\": \"/dev/null\""), std::string::npos);
  EXPECT_NE(j.find("\"peek_off\": -1"), std::string::npos);
  EXPECT_NE(j.find("\"shutdown\": \"NONE\""), std::string::npos);
  // Unset optional fields are not printed, as with crit.
  EXPECT_EQ(j.find("\"mnt_id\""), std::string::npos);
}

TEST_F(Show, DirectoryIsKeyedByFileInventoryFirst) {
  auto out = showImages(dir_.path(), false);
  ASSERT_TRUE(out) << out.error().str();
  EXPECT_EQ(out->rfind("{\n    \"inventory.img\": {\n        \"magic\": \"INVENTORY\"", 0), 0u)
      << *out;
  for (const char* f : {"pstree.img", "files.img", "fdinfo-100.img", "fdinfo-101.img",
                        "pipes-data.img", "sk-queues.img"}) {
    EXPECT_NE(out->find(std::string("\"") + f + "\": {"), std::string::npos) << f;
  }
  EXPECT_NE(out->find("\"extra\": \"68656c6c6f\""), std::string::npos);
  EXPECT_NE(out->find("\"threads\": [\n"), std::string::npos);
}

TEST_F(Show, TextFormat) {
  auto out = showImages(dir_.sub("pipes-data.img"), true);
  ASSERT_TRUE(out) << out.error().str();
  EXPECT_EQ(*out,
            "# pipes-data.img: PIPES_DATA\n"
            "@8 PipeDataEntry\n"
            "  pipe_id: 9000\n"
            "  bytes: 5\n"
            "  extra: 68656c6c6f\n");
}

TEST_F(Show, CorruptFileNamesFileAndOffset) {
  std::string b = testing::slurp(dir_.fd(), "fdinfo-100.img");
  b.resize(b.size() - 3);
  {
    UniqueFd f(::openat(dir_.fd(), "fdinfo-100.img", O_WRONLY | O_TRUNC | O_CLOEXEC));
    ASSERT_TRUE(writeAll(f.get(), b));
  }
  auto out = showImages(dir_.path(), false);
  ASSERT_FALSE(out);
  EXPECT_NE(out.error().str().find("fdinfo-100.img at offset "), std::string::npos)
      << out.error().str();
}

TEST_F(Show, UndecodableEntryNamesFileAndOffset) {
  // A well-framed entry whose payload lacks FdinfoEntry's required fields.
  std::string b = testing::slurp(dir_.fd(), "fdinfo-101.img");
  std::string bad = b.substr(0, 8) + std::string("\x02\x00\x00\x00\x08\x01", 6);
  {
    UniqueFd f(::openat(dir_.fd(), "fdinfo-101.img", O_WRONLY | O_TRUNC | O_CLOEXEC));
    ASSERT_TRUE(writeAll(f.get(), bad));
  }
  auto out = showImages(dir_.sub("fdinfo-101.img"), false);
  ASSERT_FALSE(out);
  EXPECT_NE(out.error().str().find("fdinfo-101.img at offset 8: undecodable "
                                   "crpipe.images.FdinfoEntry"),
            std::string::npos)
      << out.error().str();
}

TEST_F(Show, SocketGraph) {
  auto g = loadSocketGraph(dir_.path());
  ASSERT_TRUE(g) << g.error().str();
  ASSERT_EQ(g->size(), 2u);
  const SocketNode& a = (*g)[0];
  const SocketNode& b = (*g)[1];
  EXPECT_EQ(a.ino, 4711u);
  ASSERT_EQ(a.holders.size(), 1u);
  EXPECT_EQ(a.holders[0].pid, 100u);
  EXPECT_EQ(a.holders[0].fd, 3u);
  EXPECT_EQ(b.holders[0].pid, 101u);
  EXPECT_EQ(b.queuedMessages, 2u);
  EXPECT_EQ(b.queuedBytes, 7u);
  std::string text = renderSocketGraph(*g);
  EXPECT_NE(text.find("@abc\\0d"), std::string::npos) << text;
  EXPECT_NE(text.find("4712 [101/3]"), std::string::npos) << text;
  EXPECT_NE(text.find("2 msgs/7 B"), std::string::npos) << text;
}

}  // namespace
}  // namespace crpipe
