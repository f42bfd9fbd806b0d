#include "coordinator/check_command.h"

#include <fcntl.h>
#include <linux/kcmp.h>
#include <linux/netlink.h>
#include <linux/sched.h>
#include <linux/sock_diag.h>
#include <linux/unix_diag.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "common/paused_child.h"
#include "common/pagemap_scan.h"
#include "common/sockopt_reader.h"
#include "common/unique_fd.h"

#ifndef SIOCUNIXFILE
#define SIOCUNIXFILE (0x89E0 + 0)
#endif

namespace crpipe {

namespace {

FeatureCheck ok(std::string name, std::string detail = "") {
  return {std::move(name), true, std::move(detail)};
}
FeatureCheck missing(std::string name, std::string detail) {
  return {std::move(name), false, std::move(detail)};
}
std::string errnoText(const char* what, int err) { return std::string(what) + ": " + strerror(err); }
// A feature that only makes crpipe faster: missing, `check` still passes.
FeatureCheck optional(std::string name, bool available, std::string without) {
  if (available) {
    return ok(std::move(name));
  }
  FeatureCheck c = missing(std::move(name), "optional: " + std::move(without));
  c.optional = true;
  return c;
}

FeatureCheck checkPidfdOpen() {
  UniqueFd fd(static_cast<int>(::syscall(SYS_pidfd_open, ::getpid(), 0)));
  if (!fd.valid()) {
    return missing("pidfd_open", errnoText("pidfd_open", errno));
  }
  return ok("pidfd_open");
}

FeatureCheck checkPidfdGetfd() {
  PausedChild child;
  if (!child.ready()) {
    return missing("pidfd_getfd", errnoText("fork of a test child", errno));
  }
  UniqueFd pidfd(static_cast<int>(::syscall(SYS_pidfd_open, child.pid(), 0)));
  if (!pidfd.valid()) {
    return missing("pidfd_getfd", errnoText("pidfd_open", errno));
  }
  // The child inherited our stdin (fd 0); take a copy of it from the child.
  UniqueFd got(static_cast<int>(::syscall(SYS_pidfd_getfd, pidfd.get(), 0, 0)));
  if (!got.valid()) {
    return missing("pidfd_getfd", errnoText("pidfd_getfd", errno));
  }
  return ok("pidfd_getfd");
}

FeatureCheck checkClone3SetTid() {
  // Learn a pid that is free: a child's, once it is reaped. Then ask clone3 for it.
  pid_t probe = ::fork();
  if (probe == 0) {
    ::_exit(0);
  }
  if (probe < 0) {
    return missing("clone3 set_tid", errnoText("fork", errno));
  }
  ::waitpid(probe, nullptr, 0);
  pid_t want = probe;
  clone_args args{};
  args.exit_signal = SIGCHLD;
  args.set_tid = reinterpret_cast<uint64_t>(&want);
  args.set_tid_size = 1;
  long pid = ::syscall(SYS_clone3, &args, sizeof(args));
  if (pid == 0) {
    ::_exit(0);
  }
  if (pid < 0) {
    int err = errno;
    if (err == EPERM) {
      return missing("clone3 set_tid", "EPERM: needs CAP_SYS_ADMIN (or CAP_CHECKPOINT_RESTORE)");
    }
    if (err == EEXIST) {
      return ok("clone3 set_tid", "supported (the probe pid was taken again meanwhile)");
    }
    return missing("clone3 set_tid", errnoText("clone3", err));
  }
  ::waitpid(static_cast<pid_t>(pid), nullptr, 0);
  if (pid != want) {
    return missing("clone3 set_tid", "the child got pid " + std::to_string(pid) + ", not " +
                                         std::to_string(want));
  }
  return ok("clone3 set_tid");
}

FeatureCheck checkSockDiagUnix() {
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
    return missing("sock_diag unix", errnoText("socketpair", errno));
  }
  UniqueFd a(sv[0]), b(sv[1]);
  struct stat st {};
  ::fstat(a.get(), &st);
  UniqueFd nl(::socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG));
  if (!nl.valid()) {
    return missing("sock_diag unix", errnoText("netlink socket", errno));
  }
  struct {
    nlmsghdr nlh;
    unix_diag_req req;
  } msg{};
  msg.nlh.nlmsg_len = sizeof(msg);
  msg.nlh.nlmsg_type = SOCK_DIAG_BY_FAMILY;
  msg.nlh.nlmsg_flags = NLM_F_REQUEST;
  msg.req.sdiag_family = AF_UNIX;
  msg.req.udiag_states = ~0u;
  msg.req.udiag_ino = static_cast<uint32_t>(st.st_ino);
  msg.req.udiag_cookie[0] = msg.req.udiag_cookie[1] = ~0u;  // INET_DIAG_NOCOOKIE
  msg.req.udiag_show = UDIAG_SHOW_PEER | UDIAG_SHOW_RQLEN;
  sockaddr_nl addr{};
  addr.nl_family = AF_NETLINK;
  if (::sendto(nl.get(), &msg, sizeof(msg), 0, reinterpret_cast<sockaddr*>(&addr),
               sizeof(addr)) < 0) {
    return missing("sock_diag unix", errnoText("send", errno));
  }
  alignas(nlmsghdr) char buf[8192];
  ssize_t n = ::recv(nl.get(), buf, sizeof(buf), 0);
  if (n < static_cast<ssize_t>(sizeof(nlmsghdr))) {
    return missing("sock_diag unix", errnoText("recv", errno));
  }
  auto* h = reinterpret_cast<nlmsghdr*>(buf);
  if (h->nlmsg_type == NLMSG_ERROR) {
    auto* e = static_cast<nlmsgerr*>(NLMSG_DATA(h));
    return missing("sock_diag unix", errnoText("request", -e->error));
  }
  auto* r = static_cast<unix_diag_msg*>(NLMSG_DATA(h));
  if (r->udiag_ino != st.st_ino) {
    return missing("sock_diag unix", "the answer is about another socket");
  }
  return ok("sock_diag unix");
}

