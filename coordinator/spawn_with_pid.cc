// StageProcess::spawnWithPid: a stage started with a chosen pid (clone3 set_tid), for the
// root restorer of a restore. libuv cannot choose pids, so the child is made here and
// watched through its pidfd: readable once it exited, then reaped with waitid(P_PIDFD).
// libuv's own SIGCHLD handling waits only for the pids it spawned, never for this one.
#include <fcntl.h>
#include <linux/close_range.h>
#include <linux/sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <utility>

#include "common/clone_pid.h"
#include "common/unique_fd.h"
#include "coordinator/spawn.h"
#include "coordinator/uv_loop.h"

namespace crpipe {

struct StageProcess::PidfdHandle {
  uv_poll_t poll{};
  StageProcess* owner = nullptr;
  int pidfd = -1;
  pid_t pid = -1;
};

namespace {

// In the child, between clone3 and execve: only syscalls, nothing that allocates.
[[noreturn]] void execChild(const std::string& path, char** argv, const std::vector<ChildFd>& fds,
                            int top) {
  // If crpipe dies before the tree is restored, nothing of it may stay behind.
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  rlimit rl{};
  if (::getrlimit(RLIMIT_NOFILE, &rl) == 0) {
    rl.rlim_cur = rl.rlim_max;
    ::setrlimit(RLIMIT_NOFILE, &rl);
  }
  // First every source above every target, then each to its place: no dup2 overwrites a
  // source that another mapping still needs.
  int moved[256];
  size_t n = std::min(fds.size(), sizeof(moved) / sizeof(moved[0]));
  for (size_t i = 0; i < n; ++i) {
    moved[i] = ::fcntl(fds[i].parentFd, F_DUPFD, top + 1);
    if (moved[i] < 0) {
      ::_exit(127);
    }
  }
  for (size_t i = 0; i < n; ++i) {
    if (::dup2(moved[i], fds[i].childFd) < 0) {
      ::_exit(127);
    }
  }
  for (size_t i = 0; i < n; ++i) {
    ::close(moved[i]);
  }
  // Whatever else crpipe inherited without CLOEXEC (a shell's fds) stays out of the
  // restorer: a stray fd there would sit on an fd number of the restored task.
  int keep[256];
  for (size_t i = 0; i < n; ++i) {
    int v = fds[i].childFd;
    size_t j = i;
    for (; j > 0 && keep[j - 1] > v; --j) {
      keep[j] = keep[j - 1];
    }
    keep[j] = v;
  }
  unsigned from = 3;
  for (size_t i = 0; i <= n; ++i) {
    unsigned to = i < n ? static_cast<unsigned>(keep[i]) : ~0U;
    if (i < n && keep[i] < 3) {
      continue;
    }
    if (to > from) {
      ::syscall(SYS_close_range, from, to - 1, CLOSE_RANGE_CLOEXEC);
    }
    if (i < n) {
      from = to + 1;
    }
  }
  ::execv(path.c_str(), argv);
  ::_exit(127);
}

}  // namespace

Result<std::unique_ptr<StageProcess>> StageProcess::spawnWithPid(
    uv_loop_t* loop, std::string name, const std::string& path,
    const std::vector<std::string>& args, const std::vector<ChildFd>& fds, pid_t pid,
    ExitFn onExit) {
  if (fds.size() > 256) {
    return failMsg("start " + name + ": too many fds to hand over");
  }
  std::unique_ptr<StageProcess> sp(new StageProcess());
  sp->name_ = std::move(name);
  sp->onExit_ = std::move(onExit);
  std::vector<std::string> copies(args);
  std::string arg0 = path;
  std::vector<char*> argv = {arg0.data()};
  for (auto& a : copies) {
    argv.push_back(a.data());
  }
  argv.push_back(nullptr);
  int top = 0;
  for (const auto& f : fds) {
    top = std::max({top, f.childFd, f.parentFd});
  }

  int pidfd = -1;
  pid_t tid[1] = {pid};
  clone_args ca{};
  ca.flags = CLONE_PIDFD;
  ca.pidfd = reinterpret_cast<uint64_t>(&pidfd);
  ca.exit_signal = SIGCHLD;
  ca.set_tid = reinterpret_cast<uint64_t>(tid);
  ca.set_tid_size = 1;
  long r = clone3WithPid(ca);
  if (r < 0) {
    if (errno == EEXIST) {
      return failSys("start " + sp->name_ + ": pid " + std::to_string(pid) + " is taken");
    }
    return failSys("start " + sp->name_ + ": clone3 with pid " + std::to_string(pid));
  }
  if (r == 0) {
    execChild(path, argv.data(), fds, top);
  }
  UniqueFd owned(pidfd);
  auto* h = new PidfdHandle();
  h->owner = sp.get();
  h->pid = static_cast<pid_t>(r);
  int rc = uv_poll_init(loop, &h->poll, owned.get());
  if (rc < 0) {
    ::syscall(SYS_pidfd_send_signal, owned.get(), SIGKILL, nullptr, 0);
    siginfo_t si{};
    ::waitid(P_PIDFD, static_cast<id_t>(owned.get()), &si, WEXITED);
    delete h;
    return fail(uvError(rc, "watch " + sp->name_));
  }
  h->pidfd = owned.release();  // closed in the handle's close callback
  sp->pidfdHandle_ = h;
  rc = uv_poll_start(&h->poll, UV_READABLE, &StageProcess::onPidfd);
  if (rc < 0) {
    return fail(uvError(rc, "watch " + sp->name_));  // the destructor kills and reaps it
  }
  return sp;
}

void StageProcess::onPidfd(uv_poll_t* p, int, int) {
  auto* h = reinterpret_cast<PidfdHandle*>(p);
  siginfo_t si{};
  if (::waitid(P_PIDFD, static_cast<id_t>(h->pidfd), &si, WEXITED | WNOHANG) < 0 ||
      si.si_pid == 0) {
    return;  // not yet (a spurious wake-up)
  }
  uv_poll_stop(p);
  StageExit e;
  if (si.si_code == CLD_EXITED) {
    e.status = si.si_status;
  } else {
    e.signal = si.si_status;
  }
  if (h->owner != nullptr) {
    h->owner->exited(e);
  }
}

}  // namespace crpipe

