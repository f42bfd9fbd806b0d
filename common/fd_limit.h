#pragma once

#include <sys/resource.h>

#include <cstdio>

namespace crpipe {

// Lets this process hold as many descriptors as the kernel allows: a stage holds a copy
// of every fd of the tree (collector) or puts fds above the tree's highest number
// (restorer), so the caller's soft limit, or even its hard limit, is often too low.
// Root may raise the hard limit up to fs.nr_open; others get their hard limit. Best
// effort: a stage that still runs out says which fd and EMFILE.
inline void raiseFdLimit() {
  rlimit rl{};
  if (::getrlimit(RLIMIT_NOFILE, &rl) != 0) {
    return;
  }
  unsigned long nrOpen = 0;
  if (FILE* f = std::fopen("/proc/sys/fs/nr_open", "re")) {
    if (std::fscanf(f, "%lu", &nrOpen) != 1) {
      nrOpen = 0;
    }
    std::fclose(f);
  }
  if (nrOpen > rl.rlim_max) {
    rlimit up{nrOpen, nrOpen};
    if (::setrlimit(RLIMIT_NOFILE, &up) == 0) {
      return;
    }
  }
  rl.rlim_cur = rl.rlim_max;
  ::setrlimit(RLIMIT_NOFILE, &rl);
}

}  // namespace crpipe