FeatureCheck checkSiocUnixFile() {
  UniqueFd s(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  char dir[] = "/tmp/crpipe-check-XXXXXX";
  if (!s.valid() || ::mkdtemp(dir) == nullptr) {
    return missing("SIOCUNIXFILE", errnoText("setup", errno));
  }
  std::string path = std::string(dir) + "/s";
  sockaddr_un sun{};
  sun.sun_family = AF_UNIX;
  std::strncpy(sun.sun_path, path.c_str(), sizeof(sun.sun_path) - 1);
  FeatureCheck res = ok("SIOCUNIXFILE");
  if (::bind(s.get(), reinterpret_cast<sockaddr*>(&sun), sizeof(sun)) < 0) {
    res = missing("SIOCUNIXFILE", errnoText("bind", errno));
  } else {
    UniqueFd f(::ioctl(s.get(), SIOCUNIXFILE));
    if (!f.valid()) {
      res = missing("SIOCUNIXFILE", errnoText("ioctl", errno));
    }
  }
  ::unlink(path.c_str());
  ::rmdir(dir);
  return res;
}

FeatureCheck checkPeekOff() {
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
    return missing("SO_PEEK_OFF unix", errnoText("socketpair", errno));
  }
  UniqueFd a(sv[0]), b(sv[1]);
  int off = 0;
  if (::setsockopt(b.get(), SOL_SOCKET, SO_PEEK_OFF, &off, sizeof(off)) < 0) {
    return missing("SO_PEEK_OFF unix", errnoText("setsockopt", errno));
  }
  if (::send(a.get(), "ab", 2, 0) != 2) {
    return missing("SO_PEEK_OFF unix", errnoText("send", errno));
  }
  char c1 = 0, c2 = 0;
  if (::recv(b.get(), &c1, 1, MSG_PEEK | MSG_DONTWAIT) != 1 ||
      ::recv(b.get(), &c2, 1, MSG_PEEK | MSG_DONTWAIT) != 1) {
    return missing("SO_PEEK_OFF unix", errnoText("recv", errno));
  }
  if (c1 != 'a' || c2 != 'b') {
    return missing("SO_PEEK_OFF unix", "peeking does not advance the offset");
  }
  return ok("SO_PEEK_OFF unix");
}

