// SockoptReader: a unix socket's options read in one io_uring submission are what
// getsockopt says one by one, for every option crpipe records, set to values other than
// the defaults; and errors of one option stay that option's.
#include <gtest/gtest.h>
#include <linux/filter.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/utsname.h>

#include <cstdio>
#include <fstream>
#include <string>

#include "common/sockopt_reader.h"
#include "collector/kinds/unix_sockopts.h"
#include "common/unique_fd.h"

namespace crpipe::collector {
namespace {

// Socket commands through io_uring: Linux 6.7 with io_uring not disabled by sysctl.
bool kernelHasSocketUringCmd() {
  utsname u{};
  int major = 0, minor = 0;
  if (::uname(&u) != 0 || std::sscanf(u.release, "%d.%d", &major, &minor) != 2) {
    return false;
  }
  std::ifstream f("/proc/sys/kernel/io_uring_disabled");
  int disabled = 0;
  if (f) {
    f >> disabled;
  }
  return (major > 6 || (major == 6 && minor >= 7)) && disabled == 0;
}

struct Pair {
  UniqueFd a, b;
};

Pair pair(int type) {
  int sv[2];
  EXPECT_EQ(::socketpair(AF_UNIX, type | SOCK_CLOEXEC, 0, sv), 0);
  return Pair{UniqueFd(sv[0]), UniqueFd(sv[1])};
}

void setInt(int fd, int opt, int v) {
  ASSERT_EQ(::setsockopt(fd, SOL_SOCKET, opt, &v, sizeof(v)), 0) << "option " << opt;
}

void expectSame(int fd) {
  SockoptReader ring(true), syscalls(false);
  auto viaRing = readUnixSockOpts(fd, ring);
  auto viaSyscalls = readUnixSockOpts(fd, syscalls);
  ASSERT_TRUE(viaRing) << viaRing.error().str();
  ASSERT_TRUE(viaSyscalls) << viaSyscalls.error().str();
  EXPECT_EQ(viaRing->opts.SerializeAsString(), viaSyscalls->opts.SerializeAsString())
      << viaRing->opts.ShortDebugString() << "\n vs " << viaSyscalls->opts.ShortDebugString();
  EXPECT_EQ(viaRing->peekOff, viaSyscalls->peekOff);
  ASSERT_EQ(viaRing->peercred.has_value(), viaSyscalls->peercred.has_value());
  if (viaRing->peercred) {
    EXPECT_EQ(viaRing->peercred->SerializeAsString(), viaSyscalls->peercred->SerializeAsString());
  }
}

TEST(SockoptReader, BatchedWhereTheKernelTakesSocketCommands) {
  SockoptReader r(true);
  EXPECT_EQ(r.batched(), kernelHasSocketUringCmd());
  EXPECT_FALSE(SockoptReader(false).batched());
}

// Puts kernel.io_uring_disabled back, also when the test fails.
class IoUringDisabled {
 public:
  explicit IoUringDisabled(const char* value) {
    std::ifstream in(kPath);
    ok_ = static_cast<bool>(in >> old_);
    if (ok_) {
      std::ofstream out(kPath);
      ok_ = static_cast<bool>(out << value << "\n");
    }
  }
  ~IoUringDisabled() {
    if (!old_.empty()) {
      std::ofstream out(kPath);
      out << old_ << "\n";
    }
  }
  bool ok() const { return ok_; }

