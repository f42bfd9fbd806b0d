// Images -> stream -> images is byte-identical, and the serializer's write side commits
// only a whole stream, leaving an earlier dump alone otherwise.
#include <dirent.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <set>

#include "common/image_stream.h"
#include "serializer/commands.h"
#include "common/control_sender.h"
#include "tests/unit/image_fixture.h"
#include "tests/unit/temp_dir.h"

namespace crpipe {
namespace {

std::set<std::string> listing(const std::string& path) {
  std::set<std::string> out;
  DIR* d = ::opendir(path.c_str());
  if (d == nullptr) {
    return out;
  }
  while (dirent* de = ::readdir(d)) {
    std::string n = de->d_name;
    if (n != "." && n != "..") {
      out.insert(n);
    }
  }
  ::closedir(d);
  return out;
}

class RoundTrip : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(testing::writeSampleImages(src_.fd()));
    ASSERT_TRUE(runRead({src_.path(), {stream(), -1}}, log_));
  }
  std::string stream() const { return work_.sub("dump.stream"); }
  Status write(const std::string& streamPath) {
    ControlSender ctl(-1, log_);
    return runWrite({dst_.path(), {streamPath, -1}, -1}, ctl, log_);
  }
  void truncateStream(uint64_t keep) {
    ASSERT_EQ(::truncate(stream().c_str(), static_cast<off_t>(keep)), 0);
  }
  uint64_t streamSize() {
    auto s = testing::slurp(work_.fd(), "dump.stream");
    return s.size();
  }

  Log log_;
  testing::TempDir src_, dst_, work_;
};

TEST_F(RoundTrip, ByteIdentical) {
  auto st = write(stream());
  ASSERT_TRUE(st) << st.error().str();
  auto names = listing(src_.path());
  EXPECT_EQ(names, listing(dst_.path()));
  EXPECT_EQ(names.size(), 7u);
  for (const auto& n : names) {
    EXPECT_EQ(testing::slurp(src_.fd(), n), testing::slurp(dst_.fd(), n)) << n;
  }
}

TEST_F(RoundTrip, SecondPassGivesSameStream) {
  ASSERT_TRUE(write(stream()));
  std::string again = work_.sub("again.stream");
  ASSERT_TRUE(runRead({dst_.path(), {again, -1}}, log_));
  EXPECT_EQ(testing::slurp(work_.fd(), "dump.stream"), testing::slurp(work_.fd(), "again.stream"));
}

TEST_F(RoundTrip, TruncatedStreamWritesNothing) {
  // An earlier dump is in the directory; a broken stream must leave it exactly as it was.
  ASSERT_TRUE(testing::writeSampleImages(dst_.fd()));
  ASSERT_EQ(::unlinkat(dst_.fd(), "sk-queues.img", 0), 0);
  auto before = listing(dst_.path());
  std::string inv = testing::slurp(dst_.fd(), "inventory.img");
  for (uint64_t keep : {streamSize() - 1, streamSize() / 2, uint64_t{9}}) {
    ASSERT_TRUE(runRead({src_.path(), {stream(), -1}}, log_));
    truncateStream(keep);
    auto st = write(stream());
    ASSERT_FALSE(st) << "accepted a stream cut at " << keep;
    EXPECT_NE(st.error().str().find(stream()), std::string::npos) << st.error().str();
    EXPECT_EQ(listing(dst_.path()), before) << "cut at " << keep;
    EXPECT_EQ(testing::slurp(dst_.fd(), "inventory.img"), inv);
  }
}

