#pragma once

#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <unistd.h>

#include <any>
#include <string>

#include "collector/fast/fast_records.h"
#include "collector/fdtable/fd_table.h"
#include "common/proc.h"
#include "common/result.h"
#include "common/unique_fd.h"

namespace crpipe::collector {

// One open file description as the collector holds it: its own duplicate of the target's
// descriptor (pidfd_getfd, or a file peeked out of a queued SCM_RIGHTS message) and what
// /proc says about it. A file the fast path described (`fast`) may have no duplicate yet:
// a kind that needs one asks ensureDup().
struct OpenFile {
  UniqueFd dup;
  const FastFd* fast = nullptr;  // what the task_file iterator read; owned by the snapshot
  int pidfd = -1;                // the holder's pidfd (borrowed) for ensureDup()
  struct stat st {};
  std::string link;  // readlink of /proc/PID/fd/N: a path, "pipe:[INO]", "socket:[INO]", ...
  FdInfo fdinfo;
  pid_t pid = 0;     // the first task found holding it; 0 if only in a queued message
  int fd = -1;       // its number in that task; -1 likewise
  // What a kind read ahead on the thread that grabs fds (FdKind::readAhead), for collect().
  std::any ahead;
  // What the fd-table iterator read of this fd; set only while readAhead runs (it points
  // into the grabbing thread's table).
  const FdTableReader::Fd* table = nullptr;

  // The collector's duplicate, taken with pidfd_getfd on first use.
  Result<int> ensureDup() {
    if (!dup.valid()) {
      if (pidfd < 0) {
        return failMsg(where() + ": no descriptor to take");
      }
      dup.reset(static_cast<int>(::syscall(SYS_pidfd_getfd, pidfd, fd, 0)));
      if (!dup.valid()) {
        return fail(Error::sys(where() + ": pidfd_getfd"));
      }
    }
    return dup.get();
  }

  // "fd 5 of pid 300" or "a file passed in a queued message" — for errors.
  std::string where() const {
    if (pid == 0) {
      return "a file in a queued SCM_RIGHTS message";
    }
    return "fd " + std::to_string(fd) + " of pid " + std::to_string(pid);
  }
};

}  // namespace crpipe::collector
