#pragma once

#include <linux/sched.h>
#include <sched.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>

namespace crpipe {

// clone3() with set_tid, for a pid that was just seen free. Linux wakes pidfd pollers
// (POLLHUP: reaped) when the task is detached, but gives its pid number back to the
// allocator only afterwards (free_pids() runs once tasklist_lock is dropped), so for a
// few microseconds set_tid may still fail with EEXIST. That window is retried, boundedly;
// a pid that stays taken fails with EEXIST as before. Returns as clone3: 0 in the child.
inline long clone3WithPid(clone_args& args) {
  constexpr int kAttempts = 10000;
  for (int i = 0;; ++i) {
    long r = ::syscall(SYS_clone3, &args, sizeof(args));
    if (r >= 0 || errno != EEXIST || i + 1 == kAttempts) {
      return r;
    }
    ::sched_yield();
  }
}

}  // namespace crpipe
