#include "coordinator/pid_wait.h"

#include <poll.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "common/proc.h"
#include "common/unique_fd.h"

namespace crpipe {

namespace {

int64_t nowMs() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
}

constexpr unsigned kPidfdThread = 0x80;  // PIDFD_THREAD (O_EXCL), Linux 6.9

// The process a tid belongs to (its Tgid), or the tid itself when /proc does not say.
pid_t getTgid(pid_t tid) {
  auto text = readProcFile("/proc/" + std::to_string(tid) + "/status");
  if (!text) {
    return tid;
  }
  auto tgid = procStatusField(*text, "Tgid");
  return tgid ? static_cast<pid_t>(std::atoi(std::string(*tgid).c_str())) : tid;
}

}  // namespace

Status waitPidsFree(const std::vector<pid_t>& pids, int timeoutMs, Log& log,
                    const std::map<pid_t, pid_t>& threadOf) {
  const int64_t deadline = nowMs() + timeoutMs;
  for (pid_t pid : pids) {
    auto thread = threadOf.find(pid);
    const std::string name = thread == threadOf.end()
                                 ? "pid " + std::to_string(pid)
                                 : "tid " + std::to_string(pid) + " (a thread of pid " +
                                       std::to_string(thread->second) + ")";
    // PIDFD_THREAD: a tid held by a thread of another process is found too.
    UniqueFd fd(static_cast<int>(::syscall(SYS_pidfd_open, pid, kPidfdThread)));
    if (!fd.valid() && errno == EINVAL) {
      fd.reset(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)));  // before Linux 6.9
    }
    if (!fd.valid()) {
      if (errno == ESRCH) {
        continue;  // free
      }
      if (errno == EINVAL && ::access(("/proc/" + std::to_string(pid)).c_str(), F_OK) == 0) {
        return failMsg(name + " is taken by a thread of another process; the restore needs " +
                       "every pid and tid of the dump free");
      }
      return failSys("pidfd_open " + std::to_string(pid));
    }
    auto text = readProcFile("/proc/" + std::to_string(pid) + "/stat");
    auto st = text ? parseProcStat(*text) : Result<ProcStat>(fail(text.error()));
    if (!st) {
      continue;  // gone between the two calls
    }
    if (st->state != 'Z') {
      const pid_t tgid = getTgid(pid);
      return failMsg(name + " is taken by a running " +
                     (tgid != pid ? "thread of process " + std::to_string(tgid) + " ("
                                  : std::string("process (")) +
                     st->comm + ", parent " + std::to_string(st->ppid) +
                     "); the restore needs every pid and tid of the dump free");
    }
    log.info("%s is still a zombie (parent %d has not reaped it yet); waiting for it",
             name.c_str(), st->ppid);
    for (;;) {
      int64_t left = deadline - nowMs();
      // No events asked: a pidfd is readable as soon as the task exited, which a zombie
      // has; only POLLHUP (reaped) ends the wait.
      pollfd p{fd.get(), 0, 0};
      int r = ::poll(&p, 1, left > 0 ? static_cast<int>(left) : 0);
      if (r < 0 && errno == EINTR) {
        continue;
      }
      if (r < 0) {
        return failSys("poll pidfd of " + std::to_string(pid));
      }
      if (r > 0 && (p.revents & POLLHUP) != 0) {
        break;
      }
      return failMsg(name + " is still taken by a zombie that parent " +
                     std::to_string(st->ppid) + " has not reaped after " +
                     std::to_string(timeoutMs / 1000) + " s; the restore needs it free");
    }
  }
  return {};
}

}  // namespace crpipe
