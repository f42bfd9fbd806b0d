// Pages named instead of sent (ImagePageRefs, `crpipe run dump -D`): the serializer's
// PageCopier reads them from the task (here: this test process) into the image file at
// the offsets the stream order gives, on several threads; pages sent inline after them
// land after them; a range that cannot be read fails with the pid, the address and the
// file; a serializer not started with --page-refs refuses such a stream.
#include <gtest/gtest.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/ptrace.h>
#include <sys/wait.h>
#include <signal.h>
#include <unistd.h>

#include <cstring>
#include <string>
#include <vector>

#include "common/image_format.h"
#include "common/image_stream.h"
#include "common/page_copier.h"
#include "common/stage_stream.h"
#include "common/unique_fd.h"
#include "tests/unit/temp_dir.h"

namespace crpipe {
namespace {

constexpr size_t kPage = 4096;

// Anonymous pages of this process filled with a pattern that differs page by page.
struct Pages {
  char* p = nullptr;
  size_t len = 0;
  explicit Pages(size_t n) : len(n * kPage) {
    p = static_cast<char*>(::mmap(nullptr, len, PROT_READ | PROT_WRITE,
                                  MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
    for (size_t i = 0; i < len; ++i) {
      p[i] = static_cast<char>((i / kPage) * 7 + i % 251);
    }
  }
  ~Pages() { ::munmap(p, len); }
  iovec range(size_t first, size_t n) const { return {p + first * kPage, n * kPage}; }
  std::string bytes(size_t first, size_t n) const {
    return std::string(p + first * kPage, n * kPage);
  }
};

std::string fileBytes(int fd) {
  ::lseek(fd, 0, SEEK_SET);
  auto b = readAll(fd);
  EXPECT_TRUE(b);
  return b ? *b : std::string();
}

TEST(PageRefs, CopierWritesEveryRangeAtItsOffsetOnSeveralThreads) {
  Pages mem(700);  // more than one job (1 MiB) per message
  UniqueFd file(::memfd_create("pages", MFD_CLOEXEC));
  PageCopier copier(2);
  // Two messages: pages 600..699 then 0..9, 300..599 (out of address order, as a task's
  // mappings can be), at the offsets they follow each other at in the file.
  ASSERT_TRUE(copier.add(::getpid(), {mem.range(600, 100)}, file.get(), 0, "f", "here"));
  ASSERT_TRUE(copier.add(::getpid(), {mem.range(0, 10), mem.range(300, 300)}, file.get(),
                         100 * kPage, "f", "here"));
  auto st = copier.wait();
  ASSERT_TRUE(st) << st.error().str();
  std::string want = mem.bytes(600, 100) + mem.bytes(0, 10) + mem.bytes(300, 300);
  EXPECT_TRUE(fileBytes(file.get()) == want);
}

TEST(PageRefs, AnUnreadableRangeNamesThePidTheAddressAndTheFile) {
  Pages mem(4);
  // A hole: the third page is unmapped.
  ASSERT_EQ(::munmap(mem.p + 2 * kPage, kPage), 0);
  UniqueFd file(::memfd_create("pages", MFD_CLOEXEC));
  PageCopier copier(2);
  ASSERT_TRUE(copier.add(::getpid(), {mem.range(0, 4)}, file.get(), 0, "image pages-7.img",
                         "stream at offset 123"));
  auto st = copier.wait();
  ASSERT_FALSE(st);
  const std::string msg = st.error().str();
  char addr[32];
  snprintf(addr, sizeof(addr), "0x%llx",
           static_cast<unsigned long long>(reinterpret_cast<uintptr_t>(mem.p + 2 * kPage)));
  EXPECT_NE(msg.find("pid " + std::to_string(::getpid())), std::string::npos) << msg;
  EXPECT_NE(msg.find(addr), std::string::npos) << msg;
  EXPECT_NE(msg.find("pages-7.img"), std::string::npos) << msg;
  EXPECT_NE(msg.find("stream at offset 123"), std::string::npos) << msg;
  // Later work is refused at once: the dump has failed.
  EXPECT_FALSE(copier.add(::getpid(), {mem.range(0, 1)}, file.get(), 0, "f", "w"));
  // (the unmapped page is mapped again by ~Pages' munmap of the whole range: harmless)
}

// A child forked after the pages were filled (so it has the same bytes at the same
// addresses), optionally frozen the way the collector freezes a task (PTRACE_SEIZE +
// PTRACE_INTERRUPT: a ptrace stop). Killed and reaped when it goes.
struct Child {
  pid_t pid = -1;
  explicit Child(bool frozen) {
    pid = ::fork();
    if (pid == 0) {
      for (;;) {
        ::pause();
      }
    }
    if (frozen) {
      EXPECT_EQ(::ptrace(PTRACE_SEIZE, pid, nullptr, nullptr), 0);
      EXPECT_EQ(::ptrace(PTRACE_INTERRUPT, pid, nullptr, nullptr), 0);
      int status = 0;
      EXPECT_EQ(::waitpid(pid, &status, __WALL), pid);
    }
  }
  ~Child() {
    ::kill(pid, SIGKILL);
    int status = 0;
    ::waitpid(pid, &status, __WALL);
  }
};

TEST(PageRefs, ACopierGoneDropsWhatItHadNotStarted) {
  // A failed dump destroys the copier: queued copies are dropped, not run (the tree may be
  // running again). 128 jobs of 1 MiB; at most the two in flight and a few taken before
  // the destructor got the lock are written.
  Pages mem(256);
  UniqueFd file(::memfd_create("pages", MFD_CLOEXEC));
  {
    PageCopier copier(2);
    for (int i = 0; i < 128; ++i) {
      ASSERT_TRUE(copier.add(::getpid(), {mem.range(0, 256)}, file.get(),
                             static_cast<uint64_t>(i) << 20, "f", "w"));
    }
  }
  struct stat st {};
  ASSERT_EQ(::fstat(file.get(), &st), 0);
  EXPECT_LT(st.st_size, 64 << 20) << "the destructor ran the queue";
}

// A stream with pages-1.img: `refs` of `pid` named, then `inlinePages` sent; the task's
// pagemap image is opened first unless `withPagemap` is false.
std::string streamOf(pid_t pid, std::vector<iovec> refs, std::string_view inlinePages,
                     bool withPagemap = true) {
  UniqueFd fd(::memfd_create("stream", MFD_CLOEXEC));
  {
    StageWriter w(fd.get());
    ImageEmitter out(w);
    if (withPagemap) {
      EXPECT_TRUE(out.image("pagemap-" + std::to_string(pid) + ".img"));
    }
    auto img = out.image("pages-1.img");
    EXPECT_TRUE(img);
    EXPECT_TRUE(out.pageRefs(*img, pid, refs));
    EXPECT_TRUE(out.pages(*img, inlinePages));
    EXPECT_TRUE(out.end());
    EXPECT_TRUE(w.flush());
  }
  return fileBytes(fd.get());
}

Status sinkAll(const std::string& stream, int dirFd, PageCopier* copier) {
  UniqueFd fd(::memfd_create("stream", MFD_CLOEXEC));
  CRPIPE_TRY(writeAll(fd.get(), stream));
  ::lseek(fd.get(), 0, SEEK_SET);
  StageReader r(fd.get(), "test-stream");
  ImageSink sink(dirFd);
  sink.readPagesWith(copier);
  for (;;) {
    auto m = r.next();
    if (!m) {
      return fail(std::move(m).error());
    }
    if (!*m) {
      return failMsg("stream ended before End");
    }
    std::string where = "test-stream at offset " + std::to_string(r.offset());
    auto done = sink.consume(**m, where, r);
    if (!done) {
      return fail(std::move(done).error());
    }
    if (*done) {
      return {};
    }
  }
}

TEST(PageRefs, NamedPagesAndSentPagesLandInStreamOrder) {
  Pages mem(300);
  Child task(/*frozen=*/true);
  std::string sent(8 * kPage, 'S');
  std::string stream = streamOf(task.pid, {mem.range(10, 290), mem.range(0, 3)}, sent);
  testing::TempDir dir;
  PageCopier copier(2);
  auto st = sinkAll(stream, dir.fd(), &copier);
  ASSERT_TRUE(st) << st.error().str();
  UniqueFd f(::openat(dir.fd(), "pages-1.img", O_RDONLY | O_CLOEXEC));
  ASSERT_TRUE(f.valid());
  EXPECT_TRUE(fileBytes(f.get()) == mem.bytes(10, 290) + mem.bytes(0, 3) + sent);
}

TEST(PageRefs, PagesOfTasksNotFrozenOrNotDumpedCommitNothing) {
  struct Case {
    bool frozen, withPagemap;
    const char* want;  // after "pid N" / the pid's pagemap name
  };
  // A task no longer frozen when the copy ends: its collector died (the kernel released
  // it) while the pages were being read, so they may have changed. A task whose pagemap
  // image the stream never opened: not one the stream dumps.
  for (const Case& c : {Case{false, true, " was released"}, Case{true, false, ".img"}}) {
    Pages mem(4);
    Child task(c.frozen);
    std::string stream = streamOf(task.pid, {mem.range(0, 4)}, "", c.withPagemap);
    testing::TempDir dir;
    PageCopier copier(2);
    auto st = sinkAll(stream, dir.fd(), &copier);
    ASSERT_FALSE(st);
    std::string want = (c.frozen ? "pagemap-" : "pid ") + std::to_string(task.pid) + c.want;
    EXPECT_NE(st.error().str().find(want), std::string::npos) << st.error().str();
  }
}

TEST(PageRefs, AWriterWithoutPageRefsRefusesTheStream) {
  Pages mem(2);
  std::string stream = streamOf(::getpid(), {mem.range(0, 2)}, "");
  testing::TempDir dir;
  auto st = sinkAll(stream, dir.fd(), nullptr);
  ASSERT_FALSE(st);
  EXPECT_NE(st.error().str().find("--page-refs"), std::string::npos) << st.error().str();
  EXPECT_NE(st.error().str().find("test-stream at offset"), std::string::npos) << st.error().str();
}

}  // namespace
}  // namespace crpipe