 private:
  static constexpr const char* kPath = "/proc/sys/kernel/io_uring_disabled";
  std::string old_;
  bool ok_ = false;
};

TEST(SockoptReader, WithIoUringDisabledItReadsOneByOne) {
  // kernel.io_uring_disabled = 2 (Linux 6.6+) refuses io_uring_setup to everyone, as a
  // hardened host may: the reader must fall back and read the same.
  Pair p = pair(SOCK_DGRAM);
  int fd = p.a.get();
  setInt(fd, SO_PRIORITY, 4);
  setInt(fd, SO_PASSCRED, 1);
  {
    IoUringDisabled off("2");
    ASSERT_TRUE(off.ok()) << "cannot write /proc/sys/kernel/io_uring_disabled (root needed)";
    SockoptReader r(true);
    EXPECT_FALSE(r.batched());
    auto o = readUnixSockOpts(fd, r);
    ASSERT_TRUE(o) << o.error().str();
    EXPECT_EQ(o->opts.so_priority(), 4u);
    EXPECT_TRUE(o->opts.so_passcred());
  }
  expectSame(fd);
}

TEST(SockoptReader, DefaultsReadTheSameBothWays) {
  for (int type : {SOCK_STREAM, SOCK_DGRAM, SOCK_SEQPACKET}) {
    Pair p = pair(type);
    expectSame(p.a.get());
  }
  // Unconnected: no peer credentials.
  UniqueFd lone(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  ASSERT_TRUE(lone.valid());
  expectSame(lone.get());
}

TEST(SockoptReader, EveryOptionSetReadsTheSameBothWays) {
  Pair p = pair(SOCK_STREAM);
  int fd = p.a.get();
  setInt(fd, SO_SNDBUF, 40000);
  setInt(fd, SO_RCVBUF, 50000);
  setInt(fd, SO_PRIORITY, 5);
  setInt(fd, SO_RCVLOWAT, 7);
  setInt(fd, SO_MARK, 0x1234);
  setInt(fd, SO_REUSEADDR, 1);
  setInt(fd, SO_PASSCRED, 1);
  setInt(fd, SO_PASSSEC, 1);
  setInt(fd, SO_KEEPALIVE, 1);
  setInt(fd, SO_OOBINLINE, 1);
  setInt(fd, SO_PEEK_OFF, 3);
  timeval tv{2, 500000};
  ASSERT_EQ(::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)), 0);
  tv = {1, 250000};
  ASSERT_EQ(::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)), 0);
  linger lg{1, 9};
  ASSERT_EQ(::setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)), 0);
  sock_filter code[] = {{BPF_RET | BPF_K, 0, 0, 0xffff}, {BPF_RET | BPF_K, 0, 0, 0}};
  sock_fprog prog{2, code};
  ASSERT_EQ(::setsockopt(fd, SOL_SOCKET, SO_ATTACH_FILTER, &prog, sizeof(prog)), 0);
  expectSame(fd);

  SockoptReader ring(true);
  auto o = readUnixSockOpts(fd, ring);
  ASSERT_TRUE(o) << o.error().str();
  EXPECT_EQ(o->opts.so_priority(), 5u);
  EXPECT_EQ(o->opts.so_mark(), 0x1234u);
  EXPECT_EQ(o->opts.so_rcv_tmo_sec(), 2u);
  EXPECT_EQ(o->opts.so_rcv_tmo_usec(), 500000u);
  EXPECT_EQ(o->opts.so_linger(), 9u);
  EXPECT_EQ(o->opts.so_filter_size(), 2);
  EXPECT_EQ(o->peekOff, 3);
  ASSERT_TRUE(o->peercred);
  EXPECT_EQ(o->peercred->pid(), static_cast<uint32_t>(::getpid()));
}

TEST(SockoptReader, AnErrorIsThatOptionsAlone) {
  // SO_PEEK_OFF on a listening socket is fine, SO_MARK and the rest too; ask for an
  // option the kernel refuses on a unix socket next to ones it answers.
  Pair p = pair(SOCK_STREAM);
  int prio = -1, bogus = 0, type = 0;
  SockoptReader::Opt opts[] = {
      {SO_PRIORITY, &prio, sizeof(prio)},
      {9999, &bogus, sizeof(bogus)},  // no such option: ENOPROTOOPT
      {SO_TYPE, &type, sizeof(type)},
  };
  SockoptReader ring(true);
  ring.read(p.a.get(), opts);
  EXPECT_EQ(opts[0].err, 0);
  EXPECT_EQ(prio, 0);
  EXPECT_EQ(opts[1].err, ENOPROTOOPT);
  EXPECT_EQ(opts[2].err, 0);
  EXPECT_EQ(type, SOCK_STREAM);
  EXPECT_EQ(opts[2].len, sizeof(int));
}

}  // namespace
}  // namespace crpipe::collector
