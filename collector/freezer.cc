#include "collector/freezer.h"

#include <poll.h>
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <sys/ptrace.h>
#include <sys/wait.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <deque>
#include <set>
#include <vector>

#include "common/proc.h"
#include "common/unique_fd.h"

namespace crpipe::collector {

FrozenTree::FrozenTree(FrozenTree&& o) noexcept
    : log_(o.log_), procs_(std::move(o.procs_)), stopped_(std::move(o.stopped_)),
      caught_(std::move(o.caught_)),
      done_(o.done_), frozenSince_(o.frozenSince_) {
  o.done_ = true;
}

FrozenTree::~FrozenTree() {
  if (!done_) {
    release();
  }
}

Result<bool> FrozenTree::seizeThread(pid_t tid, FrozenProcess& p) {
  if (::ptrace(PTRACE_SEIZE, tid, nullptr, nullptr) < 0) {
    if (errno == ESRCH) {
      return false;  // exited meanwhile
    }
    if (errno == EPERM) {
      return fail(Error::sys("PTRACE_SEIZE tid " + std::to_string(tid) +
                             " (already traced by another process?)"));
    }
    return fail(Error::sys("PTRACE_SEIZE tid " + std::to_string(tid)));
  }
  // Registered at once: from here on the destructor owes this thread a detach.
  stopped_[tid] = p.pid;
  if (::ptrace(PTRACE_INTERRUPT, tid, nullptr, nullptr) < 0) {
    return fail(Error::sys("PTRACE_INTERRUPT tid " + std::to_string(tid)));
  }
  for (;;) {
    int status = 0;
    pid_t r = ::waitpid(tid, &status, __WALL);
    if (r < 0) {
      if (errno == EINTR) {
        continue;
      }
      return fail(Error::sys("waitpid tid " + std::to_string(tid)));
    }
    if (WIFEXITED(status) || WIFSIGNALED(status)) {
      stopped_.erase(tid);
      return false;
    }
    if (!WIFSTOPPED(status)) {
      continue;
    }
    if ((status >> 16) == PTRACE_EVENT_STOP) {
      return true;  // the interrupt (or a group-stop) took effect
    }
    // A signal the thread had already dequeued for delivery: not delivered now (the
    // thread goes on to the interrupt stop), but kept, siginfo and all, for the images and
    // for the release.
    siginfo_t si{};
    if (::ptrace(PTRACE_GETSIGINFO, tid, nullptr, &si) < 0) {
      return fail(Error::sys("PTRACE_GETSIGINFO tid " + std::to_string(tid)));
    }
    log_->debug("tid %d: signal %d was being delivered while freezing; kept pending", tid,
                si.si_signo);
    caught_[tid].emplace_back(reinterpret_cast<const char*>(&si), sizeof(si));
    if (::ptrace(PTRACE_CONT, tid, nullptr, nullptr) < 0) {
      return fail(Error::sys("PTRACE_CONT tid " + std::to_string(tid)));
    }
  }
}

Status FrozenTree::freezeProcess(FrozenProcess& p, bool& gone) {
  gone = false;
  const std::string taskDir = "/proc/" + std::to_string(p.pid) + "/task";
  // Re-list threads until a listing made after all listed threads stopped adds nothing.
  for (;;) {
    auto tids = listNumericDir(taskDir);
    if (!tids) {
      if (tids.error().err() == ENOENT) {
        gone = true;
        return {};
      }
      return fail(std::move(tids).error());
    }
    bool added = false;
    for (pid_t tid : *tids) {
      if (stopped_.count(tid) != 0) {
        continue;
      }
      auto alive = seizeThread(tid, p);
      if (!alive) {
        return fail(std::move(alive).error());
      }
      added = added || *alive;
    }
    if (!added) {
      p.threads.clear();
      for (pid_t tid : *tids) {
        if (stopped_.count(tid) != 0) {
          p.threads.push_back(tid);
          if (auto c = caught_.find(tid); c != caught_.end()) {
            p.caught[tid] = c->second;
          }
        }
      }
      if (p.threads.empty()) {
        gone = true;
      }
      // The leader first, as pstree.img lists it.
      for (size_t i = 0; i < p.threads.size(); ++i) {
        if (p.threads[i] == p.pid) {
          std::swap(p.threads[0], p.threads[i]);
        }
      }
      return {};
    }
  }
}

Result<FrozenTree> FrozenTree::freeze(pid_t root, Log& log) {
  FrozenTree tree(log);
  tree.frozenSince_ = std::chrono::steady_clock::now();
  if (root <= 1 || root == ::getpid()) {
    return failMsg("refusing to dump pid " + std::to_string(root));
  }
  std::deque<FrozenProcess> todo;
  todo.push_back(FrozenProcess{root, 0, {}, {}});
  std::set<pid_t> seen{root};
  while (!todo.empty()) {
    FrozenProcess p = std::move(todo.front());
    todo.pop_front();
    auto stat = readProcFile("/proc/" + std::to_string(p.pid) + "/stat");
    if (!stat) {
      if (p.pid == root) {
        return failMsg("pid " + std::to_string(root) + " does not exist");
      }
      continue;
    }
    auto ps = parseProcStat(*stat);
    if (ps && ps->state == 'Z') {
      return failMsg("pid " + std::to_string(p.pid) +
                     " is a zombie (exited, not yet waited for); crpipe cannot dump zombies yet");
    }
    bool gone = false;
    CRPIPE_TRY_CTX(tree.freezeProcess(p, gone), "freeze pid " + std::to_string(p.pid));
    if (gone) {
      if (p.pid == root) {
        return failMsg("pid " + std::to_string(root) + " exited while being frozen");
      }
      continue;
    }
    // Every thread of p is stopped now, so its set of children cannot grow any more.
    for (pid_t tid : p.threads) {
      auto kids = readProcFile("/proc/" + std::to_string(p.pid) + "/task/" +
                               std::to_string(tid) + "/children");
      if (!kids) {
        return fail(std::move(kids).error());
      }
      for (pid_t c : parsePidList(*kids)) {
        if (seen.insert(c).second) {
          todo.push_back(FrozenProcess{c, p.pid, {}, {}});
        }
      }
    }
    tree.procs_.push_back(std::move(p));
  }
  log.info("froze %zu processes, %zu threads", tree.procs_.size(), tree.stopped_.size());
  return tree;
}

void FrozenTree::kill() {
  // The dump is only over once the tree is gone: its pids (and its memory) are free for
  // a restore that follows at once. A pidfd turns readable when its process has exited.
  std::vector<UniqueFd> exits;
  for (const auto& p : procs_) {
    UniqueFd fd(static_cast<int>(::syscall(SYS_pidfd_open, p.pid, 0)));
    ::kill(p.pid, SIGKILL);
    if (fd.valid()) {
      exits.push_back(std::move(fd));
    }
  }
  // A traced thread that dies stays a zombie for its tracer (us) to reap, and its
  // process counts as exited only once every thread is gone: reap each thread's death.
  // A leader's death is reported only after its other threads', so every thread is
  // polled in rounds rather than waited for in turn.
  std::set<pid_t> dying;
  for (const auto& [tid, pid] : stopped_) {
    dying.insert(tid);
  }
  const auto reapBy = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (!dying.empty() && std::chrono::steady_clock::now() < reapBy) {
    bool progress = false;
    for (auto it = dying.begin(); it != dying.end();) {
      int status = 0;
      pid_t r = ::waitpid(*it, &status, __WALL | WNOHANG);
      if ((r == *it && (WIFEXITED(status) || WIFSIGNALED(status))) || (r < 0 && errno == ECHILD)) {
        it = dying.erase(it);
        progress = true;
      } else {
        ++it;
      }
    }
    if (!progress) {
      ::usleep(1000);
    }
  }
  release();
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  for (const auto& fd : exits) {
    pollfd pfd{fd.get(), POLLIN, 0};
    for (;;) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                      deadline - std::chrono::steady_clock::now()).count();
      if (left <= 0) {
        log_->warn("a killed process of the tree has not exited after 30 s");
        return;
      }
      int r = ::poll(&pfd, 1, static_cast<int>(left));
      if (r > 0 || (r < 0 && errno != EINTR)) {
        break;
      }
    }
  }
}

