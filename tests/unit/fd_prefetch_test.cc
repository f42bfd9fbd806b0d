// FdPrefetcher: a second thread grabs a task's fds ahead of the kinds; they come out in
// order, each exactly what grabFd gives, errors at their own index, and an early stop
// joins the thread and closes what was grabbed but not taken. A kind's read-ahead runs once
// per fd, on whichever thread grabbed it: the taker grabs too instead of waiting.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <any>
#include <atomic>
#include <chrono>
#include <map>
#include <mutex>
#include <thread>
#include <vector>

#include "collector/grab_fd.h"
#include "common/proc.h"
#include "common/unique_fd.h"

namespace crpipe::collector {
namespace {

struct Pipes {
  std::vector<UniqueFd> ends;
  std::vector<int> numbers;
};

// 2n pipe ends of this process, every other one non-blocking.
Pipes makePipes(int n) {
  Pipes p;
  for (int i = 0; i < n; ++i) {
    int fds[2];
    EXPECT_EQ(::pipe2(fds, O_CLOEXEC | (i % 2 == 0 ? O_NONBLOCK : 0)), 0);
    for (int fd : fds) {
      p.ends.emplace_back(fd);
      p.numbers.push_back(fd);
    }
  }
  return p;
}

UniqueFd selfPidfd() { return UniqueFd(static_cast<int>(::syscall(SYS_pidfd_open, ::getpid(), 0))); }

TEST(FdPrefetch, HandsOutEveryFdInOrderAsGrabFdSeesIt) {
  Pipes p = makePipes(100);
  UniqueFd pidfd = selfPidfd();
  ASSERT_TRUE(pidfd.valid());
  auto dirs = openTaskProcDirs(::getpid());
  ASSERT_TRUE(dirs);
  FdPrefetcher ahead(pidfd.get(), *dirs, ::getpid(), p.numbers);
  ASSERT_EQ(ahead.size(), p.numbers.size());
  for (size_t i = 0; i < ahead.size(); ++i) {
    auto f = ahead.take(i);
    ASSERT_TRUE(f) << f.error().str();
    EXPECT_EQ(f->fd, p.numbers[i]);
    struct stat st {};
    ASSERT_EQ(::fstat(p.numbers[i], &st), 0);
    EXPECT_EQ(f->st.st_ino, st.st_ino);
    EXPECT_EQ(f->link, "pipe:[" + std::to_string(st.st_ino) + "]");
    EXPECT_NE(f->fdinfo.flags & O_CLOEXEC, 0u);
    EXPECT_EQ((f->fdinfo.flags & O_NONBLOCK) != 0, (i / 2) % 2 == 0) << "fd " << p.numbers[i];
  }
}

TEST(FdPrefetch, ReadAheadRunsOncePerFdAndTheTakerSharesTheWork) {
  Pipes p = makePipes(100);
  UniqueFd pidfd = selfPidfd();
  auto dirs = openTaskProcDirs(::getpid());
  ASSERT_TRUE(dirs);
  std::mutex mu;
  std::map<int, int> runs;              // fd -> read-aheads
  std::map<std::thread::id, int> byThread;
  auto slowAhead = [&](OpenFile& f, ReadAheadContext&) {
    // Slower than taking: the taker catches up with the thread and must grab fds itself.
    std::this_thread::sleep_for(std::chrono::microseconds(300));
    std::lock_guard lock(mu);
    ++runs[f.fd];
    ++byThread[std::this_thread::get_id()];
    f.ahead = f.fd;
  };
  FdPrefetcher ahead(pidfd.get(), *dirs, ::getpid(), p.numbers, slowAhead);
  for (size_t i = 0; i < ahead.size(); ++i) {
    auto f = ahead.take(i);
    ASSERT_TRUE(f) << f.error().str();
    EXPECT_EQ(f->fd, p.numbers[i]);
    const int* seen = std::any_cast<int>(&f->ahead);
    ASSERT_NE(seen, nullptr) << "fd " << p.numbers[i] << " was not read ahead";
    EXPECT_EQ(*seen, p.numbers[i]);
  }
  std::lock_guard lock(mu);
  EXPECT_EQ(runs.size(), p.numbers.size());
  for (const auto& [fd, n] : runs) {
    EXPECT_EQ(n, 1) << "fd " << fd << " read ahead " << n << " times";
  }
  EXPECT_EQ(byThread.size(), 2u) << "one thread did every read-ahead";
  EXPECT_GT(byThread[std::this_thread::get_id()], 0);
}

TEST(FdPrefetch, AnErrorComesAtItsIndexNamingTheFd) {
  Pipes p = makePipes(40);
  UniqueFd pidfd = selfPidfd();
  auto dirs = openTaskProcDirs(::getpid());
  ASSERT_TRUE(dirs);
  // A number no fd has (a closed one would be taken again by the grabbed duplicates).
  const int gone = 1 << 20;
  p.numbers[30] = gone;
  FdPrefetcher ahead(pidfd.get(), *dirs, ::getpid(), p.numbers);
  for (size_t i = 0; i < 30; ++i) {
    ASSERT_TRUE(ahead.take(i));
  }
  auto f = ahead.take(30);
  ASSERT_FALSE(f);
  EXPECT_NE(f.error().str().find("fd " + std::to_string(gone) + " of pid "), std::string::npos)
      << f.error().str();
  EXPECT_NE(f.error().str().find("pidfd_getfd"), std::string::npos) << f.error().str();
}

TEST(FdPrefetch, StoppingEarlyJoinsAndClosesWhatWasNotTaken) {
  Pipes p = makePipes(200);
  UniqueFd pidfd = selfPidfd();
  auto dirs = openTaskProcDirs(::getpid());
  ASSERT_TRUE(dirs);
  auto before = listNumericDir("/proc/self/fd");
  ASSERT_TRUE(before);
  {
    FdPrefetcher ahead(pidfd.get(), *dirs, ::getpid(), p.numbers);
    ASSERT_TRUE(ahead.take(0));
  }
  auto after = listNumericDir("/proc/self/fd");
  ASSERT_TRUE(after);
  EXPECT_EQ(before->size(), after->size());
}

}  // namespace
}  // namespace crpipe::collector