TEST_F(RoundTrip, UpstreamFailureWritesNothing) {
  // Replace End with a Failure: what a collector sends when it gives up.
  std::string bytes = testing::slurp(work_.fd(), "dump.stream");
  UniqueFd in(::open(stream().c_str(), O_RDONLY | O_CLOEXEC));
  StageReader r(in.get(), "s");
  uint64_t endOffset = 0;
  for (;;) {
    auto m = r.next();
    ASSERT_TRUE(m && *m);
    if ((*m)->isEnd()) {
      endOffset = r.offset();
      break;
    }
  }
  std::string failed = work_.sub("failed.stream");
  UniqueFd out(::open(failed.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
  ASSERT_TRUE(writeAll(out.get(), std::string_view(bytes).substr(0, endOffset)));
  {
    StageWriter w(out.get());
    capnp::MallocMessageBuilder mb;
    mb.initRoot<proto::Message>().initFailure().setMessage("pid 7 fd 3: unix socket 99: peer outside");
    ASSERT_TRUE(w.write(mb));
  }
  out.reset();
  auto st = write(failed);
  ASSERT_FALSE(st);
  EXPECT_NE(st.error().str().find("pid 7 fd 3: unix socket 99: peer outside"), std::string::npos);
  EXPECT_TRUE(listing(dst_.path()).empty());
}

TEST_F(RoundTrip, CommitReplacesEarlierDumpAndDropsStaleImages) {
  ASSERT_TRUE(testing::writeSampleImages(dst_.fd()));
  {
    UniqueFd f(::openat(dst_.fd(), "fdinfo-555.img", O_WRONLY | O_CREAT | O_CLOEXEC, 0600));
  }
  UniqueFd keep(::openat(dst_.fd(), "notes.txt", O_WRONLY | O_CREAT | O_CLOEXEC, 0600));
  ASSERT_TRUE(write(stream()));
  auto names = listing(dst_.path());
  EXPECT_EQ(names.count("fdinfo-555.img"), 0u);
  EXPECT_EQ(names.count("notes.txt"), 1u);
  for (const auto& n : names) {
    EXPECT_EQ(n.find(".crpipe-partial"), std::string::npos);
  }
}

// Raw bytes that differ page by page, so a page written in the wrong place shows.
std::string pageBytes(size_t n) {
  std::string s(n, '\0');
  for (size_t i = 0; i < n; ++i) {
    s[i] = static_cast<char>(i * 13 + i / 4096);
  }
  return s;
}

TEST_F(RoundTrip, PagesImageByteIdenticalThroughPagesMessages) {
  // 5 MiB + a bit: one pages message, received through the mapped image file, plus a tail
  // that is not a whole page.
  const std::string pages = pageBytes((5 << 20) + 123);
  ASSERT_TRUE(writeAll(UniqueFd(::openat(src_.fd(), "pages-7.img",
                                         O_WRONLY | O_CREAT | O_CLOEXEC, 0600)).get(),
                       pages));
  ASSERT_TRUE(runRead({src_.path(), {stream(), -1}}, log_));
  // The page contents travel as ImagePages, outside capnp framing.
  {
    UniqueFd in(::open(stream().c_str(), O_RDONLY | O_CLOEXEC));
    StageReader r(in.get(), "s");
    uint64_t pagesBytes = 0;
    for (;;) {
      auto m = r.next();
      ASSERT_TRUE(m && *m);
      if ((*m)->isPages()) {
        pagesBytes += (*m)->getPages().getLength();
      }
      if ((*m)->isEnd()) {
        break;
      }
    }
    EXPECT_EQ(pagesBytes, pages.size());
  }
  auto st = write(stream());
  ASSERT_TRUE(st) << st.error().str();
  auto names = listing(src_.path());
  EXPECT_EQ(names, listing(dst_.path()));
  for (const auto& n : names) {
    EXPECT_EQ(testing::slurp(src_.fd(), n), testing::slurp(dst_.fd(), n)) << n;
  }
}

TEST_F(RoundTrip, StreamCutInsidePagesWritesNothing) {
  const std::string pages = pageBytes(3 << 20);
  ASSERT_TRUE(writeAll(UniqueFd(::openat(src_.fd(), "pages-1.img",
                                         O_WRONLY | O_CREAT | O_CLOEXEC, 0600)).get(),
                       pages));
  ASSERT_TRUE(runRead({src_.path(), {stream(), -1}}, log_));
  // Only a few small images come before pages-1.img: a cut a little after the stream's
  // first MiB falls inside its payload.
  truncateStream((1 << 20) + 4321);
  auto st = write(stream());
  ASSERT_FALSE(st);
  EXPECT_NE(st.error().str().find("inside the payload"), std::string::npos) << st.error().str();
  EXPECT_TRUE(listing(dst_.path()).empty());
}

}  // namespace
}  // namespace crpipe
