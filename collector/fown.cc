#include <fcntl.h>

#include "collector/dump_context.h"

namespace crpipe::collector {

Result<images::FownEntry> readFown(int fd) {
  images::FownEntry fown;
  f_owner_ex owner{};
  if (::fcntl(fd, F_GETOWN_EX, &owner) < 0) {
    return failSys("F_GETOWN_EX");
  }
  int sig = ::fcntl(fd, F_GETSIG);
  if (sig < 0) {
    return failSys("F_GETSIG");
  }
  fown.set_pid_type(static_cast<uint32_t>(owner.type));
  fown.set_pid(static_cast<uint32_t>(owner.pid));
  fown.set_signum(static_cast<uint32_t>(sig));
  // The owner's credentials matter only when an owner is set; the kernel does not expose
  // them, and CRIU records the owner task's uids for the same purpose.
  fown.set_uid(0);
  fown.set_euid(0);
  return fown;
}

std::optional<images::FownEntry> fownFromOwner(bool pidSet, uint32_t pidType, uint32_t signum) {
  // F_GETOWN_EX reports a pid only while a task of it exists, translated into the caller's
  // namespace: an owner that is set is left to the syscall. Without one, the type is the
  // f_owner's pid_type (PIDTYPE_PID, TGID, PGID map to F_OWNER_TID, PID, PGRP: 0, 1, 2).
  if (pidSet || pidType > 2) {
    return std::nullopt;
  }
  images::FownEntry fown;
  fown.set_pid_type(pidType);
  fown.set_pid(0);
  fown.set_signum(signum);
  fown.set_uid(0);
  fown.set_euid(0);
  return fown;
}

std::optional<images::FownEntry> fownFromFast(const FastFd& r) {
  return fownFromOwner((r.flags & CRP_FD_OWNER_PID) != 0, r.own_pid_type, r.own_signum);
}

}  // namespace crpipe::collector
