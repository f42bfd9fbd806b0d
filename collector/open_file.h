#pragma once

#include <sys/stat.h>
#include <sys/types.h>

#include <string>

#include "common/proc.h"
#include "common/unique_fd.h"

namespace crpipe::collector {

// One open file description as the collector holds it: its own duplicate of the target's
// descriptor (pidfd_getfd, or a file peeked out of a queued SCM_RIGHTS message) and what
// /proc says about it.
struct OpenFile {
  UniqueFd dup;
  struct stat st {};
  std::string link;  // readlink of /proc/PID/fd/N: a path, "pipe:[INO]", "socket:[INO]", ...
  FdInfo fdinfo;
  pid_t pid = 0;     // the first task found holding it; 0 if only in a queued message
  int fd = -1;       // its number in that task; -1 likewise

  // "fd 5 of pid 300" or "a file passed in a queued message" — for errors.
  std::string where() const {
    if (pid == 0) {
      return "a file in a queued SCM_RIGHTS message";
    }
    return "fd " + std::to_string(fd) + " of pid " + std::to_string(pid);
  }
};

}  // namespace crpipe::collector
