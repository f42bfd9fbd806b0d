#include "restorer/kinds/unix_creds.h"

#include <fcntl.h>
#include <linux/sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <string>

#include "common/clone_pid.h"
#include "common/unique_fd.h"

namespace crpipe::restorer {

namespace {

// A fork with pid `tid` (clone3 set_tid) whose child shares this task's fd table, so that
// sockets it makes or connects are this task's: returns like fork(), twice.
long cloneWithFiles(pid_t& tid) {
  clone_args args{};
  args.flags = CLONE_FILES;
  args.exit_signal = SIGCHLD;
  args.set_tid = reinterpret_cast<uint64_t>(&tid);
  args.set_tid_size = 1;
  return clone3WithPid(args);
}

// The effective ids only (real and saved stay the restorer's, root's): raw syscalls, the
// restorer is single-threaded and glibc's set*id would signal every thread.
Status setEffective(uid_t uid, gid_t gid) {
  // gid first, while still privileged; back to root first on the way back.
  if (::geteuid() == 0) {
    if (::syscall(SYS_setresgid, -1, gid, -1) != 0) {
      return failSys("setresgid(-1, " + std::to_string(gid) + ", -1)");
    }
    if (::syscall(SYS_setresuid, -1, uid, -1) != 0) {
      return failSys("setresuid(-1, " + std::to_string(uid) + ", -1)");
    }
    return {};
  }
  if (::syscall(SYS_setresuid, -1, uid, -1) != 0) {
    return failSys("setresuid(-1, " + std::to_string(uid) + ", -1)");
  }
  if (::syscall(SYS_setresgid, -1, gid, -1) != 0) {
    return failSys("setresgid(-1, " + std::to_string(gid) + ", -1)");
  }
  return {};
}

Result<std::vector<int>> withIds(const images::UcredEntry& cred, uid_t euid, gid_t egid,
                                 const PeerCreds::Call& fn) {
  if (cred.uid() == euid && cred.gid() == egid) {
    return fn();
  }
  CRPIPE_TRY_CTX(setEffective(cred.uid(), cred.gid()), "SO_PEERCRED of the dump");
  auto r = fn();
  CRPIPE_TRY_CTX(setEffective(euid, egid), "back from SO_PEERCRED of the dump");
  return r;
}

}  // namespace

Result<std::vector<int>> PeerCreds::as(const images::UcredEntry* cred, const Call& fn) {
  if (cred == nullptr) {
    return fn();
  }
  const auto pid = static_cast<pid_t>(cred->pid());
  if (pid > 0 && pid != self_ && ::kill(pid, 0) < 0 && errno == ESRCH) {
    return inHelper(*cred, fn);
  }
  return withIds(*cred, euid_, egid_, fn);
}

Status PeerCreds::as(const images::UcredEntry* cred, const std::function<Status()>& fn) {
  auto r = as(cred, [&]() -> Result<std::vector<int>> {
    CRPIPE_TRY(fn());
    return std::vector<int>{};
  });
  if (!r) {
    return fail(std::move(r).error());
  }
  return {};
}

Result<std::vector<int>> PeerCreds::inHelper(const images::UcredEntry& cred, const Call& fn) {
  // The helper shares the fd table: neither side closes the pipe until it was reaped.
  int p[2];
  if (::pipe2(p, O_CLOEXEC) != 0) {
    return failSys("pipe2 for the SO_PEERCRED helper");
  }
  UniqueFd rd(p[0]), wr(p[1]);
  pid_t tid = static_cast<pid_t>(cred.pid());
  const long child = cloneWithFiles(tid);
  if (child < 0) {
    // Taken after all (a task that appeared since): keep this task's pid.
    log_->debug("pid %d for SO_PEERCRED is not free (%s); the call keeps pid %d", tid,
                std::strerror(errno), ::getpid());
    return withIds(cred, euid_, egid_, fn);
  }
  if (child == 0) {
    // Report: 'O' then the fds, or 'E' then the error text.
    auto r = withIds(cred, euid_, egid_, fn);
    std::string out;
    if (r) {
      out = "O";
      out.append(reinterpret_cast<const char*>(r->data()), r->size() * sizeof(int));
    } else {
      out = "E" + r.error().str();
    }
    ssize_t n = ::write(wr.get(), out.data(), out.size());
    ::_exit(n == static_cast<ssize_t>(out.size()) ? 0 : 1);
  }
  int status = 0;
  while (::waitpid(static_cast<pid_t>(child), &status, 0) < 0) {
    if (errno != EINTR) {
      return failSys("waitpid of the SO_PEERCRED helper " + std::to_string(child));
    }
  }
  wr.reset();
  std::string in;
  char buf[4096];
  for (;;) {
    ssize_t n = ::read(rd.get(), buf, sizeof(buf));
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n <= 0) {
      break;
    }
    in.append(buf, static_cast<size_t>(n));
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0 || in.empty()) {
    return failMsg("the SO_PEERCRED helper with pid " + std::to_string(tid) +
                   " failed (status " + std::to_string(status) + ")");
  }
  if (in[0] == 'E') {
    return failMsg(in.substr(1));
  }
  std::vector<int> fds((in.size() - 1) / sizeof(int));
  std::memcpy(fds.data(), in.data() + 1, fds.size() * sizeof(int));
  return fds;
}

Result<std::optional<PidHold>> PidHold::ifFree(pid_t pid) {
  if (pid <= 0 || ::kill(pid, 0) == 0 || errno != ESRCH) {
    return std::optional<PidHold>();
  }
  // Shared fd table: neither side closes the pipe before the holder is reaped, and the
  // holder's read ends when this side closes the write end.
  int p[2];
  if (::pipe2(p, O_CLOEXEC) != 0) {
    return failSys("pipe2 for the holder of pid " + std::to_string(pid));
  }
  UniqueFd rd(p[0]), wr(p[1]);
  const pid_t parent = ::getpid();
  pid_t tid = pid;
  const long child = cloneWithFiles(tid);
  if (child < 0) {
    if (errno == EEXIST) {
      return std::optional<PidHold>();  // taken since: it exists, which is all that counts
    }
    return failSys("clone3 a holder of pid " + std::to_string(pid));
  }
  if (child == 0) {
    // The shared fd table keeps the write end open while the holder lives: should this
    // task die first, nothing would end the read.
    if (::prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || ::getppid() != parent) {
      ::_exit(1);
    }
    char c;
    while (::read(rd.get(), &c, 1) < 0 && errno == EINTR) {
    }
    ::_exit(0);
  }
  return std::optional<PidHold>(PidHold(static_cast<pid_t>(child), std::move(wr), std::move(rd)));
}

PidHold::~PidHold() {
  if (child_ <= 0) {
    return;
  }
  release_.reset();
  while (::waitpid(child_, nullptr, 0) < 0 && errno == EINTR) {
  }
  wait_.reset();
}

}  // namespace crpipe::restorer
