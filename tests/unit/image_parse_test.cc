// Image files: every truncated or inconsistent file is refused naming file and offset.
#include <gtest/gtest.h>

#include "common/image_format.h"
#include "protos/fdinfo.pb.h"
#include "protos/pipe.pb.h"
#include "tests/unit/image_fixture.h"
#include "tests/unit/temp_dir.h"

namespace crpipe {
namespace {

std::string sample(const std::string& name) {
  testing::TempDir dir;
  EXPECT_TRUE(testing::writeSampleImages(dir.fd()));
  return testing::slurp(dir.fd(), name);
}

void expectError(const std::string& name, std::string bytes, const std::string& needle) {
  auto f = ImageFile::fromBytes(name, std::move(bytes));
  ASSERT_FALSE(f) << name << " was accepted";
  EXPECT_NE(f.error().message().find(needle), std::string::npos) << f.error().message();
}

TEST(ImageParse, SampleFilesParse) {
  testing::TempDir dir;
  ASSERT_TRUE(testing::writeSampleImages(dir.fd()));
  auto files = ImageFile::load(dir.fd(), "files.img");
  ASSERT_TRUE(files) << files.error().str();
  EXPECT_EQ(files->pieces().size(), 4u);
  EXPECT_EQ(files->pieces()[0].offset, 8u);
  auto pd = ImageFile::load(dir.fd(), "pipes-data.img");
  ASSERT_TRUE(pd);
  ASSERT_EQ(pd->pieces().size(), 2u);
  EXPECT_EQ(pd->pieces()[1].type, ImagePiece::Type::Raw);
  EXPECT_EQ(pd->pieces()[1].data, "hello");
}

TEST(ImageParse, EmptyFileHasNoMagic) { expectError("files.img", "", "files.img at offset 0"); }

TEST(ImageParse, HalfMagic) {
  expectError("files.img", sample("files.img").substr(0, 6), "files.img at offset 6");
}

TEST(ImageParse, UnknownMagic) {
  std::string b = sample("files.img");
  b[4] ^= 0x55;
  expectError("files.img", b, "files.img at offset 0: unknown image magic");
}

TEST(ImageParse, MagicOfAnotherKind) {
  expectError("files.img", sample("pstree.img"), "magic does not match the file name");
}

TEST(ImageParse, TruncatedLengthWord) {
  std::string b = sample("files.img");
  auto full = ImageFile::fromBytes("files.img", b);
  ASSERT_TRUE(full);
  uint64_t last = full->pieces().back().offset;
  expectError("files.img", b.substr(0, last + 2),
              "files.img at offset " + std::to_string(last) + ": truncated entry length");
}

TEST(ImageParse, EntryRunsPastEnd) {
  std::string b = sample("files.img");
  expectError("files.img", b.substr(0, b.size() - 1), "runs past the end of the file");
}

TEST(ImageParse, TrailingDataMissing) {
  std::string b = sample("pipes-data.img");
  // Entry at 8, its payload, then 5 bytes of data; drop two of them.
  expectError("pipes-data.img", b.substr(0, b.size() - 2), "announces 5 bytes of data");
}

TEST(ImageParse, UndecodableTrailingEntry) {
  std::string b = sample("sk-queues.img");
  // Turn the first entry's payload into an invalid protobuf (field 0 is illegal).
  b[12] = 0;
  expectError("sk-queues.img", b, "sk-queues.img at offset 8");
}

TEST(ImageParse, RawImageIsOnePiece) {
  auto f = ImageFile::fromBytes("pages-1.img", std::string(4096, 'p'));
  ASSERT_TRUE(f);
  ASSERT_EQ(f->pieces().size(), 1u);
  EXPECT_EQ(f->pieces()[0].data.size(), 4096u);
}

TEST(ImageParse, LoadNamesMissingFile) {
  testing::TempDir dir;
  auto f = ImageFile::load(dir.fd(), "files.img");
  ASSERT_FALSE(f);
  EXPECT_NE(f.error().str().find("files.img"), std::string::npos);
}

}  // namespace
}  // namespace crpipe
