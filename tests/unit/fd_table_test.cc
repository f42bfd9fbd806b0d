// FdTableReader: a process's fd table read by the BPF iterator is what /proc lists and
// what /proc/PID/fdinfo/N says for each fd: numbers, flags with O_CLOEXEC, position, mount
// id, inode; read from another (stopped) process with pipes, a file at an offset, sockets.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <sched.h>
#include <thread>
#include <map>
#include <string>

#include "collector/fdtable/fd_table.h"
#include "common/proc.h"
#include "common/unique_fd.h"
#include "common/paused_child.h"

namespace crpipe::collector {
namespace {

// The child's table, through a pidfd of it.
Result<std::vector<FdTableReader::Fd>> readOf(const FdTableReader& reader, pid_t child) {
  UniqueFd pidfd(static_cast<int>(::syscall(SYS_pidfd_open, child, 0)));
  if (!pidfd.valid()) {
    return failSys("pidfd_open");
  }
  return reader.read(child, pidfd.get());
}

// The fds the iterator gave are those /proc/PID/fd lists, in the same order.
void expectListedByProc(pid_t pid, const std::vector<FdTableReader::Fd>& table) {
  auto listed = listNumericDir("/proc/" + std::to_string(pid) + "/fd");
  ASSERT_TRUE(listed);
  std::vector<int> got;
  for (const auto& f : table) {
    got.push_back(f.fd);
  }
  EXPECT_EQ(got, *listed);
}

TEST(FdTable, MatchesProcForEveryFd) {
  auto reader = FdTableReader::load();
  ASSERT_TRUE(reader) << reader.error().str();
  char path[] = "/tmp/crpipe-fdtable-XXXXXX";
  int tmp = ::mkstemp(path);
  ASSERT_GE(tmp, 0);
  ::unlink(path);
  ASSERT_EQ(::write(tmp, "0123456789", 10), 10);
  ASSERT_EQ(::lseek(tmp, 7, SEEK_SET), 7);
  // Holes, CLOEXEC on some, O_NONBLOCK on others, a socketpair, a high number.
  PausedChild kid([] {
    for (int i = 0; i < 20; ++i) {
      int p[2];
      if (::pipe2(p, (i % 2 ? O_CLOEXEC : 0) | (i % 3 ? O_NONBLOCK : 0)) != 0) _exit(1);
      if (i % 4 == 1) ::close(p[0]);
    }
    int sv[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) _exit(1);
    if (::dup2(sv[1], 1000) != 1000) _exit(1);
  });
  ::close(tmp);
  ASSERT_TRUE(kid.ready());
  const pid_t child = kid.pid();
  auto table = readOf(**reader, child);
  ASSERT_TRUE(table) << table.error().str();
  expectListedByProc(child, *table);
  for (const auto& f : *table) {
    std::string where = "fd " + std::to_string(f.fd);
    auto text = readProcFile("/proc/" + std::to_string(child) + "/fdinfo/" + std::to_string(f.fd));
    ASSERT_TRUE(text) << where;
    auto want = parseFdInfo(*text);
    ASSERT_TRUE(want) << where;
    EXPECT_EQ(f.info.flags, want->flags) << where;
    EXPECT_EQ(f.info.pos, want->pos) << where;
    EXPECT_EQ(f.info.mntId, want->mntId) << where;
    EXPECT_EQ(f.info.ino, want->ino) << where;
    struct stat st {};
    ASSERT_EQ(::stat(("/proc/" + std::to_string(child) + "/fd/" + std::to_string(f.fd)).c_str(),
                     &st), 0) << where;
    EXPECT_EQ(f.mode, st.st_mode) << where;
    if (S_ISSOCK(st.st_mode)) {
      // For a socket the super block's device is what stat says (a file system such as
      // btrfs or overlayfs may report another for its files: the collector uses the
      // iterator's device for sockets only).
      EXPECT_EQ(f.dev, st.st_dev) << where;
      EXPECT_EQ(f.info.ino, st.st_ino) << where;
    }
  }
  // The file inherited at offset 7 and the CLOEXEC socket at 1000 are among them.
  bool sawOffset = false, sawHigh = false;
  for (const auto& f : *table) {
    sawOffset |= f.info.pos == 7;
    sawHigh |= f.fd == 1000 && (f.info.flags & O_CLOEXEC) == 0;  // dup2 clears CLOEXEC
  }
  EXPECT_TRUE(sawOffset);
  EXPECT_TRUE(sawHigh);
}

TEST(FdTable, AThreadWithATableOfItsOwnIsNotTheProcesss) {
  // The iterator walks every thread with a table of its own; the process's is its
  // leader's, as /proc/PID/fd shows.
  auto reader = FdTableReader::load();
  ASSERT_TRUE(reader) << reader.error().str();
  PausedChild kid([] {
    // A thread unshares its table and opens fds in it; it stays (joined never).
    int ready[2];
    if (::pipe(ready) != 0) _exit(1);
    std::thread([ready] {
      if (::unshare(CLONE_FILES) != 0) _exit(1);
      for (int i = 0; i < 5; ++i) {
        int p[2];
        if (::pipe(p) != 0) _exit(1);
      }
      char c = 1;
      (void)!::write(ready[1], &c, 1);
      for (;;) ::pause();
    }).detach();
    char c;
    if (::read(ready[0], &c, 1) != 1) _exit(1);
  });
  ASSERT_TRUE(kid.ready());
  const pid_t child = kid.pid();
  auto table = readOf(**reader, child);
  ASSERT_TRUE(table) << table.error().str();
  expectListedByProc(child, *table);
}

TEST(FdTable, AGoneProcessIsAnError) {
  auto reader = FdTableReader::load();
  ASSERT_TRUE(reader) << reader.error().str();
  pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    _exit(0);
  }
  UniqueFd pidfd(static_cast<int>(::syscall(SYS_pidfd_open, child, 0)));
  ASSERT_TRUE(pidfd.valid());
  ASSERT_EQ(::waitpid(child, nullptr, 0), child);
  auto table = (*reader)->read(child, pidfd.get());
  ASSERT_FALSE(table);
  EXPECT_NE(table.error().str().find(std::to_string(child)), std::string::npos)
      << table.error().str();
}

}  // namespace
}  // namespace crpipe::collector
