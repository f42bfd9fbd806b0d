#include <fcntl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "restorer/kinds/restore_kind.h"

namespace crpipe::restorer {

Status applyFown(int fd, const images::FownEntry& fown, uint32_t dumpedFlags) {
  if (fown.pid() != 0) {
    f_owner_ex owner{};
    owner.type = static_cast<__pid_type>(fown.pid_type());
    owner.pid = static_cast<pid_t>(fown.pid());
    if (::fcntl(fd, F_SETOWN_EX, &owner) < 0) {
      return failSys("F_SETOWN_EX " + std::to_string(fown.pid()));
    }
  }
  if (fown.signum() != 0 && ::fcntl(fd, F_SETSIG, static_cast<int>(fown.signum())) < 0) {
    return failSys("F_SETSIG " + std::to_string(fown.signum()));
  }
  if ((dumpedFlags & O_ASYNC) != 0) {
    int fl = ::fcntl(fd, F_GETFL);
    if (fl < 0 || ::fcntl(fd, F_SETFL, fl | O_ASYNC) < 0) {
      return failSys("F_SETFL O_ASYNC");
    }
  }
  return {};
}

Result<UniqueFd> moveAbove(UniqueFd fd, int base) {
  if (fd.get() >= base) {
    return fd;
  }
  UniqueFd moved(::fcntl(fd.get(), F_DUPFD_CLOEXEC, base));
  if (!moved.valid()) {
    int err = errno;
    if (err == EMFILE) {
      // New descriptions wait above the tree's highest fd until share-fds puts them in
      // place, so a task with N fds needs about 2N under RLIMIT_NOFILE; only a process with
      // CAP_SYS_RESOURCE can raise the hard limit past what crpipe was started with.
      rlimit rl{};
      ::getrlimit(RLIMIT_NOFILE, &rl);
      return fail(Error::sys(err, "F_DUPFD_CLOEXEC " + std::to_string(base) +
                                      " (RLIMIT_NOFILE is " + std::to_string(rl.rlim_cur) +
                                      "; the restore needs room for about twice the task's "
                                      "fds: raise the hard limit, e.g. ulimit -Hn)"));
    }
    return fail(Error::sys(err, "F_DUPFD_CLOEXEC " + std::to_string(base)));
  }
  return moved;
}

Result<UniqueFd> placeHome(UniqueFd fd, int home) {
  if (home < 0 || fd.get() == home || !fd.valid()) {
    return fd;
  }
  if (::fcntl(home, F_GETFD) >= 0 || errno != EBADF) {
    return fd;  // taken (a helper fd of the restorer, another description in passing)
  }
  if (::dup3(fd.get(), home, O_CLOEXEC) < 0) {
    return failSys("dup3 to fd " + std::to_string(home));
  }
  return UniqueFd(home);
}

Result<UniqueFd> takeInherited(pid_t coordinator, int fd, int base) {
  const std::string what = "--inherit-fd fd[" + std::to_string(fd) + "]";
  UniqueFd pidfd(static_cast<int>(::syscall(SYS_pidfd_open, coordinator, 0)));
  if (!pidfd.valid()) {
    return failSys(what + ": pidfd_open of crpipe (pid " + std::to_string(coordinator) + ")");
  }
  UniqueFd got(static_cast<int>(::syscall(SYS_pidfd_getfd, pidfd.get(), fd, 0)));
  if (!got.valid()) {
    return failSys(what + ": pidfd_getfd (is fd " + std::to_string(fd) + " open in crpipe?)");
  }
  return moveAbove(std::move(got), base);
}

}  // namespace crpipe::restorer