FeatureCheck checkKcmp() {
  UniqueFd a(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  UniqueFd b(::fcntl(a.get(), F_DUPFD_CLOEXEC, 0));
  UniqueFd c(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  pid_t me = ::getpid();
  long same = ::syscall(SYS_kcmp, me, me, KCMP_FILE, a.get(), b.get());
  long other = ::syscall(SYS_kcmp, me, me, KCMP_FILE, a.get(), c.get());
  if (same < 0 || other < 0) {
    return missing("kcmp", errnoText("kcmp", errno));
  }
  if (same != 0 || other == 0) {
    return missing("kcmp", "answers do not tell files apart");
  }
  return ok("kcmp");
}

FeatureCheck checkPtraceSeize() {
  PausedChild child;
  if (!child.ready()) {
    return missing("PTRACE_SEIZE", errnoText("fork of a test child", errno));
  }
  if (::ptrace(PTRACE_SEIZE, child.pid(), nullptr, nullptr) < 0) {
    return missing("PTRACE_SEIZE", errnoText("PTRACE_SEIZE", errno));
  }
  if (::ptrace(PTRACE_INTERRUPT, child.pid(), nullptr, nullptr) < 0) {
    return missing("PTRACE_SEIZE", errnoText("PTRACE_INTERRUPT", errno));
  }
  int status = 0;
  if (::waitpid(child.pid(), &status, __WALL) < 0 || !WIFSTOPPED(status)) {
    return missing("PTRACE_SEIZE", "the tracee did not stop");
  }
  ::ptrace(PTRACE_DETACH, child.pid(), nullptr, nullptr);
  return ok("PTRACE_SEIZE");
}

FeatureCheck checkTee() {
  int p1[2], p2[2];
  if (::pipe2(p1, O_CLOEXEC) < 0) {
    return missing("tee on pipes", errnoText("pipe", errno));
  }
  UniqueFd r1(p1[0]), w1(p1[1]);
  if (::pipe2(p2, O_CLOEXEC) < 0) {
    return missing("tee on pipes", errnoText("pipe", errno));
  }
  UniqueFd r2(p2[0]), w2(p2[1]);
  if (::write(w1.get(), "data", 4) != 4) {
    return missing("tee on pipes", errnoText("write", errno));
  }
  ssize_t n = ::tee(r1.get(), w2.get(), 4, SPLICE_F_NONBLOCK);
  if (n != 4) {
    return missing("tee on pipes", errnoText("tee", errno));
  }
  char buf[4];
  if (::read(r1.get(), buf, 4) != 4 || std::memcmp(buf, "data", 4) != 0) {
    return missing("tee on pipes", "tee consumed the source pipe's data");
  }
  return ok("tee on pipes");
}

// Socket options through io_uring (Linux 6.7+, io_uring not disabled): the collector
// reads a socket's options in one submission instead of one syscall each.
FeatureCheck checkUringGetsockopt() {
  return optional("io_uring getsockopt", SockoptReader().batched(),
                  "socket options are read one by one");
}

// PAGEMAP_SCAN (Linux 6.7+): the collector asks the kernel for the runs of pages to dump
// instead of reading the page table entry by entry.
FeatureCheck checkPagemapScan() {
  return optional("PAGEMAP_SCAN", pagemapScanAvailable(), "page tables are read entry by entry");
}

}  // namespace

std::vector<FeatureCheck> checkKernelFeatures() {
  return {checkPidfdOpen(),    checkPidfdGetfd(),  checkClone3SetTid(),
          checkSockDiagUnix(), checkSiocUnixFile(), checkPeekOff(),
          checkKcmp(),         checkPtraceSeize(),  checkTee(),
          checkUringGetsockopt(), checkPagemapScan()};
}

std::string renderFeatureChecks(const std::vector<FeatureCheck>& checks) {
  std::string out;
  for (const auto& c : checks) {
    out += c.name;
    out.append(c.name.size() < 20 ? 20 - c.name.size() : 1, ' ');
    out += c.ok ? "ok" : "missing";
    if (!c.detail.empty()) {
      out += " (" + c.detail + ")";
    }
    out += "\n";
  }
  return out;
}

}  // namespace crpipe
