// The restore's page fill: every run lands at its address with its bytes, whether the
// fill is one call or split between two threads (at a page inside a run).
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include <string>

#include "coordinator/inject/page_fill.h"

namespace crpipe::inject {
namespace {

constexpr size_t kPage = 4096;

// A child that holds a copy of this process's address space and waits to be killed.
class Child {
 public:
  Child() {
    pid_ = ::fork();
    if (pid_ == 0) {
      for (;;) {
        ::pause();
      }
    }
  }
  ~Child() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
  }
  pid_t pid() const { return pid_; }

 private:
  pid_t pid_ = -1;
};

std::string pattern(size_t n) {
  std::string s(n, '\0');
  for (size_t i = 0; i < n; ++i) {
    s[i] = static_cast<char>(i * 31 + i / kPage);
  }
  return s;
}

std::string readChild(pid_t pid, uint64_t addr, size_t len) {
  std::string out(len, '\0');
  iovec local{out.data(), len}, remote{reinterpret_cast<void*>(addr), len};
  EXPECT_EQ(::process_vm_readv(pid, &local, 1, &remote, 1, 0), static_cast<ssize_t>(len));
  return out;
}

void fillAndCheck(bool split) {
  // Three runs in one mapping with gaps between them: 3 MiB, one page, 2 MiB + 3 pages.
  const size_t sizes[3] = {3 << 20, kPage, (2 << 20) + 3 * kPage};
  const size_t gap = 5 * kPage;
  size_t span = sizes[0] + sizes[1] + sizes[2] + 3 * gap;
  char* base = static_cast<char*>(::mmap(nullptr, span, PROT_READ | PROT_WRITE,
                                         MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
  ASSERT_NE(base, MAP_FAILED);
  Child child;
  ASSERT_GT(child.pid(), 0);
  const std::string data = pattern(sizes[0] + sizes[1] + sizes[2]);
  PageRuns runs;
  uint64_t addr = reinterpret_cast<uint64_t>(base) + gap;
  for (size_t s : sizes) {
    auto& e = runs.entries.emplace_back();
    e.set_vaddr(addr);
    e.set_nr_pages(s / kPage);
    addr += s + gap;
  }
  runs.pages = data;
  uint64_t bytes = 0;
  auto st = fillPages(child.pid(), runs, &bytes, split);
  ASSERT_TRUE(st) << st.error().str();
  EXPECT_EQ(bytes, data.size());
  size_t off = 0;
  for (size_t i = 0; i < 3; ++i) {
    uint64_t at = runs.entries[i].vaddr();
    EXPECT_TRUE(readChild(child.pid(), at, sizes[i]) == data.substr(off, sizes[i])) << "run " << i;
    // The gap before each run stays untouched (zero).
    EXPECT_EQ(readChild(child.pid(), at - kPage, kPage), std::string(kPage, '\0')) << "gap " << i;
    off += sizes[i];
  }
  ::munmap(base, span);
}

TEST(PageFill, OneThread) { fillAndCheck(false); }
TEST(PageFill, SplitBetweenTwoThreads) { fillAndCheck(true); }

TEST(PageFill, ARunOutsideAnyMappingNamesItsAddress) {
  Child child;
  const std::string data = pattern(kPage);
  PageRuns runs;
  auto& e = runs.entries.emplace_back();
  e.set_vaddr(0x10000);  // nothing is mapped this low
  e.set_nr_pages(1);
  runs.pages = data;
  uint64_t bytes = 0;
  auto st = fillPages(child.pid(), runs, &bytes, true);
  ASSERT_FALSE(st);
  EXPECT_NE(st.error().str().find("0x10000"), std::string::npos) << st.error().str();
}

}  // namespace
}  // namespace crpipe::inject