namespace crpipe {

// A child still running when its owner goes is killed and reaped here (blocking: SIGKILL
// always ends it), so no zombie of ours outlives the StageProcess.
void StageProcess::closePidfdHandle() {
  PidfdHandle* h = std::exchange(pidfdHandle_, nullptr);
  h->owner = nullptr;
  if (!exited_) {
    ::syscall(SYS_pidfd_send_signal, h->pidfd, SIGKILL, nullptr, 0);
    siginfo_t si{};
    ::waitid(P_PIDFD, static_cast<id_t>(h->pidfd), &si, WEXITED);
  }
  uv_close(reinterpret_cast<uv_handle_t*>(&h->poll), [](uv_handle_t* hh) {
    auto* ph = reinterpret_cast<PidfdHandle*>(hh);
    ::close(ph->pidfd);
    delete ph;
  });
}

}  // namespace crpipe

namespace crpipe {

void StageProcess::release() {
  if (pidfdHandle_ == nullptr || exited_) {
    return;
  }
  PidfdHandle* h = std::exchange(pidfdHandle_, nullptr);
  h->owner = nullptr;
  uv_poll_stop(&h->poll);
  exited_ = true;
  uv_close(reinterpret_cast<uv_handle_t*>(&h->poll), [](uv_handle_t* hh) {
    auto* ph = reinterpret_cast<PidfdHandle*>(hh);
    ::close(ph->pidfd);
    delete ph;
  });
}

pid_t StageProcess::pidfdPid() const { return pidfdHandle_->pid; }

void StageProcess::pidfdSignal(int sig) {
  ::syscall(SYS_pidfd_send_signal, pidfdHandle_->pidfd, sig, nullptr, 0);
}

}  // namespace crpipe