void FrozenTree::release() {
  if (!stopped_.empty()) {
    auto us = std::chrono::duration_cast<std::chrono::microseconds>(
                  std::chrono::steady_clock::now() - frozenSince_)
                  .count();
    log_->info("tree frozen for %.3f ms", static_cast<double>(us) / 1000.0);
  }
  // Signals caught while seizing go back to their thread's queue first (a detach from
  // an interrupt stop does not reliably inject one). A siginfo another process may not
  // forge (si_code >= 0: kill(), the kernel's own) is queued as the same signal sent
  // with tgkill.
  for (const auto& [tid, infos] : caught_) {
    const pid_t tgid = stopped_.contains(tid) ? stopped_.at(tid) : tid;
    {
      for (const auto& raw : infos) {
        siginfo_t si{};
        std::memcpy(&si, raw.data(), std::min(raw.size(), sizeof(si)));
        const bool forgeable = si.si_code < 0 && si.si_code != SI_TKILL;
        long r = forgeable ? ::syscall(SYS_rt_tgsigqueueinfo, tgid, tid, si.si_signo, &si)
                           : ::syscall(SYS_tgkill, tgid, tid, si.si_signo);
        if (r < 0 && errno != ESRCH) {
          log_->warn("tid %d: signal %d caught while freezing could not be queued again: %s",
                     tid, si.si_signo, std::strerror(errno));
        }
      }
    }
  }
  for (const auto& [tid, pid] : stopped_) {
    // Errors (a killed task) leave nothing to do.
    ::ptrace(PTRACE_DETACH, tid, nullptr, nullptr);
  }
  stopped_.clear();
  caught_.clear();
  done_ = true;
}

}  // namespace crpipe::collector
