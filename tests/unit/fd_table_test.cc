// FdTableReader: a process's fd table read by the BPF iterator is what /proc lists and
// what /proc/PID/fdinfo/N says for each fd: numbers, flags with O_CLOEXEC, position, mount
// id, inode; read from another (stopped) process with pipes, a file at an offset, sockets.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <cstring>
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

// What the iterator reads of a socket besides fdinfo: the family and state, a unix
// socket's options, its receive queue counted (skbs and unread bytes), the owner, and
// whether this fd is the file's only reference (no dup, no other task, not in flight).
TEST(FdTable, SocketsOwnersQueuesAndSoleReferences) {
  auto reader = FdTableReader::load();
  ASSERT_TRUE(reader) << reader.error().str();
  PausedChild kid([] {
    int s[2], d[2], f[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM, 0, s) != 0 || ::dup2(s[0], 100) != 100 ||
        ::dup2(s[1], 101) != 101 || ::dup2(s[1], 102) != 102) _exit(1);
    ::close(s[0]);
    ::close(s[1]);
    // 100: alone, two sends queued (5 bytes) with credentials (SO_PASSCRED on the
    // receiver), priority 5, F_SETSIG 10 without an owner.
    int on = 1;
    if (::setsockopt(100, SOL_SOCKET, SO_PASSCRED, &on, sizeof(on)) != 0) _exit(1);
    if (::send(101, "abc", 3, 0) != 3 || ::send(101, "de", 2, 0) != 2) _exit(1);
    int prio = 5;
    if (::setsockopt(100, SOL_SOCKET, SO_PRIORITY, &prio, sizeof(prio)) != 0) _exit(1);
    if (::fcntl(100, F_SETSIG, 10) != 0) _exit(1);
    // 101 and 102: one file, two fds; an owner pid set.
    if (::fcntl(101, F_SETOWN, ::getpid()) != 0) _exit(1);
    // 103: datagrams, one of them empty.
    if (::socketpair(AF_UNIX, SOCK_DGRAM, 0, d) != 0 || ::dup2(d[0], 103) != 103 ||
        ::dup2(d[1], 104) != 104) _exit(1);
    ::close(d[0]);
    ::close(d[1]);
    if (::send(104, "xyz", 3, 0) != 3 || ::send(104, "", 0, 0) != 0) _exit(1);
    // 105: also queued in flight (SCM_RIGHTS on 106 → 107), so not its fd's alone.
    if (::socketpair(AF_UNIX, SOCK_STREAM, 0, f) != 0 || ::dup2(f[0], 106) != 106 ||
        ::dup2(f[1], 107) != 107) _exit(1);
    ::close(f[0]);
    ::close(f[1]);
    int lone[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM, 0, lone) != 0 || ::dup2(lone[0], 105) != 105) _exit(1);
    ::close(lone[0]);
    char one = 'r';
    iovec iov{&one, 1};
    alignas(cmsghdr) char ctl[CMSG_SPACE(sizeof(int))] = {};
    msghdr mh{};
    mh.msg_iov = &iov;
    mh.msg_iovlen = 1;
    mh.msg_control = ctl;
    mh.msg_controllen = sizeof(ctl);
    cmsghdr* c = CMSG_FIRSTHDR(&mh);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    int passed = 105;
    std::memcpy(CMSG_DATA(c), &passed, sizeof(int));
    if (::sendmsg(107, &mh, 0) != 1) _exit(1);
    // 109: 16 skbs queued (the most the iterator counts), 111: 17 (left uncounted).
    int g[2], h[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM, 0, g) != 0 || ::dup2(g[0], 109) != 109 ||
        ::dup2(g[1], 110) != 110 || ::socketpair(AF_UNIX, SOCK_STREAM, 0, h) != 0 ||
        ::dup2(h[0], 111) != 111 || ::dup2(h[1], 112) != 112) _exit(1);
    ::close(g[0]);
    ::close(g[1]);
    ::close(h[0]);
    ::close(h[1]);
    for (int i = 0; i < 17; ++i) {
      if ((i < 16 && ::send(110, "x", 1, 0) != 1) || ::send(112, "y", 1, 0) != 1) _exit(1);
    }
    // 108: a listener.
    int l = ::socket(AF_UNIX, SOCK_STREAM, 0);
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::snprintf(a.sun_path + 1, sizeof(a.sun_path) - 1, "crpipe-fdt-%d", ::getpid());
    if (l < 0 || ::bind(l, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0 ||
        ::listen(l, 4) != 0 || ::dup2(l, 108) != 108) _exit(1);
    ::close(l);
  });
  ASSERT_TRUE(kid.ready());
  auto table = readOf(**reader, kid.pid());
  ASSERT_TRUE(table) << table.error().str();
  std::map<int, FdTableReader::Fd> by;
  for (const auto& f : *table) {
    by[f.fd] = f;
  }
  for (int fd = 100; fd <= 112; ++fd) {
    ASSERT_EQ(by.count(fd), 1u) << fd;
    EXPECT_EQ(by[fd].family, AF_UNIX) << fd;
    ASSERT_TRUE(by[fd].usk) << fd;
    EXPECT_EQ(by[fd].usk->ino, static_cast<uint32_t>(by[fd].info.ino)) << fd;
  }
  const auto& alone = by[100];
  EXPECT_TRUE(alone.sole);
  EXPECT_EQ(alone.state, 1);  // TCP_ESTABLISHED
  EXPECT_EQ(alone.usk->sk_type, static_cast<uint32_t>(SOCK_STREAM));
  EXPECT_EQ(alone.usk->priority, 5u);
  EXPECT_EQ(alone.queuedSkbs, std::optional<uint32_t>(2));
  EXPECT_EQ(alone.queuedBytes, std::optional<uint32_t>(5));
  EXPECT_FALSE(alone.ownerPid);
  EXPECT_EQ(alone.ownerSignum, 10u);
  // Both sends came from the child, without files: one sender, as SO_PASSCRED tells it
  // (the pid as this process's namespace sees it).
  ASSERT_TRUE(alone.queuedFrom);
  EXPECT_EQ(alone.queuedFrom->pid, kid.pid());
  EXPECT_EQ(alone.queuedFrom->uid, ::getuid());
  EXPECT_EQ(alone.queuedFrom->gid, ::getgid());
  for (int fd : {101, 102}) {
    EXPECT_FALSE(by[fd].sole) << fd;
    EXPECT_TRUE(by[fd].ownerPid) << fd;
    EXPECT_EQ(by[fd].queuedSkbs, std::optional<uint32_t>(0)) << fd;
  }
  EXPECT_TRUE(by[103].sole);
  EXPECT_EQ(by[103].usk->sk_type, static_cast<uint32_t>(SOCK_DGRAM));
  EXPECT_EQ(by[103].queuedSkbs, std::optional<uint32_t>(2));
  EXPECT_EQ(by[103].queuedBytes, std::optional<uint32_t>(3));
  EXPECT_FALSE(by[105].sole);  // in flight too
  EXPECT_TRUE(by[106].sole);
  EXPECT_EQ(by[106].queuedSkbs, std::optional<uint32_t>(1));
  EXPECT_FALSE(by[106].queuedFrom);  // its one skb carries a file
  EXPECT_EQ(by[108].state, 10);  // TCP_LISTEN
  EXPECT_FALSE(by[108].queuedSkbs);
  EXPECT_EQ(by[109].queuedSkbs, std::optional<uint32_t>(16));
  EXPECT_EQ(by[109].queuedBytes, std::optional<uint32_t>(16));
  EXPECT_FALSE(by[111].queuedSkbs);  // longer than the iterator walks: peeked the usual way
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
