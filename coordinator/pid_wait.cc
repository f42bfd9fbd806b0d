#include "coordinator/pid_wait.h"

#include <poll.h>
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

}  // namespace

Status waitPidsFree(const std::vector<pid_t>& pids, int timeoutMs, Log& log) {
  const int64_t deadline = nowMs() + timeoutMs;
  for (pid_t pid : pids) {
    UniqueFd fd(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)));
    if (!fd.valid()) {
      if (errno == ESRCH) {
        continue;  // free
      }
      return failSys("pidfd_open " + std::to_string(pid));
    }
    auto text = readProcFile("/proc/" + std::to_string(pid) + "/stat");
    auto st = text ? parseProcStat(*text) : Result<ProcStat>(fail(text.error()));
    if (!st) {
      continue;  // gone between the two calls
    }
    if (st->state != 'Z') {
      return failMsg("pid " + std::to_string(pid) + " is taken by a running process (" +
                     st->comm + ", parent " + std::to_string(st->ppid) +
                     "); the restore needs every pid of the dump free");
    }
    log.info("pid %d is still a zombie (parent %d has not reaped it yet); waiting for it",
             pid, st->ppid);
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
      return failMsg("pid " + std::to_string(pid) + " is still taken by a zombie that parent " +
                     std::to_string(st->ppid) + " has not reaped after " +
                     std::to_string(timeoutMs / 1000) + " s; the restore needs it free");
    }
  }
  return {};
}

}  // namespace crpipe
